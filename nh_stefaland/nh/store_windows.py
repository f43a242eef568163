"""The windows of a store's period as arrays of runs, and a shuffled window order drawn without listing windows.

NH keeps one Python tuple per valid window (``lookup_table``) and its shuffling sampler one Python int per window:
at 10,000 basins × 34 years that is over a hundred million objects per process. Here the valid window ends of each
basin are kept as runs of consecutive days (most basins have a few), and :class:`WindowSampler` computes a
permutation of the windows block by block with a keyed Feistel network, so neither grows with the number of windows.
Finding the valid training windows reads every input of every basin; ``nh-stefaland pack`` saves those of its
config's training data in the store (``windows/<key>.npz``), and a run with the same basins, variables, period and
window length reads them instead of scanning (every ``torchrun`` rank would scan otherwise).
"""
import hashlib
import json
import math
import os
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from nh_stefaland.nh.store import Store

BASINS_PER_STEP = 256

BLOCK = 65_536  # windows whose order is computed at once
_ROUNDS = 4


class WindowIndex:
    """Valid window ends as runs: run r holds basin ``basin[r]``'s ends ``first_end[r]`` … ``first_end[r] +
    length[r] - 1`` (days since the period's first loaded day).

    Parameters
    ----------
    basin : np.ndarray
        Basin of each run, a position into the dataset's basins [R].
    first_end : np.ndarray
        First window end of each run [R].
    length : np.ndarray
        Windows in each run [R].
    """

    def __init__(self, basin: np.ndarray, first_end: np.ndarray, length: np.ndarray):
        self.basin = basin.astype(np.int32)
        self.first_end = first_end.astype(np.int32)
        self.offsets = np.concatenate([[0], np.cumsum(length, dtype=np.int64)])  # [R+1]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Basin position and window end of each item [n] (items in ``[0, len)``)."""
        run = np.searchsorted(self.offsets, items, side='right') - 1
        return self.basin[run], self.first_end[run] + (items - self.offsets[run]).astype(np.int32)

    def basins_with_windows(self) -> np.ndarray:
        """Positions of the basins that have at least one window, ascending."""
        return np.unique(self.basin)


def training_windows(store: Store, positions: np.ndarray, inputs: list[str], targets: list[str],
                     days: tuple[int, int, int], seq_length: int, predict_last_n: int) -> WindowIndex:
    """NH's valid training windows of the basins at store ``positions``: saved in the store for exactly these
    basins, variables, days and window length, or found by reading the store (:func:`scan_training_windows`)."""
    file = _saved_file(store, positions, inputs, targets, days, seq_length, predict_last_n)
    if file.is_file():
        with np.load(file) as saved:
            return WindowIndex(saved['basin'], saved['first_end'], saved['length'])
    return scan_training_windows(store, positions, inputs, targets, days, seq_length, predict_last_n)


def save_training_windows(store: Store, positions: np.ndarray, inputs: list[str], targets: list[str],
                          days: tuple[int, int, int], seq_length: int, predict_last_n: int) -> None:
    """Find the valid training windows of these basins and save them in the store (``windows/``)."""
    index = scan_training_windows(store, positions, inputs, targets, days, seq_length, predict_last_n)
    file = _saved_file(store, positions, inputs, targets, days, seq_length, predict_last_n)
    file.parent.mkdir(exist_ok=True)
    temporary = file.with_suffix('.tmp.npz')
    np.savez(temporary, basin=index.basin, first_end=index.first_end, length=np.diff(index.offsets))
    os.replace(temporary, file)


def scan_training_windows(store: Store, positions: np.ndarray, inputs: list[str], targets: list[str],
                          days: tuple[int, int, int], seq_length: int, predict_last_n: int) -> WindowIndex:
    """The valid training windows (:func:`valid_ends`) of the basins at store ``positions`` [N], read
    :data:`BASINS_PER_STEP` basins at a time; ``days``: the first loaded day, the period's first and its last."""
    first, start, last = days
    parts = []
    for step in range(0, len(positions), BASINS_PER_STEP):
        stored = positions[step:step + BASINS_PER_STEP]
        missing = np.zeros((len(stored), last - first + 1), dtype=bool)
        for variable in inputs:
            missing |= np.isnan(store.series(variable, stored, first, last))
        observed = np.zeros_like(missing)
        for target in targets:
            observed |= ~np.isnan(store.series(target, stored, first, last))
        observed[:, :start - first] = False
        parts.append(runs(valid_ends(missing, observed, seq_length, predict_last_n), first_basin=step))
    return WindowIndex(*(np.concatenate(column) for column in zip(*parts)))


