"""Training-budget sensitivity of the PUB comparison: the LSTM and StefaLand with more updates, on the same folds.

The PUB benchmark gives every model 200 updates. This script writes copies of the benchmark's ``lstm.yml`` and
``stefaland.yml`` to ``OUTPUT/configs`` with ``max_updates_per_epoch`` multiplied by each factor (everything else
unchanged; factor 1 is the config itself) and runs them through
``nh-stefaland pub`` on some of the benchmark's 10 random folds (seed 0), so every budget is tested on the same
held-out basins. The report (``OUTPUT/report/report.md``) adds the paired comparison and the wall time of each run,
which shows how much compute each budget costs.

    python benchmarks/ungauged/budget.py --output-dir runs/ungauged_budget --fold 1 --fold 2 --jobs 2
"""
import argparse
import sys
from pathlib import Path

from ruamel.yaml import YAML

from nh_stefaland import cli

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path('../shared/data/caravan_camels')  # the configs' data_dir, from the project root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=Path,
                        help="The caravan_camels folder (382 basins), if not the configs' ../shared/data/caravan_camels.")
    parser.add_argument('--output-dir', type=Path, default=Path('runs/ungauged_budget'))
    parser.add_argument('--budget', action='append', metavar='MODEL=F1,F2',
                        help="Update factors of a benchmark config (default: lstm=1,4,16 and stefaland=1,4).")
    parser.add_argument('--fold', type=int, action='append', help="Folds to run (default: 1).")
    parser.add_argument('--jobs', type=int, default=2)
    args = parser.parse_args()

    budgets = dict(item.split('=') for item in args.budget or ['lstm=1,4,16', 'stefaland=1,4'])
    models = []
    for name, factors in budgets.items():
        for factor in map(int, factors.split(',')):
            label = name if factor == 1 else f'{name}_x{factor}'
            models += ['--model', f'{label}={scaled_config(HERE / f"{name}.yml", factor, args.output_dir)}']
    folds = [arg for fold in args.fold or [1] for arg in ('--fold', str(fold))]
    data = ['--data-dir', str(args.data_dir)] if args.data_dir else []
    return cli.main(['pub', *models, '--basin-file', str((args.data_dir or DEFAULT_DATA) / 'basins.txt'), *data,
                     '--output-dir', str(args.output_dir), '--folds', '10', '--seed', '0', '--jobs', str(args.jobs),
                     *folds])


def scaled_config(config: Path, factor: int, output_dir: Path) -> Path:
    """``config`` itself for factor 1, else a copy in ``output_dir/configs`` with ``factor`` × the updates per epoch."""
    if factor == 1:
        return config
    yaml = YAML()
    cfg = yaml.load(config)
    cfg['max_updates_per_epoch'] *= factor
    path = output_dir / 'configs' / f'{config.stem}_x{factor}.yml'
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml.dump(cfg, path)
    return path


if __name__ == '__main__':
    sys.exit(main())
