"""The plan of a ``nh-stefaland pub`` run: its saved folds and the tasks per model, fold and seed."""
import dataclasses
import hashlib
import itertools
import logging
from pathlib import Path

import pandas as pd

from neuralhydrology.datautils.utils import load_basin_file
from ruamel.yaml import YAML

from nh_stefaland.model.settings import unset_changed_defaults
from nh_stefaland.tools.pub import epochs, files as pub_files, folds as pub_folds
from nh_stefaland.tools.pub.report import FOLDS_FILE, STATUS_FILE, read_status
from nh_stefaland.tools.pub.runs import Task
from nh_stefaland.tools.pub.settings import seed_offsets

LOGGER = logging.getLogger(__name__)


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
    the shipped encoder's checksum, its seed offset, and the value a StefaLand config gets for a key it leaves unset
    whose default changed (so that runs trained under the old default are not reused as runs of the new one)."""
    text = Path(config).read_text()
    parts = [text, *(path.read_text() for path in basin_files.values()), base.fingerprint if base is not None else '']
    raw = YAML(typ='safe').load(text) or {}
    if str(raw.get('model', '')).lower() == 'stefaland':
        parts += [f'{name}={value}' for name, value in unset_changed_defaults(raw).items()]
    # appended only when given: runs made without --data-dir or extra seeds keep their fingerprint
    if data_dir is not None:
        parts.append(str(data_dir))
    if seed:
        parts.append(f'seed+{seed}')
    if encoder is not None:
        parts.append(encoder)
    return hashlib.sha256('\0'.join(parts).encode()).hexdigest()[:16]
