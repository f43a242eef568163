"""The plan of a ``nh-stefaland pub`` run: checked settings, saved folds and the tasks per model and fold."""
import argparse
import dataclasses
import hashlib
import itertools
import json
import logging
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from neuralhydrology.datautils.utils import load_basin_file
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.tools.pub import epochs, files as pub_files, folds as pub_folds, leakage as pub_leakage
from nh_stefaland.tools.pub.report import FOLDS_FILE, SETTINGS_FILE, STATUS_FILE, read_status
from nh_stefaland.tools.pub.runs import Task

LOGGER = logging.getLogger(__name__)

# settings that define the folds: a re-run into the same output directory must repeat them
FOLD_SETTINGS = ('protocol', 'folds', 'seed', 'group_by', 'groups', 'train_fraction')
EARLIER_DEFAULTS = {'train_fraction': 1.0}  # settings that pub.json files of older versions do not hold


def settings_from(args: argparse.Namespace) -> tuple[dict, dict]:
    """The checked settings (with the models of earlier runs in the output directory) and this run's models.

    Raises
    ------
    ValueError
        If an option is missing or inconsistent, a leakage guard of :mod:`pub_leakage` fails, or the output directory
        holds folds made with other settings.
    """
    if not args.model or args.basin_file is None or args.output_dir is None:
        raise ValueError("nh-stefaland pub needs --model LABEL=CONFIG (one or more), --basin-file and --output-dir "
                         "(or --report-only DIR).")
    if args.groups and not (args.regions or args.group_by):
        raise ValueError("--groups needs --regions or --group-by ATTRIBUTE.")
    jobs = 1 if args.jobs is None else args.jobs
    if not 0.0 < args.train_fraction <= 1.0:
        raise ValueError(f"--train-fraction {args.train_fraction} must be in (0, 1].")
    for option, value in (('--jobs', jobs), ('--seeds', args.seeds), ('--epoch-basins', args.epoch_basins)):
        if value < 1:
            raise ValueError(f"{option} {value} must be at least 1.")
    if args.first_seed < 0:
        raise ValueError(f"--first-seed {args.first_seed} must be at least 0.")
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir}: no such folder.")
    models = {label: {'config': str(path), 'pretrain': None} for label, path in _labelled(args.model, '--model')}
    for label, path in _labelled(args.pretrain, '--pretrain'):
        if label not in models:
            raise ValueError(f"--pretrain {label}=…: no --model {label}=… to finetune it.")
        models[label]['pretrain'] = str(path)
    if args.regions or args.group_by:
        groups = [group.split(',') for group in args.groups] if args.groups else None
        if groups is None and args.regions:
            groups = [list(group) for group in pub_folds.PAPER_HUC02_GROUPS]
        protocol = {'protocol': 'groups', 'folds': None, 'seed': None, 'group_by': args.group_by or 'huc_02',
                    'groups': groups}
    else:
        protocol = {'protocol': 'random', 'folds': 10 if args.folds is None else args.folds, 'seed': args.seed,
                    'group_by': None, 'groups': None}
    basins = load_basin_file(args.basin_file)
    duplicated = sorted(basin for basin, count in Counter(basins).items() if count > 1)
    if duplicated:
        raise ValueError(f"--basin-file {args.basin_file} lists {len(duplicated)} basin(s) more than once "
                         f"({', '.join(duplicated[:5])}{', …' if len(duplicated) > 5 else ''}): a basin may be in one "
                         f"fold only. Remove the repeated lines.")
    settings = {**protocol, 'basin_file': str(args.basin_file), 'basins': basins,
                'data_dir': str(args.data_dir.resolve()) if args.data_dir is not None else None,
                'pretrain_held_out': 'excluded' if args.pretrain_exclude_held_out else 'included',
                'allow_attributes': args.allow_attribute, 'seeds': args.seeds, 'first_seed': args.first_seed,
                'epoch': args.epoch,
                'epoch_basins': args.epoch_basins, 'train_fraction': args.train_fraction, 'models': models}
    _check_configs(settings)
    settings['models'] = _with_earlier_models(settings, args.output_dir)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return settings, models


def save_settings(settings: dict, output_dir: Path) -> None:
    """Keep the settings in ``output_dir`` (pub.json), for re-runs and the report.

    Models that another pub process saved there meanwhile (a job array's other jobs) are kept.

    Raises
    ------
    ValueError
        If another pub process saved folds made with other settings there meanwhile.
    """
    with pub_files.locked(output_dir / pub_files.LOCK_FILE):
        settings['models'] = _with_earlier_models(settings, output_dir)
        pub_files.write_text(output_dir / SETTINGS_FILE, json.dumps(settings, indent=1))


