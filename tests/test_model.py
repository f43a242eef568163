"""StefaLand's input handling: variables by name, alphabetical static columns, NaN inputs, clear config errors."""
from pathlib import Path

import pytest
import torch

from neuralhydrology.modelzoo import get_model


def _batch(model, batch_size: int = 2, length: int = 30) -> dict:
    x_d = {name: torch.randn(batch_size, length, 1) for name in model.dynamic_inputs}
    return {'x_d': x_d, 'x_s': torch.randn(batch_size, len(model.static_attributes))}


def test_get_model_builds_stefaland_with_named_parts(get_config):
    model = get_model(get_config('caravan_sample'))
    assert type(model).__name__ == 'StefaLand'
    for part in model.module_parts:
        assert isinstance(getattr(model, part), torch.nn.Module)


def test_static_columns_are_alphabetical_like_nh(get_config):
    cfg = get_config('caravan_sample')
    model = get_model(cfg)
    assert model.static_attributes == sorted(cfg.static_attributes)
    assert model.static_attributes != list(cfg.static_attributes)


def test_static_column_reaches_its_own_variable_embedding(get_config):
    model = get_model(get_config('caravan_sample')).eval()
    batch = _batch(model, batch_size=1)
    column = model.static_attributes.index('area')
    with torch.no_grad():
        model.tokens.static.weight_in[column] = 0.0
        model.tokens.static.bias_in[column] = 0.0
        reference = model(batch)['y_hat']
        batch['x_s'][0, column] += 5.0  # 'area' has no influence any more
        torch.testing.assert_close(model(batch)['y_hat'], reference)
        batch['x_s'][0, model.static_attributes.index('aridity')] += 5.0
        assert not torch.allclose(model(batch)['y_hat'], reference)


def test_dynamic_inputs_are_read_by_name(get_config):
    model = get_model(get_config('caravan_sample')).eval()
    batch = _batch(model)
    reordered = dict(reversed(list(batch['x_d'].items())))
    with torch.no_grad():
        torch.testing.assert_close(model({**batch, 'x_d': reordered})['y_hat'], model(batch)['y_hat'])


def test_paper_size_is_reachable(get_config):
    cfg = get_config('caravan_sample', seq_length=365, stefaland_d_model=256, stefaland_nheads=4,
                     stefaland_dim_feedforward=512, stefaland_nlayers=4, hidden_size=256)
    model = get_model(cfg)
    layer = model.encoder.layers.layers[0]
    assert len(model.encoder.layers.layers) == 4 and layer.self_attn.num_heads == 4
    assert layer.linear1.out_features == 512 and model.tokens.positions.shape == (366, 256)
    assert not layer.norm_first


@pytest.mark.parametrize('overrides,message', [
    ({'stefaland_d_model': 30, 'stefaland_nheads': 4}, 'must be divisible by stefaland_nheads'),
    ({'stefaland_adapter': 'lora'}, "stefaland_adapter='lora' is not supported"),
    ({'stefaland_nlayers': 0}, 'stefaland_nlayers=0 must be at least 1'),
    ({'stefaland_d_model': 'big'}, "stefaland_d_model='big' must be of type int"),
    ({'stefaland_adapter_kernel_size': 4, 'stefaland_causal': False}, 'must be odd'),
    ({'use_basin_id_encoding': True}, 'does not support use_basin_id_encoding'),
    ({'use_frequencies': ['1D', '1W']}, 'supports a single frequency'),
    ({'mass_inputs': ['total_precipitation_sum']}, 'does not support mass inputs'),
    ({'evolving_attributes': ['temperature_2m_mean']}, 'does not support evolving attributes'),
    ({'static_attributes': []}, 'needs static_attributes'),
    ({'stefaland_stage': 'pretrain', 'stefaland_min_mask_ratio': 0.6}, 'stefaland_min_mask_ratio=0.6 needs'),
    ({'stefaland_stage': 'pretrain', 'stefaland_reconstruction_decoder': 'gru'},
     "stefaland_reconstruction_decoder='gru' is not supported"),
])
def test_unsupported_settings_fail_with_a_clear_message(get_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_model(get_config('caravan_sample', **overrides))


def test_paper_config_builds_and_names_real_camels_variables(tmp_path):
    import pandas as pd
    from neuralhydrology.utils.config import Config

    root = Path(__file__).resolve().parents[1]
    cfg = Config(root / 'basin_configs' / 'camels_stefaland_paper.yml')
    model = get_model(cfg)
    assert model.tokens.positions.shape == (366, 256) and len(model.encoder.layers.layers) == 4
    data_dir = root / 'tests' / 'data' / 'camels_us_nh'
    attributes = pd.concat([pd.read_csv(f, sep=';', index_col='gauge_id')
                            for f in (data_dir / 'camels_attributes_v2.0').glob('camels_*.txt')], axis=1)
    assert set(cfg.static_attributes) <= set(attributes.columns)
    forcing = next((data_dir / 'basin_mean_forcing' / 'daymet').rglob('*.txt')).read_text().splitlines()[3]
    assert all(variable in forcing for variable in cfg.dynamic_inputs)
