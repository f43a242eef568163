"""What nh_stefaland adds to NeuralHydrology, and the only place that patches it.

NeuralHydrology resolves models, losses, testers and trainers with hard-coded if/elif functions that its callers bind
early (``from neuralhydrology.modelzoo import get_model``). Each resolver is therefore wrapped (our names first,
NeuralHydrology's original otherwise) and every loaded ``neuralhydrology*`` module attribute that *is* the original
is rebound to the wrapper. Config keys become ``Config`` properties, so NH's own key check accepts them, and a
StefaLand pretraining config gets ``head``/``loss: reconstruction`` from its stage, and ``base_run_dir:
stefaland:<name>`` names a pretrained encoder shipped with the package (:mod:`nh_stefaland.pretrained`).

Registration is all or nothing: every change to NeuralHydrology is recorded, and when a patch fails (a resolver
renamed in another NeuralHydrology version, say), every change made so far, in all modules, is taken back before
the error is raised, so NeuralHydrology is left exactly as installed.

This module imports only the standard library at import time: the import hook reads :data:`PATCHES` when Python
starts. Everything StefaLand-specific is imported inside the wrappers.
"""
import importlib
import sys
from types import ModuleType
from typing import Any, Callable

MODEL_NAMES = ('stefaland',)
RECONSTRUCTION = 'reconstruction'  # the head and loss of stefaland_stage: pretrain
_WRAPPED = '__nh_stefaland_original__'
_MISSING = object()
_UNDO: list[Callable[[], None]] = []  # how to take back each change made to NeuralHydrology, oldest first


def register_all() -> None:
    """Import and patch every NeuralHydrology module of :data:`PATCHES` (idempotent)."""
    for name in sorted(PATCHES):
        patch_module(importlib.import_module(name))


def patch_module(module: ModuleType) -> None:
    """Apply the patch that belongs to one freshly executed NeuralHydrology module (idempotent).

    Raises
    ------
    Exception
        Whatever the patch raised, after every patch made so far (of all modules) has been taken back.
    """
    patch = PATCHES.get(module.__name__)
    if patch is None:
        return
    try:
        patch(module)
    except Exception as error:
        _undo()
        _add_note(error, f"nh_stefaland could not patch {module.__name__}; NeuralHydrology is left as installed.")
        raise


def is_stefaland(cfg) -> bool:
    """Whether a NeuralHydrology config trains StefaLand."""
    return cfg.model.lower() in MODEL_NAMES


def _patch_config(module: ModuleType) -> None:
    from nh_stefaland.model.settings import KEYS

    config_class = module.Config
    for name, key in KEYS.items():
        if not isinstance(getattr(config_class, name, None), property):
            _set(config_class, name, _key_property(name, key))
    for name in ('head', 'loss'):
        _replace_property(config_class, name, _implied_by_stage)
    _replace_property(config_class, 'base_run_dir', _shipped_encoder)
    _replace(module.Config, '_check_cfg_keys', staticmethod(_wrap_key_check(config_class._check_cfg_keys)))


def _implied_by_stage(cfg_dict: dict, name: str) -> str | None:
    """``reconstruction`` for an unset ``head``/``loss`` of a StefaLand pretraining config, else None."""
    pretraining = (str(cfg_dict.get('model', '')).lower() in MODEL_NAMES
                   and cfg_dict.get('stefaland_stage') == 'pretrain')
    return RECONSTRUCTION if pretraining and cfg_dict.get(name) is None else None


def _shipped_encoder(cfg_dict: dict, name: str):
    """The folder of a shipped pretrained encoder for ``base_run_dir: stefaland:<name>``, else None."""
    from nh_stefaland import pretrained

    value = cfg_dict.get(name)
    return pretrained.resolve(value) if pretrained.is_name(value) else None


def _patch_modelzoo(module: ModuleType) -> None:
    _replace(module, 'get_model', _wrap_get_model(module.get_model))


def _wrap_get_model(original: Callable) -> Callable:
    def get_model(cfg):
        if is_stefaland(cfg):
            from nh_stefaland.model.stefaland import StefaLand

            return StefaLand(cfg=cfg)
        return original(cfg)

    return get_model


def _patch_datasetzoo(module: ModuleType) -> None:
    _replace(module, 'get_dataset', _wrap_get_dataset(module.get_dataset))


def _wrap_get_dataset(original: Callable) -> Callable:
    def get_dataset(cfg, is_train, period, basin=None, additional_features=[], id_to_int={}, scaler={}):
        if cfg.stefaland_store is not None:
            from nh_stefaland.nh.store_dataset import StoreDataset

            return StoreDataset(cfg=cfg, is_train=is_train, period=period, basin=basin,
                                additional_features=additional_features, id_to_int=id_to_int, scaler=scaler)
        return original(cfg=cfg, is_train=is_train, period=period, basin=basin,
                        additional_features=additional_features, id_to_int=id_to_int, scaler=scaler)

    return get_dataset


def dataset_class(name: str) -> type:
    """NH's dataset class registered under ``dataset: name`` (NH's registry offers no public look-up).

    Raises
    ------
    ValueError
        If no class is registered under ``name``.
    """
    registry = importlib.import_module('neuralhydrology.datasetzoo')._datasetZooRegistry
    classes = registry._DatasetRegistry__dataset_class
    if name not in classes:
        raise ValueError(f"dataset: {name} is not a NeuralHydrology dataset; registered: {sorted(classes)}.")
    return classes[name]


def _patch_evaluation(module: ModuleType) -> None:
    _replace(module, 'get_tester', _wrap_get_tester(module.get_tester))


