"""Training-budget sensitivity of the PUB comparison: the LSTM and StefaLand with more updates, on the same folds.

The PUB benchmark gives every model 200 updates. This script writes copies of the benchmark's ``lstm.yml``,
``stefaland.yml`` and ``stefaland_finetune.yml`` (model ``pretrained``: the finetuning; its pretraining is not scaled)
to ``OUTPUT/configs`` with ``max_updates_per_epoch`` multiplied by each factor (everything else unchanged; factor 1 is
the config itself) and runs them through
``nh-stefaland pub`` on some of the benchmark's 10 random folds (seed 0), so every budget is tested on the same
held-out basins. The report (``OUTPUT/report/report.md``) adds the paired comparison and the wall time of each run,
which shows how much compute each budget costs.

    python benchmarks/ungauged/budget.py --output-dir runs/ungauged_budget --fold 1 --fold 2 --jobs 2 \\
        --reuse-pretraining runs/ungauged_pub/runs/pretrained/pretrain

Each ``pretrained`` budget has its own pretraining stage; ``--reuse-pretraining`` copies the PUB benchmark's finished
one there instead of pretraining again (pub checks that it was made with the same config and basins).
"""
import argparse
import shutil
import sys
from pathlib import Path

from ruamel.yaml import YAML

from nh_stefaland.tools import cli

HERE = Path(__file__).resolve().parent
MODELS = {'lstm': ('lstm.yml', None), 'stefaland': ('stefaland.yml', None),  # label: (config, pretraining)
          'pretrained': ('stefaland_finetune.yml', 'stefaland_pretrain.yml')}
DEFAULT_DATA = Path('../shared/data/caravan_camels')  # the configs' data_dir, from the project root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=Path,
                        help="The caravan_camels folder (382 basins), if not the configs' ../shared/data/caravan_camels.")
    parser.add_argument('--output-dir', type=Path, default=Path('runs/ungauged_budget'))
    parser.add_argument('--budget', action='append', metavar='MODEL=F1,F2',
                        help=f"Update factors of a benchmark model {sorted(MODELS)} (default: lstm=1,4,16, "
                             f"stefaland=1,4 and pretrained=1,4).")
    parser.add_argument('--reuse-pretraining', type=Path, metavar='DIR',
                        help="A finished pretraining stage of the PUB benchmark, used by every pretrained budget.")
    parser.add_argument('--fold', type=int, action='append', help="Folds to run (default: 1).")
    parser.add_argument('--jobs', type=int, default=2)
    args = parser.parse_args()

    budgets = dict(item.split('=') for item in args.budget or ['lstm=1,4,16', 'stefaland=1,4', 'pretrained=1,4'])
    unknown = set(budgets) - set(MODELS)
    if unknown:
        parser.error(f"--budget: no benchmark model {sorted(unknown)}; choose from {sorted(MODELS)}.")
    models = []
    for name, factors in budgets.items():
        config, pretraining = MODELS[name]
        for factor in map(int, factors.split(',')):
            label = name if factor == 1 else f'{name}_x{factor}'
            models += ['--model', f'{label}={scaled_config(HERE / config, factor, args.output_dir)}']
            if pretraining is not None:
                models += ['--pretrain', f'{label}={HERE / pretraining}']
                if args.reuse_pretraining is not None:
                    reuse(args.reuse_pretraining, args.output_dir / 'runs' / label / 'pretrain')
    folds = [arg for fold in args.fold or [1] for arg in ('--fold', str(fold))]
    data = ['--data-dir', str(args.data_dir)] if args.data_dir else []
    return cli.main(['pub', *models, '--basin-file', str((args.data_dir or DEFAULT_DATA) / 'basins.txt'), *data,
                     '--output-dir', str(args.output_dir), '--folds', '10', '--seed', '0', '--jobs', str(args.jobs),
                     *folds])


def reuse(pretraining: Path, directory: Path) -> None:
    """Copy a finished pretraining stage to ``directory`` unless one is there already."""
    if not (pretraining / 'status.json').is_file():
        raise FileNotFoundError(f"--reuse-pretraining {pretraining}: not a pretraining stage of pub (no status.json).")
    if not directory.exists():
        shutil.copytree(pretraining, directory, symlinks=True)


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
