"""Held-out metrics of every run, computed on the days that every compared run predicts in a basin.

NH's tester scores a window model from ``test_start_date + predict_last_n − 1`` (the first window whose predicted
steps start at ``test_start_date``), StefaLand's strided tester from ``test_start_date``; NH's ``test_metrics.csv`` of
two models therefore cover different days. Here every metric of every run (and of each seed ensemble) is recomputed
from the run's ``test_results.p`` with NH's own metric functions, on the intersection of the days with a prediction of
every run of the basin's fold.
"""
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray
from ruamel.yaml import YAML

from neuralhydrology.evaluation.metrics import calculate_metrics
from neuralhydrology.utils.errors import AllNaNError

from nh_stefaland.tools.pub.lookahead import future_view

LOGGER = logging.getLogger(__name__)

# metrics of every held-out basin, with NH's names (FHV/FLV: bias of high/low flows in %)
REPORT_METRICS = ('NSE', 'KGE', 'RMSE', 'Pearson-r', 'FHV', 'FLV')
ENSEMBLE = 'ensemble'  # the seed of a seed ensemble's rows


@dataclass(frozen=True)
class FoldRun:
    """One finished final-stage run: model label, fold, seed index, the NH results it left and how many days of
    forcing after a scored day its prediction of that day reads (:mod:`.lookahead`; None: not known)."""
    label: str
    fold: int
    seed: int
    results_file: Path
    target: str
    clip_to_zero: bool
    future_days: int | None = None
    future_reason: str = ''


def daily_series(run: FoldRun) -> dict[str, pd.DataFrame]:
    """Per basin, the run's observed and simulated target per day (``obs``, ``sim``; days without a prediction out).

    The last time step of each row is the one NH scores; the mean over samples for sampled heads (as NH's tester);
    negative simulations clipped to zero when the run's config clips the target.
    """
    with run.results_file.open('rb') as stream:
        results = pickle.load(stream)
    series = {}
    for basin, frequencies in results.items():
        frame = next(iter(frequencies.values()))['xr']
        last = frame.isel(time_step=-1)
        simulation = last[f'{run.target}_sim']
        if 'samples' in simulation.dims:
            simulation = simulation.mean(dim='samples')
        table = pd.DataFrame({'obs': last[f'{run.target}_obs'].values, 'sim': simulation.values},
                             index=pd.DatetimeIndex(last['date'].values, name='date'))
        if run.clip_to_zero:
            table['sim'] = table['sim'].clip(lower=0)
        series[str(basin)] = table[table['sim'].notna()]
    return series


def score_folds(runs: list[FoldRun], folds: pd.DataFrame) -> pd.DataFrame:
    """Metrics per run and held-out basin on the days every run of the fold predicts, plus seed-ensemble rows.

    Parameters
    ----------
    runs : list[FoldRun]
        The finished final-stage runs.
    folds : pd.DataFrame
        The output directory's folds.csv (``basin``, ``fold``, ``group``).

    Returns
    -------
    pd.DataFrame
        Columns ``basin, fold, group, model, seed, days`` and :data:`REPORT_METRICS`; ``days`` counts the common days
        with an observation, the days the metrics score (0, and NaN metrics, for a basin without observations). A
        model with more than one seed also gets rows ``<label>_ensemble`` (seed ``ensemble``): the mean simulation of
        its seeds.
    """
    groups = folds.groupby('fold')['group'].first()
    rows = []
    for fold in sorted({run.fold for run in runs}):
        fold_runs = [run for run in runs if run.fold == fold]
        series = {run: daily_series(run) for run in fold_runs}
        for basin in sorted(set().union(*(set(s) for s in series.values()))):
            members = {run: s[basin] for run, s in series.items() if basin in s}
            common = sorted(set.intersection(*(set(table.index) for table in members.values())))
            common = pd.DatetimeIndex(common)
            days = int(next(iter(members.values()))['obs'].reindex(common).notna().sum())
            for run, table in members.items():
                rows.append({'basin': basin, 'fold': fold, 'group': groups.get(fold, ''), 'model': run.label,
                             'seed': str(run.seed), 'days': days,
                             **_metrics(table['obs'].reindex(common), table['sim'].reindex(common), basin)})
            for label in dict.fromkeys(run.label for run in members):
                seeds = [run for run in members if run.label == label]
                if len(seeds) > 1:
                    mean = pd.concat([members[run]['sim'].reindex(common) for run in seeds], axis=1).mean(axis=1)
                    rows.append({'basin': basin, 'fold': fold, 'group': groups.get(fold, ''),
                                 'model': f'{label}_{ENSEMBLE}', 'seed': ENSEMBLE, 'days': days,
                                 **_metrics(members[seeds[0]]['obs'].reindex(common), mean, basin)})
    columns = ['basin', 'fold', 'group', 'model', 'seed', 'days', *REPORT_METRICS]
    return pd.DataFrame(rows, columns=columns)


def read_run(directory: Path, status: dict, fold: int, seed: int, results_file: Path) -> FoldRun:
    """A :class:`FoldRun` from a run's status and its NH run folder's config (target, clipping, later days read)."""
    run_dir = (directory / status['run_dir']).resolve()
    cfg = YAML(typ='safe').load((run_dir / 'config.yml').read_text())
    target = status['target']
    days, reason = future_view(run_dir / 'config.yml')
    return FoldRun(label=status['label'], fold=fold, seed=seed, results_file=results_file, target=target,
                   clip_to_zero=target in (cfg.get('clip_targets_to_zero') or []), future_days=days,
                   future_reason=reason)


def _metrics(obs: pd.Series, sim: pd.Series, basin: str) -> dict[str, float]:
    """NH's metrics of one daily series (NaN for all of them when nothing is observed on the common days)."""
    dates = pd.DatetimeIndex(obs.index, name='date')
    observed = xarray.DataArray(obs.to_numpy(dtype=float), coords={'date': dates}, dims='date')
    simulated = xarray.DataArray(sim.to_numpy(dtype=float), coords={'date': dates}, dims='date')
    if len(dates) == 0 or observed.isnull().all():
        return {metric: np.nan for metric in REPORT_METRICS}
    try:
        return calculate_metrics(observed, simulated, metrics=list(REPORT_METRICS), resolution='1D')
    except AllNaNError as error:
        LOGGER.warning(f"Basin {basin}: {error}")
        return {metric: np.nan for metric in REPORT_METRICS}
