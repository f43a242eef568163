"""Finetuning on cached encoder states: the frozen encoder's output for the training windows, computed once per run.

With ``stefaland_cache_states: True`` a finetuning run (``stefaland_stage: finetune``) trains only on windows whose
last day lies on a grid, every ``stefaland_cache_stride`` days from each basin's first training window. Before the
first epoch, the frozen tokens and encoder run once over all grid windows (eval mode, no gradients, batched) and
their states [N, T+1, D] stay in memory in ``stefaland_cache_dtype``. Each training sample then carries its
window's states as ``encoder_states`` in NH's batch, and the model's forward takes them instead of running tokens
and encoder: an update costs the adapter, decoder and head only. An epoch keeps the length of NH's (one draw per
window of NH's dataset, each drawing a grid window, every grid window equally often), so ``epochs`` and
``max_updates_per_epoch`` give the same number of updates with and without the cache. Validation and evaluation do
not use the cache.
Under ``torchrun`` every process computes the states of all grid windows (its sampler draws from all of them).
"""
import logging
import sys

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.utils.config import Config

LOGGER = logging.getLogger(__name__)

DTYPES = {'bfloat16': torch.bfloat16, 'float32': torch.float32}
# NH keys that put random NaN streaks into a training window at every draw: its encoder states are not fixed then
RANDOM_INPUT_KEYS = ('nan_step_probability', 'nan_sequence_probability')


def training_dataset(cfg: Config, dataset: BaseDataset) -> Dataset:
    """NH's training ``dataset`` as :class:`CachedStates` when the config asks for the cache and allows it.

    A run that trains tokens or encoder, or draws random NaN streaks into its inputs, keeps NH's dataset (every
    window) and the log says why.
    """
    if not cfg.stefaland_cache_states:
        return dataset
    reason = cache_refusal(cfg)
    if reason:
        LOGGER.warning(f"stefaland_cache_states is ignored: {reason}. Training computes the encoder for every "
                       f"update, on every window.")
        return dataset
    return CachedStates(dataset, cfg.stefaland_cache_stride, cfg.seq_length, DTYPES[cfg.stefaland_cache_dtype])


def cache_refusal(cfg: Config) -> str | None:
    """Why a finetuning run cannot train on cached encoder states; None when it can."""
    modules = cfg.finetune_modules
    parts = list(modules) if isinstance(modules, (list, dict)) else [modules]
    trained = [part for part in ('tokens', 'encoder') if part in parts]
    if trained:
        return f"finetune_modules={modules} trains {trained}, whose output changes with every update"
    for key in RANDOM_INPUT_KEYS:
        if getattr(cfg, key):
            return f"{key}={getattr(cfg, key)} hides random inputs at every draw of a window"
    return None


def grid_windows(dataset: BaseDataset, stride: int, seq_length: int) -> list[int]:
    """Items of NH's training ``dataset`` whose window ends on the grid: every ``stride`` days from a basin's first
    possible window end (the day with ``seq_length`` days of data up to it), missing windows left out."""
    return [item for item, (_, indices) in dataset.lookup_table.items()
            if (indices[0] - (seq_length - 1)) % stride == 0]


class CachedStates(Dataset):
    """NH's training dataset restricted to the grid windows; each sample also holds its window's encoder states.

    Its length is NH's dataset's: item ``i`` is grid window ``i mod N``, so a shuffled epoch has as many updates as
    NH's and draws each of the N grid windows equally often (±1).

    Parameters
    ----------
    dataset : BaseDataset
        NH's training dataset (one item per valid window end).
    stride : int
        Days between the ends of the kept windows (``stefaland_cache_stride``).
    seq_length : int
        Window length T.
    dtype : torch.dtype
        Storage precision of the states.
    """

    def __init__(self, dataset: BaseDataset, stride: int, seq_length: int, dtype: torch.dtype):
        self.dataset = dataset
        self.stride, self.dtype = stride, dtype
        self.windows = grid_windows(dataset, stride, seq_length)  # NH items, in the order of the cache's rows
        self.states: torch.Tensor | None = None  # [N, T+1, D] once filled

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: int) -> dict:
        """NH's sample of grid window ``item mod N`` plus its ``encoder_states`` [T+1, D] (a copy, so that loader
        workers send a small tensor, not the cache)."""
        row = item % len(self.windows)
        sample = self.dataset[self.windows[row]]
        sample['encoder_states'] = self.states[row].clone()
        return sample

    def __getattr__(self, name: str):
        """Everything else (``collate_fn``, ``scaler``, …) is NH's dataset's."""
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def fill(self, model: torch.nn.Module, device: torch.device, cfg: Config, disable_pbar: bool) -> None:
        """Run the frozen tokens and encoder once over every grid window and keep their states.

        Parameters
        ----------
        model : torch.nn.Module
            The finetuning StefaLand, loaded and frozen.
        device : torch.device
            The training device.
        cfg : Config
            The run configuration (batch size, workers, budget for the log).
        disable_pbar : bool
            No progress bar (NH: ``verbose: 0``).
        """
        assert not any(p.requires_grad for part in (model.tokens, model.encoder) for p in part.parameters())
        shape = (len(self.windows), cfg.seq_length + 1, model.settings.d_model)
        window = shape[1] * shape[2] * self.dtype.itemsize
        LOGGER.info(f"Caching the frozen encoder's states of {shape[0]} training windows (ends every {self.stride} "
                    f"days; NH's dataset has {len(self.dataset)}): {' × '.join(map(str, shape))} in "
                    f"{str(self.dtype).removeprefix('torch.')} = {_size(shape[0] * window)} in memory, "
                    f"{_size(365 / self.stride * window)} per basin-year. {_budget(cfg, len(self), shape[0])}")
        self.states = torch.empty(shape, dtype=self.dtype)
        loader = DataLoader(Subset(self.dataset, self.windows), batch_size=cfg.batch_size,
                            num_workers=cfg.num_workers, collate_fn=self.dataset.collate_fn)
        was_training, start = model.training, 0
        model.eval()
        with torch.no_grad():
            for data in tqdm(loader, file=sys.stdout, disable=disable_pbar, desc='# Caching encoder states'):
                states = model.encode(_inputs_on(data, device))  # [b, T+1, D]
                self.states[start:start + len(states)] = states.to('cpu', self.dtype)
                start += len(states)
        model.train(was_training)


def _budget(cfg: Config, epoch: int, windows: int) -> str:
    """How often the run draws each of the ``windows`` cached windows, judged by its epochs, updates per epoch (at
    most an ``epoch`` of draws) and batch size."""
    updates = -(-epoch // cfg.batch_size)
    if cfg.max_updates_per_epoch is not None:
        updates = min(updates, cfg.max_updates_per_epoch)
    drawn = cfg.epochs * updates * cfg.batch_size
    note = (" (fewer draws than cached windows: computing the cache costs more encoder passes than it saves)"
            if drawn < windows else "")
    return f"The run draws {drawn} windows, {drawn / windows:.1f} per cached window{note}."


def _size(size: float) -> str:
    return f"{size / 2 ** 30:.2f} GiB" if size >= 2 ** 30 else f"{size / 2 ** 20:.1f} MiB"


def _inputs_on(data: dict, device: torch.device) -> dict:
    """The inputs of an NH batch (``x_d``, ``x_s``) on ``device``."""
    return {key: {name: v.to(device) for name, v in value.items()} if key == 'x_d' else value.to(device)
            for key, value in data.items() if key in ('x_d', 'x_s')}
