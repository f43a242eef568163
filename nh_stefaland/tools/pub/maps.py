"""Maps of the ``nh-stefaland pub`` report: held-out NSE per basin at the gauge, and paired differences per pair.

The gauges' ``gauge_lat``/``gauge_lon`` come from the dataset's attributes (NH's loader of the first model's
dataset); plain lat/lon axes, no basemap. A dataset without them gives a note in the report instead of maps.
"""
import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from nh_stefaland.tools.pub import folds as pub_folds, stats

LOGGER = logging.getLogger(__name__)

COORDINATES = ('gauge_lat', 'gauge_lon')
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '<', 'h', '>', 'p', '*')  # one per fold (repeated after 12)
NSE_MAP = 'nse_map.png'


def basin_coordinates(settings: dict, basins: list[str]) -> tuple[pd.DataFrame | None, str]:
    """Gauge latitude and longitude of ``basins`` from the first model's dataset, or why there are none.

    Returns
    -------
    tuple[pd.DataFrame | None, str]
        Columns ``lat``, ``lon`` indexed by basin (basins without both left out) and ''; or None and the reason.
    """
    label, model = next(iter(settings['models'].items()))
    try:
        cfg = pub_folds.model_config(model, settings.get('data_dir'))
        attributes = pub_folds.load_attributes(cfg, basins, 'The maps')
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        return None, f"the attributes of model '{label}''s dataset could not be read ({type(error).__name__}: {error})."
    missing = [name for name in COORDINATES if name not in attributes.columns]
    if missing:
        return None, f"the attributes of dataset `{cfg.dataset}` in `{cfg.data_dir}` have no {', '.join(missing)}."
    coordinates = attributes[list(COORDINATES)].apply(pd.to_numeric, errors='coerce').dropna()
    coordinates = coordinates.set_axis(['lat', 'lon'], axis=1)
    coordinates.index = coordinates.index.astype(str)
    return coordinates, ''


def write_maps(settings: dict, means: pd.DataFrame, pairs: list[tuple[str, str]],
               report_dir: Path) -> tuple[list[str], list[str]]:
    """Draw the NSE map of all models and one difference map per pair into ``report_dir``.

    Parameters
    ----------
    settings : dict
        The output directory's pub.json (models, ``data_dir``).
    means : pd.DataFrame
        One row per model and basin (:func:`stats.seed_means`).
    pairs : list[tuple[str, str]]
        Model pairs (A, B) to draw as A − B.
    report_dir : Path
        Where the PNG files go.

    Returns
    -------
    tuple[list[str], list[str]]
        The report's markdown lines for the maps and the names of the files written.
    """
    lines = ["## Maps", ""]
    coordinates, reason = basin_coordinates(settings, sorted(means['basin'].unique()))
    if coordinates is None:
        LOGGER.warning(f"No maps in the report: {reason}")
        return lines + [f"No maps: {reason}", ""], []
    placed = means[means['basin'].isin(coordinates.index)]
    unplaced = means['basin'].nunique() - placed['basin'].nunique()
    lines += [f"Held-out NSE of each model at its gauge (seed means; red: below 0)"
              + (f"; {unplaced} basins without coordinates are left out." if unplaced else "."), "",
              f"![NSE per basin and model]({NSE_MAP})", "",
              "Per model pair, NSE A − B in each basin both predicted (blue: A better; NSE below −1 drawn at −1, "
              "colour limits ± the 95th percentile of |A − B|; marker shape: held-out fold), with the share of "
              "basins where A is better in the title.", ""]
    _plot_nse_map(placed, coordinates, report_dir / NSE_MAP)
    files = [NSE_MAP]
    for model_a, model_b in pairs:
        table = stats.nse_differences(placed, model_a, model_b).join(coordinates, how='inner')
        if table.empty:
            lines += [f"No basin predicted by both {model_a} and {model_b}: no difference map.", ""]
            continue
        name = f'nse_difference_{model_a}_vs_{model_b}.png'
        _plot_difference_map(table, coordinates, model_a, model_b, report_dir / name)
        lines += [f"![NSE {model_a} − {model_b} per basin]({name})", ""]
        files.append(name)
    return lines, files


def marker_size(n_basins: int) -> float:
    """Marker area (points²) that keeps 30 basins visible and 3,000 apart."""
    return float(np.clip(9000 / max(n_basins, 1), 6, 60))


