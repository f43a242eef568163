"""Tables and the plot of the causal study from the pub report of ``study.py``'s output folder.

    python benchmarks/causal/summarise.py --runs runs/causal/fraction_1 --output benchmarks/causal/results

reads ``RUNS/report/per_basin.csv`` (pub's scores of every arm on the days every arm predicts) and writes to OUTPUT:

- ``arms.csv`` / ``arms.md``: per arm the held-out median NSE with a 95 % interval resampling folds (and seeds), how
  many later days of forcing a scored day sees, and the decomposition of StefaLand's lead over NH's LSTM into
  paired differences (median over basins of the per-basin NSE difference, pub's fold-and-seed interval);
- ``per_fold.csv``, and a table in ``arms.md``: each paired difference per fold and seed (median over the fold's
  held-out basins), to show the run-to-run noise the intervals stand for;
- ``median_nse.png``: the median held-out NSE per arm with its interval;
- ``per_basin.csv``: the per-basin scores the tables are computed from, and a copy of pub's ``report.md``,
  ``pub.json`` and ``folds.csv``, so that the figures are reproducible after the runs are gone.

``--earlier`` adds the scores of an earlier summary (its ``per_basin.csv``) for the folds and arms whose runs are no
longer in RUNS: a study continued in a fresh checkout keeps its finished folds without training them again. Pub's
``report.md`` covers the runs in RUNS only.

``--fold`` keeps the given folds only: a stage whose new seeds finished some folds is compared on those, every seed of
every arm (each basin's seed mean) on the same basins.

Each arm is summarised over the folds it finished, each difference over the folds both arms finished, and the folds
an arm has not finished are named: a partial study is shown as partial, not left out.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nh_stefaland.tools.pub import stats  # noqa: E402
from nh_stefaland.tools.pub.lookahead import future_view  # noqa: E402
from nh_stefaland.tools.pub.report import FOLDS_FILE, SETTINGS_FILE  # noqa: E402

# arm: what it is
ARMS = {
    'lstm': "NH's `cudalstm`",
    'scratch': "StefaLand from scratch, bidirectional (`stefaland_causal: False`), strided evaluation (as published)",
    'scratch_last_day': "the same runs, scored only at each window's last day (NH's tester, no retraining)",
    'causal': "StefaLand from scratch, causal (`stefaland_causal: True`, the default), strided evaluation",
    'pretrained': "StefaLand pretrained (bidirectional masked autoencoder), frozen encoder finetuned",
    'pretrained_causal': "StefaLand pretrained (causal masked autoencoder), frozen encoder finetuned",
}
# (A, B, what A − B measures)
DIFFERENCES = [
    ('scratch', 'lstm', "StefaLand's lead as published (architecture + future forcing)"),
    ('scratch_last_day', 'lstm', "architecture alone: the bidirectional model without a later day in view"),
    ('causal', 'lstm', "architecture alone: a causal StefaLand"),
    ('scratch', 'scratch_last_day', "future forcing in view (the same trained models)"),
    ('causal', 'scratch', "what causality costs against the published mode"),
    ('causal', 'scratch_last_day', "training causal against the bidirectional model scored without a later day"),
    ('pretrained', 'lstm', "pretrained + finetuned StefaLand's lead, bidirectional"),
    ('pretrained_causal', 'lstm', "pretrained + finetuned StefaLand's lead, causal"),
    ('pretrained_causal', 'pretrained', "what causality costs a pretrained + finetuned StefaLand"),
    ('pretrained', 'scratch', "what a bidirectional pretraining adds to the bidirectional model from scratch"),
    ('pretrained_causal', 'causal', "what a causal pretraining adds to the causal model from scratch"),
]
BOOTSTRAP_SAMPLES = 2000
DATA = ("Data: Caravan (Kratzert et al. 2023), ERA5-Land forcing (Muñoz Sabater et al. 2021), CAMELS-US attributes "
        "and USGS streamflow (Newman et al. 2015; Addor et al. 2017).")


def summarise(runs: Path, output: Path, earlier: Path | None = None,
              only_folds: list[int] | None = None) -> pd.DataFrame:
    """Write the tables, the plot, the per-basin scores and the copies of pub's report files of ``runs`` (with the
    scores of ``earlier`` for the folds and arms not in ``runs``; of ``only_folds`` only, if given) to ``output``;
    returns the arm table."""
    report = runs / 'report'
    per_basin = _read_scores(report / 'per_basin.csv')
    if earlier is not None:
        per_basin = with_earlier(per_basin, _read_scores(earlier))
    folds = sorted(pd.read_csv(runs / FOLDS_FILE)['fold'].unique())
    if only_folds:
        folds = [fold for fold in folds if fold in only_folds]
        per_basin = per_basin[per_basin['fold'].isin(folds)]
    missing = _missing(per_basin, folds)
    arms = arm_table(per_basin, runs, earlier)
    differences = difference_table(per_basin)
    per_fold = fold_table(per_basin)
    output.mkdir(parents=True, exist_ok=True)
    arms.to_csv(output / 'arms.csv', index=False)
    differences.to_csv(output / 'differences.csv', index=False)
    per_fold.to_csv(output / 'per_fold.csv', index=False)
    (output / 'arms.md').write_text(markdown(arms, differences, missing, per_basin, len(folds)) + '\n'
                                    + fold_markdown(per_fold))
    if len(arms):
        fraction = json.loads((runs / SETTINGS_FILE).read_text()).get('train_fraction', 1.0)
        plot(arms, len(folds), fraction, output / 'median_nse.png')
    per_basin.to_csv(output / 'per_basin.csv', index=False)
    for source in (report / 'report.md', runs / SETTINGS_FILE, runs / FOLDS_FILE):
        shutil.copyfile(source, output / source.name)
    return arms


def with_earlier(scores: pd.DataFrame, earlier: pd.DataFrame) -> pd.DataFrame:
    """``scores`` and the rows of ``earlier`` of the (fold, arm, seed) runs that ``scores`` does not hold."""
    run = ['fold', 'model', 'seed']
    present = pd.MultiIndex.from_frame(scores[run].drop_duplicates())
    kept = earlier[~pd.MultiIndex.from_frame(earlier[run]).isin(present)]
    return pd.concat([scores, kept], ignore_index=True).sort_values(['model', 'fold', 'seed', 'basin'],
                                                                   ignore_index=True)


def _read_scores(path: Path) -> pd.DataFrame:
    scores = pd.read_csv(path, dtype={'basin': str, 'seed': str})
    return scores[scores['model'].isin(ARMS)]


def arm_table(per_basin: pd.DataFrame, runs: Path, earlier: Path | None = None) -> pd.DataFrame:
    """Per arm: later days of forcing seen (from its runs' configs, else from the ``arms.csv`` beside ``earlier``),
    folds, seeds, basins, median NSE over basins (seed means) and its fold-and-seed interval."""
    rng = np.random.default_rng(0)
    rows = []
    for arm, what in ARMS.items():
        rows_of_arm = per_basin[per_basin['model'] == arm]
        if rows_of_arm.empty:
            continue
        values = rows_of_arm.set_index(['basin', 'fold', 'seed'])['NSE'].unstack('seed').dropna()
        low, high = _median_interval(values.to_numpy(), values.index.get_level_values('fold').to_numpy(), rng)
        later = _later_days(arm, runs, earlier)
        rows.append({'arm': arm, 'what': what, 'later_days': later,
                     'folds': ' '.join(map(str, sorted(rows_of_arm['fold'].unique()))),
                     'seeds': rows_of_arm['seed'].nunique(), 'basins': len(values),
                     'median_nse': float(np.median(values.to_numpy().mean(axis=1))), 'low': low, 'high': high})
    return pd.DataFrame(rows)


def difference_table(per_basin: pd.DataFrame) -> pd.DataFrame:
    """The paired differences of :data:`DIFFERENCES` whose two arms both ran (pub's ``compare_pairs``), each on the
    seeds both arms ran (a rescored arm and its source: the same trained models)."""
    rows = []
    for arm_a, arm_b, meaning in DIFFERENCES:
        seeds = [set(per_basin.loc[per_basin['model'] == arm, 'seed']) for arm in (arm_a, arm_b)]
        common = per_basin[per_basin['seed'].isin(seeds[0] & seeds[1])]
        pair = pd.concat([common[common['model'] == arm] for arm in (arm_a, arm_b)])  # A first: A − B
        if pair['model'].nunique() < 2:
            continue
        row = stats.compare_pairs(pair).query("metric == 'NSE'").iloc[0]
        rows.append({'a': arm_a, 'b': arm_b, 'meaning': meaning, 'basins': int(row['n']), 'folds': int(row['folds']),
                     'seeds': pair['seed'].nunique(),
                     'median_difference': row['median_difference'], 'low': row['ci_low'], 'high': row['ci_high'],
                     'share_a_better': row['share_a_better']})
    return pd.DataFrame(rows)


def fold_table(per_basin: pd.DataFrame) -> pd.DataFrame:
    """Per difference of :data:`DIFFERENCES`, fold and seed both arms ran: the median over the fold's basins of the
    per-basin NSE difference A − B (columns ``a, b, seed, fold, basins, median_difference``)."""
    nse = per_basin.set_index(['model', 'seed', 'fold', 'basin'])['NSE']
    ran = set(per_basin['model'])
    rows = []
    for arm_a, arm_b, _ in DIFFERENCES:
        if not {arm_a, arm_b} <= ran:
            continue
        difference = (nse.loc[arm_a] - nse.loc[arm_b]).dropna()
        for (seed, fold), values in difference.groupby(level=['seed', 'fold']):
            rows.append({'a': arm_a, 'b': arm_b, 'seed': seed, 'fold': fold, 'basins': len(values),
                         'median_difference': float(values.median())})
    return pd.DataFrame(rows, columns=['a', 'b', 'seed', 'fold', 'basins', 'median_difference'])


def fold_markdown(per_fold: pd.DataFrame) -> str:
    """:func:`fold_table` as one row per difference and seed, one column per fold."""
    if per_fold.empty:
        return ''
    rows = pd.MultiIndex.from_frame(per_fold[['a', 'b', 'seed']].drop_duplicates())  # in DIFFERENCES' order
    wide = per_fold.pivot_table(index=['a', 'b', 'seed'], columns='fold', values='median_difference').reindex(rows)
    lines = ["Per fold and seed (paired median NSE difference over the fold's held-out basins):", '',
             '| A − B | seed | ' + ' | '.join(f'fold {fold}' for fold in wide.columns) + ' |',
             '|---|---|' + '---|' * len(wide.columns)]
    lines += [f"| `{a}` − `{b}` | {seed} | " + ' | '.join('' if np.isnan(value) else f'{value:+.3f}' for value in row)
              + ' |' for (a, b, seed), row in zip(wide.index, wide.to_numpy())]
    return '\n'.join(lines + [''])


def markdown(arms: pd.DataFrame, differences: pd.DataFrame, missing: dict[int, list[str]], per_basin: pd.DataFrame,
             n_folds: int) -> str:
    """The two tables, what they cover and what is missing."""
    days = per_basin.groupby(['seed', 'basin'])['days'].first() if len(per_basin) else pd.Series(dtype=float)
    per_seed = days.groupby('seed').median()
    lines = [f"{days.index.get_level_values('basin').nunique()} held-out basins scored so far, each on the same days "
             f"by every arm of its fold and seed (median {_days(per_seed)})." if len(days)
             else "No run has finished yet.",
             *(f"Not finished in fold {fold}: {', '.join(arms_missing)}." for fold, arms_missing in missing.items()),
             '', '| arm | what | later days seen | folds | seeds | basins | median NSE (95 % interval) |',
             '|---|---|---|---|---|---|---|']
    lines += [f"| `{row.arm}` | {row.what} | {row.later_days} | {row.folds} | {row.seeds} | {row.basins} | "
              f"{row.median_nse:.3f} ({row.low:.3f}…{row.high:.3f}) |" for row in arms.itertuples()]
    lines += ['', '| A − B | measures | folds | seeds | paired median NSE difference (95 % interval; share of '
              'basins A better) |', '|---|---|---|---|---|']
    lines += [f"| `{row.a}` − `{row.b}` | {row.meaning} | {row.folds} | {row.seeds} | {row.median_difference:+.3f} "
              f"({row.low:+.3f}…"
              f"{row.high:+.3f}; {row.share_a_better:.0%}) |" for row in differences.itertuples()]
    lines += ['', "Median NSE: over the held-out basins of each basin's mean over seeds; its interval resamples whole "
              "folds (and seeds). Differences: median over basins of the per-basin NSE difference of seed means, on "
              "the seeds both arms ran, interval resampling folds and seeds (pub's paired comparison). Later days seen: the most days of forcing after "
              "a scored day that the prediction of that day reads (seq_length 365, predict_last_n 180)."]
    if missing:
        lines[-1] += (f" With fewer than {n_folds} folds the intervals resample only those folds: they show how much "
                      "the folds differ (with one fold, nothing: the interval is the point), not a 95 % interval, "
                      "and leave out the run-to-run noise of one seed.")
    return '\n'.join(lines + [DATA, ''])


def _days(per_seed: pd.Series) -> str:
    """``3473 days``, or per seed where the seeds' runs were scored on different days (``seed 0: 3473, …``)."""
    if per_seed.nunique() == 1:
        return f"{int(per_seed.iloc[0])} days"
    return 'days: ' + ', '.join(f"seed {seed}: {int(value)}" for seed, value in per_seed.items())


def plot(arms: pd.DataFrame, n_folds: int, train_fraction: float, path: Path) -> None:
    """Median held-out NSE per arm with its interval."""
    figure, axis = plt.subplots(figsize=(7, 4))
    x = np.arange(len(arms))
    axis.errorbar(x, arms['median_nse'], yerr=[arms['median_nse'] - arms['low'], arms['high'] - arms['median_nse']],
                  fmt='o', capsize=4)
    axis.set_xticks(x, [f"{row.arm}\n({row.later_days} later days)\nfolds {row.folds}\n"
                        f"{row.seeds} seed{'s' if row.seeds > 1 else ''}" for row in arms.itertuples()], fontsize=8)
    axis.set_xlim(-0.5, len(arms) - 0.5)
    axis.set_ylabel('median NSE, held-out basins')
    axis.set_title(f'PUB, 382 CAMELS-US basins ({n_folds} folds), train fraction {train_fraction:g}, 800 updates:\n'
                   f'median and interval over the folds (and seeds) each arm finished', fontsize=9)
    axis.grid(alpha=0.3)
    figure.text(0.01, 0.01, 'Data: Caravan / ERA5-Land, CAMELS-US attributes, USGS streamflow', fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def _later_days(arm: str, runs: Path, earlier: Path | None) -> int:
    """The most later days of forcing a scored day of ``arm`` sees: from its runs' configs, or as summarised before."""
    views = [future_view(path)[0] for path in runs.glob(f'runs/{arm}/fold_*/*/config.yml')]
    if views:
        return max(views)
    before = pd.read_csv(earlier.parent / 'arms.csv').set_index('arm') if earlier is not None else None
    if before is None or arm not in before.index:
        raise ValueError(f"No run of arm {arm} in {runs}, and no earlier arms.csv names it: its view is unknown.")
    return int(before.loc[arm, 'later_days'])


def _missing(per_basin: pd.DataFrame, folds: list[int]) -> dict[int, list[str]]:
    """Per fold of ``folds``, the arms of the study (those with a finished run) that have not finished it (folds
    with every arm left out)."""
    present, studied = per_basin.groupby('fold')['model'].unique(), set(per_basin['model'])
    missing = {int(fold): [arm for arm in ARMS if arm in studied and arm not in present.get(fold, [])]
               for fold in folds}
    return {fold: arms for fold, arms in missing.items() if arms}


def _median_interval(values: np.ndarray, folds: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile interval of the median over basins of the seed mean, resampling folds and seeds."""
    members = [np.flatnonzero(folds == fold) for fold in np.unique(folds)]
    medians = np.empty(BOOTSTRAP_SAMPLES)
    for sample in range(BOOTSTRAP_SAMPLES):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        seeds = rng.integers(0, values.shape[1], values.shape[1])
        medians[sample] = np.median(values[np.ix_(rows, seeds)].mean(axis=1))
    low, high = np.quantile(medians, [0.025, 0.975])
    return float(low), float(high)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=Path, default=Path('runs/causal/fraction_1'))
    parser.add_argument('--output', type=Path, default=Path(__file__).resolve().parent / 'results')
    parser.add_argument('--earlier', type=Path, metavar='PER_BASIN_CSV',
                        help="An earlier summary's per_basin.csv: its scores of the folds and arms not in RUNS.")
    parser.add_argument('--fold', type=int, action='append', help="Only these folds (repeat; default: all).")
    args = parser.parse_args()
    if not (args.runs / 'report' / 'per_basin.csv').is_file():
        parser.error(f"{args.runs} has no report/per_basin.csv: run study.py first.")
    summarise(args.runs, args.output, args.earlier, args.fold)
    print(f"Wrote arms.md, arms.csv, differences.csv, median_nse.png and pub's report files to {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
