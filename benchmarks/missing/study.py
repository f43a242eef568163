"""Does training the mask vectors cost skill? StefaLand from scratch with and without input masking, through pub.

``stefaland_input_mask_ratio`` hides a random share of each training window's inputs behind the mask vectors, so
that they learn to stand in for missing inputs (without it they stay untrained and a window with a missing input
predicts NaN). This script runs the ungauged benchmark's StefaLand config (``benchmarks/ungauged/stefaland.yml``,
800 updates as in ``benchmarks/pretraining/``) with the ratios asked for, as models of one ``nh-stefaland pub`` run
on the 382 CAMELS-US basins split into the 5 seeded random folds of the pretraining study (seed 0): the same basins,
folds, seeds, days and budget for every arm. Resumable: calling it again skips finished runs.

    python benchmarks/missing/study.py --ratios 0,0.1 --fold 1 --fold 2 --jobs 1

The report is pub's (``OUTPUT/report/``: per-basin scores, paired differences with intervals over folds and seeds).
"""
import argparse
import sys
from pathlib import Path

from ruamel.yaml import YAML

from nh_stefaland.tools import cli

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / 'ungauged' / 'stefaland.yml'
DEFAULT_DATA = Path('../shared/data/caravan_camels')  # the config's data_dir, from the project root
BUDGET = {'epochs': 4, 'max_updates_per_epoch': 200}  # 800 updates of 64 windows, as the pretraining study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ratios', default='0,0.1', help="Comma-separated stefaland_input_mask_ratio values.")
    parser.add_argument('--data-dir', type=Path, help="The caravan_camels folder, if not ../shared/data/caravan_camels.")
    parser.add_argument('--output-dir', type=Path, default=Path('runs/missing'))
    parser.add_argument('--fold', type=int, action='append', help="Folds to run (default: all 5).")
    parser.add_argument('--seeds', type=int, default=1)
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--jobs', type=int, default=1)
    args = parser.parse_args()

    models = []
    for ratio in (float(value) for value in args.ratios.split(',')):
        label = f'mask_{ratio:g}'
        models += ['--model', f'{label}={write_config(ratio, args.output_dir / "configs" / f"{label}.yml")}']
    folds = [arg for fold in args.fold or [] for arg in ('--fold', str(fold))]
    data = ['--data-dir', str(args.data_dir)] if args.data_dir else []
    return cli.main(['pub', *models, '--basin-file', str((args.data_dir or DEFAULT_DATA) / 'basins.txt'), *data,
                     '--output-dir', str(args.output_dir), '--folds', '5', '--seed', '0', '--jobs', str(args.jobs),
                     '--seeds', str(args.seeds), '--first-seed', str(args.first_seed), *folds])


def write_config(ratio: float, path: Path) -> Path:
    """The benchmark's StefaLand config with the 800-update budget and ``stefaland_input_mask_ratio`` at ``path``."""
    yaml = YAML()
    cfg = yaml.load(CONFIG)
    cfg.update({**BUDGET, 'stefaland_input_mask_ratio': ratio})
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml.dump(cfg, path)
    return path


if __name__ == '__main__':
    sys.exit(main())
