"""Adapters between the encoder's daily representation and the task decoder."""
import torch
import torch.nn as nn

ADAPTERS = ('resconn', 'none', 'linear', 'dual_residual')


class ResidualAdapter(nn.Module):
    """StefaLand's "resConn": scale · LayerNorm(E_t) + r_t, with r_t = Linear(GELU(Conv1d(x)))_t from the raw inputs.

    Parameters
    ----------
    n_inputs : int
        Number of daily task inputs F_a fed to the residual branch.
    d_model : int
        Width D of the encoder representation.
    kernel_size : int
        Temporal kernel of the convolution (odd, centred).
    """

    def __init__(self, n_inputs: int, d_model: int, kernel_size: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.scale = nn.Parameter(torch.ones(1))
        self.conv = nn.Conv1d(n_inputs, d_model, kernel_size=kernel_size, padding=kernel_size // 2)
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
        branch = self.conv(inputs.transpose(1, 2)).transpose(1, 2)  # [B, T, D]
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
        Temporal kernel of the convolution (odd, centred).
    """

    def __init__(self, n_inputs: int, n_attributes: int, d_model: int, kernel_size: int = 3):
        super().__init__()
        self.daily = ResidualAdapter(n_inputs, d_model, kernel_size=kernel_size)
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


def get_adapter(name: str, n_inputs: int, n_attributes: int, d_model: int, kernel_size: int) -> nn.Module:
    """Build the adapter named by ``stefaland_adapter`` (``linear`` probes the embedding as it is)."""
    if name in ('resconn', 'dual_residual') and kernel_size % 2 == 0:
        raise ValueError(f"stefaland_adapter_kernel_size={kernel_size} must be odd (a centred convolution).")
    if name == 'resconn':
        return ResidualAdapter(n_inputs, d_model, kernel_size=kernel_size)
    if name == 'dual_residual':
        return DualResidualAdapter(n_inputs, n_attributes, d_model, kernel_size=kernel_size)
    if name in ('none', 'linear'):
        return IdentityAdapter()
    raise ValueError(f"stefaland_adapter={name!r} is not supported; choose one of {list(ADAPTERS)}.")
