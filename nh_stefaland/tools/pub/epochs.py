"""``pub --epoch best``: the epoch of a run with the best median NSE on its fold's training basins (validation period).

NeuralHydrology evaluates the last epoch and keeps no best checkpoint. Every saved epoch of a finished run is
evaluated over the config's validation period on a fixed, seeded subset of the fold's *training* basins; the epoch
with the highest median NSE (the earliest of ties) is then evaluated on the held-out basins. The held-out basins play
no part in the choice.
"""
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from neuralhydrology.datautils.utils import load_basin_file
from neuralhydrology.evaluation import evaluate as nh_evaluate
from neuralhydrology.utils.config import Config

from nh_stefaland.tools.pub import files as pub_files

LOGGER = logging.getLogger(__name__)


def choice_basins(train_basins: list[str], n_basins: int, seed: int | tuple[int, ...]) -> list[str]:
    """A seeded subset of ``n_basins`` training basins (all when there are fewer), in their original order."""
    if n_basins >= len(train_basins):
        return list(train_basins)
    chosen = set(np.random.default_rng(seed).choice(len(train_basins), size=n_basins, replace=False).tolist())
    return [basin for index, basin in enumerate(train_basins) if index in chosen]


def choose_epoch(run_dir: Path, basin_file: Path, test_metrics: list[str]) -> dict:
    """Validate every saved epoch of ``run_dir`` on ``basin_file``, then test the best one.

    Returns
    -------
    dict
        ``epoch`` (the chosen one), ``validation_median_nse`` {epoch: median NSE}, ``basin_file_sha`` (of the basins
        used) and ``metrics_file`` (the chosen epoch's test metrics).

    Raises
    ------
    FileNotFoundError
        If the run has no checkpoint, or no epoch gives a validation NSE.
    """
    epochs = sorted(int(path.stem[-3:]) for path in run_dir.glob('model_epoch*.pt'))
    if not epochs:
        raise FileNotFoundError(f"{run_dir} has no model_epoch*.pt checkpoint to choose from.")
    cfg = Config(run_dir / 'config.yml')
    cfg.update_config({'validation_basin_file': basin_file, 'metrics': ['NSE'],
                       'validate_n_random_basins': len(load_basin_file(basin_file))})
    scores = {}
    for epoch in epochs:
        nh_evaluate.start_evaluation(cfg=cfg, run_dir=run_dir, epoch=epoch, period='validation')
        metrics = pd.read_csv(run_dir / 'validation' / f'model_epoch{epoch:03d}' / 'validation_metrics.csv',
                              index_col=0)
        nse = metrics.filter(like='NSE').iloc[:, 0].to_numpy(dtype=float)
        scores[epoch] = float(np.median(nse[np.isfinite(nse)])) if np.isfinite(nse).any() else np.nan
    valid = {epoch: score for epoch, score in scores.items() if np.isfinite(score)}
    if not valid:
        raise FileNotFoundError(f"No epoch of {run_dir} has a validation NSE on {basin_file}.")
    best = max(valid, key=lambda epoch: (valid[epoch], -epoch))
    LOGGER.info(f"Epoch {best} chosen (median validation NSE on the training basins: "
                + ", ".join(f"{epoch}: {score:.3f}" for epoch, score in scores.items()) + ").")
    test_cfg = Config(run_dir / 'config.yml')
    test_cfg.update_config({'metrics': test_metrics})
    nh_evaluate.start_evaluation(cfg=test_cfg, run_dir=run_dir, epoch=best, period='test')
    return {'epoch': best, 'validation_median_nse': scores, 'basin_file_sha': file_sha(basin_file),
            'metrics_file': str(run_dir / 'test' / f'model_epoch{best:03d}' / 'test_metrics.csv')}


def file_sha(path: Path) -> str:
    """Short hash of a file's text: an epoch choice made on other basins is made again."""
    return hashlib.sha256(path.read_text().encode()).hexdigest()[:16]


def write_choice(directory: Path, choice: dict, file_name: str) -> None:
    """Keep the choice in the task directory, the metrics file relative to it."""
    choice = {**choice, 'metrics_file': os.path.relpath(choice['metrics_file'], directory)}
    pub_files.write_text(directory / file_name, json.dumps(choice, indent=1))
