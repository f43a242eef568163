"""What the scalers of StefaLand runs hold: no target statistics from pretraining, the finetuning basins' own.

NH keeps one centre and scale per variable in ``train_data/train_data_scaler.yml`` and ``nh-run finetune`` starts
from the base run's. A pretraining run loads its targets only because NH requires ``target_variables``, so it stores
no statistics for them: a finetuning on other basins then cannot normalise its targets with the streamflow of the
pretraining basins (which may be its test basins). Finetuning computes its targets' statistics from its own
training basins. A target that is also a dynamic input is an input to the encoder and keeps its input statistics.
"""
import logging

import numpy as np
import pandas as pd
import xarray
from ruamel.yaml import YAML

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.utils.config import Config

LOGGER = logging.getLogger(__name__)

STATISTICS = ('xarray_feature_center', 'xarray_feature_scale')
PLACEHOLDERS = {'xarray_feature_center': 0.0, 'xarray_feature_scale': 1.0}  # the identity normalisation


def pretraining_scaler(cfg: Config, scaler: dict) -> dict:
    """The scaler a pretraining run stores: without the statistics of targets that are not dynamic inputs."""
    targets = [t for t in cfg.target_variables if t not in cfg.dynamic_inputs_flattened]
    return {**scaler, **{key: scaler[key].drop_vars(targets, errors='ignore') for key in STATISTICS}}


def with_placeholder_targets(cfg: Config, scaler: dict) -> dict:
    """A pretraining run's scaler with centre 0 and scale 1 for the targets it lacks; any other run's as it is.

    NH's datasets normalise the targets, which pretraining loads but never reads.
    """
    missing = [t for t in cfg.target_variables if t not in scaler['xarray_feature_center']]
    if cfg.stefaland_stage != 'pretrain' or not missing:
        return scaler
    return {**scaler, **{key: scaler[key].assign({t: np.float32(value) for t in missing})
                         for key, value in PLACEHOLDERS.items()}}


def finetuning_scaler(cfg: Config, scaler: dict) -> dict:
    """The base run's scaler for the inputs it has; this run's training data for its targets and new variables.

    Parameters
    ----------
    cfg : Config
        The finetuning configuration.
    scaler : dict
        The base run's scaler (NH's format: ``attribute_means``/``attribute_stds`` Series,
        ``xarray_feature_center``/``xarray_feature_scale`` Datasets).

    Returns
    -------
    dict
        The base run's statistics for every input it has, including targets that are also dynamic inputs of the
        base run (the pretrained encoder reads them normalised that way); statistics of this run's training basins
        for the other targets and for variables the base run lacks.
    """
    base_inputs = Config(cfg.base_run_dir / 'config.yml').dynamic_inputs_flattened
    inputs = [v for v in cfg.dynamic_inputs_flattened if v not in cfg.target_variables]
    own = [v for v in inputs if v not in scaler['xarray_feature_center']]
    own += [t for t in cfg.target_variables if t not in base_inputs or t not in scaler['xarray_feature_center']]
    attributes = cfg.static_attributes + cfg.hydroatlas_attributes
    new_attributes = [a for a in attributes if a not in scaler['attribute_means'].index]
    kept_targets = [t for t in cfg.target_variables if t not in own]
    if kept_targets:
        LOGGER.warning(f"Normalisation: the targets {kept_targets} are dynamic inputs of base_run_dir="
                       f"{cfg.base_run_dir} and keep its statistics, computed on the pretraining basins: the "
                       f"pretrained encoder reads them normalised that way.")
    if not own and not new_attributes:
        LOGGER.info(f"Normalisation: every variable uses the statistics of base_run_dir={cfg.base_run_dir}.")
        return scaler
    fresh = get_dataset(cfg=cfg, period='train', is_train=True, scaler={}).scaler
    extended = dict(scaler)
    for key in STATISTICS:
        extended[key] = xarray.merge([scaler[key].drop_vars(own, errors='ignore'), fresh[key][own].astype('float32')])
    for key in ('attribute_means', 'attribute_stds'):
        extended[key] = pd.concat([scaler[key], fresh[key][new_attributes]])
    LOGGER.info(f"Normalisation: the statistics of base_run_dir={cfg.base_run_dir}, plus this run's training data "
                f"for the targets and the variables it lacks: {own + new_attributes}.")
    return extended


def save_scaler(cfg: Config, scaler: dict) -> None:
    """Write ``scaler`` to the run's ``train_data/train_data_scaler.yml`` as NH does (read back by NH's
    ``load_scaler``)."""
    with (cfg.train_dir / 'train_data_scaler.yml').open('w') as stream:
        YAML().dump({key: value.to_dict() for key, value in scaler.items()}, stream)
