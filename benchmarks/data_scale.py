"""Start-up time, memory per process and windows per second: the packed store against NH's own ``caravan`` loader.

    nice -n 10 python benchmarks/data_scale.py --data-dir ../shared/data/caravan_camels --work-dir /tmp/data_scale
    python benchmarks/data_scale.py --render benchmarks/results/data_scale.json

The training dataset of one config (3 ERA5-Land forcings, streamflow, 15 static attributes, T = 365, predict_last_n
1, 1982-01-01 … 2014-12-31 with a year of warm-up: 34 years loaded per basin) is built in a fresh process, as
``nh-run train`` builds it, and batches of 256 windows are drawn as the trainer draws them: NH's loader with a
shuffling ``DataLoader`` (``DistributedSampler`` on 2 processes), the store with the sampler StefaLand's trainers
give it. Larger corpora repeat the real basins under new ids (``camels_<gauge>r<k>``), each copy a real copy on disk:
**a memory and throughput test, not a skill test**. NH's loader is measured only at sizes that fit this machine's
memory; its growth is linear in basins. Two processes run at the same time, as two ``torchrun`` ranks do.
Each process runs one torch thread (``OMP_NUM_THREADS=1``); memory is read from ``/proc/self``: peak and final
resident set, the private part (``RssAnon``), the file-backed part (``RssFile``: the store's pages, shared by every
process through the page cache) and ``Pss`` (shared pages divided among the processes using them).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

RESULTS = Path(__file__).resolve().parent / 'results' / 'data_scale.json'
FORCINGS = ['total_precipitation_sum', 'temperature_2m_mean', 'potential_evaporation_sum']
ATTRIBUTES = ['p_mean', 'pet_mean', 'aridity', 'frac_snow', 'moisture_index', 'seasonality', 'high_prec_freq',
              'high_prec_dur', 'low_prec_freq', 'low_prec_dur', 'area', 'ele_mt_sav', 'slp_dg_sav', 'cly_pc_sav',
              'snd_pc_sav']
BATCH = 256
LABELS = [('nh', "NH caravan"), ('store', "store"), ('store_scan', "store, statistics and windows computed at start-up")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-dir', type=Path, help="Caravan-layout folder with the real basins (caravan_camels).")
    parser.add_argument('--work-dir', type=Path, help="Where the stores, replicated datasets and configs go.")
    parser.add_argument('--store-sizes', type=int, nargs='+', default=[382, 10_000])
    parser.add_argument('--nh-sizes', type=int, nargs='+', default=[382, 1_000])
    parser.add_argument('--scan-sizes', type=int, nargs='+', default=[10_000],
                        help="Store sizes also measured with the forcings in another order, so that the statistics "
                             "and valid windows saved by pack do not apply and are computed from the store.")
    parser.add_argument('--two-processes', type=int, nargs='+', default=[382, 10_000],
                        help="Sizes also measured with two processes at once (NH's only where it fits).")
    parser.add_argument('--batches', type=int, default=100, help="Timed batches per process (after 3 warm-up).")
    parser.add_argument('--rounds', type=int, default=3,
                        help="Rounds of every measurement (NH's loader above 382 basins: one round, it takes minutes "
                             "and GBs); the table gives the median round.")
    parser.add_argument('--output', type=Path, default=RESULTS)
    parser.add_argument('--render', type=Path, help="Print the Markdown table of a results file and stop.")
    parser.add_argument('--worker', nargs=5, metavar=('LOADER', 'CONFIG', 'RANK', 'WORLD', 'BATCHES'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    if args.worker:
        print(json.dumps(measure(args.worker[0], Path(args.worker[1]), *map(int, args.worker[2:]))))
        return 0
    results = json.loads(args.output.read_text()) if args.output.is_file() else {'runs': []}
    results['machine'] = _machine()
    done = {(r['loader'], r['basins'], r['processes'], r.get('round', 0)) for r in results['runs']}
    sizes = {'nh': args.nh_sizes, 'store': args.store_sizes, 'store_scan': args.scan_sizes}
    plan = [(loader, n, processes) for n in sorted(set(args.store_sizes + args.nh_sizes)) for loader in sizes
            if n in sizes[loader]
            for processes in ((1, 2) if n in args.two_processes and (loader != 'nh' or n <= 382) else (1,))]
    for round_ in range(args.rounds):  # the loaders in turns, so that a shared machine's load falls on both
        for loader, n, processes in plan:
            if (loader, n, processes, round_) in done or (loader == 'nh' and n > 382 and round_ > 0):
                continue
            config = prepare(loader, n, args.data_dir.resolve(), args.work_dir.resolve())
            ranks = run_processes(loader, config, processes, args.batches)
            results['runs'].append({'loader': loader, 'basins': n, 'processes': processes, 'round': round_,
                                    'ranks': ranks, 'load_average': os.getloadavg()})
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results, indent=1) + '\n')
            print(render(results), flush=True)
    store = args.work_dir.resolve() / f'store_{max(args.store_sizes)}'
    results['store_bytes'] = {str(n): _size(args.work_dir.resolve() / f'store_{n}') for n in args.store_sizes}
    results['store_days'] = json.loads((store / 'store.json').read_text())['days']
    args.output.write_text(json.dumps(results, indent=1) + '\n')
    print(render(results))
    return 0


def prepare(loader: str, n: int, data_dir: Path, work: Path) -> Path:
    """The config of ``n`` basins for ``loader`` (packing or replicating what it needs, once)."""
    work.mkdir(parents=True, exist_ok=True)
    real = (data_dir / 'basins.txt').read_text().split()
    ids = [b if k == 0 else f'{b}r{k}' for k in range(-(-n // len(real))) for b in real][:n]
    if loader == 'nh':
        root = data_dir if n <= len(real) else _replicated_caravan(data_dir, work / f'caravan_{n}', real, ids)
        return _config(work, f'nh_{n}', root, ids, None)
    base = work / 'store_382'
    if not (base / 'index.json').is_file() or (base / 'pending').exists():
        from nh_stefaland.tools.cli import main as cli

        cli(['pack', '--config', str(_config(work, 'pack_382', data_dir, real, None)), '--output', str(base)])
    store = base if n == len(real) else _replicated_store(base, work / f'store_{n}', ids)
    if loader == 'store_scan':  # the forcings in another order: not the statistics and windows pack saved
        return _config(work, f'store_scan_{n}', data_dir, ids, store, FORCINGS[::-1])
    return _config(work, f'store_{n}', data_dir, ids, store)


def run_processes(loader: str, config: Path, processes: int, batches: int) -> list[dict]:
    """Run ``processes`` workers at once; each one's measurements."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    workers = [subprocess.Popen([sys.executable, __file__, '--worker', loader, str(config), str(rank), str(processes),
                                 str(batches)], stdout=subprocess.PIPE, env=env, text=True)
               for rank in range(processes)]
    outputs = [worker.communicate()[0] for worker in workers]
    if any(worker.returncode for worker in workers):
        raise RuntimeError(f"A {loader} worker failed on {config}.")
    return [json.loads(output.strip().splitlines()[-1]) for output in outputs]


