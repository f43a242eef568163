"""Does the attribute distance of ``nh-stefaland predict`` tell which ungauged basins a model predicts badly?

For every held-out basin of a committed ``nh-stefaland pub`` report (``folds.csv`` and ``per_basin.csv``), the
distance of its static attributes to its fold's training basins (every basin of the other folds: train fraction 1)
is computed exactly as ``predict`` does (:mod:`nh_stefaland.tools.predict.applicability`, the attributes of the
benchmark config normalised by the training basins' means and standard deviations, as NH's scaler does). Per model it
reports the Spearman rank correlation between distance and held-out NSE (with a 95 % bootstrap interval over basins),
the median NSE of the 10 % most distant basins against the others, the share of basins with NSE below 0 among those
``predict`` flags (distance above the 95th percentile of the training basins') against the others, and draws NSE
against distance percentile.

    python benchmarks/predict/applicability.py --data-dir ../shared/data/caravan_camels \\
        --report pub=benchmarks/ungauged/pub --report pur=benchmarks/ungauged/pur \\
        --report pub_5folds=benchmarks/pretraining/confirm_1
"""
import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

import nh_stefaland
from neuralhydrology.utils.config import Config

from nh_stefaland.tools.predict.applicability import applicability
from nh_stefaland.tools.pub.folds import load_attributes

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / 'ungauged' / 'stefaland.yml'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=Path, required=True, help="The caravan_camels folder (382 basins).")
    parser.add_argument('--report', action='append', required=True, metavar='NAME=DIR',
                        help="A pub report folder with folds.csv and per_basin.csv (train fraction 1).")
    parser.add_argument('--neighbours', type=int, default=5)
    parser.add_argument('--output', type=Path, default=HERE / 'results')
    args = parser.parse_args()

    nh_stefaland.register()
    cfg = Config(CONFIG)
    cfg.update_config({'data_dir': args.data_dir})
    names = sorted(cfg.static_attributes)
    rows, distances = [], []
    for name, directory in (item.split('=', 1) for item in args.report):
        folds = pd.read_csv(Path(directory) / 'folds.csv', dtype={'basin': str}).set_index('basin')
        table = load_attributes(cfg, list(folds.index), 'applicability')[names].reindex(folds.index)
        per_fold = []
        for fold in sorted(folds['fold'].unique()):
            held_out = folds.index[folds['fold'] == fold]
            training = table.drop(index=held_out)
            fit = applicability(table.loc[held_out], training, training.mean(), training.std(), args.neighbours)
            per_fold.append(pd.DataFrame({'distance': fit.distance, 'percentile': fit.percentile,
                                          'outside': fit.outside.str.len() > 0}))
        distance = pd.concat(per_fold)
        scores = pd.read_csv(Path(directory) / 'per_basin.csv', dtype={'basin': str})
        scores = scores.groupby(['model', 'basin'])['NSE'].mean().unstack('model')  # seed mean per basin
        joined = distance.join(scores, how='inner')
        joined.insert(0, 'report', name)
        distances.append(joined)
        for model in scores.columns:
            rows.append({'report': name, 'model': model, **_skill_by_distance(joined, model)})
    result = pd.DataFrame(rows)
    args.output.mkdir(parents=True, exist_ok=True)
    result.to_csv(args.output / 'applicability.csv', index=False, float_format='%.3f')
    pd.concat(distances).to_csv(args.output / 'applicability_per_basin.csv', float_format='%.4f')
    _plot(distances, args.output / 'applicability.png')
    print(result.to_string(index=False, float_format='%.3f'))
    return 0


def _skill_by_distance(joined: pd.DataFrame, model: str, draws: int = 2000) -> dict:
    """Spearman ρ of distance and NSE with a bootstrap interval; median NSE of the farthest 10 % and the rest."""
    data = joined[['distance', 'percentile', model, 'outside']].dropna()
    rho = spearmanr(data['distance'], data[model]).statistic
    rng = np.random.default_rng(0)
    boot = [spearmanr(*data[['distance', model]].to_numpy()[rng.integers(0, len(data), len(data))].T).statistic
            for _ in range(draws)]
    far = data['distance'] >= data['distance'].quantile(0.9)
    flagged = data['percentile'] > 95  # the basins predict's summary names
    return {'basins': len(data), 'spearman': rho, 'spearman_low': np.quantile(boot, 0.025),
            'spearman_high': np.quantile(boot, 0.975), 'median_nse_far_10pct': data.loc[far, model].median(),
            'median_nse_rest': data.loc[~far, model].median(),
            'median_nse_outside_range': data.loc[data['outside'], model].median(),
            'basins_outside_range': int(data['outside'].sum()), 'basins_above_p95': int(flagged.sum()),
            'nse_below_0_above_p95': (data.loc[flagged, model] < 0).mean(),
            'nse_below_0_rest': (data.loc[~flagged, model] < 0).mean()}


def _plot(distances: list[pd.DataFrame], path: Path) -> None:
    """Held-out NSE against distance percentile, one panel per report, StefaLand and the LSTM."""
    figure, axes = plt.subplots(1, len(distances), figsize=(5 * len(distances), 4), squeeze=False)
    for axis, joined in zip(axes[0], distances):
        for model, colour in (('lstm', 'tab:grey'), ('stefaland', 'tab:blue'), ('scratch', 'tab:blue')):
            if model in joined:
                axis.scatter(joined['percentile'], joined[model].clip(lower=-1), s=6, alpha=0.5, color=colour,
                             label=model)
        axis.set(title=joined['report'].iloc[0], xlabel='attribute distance percentile among training basins',
                 ylabel='held-out NSE (clipped at −1)')
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == '__main__':
    sys.exit(main())