def _with_earlier_models(settings: dict, output_dir: Path) -> dict:
    """The models of ``output_dir``'s pub.json (if any) and then those of ``settings``, checking the fold settings."""
    earlier_file = output_dir / SETTINGS_FILE
    if not earlier_file.is_file():
        return settings['models']
    earlier = json.loads(earlier_file.read_text())
    changed = [key for key in (*FOLD_SETTINGS, 'basins')
               if earlier.get(key, EARLIER_DEFAULTS.get(key)) != settings[key]]
    if changed:
        raise ValueError(f"{output_dir} holds folds made with other {changed}; use a new --output-dir.")
    return {**earlier['models'], **settings['models']}


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


def _check_configs(settings: dict) -> None:
    """Every leakage guard that the configs alone decide, and the stage of each config, before anything runs."""
    allowed = settings['allow_attributes']
    for label, model in settings['models'].items():
        cfg = Config(Path(model['config']))
        seeded = Config(Path(model['pretrain'])) if model['pretrain'] is not None else cfg
        if max(seed_offsets(settings)) > 0 and seeded.seed is None and cfg.seed is None:
            raise ValueError(f"Model '{label}': seed offsets {list(seed_offsets(settings))} (--seeds, --first-seed) "
                             f"are added to the config's seed, and {model['pretrain'] or model['config']} sets none. "
                             f"Add `seed: <int>`.")
        stage = cfg.as_dict().get('stefaland_stage')
        finetunes_shipped = stage == 'finetune' and pretrained.is_name(cfg.as_dict().get('base_run_dir'))
        if model['pretrain'] is None and finetunes_shipped:
            model['shipped'] = _shipped_encoder(label, cfg, settings)
            cfg = pub_folds.model_config(model, settings['data_dir'])
        elif model['pretrain'] is None:
            if stage in ('pretrain', 'finetune'):
                raise ValueError(f"Model '{label}': {model['config']} is a StefaLand {stage} stage. Give a pretraining "
                                 f"config with --pretrain {label}=CONFIG and its finetuning config with --model.")
            if cfg.as_dict().get('base_run_dir') is not None or cfg.as_dict().get('checkpoint_path') is not None:
                raise ValueError(f"Model '{label}': its config starts from fixed weights (base_run_dir or "
                                 f"checkpoint_path), which may have seen held-out streamflow. Give the pretraining "
                                 f"config with --pretrain {label}=CONFIG so that it is pretrained within each fold.")
        else:
            if not cfg.finetune_modules:
                raise ValueError(f"Model '{label}': {model['config']} finetunes its pretraining and must list the "
                                 f"parts to train in finetune_modules.")
            pretrain = Config(Path(model['pretrain']))
            _check_data_dir(pretrain, label, settings['data_dir'])
            pub_leakage.check_config(pretrain, label, allowed)
            if settings['pretrain_held_out'] == 'included':
                pub_leakage.check_target_free(pretrain, label)
            cfg = pub_folds.model_config(model, settings['data_dir'])
        _check_data_dir(cfg, label, settings['data_dir'])
        pub_leakage.check_config(cfg, label, allowed)


def _shipped_encoder(label: str, cfg: Config, settings: dict) -> dict:
    """What the report says of a model that finetunes a shipped encoder: its name, version, checksum and how many of
    the basins under test it saw in pretraining (their forcings and attributes, never their streamflow).

    Raises
    ------
    ValueError
        If the config names no part to finetune, or ``--pretrain-exclude-held-out`` is asked while the encoder saw
        some of the basins.
    """
    if not cfg.finetune_modules:
        raise ValueError(f"Model '{label}': it finetunes {cfg.as_dict()['base_run_dir']} and must list the parts to "
                         f"train in finetune_modules.")
    manifest = pretrained.manifest(str(cfg.as_dict()['base_run_dir']))
    seen = sorted(set(manifest['basins']) & set(settings['basins']))
    if seen and settings['pretrain_held_out'] == 'excluded':
        raise ValueError(f"Model '{label}': the shipped encoder stefaland:{manifest['name']} was pretrained on "
                         f"{len(seen)} of these basins (e.g. {seen[0]}), so --pretrain-exclude-held-out cannot hold. "
                         f"Pretrain within the folds instead: --pretrain {label}=PRETRAINING_CONFIG.")
    return {'name': manifest['name'], 'version': manifest['version'], 'sha256': manifest['sha256'],
            'basins_seen': len(seen)}


