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

from nh_stefaland.model.adapters import ADAPTERS, get_adapter, get_decoder
from nh_stefaland.model.checks import check_config, encoder_variables, warn_about_absent_encoder_variables
from nh_stefaland.model.encoder import Encoder
from nh_stefaland.model.masking import attribute_group_ids, group_mask, warn_about_masking, window_mask
from nh_stefaland.model.missing import MissingPolicy, columns, hide_invalid, input_masks, valid_days, zero_hidden
from nh_stefaland.model.reconstruction import ReconstructionDecoder, ReconstructionHead
from nh_stefaland.model.settings import STAGE_PARTS, Settings
from nh_stefaland.model.tokens import InputTokens

LOGGER = logging.getLogger(__name__)

TASK_PARTS = ('adapter', 'decoder', 'head')


class StefaLand(BaseModel):
    """Attribute-based transformer for daily land-surface prediction (Kraabel et al., arXiv 2509.17942).

    Every dynamic input and static attribute is embedded by its own small MLP; the F daily vectors of a day are
    summed into one token and the C attribute vectors into one static token appended after the T days. Missing
    values are replaced by learned per-variable mask vectors; where those were never trained, or a gap is longer than
    training taught them, the prediction is NaN (:mod:`nh_stefaland.model.missing`). A post-LN transformer encodes
    the T+1 tokens. What follows depends on ``stefaland_stage``:

    - ``supervised``: the daily state plus the static state passes an adapter and an LSTM decoder into
      NeuralHydrology's head, all trained on the targets;
    - ``pretrain``: windows of the dynamic inputs and groups of attributes are masked and the reconstruction decoder
      rebuilds them (the stage implies ``head``/``loss: reconstruction``);
    - ``finetune``: tokens, encoder and reconstruction decoder come from a pretraining checkpoint and stay frozen in
      eval mode; adapter, decoder and head learn the task.

    With ``head: umal`` the head reads NH's sampled asymmetry tau (``x_d['_tau']``) next to the decoder output (the
    embedding for ``stefaland_adapter: linear``), so it learns the tau-quantile with every adapter; tokens and
    encoder never see tau.

    Parameters
    ----------
    cfg : Config
        The run configuration.
    """
    module_parts = list(STAGE_PARTS['supervised'])

    def __init__(self, cfg: Config):
        super().__init__(cfg=cfg)
        self.settings = settings = check_config(cfg)
        self.stage = settings.stage
        self.module_parts = list(STAGE_PARTS[self.stage])
        self.dynamic_inputs = list(cfg.dynamic_inputs)
        self.static_attributes = sorted(cfg.static_attributes + cfg.hydroatlas_attributes)
        self.encoder_inputs, self.encoder_attributes = encoder_variables(cfg, settings)
        # x_s column of each encoder attribute; one past the last column (a NaN pad) for attributes not loaded
        self._attribute_columns = columns(self.encoder_attributes, self.static_attributes)
        # encoder mask column of each task input and attribute; one past the last (never hidden) for the others
        self._input_mask_columns = columns(self.dynamic_inputs, self.encoder_inputs)
        self._attribute_mask_columns = columns(self.static_attributes, self.encoder_attributes)
        self.missing_policy = MissingPolicy.from_settings(settings, cfg.seq_length)
        warn_about_absent_encoder_variables(self.encoder_inputs + self.encoder_attributes,
                                            self.dynamic_inputs + self.static_attributes)

        self.tokens = InputTokens(n_dynamic=len(self.encoder_inputs), n_static=len(self.encoder_attributes),
                                  d_model=settings.d_model, max_length=cfg.seq_length, width=settings.token_hidden,
                                  dropout=settings.token_dropout)
        self.encoder = Encoder(d_model=settings.d_model, nheads=settings.nheads,
                               dim_feedforward=settings.dim_feedforward, nlayers=settings.nlayers,
                               dropout=settings.dropout, attention_dropout=settings.attention_dropout,
                               bf16=settings.bf16, causal=settings.causal)
        if self.stage != 'supervised':
            self.reconstruction_decoder = self._build_reconstruction_decoder(settings)
        if self.stage == 'pretrain':
            warn_about_masking(settings, cfg.seq_length, self.encoder_attributes, self.attribute_groups)
        if self.stage != 'pretrain':
            LOGGER.info(f"Missing inputs: {self.missing_policy.describe()}.")
            self.adapter = get_adapter(settings.adapter, n_inputs=len(self.dynamic_inputs),
                                       n_attributes=len(self.static_attributes), d_model=settings.d_model,
                                       kernel_size=settings.adapter_kernel_size, causal=settings.causal)
            self.decoder = get_decoder(settings.adapter, settings.d_model, cfg.hidden_size)
            self.dropout = nn.Dropout(p=cfg.output_dropout)
            n_in = cfg.hidden_size if ADAPTERS[settings.adapter][1] else settings.d_model
            self._reads_tau = cfg.head.lower() == 'umal'
            self.head = get_head(cfg=cfg, n_in=n_in + 1 if self._reads_tau else n_in, n_out=self.output_size)
        self._reset_parameters()

    def _build_reconstruction_decoder(self, settings: Settings) -> ReconstructionDecoder:
        """The reconstruction decoder and its head; the group of each encoder attribute for the static masks."""
        groups = attribute_group_ids(self.encoder_attributes, settings.attribute_groups,
                                     settings.never_masked_attributes)
        self.register_buffer('attribute_groups', torch.tensor(groups, dtype=torch.long), persistent=False)
        head = ReconstructionHead(settings.d_model, len(self.encoder_inputs), len(self.encoder_attributes),
                                  width=settings.reconstruction_hidden)
        return ReconstructionDecoder(settings.d_model, head, recurrent=settings.reconstruction_decoder == 'lstm')

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
            NH batch: ``x_d`` {variable: [B, T, 1]}, ``x_s`` [B, C] (columns in alphabetical order); with
            ``head: umal`` also ``x_d['_tau']`` [B, T, 1], added by NH's ``pre_model_hook``. A finetuning batch
            may carry its frozen encoder's states as ``encoder_states`` [B, T+1, D] (any float dtype; see
            :mod:`nh_stefaland.nh.state_cache`): they replace tokens and encoder.

        Returns
        -------
        dict[str, torch.Tensor]
            Pretraining: see :meth:`reconstruct`. Otherwise ``y_hat`` [B, T, n_out] (plus the head's other outputs),
            ``embedding`` [B, T, D] (daily encoder state plus static state) and ``decoder_output`` [B, T, H].
            ``y_hat`` (``mu`` for probabilistic heads) is NaN on the days :meth:`valid_days` rejects.
        """
        if self.stage == 'pretrain':
            return self.reconstruct(data)
        dynamic, static = self._gather_encoder_inputs(data)  # [B, T, F], [B, C]
        dynamic_mask, static_mask = self._hidden_inputs(dynamic, static)  # [B, T, F], [B, C]
        states = self._states(data, dynamic, dynamic_mask, static, static_mask)  # [B, T+1, D]
        embedding = states[:, :-1] + states[:, -1:]  # [B, T, D]
        inputs, attributes = self._gather_task_inputs(data, dynamic_mask, static_mask)  # [B, T, F_a], [B, C_a]
        decoder_output = self.decoder(self.adapter(embedding, inputs, attributes))  # [B, T, H]
        prediction = {'embedding': embedding, 'decoder_output': decoder_output}
        prediction.update(self.head(self._head_input(self.dropout(decoder_output), data)))
        return hide_invalid(prediction, self.valid_days(data))

    def valid_days(self, data: dict) -> torch.Tensor:
        """Bool [B, T]: the days the model predicts; NaN elsewhere, where missing inputs would make it invent flows.

        See :mod:`nh_stefaland.model.missing` for the policy, which depends on whether the mask vectors were trained.
        """
        dynamic = torch.cat([data['x_d'][name] for name in self.dynamic_inputs], dim=-1)  # [B, T, F_a]
        return valid_days(torch.isnan(dynamic), torch.isnan(self._static(data)), self.missing_policy)

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
            ``x_hat``, ``x_target`` (normalised inputs, NaN where missing), ``x_mask`` [B, T, F]; ``static_hat``,
            ``static_target``, ``static_mask`` [B, C]; ``states`` encoder states [B, T+1, D].
        """
        if self.stage == 'supervised':
            raise ValueError("This StefaLand run has no reconstruction decoder (stefaland_stage: supervised).")
        dynamic, static = self._gather_encoder_inputs(data)  # [B, T, F], [B, C]
        dynamic_mask, static_mask = self.draw_masks(dynamic, static, generator)  # [B, T, F], [B, C]
        states = self._encode(dynamic, dynamic_mask, static, static_mask)  # [B, T+1, D]
        reconstruction = self.reconstruction_decoder(states)  # x_hat [B, T, F], static_hat [B, C]
        return {**reconstruction, 'x_target': dynamic, 'x_mask': dynamic_mask, 'static_target': static,
                'static_mask': static_mask, 'states': states}

    def draw_masks(self, dynamic: torch.Tensor, static: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pretraining masks: windows of days per dynamic variable, groups of attributes, and every missing value.

        Parameters
        ----------
        dynamic : torch.Tensor
            Encoder inputs [B, T, F], NaN where missing.
        static : torch.Tensor
            Encoder attributes [B, C], NaN where missing.
        generator : torch.Generator | None
            Random source on the model's device (the global one when None).

        Returns
        -------
        tuple[torch.Tensor, torch.Tensor]
            Bool masks [B, T, F] and [B, C], True = hidden from the encoder.
        """
        settings = self.settings
        windows = window_mask(dynamic.shape, settings.mask_ratio, settings.mask_min_days, settings.mask_max_days,
                              generator=generator, device=dynamic.device,
                              min_ratio=settings.min_mask_ratio)  # [B, T, F]
        groups = group_mask(static.shape[0], self.attribute_groups, settings.static_mask_ratio,
                            settings.group_mask_probability, generator=generator)  # [B, C]
        return torch.isnan(dynamic) | windows, torch.isnan(static) | groups

    def encode(self, data: dict) -> torch.Tensor:
        """Encoder states [B, T+1, D] (days, then the static token) of a batch, hiding only missing values."""
        dynamic, static = self._gather_encoder_inputs(data)  # [B, T, F], [B, C]
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

    def _hidden_inputs(self, dynamic: torch.Tensor, static: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks [B, T, F], [B, C] of the encoder inputs: missing values, plus random ones in supervised training
        with ``stefaland_input_mask_ratio``."""
        if self.training and self.stage == 'supervised' and self.settings.input_mask_ratio > 0:
            return input_masks(dynamic, static, self.settings)
        return torch.isnan(dynamic), torch.isnan(static)

    def _states(self, data: dict, dynamic: torch.Tensor, dynamic_mask: torch.Tensor, static: torch.Tensor,
                static_mask: torch.Tensor) -> torch.Tensor:
        """The batch's ``encoder_states`` [B, T+1, D] in float32 when it carries them, else the encoder's.

        NH's UMAL hook repeats the batch's inputs n_taus times along B; the cached states follow.
        """
        cached = data.get('encoder_states')
        if cached is None:
            return self._encode(dynamic, dynamic_mask, static, static_mask)
        states, repeats = cached.float(), next(iter(data['x_d'].values())).shape[0] // cached.shape[0]
        return states.repeat(repeats, 1, 1) if repeats > 1 else states  # [B, T+1, D]

    def _encode(self, dynamic: torch.Tensor, dynamic_mask: torch.Tensor, static: torch.Tensor,
                static_mask: torch.Tensor) -> torch.Tensor:
        """Tokens → encoder [B, T+1, D], building no autograd graph when both are frozen."""
        trainable = any(p.requires_grad for p in chain(self.tokens.parameters(), self.encoder.parameters()))
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            return self.encoder(self.tokens(dynamic, dynamic_mask, static, static_mask))

    def _gather_encoder_inputs(self, data: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder inputs by name [B, T, F] and encoder attributes [B, C]; variables the data lacks are NaN."""
        static = self._static(data)
        some_input = next(iter(data['x_d'].values()))
        dynamic = torch.cat([data['x_d'].get(name, torch.full_like(some_input, float('nan')))
                             for name in self.encoder_inputs], dim=-1)  # [B, T, F]
        padded = torch.cat([static, torch.full_like(static[:, :1], float('nan'))], dim=1)  # [B, C_a+1]
        return dynamic, padded[:, self._attribute_columns]

    def _gather_task_inputs(self, data: dict, dynamic_mask: torch.Tensor,
                            static_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All dynamic inputs in ``dynamic_inputs`` order [B, T, F_a] and all attributes [B, C_a]; missing values and
        those hidden from the encoder (``dynamic_mask`` [B, T, F], ``static_mask`` [B, C]) as 0."""
        dynamic = torch.cat([data['x_d'][name] for name in self.dynamic_inputs], dim=-1)  # [B, T, F_a]
        return (zero_hidden(dynamic, dynamic_mask, self._input_mask_columns),
                zero_hidden(self._static(data), static_mask, self._attribute_mask_columns))

    def _head_input(self, features: torch.Tensor, data: dict) -> torch.Tensor:
        """The head's input: ``features`` [B, T, H] (D for the linear probe); UMAL's also holds tau [B, T, H+1].

        Raises
        ------
        ValueError
            If the head is UMAL and the batch has no ``x_d['_tau']``.
        """
        if not self._reads_tau:
            return features
        if '_tau' not in data['x_d']:
            raise ValueError("head: umal reads the asymmetry x_d['_tau'] that NH's pre_model_hook adds "
                             "(samplingutils.umal_extend_batch); pass the batch through model.pre_model_hook first.")
        return torch.cat([features, data['x_d']['_tau']], dim=-1)  # [B, T, H+1]

    def _static(self, data: dict) -> torch.Tensor:
        static = data['x_s']
        if static.shape[-1] != len(self.static_attributes):
            raise ValueError(f"x_s has {static.shape[-1]} columns, expected one per static attribute "
                             f"{self.static_attributes}.")
        return static
