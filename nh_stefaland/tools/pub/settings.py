"""The settings of a ``nh-stefaland pub`` run: options and configs checked before anything runs, kept in pub.json."""
import argparse
import json
import re
from collections import Counter
from pathlib import Path

from neuralhydrology.datautils.utils import load_basin_file
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.tools.pub import files as pub_files, folds as pub_folds, leakage as pub_leakage
from nh_stefaland.tools.pub.report import SETTINGS_FILE

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


def seed_offsets(settings: dict) -> range:
    """The seed offsets of the runs to make: ``--first-seed`` K … K + ``--seeds`` N − 1 (0 alone by default)."""
    first = settings.get('first_seed', 0)
    return range(first, first + settings.get('seeds', 1))


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
