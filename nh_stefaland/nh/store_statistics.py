"""The normalisation statistics of a store's training data, in NH's scaler format, computed chunk by chunk.

NH centres and scales each dynamic variable with its mean and standard deviation (ddof 0) over every training basin's
loaded days (the period and its warm-up; targets only from the period's first day), and each attribute with its
mean and standard deviation (ddof 1) over the training basins. Here the same is computed a chunk of basins at a time
in float64, so memory does not grow with the corpus; NH sums in float32, so the two agree to float32 rounding
(relative ~1e-6), not bit for bit. ``nh-stefaland pack`` stores the statistics of its config's training data in
``statistics.json``; a run whose training basins, period and variables are the same reads them from there.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray

from neuralhydrology.datautils.utils import attributes_sanity_check

from nh_stefaland.nh.store import Store, write_json

BASINS_PER_STEP = 256


def fingerprint(basins: list[str], variables: list[str], targets: list[str], days: tuple[int, int, int]) -> str:
    """Key of one set of statistics: the training basins, variables, targets and (first loaded, first, last) day."""
    text = json.dumps([sorted(basins), variables, targets, [int(d) for d in days]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def feature_statistics(store: Store, positions: np.ndarray, variables: list[str], targets: list[str],
                       days: tuple[int, int, int], disable_pbar: bool = True) -> dict[str, xarray.Dataset]:
    """NH's ``xarray_feature_center``/``xarray_feature_scale`` of the training data, from the store when it holds
    them for exactly these basins, variables and days, else computed (and not stored).

    Parameters
    ----------
    store : Store
        The opened store.
    positions : np.ndarray
        Store positions of the training basins [N].
    variables, targets : list[str]
        Every loaded dynamic variable (inputs and targets), and the targets among them.
    days : tuple[int, int, int]
        Store days of the first loaded day (warm-up), the period's first and its last day.
    """
    key = fingerprint([store.basins[p] for p in positions], variables, targets, days)
    saved = read_saved(store.path).get(key)
    if saved is None:
        saved = _compute(store, positions, variables, targets, days)
    return {name: xarray.Dataset({v: ((), np.float32(saved[name][v])) for v in variables})
            for name in ('xarray_feature_center', 'xarray_feature_scale')}


def save_statistics(store: Store, positions: np.ndarray, variables: list[str], targets: list[str],
                    days: tuple[int, int, int]) -> None:
    """Compute the statistics of this training data and add them to the store's ``statistics.json``."""
    key = fingerprint([store.basins[p] for p in positions], variables, targets, days)
    saved = read_saved(store.path)
    saved[key] = _compute(store, positions, variables, targets, days)
    write_json(store.path / 'statistics.json', saved)


def read_saved(path: Path) -> dict:
    """The statistics a store holds, by :func:`fingerprint`."""
    file = Path(path) / 'statistics.json'
    return json.loads(file.read_text()) if file.is_file() else {}


def attribute_statistics(attributes: pd.DataFrame) -> dict[str, pd.Series]:
    """NH's ``attribute_means``/``attribute_stds`` of the training basins' attributes (columns alphabetical),
    after NH's check that every attribute varies.

    Raises
    ------
    RuntimeError
        NH's error naming an attribute with zero or undefined spread.
    """
    attributes_sanity_check(df=attributes)
    return {'attribute_means': attributes.mean(), 'attribute_stds': attributes.std()}


def _compute(store: Store, positions: np.ndarray, variables: list[str], targets: list[str],
             days: tuple[int, int, int]) -> dict[str, dict[str, float]]:
    first, start, last = days
    warmup = start - first
    steps = [positions[i:i + BASINS_PER_STEP] for i in range(0, len(positions), BASINS_PER_STEP)]
    center, scale = {}, {}
    for variable in variables:
        def values(step: np.ndarray) -> np.ndarray:
            block = store.series(variable, step, first, last)
            if variable in targets:
                block[:, :warmup] = np.nan
            return block

        total, count = 0.0, 0
        for step in steps:
            block = values(step)
            total += float(np.nansum(block, dtype=np.float64))
            count += int(np.count_nonzero(~np.isnan(block)))
        mean = total / count if count else np.nan
        squares = sum(float(np.nansum((values(step).astype(np.float64) - mean) ** 2)) for step in steps)
        center[variable] = float(np.float32(mean))
        scale[variable] = float(np.float32(np.sqrt(squares / count))) if count else np.nan
    return {'xarray_feature_center': center, 'xarray_feature_scale': scale}
