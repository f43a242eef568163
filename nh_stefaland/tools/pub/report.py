"""Report of ``nh-stefaland pub`` runs: per-basin metrics on common days, summaries, paired comparison, figures."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from nh_stefaland.tools.pub import files as pub_files, hydrographs, maps, markdown, plots, stats
from nh_stefaland.tools.pub.scoring import ENSEMBLE, REPORT_METRICS, FoldRun, read_run, score_folds

SETTINGS_FILE = 'pub.json'
FOLDS_FILE = 'folds.csv'
STATUS_FILE = 'status.json'
EPOCH_FILE = 'epoch.json'  # the epoch chosen on the training basins' validation period (--epoch best)
FINAL_STAGE = re.compile(r'fold_(\d+)(?:_seed_(\d+))?')
Runs = list[tuple[Path, dict]]  # (run directory, status) of each run, from run_statuses


def read_status(directory: Path) -> dict | None:
    """The status a run left in ``directory`` (None if there is none)."""
    path = directory / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_epoch_choice(directory: Path) -> dict | None:
    """The epoch choice a run left in ``directory`` with ``--epoch best`` (None if there is none)."""
    path = directory / EPOCH_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_statuses(output_dir: Path) -> Runs:
    """Directory and status of every run in ``output_dir/runs``; a run's ``label`` is the model folder that holds it.

    A run that another pub process restarts meanwhile (its status gone) is left out.
    """
    directories = sorted(path.parent for path in (output_dir / 'runs').glob(f'*/*/{STATUS_FILE}'))
    statuses = [(directory, read_status(directory)) for directory in directories]
    return [(directory, {**status, 'label': directory.parent.name}) for directory, status in statuses if status]


def collect(folds: pd.DataFrame, runs: Runs, order: list[str] = (),
            epoch: str = 'last') -> tuple[pd.DataFrame, list[dict], dict[str, list[int]], list[FoldRun]]:
    """Per-basin test metrics of every finished model, fold and seed on common days, and the runs that failed.

    ``folds`` is the output directory's folds.csv, ``runs`` its :func:`run_statuses`. With ``epoch='best'`` each run
    is scored at the epoch chosen on its training basins (runs without a choice yet are left out). Models are sorted
    in ``order`` (those not in it last, by name; seed ensembles after their model), then by fold, basin and seed.

    Returns
    -------
    tuple[pd.DataFrame, list[dict], dict[str, list[int]], list[FoldRun]]
        Columns ``basin, fold, group, model, seed, days`` and :data:`REPORT_METRICS`; the failed runs' statuses;
        per model the chosen epochs of its runs (empty lists with ``epoch='last'``); the runs scored.
    """
    finished, failed, epochs = [], [], {}
    for directory, status in runs:
        match = FINAL_STAGE.fullmatch(directory.name)
        if match is None:
            continue
        status = {**status, 'log': os.path.normpath(directory / status['log'])}
        if status['state'] != 'done':
            failed.append(status)
            continue
        metrics_file = directory / status['metrics_file']
        if epoch == 'best':
            choice = read_epoch_choice(directory)
            if choice is None:
                continue
            metrics_file = directory / choice['metrics_file']
            epochs.setdefault(status['label'], []).append(choice['epoch'])
        finished.append(read_run(directory, status, fold=int(match.group(1)), seed=int(match.group(2) or 0),
                                 results_file=metrics_file.parent / 'test_results.p'))
    per_basin = score_folds(finished, folds)
    models = [model for model in order if model in set(per_basin['model'])]
    models += sorted(set(per_basin['model']) - set(models))
    per_basin['model'] = pd.Categorical(per_basin['model'], categories=_with_ensembles(models), ordered=True)
    per_basin = per_basin.sort_values(['model', 'fold', 'basin', 'seed'], ignore_index=True)
    return per_basin.astype({'model': str}), failed, epochs, finished


def run_times(runs: Runs) -> pd.DataFrame:
    """Wall-clock minutes of the finished runs (:func:`run_statuses`), per model.

    Returns
    -------
    pd.DataFrame
        Per model: ``fold runs``, ``median min per fold``, ``pretraining min`` (all its pretraining stages; NaN
        without one) and ``total min``. A sum that includes a run without a recorded duration is NaN; the frame is
        empty when no run recorded one.
    """
    rows = [{'model': status['label'], 'pretraining': 'pretrain' in status['name'],
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


def write_report(output_dir: Path, figures_for: list[str] | None = None) -> Path:
    """Write ``report/`` in ``output_dir``: per_basin.csv, summary.csv, paired.csv, seeds.csv, nse_cdf.png, the maps,
    the hydrographs and report.md; one pub process at a time.

    ``figures_for`` (``--figures-for``) limits the difference maps and hydrographs to the model pairs that include
    one of these labels (None: every pair).

    Raises
    ------
    ValueError
        If ``figures_for`` names a label that is not a model of ``output_dir``.
    FileNotFoundError
        If ``output_dir`` holds no ``pub.json`` and ``folds.csv`` of a pub run.
    """
    if not (output_dir / SETTINGS_FILE).is_file() or not (output_dir / FOLDS_FILE).is_file():
        raise FileNotFoundError(f"{output_dir} is not an output directory of nh-stefaland pub (no pub.json/folds.csv).")
    with pub_files.locked(output_dir / pub_files.LOCK_FILE):
        return _write_report(output_dir, figures_for)


def _write_report(output_dir: Path, figures_for: list[str] | None) -> Path:
    settings = json.loads((output_dir / SETTINGS_FILE).read_text())
    unknown = sorted(set(figures_for or ()) - set(settings['models']))
    if unknown:
        raise ValueError(f"--figures-for {unknown}: the models of {output_dir} are {list(settings['models'])}.")
    folds = pd.read_csv(output_dir / FOLDS_FILE, dtype={'basin': str})
    runs = run_statuses(output_dir)
    per_basin, failed, epochs, finished = collect(folds, runs, order=list(settings['models']),
                                        epoch=settings.get('epoch', 'last'))
    report_dir = output_dir / 'report'
    report_dir.mkdir(exist_ok=True)
    summary, paired, seeds = stats.summarise(per_basin), stats.compare_pairs(per_basin), stats.seed_spread(per_basin)
    per_basin.to_csv(report_dir / 'per_basin.csv', index=False)
    summary.to_csv(report_dir / 'summary.csv', index=False)
    paired.to_csv(report_dir / 'paired.csv', index=False)
    seeds.to_csv(report_dir / 'seeds.csv')
    plots.plot_nse_cdf(stats.seed_means(per_basin), report_dir / 'nse_cdf.png',
                       title=markdown.protocol_name(settings))
    figures, figure_files = [], []
    if not per_basin.empty:
        means = stats.seed_means(per_basin)
        pairs = stats.figure_pairs(list(means['model'].unique()), figures_for)
        for lines, files in (maps.write_maps(settings, means, pairs, report_dir),
                             hydrographs.write_hydrographs(finished, means, pairs, report_dir)):
            figures, figure_files = figures + lines, figure_files + files
    text = markdown.report(settings, folds, per_basin, summary, paired, seeds, epochs, failed, run_times(runs),
                           figures=figures, figure_files=figure_files, views=future_views(finished))
    pub_files.write_text(report_dir / 'report.md', text)
    return report_dir / 'report.md'


def future_views(finished: list[FoldRun]) -> dict[str, tuple[int, str]]:
    """Per model label, the most days of forcing after a scored day that one of its runs reads, and why."""
    views = {}
    for run in finished:
        if run.future_days is not None and run.future_days >= views.get(run.label, (-1,))[0]:
            views[run.label] = (run.future_days, run.future_reason)
    return views


def _with_ensembles(models: list[str]) -> list[str]:
    """The models in order, each seed ensemble right after its model."""
    suffix = f'_{ENSEMBLE}'
    ordered = [model for model in models if not model.endswith(suffix) or model.removesuffix(suffix) not in models]
    for model in models:
        if model not in ordered:
            ordered.insert(ordered.index(model.removesuffix(suffix)) + 1, model)
    return ordered

