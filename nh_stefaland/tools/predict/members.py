"""The trained runs of a prediction: given as run folders, or every fold × seed run of one model of a pub output."""
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from neuralhydrology.utils.config import Config

from nh_stefaland.tools.pub.report import FINAL_STAGE, read_epoch_choice, run_statuses

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """One trained run of an ensemble.

    Attributes
    ----------
    name : str
        Short name: the run folder's name, or ``<label>/fold_NN[_seed_KK]`` for a pub run.
    run_dir : Path
        The NH run folder.
    epoch : int
        The checkpoint's epoch.
    checkpoint : Path
        ``model_epochNNN.pt``.
    """
    name: str
    run_dir: Path
    epoch: int
    checkpoint: Path

    @property
    def config(self) -> Config:
        """The run's config as NH wrote it (a fresh copy each time)."""
        return Config(self.run_dir / 'config.yml')

    def sha256(self) -> str:
        """Checksum of the checkpoint."""
        return hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()


def from_run_dirs(run_dirs: list[Path], epoch: int | None = None) -> list[Member]:
    """Members from NH run folders, each at ``epoch`` (default: its last checkpoint).

    Raises
    ------
    FileNotFoundError
        If a folder is not an NH run or lacks the checkpoint.
    ValueError
        If a folder is given twice.
    """
    resolved = [Path(run_dir).resolve() for run_dir in run_dirs]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"--run-dir names a run twice: {[str(path) for path in run_dirs]}.")
    return [_member(run_dir.name, run_dir, epoch) for run_dir in resolved]


def from_pub_dir(pub_dir: Path, label: str | None, epoch: int | None = None) -> list[Member]:
    """Every finished fold × seed run of model ``label`` in a ``nh-stefaland pub`` output folder.

    Each was trained without the basins of its fold, so each is a valid predictor for a basin without a gauge. A run
    tested at a chosen epoch (``--epoch best``) keeps that epoch unless ``epoch`` is given.

    Raises
    ------
    FileNotFoundError
        If the folder holds no pub runs.
    ValueError
        If ``label`` is missing while the folder holds several models, names none of them, or has no finished run.
    """
    runs = [(directory, status) for directory, status in run_statuses(Path(pub_dir))
            if FINAL_STAGE.fullmatch(directory.name)]
    if not runs:
        raise FileNotFoundError(f"{pub_dir} holds no runs of nh-stefaland pub (no runs/<label>/fold_*/status.json).")
    labels = sorted({status['label'] for _, status in runs})
    if label is None and len(labels) > 1:
        raise ValueError(f"{pub_dir} holds the models {labels}: choose one with --label.")
    label = label or labels[0]
    if label not in labels:
        raise ValueError(f"--label {label}: {pub_dir} holds the models {labels}.")
    members, unfinished = [], []
    for directory, status in runs:
        if status['label'] != label:
            continue
        if status['state'] != 'done':
            unfinished.append(directory.name)
            continue
        choice = read_epoch_choice(directory)
        chosen = epoch if epoch is not None else (choice['epoch'] if choice else None)
        members.append(_member(f"{label}/{directory.name}", (directory / status['run_dir']).resolve(), chosen))
    if unfinished:
        LOGGER.warning(f"Model '{label}' of {pub_dir}: {len(unfinished)} runs are not finished and are left out: "
                       f"{unfinished}.")
    if not members:
        raise ValueError(f"Model '{label}' of {pub_dir} has no finished run.")
    return members


def _member(name: str, run_dir: Path, epoch: int | None) -> Member:
    if not (run_dir / 'config.yml').is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yml: it is not a NeuralHydrology run directory.")
    checkpoints = sorted(run_dir.glob('model_epoch*.pt'))
    checkpoint = run_dir / f'model_epoch{epoch:03d}.pt' if epoch is not None else (checkpoints or [None])[-1]
    if checkpoint is None or not checkpoint.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint {checkpoint.name if checkpoint else 'model_epoch*.pt'}.")
    return Member(name=name, run_dir=run_dir, epoch=int(checkpoint.stem[-3:]), checkpoint=checkpoint)
