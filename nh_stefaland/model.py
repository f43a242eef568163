"""StefaLand as a NeuralHydrology model: variable tokens → transformer encoder → adapter → LSTM decoder → NH head.

Shape alphabet used in all docstrings of this package: B batch, T days in the window, F dynamic variables,
C static attributes, D ``stefaland_d_model``, H ``hidden_size`` (decoder). Masks are bool, True = hidden from the
encoder (masked or missing).
"""
import logging
from itertools import chain

import torch
import torch.nn as nn

from neuralhydrology.modelzoo.basemodel import BaseModel
from neuralhydrology.modelzoo.head import get_head
from neuralhydrology.utils.config import Config

from nh_stefaland import config
from nh_stefaland.adapters import get_adapter
from nh_stefaland.encoder import Encoder
from nh_stefaland.masking import attribute_group_ids, group_mask, window_mask
from nh_stefaland.reconstruction import ReconstructionDecoder, ReconstructionHead
from nh_stefaland.tokens import InputTokens

LOGGER = logging.getLogger(__name__)

# parts addressable by `finetune_modules`, per `stefaland_stage`; names match attributes
STAGE_PARTS = {
    'supervised': ['tokens', 'encoder', 'adapter', 'decoder', 'head'],
    'pretrain': ['tokens', 'encoder', 'reconstruction_decoder'],
    'finetune': ['tokens', 'encoder', 'reconstruction_decoder', 'adapter', 'decoder', 'head'],
}
TASK_PARTS = ('adapter', 'decoder', 'head')


class LSTMDecoder(nn.LSTM):
    """Single-layer, batch-first LSTM that returns only its output sequence [B, T, H]."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size=input_size, hidden_size=hidden_size, batch_first=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Decode [B, T, D] into [B, T, H]."""
        return super().forward(inputs)[0]


