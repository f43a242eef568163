"""The markdown text of the ``nh-stefaland pub`` report."""
from pathlib import Path

import numpy as np
import pandas as pd

from nh_stefaland.tools.pub.scoring import ENSEMBLE, REPORT_METRICS


def report(settings: dict, folds: pd.DataFrame, per_basin: pd.DataFrame, summary: pd.DataFrame,
           paired: pd.DataFrame, seeds: pd.DataFrame, epochs: dict[str, list[int]], failed: list[dict],
           times: pd.DataFrame, figures: list[str] = (), figure_files: list[str] = (),
           views: dict[str, tuple[int, str]] | None = None) -> str:
    """The whole report.md: protocol, models, summary, paired comparison, seeds, run time, folds, figures.

    ``figures`` are the markdown lines of the maps and hydrographs, ``figure_files`` their PNG files; ``views`` says
    per model label how many days of forcing after a scored day its finished runs read, and why
    (:func:`~nh_stefaland.tools.pub.lookahead.future_view`; the most of its runs).
    """
    views = views or {}
    lines = [f"# {protocol_name(settings)}", "", *_protocol_lines(settings, folds, per_basin), "", "## Models", "",
             "Later days: the most days of forcing after a scored day that a model's prediction of that day reads.",
             ""]
    for label, model in settings['models'].items():
        pretraining = f", pretrained with `{shown(model['pretrain'])}`" if model['pretrain'] else ""
        if model.get('shipped'):
            pretraining = f", finetuning the shipped encoder `stefaland:{model['shipped']['name']}`"
        lines.append(f"- **{label}**: `{shown(model['config'])}`{pretraining}; {_view(views.get(label))}")
    lines += [f"- **{label}**: runs in `runs/{label}/` that pub did not plan (a study's re-evaluated runs); "
              f"{_view(view)}" for label, view in views.items() if label not in settings['models']]
    if per_basin.empty:
        lines += ["", "No run has finished yet.", ""]
        return "\n".join(lines + _failed_lines(failed))
    nse = summary[summary['metric'] == 'NSE'].set_index('model')
    medians = summary.pivot(index='model', columns='metric', values='median').reindex(nse.index)
    tested = per_basin.groupby('model', sort=False)['fold'].nunique().reindex(nse.index)
    n_seeds = per_basin.groupby('model', sort=False)['seed'].nunique().reindex(nse.index)
    later = [views.get(model.removesuffix(f'_{ENSEMBLE}'), (None,))[0] for model in nse.index]
    table = pd.DataFrame({'folds': [f"{n}/{folds['fold'].nunique()}" for n in tested],
                          'basins': nse['n'], 'seeds': n_seeds, 'later days': [_count(n) for n in later],
                          'NSE median': nse['median'], 'NSE mean': nse['mean'],
                          'NSE q25': nse['q25'], 'NSE q75': nse['q75'], 'share NSE<0': nse['share_below_0'],
                          **{f'{m} median': medians.get(m) for m in REPORT_METRICS if m != 'NSE'}})
    partial = ["Models with fewer folds (`--fold`, or runs not finished) are summarised over their own held-out "
               "basins; the paired comparison uses the basins both models predicted.", ""]
    lines += ["", "## Summary over held-out basins", "",
              "A model trained with several seeds is summarised by each basin's mean over its seeds; "
              "`<model>_ensemble` is the mean prediction of its seeds, scored as a model of its own.", "",
              markdown_table(table.reset_index()), "",
              *_unobserved_lines(per_basin),
              *(partial if (tested < folds['fold'].nunique()).any() else []),
              "## Paired comparison (same basins, same days)", "",
              "Median over basins of A − B (per-basin seed means), a 95 % percentile-bootstrap interval that "
              "resamples whole folds (basins of a fold share one trained model) and each model's seeds, and the "
              "share of basins where A is better (higher NSE/KGE, lower RMSE). With few folds the interval is "
              "wide: that is the uncertainty of a fold-level result.", "", markdown_table(paired), ""]
    if not seeds.empty:
        lines += ["## Seeds", "", "Median NSE over held-out basins of each seed, and the range between seeds.", "",
                  markdown_table(seeds.reset_index()), ""]
    if epochs:
        lines += ["## Chosen epochs", "", "Epoch with the best median NSE on the fold's training basins over the "
                  "validation period (`--epoch best`); held-out basins play no part in the choice.", "",
                  *(f"- **{label}**: epochs {', '.join(str(e) for e in chosen)} (one per run)"
                    for label, chosen in epochs.items()), ""]
    if not times.empty:
        times = times.reindex([label for label in settings['models'] if label in times.index])
        lines += ["## Run time", "", "Wall-clock minutes of each run (runs side by side with `--jobs` share the "
                  "cores); blank: no pretraining stage, or a run that did not record its duration.", "",
                  markdown_table(times.reset_index()), ""]
    by_fold = per_basin.pivot_table(index=['fold', 'group'], columns='model', values='NSE', aggfunc='median')
    by_fold = by_fold[list(per_basin['model'].unique())]
    lines += ["## Median NSE per held-out fold", "", markdown_table(by_fold.reset_index()), "",
              "## NSE distribution", "", "![NSE CDF per model](nse_cdf.png)", "", *figures, *_failed_lines(failed)]
    lines += ["Files: `per_basin.csv` (basin, fold, group, model, seed, days scored, metrics), `summary.csv`, "
              "`paired.csv`, `seeds.csv`, " + ''.join(f"`{name}`, " for name in figure_files) + "`nse_cdf.png`.", ""]
    return "\n".join(lines)


