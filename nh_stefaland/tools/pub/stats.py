"""Summaries and paired comparisons of held-out metrics, with intervals that resample folds and seeds.

Basins of one fold share one trained model, so they are not independent draws: the bootstrap resamples whole folds
(with replacement, all their basins) and, for models trained with several seeds, the seeds; a model's value in a basin
is the mean of its seeds' values.
"""
import itertools

import numpy as np
import pandas as pd

from nh_stefaland.tools.pub.scoring import ENSEMBLE, REPORT_METRICS

# metrics compared pairwise, and whether a higher value is better
PAIRED_METRICS = {'NSE': True, 'KGE': True, 'RMSE': False}
BOOTSTRAP_SAMPLES = 2000


def seed_means(per_basin: pd.DataFrame) -> pd.DataFrame:
    """One row per model and basin: ``fold``, ``group`` and each metric averaged over the model's seeds."""
    keys = ['model', 'basin', 'fold', 'group']
    means = per_basin.groupby(keys, sort=False)[list(REPORT_METRICS)].mean().reset_index()
    return means[['basin', 'fold', 'group', 'model', *REPORT_METRICS]]


def summarise(per_basin: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric over the held-out basins (seed means): n, median, mean, quartiles, share below zero."""
    means = seed_means(per_basin)
    rows = []
    for model, metric in itertools.product(means['model'].unique(), REPORT_METRICS):
        values = _finite(means.loc[means['model'] == model, metric])
        rows.append({'model': model, 'metric': metric, 'n': len(values),
                     'median': np.median(values) if len(values) else np.nan,
                     'mean': values.mean() if len(values) else np.nan,
                     'q25': np.quantile(values, 0.25) if len(values) else np.nan,
                     'q75': np.quantile(values, 0.75) if len(values) else np.nan,
                     'share_below_0': (values < 0).mean() if len(values) else np.nan})
    return pd.DataFrame(rows, columns=['model', 'metric', 'n', 'median', 'mean', 'q25', 'q75', 'share_below_0'])


def seed_spread(per_basin: pd.DataFrame, metric: str = 'NSE') -> pd.DataFrame:
    """Per model trained with several seeds: the median of ``metric`` of each seed, and their range (max − min)."""
    seeded = per_basin[per_basin['seed'] != ENSEMBLE]
    medians = seeded.groupby(['model', 'seed'], sort=False)[metric].median().unstack('seed')
    medians = medians[medians.notna().sum(axis=1) > 1]
    if medians.empty:
        return pd.DataFrame()
    medians = medians[sorted(medians.columns, key=int)]
    table = medians.rename(columns=lambda seed: f'seed {seed}')
    table['spread'] = medians.max(axis=1) - medians.min(axis=1)
    return table.rename_axis('model')


def compare_pairs(per_basin: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Model A against model B over the basins both predicted: median of A − B with a fold-and-seed 95 % interval.

    Returns
    -------
    pd.DataFrame
        One row per model pair and metric of :data:`PAIRED_METRICS`: ``n`` basins, ``folds``, ``median_a``,
        ``median_b``, ``median_difference`` (median over basins of the per-basin difference of seed means),
        ``ci_low``, ``ci_high`` (percentile bootstrap resampling folds, and each model's seeds) and
        ``share_a_better`` (strictly better: higher NSE/KGE, lower RMSE).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for model_a, model_b in itertools.combinations(per_basin['model'].unique(), 2):
        for metric, higher_is_better in PAIRED_METRICS.items():
            a, b = (_by_seed(per_basin, model, metric) for model in (model_a, model_b))
            basins = a.index.intersection(b.index)
            a, b = a.loc[basins], b.loc[basins]
            keep = np.isfinite(a.to_numpy()).all(axis=1) & np.isfinite(b.to_numpy()).all(axis=1)
            a, b = a[keep], b[keep]
            folds = a.index.get_level_values('fold').to_numpy()
            difference = a.to_numpy().mean(axis=1) - b.to_numpy().mean(axis=1)
            row = {'model_a': model_a, 'model_b': model_b, 'metric': metric, 'n': len(difference),
                   'folds': len(set(folds))}
            if len(difference):
                ci_low, ci_high = _cluster_interval(a.to_numpy(), b.to_numpy(), folds, rng)
                better = difference > 0 if higher_is_better else difference < 0
                row.update(median_a=np.median(a.to_numpy().mean(axis=1)),
                           median_b=np.median(b.to_numpy().mean(axis=1)), median_difference=np.median(difference),
                           ci_low=ci_low, ci_high=ci_high, share_a_better=better.mean())
            rows.append(row)
    return pd.DataFrame(rows, columns=['model_a', 'model_b', 'metric', 'n', 'folds', 'median_a', 'median_b',
                                       'median_difference', 'ci_low', 'ci_high', 'share_a_better'])


def figure_pairs(models: list[str], only_with: list[str] | None = None) -> list[tuple[str, str]]:
    """The model pairs the report draws: every pair in order, but not a model with its own seed ensemble; with
    ``only_with``, only the pairs that include one of those models."""
    return [(a, b) for a, b in itertools.combinations(models, 2)
            if f'{a}_{ENSEMBLE}' != b and f'{b}_{ENSEMBLE}' != a and (only_with is None or {a, b} & set(only_with))]


def nse_differences(means: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """Per basin both models predicted (finite NSE): ``fold``, ``group``, ``a``, ``b`` (NSE) and ``difference`` a − b.

    ``means`` holds one row per model and basin (:func:`seed_means`).
    """
    a, b = (means[means['model'] == model].set_index('basin') for model in (model_a, model_b))
    table = a[['fold', 'group']].join(pd.DataFrame({'a': a['NSE'], 'b': b['NSE']}), how='inner')
    table = table[np.isfinite(table['a']) & np.isfinite(table['b'])]
    return table.assign(difference=table['a'] - table['b'])


def _by_seed(per_basin: pd.DataFrame, model: str, metric: str) -> pd.DataFrame:
    """[basins, seeds] values of one model, indexed by (basin, fold)."""
    rows = per_basin[per_basin['model'] == model]
    return rows.set_index(['basin', 'fold', 'seed'])[metric].unstack('seed')


def _cluster_interval(a: np.ndarray, b: np.ndarray, folds: np.ndarray,
                      rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile interval of the median difference, resampling folds and each model's seeds.

    ``a`` [N, S_a] and ``b`` [N, S_b] hold each basin's value per seed; ``folds`` [N] each basin's fold.
    """
    fold_ids = np.unique(folds)
    members = [np.flatnonzero(folds == fold) for fold in fold_ids]
    medians = np.empty(BOOTSTRAP_SAMPLES)
    for sample in range(BOOTSTRAP_SAMPLES):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(fold_ids), len(fold_ids))])
        seeds_a = rng.integers(0, a.shape[1], a.shape[1])
        seeds_b = rng.integers(0, b.shape[1], b.shape[1])
        medians[sample] = np.median(a[np.ix_(rows, seeds_a)].mean(axis=1) - b[np.ix_(rows, seeds_b)].mean(axis=1))
    low, high = np.quantile(medians, [0.025, 0.975])
    return float(low), float(high)


def _finite(values: pd.Series) -> np.ndarray:
    values = values.to_numpy(dtype=float)
    return values[np.isfinite(values)]
