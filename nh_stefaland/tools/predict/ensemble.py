"""The members' predictions as one dataset: each member, the ensemble mean, spread and quantiles, input coverage.

A member's point prediction is its mean over samples (NH's choice for probabilistic heads). The ensemble mean and
spread are over the members' point predictions, and NaN on a day where any member is NaN: no member's gap is
filled by the others. Quantiles pool every member's samples (NH's samples of a probabilistic head, otherwise one
value per member) and need at least two values per day.
"""
import numpy as np
import pandas as pd
import xarray

from nh_stefaland.tools.predict.simulate import Simulation


def combine(simulations: list[Simulation], names: list[str], basins: list[str], dates: pd.DatetimeIndex,
            quantiles: list[float]) -> xarray.Dataset:
    """One dataset over (member, basin, time) and (quantile, basin, time).

    Returns
    -------
    xarray.Dataset
        ``members`` (member, basin, time), ``mean`` and, with several members, ``spread`` (basin, time);
        ``quantiles`` (quantile, basin, time) when every day has at least two values; ``input_coverage``
        (basin, time): the share of the members' dynamic inputs present on the day (0 where NH found no data).
    """
    members = np.full((len(simulations), len(basins), len(dates)), np.nan, dtype=np.float32)
    n_values = sum(_n_samples(simulation) for simulation in simulations)
    pooled = np.full((len(quantiles), len(basins), len(dates)), np.nan, dtype=np.float32)
    for row, basin in enumerate(basins):
        samples = []
        for index, simulation in enumerate(simulations):
            flows = simulation.flows.get(basin)
            values = (flows.reindex(date=dates).to_numpy() if flows is not None
                      else np.full((len(dates), _n_samples(simulation)), np.nan))  # [T, S]
            members[index, row] = values.mean(axis=1)
            samples.append(values)
        if n_values > 1 and quantiles:
            values = np.concatenate(samples, axis=1)  # [T, ΣS]
            complete = ~np.isnan(values).any(axis=1)
            pooled[:, row, complete] = np.quantile(values[complete], quantiles, axis=1)
    dataset = xarray.Dataset(coords={'member': names, 'basin': basins, 'time': dates})
    dataset['members'] = (('member', 'basin', 'time'), members)
    dataset['mean'] = (('basin', 'time'), members.mean(axis=0))
    if len(simulations) > 1:
        dataset['spread'] = (('basin', 'time'), members.std(axis=0, ddof=1))
    if n_values > 1 and quantiles:
        dataset = dataset.assign_coords(quantile=quantiles)
        dataset['quantiles'] = (('quantile', 'basin', 'time'), pooled)
    dataset['input_coverage'] = (('basin', 'time'), input_coverage(simulations, basins, dates))
    return dataset


def input_coverage(simulations: list[Simulation], basins: list[str], dates: pd.DatetimeIndex) -> np.ndarray:
    """Share [N, T] of the dynamic inputs (of all members together) that exist on each day of each basin."""
    coverage = np.zeros((len(basins), len(dates)), dtype=np.float32)
    for row, basin in enumerate(basins):
        frames = [simulation.available[basin] for simulation in simulations if basin in simulation.available]
        if frames:
            available = pd.concat(frames, axis=1)
            available = available.loc[:, ~available.columns.duplicated()].reindex(dates, fill_value=False)
            coverage[row] = available.to_numpy(dtype=np.float32).mean(axis=1)
    return coverage


def _n_samples(simulation: Simulation) -> int:
    return next((flows.sizes['samples'] for flows in simulation.flows.values()), 1)
