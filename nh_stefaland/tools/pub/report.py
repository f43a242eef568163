"""Report of ``nh-stefaland pub`` runs: per-basin metrics, per-model summary, paired comparison, NSE CDF, markdown."""
import itertools
import json
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SETTINGS_FILE = 'pub.json'
FOLDS_FILE = 'folds.csv'
STATUS_FILE = 'status.json'
# metrics of every held-out basin, with NH's names (FHV/FLV: bias of high/low flows in %)
REPORT_METRICS = ('NSE', 'KGE', 'RMSE', 'Pearson-r', 'FHV', 'FLV')
# metrics compared pairwise, and whether a higher value is better
PAIRED_METRICS = {'NSE': True, 'KGE': True, 'RMSE': False}
BOOTSTRAP_SAMPLES = 2000
Runs = list[tuple[Path, dict]]  # (run directory, status) of each run, from run_statuses


def read_status(directory: Path) -> dict | None:
    """The status a run left in ``directory`` (None if there is none)."""
    path = directory / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_statuses(output_dir: Path) -> Runs:
    """Directory and status of every run in ``output_dir/runs``; a run's ``label`` is the model folder that holds it."""
    directories = sorted(path.parent for path in (output_dir / 'runs').glob(f'*/*/{STATUS_FILE}'))
    return [(directory, {**read_status(directory), 'label': directory.parent.name}) for directory in directories]


def collect(folds: pd.DataFrame, runs: Runs, order: list[str] = ()) -> tuple[pd.DataFrame, list[dict]]:
    """Per-basin test metrics of every finished model and fold, and the statuses of the runs that failed.

    ``folds`` is the output directory's folds.csv, ``runs`` its :func:`run_statuses`. Models are sorted in ``order``
    (those not in it last, by name), then by fold and basin.

    Returns
    -------
    tuple[pd.DataFrame, list[dict]]
        Columns ``basin, fold, group, model`` and :data:`REPORT_METRICS`; the failed runs' statuses.
    """
    groups = folds.groupby('fold')['group'].first()
    tables, failed = [], []
    for directory, status in runs:
        if not re.fullmatch(r'fold_\d+', directory.name):
            continue
        status = {**status, 'log': os.path.normpath(directory / status['log'])}
        if status['state'] != 'done':
            failed.append(status)
            continue
        metrics = pd.read_csv(directory / status['metrics_file'], index_col=0, dtype={0: str})
        prefix = f"{status['target']}_" if f"{status['target']}_NSE" in metrics.columns else ''
        table = pd.DataFrame({metric: metrics.get(prefix + metric, np.nan) for metric in REPORT_METRICS},
                             index=metrics.index.astype(str))
        fold = int(status['name'].split('_')[1])
        table.insert(0, 'model', status['label'])
        table.insert(0, 'group', groups.get(fold, ''))
        table.insert(0, 'fold', fold)
        tables.append(table.rename_axis('basin').reset_index())
    columns = ['basin', 'fold', 'group', 'model', *REPORT_METRICS]
    per_basin = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    models = [model for model in order if model in set(per_basin['model'])]
    models += sorted(set(per_basin['model']) - set(models))
    per_basin['model'] = pd.Categorical(per_basin['model'], categories=models, ordered=True)
    per_basin = per_basin.sort_values(['model', 'fold', 'basin'], ignore_index=True)
    return per_basin.astype({'model': str}), failed


def run_times(runs: Runs) -> pd.DataFrame:
    """Wall-clock minutes of the finished runs (:func:`run_statuses`), per model.

    Returns
    -------
    pd.DataFrame
        Per model: ``fold runs``, ``median min per fold``, ``pretraining min`` (all its pretraining stages; NaN
        without one) and ``total min``. A sum that includes a run without a recorded duration is NaN; the frame is
        empty when no run recorded one.
    """
    rows = [{'model': status['label'], 'pretraining': status['name'].endswith('pretrain'),
             'minutes': status.get('seconds', np.nan) / 60} for _, status in runs if status['state'] == 'done']
    runs = pd.DataFrame(rows, columns=['model', 'pretraining', 'minutes'])
    if runs['minutes'].isna().all():
        return pd.DataFrame()

    def total(minutes: pd.Series) -> float:
        return minutes.sum() if minutes.notna().all() else np.nan

    folds = runs[~runs['pretraining']].groupby('model', sort=False)['minutes']
    table = pd.DataFrame({'fold runs': folds.size(), 'median min per fold': folds.median(),
                          'pretraining min': runs[runs['pretraining']].groupby('model')['minutes'].agg(total),
                          'total min': runs.groupby('model')['minutes'].agg(total)})
    return table.fillna({'fold runs': 0}).astype({'fold runs': int}).rename_axis('model')


