"""Tables and plots of the pretraining study from the pub reports of ``study.py``'s output folders.

    python benchmarks/pretraining/summarise.py --runs runs/pretraining --output benchmarks/pretraining/results

reads the screening folders ``RUNS/fraction_<F>/`` and the confirmation folders ``RUNS/confirm_<F>/`` (their
``report/per_basin.csv``, written by ``nh-stefaland pub``, and the runs' ``status.json`` for wall time), and writes to
OUTPUT, keeping the rows of OUTPUT/arms.csv whose stage and train fraction have no folder under RUNS (the runs of an
earlier session may be gone). ``--scores`` adds the per-basin scores of an earlier pub report of the study (a
committed copy: per_basin.csv with pub.json and folds.csv beside it) to the folder of the same stage and train
fraction, for the models, folds and seeds that folder has no runs of: seeds run in separate sessions are summarised
together.

    python benchmarks/pretraining/summarise.py --scores benchmarks/pretraining/confirm_0.1/per_basin.csv

Medians and paired differences are pub's (:mod:`nh_stefaland.tools.pub.stats`: per-basin seed means, intervals
resampling folds and seeds), computed per pair of arm and reference on the seeds both ran.

- ``arms.csv``: per stage (screening, confirmation), train fraction and arm, the held-out median NSE, the paired
  median NSE difference to StefaLand from scratch, to NH's LSTM and to the base recipe (95 % interval over folds and
  seeds, share of basins better), the folds and seeds behind it, the finetuning minutes per fold run and the minutes
  of the arm's pretraining;
- ``arms.md``: the same as markdown tables, one per stage and train fraction;
- ``pretraining_updates.png``: median held-out NSE against pretraining updates (one line per train fraction and
  finetuning budget), StefaLand from scratch and the LSTM as horizontal references;
- ``train_fraction.png``: median held-out NSE against the share of training basins, one line per model;
- ``confirmation_folds.png`` (with a confirmation folder): per fold, each arm's median held-out NSE, the mean over
  seeds with the range of the seeds.

The pretraining-length curve is drawn from the screening, where every arm ran on the same folds; the train-fraction
curve from the confirmation once it ran at two fractions or more (else from the screening).
"""
import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from study import ARMS, FOLDERS, PRETRAINING  # noqa: E402

from nh_stefaland.tools.pub import stats  # noqa: E402
from nh_stefaland.tools.pub.report import FOLDS_FILE, SETTINGS_FILE, run_statuses, run_times  # noqa: E402

SHIPPED_UPDATES = 7600  # nh_stefaland/pretrained/caravan_camels_d64/MODEL_CARD.md
REFERENCES = ('scratch', 'lstm', 'base')
STAGES = {prefix: stage_name for stage_name, prefix in FOLDERS.items()}  # output folder prefix → stage
# lines of the pretraining-length plot: arms that differ only in how long their frozen encoder was pretrained
CURVES = {'resconn adapter': ('random_encoder', 'base', 'long_3k', 'shipped'),
          'no adapter (encoder states only)': ('random_no_adapter', 'base_no_adapter', 'shipped_no_adapter')}
DATA = ("Data: Caravan (Kratzert et al. 2023), ERA5-Land forcing (Muñoz Sabater et al. 2021), CAMELS-US attributes "
        "and USGS streamflow (Newman et al. 2015; Addor et al. 2017).")


def pretraining_updates(arm: str) -> int | None:
    """Pretraining updates behind an arm (None for arms without pretraining)."""
    config, recipe, changes, _ = ARMS[arm]
    if 'base_run_dir' in changes:
        return SHIPPED_UPDATES
    if recipe is None:
        return None
    changes = {'epochs': 10, 'max_updates_per_epoch': 100, **PRETRAINING[recipe]}  # stefaland_pretrain.yml's budget
    return changes['epochs'] * changes['max_updates_per_epoch']


