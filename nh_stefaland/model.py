"""StefaLand as a NeuralHydrology model: variable tokens → transformer encoder → adapter → LSTM decoder → NH head.

Shape alphabet used in all docstrings of this package: B batch, T days in the window, F dynamic variables,
C static attributes, D ``stefaland_d_model``, H ``hidden_size`` (decoder). Masks are bool, True = hidden from the
encoder (masked or missing).
"""
import logging

import torch
import torch.nn as nn

from neuralhydrology.modelzoo.basemodel import BaseModel
from neuralhydrology.modelzoo.head import get_head
from neuralhydrology.utils.config import Config

from nh_stefaland import config
from nh_stefaland.adapters import get_adapter
from nh_stefaland.encoder import Encoder
from nh_stefaland.tokens import InputTokens

LOGGER = logging.getLogger(__name__)


class StefaLand(BaseModel):
    """Attribute-based transformer for daily land-surface prediction (Kraabel et al., arXiv 2509.17942).

    Every dynamic input and static attribute is embedded by its own small MLP; the F daily vectors of a day are
    summed into one token and the C attribute vectors into one static token appended after the T days. Missing
    values are replaced by learned per-variable mask vectors, so NaN inputs at evaluation give finite predictions.
    A post-LN transformer encodes the T+1 tokens; the daily state plus the static state passes an adapter and an LSTM
    decoder into NeuralHydrology's head.

    Parameters
    ----------
    cfg : Config
        The run configuration.
    """
    # parts addressable by `finetune_modules`; names match attributes
    module_parts = ['tokens', 'encoder', 'adapter', 'decoder', 'head']

    def __init__(self, cfg: Config):
        super().__init__(cfg=cfg)
        config.check_model_options(cfg)
        settings = config.resolve(cfg.as_dict())
        d_model, nheads = settings['stefaland_d_model'], settings['stefaland_nheads']
        if d_model % nheads != 0:
            raise ValueError(f"stefaland_d_model={d_model} must be divisible by stefaland_nheads={nheads}.")
        self.dynamic_inputs = list(cfg.dynamic_inputs)
        self.static_attributes = sorted(cfg.static_attributes + cfg.hydroatlas_attributes)

        self.tokens = InputTokens(n_dynamic=len(self.dynamic_inputs), n_static=len(self.static_attributes),
                                  d_model=d_model, max_length=cfg.seq_length,
                                  hidden=settings['stefaland_token_hidden'],
                                  dropout=settings['stefaland_token_dropout'])
        self.encoder = Encoder(d_model=d_model, nheads=nheads, dim_feedforward=settings['stefaland_dim_feedforward'],
                               nlayers=settings['stefaland_nlayers'], dropout=settings['stefaland_dropout'])
        self.adapter = get_adapter(settings['stefaland_adapter'], n_inputs=len(self.dynamic_inputs),
                                   d_model=d_model, kernel_size=settings['stefaland_adapter_kernel_size'])
        self.decoder = nn.LSTM(input_size=d_model, hidden_size=cfg.hidden_size, batch_first=True)
        self.dropout = nn.Dropout(p=cfg.output_dropout)
        self.head = get_head(cfg=cfg, n_in=cfg.hidden_size, n_out=self.output_size)
        self._reset_parameters()

    def _reset_parameters(self):
        """NH's `initial_forget_bias` for the decoder LSTM."""
        if self.cfg.initial_forget_bias is not None:
            hidden_size = self.cfg.hidden_size
            self.decoder.bias_hh_l0.data[hidden_size:2 * hidden_size] = self.cfg.initial_forget_bias

    def forward(self, data: dict[str, torch.Tensor | dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Predict the targets over the whole window.

        Parameters
        ----------
        data : dict[str, torch.Tensor | dict[str, torch.Tensor]]
            NH batch: ``x_d`` {variable: [B, T, 1]}, ``x_s`` [B, C] (columns in alphabetical order).

        Returns
        -------
        dict[str, torch.Tensor]
            ``y_hat`` [B, T, n_out] (plus the head's other outputs), ``embedding`` [B, T, D] (daily encoder state plus
            static state) and ``decoder_output`` [B, T, H].
        """
        dynamic, static = self._gather_inputs(data)  # [B, T, F], [B, C]
        dynamic_missing, static_missing = torch.isnan(dynamic), torch.isnan(static)
        hidden = self.encoder(self.tokens(dynamic, dynamic_missing, static, static_missing))  # [B, T+1, D]
        embedding = hidden[:, :-1] + hidden[:, -1:]  # [B, T, D]
        decoder_input = self.adapter(embedding, dynamic.masked_fill(dynamic_missing, 0.0))  # [B, T, D]
        decoder_output, _ = self.decoder(decoder_input)  # [B, T, H]
        prediction = {'embedding': embedding, 'decoder_output': decoder_output}
        prediction.update(self.head(self.dropout(decoder_output)))
        return prediction

    def _gather_inputs(self, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic inputs by name in ``dynamic_inputs`` order [B, T, F] and the static attributes [B, C]."""
        dynamic = torch.cat([data['x_d'][name] for name in self.dynamic_inputs], dim=-1)  # [B, T, F]
        static = data['x_s']
        if static.shape[-1] != len(self.static_attributes):
            raise ValueError(f"x_s has {static.shape[-1]} columns, expected one per static attribute "
                             f"{self.static_attributes}.")
        return dynamic, static
