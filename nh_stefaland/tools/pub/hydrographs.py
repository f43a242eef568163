"""Hydrographs of the ``nh-stefaland pub`` report: for each model pair, observed and simulated flow of the basins at
the 10th, 50th and 90th percentile of the pair's NSE difference, over one hydrological year of the scored days.

The series come from the runs' ``test_results.p`` (:func:`scoring.daily_series`), on the days that every run of the
basin's fold predicts, as the metrics; a model with several seeds is drawn as the mean of its seeds' simulations.
"""
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from nh_stefaland.tools.pub import stats
from nh_stefaland.tools.pub.scoring import ENSEMBLE, FoldRun, daily_series

PERCENTILES = (10, 50, 90)
Series = dict[FoldRun, dict[str, pd.DataFrame]]  # daily_series of each run read so far


def percentile_basins(differences: pd.Series) -> list[tuple[int, str]]:
    """The basins at :data:`PERCENTILES` of ``differences`` (nearest rank, indexed by basin), each once, low first."""
    ordered = differences.sort_values(kind='stable')
    chosen: dict[str, int] = {}
    for percentile in PERCENTILES:
        rank = int(np.floor(percentile / 100 * (len(ordered) - 1) + 0.5))
        chosen.setdefault(ordered.index[rank], percentile)
    return [(percentile, basin) for basin, percentile in chosen.items()]


def hydrological_year(days: pd.DatetimeIndex, observed: pd.Series) -> int:
    """The latest hydrological year (1 October of the year before to 30 September) of ``days`` with at least 90 % of
    the observed days of the best-observed one: the last full year of a test period, else the best observed one.

    ``observed`` [days] holds NaN where nothing was observed; the year is named by its September.
    """
    years = days.year + (days.month >= 10)
    counts = pd.Series(observed.notna().to_numpy(), index=years).groupby(level=0).sum()
    return int(counts.index[counts >= 0.9 * counts.max()].max())


def write_hydrographs(runs: list[FoldRun], means: pd.DataFrame, pairs: list[tuple[str, str]],
                      report_dir: Path) -> tuple[list[str], list[str]]:
    """Draw one figure per pair into ``report_dir``: three basins (one axis each), all models on every axis.

    Parameters
    ----------
    runs : list[FoldRun]
        The finished final-stage runs whose metrics the report shows.
    means : pd.DataFrame
        One row per model and basin (:func:`stats.seed_means`).
    pairs : list[tuple[str, str]]
        Model pairs (A, B); the basins are chosen by NSE A − B.
    report_dir : Path
        Where the PNG files go.

    Returns
    -------
    tuple[list[str], list[str]]
        The report's markdown lines for the hydrographs and the names of the files written.
    """
    lines = ["## Hydrographs", "",
             "Per model pair, the basins at the 10th, 50th and 90th percentile of the NSE difference A − B: observed "
             "and simulated flow over the last hydrological year (October–September) with at least 90 % of the "
             "observations of the best observed one, on the days every model predicts. NSE over all scored days; a "
             "model with several seeds is drawn as the mean of its seeds.", ""]
    drawn = {run.label for run in runs}
    labels = [model for model in means['model'].unique() if model in drawn] + sorted(drawn - set(means['model']))
    cache: Series = {}
    files = []
    for model_a, model_b in pairs:
        differences = stats.nse_differences(means, model_a, model_b)
        if differences.empty:
            lines += [f"No basin predicted by both {model_a} and {model_b}: no hydrographs.", ""]
            continue
        name = f'hydrographs_{model_a}_vs_{model_b}.png'
        panels = [(percentile, basin, differences.loc[basin], _basin_series(runs, differences.loc[basin, 'fold'],
                                                                             basin, cache))
                  for percentile, basin in percentile_basins(differences['difference'])]
        _plot(panels, means, labels, (model_a, model_b), runs[0].target, report_dir / name)
        lines += [f"![Hydrographs {model_a} vs {model_b}]({name})", ""]
        files.append(name)
    return lines, files


def _basin_series(runs: list[FoldRun], fold: int, basin: str, cache: Series) -> pd.DataFrame:
    """Observed (``obs``) and each model's mean simulation [days, 1 + models] on the days every run of the fold
    predicts in ``basin``."""
    tables = {}
    for run in (run for run in runs if run.fold == fold):
        if run not in cache:
            cache[run] = daily_series(run)
        if basin in cache[run]:
            tables[run] = cache[run][basin]
    common = pd.DatetimeIndex(sorted(set.intersection(*(set(table.index) for table in tables.values()))))
    frame = pd.DataFrame({'obs': next(iter(tables.values()))['obs'].reindex(common)})
    for label in dict.fromkeys(run.label for run in tables):
        seeds = [table['sim'].reindex(common) for run, table in tables.items() if run.label == label]
        frame[label] = pd.concat(seeds, axis=1).mean(axis=1)
    return frame


def _plot(panels: list[tuple[int, str, pd.Series, pd.DataFrame]], means: pd.DataFrame, labels: list[str],
          pair: tuple[str, str], target: str, path: Path) -> None:
    """One axis per (percentile, basin, its NSE row, its series) of ``panels``."""
    figure = Figure(figsize=(10, 2.8 * len(panels) + 0.4), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    colours = colormaps['tab10']
    highlighted = {model.removesuffix(f'_{ENSEMBLE}') for model in pair}
    nse = means.set_index(['model', 'basin'])['NSE']
    for axis, (percentile, basin, row, series) in zip(axes, panels):
        year = hydrological_year(series.index, series['obs'])
        shown = series[(series.index.year + (series.index.month >= 10)) == year]
        axis.plot(shown.index, shown['obs'], color='black', linewidth=1.4, label='observed', zorder=5)
        for label in (label for label in labels if label in shown.columns):
            bold = label in highlighted
            axis.plot(shown.index, shown[label], color=colours(labels.index(label) % 10),
                      linewidth=1.3 if bold else 0.8, alpha=1.0 if bold else 0.6, zorder=4 if bold else 3,
                      label=f"{label} (NSE {nse.get((label, basin), np.nan):.2f})")
        axis.set_title(f"{percentile}th percentile of NSE {pair[0]} − {pair[1]}: {basin} (fold {row['fold']}), "
                       f"{pair[0]} {row['a']:.2f}, {pair[1]} {row['b']:.2f}; hydrological year {year - 1}/{year}",
                       fontsize=9)
        locator = AutoDateLocator()
        axis.xaxis.set_major_locator(locator)
        axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axis.set_ylabel(target)
        axis.grid(alpha=0.3)
        axis.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    figure.suptitle(f"{pair[0]} vs {pair[1]}: observed and simulated {target} of held-out basins", fontsize=11)
    figure.savefig(path, dpi=110)