def measure(loader: str, config_file: Path, rank: int, world: int, batches: int) -> dict:
    """Build the training dataset and draw batches as the trainer does; time and memory of this process."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    from neuralhydrology.datasetzoo import get_dataset
    from neuralhydrology.utils.config import Config

    from nh_stefaland.nh.store_dataset import window_sampler

    torch.set_num_threads(1)
    cfg = Config(config_file)
    cfg.update_config({'train_dir': config_file.parent / f'train_data_{config_file.stem}_{rank}'})
    start = time.perf_counter()
    dataset = get_dataset(cfg=cfg, is_train=True, period='train', scaler={})
    startup = time.perf_counter() - start
    after_start = _memory()
    sampler = window_sampler(dataset, world, rank, seed=1)
    if sampler is None and world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=1)
    loader_ = DataLoader(dataset, batch_size=BATCH, shuffle=sampler is None, sampler=sampler,
                         collate_fn=dataset.collate_fn)
    start = time.perf_counter()
    batches_ = iter(loader_)
    for _ in range(3):
        next(batches_)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(batches_)
    seconds = time.perf_counter() - start
    assert batch['x_d'][cfg.dynamic_inputs[0]].shape == (BATCH, cfg.seq_length, 1)
    return {'rank': rank, 'windows': len(dataset), 'startup_s': startup, 'first_3_batches_s': first,
            'windows_per_s': batches * BATCH / seconds, 'memory_after_startup_mb': after_start,
            'memory_mb': _memory()}


def render(results: dict) -> str:
    """Markdown table: per process (the mean over the processes that ran at once), the median over the rounds."""
    lines = ["| loader | basins | processes | rounds | windows | start-up, s | peak RSS per process, MB | private "
             "(RssAnon), MB | file-backed (RssFile), MB | PSS, MB | windows/s per process (batch 256) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for run in results['runs']:
        groups.setdefault((run['basins'], [key for key, _ in LABELS].index(run['loader']), run['processes']), []).append(run['ranks'])
    for (basins, loader, processes), rounds in sorted(groups.items()):
        def median(get):
            return float(np.median([np.mean([get(rank) for rank in ranks]) for ranks in rounds]))

        lines.append(f"| {LABELS[loader][1]} | {basins:,} | {processes} | {len(rounds)} | "
                     f"{rounds[0][0]['windows']:,} | {median(lambda r: r['startup_s']):.1f} | "
                     f"{median(lambda r: r['memory_mb']['peak']):,.0f} | {median(lambda r: r['memory_mb']['anon']):,.0f} | "
                     f"{median(lambda r: r['memory_mb']['file']):,.0f} | {median(lambda r: r['memory_mb']['pss']):,.0f} | "
                     f"{median(lambda r: r['windows_per_s']):,.0f} |")
    if 'store_bytes' in results:
        for n, size in results['store_bytes'].items():
            years = int(n) * results['store_days'] / 365.25
            lines.append(f"\nStore of {int(n):,} basins: {size / 2 ** 30:.2f} GiB on disk, "
                         f"{size / years / 1024:.1f} KiB per basin-year.")
    return '\n'.join(lines)


def _config(work: Path, name: str, data_dir: Path, basins: list[str], store: Path | None,
            forcings: list[str] = FORCINGS) -> Path:
    basin_file = work / f'{name}_basins.txt'
    basin_file.write_text('\n'.join(basins) + '\n')
    cfg = {'experiment_name': name, 'dataset': 'caravan', 'data_dir': str(data_dir), 'run_dir': str(work / 'runs'),
           **{f'{p}_basin_file': str(basin_file) for p in ('train', 'validation', 'test')},
           **{f'{p}_start_date': '01/01/1982' for p in ('train', 'validation', 'test')},
           **{f'{p}_end_date': '31/12/2014' for p in ('train', 'validation', 'test')},
           'dynamic_inputs': forcings, 'target_variables': ['streamflow'], 'static_attributes': ATTRIBUTES,
           'seq_length': 365, 'predict_last_n': 1, 'loss': 'MSE', 'model': 'cudalstm', 'hidden_size': 8,
           'batch_size': BATCH, 'verbose': 0, 'seed': 1, 'device': 'cpu', 'num_workers': 0}
    if store is not None:
        cfg['stefaland_store'] = str(store)
    path = work / f'{name}.yml'
    YAML(typ='safe').dump(cfg, path)
    return path


def _replicated_store(base: Path, target: Path, ids: list[str]) -> Path:
    """A store of ``ids``: the real basins' chunks copied (real files) as many times as needed, the statistics and
    valid windows of the replicated training data added as ``pack`` adds them."""
    from nh_stefaland.nh import store as store_format
    from nh_stefaland.nh.store_statistics import save_statistics
    from nh_stefaland.nh.store_windows import save_training_windows

    if (target / 'index.json').is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)  # an interrupted copy starts again
    target.mkdir(parents=True)
    source = store_format.Store(base)
    meta = source.meta
    store_format.write_meta(target, meta)
    order = np.array([source.rows[i.split('r')[0]] for i in ids])
    for begin in range(0, len(ids), meta.chunk_basins):
        rows = order[begin:begin + meta.chunk_basins]
        values = {v: source.series(v, rows, 0, meta.days - 1) for v in meta.variables}
        store_format.add_chunk(target, meta, ids[begin:begin + meta.chunk_basins], values,
                               source.attributes.to_numpy()[rows])
    opened = store_format.Store(target)
    start = opened.day(pd.Timestamp('1982-01-01'))
    days = (start - 364, start, opened.day(pd.Timestamp('2014-12-31')))
    training = np.array([opened.rows[b] for b in sorted(ids)])  # in the order of NH's load_basin_file, as pack does
    save_statistics(opened, training, FORCINGS + ['streamflow'], ['streamflow'], days)
    save_training_windows(opened, training, FORCINGS, ['streamflow'], days, 365, 1)
    return target


def _replicated_caravan(data_dir: Path, target: Path, real: list[str], ids: list[str]) -> Path:
    """A Caravan folder of ``ids``: links to the real basins' netCDF files, attribute rows repeated."""
    series = target / 'timeseries' / 'netcdf' / 'camels'
    series.mkdir(parents=True, exist_ok=True)
    for basin in ids:
        link = series / f'{basin}.nc'
        if not link.exists():
            link.symlink_to(data_dir / 'timeseries' / 'netcdf' / 'camels' / f"{basin.split('r')[0]}.nc")
    attributes = target / 'attributes' / 'camels'
    attributes.mkdir(parents=True, exist_ok=True)
    for file in (data_dir / 'attributes' / 'camels').glob('*.csv'):
        table = pd.read_csv(file, index_col='gauge_id', dtype={'gauge_id': str})
        table.loc[[b.split('r')[0] for b in ids]].set_axis(ids).rename_axis('gauge_id').to_csv(attributes / file.name)
    return target


def _memory() -> dict[str, float]:
    status = dict(line.split(':', 1) for line in Path('/proc/self/status').read_text().splitlines() if ':' in line)
    rollup = dict(line.split(':', 1) for line in Path('/proc/self/smaps_rollup').read_text().splitlines()[1:])

    def mb(value: str) -> float:
        return int(value.split()[0]) / 1024

    return {'rss': mb(status['VmRSS']), 'peak': mb(status['VmHWM']), 'anon': mb(status['RssAnon']),
            'file': mb(status['RssFile']), 'pss': mb(rollup['Pss'])}


def _machine() -> dict:
    from importlib.metadata import version

    import torch

    return {'cpu': platform.processor() or platform.machine(), 'cores': os.cpu_count(), 'python': platform.python_version(),
            'torch': torch.__version__, 'neuralhydrology': version('neuralhydrology'),
            'memory_gb': os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30}


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob('*') if f.is_file())


if __name__ == '__main__':
    sys.exit(main())