def arm_table(folder: Path, per_basin: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per arm finished in one ``fraction_<F>`` or ``confirm_<F>`` folder, from its per-basin scores
    (:func:`scores`, the folder's own when None)."""
    per_basin = scores(folder) if per_basin is None else per_basin
    runs = run_statuses(folder)
    times = run_times(runs)  # minutes per model: median of its fold runs
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    medians = stats.summarise(per_basin).query("metric == 'NSE'").set_index('model')['median']
    rows = []
    for arm in (arm for arm in ARMS if arm in medians.index):
        scored = per_basin[per_basin['model'] == arm]
        row = {'stage': stage(folder), 'train_fraction': settings.get('train_fraction', 1.0), 'arm': arm,
               'finetune_updates': ARMS[arm][3], 'pretraining_updates': pretraining_updates(arm),
               'folds': scored['fold'].nunique(), 'seeds': scored['seed'].nunique(),
               'basins': scored['basin'].nunique(),
               'median_nse': float(medians[arm]),
               'seed_medians': ' '.join(f'{value:.3f}' for value in scored.groupby('seed')['NSE'].median()),
               'minutes_per_run': times['median min per fold'].get(arm, np.nan) if len(times) else np.nan,
               'pretraining_minutes': _pretraining_minutes(arm, settings, runs)}
        for reference in REFERENCES:
            row.update(_difference(per_basin, arm, reference))
        rows.append(row)
    return pd.DataFrame(rows)


def scores(folder: Path, earlier: list[Path] = ()) -> pd.DataFrame:
    """The per-basin scores of the arms in ``folder``'s report, and those of the ``earlier`` reports' per_basin.csv
    files of the same stage and train fraction for each arm, fold and seed the folder has none of.

    Raises
    ------
    ValueError
        If an earlier report of the folder's stage and train fraction has other folds, or scores a basin on another
        number of days (every model must be scored on the same days).
    """
    per_basin = _arm_scores(folder / 'report' / 'per_basin.csv')
    fraction = _train_fraction(folder)
    for path in earlier:
        if stage(path.parent) != stage(folder) or _train_fraction(path.parent) != fraction:
            continue
        if not _folds(path.parent).equals(_folds(folder)):
            raise ValueError(f"{path}: its folds ({path.parent / FOLDS_FILE}) are not those of {folder}.")
        rows = _arm_scores(path)
        days = pd.concat([frame.groupby('basin')['days'].first() for frame in (per_basin, rows)], axis=1).dropna()
        differ = days.index[days.iloc[:, 0] != days.iloc[:, 1]]
        if len(differ):
            basin = differ[0]
            raise ValueError(f"{path}: scored on other days than {folder}'s runs (e.g. basin {basin}: "
                             f"{int(days.loc[basin].iloc[1])} against {int(days.loc[basin].iloc[0])} days). pub scores "
                             "every model on the days all models of the folder predict, and NH's tester predicts "
                             "fewer days than StefaLand's: run an LSTM arm of the earlier report in the folder too.")
        keys = ['model', 'fold', 'seed']
        have = set(map(tuple, per_basin[keys].drop_duplicates().to_numpy()))
        new = rows[[key not in have for key in map(tuple, rows[keys].to_numpy())]]
        if len(new):
            print(f"{folder}: {len(new.drop_duplicates(keys))} runs' scores added from {path}.")
        per_basin = pd.concat([per_basin, new], ignore_index=True)
    return _complete_seeds(per_basin, folder)


def _complete_seeds(per_basin: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Each arm's rows of the seeds that cover every fold the arm ran (a seed still running or stopped part-way
    would otherwise drop the basins of the folds it lacks from the paired comparison)."""
    runs = per_basin[['model', 'fold', 'seed']].drop_duplicates()
    folds = runs.groupby('model')['fold'].nunique()
    covered = runs.groupby(['model', 'seed'])['fold'].nunique()
    partial = {(model, seed) for (model, seed), n in covered.items() if n < folds[model]}
    for model, seed in sorted(partial):
        print(f"{folder}: seed {seed} of {model} left out, it covers {covered[model, seed]} of {folds[model]} folds.")
    keep = [(model, seed) not in partial for model, seed in zip(per_basin['model'], per_basin['seed'])]
    return per_basin[keep].reset_index(drop=True)


def _arm_scores(path: Path) -> pd.DataFrame:
    """The rows of a pub per_basin.csv that belong to arms of the study (not seed ensembles)."""
    per_basin = pd.read_csv(path, dtype={'basin': str, 'seed': str})
    return per_basin[per_basin['model'].isin(ARMS)]


def _train_fraction(folder: Path) -> float:
    return json.loads((folder / SETTINGS_FILE).read_text()).get('train_fraction', 1.0)


def _folds(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / FOLDS_FILE, dtype={'basin': str}).sort_values('basin', ignore_index=True)


def with_earlier_rows(table: pd.DataFrame, earlier_file: Path) -> pd.DataFrame:
    """``table`` and the rows of an earlier ``arms.csv`` whose stage and train fraction it has no folder for (a
    study run over several sessions: the runs of earlier stages may be gone, their summary is not); the minutes that
    ``table`` lacks for an arm of the same stage and train fraction (an arm whose scores came with ``--scores``, its
    runs gone) are the earlier rows'."""
    if not earlier_file.is_file():
        return table
    earlier = pd.read_csv(earlier_file)
    if 'stage' not in earlier:
        earlier.insert(0, 'stage', 'screening')  # summaries written before the confirmation stage existed
    keys = ['stage', 'train_fraction', 'arm']
    known = earlier.set_index(keys)
    for column in ('minutes_per_run', 'pretraining_minutes'):
        missing = table[column].isna()
        table.loc[missing, column] = [known[column].get(key, np.nan)
                                      for key in table.loc[missing, keys].itertuples(index=False, name=None)]
    now = set(zip(table['stage'], table['train_fraction']))
    kept = earlier[[key not in now for key in zip(earlier['stage'], earlier['train_fraction'])]]
    for (stage_name, fraction), rows in kept.groupby(['stage', 'train_fraction']):
        print(f"Kept {len(rows)} arms of the {stage_name} at train fraction {fraction:g} from {earlier_file} "
              f"(no folder for them under --runs).")
    return pd.concat([table, kept], ignore_index=True)


def stage(folder: Path) -> str:
    """'screening' for a ``fraction_<F>`` folder, 'confirmation' for a ``confirm_<F>`` one."""
    prefix = folder.name.partition('_')[0]
    if prefix not in STAGES:
        raise ValueError(f"{folder}: expected a folder named fraction_<F> or confirm_<F>.")
    return STAGES[prefix]


def _pretraining_minutes(arm: str, settings: dict, runs: list[tuple[Path, dict]]) -> float:
    """Mean minutes of one pretraining run of the arm's recipe (one per seed; pub keeps a shared pretraining under one
    model's label, so the runs of every model with the same pretraining config count)."""
    pretrain_config = settings['models'].get(arm, {}).get('pretrain')
    if pretrain_config is None:
        return np.nan
    same = {label for label, model in settings['models'].items()
            if model.get('pretrain') and Path(model['pretrain']).read_text() == Path(pretrain_config).read_text()}
    seconds = [status.get('seconds', np.nan) for _, status in runs
               if status['state'] == 'done' and status['label'] in same and 'pretrain' in status['name']]
    return float(np.mean(seconds)) / 60 if seconds else np.nan


def _difference(per_basin: pd.DataFrame, arm: str, reference: str) -> dict:
    """Paired median NSE difference arm − reference with its interval and share better ({} cells NaN if absent), on
    the seeds both ran: an arm run with one seed is compared with that seed of the reference, not with its mean."""
    keys = [f'vs_{reference}', f'vs_{reference}_low', f'vs_{reference}_high', f'vs_{reference}_share_better']
    seeds = [set(per_basin.loc[per_basin['model'] == model, 'seed']) for model in (arm, reference)]
    pair = per_basin[per_basin['model'].isin([arm, reference]) & per_basin['seed'].isin(seeds[0] & seeds[1])]
    if arm == reference or reference not in set(pair['model']):
        return dict.fromkeys(keys, np.nan)
    ordered = pd.concat([pair[pair['model'] == arm], pair[pair['model'] == reference]])  # compare_pairs: a − b
    row = stats.compare_pairs(ordered).query("metric == 'NSE'").iloc[0]
    return dict(zip(keys, (row['median_difference'], row['ci_low'], row['ci_high'], row['share_a_better'])))


def markdown(table: pd.DataFrame) -> str:
    """One markdown table per stage and train fraction."""
    lines = []
    for (stage_name, fraction), rows in table.groupby(['stage', 'train_fraction'], sort=False):
        lines += [f'### {stage_name.capitalize()}, train fraction {fraction:g}', '',
                  '| arm | pretraining updates | finetune updates | folds × seeds | median NSE | vs scratch | '
                  'vs LSTM | vs base | min per run | pretraining min |', '|---|---|---|---|---|---|---|---|---|---|']
        for row in rows.itertuples():
            cells = [f'`{row.arm}`', _count(row.pretraining_updates), f'{row.finetune_updates:,}',
                     f'{row.folds} × {row.seeds}', _median(row)]
            cells += [_cell(row, reference) for reference in REFERENCES]
            cells += [_number(row.minutes_per_run), _number(row.pretraining_minutes)]
            lines.append('| ' + ' | '.join(cells) + ' |')
        lines.append('')
    lines.append('Median NSE: over the held-out basins of each basin\'s mean over seeds (in brackets, with several '
                 'seeds: the median of each seed). Differences: median over held-out basins of the per-basin NSE '
                 'difference (arm − reference) on the folds and seeds both ran, 95 % interval resampling folds and '
                 'seeds, share of basins where the arm is better.')
    if (table['folds'] < 5).any():
        lines[-1] += (' With fewer than 5 folds the interval resamples only those folds: it shows how much the folds '
                      'differ, not a 95 % interval, and leaves out the run-to-run noise of one seed.')
    lines += [DATA, '']
    return '\n'.join(lines)


def _median(row) -> str:
    """The median NSE, and with several seeds each seed's median in brackets."""
    seeds = getattr(row, 'seed_medians', np.nan)
    return f'{row.median_nse:.3f}' + (f' ({seeds})' if row.seeds > 1 and isinstance(seeds, str) else '')


def _count(value) -> str:
    return '—' if value is None or pd.isna(value) else f'{int(value):,}'


def _number(value: float) -> str:
    return '—' if pd.isna(value) else f'{value:.1f}'


def _cell(row, reference: str) -> str:
    median = getattr(row, f'vs_{reference}')
    if pd.isna(median):
        return '—'
    low, high = getattr(row, f'vs_{reference}_low'), getattr(row, f'vs_{reference}_high')
    share = getattr(row, f'vs_{reference}_share_better')
    return f'{median:+.3f} ({low:+.3f}…{high:+.3f}; {share:.0%})'


def plot_pretraining_updates(table: pd.DataFrame, path: Path) -> None:
    """Median held-out NSE against pretraining updates, per train fraction, with the references as lines."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (fraction, at_fraction) in enumerate(table.groupby('train_fraction')):
        colour = f'C{index}'
        for (curve, arms), style in zip(CURVES.items(), ('o-', 's-.')):
            rows = at_fraction[at_fraction['arm'].isin(arms)].sort_values('pretraining_updates')
            if rows.empty:
                continue
            axis.plot(rows['pretraining_updates'], rows['median_nse'], style, color=colour,
                      label=f'{curve}, train fraction {fraction:g}')
            for row in rows.itertuples():
                axis.annotate(row.arm, (row.pretraining_updates, row.median_nse), textcoords='offset points',
                              xytext=(4, 4), fontsize=7, color=colour)
        for reference, style in (('scratch', '--'), ('lstm', ':')):
            value = at_fraction.loc[at_fraction['arm'] == reference, 'median_nse']
            if len(value):
                axis.axhline(value.iloc[0], color=colour, linestyle=style, linewidth=1,
                             label=f'{"StefaLand from scratch" if reference == "scratch" else "NH LSTM"}, '
                                   f'fraction {fraction:g}')
    _finish(figure, axis, path, 'pretraining updates (batches of 64 windows of 365 days)',
            'Pretraining length (800 finetuning updates, PUB folds of 382 CAMELS-US basins)')


def plot_train_fraction(table: pd.DataFrame, path: Path) -> None:
    """Median held-out NSE against the share of training basins with streamflow, one line per arm run at several
    shares (one point per arm when none was)."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    fractions = table.groupby('arm')['train_fraction'].nunique()
    crossed = [arm for arm in ARMS if fractions.get(arm, 0) > 1]  # the arms run at several fractions, else all
    for arm in crossed or [arm for arm in ARMS if arm in fractions]:
        rows = table[table['arm'] == arm].sort_values('train_fraction')
        axis.plot(rows['train_fraction'], rows['median_nse'], 'o-', label=arm)
    _finish(figure, axis, path, "share of each fold's training basins with streamflow",
            'Few gauges (PUB folds of 382 CAMELS-US basins)')


def plot_confirmation_folds(panels: dict[float, pd.DataFrame], path: Path) -> None:
    """Per train fraction of the confirmation one panel from its per-basin scores (:func:`scores`): each arm's median
    held-out NSE per fold, a marker at the mean over seeds and a bar over the range of the seeds."""
    figure, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    shown = set().union(*(per_basin['model'] for per_basin in panels.values()))
    colours = {arm: f'C{index}' for index, arm in enumerate(arm for arm in ARMS if arm in shown)}  # same in each panel
    for axis, (fraction, per_basin) in zip(axes[0], sorted(panels.items())):
        medians = per_basin.groupby(['model', 'fold', 'seed'])['NSE'].median().groupby(['model', 'fold'])
        spread = pd.DataFrame({'mean': medians.mean(), 'low': medians.min(), 'high': medians.max()}).reset_index()
        arms = [arm for arm in ARMS if arm in set(spread['model'])]
        for index, arm in enumerate(arms):
            rows = spread[spread['model'] == arm]
            x = rows['fold'] + (index - (len(arms) - 1) / 2) * 0.12
            axis.errorbar(x, rows['mean'], yerr=[rows['mean'] - rows['low'], rows['high'] - rows['mean']], fmt='o',
                          capsize=3, label=arm, color=colours[arm])
        axis.set_xticks(sorted(spread['fold'].unique()))
        _label(axis, 'PUB fold (about 76 held-out basins each)',
               f'Confirmation, train fraction {fraction:g}: mean and range over {per_basin["seed"].nunique()} seed(s)')
    _save(figure, path)


def _finish(figure: plt.Figure, axis: plt.Axes, path: Path, xlabel: str, title: str) -> None:
    """Log x axis, labels, legend and data credit; save to ``path``."""
    axis.set_xscale('log')
    _label(axis, xlabel, title)
    _save(figure, path)


def _label(axis: plt.Axes, xlabel: str, title: str) -> None:
    """Axis labels (y: median held-out NSE), title, grid and legend."""
    axis.set_xlabel(xlabel)
    axis.set_ylabel('median NSE, held-out basins')
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)


def _save(figure: plt.Figure, path: Path) -> None:
    """The data credit, then the figure to ``path``."""
    figure.text(0.01, 0.01, 'Data: Caravan / ERA5-Land, CAMELS-US attributes, USGS streamflow', fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=Path, default=Path('runs/pretraining'))
    parser.add_argument('--output', type=Path, default=Path(__file__).resolve().parent / 'results')
    parser.add_argument('--scores', type=Path, action='append', default=[], metavar='PER_BASIN_CSV',
                        help="per_basin.csv of an earlier pub report of the study (pub.json and folds.csv beside it): "
                             "its scores join the folder under --runs of the same stage and train fraction, for the "
                             "arms, folds and seeds that folder has no runs of (repeat for several).")
    args = parser.parse_args()
    for path in args.scores:
        if not all((path.parent / name).is_file() for name in (path.name, SETTINGS_FILE, FOLDS_FILE)):
            parser.error(f"--scores {path}: expected a pub report's per_basin.csv with {SETTINGS_FILE} and "
                         f"{FOLDS_FILE} beside it.")
    folders = sorted(path for prefix in STAGES for path in args.runs.glob(f'{prefix}_*')
                     if (path / 'report' / 'summary.csv').is_file())
    if not folders:
        parser.error(f"{args.runs} holds no fraction_<F>/ or confirm_<F>/ with report/summary.csv: run study.py "
                     f"first.")
    scored = {folder: scores(folder, args.scores) for folder in folders}  # each folder's scores, read once
    table = with_earlier_rows(pd.concat([arm_table(folder, scored[folder]) for folder in folders], ignore_index=True),
                              args.output / 'arms.csv')
    args.output.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output / 'arms.csv', index=False)
    (args.output / 'arms.md').write_text(markdown(table))
    written = ['arms.csv', 'arms.md']
    screening, confirmation = (table[table['stage'] == stage_name] for stage_name in STAGES.values())
    if len(screening):  # every arm on the same folds: one stage per curve
        plot_pretraining_updates(screening, args.output / 'pretraining_updates.png')
        written.append('pretraining_updates.png')
    crossed = confirmation if confirmation['train_fraction'].nunique() > 1 else screening
    if len(crossed):
        plot_train_fraction(crossed, args.output / 'train_fraction.png')
        written.append('train_fraction.png')
    panels = {_train_fraction(folder): scored[folder] for folder in folders if stage(folder) == 'confirmation'}
    for path in args.scores:  # a committed report whose runs are gone still has its panel
        if stage(path.parent) == 'confirmation' and _train_fraction(path.parent) not in panels:
            panels[_train_fraction(path.parent)] = _arm_scores(path)
    if panels:
        plot_confirmation_folds(panels, args.output / 'confirmation_folds.png')
        written.append('confirmation_folds.png')
    print(f"Wrote {', '.join(written)} to {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
