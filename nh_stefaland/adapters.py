"""Adapters between the encoder's daily representation and the LSTM decoder."""
import torch
import torch.nn as nn


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

    def forward(self, embedding: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Add the residual branch to the normalised representation.

        Parameters
        ----------
        embedding : torch.Tensor
            Daily encoder representation E [B, T, D].
        inputs : torch.Tensor
            Normalised daily task inputs [B, T, F_a], missing values as 0.

        Returns
        -------
        torch.Tensor
            Decoder input [B, T, D].
        """
        branch = self.conv(inputs.transpose(1, 2)).transpose(1, 2)  # [B, T, D]
        return self.scale * self.norm(embedding) + self.residual(branch)


class IdentityAdapter(nn.Module):
    """No adapter: the decoder reads the encoder representation as it is."""

    def forward(self, embedding: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Return ``embedding`` [B, T, D] unchanged (``inputs`` is ignored)."""
        return embedding


def get_adapter(name: str, n_inputs: int, d_model: int, kernel_size: int) -> nn.Module:
    """Build the adapter named by ``stefaland_adapter``."""
    if name == 'resconn':
        if kernel_size % 2 == 0:
            raise ValueError(f"stefaland_adapter_kernel_size={kernel_size} must be odd (a centred convolution).")
        return ResidualAdapter(n_inputs, d_model, kernel_size=kernel_size)
    if name == 'none':
        return IdentityAdapter()
    raise ValueError(f"stefaland_adapter={name!r} is not supported; choose one of ['resconn', 'none'].")
