"""What the speed benchmark runs: models built by NH's ``Config`` + ``get_model``, their training step and inference
exactly as NH's trainer and tester call them, and the per-variable loop tokenizer of the reference design."""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from neuralhydrology.modelzoo import get_model
from neuralhydrology.training import get_loss_obj, get_optimizer
from neuralhydrology.utils.config import Config

from nh_stefaland.model.tokens import InputTokens

# the paper's StefaLand (d 256, 4 heads, FFN 512, 4 layers) with a 256-unit decoder, as basin_configs ships it
STEFALAND = {'stefaland_d_model': 256, 'stefaland_nheads': 4, 'stefaland_dim_feedforward': 512,
             'stefaland_nlayers': 4, 'stefaland_dropout': 0.1, 'stefaland_token_hidden': 64,
             'stefaland_token_dropout': 0.1, 'initial_forget_bias': 3}
# NH's transformer of the same width, heads, FFN and depth: statics and dynamics embedded to 128 each
TRANSFORMER = {'transformer_nlayers': 4, 'transformer_nheads': 4, 'transformer_dim_feedforward': 512,
               'transformer_dropout': 0.1, 'transformer_positional_encoding_type': 'sum',
               'transformer_positional_dropout': 0.0,
               'statics_embedding': {'type': 'fc', 'hiddens': [128], 'activation': 'tanh', 'dropout': 0.0},
               'dynamics_embedding': {'type': 'fc', 'hiddens': [128], 'activation': 'tanh', 'dropout': 0.0}}
FINETUNE_MODULES = ['adapter', 'decoder', 'head']
# head and loss of the streamflow workloads (StefaLand's pretraining stage implies its own)
TASK = {'head': 'regression', 'loss': 'MSE'}
MODELS = {
    'stefaland_supervised': {'model': 'stefaland', **STEFALAND, **TASK},
    'stefaland_finetune': {'model': 'stefaland', **STEFALAND, **TASK, 'stefaland_stage': 'finetune',
                           'is_finetuning': True, 'finetune_modules': FINETUNE_MODULES},
    'stefaland_pretrain': {'model': 'stefaland', **STEFALAND, 'stefaland_stage': 'pretrain', 'predict_last_n': 0},
    'cudalstm': {'model': 'cudalstm', 'initial_forget_bias': 3, **TASK},
    'transformer': {'model': 'transformer', **TRANSFORMER, **TASK},
}


@dataclass(frozen=True)
class Shape:
    """Batch size B, window T, dynamic inputs F and static attributes C of a workload."""
    batch: int
    seq_length: int
    n_dynamic: int
    n_static: int


@dataclass
class Workload:
    """A model as NH builds it, with NH's loss and optimizer for its config and one batch in NH's layout."""
    cfg: Config
    model: nn.Module
    batch: dict

    def training_step(self) -> Callable[[], None]:
        """One step of NH's ``BaseTrainer._train_epoch``: hook, forward, loss, zero_grad, backward, clip, step."""
        loss_obj = get_loss_obj(self.cfg).to(self.batch['y'].device)
        optimizer = get_optimizer(self.model, self.cfg)

        def step():
            self.model.train()
            data = self.model.pre_model_hook(self.batch, is_train=True)
            loss, _ = loss_obj(self.model(data), data)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_gradient_norm)
            optimizer.step()

        return step

    def inference(self) -> Callable[[], None]:
        """One batch of NH's tester: eval mode, no gradients, hook, forward."""

        def infer():
            self.model.eval()
            with torch.no_grad():
                self.model(self.model.pre_model_hook(self.batch, is_train=False))

        return infer


def build(name: str, shape: Shape, device: torch.device, seed: int = 0, **overrides) -> Workload:
    """Build workload ``name`` (a key of ``MODELS``) through NH's ``Config`` and ``get_model``.

    ``overrides`` replace config keys (e.g. smaller sizes). The finetuning workload freezes everything but
    ``finetune_modules`` as NH's trainer does for ``nh-run finetune``.
    """
    torch.manual_seed(seed)
    cfg = Config({'hidden_size': 256,
                  'output_dropout': 0.1, 'seq_length': shape.seq_length, 'predict_last_n': shape.seq_length,
                  'dynamic_inputs': [f'forcing_{i:02d}' for i in range(shape.n_dynamic)],
                  'static_attributes': [f'attribute_{i:02d}' for i in range(shape.n_static)],
                  'target_variables': ['streamflow'], 'batch_size': shape.batch, 'optimizer': 'AdamW',
                  'learning_rate': 1e-4, 'clip_gradient_norm': 5.0, 'device': str(device), **MODELS[name],
                  **overrides})
    model = get_model(cfg).to(device)
    if cfg.is_finetuning:
        for parameter in model.parameters():
            parameter.requires_grad = False
        for part in cfg.finetune_modules:
            for parameter in getattr(model, part).parameters():
                parameter.requires_grad = True
    return Workload(cfg=cfg, model=model, batch=make_batch(cfg, shape, device))