def valid_ends(inputs_missing: np.ndarray, observed: np.ndarray | None, seq_length: int,
               predict_last_n: int) -> np.ndarray:
    """Which days can end a window, as NH's training dataset decides (``_validate_samples``).

    Parameters
    ----------
    inputs_missing : np.ndarray
        bool [N, L]: a dynamic input is missing on that day.
    observed : np.ndarray | None
        bool [N, L]: a target is observed on that day (within the period; warm-up days False); None: not required.
    seq_length, predict_last_n : int
        Window length T and the steps whose targets count.

    Returns
    -------
    np.ndarray
        bool [N, L]: at least T days up to the end, no missing input in the window and, when ``observed`` is given
        and ``predict_last_n`` > 0, a target observed in its last ``predict_last_n`` days.
    """
    valid = np.zeros(inputs_missing.shape, dtype=bool)
    valid[:, seq_length - 1:] = _window_count(inputs_missing, seq_length) == 0
    if observed is not None and predict_last_n > 0:
        valid[:, seq_length - 1:] &= _window_count(observed, predict_last_n)[:, seq_length - predict_last_n:] > 0
    return valid


def runs(valid: np.ndarray, first_basin: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True per row of ``valid`` [N, L]: (basin = row + ``first_basin``, first end, length), row-major."""
    edges = np.diff(np.pad(valid.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, columns = np.nonzero(edges)  # per row, a run's start (+1) and its stop (−1) in turns
    return rows[0::2] + first_basin, columns[0::2], columns[1::2] - columns[0::2]


class WindowSampler(Sampler[int]):
    """This process's share of a shuffled order of ``n`` windows, as ``DistributedSampler`` gives it, computed
    lazily: the order is a keyed permutation of ``[0, n)`` (seed and epoch), padded to a multiple of ``replicas``
    by wrapping around, and rank ``r`` takes positions ``r, r + replicas, …``.

    Parameters
    ----------
    n : int
        Number of windows.
    replicas, rank : int
        Number of processes and this one's rank.
    seed : int
        Seed of the permutation (the run's ``seed``; every rank the same).
    """

    def __init__(self, n: int, replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__()
        self.n, self.replicas, self.rank, self.seed = n, replicas, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """A new order every epoch, as ``DistributedSampler.set_epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.replicas)

    def __iter__(self) -> Iterator[int]:
        keys = np.random.SeedSequence([self.seed, self.epoch]).generate_state(_ROUNDS, dtype=np.uint64)
        total = len(self) * self.replicas
        for block in range(self.rank, total, BLOCK * self.replicas):
            positions = np.arange(block, min(block + BLOCK * self.replicas, total), self.replicas, dtype=np.uint64)
            yield from permute(positions % np.uint64(self.n), self.n, keys).tolist()


def permute(values: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of ``[0, n)`` applied to ``values`` (uint64): a balanced Feistel network on the smallest
    even number of bits that holds ``n``, repeated on the values it maps outside ``[0, n)`` (cycle walking)."""
    half = max(1, math.ceil(max(1, (n - 1).bit_length()) / 2))
    out = _feistel(values, half, keys)
    outside = out >= n
    while outside.any():
        out[outside] = _feistel(out[outside], half, keys)
        outside = out >= n
    return out


def _saved_file(store: Store, positions: np.ndarray, inputs: list[str], targets: list[str],
                days: tuple[int, int, int], seq_length: int, predict_last_n: int):
    text = json.dumps([[store.basins[p] for p in positions], inputs, targets, [int(d) for d in days], seq_length,
                       predict_last_n])
    return store.path / 'windows' / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"


def _feistel(values: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    mask = np.uint64((1 << half) - 1)
    left, right = values >> np.uint64(half), values & mask
    for key in keys:
        left, right = right, left ^ (_mix(right ^ key) & mask)
    return (left << np.uint64(half)) | right


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every output bit depends on every input bit."""
    with np.errstate(over='ignore'):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _window_count(flags: np.ndarray, width: int) -> np.ndarray:
    """Number of True flags in each window of ``width`` days ending on day ``width - 1`` … ``L - 1`` [N, L-width+1]."""
    counts = np.concatenate([np.zeros((flags.shape[0], 1), np.int32), np.cumsum(flags, axis=1, dtype=np.int32)], 1)
    return counts[:, width:] - counts[:, :-width]
