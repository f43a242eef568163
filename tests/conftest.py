"""Shared fixtures: NH configs from tests/configs with absolute paths and a temporary run directory."""
from pathlib import Path
from typing import Callable

import pytest

from neuralhydrology.utils.config import Config

import nh_stefaland

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'tests' / 'configs'

nh_stefaland.register()


@pytest.fixture
def get_config(tmp_path: Path) -> Callable[..., Config]:
    """Load ``tests/configs/<name>.yml`` with absolute paths, ``run_dir`` in ``tmp_path`` and optional overrides."""

    def _get_config(name: str, **overrides) -> Config:
        cfg = Config(CONFIGS / f'{name}.yml')
        absolute = {key: ROOT / getattr(cfg, key) for key in
                    ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file')}
        cfg.update_config({**absolute, 'run_dir': tmp_path / 'run', **overrides})
        return cfg

    return _get_config
