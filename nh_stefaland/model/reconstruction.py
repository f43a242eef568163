"""The pretraining decoder: an LSTM over the encoder states and per-variable reconstruction heads."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class VariableHeads(nn.Module):
    """V small heads Linear(D→h) → GELU → Linear(h→1), one per variable, all run as one batched product.

    Parameters
    ----------
    n_in : int
        Width D of the states read.
    n_variables : int
        Number of variables V.
    width : int
        Hidden width h of each head.
    """

    def __init__(self, n_in: int, n_variables: int, width: int = 64):
        super().__init__()
        self.n_variables, self.width = n_variables, width
        self.first = nn.Linear(n_in, n_variables * width)  # the V first layers side by side
        self.weight_out = nn.Parameter(torch.empty(n_variables, width).uniform_(-1.0, 1.0) / math.sqrt(width))
        self.bias_out = nn.Parameter(torch.empty(n_variables).uniform_(-1.0, 1.0) / math.sqrt(width))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """One value per variable from states [..., D]; returns [..., V]."""
        activations = F.gelu(self.first(states)).unflatten(-1, (self.n_variables, self.width))  # [..., V, h]
        return (activations * self.weight_out).sum(dim=-1) + self.bias_out


class ReconstructionHead(nn.Module):
    """Reconstructs the dynamic variables from the daily states and the attributes from the static state.

    The pretraining stage builds it (``stefaland_stage: pretrain`` implies ``head: reconstruction``).

    Parameters
    ----------
    n_in : int
        Width D of the decoder states.
    n_dynamic : int
        Number of dynamic variables F.
    n_static : int
        Number of static attributes C.
    width : int
        Hidden width of each variable's head.
    """

    def __init__(self, n_in: int, n_dynamic: int, n_static: int, width: int = 64):
        super().__init__()
        self.dynamic = VariableHeads(n_in, n_dynamic, width)
        self.static = VariableHeads(n_in, n_static, width)

    def forward(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct from the decoder states [B, T+1, D] (days, then the static position).

        Returns
        -------
        dict[str, torch.Tensor]
            ``x_hat`` [B, T, F] and ``static_hat`` [B, C], in normalised units.
        """
        return {'x_hat': self.dynamic(states[:, :-1]), 'static_hat': self.static(states[:, -1])}


class ReconstructionDecoder(nn.Module):
    """H → 1-layer LSTM (width D) → LayerNorm → :class:`ReconstructionHead`; without the LSTM when not recurrent.

    Parameters
    ----------
    d_model : int
        Width D of the encoder states.
    head : ReconstructionHead
        The per-variable heads.
    recurrent : bool
        Decode with the LSTM (``stefaland_reconstruction_decoder: lstm``); False: the heads read each LayerNormed
        encoder state on its own (``mlp``), so every position's reconstruction comes from the encoder alone.
    """

    def __init__(self, d_model: int, head: ReconstructionHead, recurrent: bool = True):
        super().__init__()
        self.lstm = nn.LSTM(input_size=d_model, hidden_size=d_model, batch_first=True) if recurrent else None
        self.norm = nn.LayerNorm(d_model)
        self.head = head

    def forward(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct from the encoder states [B, T+1, D]; returns ``x_hat`` [B, T, F] and ``static_hat`` [B, C]."""
        decoded = states if self.lstm is None else self.lstm(states)[0]  # [B, T+1, D]
        return self.head(self.norm(decoded))
