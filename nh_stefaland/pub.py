"""``nh-stefaland pub``: train and test models in ungauged basins (PUB) or regions (PUR) on the same folds."""
import argparse
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path

LOGGER = logging.getLogger(__name__)

HELP = "Ungauged-basin (PUB) and ungauged-region (PUR) tests over basin folds, with an aggregated report."
SETTINGS_FILE = 'pub.json'
FOLDS_FILE = 'folds.csv'
# settings that define the folds: a re-run into the same output directory must repeat them
FOLD_SETTINGS = ('protocol', 'folds', 'seed', 'group_by', 'groups')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nh-stefaland pub`` (see docs/ungauged.md)."""
    parser.add_argument('--model', action='append', default=[], metavar='LABEL=CONFIG',
                        help="NH config of a model under a label; repeat for each model to compare.")
    parser.add_argument('--pretrain', action='append', default=[], metavar='LABEL=CONFIG',
                        help="Pretraining stage of model LABEL: CONFIG is pretrained first, and the --model config of "
                             "LABEL then finetunes it (NH's finetune; base_run_dir is set by pub).")
    parser.add_argument('--basin-file', type=Path, help="All basins of the test; the folds split them.")
    parser.add_argument('--output-dir', type=Path, help="Where folds, runs and the report are kept (resumable).")
    protocol = parser.add_mutually_exclusive_group()
    protocol.add_argument('--folds', type=int, metavar='K', help="K seeded random basin folds (PUB, default 10).")
    protocol.add_argument('--regions', action='store_true',
                          help="Hold out HUC-02 regions (PUR): --group-by huc_02 with the paper's 7 groups.")
    protocol.add_argument('--group-by', metavar='ATTRIBUTE', help="Hold out basins grouped by a static attribute.")
    parser.add_argument('--groups', nargs='+', metavar='V1,V2',
                        help="Attribute values held out together, one group per argument (default with --group-by: "
                             "one fold per value; with --regions: {1,2} {3,6} {4,5,7} {9,10} {8,11,12,13} "
                             "{14,15,16,18} {17}).")
    parser.add_argument('--seed', type=int, default=0, help="Seed of the random folds (default 0).")
    parser.add_argument('--pretrain-exclude-held-out', action='store_true',
                        help="Pretrain on each fold's training basins only (default: pretraining sees all basins' "
                             "forcings and attributes, never the held-out basins' streamflow).")
    parser.add_argument('--allow-attribute', action='append', default=[], metavar='NAME',
                        help="Accept a static attribute whose name looks derived from streamflow.")
    parser.add_argument('--jobs', type=int, default=1, help="Runs in parallel worker processes (default 1).")
    parser.add_argument('--report-only', type=Path, metavar='DIR', help="Only rebuild the report of DIR's runs.")


def run(args: argparse.Namespace) -> int:
    """Make the folds, run every model on every fold (skipping finished ones) and write the report."""
    # NH and torch load here, not at import: `nh-stefaland --help` stays fast
    from tqdm import tqdm

    import nh_stefaland
    from nh_stefaland import pub_report, pub_runs

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stdout)
    if args.report_only is not None:
        LOGGER.info(f"Report written to {pub_report.write_report(args.report_only)}")
        return 0
    nh_stefaland.register()
    settings, models = _settings(args)
    output_dir = args.output_dir.resolve()
    folds = _load_or_make_folds(settings, output_dir)
    waves = _plan(settings, models, folds, output_dir)
    finished = [task for wave in waves for task in wave if pub_runs.is_finished(task)]
    pretraining, final = waves
    needed_bases = {task.base.directory for task in final if task not in finished and task.base is not None}
    todo = [[task for task in pretraining if task.directory in needed_bases and task not in finished],
            [task for task in final if task not in finished]]
    total = sum(len(wave) for wave in todo)
    with tqdm(total=len(final) + len(todo[0]), initial=len(final) - len(todo[1]), file=sys.stdout,
              desc='folds × models', unit='run') as progress:
        statuses = pub_runs.run_waves(todo, jobs=args.jobs, progress=progress)
    failed = {directory: status for directory, status in statuses.items() if status['state'] != 'done'}
    for directory, status in failed.items():
        LOGGER.error(f"Model '{status['label']}' {status['name']} failed ({status['error']}); "
                     f"log: {os.path.normpath(directory / status['log'])}")
    LOGGER.info(f"{len(finished)} run(s) reused, {total - len(failed)} run now, {len(failed)} failed. "
                f"Report: {pub_report.write_report(output_dir)}")
    return 1 if failed else 0


def _settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """The checked settings (with the models of earlier runs in the output directory) and this run's models."""
    from neuralhydrology.datautils.utils import load_basin_file

    if not args.model or args.basin_file is None or args.output_dir is None:
        raise ValueError("nh-stefaland pub needs --model LABEL=CONFIG (one or more), --basin-file and --output-dir "
                         "(or --report-only DIR).")
    if args.groups and not (args.regions or args.group_by):
        raise ValueError("--groups needs --regions or --group-by ATTRIBUTE.")
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs} must be at least 1.")
    models = {label: {'config': str(path), 'pretrain': None} for label, path in _labelled(args.model, '--model')}
    for label, path in _labelled(args.pretrain, '--pretrain'):
        if label not in models:
            raise ValueError(f"--pretrain {label}=…: no --model {label}=… to finetune it.")
        models[label]['pretrain'] = str(path)
    if args.regions or args.group_by:
        groups = args.groups or (None if args.group_by else ['1,2', '3,6', '4,5,7', '9,10', '8,11,12,13',
                                                             '14,15,16,18', '17'])
        protocol = {'protocol': 'groups', 'folds': None, 'seed': None, 'group_by': args.group_by or 'huc_02',
                    'groups': [group.split(',') for group in groups] if groups else None}
    else:
        protocol = {'protocol': 'random', 'folds': args.folds or 10, 'seed': args.seed, 'group_by': None,
                    'groups': None}
    basins = load_basin_file(args.basin_file)
    settings = {**protocol, 'basin_file': str(args.basin_file), 'basins': basins,
                'pretrain_held_out': 'excluded' if args.pretrain_exclude_held_out else 'included',
                'allow_attributes': args.allow_attribute, 'models': models}
    _check_leakage(settings)
    earlier_file = args.output_dir / SETTINGS_FILE
    if earlier_file.is_file():
        earlier = json.loads(earlier_file.read_text())
        changed = [key for key in (*FOLD_SETTINGS, 'basins') if earlier[key] != settings[key]]
        if changed:
            raise ValueError(f"{args.output_dir} holds folds made with other {changed}; use a new --output-dir.")
        settings['models'] = {**earlier['models'], **models}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    earlier_file.write_text(json.dumps(settings, indent=1))
    return settings, models