def _check_data_dir(cfg: Config, label: str, data_dir: str | None) -> None:
    """The dataset folder of a config (or ``--data-dir``, which replaces it) exists."""
    if data_dir is None and not cfg.data_dir.is_dir():
        raise FileNotFoundError(f"Model '{label}': data_dir {cfg.data_dir} is not a folder. Correct the config, or "
                                f"give the dataset folder of every model with --data-dir.")


def load_or_make_folds(settings: dict, output_dir: Path) -> pd.DataFrame:
    """The saved fold assignment of ``output_dir``, or a new one (saved there as folds.csv)."""
    with pub_files.locked(output_dir / pub_files.LOCK_FILE):  # pub processes started together make it once
        return _load_or_make_folds(settings, output_dir / FOLDS_FILE)


def _load_or_make_folds(settings: dict, path: Path) -> pd.DataFrame:
    if path.is_file():
        LOGGER.info(f"Folds reused from {path}.")
        return pd.read_csv(path, dtype={'basin': str})
    basins = settings['basins']
    if settings['protocol'] == 'random':
        folds = pub_folds.random_folds(basins, settings['folds'], settings['seed'])
    else:
        cfg = pub_folds.model_config(next(iter(settings['models'].values())), settings['data_dir'])
        values = pub_folds.load_attribute(cfg, basins, settings['group_by'])
        folds = pub_folds.group_folds(values, settings['group_by'], settings['groups'])
    pub_files.write_text(path, folds.to_csv(index=False))
    LOGGER.info(f"{folds['fold'].nunique()} folds of {len(folds)} basins saved to {path}.")
    return folds


def plan(settings: dict, models: dict, folds: pd.DataFrame, output_dir: Path,
         only: list[int] | None = None) -> list[list[Task]]:
    """The tasks of ``models``: their pretraining stages, and one final stage per model, fold and seed.

    With ``only`` (``--fold``), the final stages of those folds only. Every stage is trained once per seed offset
    (:func:`seed_offsets`), with the config's ``seed`` + offset (a pretrained model's pretraining too).

    Validation uses the fold's training basins (over the config's validation period): the held-out basins are
    looked at only in the test. Pretraining sees all basins, or only the training basins when the held-out ones
    are excluded; one pretraining on all basins (per seed) is shared by the folds, and models with the same
    pretraining config (text) share its runs, kept under the first such model's label. With ``--train-fraction`` F < 1
    the final stages train (and validate) on a seeded share F of the fold's training basins, the same for every
    model; pretraining still sees the inputs of all of them.
    """
    unknown = sorted(set(only or ()) - set(folds['fold']))
    if unknown:
        raise ValueError(f"--fold {unknown}: the folds are numbered {sorted(set(folds['fold']))}.")
    all_basins = output_dir / 'basins' / 'all.txt'
    with pub_files.locked(output_dir / pub_files.LOCK_FILE):
        fold_files = pub_folds.write_fold_basin_files(folds, output_dir / 'basins')
        pub_files.write_text(all_basins, ''.join(f'{basin}\n' for basin in folds['basin']))
        gauged = _gauged_basin_files(settings, fold_files)
        epoch_files = _epoch_basin_files(settings, gauged)
    include = settings['pretrain_held_out'] == 'included'
    data_dir = Path(settings['data_dir']) if settings['data_dir'] is not None else None
    pretraining, final = [], []
    for (label, model), seed in itertools.product(models.items(), seed_offsets(settings)):
        runs, tag = output_dir / 'runs' / label, f'_seed_{seed:02d}' if seed else ''
        shared = None
        if model['pretrain'] is not None and include:
            files = {'train': all_basins, 'validation': all_basins, 'test': all_basins}
            name = f'seed_{seed:02d}_pretrain' if seed else 'pretrain'
            shared = _pretraining(Task(label, name, runs / name, Path(model['pretrain']), files, frozenset(),
                                       _fingerprint(model['pretrain'], files, data_dir, seed=seed),
                                       data_dir=data_dir, evaluate=False, seed=seed), pretraining)
        for fold, paths in fold_files.items():
            if only and fold not in only:
                continue
            files = {'train': paths['train'], 'validation': paths['train'], 'test': paths['test']}
            held_out = frozenset(folds.loc[folds['fold'] == fold, 'basin'])
            name = f'fold_{fold:02d}{tag}'
            base = shared
            if model['pretrain'] is not None and not include:
                base = _pretraining(Task(label, f'{name}_pretrain', runs / f'{name}_pretrain', Path(model['pretrain']),
                                         files, held_out, _fingerprint(model['pretrain'], files, data_dir, seed=seed),
                                         data_dir=data_dir, evaluate=False, seed=seed), pretraining)
            files = {'train': gauged[fold], 'validation': gauged[fold], 'test': paths['test']}
            final.append(Task(label, name, runs / name, Path(model['config']), files, held_out,
                              _fingerprint(model['config'], files, data_dir, base, seed=seed,
                                           encoder=(model.get('shipped') or {}).get('sha256')), base=base,
                              data_dir=data_dir, seed=seed, epoch_basin_file=epoch_files.get(fold)))
    return [pretraining, final]


