"""Import hook installed by ``nh_stefaland_autoload.pth``: patches NeuralHydrology modules as they are imported.

This module imports nothing heavy. It only adds a finder to ``sys.meta_path`` that, when one of the NeuralHydrology
modules of :data:`nh_stefaland.nh.registration.PATCHES` (those holding a resolver: ``get_model``, ``get_tester``, ...)
has finished executing, hands it to the registration. A Python process that never imports NeuralHydrology never
imports torch because of this package.

A patch that fails must not break NeuralHydrology for anyone: the registration then takes back what it had patched,
the hook logs one warning and patches nothing more, and the import goes on with NeuralHydrology as installed. An
explicit :func:`nh_stefaland.register` raises the error.
"""
import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from functools import partial
from types import ModuleType
from typing import Callable

from nh_stefaland.nh.registration import PATCHES, patch_module

LOGGER = logging.getLogger(__name__)

ENV_SWITCH = "NH_STEFALAND_AUTOLOAD"


class _PatchingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then lets the registration patch the executed module."""

    def __init__(self, loader: importlib.abc.Loader, finder: '_NeuralHydrologyFinder'):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._finder.patch(module.__name__, lambda: module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _NeuralHydrologyFinder(importlib.abc.MetaPathFinder):
    """Finds the NeuralHydrology modules that need a patch and wraps their loader."""

    def __init__(self, module_names: frozenset[str]):
        self._module_names = module_names
        self._failed = False

    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if self._failed or fullname not in self._module_names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader, self)
        return spec

    def patch(self, name: str, load: Callable[[], ModuleType]) -> None:
        """Patch the module ``load()`` returns; after a failure, leave this and every later module alone."""
        if self._failed:
            return
        try:
            patch_module(load())
        except Exception as error:  # the registration has taken back its patches: NeuralHydrology stays usable
            self._failed = True
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            LOGGER.warning(f"StefaLand is not registered with NeuralHydrology {_version('neuralhydrology')} "
                           f"(nh_stefaland {_version('nh_stefaland')}): patching {name} failed with "
                           f"{type(error).__name__}: {error}. NeuralHydrology works as installed, without "
                           f"model: stefaland, its losses, testers, trainers and stefaland_* keys; "
                           f"nh_stefaland.register() raises the full error.")


def autoload_enabled() -> bool:
    """Whether the environment allows the automatic registration."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def _install() -> None:
    if not autoload_enabled():
        return
    if any(isinstance(finder, _NeuralHydrologyFinder) for finder in sys.meta_path):
        return
    finder = _NeuralHydrologyFinder(frozenset(PATCHES))
    sys.meta_path.insert(0, finder)
    if any(name in sys.modules for name in PATCHES):
        for name in sorted(PATCHES):
            finder.patch(name, partial(importlib.import_module, name))


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return 'unknown'


_install()