def _plot_nse_map(means: pd.DataFrame, coordinates: pd.DataFrame, path: Path) -> None:
    models = list(means['model'].unique())
    columns = min(len(models), 3)
    rows = -(-len(models) // columns)
    width, height = _panel_size(coordinates)
    figure = Figure(figsize=(width * columns + 1.2, height * rows + 0.6), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    colours = colormaps['viridis'].with_extremes(under='#d62728')
    for axis, model in itertools.zip_longest(axes.flat, models):
        if model is None:
            axis.set_visible(False)
            continue
        rows_of_model = means[means['model'] == model].set_index('basin').join(coordinates, how='inner')
        nse = rows_of_model['NSE'].to_numpy(dtype=float)
        finite = np.isfinite(nse)
        points = axis.scatter(rows_of_model['lon'][finite], rows_of_model['lat'][finite], c=nse[finite],
                              cmap=colours, norm=Normalize(0, 1), s=marker_size(len(coordinates)),
                              **_edges(len(coordinates)))
        median = np.median(nse[finite]) if finite.any() else np.nan
        axis.set_title(f"{model}: median NSE {median:.2f}, {(nse[finite] < 0).mean():.0%} below 0", fontsize=10)
        _geographic_axes(axis, coordinates)
    figure.colorbar(points, ax=axes, extend='min', shrink=0.8, label='NSE (held-out basins; red: below 0)')
    figure.savefig(path, dpi=130)


def _plot_difference_map(table: pd.DataFrame, coordinates: pd.DataFrame, model_a: str, model_b: str,
                         path: Path) -> None:
    """``table``: per basin ``fold``, ``group``, ``a``, ``b``, ``difference``, ``lat``, ``lon``."""
    width, height = _panel_size(coordinates)
    figure = Figure(figsize=(width + 1.6, height + 1.3), layout='constrained')
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    # coloured by the difference of NSE clipped at −1 (as in the CDF): two failing models differ by chance
    table = table.assign(shown=table['a'].clip(lower=-1) - table['b'].clip(lower=-1))
    limit = max(float(np.quantile(np.abs(table['shown']), 0.95)), 0.05)
    norm = TwoSlopeNorm(vcenter=0, vmin=-limit, vmax=limit)
    table = table.iloc[np.argsort(np.abs(table['shown'].to_numpy()))]  # large differences on top
    handles = []
    for index, (fold, rows) in enumerate(table.groupby('fold', sort=True)):
        marker = MARKERS[index % len(MARKERS)]
        points = axis.scatter(rows['lon'], rows['lat'], c=rows['shown'], cmap='RdBu', norm=norm, marker=marker,
                              s=marker_size(len(coordinates)), **_edges(len(coordinates)))
        group = rows['group'].iloc[0]
        label = f"fold {fold}" if group in ('', 'random') or pd.isna(group) else f"fold {fold}: {group}"
        handles.append(Line2D([], [], linestyle='', marker=marker, color='0.4', label=f"{label} ({len(rows)})"))
    better = (table['difference'] > 0).mean()
    axis.set_title(f"NSE {model_a} − {model_b}: {model_a} better in {better:.0%} of {len(table)} basins "
                   f"(median {np.median(table['difference']):+.3f})", fontsize=10)
    _geographic_axes(axis, coordinates)
    figure.colorbar(points, ax=axis, extend='both', shrink=0.8,
                    label=f"NSE {model_a} − {model_b} (blue: {model_a} better)\nNSE below −1 drawn at −1")
    columns = 5 if max(len(handle.get_label()) for handle in handles) < 20 else 3  # region names are long
    figure.legend(handles=handles, loc='outside lower center', ncols=min(len(handles), columns), fontsize=8,
                  title='held-out fold (basins)', title_fontsize=8, frameon=False)
    figure.savefig(path, dpi=130, bbox_inches='tight')


def _edges(n_basins: int) -> dict:
    """Thin dark edges for few basins; none for many (they would hide the colours)."""
    return {'edgecolors': '0.2', 'linewidths': 0.4} if n_basins <= 300 else {'edgecolors': 'none'}


def _panel_size(coordinates: pd.DataFrame) -> tuple[float, float]:
    """Width and height (inches) of one map panel for the gauges' extent, at about equal distances."""
    lat_span = max(np.ptp(coordinates['lat']), 1.0)
    lon_span = max(np.ptp(coordinates['lon']) * np.cos(np.radians(coordinates['lat'].mean())), 1.0)
    ratio = float(np.clip(lat_span / lon_span, 0.4, 1.5))
    width = 6.0 if len(coordinates) <= 500 else 8.0
    return width, width * ratio


def _geographic_axes(axis, coordinates: pd.DataFrame) -> None:
    """Lat/lon axes with the gauges' extent (5 % margin) and 1/cos(mean latitude) aspect."""
    for column, setter in (('lon', axis.set_xlim), ('lat', axis.set_ylim)):
        low, high = coordinates[column].min(), coordinates[column].max()
        margin = max(0.05 * (high - low), 0.5)
        setter(low - margin, high + margin)
    axis.set_aspect(1 / np.cos(np.radians(coordinates['lat'].mean())), adjustable='box')
    axis.set(xlabel='longitude (°)', ylabel='latitude (°)')
    axis.grid(alpha=0.3)