def seed_offsets(settings: dict) -> range:
    """The seed offsets of the runs to make: ``--first-seed`` K … K + ``--seeds`` N − 1 (0 alone by default)."""
    first = settings.get('first_seed', 0)
    return range(first, first + settings.get('seeds', 1))


def _pretraining(task: Task, planned: list[Task]) -> Task:
    """The pretraining stage of ``task``'s fingerprint that another model already has, else ``task``; added to
    ``planned``. Models whose pretraining configs are the same text share one pretraining run: one planned in this
    call, or one that an earlier call into the same output directory finished for another model."""
    for earlier in planned:
        if earlier.fingerprint == task.fingerprint:
            return earlier
    if read_status(task.directory) is None:  # never started here: a finished twin under another label will do
        for status_file in sorted(task.directory.parent.parent.glob(f'*/{task.name}/{STATUS_FILE}')):
            status = read_status(status_file.parent)
            if status['state'] == 'done' and status['fingerprint'] == task.fingerprint:
                task = dataclasses.replace(task, label=status['label'], directory=status_file.parent)
                break
    planned.append(task)
    return task


def _gauged_basin_files(settings: dict, fold_files: dict[int, dict[str, Path]]) -> dict[int, Path]:
    """Per fold, the basins whose streamflow the final stages train on: all training basins, or with
    ``--train-fraction`` F < 1 a seeded share F of them (at least one) in ``fold_NN/train_fraction.txt``."""
    fraction = settings.get('train_fraction', 1.0)
    if fraction >= 1.0:
        return {fold: paths['train'] for fold, paths in fold_files.items()}
    files = {}
    for fold, paths in fold_files.items():
        train = load_basin_file(paths['train'])
        basins = epochs.choice_basins(train, max(1, round(fraction * len(train))), seed=(settings['seed'] or 0, fold))
        files[fold] = paths['train'].with_name('train_fraction.txt')
        pub_files.write_text(files[fold], ''.join(f'{basin}\n' for basin in basins))
    return files


def _epoch_basin_files(settings: dict, gauged: dict[int, Path]) -> dict[int, Path]:
    """With ``--epoch best``, per fold the seeded subset of its gauged training basins that chooses the epoch."""
    if settings.get('epoch', 'last') != 'best':
        return {}
    files = {}
    for fold, train in gauged.items():
        basins = epochs.choice_basins(load_basin_file(train), settings['epoch_basins'], seed=fold)
        files[fold] = train.with_name('epoch_choice.txt')
        pub_files.write_text(files[fold], ''.join(f'{basin}\n' for basin in basins))
    return files


def _fingerprint(config: str, basin_files: dict[str, Path], data_dir: Path | None, base: Task | None = None,
                 seed: int = 0, encoder: str | None = None) -> str:
    """Hash of a stage's config text, its basins, ``--data-dir``, (for finetuning) its pretraining's fingerprint or
    the shipped encoder's checksum, and its seed offset."""
    parts = [Path(config).read_text(), *(path.read_text() for path in basin_files.values()),
             base.fingerprint if base is not None else '']
    # appended only when given: runs made without --data-dir or extra seeds keep their fingerprint
    if data_dir is not None:
        parts.append(str(data_dir))
    if seed:
        parts.append(f'seed+{seed}')
    if encoder is not None:
        parts.append(encoder)
    return hashlib.sha256('\0'.join(parts).encode()).hexdigest()[:16]