def make_batch(cfg: Config, shape: Shape, device: torch.device) -> dict:
    """A batch as NH's collate function builds it: ``x_d`` {name: [B, T, 1]}, ``x_s`` [B, C], ``y`` [B, T, 1]."""
    generator = torch.Generator().manual_seed(1)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator).to(device)

    return {'x_d': {name: normal(shape.batch, shape.seq_length, 1) for name in cfg.dynamic_inputs},
            'x_s': normal(shape.batch, shape.n_static), 'y': normal(shape.batch, shape.seq_length, 1)}


def frozen_encoder_floor(workload: Workload) -> tuple[Callable[[], None], Callable[[], None]]:
    """The two parts a finetuning step cannot do without: the frozen encoder's forward pass (no gradients), and the
    same finetuning step with tokens and encoder swapped for their precomputed output (adapter, decoder, head)."""
    model, batch = workload.model, workload.batch

    def encode():
        model.eval()
        with torch.no_grad():
            model.encode(batch)

    with torch.no_grad():
        model.eval()
        states = model.encode(batch)  # [B, T+1, D]
    tokens, encoder = model.tokens, model.encoder
    step = workload.training_step()

    def decoder_step():
        model.tokens, model.encoder = _Constant(None), _Constant(states)
        try:
            step()
        finally:
            model.tokens, model.encoder = tokens, encoder

    return encode, decoder_step


def with_cached_states(workload: Workload, dtype: torch.dtype = torch.bfloat16) -> Workload:
    """The finetuning workload whose batch carries its frozen encoder's states, as the loader of a run with
    ``stefaland_cache_states`` gives them (``encoder_states`` [B, T+1, D] in ``dtype``): a step then runs adapter,
    decoder and head only."""
    model = workload.model
    model.eval()
    with torch.no_grad():
        states = model.encode(workload.batch).to(dtype)  # [B, T+1, D]
    return Workload(cfg=workload.cfg, model=model, batch={**workload.batch, 'encoder_states': states})


class LoopTokens(nn.Module):
    """The reference design's tokenizer: one ``nn.Sequential`` MLP per variable run in a Python loop, the per-variable
    vectors stacked into [B, T, F, D] (and [B, C, D]), masked entries swapped for the mask vectors, then summed.

    Built from an :class:`InputTokens` so that both compute the same function with the same weights.
    """

    def __init__(self, tokens: InputTokens):
        super().__init__()
        self.max_length = tokens.max_length
        self.dynamic = nn.ModuleList(_variable_mlps(tokens.dynamic))
        self.static = nn.ModuleList(_variable_mlps(tokens.static))
        self.dynamic_mask_vectors = nn.Parameter(tokens.dynamic.mask_vectors.detach().clone())
        self.static_mask_vectors = nn.Parameter(tokens.static.mask_vectors.detach().clone())
        self.positions = nn.Parameter(tokens.positions.detach().clone())

    def forward(self, dynamic: torch.Tensor, dynamic_mask: torch.Tensor, static: torch.Tensor,
                static_mask: torch.Tensor) -> torch.Tensor:
        per_variable = []
        for index, mlp in enumerate(self.dynamic):
            vector = mlp(dynamic[..., index:index + 1].nan_to_num())  # [B, T, D]
            per_variable.append(torch.where(dynamic_mask[..., index:index + 1], self.dynamic_mask_vectors[index],
                                            vector))
        daily = torch.stack(per_variable, dim=2).sum(dim=2)  # [B, T, F, D] → [B, T, D]
        per_attribute = []
        for index, mlp in enumerate(self.static):
            vector = mlp(static[:, index:index + 1].nan_to_num())  # [B, D]
            per_attribute.append(torch.where(static_mask[:, index:index + 1], self.static_mask_vectors[index], vector))
        basin = torch.stack(per_attribute, dim=1).sum(dim=1)  # [B, C, D] → [B, D]
        length = dynamic.shape[1]
        daily = daily + self.positions[:length]
        basin = basin + self.positions[self.max_length]
        return torch.cat([daily, basin.unsqueeze(1)], dim=1)  # [B, T+1, D]


class _Constant(nn.Module):
    """Returns the same value whatever it is called with."""

    def __init__(self, value: torch.Tensor | None):
        super().__init__()
        self.value = value

    def forward(self, *args) -> torch.Tensor | None:
        return self.value


def _variable_mlps(embedding) -> list[nn.Sequential]:
    width, d_model = embedding.width, embedding.weight_out.shape[1]
    mlps = []
    for index in range(embedding.n_variables):
        mlp = nn.Sequential(nn.Linear(1, width), nn.GELU(), nn.Dropout(embedding.dropout.p), nn.Linear(width, d_model))
        with torch.no_grad():
            mlp[0].weight.copy_(embedding.weight_in[index].unsqueeze(1))
            mlp[0].bias.copy_(embedding.bias_in[index])
            mlp[3].weight.copy_(embedding.weight_out[index * width:(index + 1) * width].T)
            mlp[3].bias.copy_(embedding.bias_out[index])
        mlps.append(mlp)
    return mlps
