"""Reading a trained run back: its config, its model at an epoch and its scaler."""
import logging
from pathlib import Path

import torch

from neuralhydrology.datautils.utils import load_scaler
from neuralhydrology.modelzoo import get_model
from neuralhydrology.utils.config import Config

LOGGER = logging.getLogger(__name__)


def load_run(run_dir: Path | str, epoch: int | None = None) -> tuple[Config, torch.nn.Module, dict, int]:
    """The run's config, its model in eval mode with the weights of ``epoch`` (default: the last), scaler and epoch.

    ``run_dir`` may also name a shipped pretrained encoder, ``stefaland:<name>``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` has no config.yml or no checkpoint of the requested epoch.
    """
    import nh_stefaland
    from nh_stefaland import pretrained

    nh_stefaland.register()
    run_dir = pretrained.resolve(run_dir)
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
