"""Import hook installed by ``nh_stefaland_autoload.pth``: patches NeuralHydrology modules as they are imported.

This module imports nothing heavy. It only adds a finder to ``sys.meta_path`` that, when one of the NeuralHydrology
modules of :data:`nh_stefaland.nh.registration.PATCHES` (those holding a resolver: ``get_model``, ``get_tester``, ...)
has finished executing, hands it to the registration. A Python process that never imports NeuralHydrology never
imports torch because of this package.
"""
import importlib.abc
import importlib.machinery
import os
import sys
from types import ModuleType

from nh_stefaland.nh.registration import PATCHES, patch_module

ENV_SWITCH = "NH_STEFALAND_AUTOLOAD"


class _PatchingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then lets the registration patch the executed module."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        patch_module(module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _NeuralHydrologyFinder(importlib.abc.MetaPathFinder):
    """Finds the NeuralHydrology modules that need a patch and wraps their loader."""

    def __init__(self, module_names: frozenset[str]):
        self._module_names = module_names

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._module_names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def autoload_enabled() -> bool:
    """Whether the environment allows the automatic registration."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _install() -> None:
    if not autoload_enabled():
        return
    if any(isinstance(finder, _NeuralHydrologyFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _NeuralHydrologyFinder(frozenset(PATCHES)))
    if any(name in sys.modules for name in PATCHES):
        from nh_stefaland import register

        register()


_install()
