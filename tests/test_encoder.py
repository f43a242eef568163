"""The encoder: bfloat16 autocast on CUDA devices only, and its own attention dropout."""
import pytest
import torch

from neuralhydrology.modelzoo import get_model

from nh_stefaland.model.encoder import Encoder


def test_bf16_autocast_leaves_cpu_results_unchanged():
    torch.manual_seed(0)
    plain = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.0).eval()
    autocast = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.0, bf16=True).eval()
    autocast.load_state_dict(plain.state_dict())
    tokens = torch.randn(3, 11, 16)
    hidden = autocast(tokens)
    assert hidden.dtype == torch.float32
    torch.testing.assert_close(hidden, plain(tokens), rtol=0.0, atol=0.0)


def test_attention_dropout_follows_dropout_unless_given():
    following = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.3)
    own = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.3, attention_dropout=0.0)
    assert [layer.self_attn.dropout for layer in following.layers.layers] == [0.3, 0.3]
    assert [layer.self_attn.dropout for layer in own.layers.layers] == [0.0, 0.0]
    assert all(layer.dropout1.p == 0.3 for layer in own.layers.layers)


def test_attention_dropout_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match='stefaland_attention_dropout=1.5'):
        Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=1, attention_dropout=1.5)


def test_attention_dropout_key_reaches_the_encoder(get_config):
    cfg = get_config('caravan_sample', stefaland_dropout=0.2, stefaland_attention_dropout=0)
    model = get_model(cfg)
    assert model.encoder.layers.layers[0].self_attn.dropout == 0
    assert model.encoder.layers.layers[0].dropout1.p == 0.2
