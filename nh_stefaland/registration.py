"""What nh_stefaland adds to NeuralHydrology, and the only place that patches it.

NeuralHydrology resolves models, heads, losses and testers with hard-coded if/elif functions that its callers bind
early (``from neuralhydrology.modelzoo import get_model``). Each resolver is therefore wrapped (our names first,
NeuralHydrology's original otherwise) and every loaded ``neuralhydrology*`` module attribute that *is* the original
is rebound to the wrapper. Config keys become ``Config`` properties, so NH's own key check accepts them.
"""
import importlib
import logging
import sys
from types import ModuleType
from typing import Any, Callable

from nh_stefaland import config
from nh_stefaland._bootstrap import PATCHED_MODULES

LOGGER = logging.getLogger(__name__)

MODEL_NAMES = ('stefaland',)
HEAD_NAMES = ('reconstruction',)
LOSS_NAMES = ('reconstruction',)
_WRAPPED = '__nh_stefaland_original__'


def register_all() -> None:
    """Import and patch every NeuralHydrology module that holds a resolver (idempotent)."""
    for name in sorted(PATCHED_MODULES):
        patch_module(importlib.import_module(name))


def patch_module(module: ModuleType) -> None:
    """Apply the patch that belongs to one freshly executed NeuralHydrology module (idempotent)."""
    patch = _PATCHES.get(module.__name__)
    if patch is not None:
        patch(module)


def _patch_config(module: ModuleType) -> None:
    config_class = module.Config
    for name, key in config.KEYS.items():
        if not isinstance(getattr(config_class, name, None), property):
            setattr(config_class, name, _key_property(name, key.default))
    _replace(module.Config, '_check_cfg_keys', staticmethod(_wrap_key_check(config_class._check_cfg_keys)))


def _patch_modelzoo(module: ModuleType) -> None:
    _replace(module, 'get_model', _wrap_get_model(module.get_model))


def _wrap_get_model(original: Callable) -> Callable:
    def get_model(cfg):
        if cfg.model.lower() in MODEL_NAMES:
            from nh_stefaland.model import StefaLand

            return StefaLand(cfg=cfg)
        return original(cfg)

    return get_model


def _patch_evaluation(module: ModuleType) -> None:
    _replace(module, 'get_tester', _wrap_get_tester(module.get_tester))


def _wrap_get_tester(original: Callable) -> Callable:
    def get_tester(cfg, run_dir, period, init_model):
        if cfg.head.lower() in HEAD_NAMES:
            from nh_stefaland.reconstruction_tester import ReconstructionTester

            return ReconstructionTester(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model)
        if cfg.model.lower() in MODEL_NAMES:
            from nh_stefaland import evaluation

            if evaluation.strides_evaluation(cfg):
                return evaluation.get_tester(cfg, run_dir, period, init_model)
        return original(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model)

    return get_tester


def _patch_head(module: ModuleType) -> None:
    _replace(module, 'get_head', _wrap_get_head(module.get_head))


def _wrap_get_head(original: Callable) -> Callable:
    def get_head(cfg, n_in: int, n_out: int):
        if cfg.head.lower() in HEAD_NAMES:
            from nh_stefaland.reconstruction import ReconstructionHead

            n_dynamic = len(config.encoder_variables(cfg)[0])
            return ReconstructionHead(n_in=n_in, n_dynamic=n_dynamic, n_static=n_out - n_dynamic,
                                      hidden=cfg.stefaland_reconstruction_hidden)
        return original(cfg=cfg, n_in=n_in, n_out=n_out)

    return get_head


def _patch_training(module: ModuleType) -> None:
    _replace(module, 'get_loss_obj', _wrap_get_loss_obj(module.get_loss_obj))


def _wrap_get_loss_obj(original: Callable) -> Callable:
    def get_loss_obj(cfg):
        if cfg.loss.lower() in LOSS_NAMES:
            from nh_stefaland.losses import ReconstructionLoss

            return ReconstructionLoss(cfg)
        return original(cfg)

    return get_loss_obj


def _patch_train(module: ModuleType) -> None:
    _replace(module, 'start_training', _wrap_start_training(module.start_training))


def _wrap_start_training(original: Callable) -> Callable:
    def start_training(cfg):
        if cfg.model.lower() in MODEL_NAMES or cfg.head.lower() in HEAD_NAMES:
            from nh_stefaland import training

            return training.start_training(cfg)
        return original(cfg)

    return start_training


def _wrap_key_check(original: Callable) -> Callable:
    def check_cfg_keys(cfg: dict):
        try:
            original(cfg)
        except ValueError as error:
            hint = config.suggest([k for k in cfg if not isinstance(getattr(_config_class(), k, None), property)])
            if hint:
                raise ValueError(f"{error} Unknown: {hint}.") from None
            raise

    return check_cfg_keys


def _config_class():
    return sys.modules['neuralhydrology.utils.config'].Config


def _key_property(name: str, default: Any) -> property:
    def getter(self):
        value = self._cfg.get(name)
        return default if value is None else value

    def setter(self, value):
        self._cfg[name] = value

    return property(getter, setter, doc=config.KEYS[name].doc)


def _replace(owner: Any, attribute: str, wrapper: Any) -> None:
    """Set ``owner.attribute`` to ``wrapper`` unless already wrapped, and rebind every alias of the original."""
    current = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    original = current.__func__ if isinstance(current, staticmethod) else current
    if getattr(original, _WRAPPED, None) is not None:
        return
    function = wrapper.__func__ if isinstance(wrapper, staticmethod) else wrapper
    setattr(function, _WRAPPED, original)
    function.__name__, function.__doc__ = original.__name__, original.__doc__
    setattr(owner, attribute, wrapper)
    for name, loaded in list(sys.modules.items()):
        if name.startswith('neuralhydrology') and loaded is not None:
            for alias, value in list(vars(loaded).items()):
                if value is original:
                    setattr(loaded, alias, function)


_PATCHES: dict[str, Callable[[ModuleType], None]] = {
    'neuralhydrology.utils.config': _patch_config,
    'neuralhydrology.modelzoo': _patch_modelzoo,
    'neuralhydrology.modelzoo.head': _patch_head,
    'neuralhydrology.training': _patch_training,
    'neuralhydrology.training.train': _patch_train,
    'neuralhydrology.evaluation': _patch_evaluation,
}
