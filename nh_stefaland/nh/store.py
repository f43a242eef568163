"""The packed data store: one daily grid of basins × days per variable, as plain NumPy files in chunks of basins.

Layout of a store folder (written by ``nh-stefaland pack``, read by :mod:`nh_stefaland.nh.store_dataset`)::

    store.json            format version, first day and number of days, variables, attributes, chunk size, sources
    index.json            basin ids in store order, and each basin's chunk and row
    attributes.npy        static attributes [N, C] float64, rows in store order, NaN where a basin lacks one
    statistics.json       normalisation statistics of the packing configs' training data (see store_statistics)
    chunks/c00000/<variable>.npy    unnormalised daily values [basins of the chunk, days] float32, NaN = missing
                                    (the variable's name percent-encoded: ``/`` → ``%2F``)
    pending/              basins loaded but not yet in a chunk (resuming starts from them)

``.npy`` files need no dependency beyond NumPy (``np.load(file, mmap_mode='r')`` opens any of them); a basin's days
are contiguous, so a window is one positioned read per variable, served from the operating system's page cache,
which every process on a node shares; and a chunk is written once, then renamed into place, so a store is never
left half-written. A variable a chunk has no file for (added by a later ``pack --append``) reads as missing.
"""
import json
import os
import resource
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

FORMAT = 'nh_stefaland.store'
VERSION = 1
# files a store keeps open per process: a quarter of the process's limit
_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
OPEN_FILES = max(16, (16_384 if _LIMIT == resource.RLIM_INFINITY else _LIMIT) // 4)


@dataclass
class StoreMeta:
    """What ``store.json`` holds."""
    start: str
    days: int
    variables: list[str]
    attributes: list[str]
    chunk_basins: int
    sources: list[dict] = field(default_factory=list)

    @property
    def dates(self) -> np.ndarray:
        """The store's days, datetime64[ns] [days]."""
        return pd.date_range(self.start, periods=self.days, freq='D').to_numpy()

    @property
    def end(self) -> str:
        return str(pd.Timestamp(self.start) + pd.Timedelta(days=self.days - 1))[:10]


def is_store(path: Path) -> bool:
    """Whether ``path`` is a store folder."""
    return (Path(path) / 'store.json').is_file()


def read_meta(path: Path) -> StoreMeta:
    """The ``store.json`` of the store at ``path``.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a store.
    ValueError
        If it is a store of another format version.
    """
    path = Path(path)
    if not is_store(path):
        raise FileNotFoundError(f"stefaland_store={path} is not a store made by `nh-stefaland pack` "
                                f"(no store.json).")
    raw = json.loads((path / 'store.json').read_text())
    if raw.get('format') != FORMAT or raw.get('version') != VERSION:
        raise ValueError(f"{path} is a store of format {raw.get('format')} version {raw.get('version')}; this "
                         f"nh_stefaland reads {FORMAT} version {VERSION}. Pack it again.")
    return StoreMeta(**{k: v for k, v in raw.items() if k not in ('format', 'version')})


def write_meta(path: Path, meta: StoreMeta) -> None:
    """Write ``store.json`` atomically."""
    write_json(Path(path) / 'store.json', {'format': FORMAT, 'version': VERSION, **meta.__dict__})


def read_index(path: Path) -> dict[str, list]:
    """``index.json``: ``basins``, ``chunk``, ``row`` (empty lists for a new store)."""
    file = Path(path) / 'index.json'
    return json.loads(file.read_text()) if file.is_file() else {'basins': [], 'chunk': [], 'row': []}


def add_chunk(path: Path, meta: StoreMeta, basins: list[str], values: dict[str, np.ndarray],
              attributes: np.ndarray) -> None:
    """Write one chunk of basins and add them to the index.

    Parameters
    ----------
    path : Path
        The store folder.
    meta : StoreMeta
        The store's metadata (its variables and attributes name the columns given here).
    basins : list[str]
        Ids of the chunk's basins, none already in the store.
    values : dict[str, np.ndarray]
        Unnormalised daily values per variable [len(basins), meta.days] float32.
    attributes : np.ndarray
        Static attributes [len(basins), len(meta.attributes)] float64.
    """
    path = Path(path)
    index = read_index(path)
    chunk = max(index['chunk'], default=-1) + 1
    target = path / 'chunks' / f'c{chunk:05d}'
    staging = path / 'chunks' / f'.c{chunk:05d}.tmp'
    staging.mkdir(parents=True, exist_ok=True)
    for variable, array in values.items():
        np.save(staging / file_name(variable), np.ascontiguousarray(array, dtype=np.float32))
    os.replace(staging, target)
    previous = _read_attributes(path, len(index['basins']), meta.attributes)
    _save_npy(path / 'attributes.npy', np.concatenate([previous, attributes.astype(np.float64)]))
    index = {'basins': index['basins'] + list(basins), 'chunk': index['chunk'] + [chunk] * len(basins),
             'row': index['row'] + list(range(len(basins)))}
    write_json(path / 'index.json', index)


def remove_orphan_chunks(path: Path) -> None:
    """Delete chunk folders the index does not reference (a pack stopped between writing a chunk and indexing it)."""
    referenced = {f'c{c:05d}' for c in read_index(path)['chunk']}
    for folder in (Path(path) / 'chunks').glob('*'):
        if folder.name not in referenced:
            for file in folder.glob('*'):
                file.unlink()
            folder.rmdir()


class Store:
    """A store opened for reading: index, dates, attributes, and reads of any basins' days.

    Parameters
    ----------
    path : Path
        The store folder.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        index = read_index(self.path)
        self.basins = index['basins']
        self.rows = {basin: position for position, basin in enumerate(self.basins)}
        self.chunk_of = np.asarray(index['chunk'], dtype=np.int32)  # [N]
        self.row_in_chunk = np.asarray(index['row'], dtype=np.int32)  # [N]
        self.dates = self.meta.dates  # [days]
        self.attributes = pd.DataFrame(_read_attributes(self.path, len(self.basins), self.meta.attributes),
                                       index=self.basins, columns=self.meta.attributes)
        self._layouts = {}
        self._descriptors = OrderedDict()  # (chunk, variable) → open file, least recently used first

    def stored(self, chunk: int, variable: str) -> bool:
        """Whether a chunk has a file for ``variable`` (a variable added after the chunk was written has none)."""
        return self._layout(chunk, variable) is not None

    def read(self, variable: str, positions: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
        """Unnormalised values of ``variable``: ``length`` days from store day ``starts[i]`` of the basin at store
        position ``positions[i]``.

        Each row is one positioned read (``preadv``) through the operating system's page cache, which all processes
        on a node share; nothing is mapped into the process, so its resident memory does not grow with the store.
        Positioned reads do not move a file's offset, so loader workers may share the open files.

        Returns
        -------
        np.ndarray
            float32 [len(positions), length], NaN where missing or not stored.
        """
        out = np.full((len(positions), length), np.nan, dtype=np.float32)
        chunks, rows = self.chunk_of[positions].tolist(), self.row_in_chunk[positions].tolist()
        for i, (chunk, row, start) in enumerate(zip(chunks, rows, np.asarray(starts).tolist())):
            layout = self._layout(chunk, variable)
            if layout is not None:
                offset, days = layout
                os.preadv(self._descriptor(chunk, variable), [out[i]], offset + (row * days + start) * out.itemsize)
        return out

    def series(self, variable: str, positions: np.ndarray, first: int, last: int) -> np.ndarray:
        """Unnormalised values of ``variable`` for basins at ``positions``, days ``first`` to ``last`` inclusive
        (float32 [len(positions), last - first + 1], NaN where missing or not stored)."""
        return self.read(variable, positions, np.full(len(positions), first), last - first + 1)

    def day(self, date: pd.Timestamp) -> int:
        """Position of ``date`` on the store's day axis (may lie outside ``[0, days)``)."""
        return int((pd.Timestamp(date).normalize() - pd.Timestamp(self.meta.start)).days)

    def _layout(self, chunk: int, variable: str) -> tuple[int, int] | None:
        """Data offset and days per row of one chunk's variable file (read once); None when not stored."""
        key = (chunk, variable)
        if key not in self._layouts:
            file = self._file(chunk, variable)
            self._layouts[key] = None
            if file.is_file():
                with file.open('rb') as stream:
                    version = np.lib.format.read_magic(stream)
                    header = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    shape, fortran, dtype = header(stream) if header else ((), True, None)
                    if fortran or dtype != np.float32 or len(shape) != 2:
                        raise ValueError(f"{file} is not a [basins, days] float32 array: the store is damaged.")
                    self._layouts[key] = (stream.tell(), shape[1])
        return self._layouts[key]

    def _descriptor(self, chunk: int, variable: str) -> int:
        """An open descriptor of one chunk's variable file; the least recently used ones are closed beyond
        :data:`OPEN_FILES`."""
        key = (chunk, variable)
        descriptor = self._descriptors.pop(key, None)
        if descriptor is None:
            descriptor = os.open(self._file(chunk, variable), os.O_RDONLY)
            if len(self._descriptors) >= OPEN_FILES:
                os.close(self._descriptors.popitem(last=False)[1])
        self._descriptors[key] = descriptor
        return descriptor

    def _file(self, chunk: int, variable: str) -> Path:
        return self.path / 'chunks' / f'c{chunk:05d}' / file_name(variable)

    def __del__(self, close=os.close):  # ``close`` bound now: at interpreter exit ``os`` may be gone
        for descriptor in getattr(self, '_descriptors', {}).values():
            close(descriptor)


@lru_cache(maxsize=4)
def open_store(path: str, stamp: float) -> Store:
    """The :class:`Store` at ``path``, opened once per process while its index is unchanged (``stamp``: the
    index's modification time)."""
    return Store(Path(path))


def opened(path: Path) -> Store:
    """The store at ``path``, opened once per process and reopened when it has grown."""
    index = Path(path) / 'index.json'
    read_meta(path)
    return open_store(str(Path(path).resolve()), index.stat().st_mtime if index.is_file() else 0.0)


def file_name(name: str) -> str:
    """The ``.npy`` file name of a variable or basin id (``/`` and other unsafe characters percent-encoded)."""
    return f"{quote(name, safe='')}.npy"


def _read_attributes(path: Path, n_basins: int, names: list[str]) -> np.ndarray:
    """``attributes.npy`` widened with NaN columns for attributes added after it was written."""
    file = path / 'attributes.npy'
    stored = np.load(file) if file.is_file() else np.empty((0, 0))
    if stored.shape[0] != n_basins:
        raise ValueError(f"{file} holds {stored.shape[0]} basins, the store's index.json {n_basins}: the store is "
                         f"damaged; pack it again.")
    pad = np.full((n_basins, len(names) - stored.shape[1]), np.nan)
    return np.concatenate([stored, pad], axis=1)


def _save_npy(file: Path, array: np.ndarray) -> None:
    temporary = file.with_suffix('.tmp.npy')
    np.save(temporary, array)
    os.replace(temporary, file)


def write_json(file: Path, content: dict) -> None:
    temporary = file.with_suffix('.tmp')
    temporary.write_text(json.dumps(content, indent=1) + '\n')
    os.replace(temporary, file)
