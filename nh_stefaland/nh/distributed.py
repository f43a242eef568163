"""Training on several processes (``torchrun``) with DistributedDataParallel: NH's trainers, minimally hooked.

Under ``torchrun`` with ``WORLD_SIZE`` > 1, :func:`trainer_class` turns NH's ``BaseTrainer`` (or StefaLand's
``FinetuneTrainer``) into a subclass that, through NH's own overridable methods only:

- puts each process on its device (the GPU of its ``LOCAL_RANK``, written into its config so that NH's validator
  uses it too), then starts the process group (NCCL on CUDA, gloo on the CPU): every collective, the first included,
  runs on the process's own GPU;
- lets rank 0 create the run folder (its timestamped name is broadcast); the other ranks write only to a private
  temporary folder, removed at the end, and log errors only;
- splits ``batch_size`` evenly (it stays the global batch of one update) and gives the loader a
  ``DistributedSampler`` (``set_epoch`` every epoch), or for a store dataset its lazy ``WindowSampler``; ``max_updates_per_epoch`` still counts updates of one global
  batch, so it is unchanged;
- wraps the model, once loaded and frozen, in :class:`DistributedModel`: DDP that still shows NH the model's
  ``module_parts`` and ``pre_model_hook`` and saves checkpoints without a ``module.`` prefix;
- averages the logged losses over the ranks (a NaN on any rank skips the update on all of them);
- validates on rank 0 and replays its logged values on the others, so early stopping and learning-rate schedules
  agree; checkpoints, TensorBoard and the run log are written by rank 0 only.

Without ``torchrun`` (or with one process) :func:`trainer_class` returns the trainer it is given, unchanged.
"""
import logging
import os
import random
import shutil
import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.training.basetrainer import BaseTrainer
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.store_dataset import window_sampler

LOGGER = logging.getLogger(__name__)

# how long ranks wait in one collective, e.g. the other ranks while rank 0 validates
TIMEOUT = timedelta(hours=3)


def world_size() -> int:
    """The number of processes ``torchrun`` started (1 without ``torchrun``)."""
    return int(os.environ.get('WORLD_SIZE', '1'))


def check_single_process(cfg: Config) -> None:
    """Refuse to train a model other than StefaLand on several processes.

    Raises
    ------
    ValueError
        If ``WORLD_SIZE`` > 1.
    """
    if world_size() > 1:
        raise ValueError(f"model: {cfg.model} cannot train on several processes (WORLD_SIZE={world_size()}): "
                         f"multi-process training with torchrun is implemented for model: stefaland only. "
                         f"Train it with one process (`nh-run train`), or use model: stefaland.")


def local_batch_size(batch_size: int, processes: int) -> int:
    """Each process's share of the global ``batch_size``.

    Raises
    ------
    ValueError
        If ``batch_size`` is not divisible by the number of processes.
    """
    if batch_size % processes != 0:
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes "
                         f"(WORLD_SIZE={processes}): it is the global batch of one update, split evenly.")
    return batch_size // processes


def trainer_class(trainer: type[BaseTrainer]) -> type[BaseTrainer]:
    """``trainer`` itself with one process; under ``torchrun`` with several, its distributed subclass."""
    return _distributed(trainer) if world_size() > 1 else trainer


class DistributedModel(DistributedDataParallel):
    """DDP around an NH model that keeps what NH's trainer reads: parts, pre-model hook, plain checkpoints."""

    @property
    def module_parts(self) -> list[str]:
        return self.module.module_parts

    def pre_model_hook(self, data: dict, is_train: bool) -> dict:
        return self.module.pre_model_hook(data, is_train=is_train)

    def state_dict(self, *args, **kwargs) -> dict:
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        return self.module.load_state_dict(state_dict, strict=strict, assign=assign)


