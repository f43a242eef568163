"""Reading a trained run back: config, model at an epoch, scaler, and each basin's data as non-overlapping windows."""
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Subset

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.datautils.utils import load_scaler
from neuralhydrology.modelzoo import get_model
from neuralhydrology.utils.config import Config
from neuralhydrology.utils.errors import NoEvaluationDataError

LOGGER = logging.getLogger(__name__)


def load_run(run_dir: Path, epoch: int | None = None) -> tuple[Config, torch.nn.Module, dict, int]:
    """The run's config, its model in eval mode with the weights of ``epoch`` (default: the last), scaler and epoch.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no config.yml or no checkpoint of the requested epoch.
    """
    import nh_stefaland

    nh_stefaland.register()
    if not (run_dir / 'config.yml').is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yml: it is not a NeuralHydrology run directory.")
    cfg = Config(run_dir / 'config.yml')
    checkpoints = sorted(run_dir.glob('model_epoch*.pt'))
    weights = run_dir / f'model_epoch{epoch:03d}.pt' if epoch is not None else (checkpoints or [None])[-1]
    if weights is None or not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint {weights.name if weights else 'model_epoch*.pt'}.")
    device = torch.device(cfg.device if cfg.device and (not cfg.device.startswith('cuda')
                                                        or torch.cuda.is_available()) else 'cpu')
    model = get_model(cfg).to(device)
    model.load_state_dict(torch.load(weights, map_location=device))
    LOGGER.info(f"Loaded {weights}")
    return cfg, model.eval(), load_scaler(run_dir), int(weights.stem[-3:])


def basin_dataset(cfg: Config, basin: str, period: str, scaler: dict) -> BaseDataset | None:
    """One basin's evaluation dataset of ``period`` (one window per day), or None when it has no data."""
    try:
        return get_dataset(cfg=cfg, is_train=False, period=period, basin=basin, scaler=scaler)
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
