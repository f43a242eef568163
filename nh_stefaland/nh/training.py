"""How StefaLand runs train with NH's trainer: pretraining, and finetuning from a pretraining run.

``nh-run finetune`` merges the finetuning config into the pretraining run's config and hands it to
``start_training``. Before anything is built, the checks below make sure the base run holds a pretrained StefaLand
encoder that fits the config, and fix the encoder's variables to the pretrained ones. The trainer then reuses the
pretraining run's normalisation of the inputs (NH loads its scaler) and normalises the targets, and the variables new
in finetuning, with this run's training data; a pretraining run stores no target statistics
(:mod:`nh_stefaland.nh.normalisation`).
"""
import json
import logging

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.training.basetrainer import BaseTrainer
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.model.checks import check_config, encoder_variables
from nh_stefaland.model.settings import Settings, resolve_changed_defaults
from nh_stefaland.nh import distributed, state_cache
from nh_stefaland.nh.normalisation import finetuning_scaler, pretraining_scaler, save_scaler
from nh_stefaland.nh.store_dataset import StoreLoading

LOGGER = logging.getLogger(__name__)

# keys that shape the pretrained tensors: a finetuning config must keep the pretraining run's values
ARCHITECTURE_KEYS = ('stefaland_d_model', 'stefaland_nheads', 'stefaland_dim_feedforward', 'stefaland_nlayers',
                     'stefaland_token_hidden', 'stefaland_reconstruction_hidden', 'stefaland_reconstruction_decoder',
                     'seq_length')
PRETRAINED_STAGES = ('pretrain', 'finetune')


def start_training(cfg: Config) -> None:
    """Train a StefaLand run (any stage) with NH's trainer, on every process when started by ``torchrun``.

    Every check that needs no data runs first, so that a config error leaves no run folder behind.

    Raises
    ------
    ValueError
        If a non-StefaLand model asks for the reconstruction head, the config is not one StefaLand accepts
        (:func:`check_config`), or a finetuning config does not fit its base run.
    """
    if cfg.model.lower() != 'stefaland':
        raise ValueError(f"head: {cfg.head} is StefaLand's pretraining head; model: {cfg.model} cannot use it.")
    check_config(cfg)
    resolve_changed_defaults(cfg)  # before NH saves the config and marks it as a run's
    if cfg.stefaland_stage == 'finetune':
        check_finetuning(cfg)
        trainer = distributed.trainer_class(FinetuneTrainer)(cfg=cfg)
    elif cfg.stefaland_stage == 'pretrain':
        trainer = distributed.trainer_class(PretrainTrainer)(cfg=cfg)
    else:
        trainer = distributed.trainer_class(SupervisedTrainer)(cfg=cfg)
    trainer.initialize_training()
    trainer.train_and_validate()


def check_finetuning(cfg: Config) -> None:
    """Check a ``stefaland_stage: finetune`` config against its base run and fix the encoder's variables.

    Raises
    ------
    ValueError
        If the run was not started by ``nh-run finetune``, ``base_run_dir`` is not a StefaLand pretraining run, an
        architecture key or ``stefaland_causal`` differs from the base run's, the encoder is asked for variables it
        was not pretrained on (or not for all it was), or the config does not load the encoder's variables (unless
        it names them in ``stefaland_encoder_inputs`` and ``stefaland_encoder_attributes``, which feeds the absent
        ones as missing).
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
    _check_same_direction(cfg, base)
    for key in ARCHITECTURE_KEYS:
        if getattr(cfg, key) != getattr(base, key):
            raise ValueError(f"{key}={getattr(cfg, key)} differs from the pretraining run's "
                             f"{key}={getattr(base, key)}: the pretrained encoder was built with the latter.")
    base_inputs, base_attributes = encoder_variables(base, Settings.from_config(base))
    _check_same_variables('stefaland_encoder_inputs', cfg.stefaland_encoder_inputs, base_inputs)
    _check_same_variables('stefaland_encoder_attributes', cfg.stefaland_encoder_attributes, base_attributes)
    if cfg.stefaland_encoder_inputs is None and cfg.stefaland_encoder_attributes is None:
        _check_loaded(cfg, base_inputs, base_attributes)
    cfg.update_config({'stefaland_encoder_inputs': base_inputs, 'stefaland_encoder_attributes': base_attributes})


class SupervisedTrainer(StoreLoading, BaseTrainer):
    """NH's trainer; a store dataset's windows are drawn lazily (:class:`.store_dataset.StoreLoading`)."""


class PretrainTrainer(StoreLoading, BaseTrainer):
    """NH's trainer for pretraining StefaLand: the run's scaler is stored without target statistics."""

    def _get_dataset(self) -> BaseDataset:
        dataset = super()._get_dataset()
        save_scaler(self.cfg, pretraining_scaler(self.cfg, dataset.scaler))
        return dataset


class FinetuneTrainer(StoreLoading, BaseTrainer):
    """NH's trainer for finetuning StefaLand: the targets normalised with its own basins, a check of what trains and,
    with ``stefaland_cache_states``, training on the frozen encoder's cached states (:mod:`.state_cache`)."""

    def _get_dataset(self) -> BaseDataset:
        self._scaler = finetuning_scaler(self.cfg, self._scaler)
        return state_cache.training_dataset(self.cfg, super()._get_dataset())

    def initialize_training(self):
        super().initialize_training()
        record_base_run(self.cfg)
        if isinstance(self.loader.dataset, state_cache.CachedStates):
            self.loader.dataset.fill(self.model, self.device, self.cfg, disable_pbar=self._disable_pbar)

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