class StefaLand(BaseModel):
    """Attribute-based transformer for daily land-surface prediction (Kraabel et al., arXiv 2509.17942).

    Every dynamic input and static attribute is embedded by its own small MLP; the F daily vectors of a day are
    summed into one token and the C attribute vectors into one static token appended after the T days. Missing
    values are replaced by learned per-variable mask vectors, so NaN inputs at evaluation give finite predictions.
    A post-LN transformer encodes the T+1 tokens. What follows depends on ``stefaland_stage``:

    - ``supervised``: the daily state plus the static state passes an adapter and an LSTM decoder into
      NeuralHydrology's head, all trained on the targets;
    - ``pretrain``: windows of the dynamic inputs and groups of attributes are masked and the reconstruction decoder
      rebuilds them (``head: reconstruction``, ``loss: reconstruction``);
    - ``finetune``: tokens, encoder and reconstruction decoder come from a pretraining checkpoint and stay frozen in
      eval mode; adapter, decoder and head learn the task.

    Parameters
    ----------
    cfg : Config
        The run configuration.
    """
    module_parts = STAGE_PARTS['supervised']

    def __init__(self, cfg: Config):
        super().__init__(cfg=cfg)
        config.check_model_options(cfg)
        settings = config.resolve(cfg.as_dict())
        config.check_stage(cfg, settings)
        d_model, nheads = settings['stefaland_d_model'], settings['stefaland_nheads']
        if d_model % nheads != 0:
            raise ValueError(f"stefaland_d_model={d_model} must be divisible by stefaland_nheads={nheads}.")
        self.stage = settings['stefaland_stage']
        self.module_parts = STAGE_PARTS[self.stage]
        self.dynamic_inputs = list(cfg.dynamic_inputs)
        self.static_attributes = sorted(cfg.static_attributes + cfg.hydroatlas_attributes)
        self.encoder_inputs, self.encoder_attributes = config.encoder_variables(cfg)
        # x_s column of each encoder attribute; one past the last column (a NaN pad) for attributes not loaded
        self._attribute_columns = [self.static_attributes.index(a) if a in self.static_attributes
                                   else len(self.static_attributes) for a in self.encoder_attributes]
        self._warn_about_absent_encoder_variables()

        self.tokens = InputTokens(n_dynamic=len(self.encoder_inputs), n_static=len(self.encoder_attributes),
                                  d_model=d_model, max_length=cfg.seq_length,
                                  hidden=settings['stefaland_token_hidden'],
                                  dropout=settings['stefaland_token_dropout'])
        self.encoder = Encoder(d_model=d_model, nheads=nheads, dim_feedforward=settings['stefaland_dim_feedforward'],
                               nlayers=settings['stefaland_nlayers'], dropout=settings['stefaland_dropout'],
                               attention_dropout=settings['stefaland_attention_dropout'],
                               bf16=settings['stefaland_bf16'])
        if self.stage != 'supervised':
            self.reconstruction_decoder = self._build_reconstruction_decoder(cfg, settings)
        if self.stage != 'pretrain':
            linear_probe = settings['stefaland_adapter'] == 'linear'
            self.adapter = get_adapter(settings['stefaland_adapter'], n_inputs=len(self.dynamic_inputs),
                                       n_attributes=len(self.static_attributes), d_model=d_model,
                                       kernel_size=settings['stefaland_adapter_kernel_size'])
            self.decoder = nn.Identity() if linear_probe else LSTMDecoder(d_model, cfg.hidden_size)
            self.dropout = nn.Dropout(p=cfg.output_dropout)
            self.head = get_head(cfg=cfg, n_in=d_model if linear_probe else cfg.hidden_size, n_out=self.output_size)
        self._reset_parameters()

    def _build_reconstruction_decoder(self, cfg: Config, settings: dict) -> ReconstructionDecoder:
        """Reconstruction decoder and masking settings; the head is NH's ``reconstruction`` head when pretraining."""
        d_model, n_dynamic = settings['stefaland_d_model'], len(self.encoder_inputs)
        n_variables = n_dynamic + len(self.encoder_attributes)
        if self.stage == 'pretrain':
            head = get_head(cfg=cfg, n_in=d_model, n_out=n_variables)
        else:  # the task takes `head`; the pretrained reconstruction head is rebuilt to hold its weights
            head = ReconstructionHead(d_model, n_dynamic, n_variables - n_dynamic,
                                      hidden=settings['stefaland_reconstruction_hidden'])
        self._masking = {key: settings[f'stefaland_{key}'] for key in
                         ('mask_ratio', 'mask_min_days', 'mask_max_days', 'static_mask_ratio',
                          'group_mask_probability')}
        groups = attribute_group_ids(self.encoder_attributes, settings['stefaland_attribute_groups'],
                                     settings['stefaland_never_masked_attributes'])
        self.register_buffer('attribute_groups', torch.tensor(groups, dtype=torch.long), persistent=False)
        return ReconstructionDecoder(d_model, head)

    def _reset_parameters(self):
        """NH's `initial_forget_bias` for the decoder LSTM."""
        if self.cfg.initial_forget_bias is not None and isinstance(getattr(self, 'decoder', None), nn.LSTM):
            hidden_size = self.cfg.hidden_size
            self.decoder.bias_hh_l0.data[hidden_size:2 * hidden_size] = self.cfg.initial_forget_bias

    def forward(self, data: dict[str, torch.Tensor | dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Predict the targets over the whole window or, when pretraining, reconstruct masked inputs.

        Parameters
        ----------
        data : dict[str, torch.Tensor | dict[str, torch.Tensor]]
            NH batch: ``x_d`` {variable: [B, T, 1]}, ``x_s`` [B, C] (columns in alphabetical order).

        Returns
        -------
        dict[str, torch.Tensor]
            Pretraining: see :meth:`reconstruct`. Otherwise ``y_hat`` [B, T, n_out] (plus the head's other outputs),
            ``embedding`` [B, T, D] (daily encoder state plus static state) and ``decoder_output`` [B, T, H].
        """
        if self.stage == 'pretrain':
            return self.reconstruct(data)
        dynamic, static = self._gather_encoder_inputs(data)  # [B, T, F], [B, C]
        hidden = self._encode(dynamic, torch.isnan(dynamic), static, torch.isnan(static))  # [B, T+1, D]
        embedding = hidden[:, :-1] + hidden[:, -1:]  # [B, T, D]
        inputs, attributes = self._gather_task_inputs(data)  # [B, T, F_a], [B, C_a]
        decoder_output = self.decoder(self.adapter(embedding, inputs, attributes))  # [B, T, H]
        prediction = {'embedding': embedding, 'decoder_output': decoder_output}
        prediction.update(self.head(self.dropout(decoder_output)))
        return prediction

    def reconstruct(self, data: dict, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Mask the encoder inputs as in pretraining and reconstruct them.

        Parameters
        ----------
        data : dict
            NH batch (see :meth:`forward`).
        generator : torch.Generator | None
            Random source of the masks, on the model's device (the global one when None).

        Returns
        -------
        dict[str, torch.Tensor]
            ``x_hat``, ``x_target`` (normalised inputs, NaN where missing), ``x_hidden_mask`` [B, T, F];
            ``static_hat``, ``static_target``, ``static_hidden_mask`` [B, C]; ``hidden`` encoder states [B, T+1, D].
        """
        if self.stage == 'supervised':
            raise ValueError("This StefaLand run has no reconstruction decoder (stefaland_stage: supervised).")
        dynamic, static = self._gather_encoder_inputs(data)  # [B, T, F], [B, C]
        masking = self._masking
        dynamic_hidden = torch.isnan(dynamic) | window_mask(dynamic.shape, masking['mask_ratio'],
                                                            masking['mask_min_days'], masking['mask_max_days'],
                                                            generator=generator, device=dynamic.device)
        static_hidden = torch.isnan(static) | group_mask(static.shape[0], self.attribute_groups,
                                                         masking['static_mask_ratio'],
                                                         masking['group_mask_probability'], generator=generator)
        hidden = self._encode(dynamic, dynamic_hidden, static, static_hidden)  # [B, T+1, D]
        reconstruction = self.reconstruction_decoder(hidden)  # x_hat [B, T, F], static_hat [B, C]
        return {**reconstruction, 'x_target': dynamic, 'x_hidden_mask': dynamic_hidden, 'static_target': static,
                'static_hidden_mask': static_hidden, 'hidden': hidden}

    def encode(self, data: dict) -> torch.Tensor:
        """Encoder states [B, T+1, D] (days, then the static token) of a batch, hiding only missing values."""
        dynamic, static = self._gather_encoder_inputs(data)
        return self._encode(dynamic, torch.isnan(dynamic), static, torch.isnan(static))

    def train(self, mode: bool = True) -> 'StefaLand':
        """Set train mode; when finetuning, parts without trainable parameters stay in eval mode (no dropout)."""
        super().train(mode)
        if mode and self.stage == 'finetune':
            for part in self.module_parts:
                module = getattr(self, part)
                if not any(parameter.requires_grad for parameter in module.parameters()):
                    module.eval()
        return self

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """Load a checkpoint; a finetuning model also accepts its pretraining run's checkpoint.

        A pretraining checkpoint holds tokens, encoder and reconstruction decoder but no adapter, decoder or head:
        those parts keep their initialisation and the log says so. Any other mismatch fails as in PyTorch.
        """
        if self.stage != 'finetune' or any(key.split('.')[0] in TASK_PARTS for key in state_dict):
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        unfit = [key for key in result.missing_keys if key.split('.')[0] not in TASK_PARTS] + result.unexpected_keys
        if unfit:
            raise ValueError(f"The pretraining checkpoint does not fit this model; missing or unexpected: {unfit}.")
        LOGGER.info(f"Loaded tokens, encoder and reconstruction_decoder from the pretraining checkpoint; "
                    f"{', '.join(TASK_PARTS)} start from their initialisation ({len(result.missing_keys)} tensors).")
        return result

    def _encode(self, dynamic: torch.Tensor, dynamic_hidden: torch.Tensor, static: torch.Tensor,
                static_hidden: torch.Tensor) -> torch.Tensor:
        """Tokens → encoder [B, T+1, D], building no autograd graph when both are frozen."""
        trainable = any(p.requires_grad for p in chain(self.tokens.parameters(), self.encoder.parameters()))
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            return self.encoder(self.tokens(dynamic, dynamic_hidden, static, static_hidden))

    def _gather_encoder_inputs(self, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder inputs by name [B, T, F] and encoder attributes [B, C]; variables the data lacks are NaN."""
        static = self._static(data)
        some_input = next(iter(data['x_d'].values()))
        dynamic = torch.cat([data['x_d'].get(name, torch.full_like(some_input, float('nan')))
                             for name in self.encoder_inputs], dim=-1)  # [B, T, F]
        padded = torch.cat([static, torch.full_like(static[:, :1], float('nan'))], dim=1)  # [B, C_a+1]
        return dynamic, padded[:, self._attribute_columns]

    def _gather_task_inputs(self, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """All dynamic inputs in ``dynamic_inputs`` order [B, T, F_a] and all attributes [B, C_a], NaN as 0."""
        dynamic = torch.cat([data['x_d'][name] for name in self.dynamic_inputs], dim=-1)  # [B, T, F_a]
        return dynamic.nan_to_num(0.0), self._static(data).nan_to_num(0.0)

    def _static(self, data: dict) -> torch.Tensor:
        static = data['x_s']
        if static.shape[-1] != len(self.static_attributes):
            raise ValueError(f"x_s has {static.shape[-1]} columns, expected one per static attribute "
                             f"{self.static_attributes}.")
        return static

    def _warn_about_absent_encoder_variables(self):
        absent = [v for v in self.encoder_inputs if v not in self.dynamic_inputs]
        absent += [a for a in self.encoder_attributes if a not in self.static_attributes]
        if absent:
            LOGGER.warning(f"The pretrained encoder reads {absent}, which this config does not load: they are fed as "
                           f"missing (their learned mask vectors) throughout.")
