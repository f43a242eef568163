"""Per-variable embeddings with learned mask vectors, vectorised over variables, and the input token sequence."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class VariableEmbedding(nn.Module):
    """Embeds each of V scalar variables with its own small MLP and sums the V vectors into one token.

    Variable v maps its value x to ``Linear(h→D)(Dropout(GELU(Linear(1→h)(x))))``; a hidden (masked or missing) value
    is replaced by the learned mask vector m_v instead. All V MLPs run as one batched product: the first layers as a
    broadcast [..., V, h], the second layers as one [V·h, D] matrix, so no [..., V, D] tensor is ever built. The
    hidden units of a hidden value are zeroed together with dropout's (one multiplier), and the second layers' biases
    and the mask vectors enter as one small product added by the large one.

    Parameters
    ----------
    n_variables : int
        Number of variables V.
    d_model : int
        Token width D.
    width : int
        Hidden width h of each variable's MLP.
    dropout : float
        Dropout after the GELU.
    """

    def __init__(self, n_variables: int, d_model: int, width: int = 64, dropout: float = 0.1):
        super().__init__()
        self.n_variables, self.width = n_variables, width
        self.weight_in = nn.Parameter(torch.empty(n_variables, width))  # Linear(1→h) per variable
        self.bias_in = nn.Parameter(torch.empty(n_variables, width))
        self.weight_out = nn.Parameter(torch.empty(n_variables * width, d_model))  # Linear(h→D) per variable
        self.bias_out = nn.Parameter(torch.empty(n_variables, d_model))
        self.mask_vectors = nn.Parameter(torch.empty(n_variables, d_model))
        self.dropout = nn.Dropout(dropout)
        self._reset_parameters()

    def _reset_parameters(self):
        """The initialisation nn.Linear would give each variable's own layers; mask vectors ~ N(0, 0.02)."""
        nn.init.uniform_(self.weight_in, -1.0, 1.0)
        nn.init.uniform_(self.bias_in, -1.0, 1.0)
        bound = 1.0 / math.sqrt(self.width)
        nn.init.uniform_(self.weight_out, -bound, bound)
        nn.init.uniform_(self.bias_out, -bound, bound)
        nn.init.normal_(self.mask_vectors, std=0.02)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embed and sum the variables of every position.

        Parameters
        ----------
        values : torch.Tensor
            Normalised values [..., V]; entries under ``mask`` may hold anything, NaN included.
        mask : torch.Tensor
            Bool [..., V], True = hidden from the encoder (masked or missing): the mask vector replaces the value.

        Returns
        -------
        torch.Tensor
            One token per position [..., D].
        """
        visible = (~mask).to(self.weight_out.dtype)  # [..., V]
        values = values.masked_fill(mask, 0.0).unsqueeze(-1)  # [..., V, 1]
        pre_activation = torch.addcmul(self.bias_in, values, self.weight_in)  # [..., V, h]
        keep = self.dropout(visible.unsqueeze(-1).expand_as(pre_activation))  # 0 where hidden or dropped
        activations = (F.gelu(pre_activation) * keep).flatten(-2)  # [..., V·h]
        fixed = torch.cat([visible, 1.0 - visible], dim=-1) @ torch.cat([self.bias_out, self.mask_vectors])  # [..., D]
        tokens = torch.addmm(fixed.reshape(-1, fixed.shape[-1]), activations.reshape(-1, activations.shape[-1]),
                             self.weight_out)
        return tokens.view(fixed.shape)  # [..., D]


class InputTokens(nn.Module):
    """Builds the encoder's input: T daily tokens, then one static token, plus learned positions.

    Parameters
    ----------
    n_dynamic : int
        Number of dynamic variables F.
    n_static : int
        Number of static attributes C.
    d_model : int
        Token width D.
    max_length : int
        Longest window T the positions cover.
    width : int
        Hidden width of each variable's MLP.
    dropout : float
        Dropout inside each variable's MLP.
    """

    def __init__(self, n_dynamic: int, n_static: int, d_model: int, max_length: int, width: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.max_length = max_length
        self.dynamic = VariableEmbedding(n_dynamic, d_model, width=width, dropout=dropout)
        self.static = VariableEmbedding(n_static, d_model, width=width, dropout=dropout)
        self.positions = nn.Parameter(torch.empty(max_length + 1, d_model).uniform_(-0.02, 0.02))

    def forward(self, dynamic: torch.Tensor, dynamic_mask: torch.Tensor, static: torch.Tensor,
                static_mask: torch.Tensor) -> torch.Tensor:
        """Tokenise a batch of windows.

        Parameters
        ----------
        dynamic : torch.Tensor
            Daily inputs [B, T, F].
        dynamic_mask : torch.Tensor
            Bool [B, T, F], True = hidden from the encoder.
        static : torch.Tensor
            Static attributes [B, C].
        static_mask : torch.Tensor
            Bool [B, C], True = hidden from the encoder.

        Returns
        -------
        torch.Tensor
            Tokens [B, T+1, D]: the T days, then the static token.
        """
        length = dynamic.shape[1]
        if length > self.max_length:
            raise ValueError(f"Window of {length} days is longer than the {self.max_length} days (seq_length) the "
                             f"positional embedding was built for.")
        daily = self.dynamic(dynamic, dynamic_mask) + self.positions[:length]  # [B, T, D]
        basin = self.static(static, static_mask) + self.positions[self.max_length]  # [B, D]
        return torch.cat([daily, basin.unsqueeze(1)], dim=1)  # [B, T+1, D]
