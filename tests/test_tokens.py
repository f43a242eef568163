"""The vectorised tokenizer against a naive per-variable loop, and the mask vectors."""
import torch
import torch.nn.functional as F

from nh_stefaland.model.tokens import InputTokens, VariableEmbedding


def _loop_tokens(embedding: VariableEmbedding, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reference: one MLP per variable, [..., V, D] materialised, masked entries swapped for m_v, then summed."""
    width = embedding.width
    per_variable = []
    for v in range(embedding.n_variables):
        hidden = F.gelu(values[..., v:v + 1] * embedding.weight_in[v] + embedding.bias_in[v])
        weight_out = embedding.weight_out[v * width:(v + 1) * width]
        vector = hidden @ weight_out + embedding.bias_out[v]
        vector = torch.where(mask[..., v:v + 1], embedding.mask_vectors[v], vector)
        per_variable.append(vector)
    return torch.stack(per_variable, dim=-2).sum(dim=-2)


def test_vectorised_tokens_equal_per_variable_loop():
    torch.manual_seed(0)
    embedding = VariableEmbedding(n_variables=5, d_model=16, width=8, dropout=0.0)
    values = torch.randn(4, 30, 5)
    mask = torch.rand(4, 30, 5) < 0.3
    torch.testing.assert_close(embedding(values, mask), _loop_tokens(embedding, values, mask))


def test_gradients_match_per_variable_loop():
    torch.manual_seed(1)
    embedding = VariableEmbedding(n_variables=3, d_model=8, width=4, dropout=0.0)
    values = torch.randn(2, 10, 3)
    mask = torch.rand(2, 10, 3) < 0.3
    embedding(values, mask).square().sum().backward()
    vectorised = [p.grad.clone() for p in embedding.parameters()]
    embedding.zero_grad()
    _loop_tokens(embedding, values, mask).square().sum().backward()
    for ours, reference in zip(vectorised, [p.grad for p in embedding.parameters()]):
        torch.testing.assert_close(ours, reference)


def test_hidden_and_nan_values_use_the_mask_vector():
    torch.manual_seed(2)
    embedding = VariableEmbedding(n_variables=2, d_model=8, width=4, dropout=0.0)
    values = torch.tensor([[[0.5, float('nan')]], [[0.5, 123.0]]])  # [2, 1, 2]
    mask = torch.tensor([[[False, True]], [[False, True]]])
    tokens = embedding(values, mask)
    assert torch.isfinite(tokens).all()
    torch.testing.assert_close(tokens[0], tokens[1])  # the hidden value does not matter
    with torch.no_grad():
        embedding.mask_vectors[1] += 1.0
    torch.testing.assert_close(embedding(values, mask) - tokens, torch.ones_like(tokens))


def test_mask_vector_receives_gradient_only_where_hidden():
    embedding = VariableEmbedding(n_variables=2, d_model=4, width=3, dropout=0.0)
    values = torch.randn(1, 5, 2)
    embedding(values, torch.zeros(1, 5, 2, dtype=torch.bool)).sum().backward()
    assert torch.count_nonzero(embedding.mask_vectors.grad) == 0
    embedding.zero_grad()
    mask = torch.zeros(1, 5, 2, dtype=torch.bool)
    mask[0, 2, 1] = True
    embedding(values, mask).sum().backward()
    assert torch.count_nonzero(embedding.mask_vectors.grad[0]) == 0
    assert torch.count_nonzero(embedding.mask_vectors.grad[1]) == 4


def test_input_tokens_append_the_static_token_with_positions():
    torch.manual_seed(3)
    tokens = InputTokens(n_dynamic=3, n_static=4, d_model=8, max_length=20, width=4, dropout=0.0)
    dynamic, static = torch.randn(2, 20, 3), torch.randn(2, 4)
    sequence = tokens(dynamic, torch.zeros_like(dynamic, dtype=torch.bool), static,
                      torch.zeros_like(static, dtype=torch.bool))
    assert sequence.shape == (2, 21, 8)
    expected_static = tokens.static(static, torch.zeros_like(static, dtype=torch.bool)) + tokens.positions[20]
    torch.testing.assert_close(sequence[:, -1], expected_static)
    assert tokens.positions.abs().max() <= 0.02