def _wrap_get_tester(original: Callable) -> Callable:
    def get_tester(cfg, run_dir, period, init_model):
        if cfg.head.lower() == RECONSTRUCTION:
            from nh_stefaland.nh.reconstruction_tester import ReconstructionTester

            return ReconstructionTester(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model)
        if is_stefaland(cfg):
            from nh_stefaland.model.missing import MissingPolicy
            from nh_stefaland.model.settings import Settings
            from nh_stefaland.nh import nan_report, strided_tester

            tester = (strided_tester.get_tester(cfg, run_dir, period, init_model)
                      if strided_tester.strides_evaluation(cfg)
                      else original(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model))
            return nan_report.reporting(tester, lambda: MissingPolicy.from_settings(
                Settings.from_config(cfg), cfg.seq_length).describe())
        return original(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model)

    return get_tester


def _patch_training(module: ModuleType) -> None:
    _replace(module, 'get_loss_obj', _wrap_get_loss_obj(module.get_loss_obj))


def _wrap_get_loss_obj(original: Callable) -> Callable:
    def get_loss_obj(cfg):
        if cfg.loss.lower() == RECONSTRUCTION:
            from nh_stefaland.nh.losses import ReconstructionLoss

            return ReconstructionLoss(cfg)
        return original(cfg)

    return get_loss_obj


def _patch_train(module: ModuleType) -> None:
    _replace(module, 'start_training', _wrap_start_training(module.start_training))


def _wrap_start_training(original: Callable) -> Callable:
    def start_training(cfg):
        if is_stefaland(cfg) or cfg.head.lower() == RECONSTRUCTION:
            from nh_stefaland.nh import training

            return training.start_training(cfg)
        from nh_stefaland.nh.distributed import check_single_process

        check_single_process(cfg)
        return original(cfg)

    return start_training


def _wrap_key_check(original: Callable) -> Callable:
    def check_cfg_keys(cfg: dict):
        try:
            original(cfg)
        except ValueError as error:
            from nh_stefaland.model.settings import suggest

            hint = suggest([k for k in cfg if not isinstance(getattr(_config_class(), k, None), property)])
            if hint:
                raise ValueError(f"{error} Unknown: {hint}.") from None
            raise
        if str(cfg.get('model', '')).lower() in MODEL_NAMES:  # a StefaLand config is checked as it is read
            from nh_stefaland.model.checks import check_raw_config

            check_raw_config(cfg)

    return check_cfg_keys


def _config_class():
    return sys.modules['neuralhydrology.utils.config'].Config


def _key_property(name: str, key) -> property:
    """``Config.<name>``: the config's value, else the key's default (:meth:`.settings.Key.default_for`)."""
    def getter(self):
        value = self._cfg.get(name)
        return key.default_for(self._cfg) if value is None else value

    def setter(self, value):
        self._cfg[name] = value

    return property(getter, setter, doc=key.doc)


def _replace_property(owner: type, name: str, implied: Callable[[dict, str], Any]) -> None:
    """Let ``owner.name`` return ``implied(cfg_dict, name)`` when that is not None, NH's getter otherwise."""
    original = owner.__dict__[name]
    if getattr(original.fget, _WRAPPED, None) is not None:
        return

    def getter(self):
        value = implied(self._cfg, name)
        return original.fget(self) if value is None else value

    setattr(getter, _WRAPPED, original.fget)
    _set(owner, name, property(getter, original.fset, original.fdel, original.__doc__))


def _replace(owner: Any, attribute: str, wrapper: Any) -> None:
    """Set ``owner.attribute`` to ``wrapper`` unless already wrapped, and rebind every alias of the original."""
    current = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    original = current.__func__ if isinstance(current, staticmethod) else current
    if getattr(original, _WRAPPED, None) is not None:
        return
    function = wrapper.__func__ if isinstance(wrapper, staticmethod) else wrapper
    setattr(function, _WRAPPED, original)
    function.__name__, function.__doc__ = original.__name__, original.__doc__
    _set(owner, attribute, wrapper)
    _rebind(original, function)
    _UNDO.append(lambda: _rebind(function, original))  # also the aliases bound to the wrapper since


def _rebind(old: Any, new: Any) -> None:
    """Set every attribute of the loaded ``neuralhydrology*`` modules that *is* ``old`` to ``new``."""
    for name, loaded in list(sys.modules.items()):
        if name.startswith('neuralhydrology') and loaded is not None:
            for alias, value in list(vars(loaded).items()):
                if value is old:
                    setattr(loaded, alias, new)


def _set(owner: Any, attribute: str, value: Any) -> None:
    """``setattr`` of a NeuralHydrology module or class, recorded so that :func:`_undo` can take it back."""
    previous = vars(owner).get(attribute, _MISSING)
    setattr(owner, attribute, value)
    _UNDO.append(lambda: delattr(owner, attribute) if previous is _MISSING else setattr(owner, attribute, previous))


def _add_note(error: Exception, note: str) -> None:
    """``error.add_note(note)``; Python 3.10 has no notes, so there the note ends the error's message."""
    if hasattr(error, 'add_note'):
        error.add_note(note)
    elif error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} ({note})", *error.args[1:])
    else:
        error.args = (*error.args, note)


def _undo() -> None:
    """Take back every change made to NeuralHydrology, newest first."""
    while _UNDO:
        _UNDO.pop()()


# the NeuralHydrology modules that are patched, each with its patch: the import hook watches exactly these
PATCHES: dict[str, Callable[[ModuleType], None]] = {
    'neuralhydrology.utils.config': _patch_config,
    'neuralhydrology.modelzoo': _patch_modelzoo,
    'neuralhydrology.training': _patch_training,
    'neuralhydrology.training.train': _patch_train,
    'neuralhydrology.evaluation': _patch_evaluation,
    'neuralhydrology.datasetzoo': _patch_datasetzoo,
}
