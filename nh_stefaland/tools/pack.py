"""``nh-stefaland pack``: what NH's dataset class loads for a config, written once into a packed store.

Each basin of the config's basin files is read with the ``_load_basin_data`` and ``_load_attributes`` of the class
that NH registers for its ``dataset`` (``caravan``, ``camels_us``, ``generic``, …), unnormalised, on one daily grid:
the config's earliest period start less ``seq_length`` days of warm-up, to its latest period end. A basin is first
written alone to ``pending/`` (so a stopped pack resumes where it stopped), then with others as a chunk. Variables a
basin's files lack (streamflow of an ungauged basin, a forcing another dataset does not have) are stored as missing.
``--append`` adds the basins of another config (another dataset, more basins, new variables) to an existing store.
At the end the statistics and the valid windows of the config's training data are stored, so that a run with that
config starts without reading the corpus again (:mod:`.store_statistics`, :mod:`.store_windows`).
"""
import argparse
import hashlib
import json
import logging
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from neuralhydrology.datautils.utils import load_basin_file, load_hydroatlas_attributes
from neuralhydrology.utils.config import Config

from nh_stefaland.nh import registration, store
from nh_stefaland.nh.store_dataset import check_config
from nh_stefaland.nh.store_statistics import save_statistics
from nh_stefaland.nh.store_windows import save_training_windows

LOGGER = logging.getLogger(__name__)
PERIODS = ('train', 'validation', 'test')
_LOADER = {}  # the NH dataset instance of a worker process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nh-stefaland pack``."""
    parser.add_argument('--config', type=Path, required=True,
                        help="An NH config: dataset, data_dir, basin files, dynamic_inputs, target_variables, "
                             "static attributes, periods and seq_length say what is packed.")
    parser.add_argument('--output', type=Path, required=True, help="The store folder to create (or resume).")
    parser.add_argument('--append', action='store_true',
                        help="Add this config's basins (and any new variables) to an existing store.")
    parser.add_argument('--jobs', type=int, default=1, help="Basins read in parallel (processes).")
    parser.add_argument('--chunk-basins', type=int, default=256, help="Basins per chunk of a new store.")


