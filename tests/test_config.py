"""The stefaland_* keys validate like NH's own keys, when the config is read and before any data loads."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from neuralhydrology.training import basetrainer
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.model import settings as config
from nh_stefaland.model.adapters import ADAPTERS

ROOT = Path(__file__).resolve().parents[1]


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


def _other_valid_value(name: str, key: config.Key):
    """A value of ``name`` that its key accepts and that differs from its default."""
    if key.choices:
        return next(choice for choice in key.choices if choice != key.default)
    if key.kind is bool:
        return not key.default
    if name in ('stefaland_encoder_inputs', 'stefaland_encoder_attributes', 'stefaland_never_masked_attributes'):
        return ['p_mean']
    if name == 'stefaland_attribute_groups':
        return {'water': ['p_mean', 'aridity']}
    if name == 'stefaland_store':
        return '/data/store'
    if key.default is None:  # the optional ratios and dropouts
        return 0.25
    if name == 'stefaland_adapter_kernel_size':
        return key.default + 2  # odd
    if isinstance(key.default, int):
        return key.default * 2  # d_model and nheads stay divisible, the masked spans ordered
    if key.maximum is None and key.below is None:
        return key.default + 1
    return key.default / 2 if key.default else (key.maximum or key.below) / 2


def test_every_key_reads_back_what_the_config_says_and_its_default_when_absent():
    raw = YAML(typ='safe').load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    absent = Config({key: value for key, value in raw.items() if not key.startswith('stefaland_')})
    for name, key in config.KEYS.items():
        value = _other_valid_value(name, key)
        assert getattr(Config({**raw, name: value}), name) == value != key.default, name
        assert getattr(absent, name) == key.default, name


@pytest.mark.parametrize('changes, message', [
    ({'stefaland_cache_stride': 0}, r'stefaland_cache_stride=0 must be at least 1'),
    ({'stefaland_dropout': 1.5}, r'stefaland_dropout=1.5 must be below 1.0'),
    ({'stefaland_dropout': 1.0}, r'stefaland_dropout=1.0 must be below 1.0'),
    ({'stefaland_token_dropout': 1}, r'stefaland_token_dropout=1 must be below 1.0'),
    ({'stefaland_attention_dropout': -0.1}, r'stefaland_attention_dropout=-0.1 must be at least 0.0'),
    ({'stefaland_d_model': 30, 'stefaland_nheads': 4}, r'stefaland_d_model=30 must be divisible by '
                                                       r'stefaland_nheads=4'),
    ({'stefaland_adapter_kernel_size': 4, 'stefaland_causal': False}, r'stefaland_adapter_kernel_size=4 must be odd'),
    ({'stefaland_encoder_inputs': [1, 2]}, r'stefaland_encoder_inputs=\[1, 2\] must list variable names'),
    ({'stefaland_attribute_groups': {'soil': 'sand_frac'}}, r'stefaland_attribute_groups=.* must map each group'),
    ({'head': 'umal', 'predict_last_n': 5}, r'head: umal needs predict_last_n: 1, got predict_last_n=5'),
])
def test_a_stefaland_config_is_checked_as_it_is_read(changes, message):
    raw = YAML(typ='safe').load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    with pytest.raises(ValueError, match=message):
        Config({**raw, **changes})
    Config({**raw, **changes, 'model': 'cudalstm'})  # keys of another model are not its business


def test_a_config_error_leaves_no_run_folder_and_loads_no_data(get_config, tmp_path, monkeypatch):
    def no_data(self):
        raise AssertionError("the data was loaded before the config was checked")

    monkeypatch.setattr(basetrainer.BaseTrainer, '_get_dataset', no_data)
    cfg = get_config('caravan_sample', stefaland_dropout=1.5)  # update_config: a partial dict, checked later
    with pytest.raises(ValueError, match=r'stefaland_dropout=1.5 must be below 1.0'):
        start_training(cfg)
    assert not (tmp_path / 'run').exists()


def test_finetuning_cache_stride_zero_fails_before_the_base_run_is_read(get_config, tmp_path):
    cfg = get_config('caravan_sample', stefaland_stage='finetune', stefaland_cache_states=True,
                     stefaland_cache_stride=0, finetune_modules=['adapter'], base_run_dir=tmp_path / 'none')
    cfg.is_finetuning = True
    with pytest.raises(ValueError, match=r'stefaland_cache_stride=0 must be at least 1'):
        start_training(cfg)


def test_reading_a_config_does_not_import_torch():
    code = ("import sys; from pathlib import Path; from neuralhydrology.utils.config import Config; "
            "cfg = Config(Path(sys.argv[1])); print(cfg.stefaland_d_model, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, '-c', code, str(ROOT / 'basin_configs' / 'camels_stefaland.yml')],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ['64', 'False']


def test_the_adapter_choices_are_the_adapters_the_model_builds():
    assert config.KEYS['stefaland_adapter'].choices == tuple(ADAPTERS)


def test_the_model_builds_and_runs_on_an_unpatched_neuralhydrology():
    """Autoload off and no register(): the model reads its keys through Settings, not Config properties."""
    code = """
import sys, torch
from pathlib import Path
from ruamel.yaml import YAML
from neuralhydrology.utils.config import Config
from nh_stefaland.model.stefaland import StefaLand

raw = YAML(typ='safe').load(Path(sys.argv[1]))
cfg = Config(raw, dev_mode=True)  # the unpatched Config knows no stefaland_* key
model = StefaLand(cfg)
data = {'x_d': {name: torch.randn(2, 30, 1) for name in raw['dynamic_inputs']}, 'x_s': torch.randn(2, 5)}
print(hasattr(Config, 'stefaland_d_model'), model.settings.d_model, tuple(model(data)['y_hat'].shape))
"""
    out = subprocess.run([sys.executable, '-c', code, str(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')],
                         capture_output=True, text=True, env={**os.environ, 'NH_STEFALAND_AUTOLOAD': '0'})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['False', '16', '(2,', '30,', '1)']


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


@pytest.mark.parametrize('stage', ['supervised', 'finetune'])
def test_finetuning_a_part_the_model_lacks_is_an_error_listing_its_parts(get_config, tmp_path, stage):
    cfg = get_config('caravan_sample', stefaland_stage=stage, finetune_modules=['adaptor', 'decoder'],
                     base_run_dir=tmp_path / 'base')
    cfg.is_finetuning = True
    parts = config.STAGE_PARTS[stage]
    with pytest.raises(ValueError, match=rf"finetune_modules names 'adaptor' \(did you mean 'adapter'\?\), which "
                                         rf"model: stefaland \(stefaland_stage: {stage}\) does not have; its parts "
                                         rf"are {re.escape(str(list(parts)))}"):
        start_training(cfg)
    assert not (tmp_path / 'run').exists()
