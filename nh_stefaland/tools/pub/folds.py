"""Basin folds for ungauged-basin tests: seeded random folds (PUB) or whole attribute groups held out (PUR)."""
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from neuralhydrology.datasetzoo import (camelsaus, camelsbr, camelscl, camelsde, camelsgb, camelsus, caravan,
                                        genericdataset)
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.tools.pub import files as pub_files

LOGGER = logging.getLogger(__name__)

# StefaLand's PUR protocol (STEFALAND.md §5): the 7 groups of HUC-02 regions held out one at a time
PAPER_HUC02_GROUPS = (('1', '2'), ('3', '6'), ('4', '5', '7'), ('9', '10'), ('8', '11', '12', '13'),
                      ('14', '15', '16', '18'), ('17',))

_ATTRIBUTE_LOADERS: dict[str, Callable[[Path, list[str]], pd.DataFrame]] = {
    'camels_us': camelsus.load_camels_us_attributes,
    'camels_gb': camelsgb.load_camels_gb_attributes,
    'camels_cl': camelscl.load_camels_cl_attributes,
    'camels_br': camelsbr.load_camels_br_attributes,
    'camels_aus': camelsaus.load_camels_aus_attributes,
    'camels_de': camelsde.load_camels_de_attributes,
    'caravan': caravan.load_caravan_attributes,
    'generic': genericdataset.load_attributes,
}


def random_folds(basins: list[str], k: int, seed: int) -> pd.DataFrame:
    """Split basins into ``k`` random folds of (almost) equal size.

    Parameters
    ----------
    basins : list[str]
        Basin ids, in basin-file order.
    k : int
        Number of folds.
    seed : int
        Seed of the permutation; the same basins, ``k`` and seed give the same folds.

    Returns
    -------
    pd.DataFrame
        One row per basin in input order: ``basin``, ``fold`` (1…k), ``group`` ('random').

    Raises
    ------
    ValueError
        If ``k`` is below 2 or above the number of basins.
    """
    if not 2 <= k <= len(basins):
        raise ValueError(f"--folds {k} must be between 2 and the number of basins ({len(basins)}).")
    order = np.random.default_rng(seed).permutation(len(basins))
    folds = np.empty(len(basins), dtype=int)
    folds[order] = np.arange(len(basins)) % k + 1
    return pd.DataFrame({'basin': basins, 'fold': folds, 'group': 'random'})


def group_folds(values: pd.Series, attribute: str, groups: list[list[str]] | None = None) -> pd.DataFrame:
    """One fold per group of attribute values (e.g. HUC-02 regions), held out together.

    Parameters
    ----------
    values : pd.Series
        The grouping attribute, indexed by basin id (basin-file order).
    attribute : str
        Name of the attribute, used in group labels and errors.
    groups : list[list[str]] | None
        Values that form each fold, in fold order. None: one fold per distinct value, sorted.

    Returns
    -------
    pd.DataFrame
        One row per basin: ``basin``, ``fold`` (1…number of non-empty groups), ``group`` (e.g. 'huc_02=3,6').

    Raises
    ------
    ValueError
        If a basin has no value, a value is listed in two groups, or a basin's value is in no group.
    """
    missing = values[values.isna()].index.tolist()
    if missing:
        raise ValueError(f"Attribute '{attribute}' is missing for basins {missing}: they cannot be grouped.")
    keys = values.map(normalise_value)
    if groups is None:
        groups = [[value] for value in sorted(keys.unique(), key=_sort_key)]
    groups = [[normalise_value(value) for value in group] for group in groups]
    listed = [value for group in groups for value in group]
    repeated = sorted({value for value in listed if listed.count(value) > 1})
    if repeated:
        raise ValueError(f"Values {repeated} of '{attribute}' are listed in more than one group.")
    ungrouped = keys[~keys.isin(listed)]
    if not ungrouped.empty:
        raise ValueError(f"Basins {ungrouped.index.tolist()} have '{attribute}' values "
                         f"{sorted(ungrouped.unique(), key=_sort_key)} that are in no group {groups}.")
    rows, fold = [], 0
    for group in groups:
        members = keys[keys.isin(group)].index.tolist()
        if not members:
            LOGGER.warning(f"No basin has {attribute} in {group}: this group makes no fold.")
            continue
        fold += 1
        rows += [(basin, fold, f"{attribute}={','.join(group)}") for basin in members]
    table = pd.DataFrame(rows, columns=['basin', 'fold', 'group']).set_index('basin')
    return table.loc[values.index].reset_index()