def _view(view: tuple[int, str] | None) -> str:
    """'later days: N (why)', or that no run has finished."""
    return "later days: not known until a run finishes" if view is None else f"later days: {view[0]} ({view[1]})"


def _count(value: int | None) -> str:
    return '' if value is None else str(value)


def protocol_name(settings: dict) -> str:
    """'PUB: K random basin folds' or 'PUR: held-out groups of …'."""
    if settings['protocol'] == 'random':
        return f"PUB: {settings['folds']} random basin folds"
    groups = settings['groups']
    spec = ' '.join('{' + ','.join(g) + '}' for g in groups) if groups else 'one group per value'
    return f"PUR: held-out groups of {settings['group_by']} {spec}"


def shown(path: str) -> str:
    """A config path as the report shows it: relative to the working directory when below it."""
    return str(Path(path).relative_to(Path.cwd())) if Path(path).is_relative_to(Path.cwd()) else path


def _protocol_lines(settings: dict, folds: pd.DataFrame, per_basin: pd.DataFrame) -> list[str]:
    sizes = folds.groupby(['fold', 'group']).size().reset_index(name='basins')
    epoch = ("the epoch with the best median NSE on the fold's training basins over the validation period "
             "(`--epoch best`)" if settings.get('epoch') == 'best' else "last epoch")
    # the offsets of the runs scored: calls with --first-seed into one folder add theirs
    seeds = sorted({int(seed) for seed in per_basin.get('seed', ()) if str(seed) != ENSEMBLE})
    lines = [f"- Basins: {len(folds)} from `{settings['basin_file']}`; {len(sizes)} folds, each held out once "
             f"({', '.join(str(n) for n in sizes['basins'])} basins)"
             + (f", seed {settings['seed']}." if settings['protocol'] == 'random' else "."),
             *([f"- Data: `{settings['data_dir']}` (--data-dir, in place of each config's `data_dir`)."]
               if settings.get('data_dir') else []),
             "- Each fold: training and validation on the other folds' basins (validation period of the config), "
             f"test on the held-out basins over the config's test period, {epoch}.",
             *([f"- Few gauges: each fold trains (and validates) on a seeded {settings['train_fraction']:.0%} of its "
                f"training basins (`basins/fold_NN/train_fraction.txt`, the same for every model); the test covers "
                f"all held-out basins."] if settings.get('train_fraction', 1.0) < 1.0 else []),
             *([f"- Seeds: every model of every fold trained with {len(seeds)} seeds (the config's `seed` + "
                f"{', '.join(str(seed) for seed in seeds)})."] if len(seeds) > 1 else []),
             f"- {_pretraining_sentence(settings)}",
             "- Leakage checks passed: `use_basin_id_encoding` off; no target variable among the inputs; no static "
             "attribute named like a streamflow signature"
             + (f" (accepted by --allow-attribute: {', '.join(settings['allow_attributes'])})"
                if settings['allow_attributes'] else "")
             + "; no held-out basin in a training or validation basin file."]
    days = per_basin.groupby('basin')['days'].first() if not per_basin.empty else pd.Series(dtype=int)
    days = days[days > 0]
    if not days.empty:
        lines.append(f"- Scoring: every metric of every model is computed from its `test_results.p` on the days that "
                     f"all models predict in the basin and that have an observation (NH's tester scores from "
                     f"`test_start_date + predict_last_n − 1`, StefaLand's strided tester from `test_start_date`): "
                     f"median {np.median(days):.0f} days per basin ({days.min()}–{days.max()}).")
    return lines


def _unobserved_lines(per_basin: pd.DataFrame) -> list[str]:
    """The held-out basins without an observation on their scored days: counted and named, as they have no metric."""
    days = per_basin.groupby('basin')['days'].max()
    unobserved = sorted(days.index[days == 0])
    if not unobserved:
        return []
    return [f"{len(unobserved)} of the {len(days)} held-out basins have no observation on the days scored, so no "
            f"metric (they are not in the counts above): {', '.join(unobserved)}.", ""]


def _failed_lines(failed: list[dict]) -> list[str]:
    if not failed:
        return []
    return ["## Runs that did not finish", "",
            *(f"- {s['label']} {s['name']}: {s['error']} (log: `{s['log']}`)" for s in failed), ""]


def _pretraining_sentence(settings: dict) -> str:
    shipped = {label: model['shipped'] for label, model in settings['models'].items() if model.get('shipped')}
    lines = [f"Model {label} finetunes the shipped encoder stefaland:{encoder['name']} (version {encoder['version']}, "
             f"sha256 {encoder['sha256'][:12]}…), which saw {encoder['basins_seen']} of these basins' forcings and "
             f"attributes in pretraining, never their streamflow." for label, encoder in shipped.items()]
    if not any(model['pretrain'] for model in settings['models'].values()):
        return ' '.join(lines) or "No model has a pretraining stage."
    if settings['pretrain_held_out'] == 'included':
        lines.insert(0, "Pretraining saw all basins' forcings and attributes, never the held-out basins' streamflow "
                        "(target-free stage; finetuning's target normalisation from the fold's training basins only).")
    else:
        lines.insert(0, "Pretraining saw each fold's training basins only (held-out basins excluded entirely).")
    return ' '.join(lines)


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (numbers with 3 decimals)."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return '' if np.isnan(value) else f'{value:.3f}'
        return str(value)

    header = '| ' + ' | '.join(str(c) for c in frame.columns) + ' |'
    rule = '|' + '---|' * len(frame.columns)
    rows = ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in frame.itertuples(index=False)]
    return '\n'.join([header, rule, *rows])
