"""Training and evaluating one model stage on one fold (a task), resumable through its status file."""
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from neuralhydrology.evaluation import evaluate as nh_evaluate
from neuralhydrology.training import train as nh_train
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.tools.pub import epochs, leakage as pub_leakage, workers
from nh_stefaland.tools.pub import files as pub_files
from nh_stefaland.tools.pub.report import EPOCH_FILE, REPORT_METRICS, STATUS_FILE, read_epoch_choice, read_status

LOGGER = logging.getLogger(__name__)

LOG_FILE = 'pub.log'


@dataclass(frozen=True)
class Task:
    """One training stage of one model, on one fold or shared by all folds, kept in its own directory.

    Attributes
    ----------
    label : str
        The model label (``--model LABEL=CONFIG``).
    name : str
        ``fold_NN``, ``fold_NN_pretrain`` or ``pretrain`` (one pretraining shared by all folds); ``_seed_KK``
        after ``fold_NN`` or before ``_pretrain`` for the K-th extra seed.
    directory : Path
        Holds ``status.json``, ``pub.log`` and the NH run folder that training creates.
    config_file : Path
        The stage's config (for a finetuning stage: the settings laid over the pretraining run's config).
    basin_files : dict[str, Path]
        ``train``, ``validation`` and ``test`` basin files of the stage.
    held_out : frozenset[str]
        Basins whose streamflow this stage must never train on.
    fingerprint : str
        Hash of everything that defines the stage; a finished stage with another fingerprint is not reused.
    base : Task | None
        The pretraining stage this stage finetunes.
    data_dir : Path | None
        ``--data-dir``: the dataset folder, in place of the config's ``data_dir``.
    evaluate : bool
        Evaluate the trained model on the test period (final stages).
    seed : int
        Added to the config's ``seed`` (0: the config's own seed).
    epoch_basin_file : Path | None
        With ``--epoch best``: the training basins on which the epoch is chosen (None: the last epoch).
    """
    label: str
    name: str
    directory: Path
    config_file: Path
    basin_files: dict[str, Path]
    held_out: frozenset[str]
    fingerprint: str
    base: 'Task | None' = None
    data_dir: Path | None = None
    evaluate: bool = True
    seed: int = 0
    epoch_basin_file: Path | None = None


def is_finished(task: Task) -> bool:
    """Whether the task finished earlier with the same fingerprint (and left its metrics, if it evaluates, and its
    epoch choice on the same basins, with ``--epoch best``).

    Raises
    ------
    ValueError
        If it finished with another fingerprint: its config, basins or pretraining changed since.
    """
    return _is_trained(task) and (task.epoch_basin_file is None or _has_epoch_choice(task))


def _is_trained(task: Task) -> bool:
    status = read_status(task.directory)
    if status is None or status['state'] != 'done':
        return False
    if status['fingerprint'] != task.fingerprint:
        raise ValueError(f"Model '{task.label}' {task.name} in {task.directory} was run with another config, fold or "
                         f"pretraining setting. Use a new --output-dir or a new label, or delete that folder.")
    return not task.evaluate or (task.directory / status.get('metrics_file', '')).is_file()


def _has_epoch_choice(task: Task) -> bool:
    choice = read_epoch_choice(task.directory)
    return (choice is not None and choice['basin_file_sha'] == epochs.file_sha(task.epoch_basin_file)
            and (task.directory / choice['metrics_file']).is_file())


def run_task(task: Task) -> dict:
    """Train (and evaluate) one task in this process; writes its log and status, and never raises.

    The task holds its lock (``DIR/locks/LABEL/NAME.lock``) while it runs: another pub process on the same
    output directory that needs it (a shared pretraining) waits, then reuses it. A task trained earlier that lacks
    only its ``--epoch best`` choice keeps its training and gets the choice.
    """
    with pub_files.locked(pub_files.run_lock(task.directory)):
        try:
            if is_finished(task):  # by another pub process, while this one waited
                return read_status(task.directory)
        except ValueError as error:
            return {'state': 'failed', 'error': str(error), 'label': task.label, 'name': task.name, 'log': LOG_FILE}
        return _run_locked(task)


def write_status(task: Task, status: dict, log_file: Path) -> dict:
    """Write the task's status; its paths are relative to the task directory, so output folders can move."""
    status.update(label=task.label, name=task.name, fingerprint=task.fingerprint, log=log_file)
    for key in ('run_dir', 'metrics_file', 'log'):
        if key in status:
            status[key] = os.path.relpath(status[key], task.directory)
    task.directory.mkdir(parents=True, exist_ok=True)
    pub_files.write_text(task.directory / STATUS_FILE, json.dumps(status, indent=1))
    return status


def _run_locked(task: Task) -> dict:
    if task.epoch_basin_file is not None and _is_trained(task):
        return _choose_epoch(task)
    if task.directory.exists():
        shutil.rmtree(task.directory)
    task.directory.mkdir(parents=True)
    log_file = task.directory / LOG_FILE
    start = time.perf_counter()
    with _output_to(log_file):
        try:
            status = _train_and_evaluate(task)
        except Exception as error:  # a failed fold is reported; the other folds go on
            LOGGER.exception(f"Model '{task.label}' {task.name} failed.")
            status = {'state': 'failed', 'error': f"{type(error).__name__}: {error}"}
    status['seconds'] = round(time.perf_counter() - start, 1)
    if 'run_dir' in status:  # NH opened its output.log but logged here: give the run its log
        shutil.copyfile(log_file, Path(status['run_dir']) / 'output.log')
    return write_status(task, status, log_file)


