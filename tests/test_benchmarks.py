"""The speed benchmark's building blocks: its reference tokenizer computes ours, its models are NH-built, its floor
leaves the model as it found it."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))

from timing import Repetitions, measure  # noqa: E402
from workloads import LoopTokens, Shape, build, frozen_encoder_floor, with_cached_states  # noqa: E402

SHAPE = Shape(batch=3, seq_length=20, n_dynamic=4, n_static=6)
TINY = {'stefaland_d_model': 16, 'stefaland_nheads': 2, 'stefaland_dim_feedforward': 32, 'stefaland_nlayers': 1,
        'stefaland_token_hidden': 8, 'hidden_size': 8, 'transformer_nlayers': 1, 'transformer_nheads': 2,
        'transformer_dim_feedforward': 16, 'statics_embedding': {'type': 'fc', 'hiddens': [4]},
        'dynamics_embedding': {'type': 'fc', 'hiddens': [4]}}


def test_loop_tokenizer_computes_the_same_tokens_and_gradients_as_ours():
    ours = build('stefaland_supervised', SHAPE, torch.device('cpu'), **TINY).model.tokens.eval()
    loop = LoopTokens(ours).eval()
    generator = torch.Generator().manual_seed(0)
    dynamic, static = torch.randn(3, 20, 4, generator=generator), torch.randn(3, 6, generator=generator)
    dynamic_mask, static_mask = torch.rand(3, 20, 4, generator=generator) < 0.3, torch.rand(3, 6) < 0.3
    dynamic[dynamic_mask] = float('nan')
    expected = ours(dynamic, dynamic_mask, static, static_mask)
    torch.testing.assert_close(loop(dynamic, dynamic_mask, static, static_mask), expected)
    expected.square().sum().backward()
    loop(dynamic, dynamic_mask, static, static_mask).square().sum().backward()
    torch.testing.assert_close(loop.dynamic_mask_vectors.grad, ours.dynamic.mask_vectors.grad)
    torch.testing.assert_close(loop.dynamic[1][0].weight.grad[:, 0], ours.dynamic.weight_in.grad[1])


@pytest.mark.parametrize('name', ['stefaland_supervised', 'stefaland_finetune', 'stefaland_pretrain', 'cudalstm',
                                  'transformer'])
def test_every_workload_trains_and_infers(name):
    workload = build(name, SHAPE, torch.device('cpu'), **TINY)
    before = [p.detach().clone() for p in workload.model.parameters()]
    workload.training_step()()
    workload.inference()()
    changed = [not torch.equal(b, p) for b, p in zip(before, workload.model.parameters())]
    trainable = [p.requires_grad for p in workload.model.parameters()]
    assert any(changed) and all(c <= t for c, t in zip(changed, trainable))


def test_finetuning_floor_restores_the_frozen_encoder():
    workload = build('stefaland_finetune', SHAPE, torch.device('cpu'), **TINY)
    tokens, encoder = workload.model.tokens, workload.model.encoder
    encode, decoder_step = frozen_encoder_floor(workload)
    encode()
    decoder_step()
    assert workload.model.tokens is tokens and workload.model.encoder is encoder
    assert not any(p.requires_grad for p in encoder.parameters())


def test_cached_finetuning_workload_predicts_as_the_computed_one():
    workload = build('stefaland_finetune', SHAPE, torch.device('cpu'), **TINY)
    cached = with_cached_states(workload, dtype=torch.float32)
    assert 'encoder_states' in cached.batch and 'encoder_states' not in workload.batch
    with torch.no_grad():
        assert torch.allclose(cached.model(cached.batch)['y_hat'], workload.model(workload.batch)['y_hat'], atol=1e-5)
    cached.training_step()()


def test_measure_runs_warmup_then_the_budgeted_calls():
    calls = []
    result = measure(lambda: calls.append(1), torch.device('cpu'), Repetitions(warmup=2, budget_s=0.0, minimum=3,
                                                                               maximum=5))
    assert len(calls) == 5 and len(result.times_s) == 3
    assert Repetitions(warmup=1, budget_s=10.0, minimum=2, maximum=7).timed_calls(4.0) == 2
    assert Repetitions(warmup=1, budget_s=10.0, minimum=2, maximum=7).timed_calls(0.001) == 7