def model_config(model: dict, data_dir: str | None) -> Config:
    """A model of pub.json as one config: for a pretraining + finetuning pair the finetuning file laid over the
    pretraining's, for the finetuning of a shipped encoder over the encoder's config; ``data_dir`` (``--data-dir``)
    in place of the config's when given."""
    if model.get('shipped') is not None:
        cfg = Config(pretrained.folder(model['shipped']['name']) / 'config.yml')
        cfg.update_config(Path(model['config']))
    elif model['pretrain'] is None:
        cfg = Config(Path(model['config']))
    else:
        cfg = Config(Path(model['pretrain']))
        cfg.update_config(Path(model['config']))
    if data_dir is not None:
        cfg.update_config({'data_dir': data_dir})
    return cfg


def load_attributes(cfg: Config, basins: list[str], purpose: str) -> pd.DataFrame:
    """The static attributes of the basins [basins, attributes], read with NH's loader of the config's dataset.

    Raises
    ------
    ValueError
        If NH has no attribute loader for the dataset (the message starts with ``purpose``).
    """
    loader = _ATTRIBUTE_LOADERS.get(cfg.dataset.lower())
    if loader is None:
        raise ValueError(f"{purpose} needs the basin attributes, which are read for datasets "
                         f"{sorted(_ATTRIBUTE_LOADERS)}; dataset: {cfg.dataset} is not one of them.")
    return loader(cfg.data_dir, basins)


def load_attribute(cfg: Config, basins: list[str], attribute: str) -> pd.Series:
    """One static attribute of the basins, read with NH's loader of the config's dataset.

    Raises
    ------
    ValueError
        If NH has no attribute loader for the dataset or the attribute does not exist.
    """
    attributes = load_attributes(cfg, basins, '--group-by')
    if attribute not in attributes.columns:
        raise ValueError(f"--group-by {attribute}: no such attribute in {cfg.data_dir} "
                         f"(it has {len(attributes.columns)} attributes, e.g. {sorted(attributes.columns)[:10]}).")
    return attributes[attribute].reindex(basins)


def normalise_value(value) -> str:
    """Attribute value as a group key: integral numbers without decimals ('3.0' and 3 give '3')."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def write_fold_basin_files(folds: pd.DataFrame, directory: Path) -> dict[int, dict[str, Path]]:
    """Write ``fold_NN/train.txt`` (all other folds) and ``fold_NN/test.txt`` (the held-out fold) per fold.

    Returns
    -------
    dict[int, dict[str, Path]]
        Per fold number, the paths under 'train' and 'test'.
    """
    files = {}
    for fold in sorted(folds['fold'].unique()):
        fold_dir = directory / f'fold_{fold:02d}'
        fold_dir.mkdir(parents=True, exist_ok=True)
        held_out = folds['fold'] == fold
        files[int(fold)] = {'train': _write_basins(fold_dir / 'train.txt', folds.loc[~held_out, 'basin']),
                            'test': _write_basins(fold_dir / 'test.txt', folds.loc[held_out, 'basin'])}
    return files


def _write_basins(path: Path, basins: pd.Series) -> Path:
    pub_files.write_text(path, ''.join(f'{basin}\n' for basin in basins))
    return path


def _sort_key(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
