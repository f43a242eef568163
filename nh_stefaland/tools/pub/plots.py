"""Figures of the ``nh-stefaland pub`` report (matplotlib's Agg canvas, no display needed)."""
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_nse_cdf(per_basin: pd.DataFrame, path: Path, title: str) -> None:
    """Empirical CDF of the held-out basins' NSE per model (seed means; values below −1 drawn at −1)."""
    figure = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    for model in per_basin['model'].unique():
        nse = per_basin.loc[per_basin['model'] == model, 'NSE'].to_numpy(dtype=float)
        nse = nse[np.isfinite(nse)]
        if len(nse):
            share = np.arange(1, len(nse) + 1) / len(nse)
            axis.step(np.sort(np.clip(nse, -1, 1)), share, where='post',
                      label=f"{model} (median {np.median(nse):.3f}, n={len(nse)})")
    axis.set(xlim=(-1, 1), ylim=(0, 1), xlabel='NSE (held-out basins; below −1 shown at −1)',
             ylabel='share of basins')
    axis.set_title(textwrap.fill(title, 60), fontsize=10)
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend(loc='upper left')
    figure.tight_layout()
    figure.savefig(path, dpi=120)
