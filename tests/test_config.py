"""The stefaland_* keys validate like NH's own keys."""
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from neuralhydrology.utils.config import Config

from nh_stefaland.model import settings as config


def test_keys_have_defaults_when_absent(get_config):
    cfg = get_config('caravan_sample')
    assert cfg.stefaland_adapter == config.KEYS['stefaland_adapter'].default
    assert cfg.stefaland_d_model == 16


def test_mistyped_key_is_rejected_naming_the_key_and_the_likely_one(tmp_path):
    with pytest.raises(ValueError, match=r"stefaland_dmodel.*did you mean 'stefaland_d_model'"):
        Config({'stefaland_dmodel': 64})


def test_unknown_nh_key_is_still_rejected():
    with pytest.raises(ValueError, match='not recognized config keys'):
        Config({'hiden_size': 64})


def test_values_persist_in_the_run_config(get_config, tmp_path):
    cfg = get_config('caravan_sample', stefaland_nlayers=2)
    cfg.dump_config(tmp_path)
    dumped = YAML(typ='safe').load(tmp_path / 'config.yml')
    assert dumped['stefaland_nlayers'] == 2 and dumped['stefaland_d_model'] == 16
    assert Config(tmp_path / 'config.yml').stefaland_nlayers == 2


def test_every_key_is_a_config_property():
    for name in config.KEYS:
        assert isinstance(getattr(Config, name), property)


def test_readme_documents_every_key_with_its_default():
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    for name, key in config.KEYS.items():
        assert f"| `{name}` | `{key.default!r}` |" in readme, f"README lacks the row of {name}"


def test_lstm_twin_differs_from_the_quickstart_only_in_the_model():
    configs = Path(__file__).resolve().parents[1] / 'basin_configs'
    quickstart = YAML(typ='safe').load(configs / 'camels_stefaland.yml')
    twin = YAML(typ='safe').load(configs / 'camels_lstm.yml')
    assert twin.pop('model') == 'cudalstm' and quickstart.pop('model') == 'stefaland'
    twin.pop('experiment_name'), quickstart.pop('experiment_name')
    assert twin == quickstart
