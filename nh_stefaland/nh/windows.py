"""Each basin's data of a period as NH evaluation datasets and non-overlapping windows, and seeded evaluation masks."""
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Subset

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.utils.config import Config
from neuralhydrology.utils.errors import NoEvaluationDataError

from nh_stefaland.nh.normalisation import with_placeholder_targets


def basin_dataset(cfg: Config, basin: str, period: str, scaler: dict) -> BaseDataset | None:
    """One basin's evaluation dataset of ``period`` (one window per day), or None when it has no data.

    ``scaler`` is the run's; a pretraining run's has no target statistics, and its targets (never read) are
    normalised with centre 0 and scale 1.
    """
    try:
        return get_dataset(cfg=cfg, is_train=False, period=period, basin=basin,
                           scaler=with_placeholder_targets(cfg, scaler))
    except NoEvaluationDataError:
        return None


def window_batches(dataset: BaseDataset, seq_length: int, batch_size: int,
                   device: torch.device) -> Iterator[dict]:
    """Batches of non-overlapping windows on ``device``: the last window ends on the period's last day and the
    windows before it step back ``seq_length`` days, so every day of the period is in exactly one window."""
    ends = list(range(len(dataset) - 1, -1, -seq_length))[::-1]
    loader = DataLoader(Subset(dataset, ends), batch_size=batch_size, collate_fn=dataset.collate_fn)
    for data in loader:
        yield {key: ({k: v.to(device) for k, v in value.items()} if key.startswith('x_d') else
                     value if key.startswith('date') else value.to(device)) for key, value in data.items()}


def mask_generator(seed: int | None, device: torch.device) -> torch.Generator:
    """Random source for evaluation masks on ``device``, seeded with the run's ``seed``: the same masks each time."""
    return torch.Generator(device=device).manual_seed(seed if seed is not None else 0)
