"""Adapters between the encoder's daily representation and the task decoder, and the task decoder."""
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualAdapter(nn.Module):
    """StefaLand's "resConn": scale · LayerNorm(E_t) + r_t, with r_t = Linear(GELU(Conv1d(x)))_t from the raw inputs.

    Parameters
    ----------
    n_inputs : int
        Number of daily task inputs F_a fed to the residual branch.
    d_model : int
        Width D of the encoder representation.
    kernel_size : int
        Temporal kernel of the convolution (odd, centred; any size when causal).
    causal : bool
        ``stefaland_causal``: day t's branch reads days t − kernel_size + 1 … t (padded on the left) instead of the
        days centred on t.

    Raises
    ------
    ValueError
        If ``kernel_size`` is even for a centred convolution.
    """

    def __init__(self, n_inputs: int, d_model: int, kernel_size: int = 3, causal: bool = False):
        super().__init__()
        if kernel_size % 2 == 0 and not causal:
            raise ValueError(f"stefaland_adapter_kernel_size={kernel_size} must be odd (a centred convolution; "
                             f"stefaland_causal: True accepts any size).")
        self.norm = nn.LayerNorm(d_model)
        self.scale = nn.Parameter(torch.ones(1))
        self.padding = (kernel_size - 1, 0) if causal else (kernel_size // 2, kernel_size // 2)  # days before, after
        self.conv = nn.Conv1d(n_inputs, d_model, kernel_size=kernel_size)
        self.residual = nn.Sequential(nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, embedding: torch.Tensor, inputs: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """Add the residual branch to the normalised representation.

        Parameters
        ----------
        embedding : torch.Tensor
            Daily encoder representation E [B, T, D].
        inputs : torch.Tensor
            Normalised daily task inputs [B, T, F_a], missing values as 0.
        attributes : torch.Tensor
            Normalised static attributes [B, C_a], missing values as 0 (not used here).

        Returns
        -------
        torch.Tensor
            Decoder input [B, T, D].
        """
        padded = F.pad(inputs.transpose(1, 2), self.padding)  # [B, F_a, T + kernel_size − 1]
        branch = self.conv(padded).transpose(1, 2)  # [B, T, D]
        return self.scale * self.norm(embedding) + self.residual(branch)


class DualResidualAdapter(nn.Module):
    """A heavier block: daily and static residual branches added to the scaled, normalised embedding, then a
    pre-LayerNorm feed-forward block with its own residual connection.

    m_t = scale · LayerNorm(E_t) + Linear(GELU(Conv1d(x)))_t + MLP(a);  output_t = m_t + FFN(LayerNorm(m_t)).

    Parameters
    ----------
    n_inputs : int
        Number of daily task inputs F_a.
    n_attributes : int
        Number of static task attributes C_a.
    d_model : int
        Width D of the encoder representation.
    kernel_size : int
        Temporal kernel of the convolution (odd, centred; any size when causal).
    causal : bool
        Causal convolution (see :class:`ResidualAdapter`); the other parts read one day or no day at a time.
    """

    def __init__(self, n_inputs: int, n_attributes: int, d_model: int, kernel_size: int = 3, causal: bool = False):
        super().__init__()
        self.daily = ResidualAdapter(n_inputs, d_model, kernel_size=kernel_size, causal=causal)
        self.static = nn.Sequential(nn.Linear(n_attributes, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.mix = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 2 * d_model), nn.GELU(),
                                 nn.Linear(2 * d_model, d_model))

    def forward(self, embedding: torch.Tensor, inputs: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """Decoder input [B, T, D] from E [B, T, D], daily inputs [B, T, F_a] and attributes [B, C_a] (NaN as 0)."""
        mixed = self.daily(embedding, inputs, attributes) + self.static(attributes).unsqueeze(1)  # [B, T, D]
        return mixed + self.mix(mixed)


class IdentityAdapter(nn.Module):
    """No adapter: the decoder reads the encoder representation as it is."""

    def forward(self, embedding: torch.Tensor, inputs: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
        """Return ``embedding`` [B, T, D] unchanged (``inputs`` and ``attributes`` are ignored)."""
        return embedding


class LSTMDecoder(nn.LSTM):
    """Single-layer, batch-first LSTM that returns only its output sequence [B, T, H]."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size=input_size, hidden_size=hidden_size, batch_first=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Decode [B, T, D] into [B, T, H]."""
        return super().forward(inputs)[0]


# `stefaland_adapter` → (builder from n_inputs, n_attributes, d_model, kernel_size, causal; whether the LSTM decoder
# follows)
ADAPTERS: dict[str, tuple[Callable[[int, int, int, int, bool], nn.Module], bool]] = {
    'resconn': (lambda n_inputs, n_attributes, d_model, kernel_size, causal:
                ResidualAdapter(n_inputs, d_model, kernel_size, causal), True),
    'none': (lambda n_inputs, n_attributes, d_model, kernel_size, causal: IdentityAdapter(), True),
    'linear': (lambda n_inputs, n_attributes, d_model, kernel_size, causal: IdentityAdapter(), False),
    'dual_residual': (DualResidualAdapter, True),
}


def get_adapter(name: str, n_inputs: int, n_attributes: int, d_model: int, kernel_size: int,
                causal: bool = False) -> nn.Module:
    """Build the adapter named by ``stefaland_adapter`` (a key of :data:`ADAPTERS`, checked by the settings); with
    ``causal`` no day's output reads a later day."""
    return ADAPTERS[name][0](n_inputs, n_attributes, d_model, kernel_size, causal)


def get_decoder(name: str, d_model: int, hidden_size: int) -> nn.Module:
    """The task decoder after adapter ``name``: an LSTM of width ``hidden_size``, or nothing for the linear probe."""
    return LSTMDecoder(d_model, hidden_size) if ADAPTERS[name][1] else nn.Identity()