def record_base_run(cfg: Config) -> dict:
    """Write and log what the finetuning starts from (``base_run.json`` in the run folder): the pretrained
    encoder's name and version when it is a shipped one, its folder, weight file and SHA-256 checksum."""
    record = pretrained.provenance(cfg.as_dict()['base_run_dir'])
    (cfg.run_dir / 'base_run.json').write_text(json.dumps(record, indent=1) + '\n')
    shipped = f"{record['name']} version {record['version']}, " if 'name' in record else ''
    LOGGER.info(f"Finetuning from {shipped}{record['folder']}/{record['weights']} (sha256 {record['sha256'][:12]}…)")
    if record.get('matches_manifest') is False:
        LOGGER.warning(f"{record['weights']} differs from the checksum in its manifest: the shipped encoder was "
                       f"changed after packaging.")
    return record


def _check_loaded(cfg: Config, inputs: list[str], attributes: list[str]) -> None:
    """The config loads every variable the pretrained encoder reads; the error names the missing and the extra."""
    loaded_attributes = cfg.static_attributes + cfg.hydroatlas_attributes
    missing = [v for v in inputs if v not in cfg.dynamic_inputs_flattened]
    missing += [a for a in attributes if a not in loaded_attributes]
    if not missing:
        return
    extra = [v for v in cfg.dynamic_inputs_flattened if v not in inputs]
    extra += [a for a in loaded_attributes if a not in attributes]
    raise ValueError(f"The pretrained encoder in {cfg.base_run_dir} reads {missing}, which this config does not "
                     f"load (dynamic_inputs, static_attributes); the config loads {extra or 'nothing else'}, which the "
                     f"encoder was not pretrained on (those reach the adapter only). Load the encoder's variables, "
                     f"under its names (`nh-stefaland pretrained` lists them), or, to feed the absent ones as missing "
                     f"(their learned mask vectors), set stefaland_encoder_inputs and stefaland_encoder_attributes to "
                     f"the encoder's lists.")


def _check_same_direction(cfg: Config, base: Config) -> None:
    """A causal finetuning needs a causal pretrained encoder, and a causal encoder stays causal.

    A bidirectional encoder's state of day t depends on the later days of its window, and it never learned to encode
    without them; a causal encoder (pretrained as a causal masked autoencoder) was never trained to read later days.
    """
    if cfg.stefaland_causal and not base.stefaland_causal:
        raise ValueError(f"stefaland_causal: True needs an encoder pretrained with stefaland_causal: True, but "
                         f"base_run_dir={cfg.base_run_dir} is bidirectional (its states of day t read the later days "
                         f"of the window). Pretrain a causal encoder (stefaland_causal: True in the pretraining "
                         f"config), or finetune this one with stefaland_causal: False.")
    if base.stefaland_causal and not cfg.stefaland_causal:
        raise ValueError(f"base_run_dir={cfg.base_run_dir} holds a causal encoder (stefaland_causal: True) and this "
                         f"config sets stefaland_causal: False; omit the key to finetune it as pretrained.")


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