def _train_and_evaluate(task: Task) -> dict:
    cfg = _stage_config(task)
    pub_leakage.check_training_basins(cfg, task.held_out, task.label)
    nh_train.start_training(cfg)  # through the module, so that registration's wrapper is used
    status = {'state': 'done', 'run_dir': str(cfg.run_dir), 'target': cfg.target_variables[0]}  # NH set run_dir
    if task.evaluate:
        status['metrics_file'] = str(_evaluate(cfg.run_dir))
    if task.epoch_basin_file is not None:
        choice = epochs.choose_epoch(cfg.run_dir, task.epoch_basin_file, _report_metrics(cfg))
        epochs.write_choice(task.directory, choice, EPOCH_FILE)
    return status


def _choose_epoch(task: Task) -> dict:
    """The epoch choice of a trained task, logged to its own file; the status of the task as it was."""
    status = read_status(task.directory)
    log_file = task.directory / 'epoch.log'
    with _output_to(log_file):
        try:
            run_dir = (task.directory / status['run_dir']).resolve()
            metrics = _report_metrics(Config(run_dir / 'config.yml'))
            choice = epochs.choose_epoch(run_dir, task.epoch_basin_file, metrics)
            epochs.write_choice(task.directory, choice, EPOCH_FILE)
        except Exception as error:  # reported like a failed run; the other runs go on
            LOGGER.exception(f"Model '{task.label}' {task.name}: choosing the epoch failed.")
            return {**status, 'state': 'failed', 'error': f"epoch choice: {type(error).__name__}: {error}",
                    'log': os.path.relpath(log_file, task.directory)}
    return status


def _stage_config(task: Task) -> Config:
    """The stage's config: its file, or the pretraining run's config with the finetuning file laid over it."""
    if task.base is not None:
        cfg = _finetune_config(task, (task.base.directory / read_status(task.base.directory)['run_dir']).resolve())
    else:
        cfg = Config(task.config_file)
        if pretrained.is_name(cfg.as_dict().get('base_run_dir')):
            cfg = _finetune_config(task, cfg.as_dict()['base_run_dir'])
        else:
            cfg.update_config(_data_dir(task))
    if task.seed:
        cfg.update_config({'seed': cfg.seed + task.seed})
    cfg.update_config(workers.device_setting())
    cfg.update_config({'run_dir': task.directory, 'experiment_name': f'{task.label}_{task.name}',
                       'train_basin_file': task.basin_files['train'],
                       'validation_basin_file': task.basin_files['validation'],
                       'test_basin_file': task.basin_files['test']})
    return cfg


def _finetune_config(task: Task, base_run: Path) -> Config:
    """NH's ``nh-run finetune`` config, with ``base_run_dir`` set to this fold's pretraining (or a shipped encoder,
    ``stefaland:<name>``)."""
    cfg = Config(pretrained.resolve(base_run) / 'config.yml')
    cfg.update_config({'run_dir': None, 'experiment_name': None})
    cfg.update_config(task.config_file)
    cfg.update_config(_data_dir(task))
    cfg.is_finetuning = True
    cfg.is_continue_training = False
    cfg.base_run_dir = base_run
    return cfg


def _data_dir(task: Task) -> dict:
    """The ``data_dir`` setting of ``--data-dir`` (empty without it: the config's own)."""
    return {} if task.data_dir is None else {'data_dir': task.data_dir}


def _evaluate(run_dir: Path) -> Path:
    """NH's test evaluation of the last epoch, with :data:`REPORT_METRICS` added; returns the metrics file."""
    cfg = Config(run_dir / 'config.yml')
    cfg.metrics = _report_metrics(cfg)
    nh_evaluate.start_evaluation(cfg=cfg, run_dir=run_dir, epoch=None, period='test')
    metrics_files = sorted((run_dir / 'test').glob('model_epoch*/test_metrics.csv'))
    if not metrics_files:
        raise FileNotFoundError(f"The test evaluation of {run_dir} wrote no test_metrics.csv (is the model a "
                                f"pretraining stage, or was no held-out basin evaluable?).")
    return metrics_files[-1]


def _report_metrics(cfg: Config) -> list[str] | dict[str, list[str]]:
    """The config's metrics with :data:`REPORT_METRICS` added (per target, if given per target)."""
    if isinstance(cfg.metrics, dict):
        return {target: _with_report_metrics(names) for target, names in cfg.metrics.items()}
    return _with_report_metrics(cfg.metrics)


def _with_report_metrics(names: list[str]) -> list[str]:
    return names if 'all' in names else list(names) + [m for m in REPORT_METRICS if m not in names]


@contextmanager
def _output_to(log_file: Path) -> Iterator[None]:
    """Send this process's logging, stdout and stderr (NH's progress bars) to ``log_file`` for one task."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, sys.excepthook  # NH's setup_logging replaces the excepthook
    with log_file.open('w') as stream, redirect_stdout(stream), redirect_stderr(stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter('%(asctime)s: %(message)s'))
        root.handlers = [handler]  # NH's setup_logging (logging.basicConfig) then adds nothing
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            sys.stdout.flush()
            root.handlers, sys.excepthook = saved[0], saved[2]
            root.setLevel(saved[1])