def run(args: argparse.Namespace) -> int:
    """Pack (or resume, or append) and print what the store holds."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s: %(message)s')
    cfg = Config(args.config)
    check_config(cfg)
    if args.jobs < 1 or args.chunk_basins < 1:
        raise ValueError(f"--jobs={args.jobs} and --chunk-basins={args.chunk_basins} must be at least 1.")
    basins = list(dict.fromkeys(b for p in PERIODS for b in load_basin_file(getattr(cfg, f'{p}_basin_file'))))
    meta = prepare(args.output, cfg, args.config, basins, args.append, args.chunk_basins)
    done = set(store.read_index(args.output)['basins'])
    todo = [b for b in basins if b not in done]
    attributes = _attributes(cfg, todo, meta.attributes)
    pending = args.output / 'pending'
    pending.mkdir(exist_ok=True)
    for partial in pending.glob('*.tmp.npy'):  # a basin whose writing was interrupted is read again
        partial.unlink()
    loaded = [b for b in todo if _pending_file(pending, b).is_file()]
    to_load = [b for b in todo if b not in set(loaded)]
    LOGGER.info(f"{len(basins)} basins in the config: {len(done)} already in the store, {len(loaded)} loaded "
                f"before, {len(to_load)} to load with dataset: {cfg.dataset} ({args.jobs} processes).")
    with _pool(args.jobs, args.config, meta) as pool:
        results = pool.imap_unordered(_load_basin, [(b, str(pending)) for b in to_load]) if pool else \
            (_load_basin((b, str(pending))) for b in to_load)
        for basin in tqdm(results, total=len(to_load), file=sys.stdout, desc='Packing basins'):
            loaded.append(basin)
            if len(loaded) >= meta.chunk_basins:
                _flush(args.output, meta, loaded[:meta.chunk_basins], attributes, pending)
                loaded = loaded[meta.chunk_basins:]
    if loaded:
        _flush(args.output, meta, loaded, attributes, pending)
    pending.rmdir()
    opened = store.Store(args.output)
    train = np.array([opened.rows[b] for b in load_basin_file(cfg.train_basin_file)])
    start = opened.day(cfg.train_start_date)
    days = (start - (cfg.seq_length - cfg.predict_last_n), start, opened.day(cfg.train_end_date))
    variables = list(dict.fromkeys(cfg.dynamic_inputs_flattened + cfg.target_variables))
    save_statistics(opened, train, variables, cfg.target_variables, days)
    save_training_windows(opened, train, cfg.dynamic_inputs_flattened, cfg.target_variables, days, cfg.seq_length,
                          cfg.predict_last_n)
    size = sum(f.stat().st_size for f in args.output.rglob('*') if f.is_file())
    print(f"{args.output}: {len(opened.basins)} basins × {opened.meta.days} days ({opened.meta.start} … "
          f"{opened.meta.end}), {len(opened.meta.variables)} variables, {len(opened.meta.attributes)} attributes, "
          f"{size / 2 ** 20:.1f} MiB")
    return 0


def prepare(output: Path, cfg: Config, config_file: Path, basins: list[str], append: bool,
            chunk_basins: int) -> store.StoreMeta:
    """A new store's metadata, or an existing store's, extended with this config's variables and attributes.

    Raises
    ------
    FileExistsError
        If ``output`` exists but is not a store, or is a store packed from another config without ``--append``.
    ValueError
        If this config's periods (with warm-up) fall outside an existing store's days.
    """
    variables = list(dict.fromkeys(cfg.dynamic_inputs_flattened + cfg.target_variables))
    attributes = cfg.static_attributes + cfg.hydroatlas_attributes
    start = min(getattr(cfg, f'{p}_start_date') for p in PERIODS) - pd.Timedelta(days=cfg.seq_length)
    end = max(getattr(cfg, f'{p}_end_date') for p in PERIODS)
    source = {'dataset': cfg.dataset, 'data_dir': str(cfg.data_dir), 'config': str(config_file),
              'basins': len(basins), 'key': _source_key(cfg, basins, variables, attributes)}
    if not store.is_store(output):
        if output.exists() and any(output.iterdir()):
            raise FileExistsError(f"--output {output} exists and is not a store: choose a new folder.")
        output.mkdir(parents=True, exist_ok=True)
        meta = store.StoreMeta(start=f'{start:%Y-%m-%d}', days=(end - start).days + 1, variables=variables,
                               attributes=attributes, chunk_basins=chunk_basins, sources=[source])
        store.write_meta(output, meta)
        return meta
    meta = store.read_meta(output)
    resuming = any(s['key'] == source['key'] for s in meta.sources)
    if not resuming and not append:
        raise FileExistsError(f"--output {output} is a store packed from another config ({meta.sources[-1]['config']})"
                              f": pass --append to add this config's basins to it, or choose a new folder.")
    first = pd.Timestamp(meta.start)
    if start < first or end > first + pd.Timedelta(days=meta.days - 1):
        raise ValueError(f"The periods of {config_file} with seq_length={cfg.seq_length} days of warm-up "
                         f"({start:%Y-%m-%d} … {end:%Y-%m-%d}) fall outside the store's days {meta.start} … "
                         f"{meta.end}: pack them into a new store.")
    store.remove_orphan_chunks(output)
    meta.variables += [v for v in variables if v not in meta.variables]
    meta.attributes += [a for a in attributes if a not in meta.attributes]
    if not resuming:
        meta.sources.append(source)
    store.write_meta(output, meta)
    return meta


def _attributes(cfg: Config, basins: list[str], names: list[str]) -> pd.DataFrame:
    """The static attributes of ``basins`` [basins, names] float64, NaN for those this dataset lacks."""
    if not basins or not names:
        return pd.DataFrame(index=basins, columns=names, dtype=np.float64)
    tables = []
    if cfg.static_attributes:
        loader = _instance(cfg)
        loader.basins = basins
        tables.append(loader._load_attributes())
    if cfg.hydroatlas_attributes:
        tables.append(load_hydroatlas_attributes(cfg.data_dir, basins=basins))
    table = pd.concat(tables, axis=1).reindex(index=basins, columns=names)
    absent = [a for a in cfg.static_attributes + cfg.hydroatlas_attributes if table[a].isna().all()]
    if absent:
        LOGGER.warning(f"dataset: {cfg.dataset} has no values of {absent}: stored as missing.")
    try:
        return table.astype(np.float64)
    except ValueError as error:
        raise ValueError(f"Static attributes must be numbers: {error}.") from None


def _flush(output: Path, meta: store.StoreMeta, basins: list[str], attributes: pd.DataFrame, pending: Path) -> None:
    """Move loaded basins from ``pending/`` into a new chunk."""
    stacked = np.stack([np.load(_pending_file(pending, b)) for b in basins])  # [n, variables, days]
    if stacked.shape[1:] != (len(meta.variables), meta.days):
        raise ValueError(f"{pending} holds basins loaded for other variables or days than the store's (another "
                         f"--append ran in between): delete {pending} and pack again.")
    values = {v: stacked[:, i] for i, v in enumerate(meta.variables)}
    store.add_chunk(output, meta, basins, values, attributes.loc[basins, meta.attributes].to_numpy())
    for basin in basins:
        _pending_file(pending, basin).unlink()


def _load_basin(job: tuple[str, str]) -> str:
    """Read one basin with NH's dataset class and write its variables [variables, days] to ``pending/``."""
    basin, pending = job
    cfg, meta = _LOADER['cfg'], _LOADER['meta']
    frame = _LOADER['loader']._load_basin_data(basin)
    dates = pd.DatetimeIndex(meta.dates)
    if not isinstance(frame.index, pd.DatetimeIndex) or len(frame.index) > 2 and pd.infer_freq(frame.index[:3]) != 'D':
        raise ValueError(f"Basin {basin} of dataset: {cfg.dataset} is not daily data: the store holds days only.")
    frame = frame[~frame.index.duplicated()].reindex(dates)
    values = np.full((len(meta.variables), meta.days), np.nan, dtype=np.float32)
    for i, variable in enumerate(meta.variables):
        if variable in frame.columns:
            values[i] = frame[variable].to_numpy(dtype=np.float32)
    file = _pending_file(Path(pending), basin)
    temporary = file.with_suffix('.tmp.npy')
    np.save(temporary, values)
    temporary.replace(file)
    return basin


def _pool(jobs: int, config_file: Path, meta: store.StoreMeta):
    """A process pool whose workers each hold the dataset class's loader; a no-op context for ``jobs`` = 1."""
    if jobs == 1:
        _init_worker(config_file, meta)
        return _NoPool()
    return multiprocessing.get_context('spawn').Pool(jobs, initializer=_init_worker, initargs=(config_file, meta))


class _NoPool:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _init_worker(config_file: Path, meta: store.StoreMeta) -> None:
    cfg = Config(config_file)
    _LOADER.update({'cfg': cfg, 'meta': meta, 'loader': _instance(cfg)})


def _instance(cfg: Config):
    """NH's dataset class for ``cfg.dataset``, without its loading (only its file readers are used)."""
    dataset_class = registration.dataset_class(cfg.dataset)
    loader = dataset_class.__new__(dataset_class)
    loader.cfg, loader.basins = cfg, []
    return loader


def _pending_file(pending: Path, basin: str) -> Path:
    return pending / store.file_name(basin)


def _source_key(cfg: Config, basins: list[str], variables: list[str], attributes: list[str]) -> str:
    text = json.dumps([cfg.dataset, str(cfg.data_dir), basins, variables, attributes])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
