"""How far a basin's static attributes lie from those of the basins a model was trained on.

Attributes are normalised with the run's scaler (the training basins' means and standard deviations). A basin's
distance to a training basin is the root mean square of the differences over the attributes both have; its
``attribute_distance`` is the mean distance to its k nearest training basins. For scale, each training basin's own
distance to its k nearest *other* training basins gives the reference distribution, and ``distance_percentile`` says
where a basin falls in it: at 50 a basin is as close to the training set as a typical training basin, above 95 it is
farther than almost all of them. An attribute outside the training basins' range is named per basin.
"""
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)


@dataclass
class Applicability:
    """Per-basin applicability of a model.

    Attributes
    ----------
    distance : pd.Series
        Mean normalised distance to the k nearest training basins, per basin.
    percentile : pd.Series
        Percentile of ``distance`` among the training basins' own leave-one-out distances (0–100).
    outside : pd.Series
        Per basin, the attributes outside the training basins' range, comma-separated ('' when none).
    neighbours : int
        k.
    """
    distance: pd.Series
    percentile: pd.Series
    outside: pd.Series
    neighbours: int

    def summary(self) -> str:
        """A few lines for the log: how many basins lie far from the training basins, and which attributes."""
        far = self.percentile[self.percentile > 95]
        lines = [f"Attribute distance to the {self.neighbours} nearest training basins: median "
                 f"{self.distance.median():.2f} (percentile among training basins {self.percentile.median():.0f}); "
                 f"{len(far)} of {len(self.distance)} basins lie farther than 95 % of the training basins"
                 + (f": {', '.join(far.sort_values(ascending=False).index[:10])}"
                    + (' …' if len(far) > 10 else '') if len(far) else '.')]
        outside = self.outside[self.outside != '']
        if len(outside):
            counts = pd.Series([name for names in outside for name in names.split(',')]).value_counts()
            lines.append(f"{len(outside)} basins have attributes outside the training range, most often "
                         + ', '.join(f"{name} ({count})" for name, count in counts.head(5).items()) + '.')
        return '\n'.join(lines)


def applicability(attributes: pd.DataFrame, training: pd.DataFrame, means: pd.Series, stds: pd.Series,
                  neighbours: int = 5) -> Applicability:
    """Distances of ``attributes`` (basins × attributes) to ``training`` (training basins × the same attributes).

    Parameters
    ----------
    attributes : pd.DataFrame
        Raw attributes of the basins to predict, NaN where missing.
    training : pd.DataFrame
        Raw attributes of the training basins.
    means, stds : pd.Series
        The run's normalisation of each attribute.
    neighbours : int
        k, the number of nearest training basins averaged.

    Raises
    ------
    ValueError
        If there are fewer than two training basins.
    """
    columns = list(attributes.columns)
    if len(training) < 2:
        raise ValueError(f"The applicability check needs at least two training basins, got {len(training)}.")
    if len(training) <= neighbours:
        LOGGER.warning(f"Only {len(training)} training basins: the attribute distance averages the "
                       f"{len(training) - 1} nearest instead of {neighbours}.")
        neighbours = len(training) - 1
    scale = stds[columns].replace(0.0, 1.0)
    basins = ((attributes[columns] - means[columns]) / scale).to_numpy(dtype=float)  # [N, C]
    reference = ((training[columns] - means[columns]) / scale).to_numpy(dtype=float)  # [M, C]
    distance = _nearest(_distances(basins, reference), neighbours)  # [N]
    own = _distances(reference, reference)
    np.fill_diagonal(own, np.inf)
    reference_distance = np.sort(_nearest(own, neighbours))  # [M]
    percentile = 100.0 * np.searchsorted(reference_distance, distance, side='right') / len(reference_distance)
    low, high = np.nanmin(reference, axis=0), np.nanmax(reference, axis=0)  # [C]
    outside = (basins < low) | (basins > high)  # [N, C]
    names = [','.join(np.array(columns)[row]) for row in outside]
    index = attributes.index
    return Applicability(distance=pd.Series(distance, index=index), percentile=pd.Series(percentile, index=index),
                         outside=pd.Series(names, index=index), neighbours=neighbours)


def _distances(left: np.ndarray, right: np.ndarray, chunk: int = 256) -> np.ndarray:
    """RMS difference [N, M] over the attributes both rows have (NaN-aware), ``chunk`` rows of ``left`` at a time."""
    blocks = []
    for start in range(0, len(left), chunk):
        differences = left[start:start + chunk, None, :] - right[None, :, :]  # [n, M, C]
        blocks.append(np.sqrt(np.nanmean(differences ** 2, axis=-1)))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(right)))


def _nearest(distances: np.ndarray, neighbours: int) -> np.ndarray:
    """Mean of each row's k smallest distances [N]."""
    return np.sort(distances, axis=1)[:, :neighbours].mean(axis=1)
