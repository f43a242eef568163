"""The encoder's bfloat16 autocast applies on CUDA devices only."""
import torch

from nh_stefaland.encoder import Encoder


def test_bf16_autocast_leaves_cpu_results_unchanged():
    torch.manual_seed(0)
    plain = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.0).eval()
    autocast = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.0, bf16=True).eval()
    autocast.load_state_dict(plain.state_dict())
    tokens = torch.randn(3, 11, 16)
    hidden = autocast(tokens)
    assert hidden.dtype == torch.float32
    torch.testing.assert_close(hidden, plain(tokens), rtol=0.0, atol=0.0)