class DistributedTraining:
    """The hooks on NH's ``BaseTrainer`` methods; used only as the first base of :func:`trainer_class`'s subclass."""

    def __init__(self, cfg: Config):
        self._rank, self._processes = int(os.environ['RANK']), world_size()
        local_batch_size(cfg.batch_size, self._processes)
        self._rank_device = _device(cfg, int(os.environ.get('LOCAL_RANK', '0')))
        if self._rank_device.type == 'cuda':
            torch.cuda.set_device(self._rank_device)  # before any NCCL collective: else all ranks start on cuda:0
            cfg.device = str(self._rank_device)  # NH's trainer and validator read the config's device
        self._owns_group = not dist.is_initialized()
        if self._owns_group:
            dist.init_process_group('nccl' if self._rank_device.type == 'cuda' else 'gloo', timeout=TIMEOUT)
        self._private_dir = None
        if self._rank > 0:
            logging.basicConfig(level=logging.ERROR, format=f'rank {self._rank}: %(asctime)s: %(message)s')
            cfg.update_config({'log_tensorboard': False})
        super().__init__(cfg=cfg)
        if self._rank > 0:
            self._disable_pbar = True

    def _create_folder_structure(self):
        if self._rank == 0:
            super()._create_folder_structure()
        _broadcast(self.cfg.run_dir)  # the other ranks wait for the run folder, named by rank 0
        if self._rank > 0:
            if self.cfg.is_continue_training:
                self.cfg.base_run_dir = self.cfg.run_dir  # as NH's trainer does
            self._private_dir = Path(tempfile.mkdtemp(prefix=f'nh_stefaland_rank{self._rank}_'))
            self.cfg.run_dir = self._private_dir
            self.cfg.train_dir = self._private_dir / 'train_data'
            self.cfg.train_dir.mkdir()
            if self.cfg.log_n_figures is not None:
                self.cfg.img_log_dir = self._private_dir / 'img_log'

    def _set_random_seeds(self):
        if self._rank == 0:
            super()._set_random_seeds()
            _broadcast(self.cfg.seed)  # chosen at random when the config has none
        else:
            self.cfg.update_config({'seed': _broadcast(None)})
        # every rank its own stream (dropout, masks); rank 0's is a one-process run's, and DDP copies its weights
        seed = self.cfg.seed + self._rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _set_device(self):
        self.device = self._rank_device
        LOGGER.info(f"### {self._processes} processes, one device each; rank 0 on {self.device} writes the run folder; "
                    f"batch_size={self.cfg.batch_size} split into {self._processes} × "
                    f"{local_batch_size(self.cfg.batch_size, self._processes)}")

    def _get_data_loader(self, ds: BaseDataset) -> DataLoader:
        self._sampler = (window_sampler(ds, self._processes, self._rank, self.cfg.seed)
                         or DistributedSampler(ds, num_replicas=self._processes, rank=self._rank, shuffle=True,
                                               seed=self.cfg.seed))
        return DataLoader(ds, batch_size=local_batch_size(self.cfg.batch_size, self._processes),
                          sampler=self._sampler, num_workers=self.cfg.num_workers, collate_fn=ds.collate_fn)

    def _get_tester(self):
        return SharedValidation(super()._get_tester() if self._rank == 0 else None)

    def initialize_training(self):
        super().initialize_training()
        model = self.model
        # a finetuned StefaLand's reconstruction decoder takes no part in the forward pass: DDP must look for it
        unused = (getattr(model, 'stage', None) == 'finetune'
                  and any(p.requires_grad for p in model.reconstruction_decoder.parameters()))
        device_ids = [self.device.index] if self.device.type == 'cuda' else None
        self.model = DistributedModel(model, device_ids=device_ids, find_unused_parameters=unused)
        self.loss_obj = RankAveragedLoss(self.loss_obj)

    def train_and_validate(self):
        try:
            super().train_and_validate()
            dist.barrier()
        finally:
            if self._private_dir is not None:
                shutil.rmtree(self._private_dir, ignore_errors=True)
            if self._owns_group and dist.is_initialized():
                dist.destroy_process_group()

    def _train_epoch(self, epoch: int):
        self._sampler.set_epoch(epoch)
        super()._train_epoch(epoch=epoch)

    def _save_weights_and_optimizer(self, epoch: int):
        if self._rank == 0:
            super()._save_weights_and_optimizer(epoch)


class RankAveragedLoss(torch.nn.Module):
    """NH's loss on this rank's share of the batch; the losses it reports are averaged over all ranks.

    The returned total loss stays local (DDP averages the gradients); it is NaN on every rank when it is NaN on any,
    so that all ranks skip the same update.
    """

    def __init__(self, loss: torch.nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, prediction: dict, data: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, parts = self.loss(prediction, data)
        values = torch.stack([loss.detach()] + [value.detach().reshape(()) for value in parts.values()])
        dist.all_reduce(values)
        values = values / dist.get_world_size()
        if torch.isnan(values[0]):
            loss = values[0]
        return loss, dict(zip(parts, values[1:]))


class SharedValidation:
    """NH's validator on rank 0; every other rank receives the values rank 0 logged and logs them too."""

    def __init__(self, tester: Any | None):
        self._tester = tester

    def evaluate(self, model: DistributedModel, experiment_logger, **kwargs) -> None:
        steps = None
        if self._tester is not None:
            recorder = _Recorder(experiment_logger)
            self._tester.evaluate(model=model.module, experiment_logger=recorder, **kwargs)
            steps = recorder.steps
        steps = _broadcast(steps)
        if self._tester is None:
            for step in steps:
                experiment_logger.log_step(**step)


class _Recorder:
    """An NH experiment logger that also keeps what ``log_step`` was given."""

    def __init__(self, logger):
        self._logger = logger
        self.steps = []

    def log_step(self, **kwargs):
        self.steps.append(kwargs)
        self._logger.log_step(**kwargs)

    def __getattr__(self, name: str):
        return getattr(self._logger, name)


@cache
def _distributed(trainer: type[BaseTrainer]) -> type[BaseTrainer]:
    return type(f'Distributed{trainer.__name__}', (DistributedTraining, trainer), {})


def _device(cfg: Config, local_rank: int) -> torch.device:
    """The CPU when the config asks for it (or no GPU is present), else the GPU of this process's local rank."""
    wants_cpu = cfg.device is not None and not cfg.device.startswith('cuda')
    if wants_cpu or not torch.cuda.is_available():
        return torch.device('cpu')
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK={local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                         f"start at most that many processes per node (--nproc_per_node).")
    return torch.device('cuda', local_rank)


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