def _labelled(values: list[str], option: str) -> list[tuple[str, Path]]:
    pairs = []
    for value in values:
        label, _, path = value.partition('=')
        if not re.fullmatch(r'[A-Za-z0-9_.-]+', label) or not path:
            raise ValueError(f"{option} {value!r}: expected LABEL=CONFIG with a label of letters, digits, '_.-'.")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{option} {value!r}: no config file {path}.")
        if label in dict(pairs):
            raise ValueError(f"{option}: label '{label}' given twice.")
        pairs.append((label, Path(path).resolve()))
    return pairs


def _check_leakage(settings: dict) -> None:
    """Every leakage guard that the configs alone decide, before anything runs."""
    from neuralhydrology.utils.config import Config

    from nh_stefaland import pub_leakage

    allowed = settings['allow_attributes']
    for label, model in settings['models'].items():
        cfg = Config(Path(model['config']))
        if model['pretrain'] is None:
            if cfg.as_dict().get('base_run_dir') is not None or cfg.as_dict().get('checkpoint_path') is not None:
                raise ValueError(f"Model '{label}': its config starts from fixed weights (base_run_dir or "
                                 f"checkpoint_path), which may have seen held-out streamflow. Give the pretraining "
                                 f"config with --pretrain {label}=CONFIG so that it is pretrained within each fold.")
        else:
            pretrain = Config(Path(model['pretrain']))
            pub_leakage.check_config(pretrain, label, allowed)
            if settings['pretrain_held_out'] == 'included':
                pub_leakage.check_target_free(pretrain, label)
            pretrain.update_config(Path(model['config']))
            cfg = pretrain
        pub_leakage.check_config(cfg, label, allowed)


def _load_or_make_folds(settings: dict, output_dir: Path):
    """The saved fold assignment of ``output_dir``, or a new one (saved there)."""
    import pandas as pd
    from neuralhydrology.utils.config import Config

    from nh_stefaland import pub_folds

    path = output_dir / FOLDS_FILE
    if path.is_file():
        return pd.read_csv(path, dtype={'basin': str})
    basins = settings['basins']
    if settings['protocol'] == 'random':
        folds = pub_folds.random_folds(basins, settings['folds'], settings['seed'])
    else:
        cfg = Config(Path(next(iter(settings['models'].values()))['config']))
        values = pub_folds.load_attribute(cfg, basins, settings['group_by'])
        folds = pub_folds.group_folds(values, settings['group_by'], settings['groups'])
    folds.to_csv(path, index=False)
    return folds


def _plan(settings: dict, models: dict, folds, output_dir: Path) -> list[list]:
    """The tasks of ``models``: wave 0 their pretraining stages, wave 1 one final stage per model and fold."""
    from nh_stefaland import pub_folds
    from nh_stefaland.pub_runs import Task

    fold_files = pub_folds.write_fold_basin_files(folds, output_dir / 'basins')
    all_basins = output_dir / 'basins' / 'all.txt'
    all_basins.write_text(''.join(f'{basin}\n' for basin in folds['basin']))
    include = settings['pretrain_held_out'] == 'included'
    pretraining, final = [], []
    for label, model in models.items():
        runs = output_dir / 'runs' / label
        shared = None
        if model['pretrain'] is not None and include:
            files = {'train': all_basins, 'validation': all_basins, 'test': all_basins}
            shared = Task(label, 'pretrain', runs / 'pretrain', Path(model['pretrain']), files, frozenset(),
                          _fingerprint(model['pretrain'], files), evaluate=False)
            pretraining.append(shared)
        for fold, paths in fold_files.items():
            files = {'train': paths['train'], 'validation': paths['train'], 'test': paths['test']}
            held_out = frozenset(folds.loc[folds['fold'] == fold, 'basin'])
            base = shared
            if model['pretrain'] is not None and not include:
                base = Task(label, f'fold_{fold:02d}_pretrain', runs / f'fold_{fold:02d}_pretrain',
                            Path(model['pretrain']), files, held_out, _fingerprint(model['pretrain'], files),
                            evaluate=False)
                pretraining.append(base)
            final.append(Task(label, f'fold_{fold:02d}', runs / f'fold_{fold:02d}', Path(model['config']), files,
                              held_out, _fingerprint(model['config'], files, base), base=base,
                              target_basin_file=paths['train'] if shared is not None else None))
    return [pretraining, final]


def _fingerprint(config: str, basin_files: dict[str, Path], base=None) -> str:
    """Hash of a stage's config text, its basins and (for finetuning) its pretraining's fingerprint."""
    parts = [Path(config).read_text(), *(path.read_text() for path in basin_files.values()),
             base.fingerprint if base is not None else '']
    return hashlib.sha256('\0'.join(parts).encode()).hexdigest()[:16]
