"""How fast ``nh-stefaland predict`` turns forcings into hydrographs: basin-years of daily flows per minute.

Everything a user waits for is timed, data loading from the Caravan files included: one ``nh-stefaland predict``
call, in this process, on one torch thread. The models are the ungauged benchmark's configs
(``benchmarks/ungauged/stefaland.yml``: d 64, 2 layers, 365-day windows, 180 predicted days, strided tester;
``lstm.yml``: NH's ``cudalstm``, hidden 64, NH's one-window-per-day tester), each trained for one update on a few
basins (their weights do not change the cost). Cases: one member, and a 5-member ensemble (5 seeds), for both; and
StefaLand through NH's one-window-per-day tester (``stefaland_strided_evaluation: False``) on a few basins, for scale.
Every case predicts the same 10-year period (1989-10-01 … 1999-09-30) of the first N basins. Wall-clock and CPU time
are both kept: on a shared machine the wall clock includes time other processes took, and with one thread the
process's CPU time is close to what a quiet machine's wall clock would be.

    python benchmarks/predict/speed.py --data-dir ../shared/data/caravan_camels     # results/speed.json
    python benchmarks/predict/speed.py --data-dir ../shared/data/caravan_camels --quick
"""
import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import torch

import nh_stefaland
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.tools import cli

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / 'ungauged'
START, END, YEARS = '1989-10-01', '1999-09-30', 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=Path, required=True, help="The caravan_camels folder (382 basins).")
    parser.add_argument('--quick', action='store_true', help="Few basins: a check, not a result.")
    parser.add_argument('--output', type=Path, default=HERE / 'results' / 'speed.json')
    args = parser.parse_args()

    torch.set_num_threads(1)
    nh_stefaland.register()
    basins = (args.data_dir / 'basins.txt').read_text().split()
    sizes = {'stefaland': 8 if args.quick else 100, 'cudalstm': 4 if args.quick else 10, 'nh_tester': 2 if args.quick else 4}
    cases = [('StefaLand (d 64), strided tester', 'stefaland.yml', {}, 1, sizes['stefaland']),
             ('StefaLand (d 64), strided tester, 5 members', 'stefaland.yml', {}, 5, sizes['stefaland']),
             ('NH cudalstm (hidden 64), NH tester', 'lstm.yml', {}, 1, sizes['cudalstm']),
             ('NH cudalstm (hidden 64), NH tester, 5 members', 'lstm.yml', {}, 5, sizes['cudalstm']),
             ('StefaLand (d 64), NH one-window-per-day tester', 'stefaland.yml',
              {'stefaland_strided_evaluation': False}, 1, sizes['nh_tester'])]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / 'train.txt').write_text('\n'.join(basins[:8]) + '\n')
        for name, config, changes, n_members, n_basins in cases:
            runs = [_trained_run(config, changes, seed, args.data_dir, scratch) for seed in range(n_members)]
            basin_file = scratch / f'predict_{n_basins}.txt'
            basin_file.write_text('\n'.join(basins[:n_basins]) + '\n')
            output = scratch / 'flows.nc'
            arguments = ['predict', *[arg for run in runs for arg in ('--run-dir', str(run))], '--basin-file',
                         str(basin_file), '--data-dir', str(args.data_dir), '--start', START, '--end', END,
                         '--output', str(output), '--overwrite']
            begin, begin_cpu = time.perf_counter(), time.process_time()
            with redirect_stdout(StringIO()):
                cli.main(arguments)
            seconds, cpu_seconds = time.perf_counter() - begin, time.process_time() - begin_cpu
            basin_years = n_basins * YEARS
            results.append({'case': name, 'members': n_members, 'basins': n_basins, 'basin_years': basin_years,
                            'seconds': round(seconds, 2), 'cpu_seconds': round(cpu_seconds, 2),
                            'basin_years_per_minute': round(basin_years / seconds * 60.0, 1),
                            'basin_years_per_cpu_minute': round(basin_years / cpu_seconds * 60.0, 1)})
            print(f"{name}: {basin_years:.0f} basin-years in {seconds:.1f} s ({cpu_seconds:.1f} s of CPU) = "
                  f"{results[-1]['basin_years_per_minute']:.0f} basin-years per minute "
                  f"({results[-1]['basin_years_per_cpu_minute']:.0f} per CPU minute)", flush=True)
    report = {'command': ' '.join(sys.argv), 'torch_threads': 1, 'torch': torch.__version__,
              'machine': f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread",
              'period': [START, END], 'quick': args.quick, 'results': results}
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1) + '\n')
        print(f"Written {args.output}")
    return 0


def _trained_run(config: str, changes: dict, seed: int, data_dir: Path, scratch: Path) -> Path:
    """A run of the benchmark config trained for one update on 8 basins; its folder."""
    cfg = Config(CONFIGS / config)
    run_dir = scratch / f'{Path(config).stem}_{len(changes)}_{seed}'
    basins = scratch / 'train.txt'
    cfg.update_config({'data_dir': data_dir, 'train_basin_file': basins, 'validation_basin_file': basins,
                       'test_basin_file': basins, 'run_dir': run_dir, 'experiment_name': 'speed', 'epochs': 1,
                       'max_updates_per_epoch': 1, 'validate_every': None, 'seed': seed, 'verbose': 0,
                       'train_start_date': '01/10/2005', **changes})
    start_training(cfg)
    return next(run_dir.iterdir())


if __name__ == '__main__':
    sys.exit(main())
