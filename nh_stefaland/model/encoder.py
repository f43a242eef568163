"""The post-LayerNorm transformer encoder over the T+1 tokens, with StefaLand's output projection."""
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn


class Encoder(nn.Module):
    """Transformer encoder (post-LN, PyTorch's fused attention), then LayerNorm → Dropout → Linear(D→D).

    Parameters
    ----------
    d_model : int
        Token width D.
    nheads : int
        Attention heads per layer.
    dim_feedforward : int
        Hidden width of each layer's feed-forward block.
    nlayers : int
        Number of layers.
    dropout : float
        Dropout inside the layers and before the output projection.
    attention_dropout : float | None
        Dropout on the attention weights; None takes ``dropout``. With 0, training uses PyTorch's fused attention on
        the CPU as well (with attention dropout, PyTorch's CPU kernel materialises the [B, heads, T+1, T+1] maps).
    bf16 : bool
        Run the layers under bfloat16 autocast when the tokens are on a CUDA device (no effect on other devices);
        the states are returned in float32.
    causal : bool
        ``stefaland_causal``: day t attends to days ≤ t and to the static token, and the static token only to itself,
        so no state depends on a later day and the static state on the attributes alone. The layers see the static
        token first, so that this is PyTorch's plain causal mask (its fused kernel, ``is_causal``).

    Raises
    ------
    ValueError
        If ``attention_dropout`` is outside [0, 1].
    """

    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, nlayers: int, dropout: float = 0.1,
                 attention_dropout: float | None = None, bf16: bool = False, causal: bool = False):
        super().__init__()
        self.bf16, self.causal = bf16, causal
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        if not 0.0 <= attention_dropout <= 1.0:
            raise ValueError(f"stefaland_attention_dropout={attention_dropout} must be between 0 and 1.")
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=nheads, dim_feedforward=dim_feedforward,
                                           dropout=dropout, activation='gelu', batch_first=True, norm_first=False)
        layer.self_attn.dropout = attention_dropout
        self.layers = nn.TransformerEncoder(layer, num_layers=nlayers, enable_nested_tensor=False)
        self.output = nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Encode a token sequence.

        Parameters
        ----------
        tokens : torch.Tensor
            Input tokens [B, T+1, D].

        Returns
        -------
        torch.Tensor
            Encoder states H [B, T+1, D].
        """
        on_cuda = tokens.is_cuda
        with (torch.autocast(device_type=tokens.device.type, dtype=torch.bfloat16, enabled=self.bf16 and on_cuda),
              _fast_path(enabled=on_cuda)):
            states = self.output(self._causal_layers(tokens) if self.causal else self.layers(tokens))  # [B, T+1, D]
        return states.float()

    def _causal_layers(self, tokens: torch.Tensor) -> torch.Tensor:
        """The layers under the causal mask: static token moved first, days ≤ t visible to day t, then moved back."""
        static_first = torch.cat([tokens[:, -1:], tokens[:, :-1]], dim=1)  # [B, 1+T, D]
        mask = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device,
                                                              dtype=tokens.dtype)  # [T+1, T+1], -inf above
        hidden = self.layers(static_first, mask=mask, is_causal=True)  # [B, 1+T, D]
        return torch.cat([hidden[:, 1:], hidden[:, :1]], dim=1)  # [B, T+1, D]


@contextmanager
def _fast_path(enabled: bool) -> Iterator[None]:
    """PyTorch's inference "fast path" of the encoder layers on or off, restored afterwards.

    On the CPU it is slower than the layers' own path through ``scaled_dot_product_attention`` (measured with one
    thread, d 64, 2 layers, 366 tokens: 2× without a mask, 4× with the causal mask, which it cannot pass on as
    ``is_causal``), so CPU inference leaves it out.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled and before)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)