def summarise(per_basin: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric over the held-out basins: n, median, mean, quartiles and the share below zero."""
    rows = []
    for (model, metric) in itertools.product(per_basin['model'].unique(), REPORT_METRICS):
        values = _finite(per_basin.loc[per_basin['model'] == model, metric])
        rows.append({'model': model, 'metric': metric, 'n': len(values),
                     'median': np.median(values) if len(values) else np.nan,
                     'mean': values.mean() if len(values) else np.nan,
                     'q25': np.quantile(values, 0.25) if len(values) else np.nan,
                     'q75': np.quantile(values, 0.75) if len(values) else np.nan,
                     'share_below_0': (values < 0).mean() if len(values) else np.nan})
    return pd.DataFrame(rows, columns=['model', 'metric', 'n', 'median', 'mean', 'q25', 'q75', 'share_below_0'])


def compare_pairs(per_basin: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Model A against model B over the basins both predicted: median of A − B with a bootstrap 95 % interval.

    Returns
    -------
    pd.DataFrame
        One row per model pair and metric of :data:`PAIRED_METRICS`: ``n``, ``median_a``, ``median_b``,
        ``median_difference`` (of the per-basin differences A − B), ``ci_low``, ``ci_high`` (percentile bootstrap
        over basins) and ``share_a_better`` (strictly better: higher NSE/KGE, lower RMSE).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for model_a, model_b in itertools.combinations(per_basin['model'].unique(), 2):
        for metric, higher_is_better in PAIRED_METRICS.items():
            a = per_basin.loc[per_basin['model'] == model_a].set_index('basin')[metric]
            b = per_basin.loc[per_basin['model'] == model_b].set_index('basin')[metric]
            both = pd.concat([a, b], axis=1, join='inner').to_numpy(dtype=float)
            both = both[np.isfinite(both).all(axis=1)]
            difference = both[:, 0] - both[:, 1]
            row = {'model_a': model_a, 'model_b': model_b, 'metric': metric, 'n': len(difference)}
            if len(difference):
                resampled = difference[rng.integers(0, len(difference), (BOOTSTRAP_SAMPLES, len(difference)))]
                ci_low, ci_high = np.quantile(np.median(resampled, axis=1), [0.025, 0.975])
                better = difference > 0 if higher_is_better else difference < 0
                row.update(median_a=np.median(both[:, 0]), median_b=np.median(both[:, 1]),
                           median_difference=np.median(difference), ci_low=ci_low, ci_high=ci_high,
                           share_a_better=better.mean())
            rows.append(row)
    return pd.DataFrame(rows, columns=['model_a', 'model_b', 'metric', 'n', 'median_a', 'median_b',
                                       'median_difference', 'ci_low', 'ci_high', 'share_a_better'])


def plot_nse_cdf(per_basin: pd.DataFrame, path: Path, title: str) -> None:
    """Empirical CDF of the held-out basins' NSE per model (values below −1 drawn at −1)."""
    figure = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    for model in per_basin['model'].unique():
        nse = _finite(per_basin.loc[per_basin['model'] == model, 'NSE'])
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


def write_report(output_dir: Path) -> Path:
    """Write ``report/`` in ``output_dir``: per_basin.csv, summary.csv, paired.csv, nse_cdf.png and report.md.

    Raises
    ------
    FileNotFoundError
        If ``output_dir`` holds no ``pub.json`` and ``folds.csv`` of a pub run.
    """
    if not (output_dir / SETTINGS_FILE).is_file() or not (output_dir / FOLDS_FILE).is_file():
        raise FileNotFoundError(f"{output_dir} is not an output directory of nh-stefaland pub (no pub.json/folds.csv).")
    settings = json.loads((output_dir / SETTINGS_FILE).read_text())
    folds = pd.read_csv(output_dir / FOLDS_FILE, dtype={'basin': str})
    runs = run_statuses(output_dir)
    per_basin, failed = collect(folds, runs, order=list(settings['models']))
    report_dir = output_dir / 'report'
    report_dir.mkdir(exist_ok=True)
    summary, paired = summarise(per_basin), compare_pairs(per_basin)
    per_basin.to_csv(report_dir / 'per_basin.csv', index=False)
    summary.to_csv(report_dir / 'summary.csv', index=False)
    paired.to_csv(report_dir / 'paired.csv', index=False)
    plot_nse_cdf(per_basin, report_dir / 'nse_cdf.png', title=_protocol_name(settings))
    markdown = _markdown(settings, folds, per_basin, summary, paired, failed, run_times(runs))
    (report_dir / 'report.md').write_text(markdown)
    return report_dir / 'report.md'


def _markdown(settings: dict, folds: pd.DataFrame, per_basin: pd.DataFrame, summary: pd.DataFrame,
              paired: pd.DataFrame, failed: list[dict], times: pd.DataFrame) -> str:
    sizes = folds.groupby(['fold', 'group']).size().reset_index(name='basins')
    lines = [f"# {_protocol_name(settings)}", "",
             f"- Basins: {len(folds)} from `{settings['basin_file']}`; {len(sizes)} folds, each held out once "
             f"({', '.join(str(n) for n in sizes['basins'])} basins)"
             + (f", seed {settings['seed']}." if settings['protocol'] == 'random' else "."),
             *([f"- Data: `{settings['data_dir']}` (--data-dir, in place of each config's `data_dir`)."]
               if settings.get('data_dir') else []),
             "- Each fold: training and validation on the other folds' basins (validation period of the config, "
             "for monitoring only), test on the held-out basins over the config's test period, last epoch.",
             f"- {_pretraining_sentence(settings)}",
             "- Leakage checks passed: `use_basin_id_encoding` off; no target variable among the inputs; no static "
             "attribute named like a streamflow signature"
             + (f" (accepted by --allow-attribute: {', '.join(settings['allow_attributes'])})"
                if settings['allow_attributes'] else "")
             + "; no held-out basin in a training or validation basin file.", "", "## Models", ""]
    for label, model in settings['models'].items():
        pretraining = f", pretrained with `{_shown(model['pretrain'])}`" if model['pretrain'] else ""
        lines.append(f"- **{label}**: `{_shown(model['config'])}`{pretraining}")
    if per_basin.empty:
        lines += ["", "No run has finished yet.", ""]
        return "\n".join(lines + _failed_lines(failed))
    nse = summary[summary['metric'] == 'NSE'].set_index('model')
    medians = summary.pivot(index='model', columns='metric', values='median').reindex(nse.index)
    tested = per_basin.groupby('model', sort=False)['fold'].nunique().reindex(nse.index)
    table = pd.DataFrame({'folds': [f"{n}/{folds['fold'].nunique()}" for n in tested],
                          'basins': nse['n'], 'NSE median': nse['median'], 'NSE mean': nse['mean'],
                          'NSE q25': nse['q25'], 'NSE q75': nse['q75'], 'share NSE<0': nse['share_below_0'],
                          **{f'{m} median': medians.get(m) for m in REPORT_METRICS if m != 'NSE'}})
    partial = ["Models with fewer folds (`--fold`, or runs not finished) are summarised over their own held-out "
               "basins; the paired comparison uses the basins both models predicted.", ""]
    lines += ["", "## Summary over held-out basins", "", _table(table.reset_index()), "",
              *(partial if (tested < folds['fold'].nunique()).any() else []),
              "## Paired comparison (same basins)", "",
              "Median over basins of A − B, 95 % percentile-bootstrap interval over basins, and the share of basins "
              "where A is better (higher NSE/KGE, lower RMSE).", "", _table(paired), ""]
    if not times.empty:
        times = times.reindex([label for label in settings['models'] if label in times.index])
        lines += ["## Run time", "", "Wall-clock minutes of each run (runs side by side with `--jobs` share the "
                  "cores); blank: no pretraining stage, or a run that did not record its duration.", "",
                  _table(times.reset_index()), ""]
    by_fold = per_basin.pivot_table(index=['fold', 'group'], columns='model', values='NSE', aggfunc='median')
    by_fold = by_fold[list(per_basin['model'].unique())]
    lines += ["## Median NSE per held-out fold", "", _table(by_fold.reset_index()), "",
              "## NSE distribution", "", "![NSE CDF per model](nse_cdf.png)", "", *_failed_lines(failed)]
    lines += ["Files: `per_basin.csv` (basin, fold, group, model, metrics), `summary.csv`, `paired.csv`, "
              "`nse_cdf.png`.", ""]
    return "\n".join(lines)


def _failed_lines(failed: list[dict]) -> list[str]:
    if not failed:
        return []
    return ["## Runs that did not finish", "",
            *(f"- {s['label']} {s['name']}: {s['error']} (log: `{s['log']}`)" for s in failed), ""]


def _protocol_name(settings: dict) -> str:
    if settings['protocol'] == 'random':
        return f"PUB: {settings['folds']} random basin folds"
    groups = settings['groups']
    spec = ' '.join('{' + ','.join(g) + '}' for g in groups) if groups else 'one group per value'
    return f"PUR: held-out groups of {settings['group_by']} {spec}"


def _pretraining_sentence(settings: dict) -> str:
    if not any(model['pretrain'] for model in settings['models'].values()):
        return "No model has a pretraining stage."
    if settings['pretrain_held_out'] == 'included':
        return ("Pretraining saw all basins' forcings and attributes, never the held-out basins' streamflow "
                "(target-free stage; finetuning's target normalisation from the fold's training basins only).")
    return "Pretraining saw each fold's training basins only (held-out basins excluded entirely)."


def _shown(path: str) -> str:
    """A config path as the report shows it: relative to the working directory when below it."""
    return str(Path(path).relative_to(Path.cwd())) if Path(path).is_relative_to(Path.cwd()) else path


def _finite(values: pd.Series) -> np.ndarray:
    values = values.to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _table(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (numbers with 3 decimals)."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return '' if np.isnan(value) else f'{value:.3f}'
        return str(value)

    header = '| ' + ' | '.join(str(c) for c in frame.columns) + ' |'
    rule = '|' + '---|' * len(frame.columns)
    rows = ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in frame.itertuples(index=False)]
    return '\n'.join([header, rule, *rows])
