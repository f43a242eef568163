"""How StefaLand runs train with NH's trainer: pretraining, and finetuning from a pretraining run.

``nh-run finetune`` merges the finetuning config into the pretraining run's config and hands it to
``start_training``. Before anything is built, the checks below make sure the base run holds a pretrained StefaLand
encoder that fits the config, and fix the encoder's variables to the pretrained ones. The trainer then reuses the
pretraining run's normalisation (NH loads its scaler) and adds statistics only for variables new in finetuning.
"""
import logging

import pandas as pd
import xarray

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.training.basetrainer import BaseTrainer
from neuralhydrology.utils.config import Config

from nh_stefaland.model.checks import encoder_variables

LOGGER = logging.getLogger(__name__)

# keys that shape the pretrained tensors: a finetuning config must keep the pretraining run's values
ARCHITECTURE_KEYS = ('stefaland_d_model', 'stefaland_nheads', 'stefaland_dim_feedforward', 'stefaland_nlayers',
                     'stefaland_token_hidden', 'stefaland_reconstruction_hidden', 'seq_length')
PRETRAINED_STAGES = ('pretrain', 'finetune')


def start_training(cfg: Config) -> None:
    """Train a StefaLand run (any stage) with NH's trainer.

    Raises
    ------
    ValueError
        If a non-StefaLand model asks for the reconstruction head, or a finetuning config does not fit its base run.
    """
    if cfg.model.lower() != 'stefaland':
        raise ValueError(f"head: {cfg.head} is StefaLand's pretraining head; model: {cfg.model} cannot use it.")
    if cfg.stefaland_stage == 'finetune':
        check_finetuning(cfg)
        trainer = FinetuneTrainer(cfg=cfg)
    else:
        trainer = BaseTrainer(cfg=cfg)
    trainer.initialize_training()
    trainer.train_and_validate()


def check_finetuning(cfg: Config) -> None:
    """Check a ``stefaland_stage: finetune`` config against its base run and fix the encoder's variables.

    Raises
    ------
    ValueError
        If the run was not started by ``nh-run finetune``, ``base_run_dir`` is not a StefaLand pretraining run, an
        architecture key differs from the base run's, or the encoder is asked for variables it was not pretrained on
        (or not for all it was).
    FileNotFoundError
        If ``base_run_dir`` has no config or no checkpoint.
    """
    if not cfg.is_finetuning or cfg.base_run_dir is None:
        raise ValueError("stefaland_stage: finetune starts from a pretraining run: use `nh-run finetune` with "
                         "base_run_dir pointing to a run trained with stefaland_stage: pretrain.")
    base_dir = cfg.base_run_dir
    if not (base_dir / 'config.yml').is_file():
        raise FileNotFoundError(f"base_run_dir={base_dir} has no config.yml: it is not a NeuralHydrology run.")
    base = Config(base_dir / 'config.yml')
    if base.model.lower() != 'stefaland' or base.stefaland_stage not in PRETRAINED_STAGES:
        raise ValueError(f"base_run_dir={base_dir} is not a StefaLand pretraining run (model: {base.model}, "
                         f"stefaland_stage: {base.stefaland_stage}); point it to a run trained with "
                         f"stefaland_stage: pretrain.")
    if not list(base_dir.glob('model_epoch*.pt')):
        raise FileNotFoundError(f"base_run_dir={base_dir} has no model_epoch*.pt checkpoint.")
    for key in ARCHITECTURE_KEYS:
        if getattr(cfg, key) != getattr(base, key):
            raise ValueError(f"{key}={getattr(cfg, key)} differs from the pretraining run's "
                             f"{key}={getattr(base, key)}: the pretrained encoder was built with the latter.")
    base_inputs, base_attributes = encoder_variables(base)
    _check_same_variables('stefaland_encoder_inputs', cfg.stefaland_encoder_inputs, base_inputs)
    _check_same_variables('stefaland_encoder_attributes', cfg.stefaland_encoder_attributes, base_attributes)
    cfg.update_config({'stefaland_encoder_inputs': base_inputs, 'stefaland_encoder_attributes': base_attributes})


class FinetuneTrainer(BaseTrainer):
    """NH's trainer for finetuning StefaLand: normalisation for new variables only, and a check of what trains."""

    def _get_dataset(self) -> BaseDataset:
        self._scaler = extend_scaler(self.cfg, self._scaler)
        return super()._get_dataset()

    def _freeze_model_parts(self):
        super()._freeze_model_parts()
        parts = {part: list(getattr(self.model, part).parameters()) for part in self.model.module_parts}
        trainable = [part for part, parameters in parts.items() if any(p.requires_grad for p in parameters)]
        frozen = [part for part in parts if part not in trainable]
        if not [part for part in trainable if part != 'reconstruction_decoder']:
            with_parameters = [part for part, parameters in parts.items()
                               if parameters and part != 'reconstruction_decoder']
            raise ValueError(f"finetune_modules={self.cfg.finetune_modules} names nothing trainable for the task; "
                             f"parts with parameters: {with_parameters}.")
        LOGGER.info(f"Finetuning {trainable}; frozen, in eval mode and without gradients: {frozen}.")


def extend_scaler(cfg: Config, scaler: dict) -> dict:
    """The pretraining run's scaler plus statistics of this run's training data for variables it lacks.

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
        A scaler with the base run's values for every variable it has.
    """
    variables = list(dict.fromkeys(cfg.dynamic_inputs + cfg.target_variables))
    attributes = cfg.static_attributes + cfg.hydroatlas_attributes
    new_variables = [v for v in variables if v not in scaler['xarray_feature_center']]
    new_attributes = [a for a in attributes if a not in scaler['attribute_means'].index]
    if not new_variables and not new_attributes:
        LOGGER.info(f"Normalisation: every variable uses the statistics of base_run_dir={cfg.base_run_dir}.")
        return scaler
    fresh = get_dataset(cfg=cfg, period='train', is_train=True, scaler={}).scaler
    extended = dict(scaler)
    for key in ('xarray_feature_center', 'xarray_feature_scale'):
        extended[key] = xarray.merge([scaler[key], fresh[key][new_variables].astype('float32')])
    for key in ('attribute_means', 'attribute_stds'):
        extended[key] = pd.concat([scaler[key], fresh[key][new_attributes]])
    LOGGER.info(f"Normalisation: the statistics of base_run_dir={cfg.base_run_dir}, plus this run's training data "
                f"for the variables it lacks: {new_variables + new_attributes}.")
    return extended


def _check_same_variables(key: str, requested: list[str] | None, pretrained: list[str]) -> None:
    if requested is None:
        return
    unknown = [v for v in requested if v not in pretrained]
    if unknown:
        raise ValueError(f"{key} asks the pretrained encoder for {unknown}, which it was not pretrained on (it reads "
                         f"{pretrained}). Give new variables to the adapter only: keep them in dynamic_inputs or "
                         f"static_attributes and out of {key}.")
    left_out = [v for v in pretrained if v not in requested]
    if left_out:
        raise ValueError(f"{key} leaves out {left_out}, which the pretrained encoder reads (it reads {pretrained}); "
                         f"omit {key} to use the pretrained variables.")
