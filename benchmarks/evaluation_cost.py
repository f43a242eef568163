"""Evaluation cost: one StefaLand run evaluated on the same basins by NH's tester and by the strided tester."""
import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neuralhydrology.evaluation.metrics import calculate_metrics
from neuralhydrology.evaluation.tester import RegressionTester
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.strided_tester import StridedRegressionTester

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / 'basin_configs' / 'camels_stefaland.yml'


@dataclass(frozen=True)
class EvaluationSetup:
    """Model size, window (= stride), training and test basins (the first of the sample's list), test period,
    evaluation batch size, and the short training (``updates`` batches of ``train_batch`` windows) of the run."""
    model: dict
    seq_length: int
    train_basins: int
    test_basins: int
    test_start: str
    test_end: str
    batch: int
    train_batch: int
    updates: int


def compare_testers(setup: EvaluationSetup, device: str) -> dict:
    """Train a short StefaLand run on the shipped sample, then time NH's tester and the strided one on its test period.

    Returns seconds, windows and median metrics of both; ``NSE_strided_on_nh_days`` scores the strided series on the
    days NH's tester scores (NH starts scoring ``predict_last_n`` - 1 days into the period).
    """
    with tempfile.TemporaryDirectory() as run_root:
        cfg = _config(setup, Path(run_root), device)
        _quietly(start_training, cfg)
        cfg.update_config({'batch_size': setup.batch})
        nh, nh_s = _evaluate(RegressionTester, cfg)
        strided, strided_s = _evaluate(StridedRegressionTester, cfg)
    target = cfg.target_variables[0]
    nse_on_nh_days = [_nse_on_dates(strided[basin], nh[basin], target) for basin in nh]
    return {'basins': sorted(nh), 'test_period': [setup.test_start, setup.test_end],
            'seq_length': setup.seq_length, 'predict_last_n': setup.seq_length,
            'nh_tester_s': nh_s, 'strided_tester_s': strided_s, 'speedup': nh_s / strided_s,
            'nh_windows': sum(len(result['1D']['xr']['date']) for result in nh.values()),
            'strided_windows': sum(_strided_windows(result, setup.seq_length) for result in strided.values()),
            'NSE_nh_median': _median(nh, 'NSE'), 'NSE_strided_median': _median(strided, 'NSE'),
            'NSE_strided_on_nh_days_median': float(np.nanmedian(nse_on_nh_days)),
            'KGE_nh_median': _median(nh, 'KGE'), 'KGE_strided_median': _median(strided, 'KGE')}


def _config(setup: EvaluationSetup, run_root: Path, device: str) -> Config:
    cfg = Config(QUICKSTART)
    basins = (ROOT / cfg.train_basin_file).read_text().split()
    train_file, test_file = run_root / 'train_basins.txt', run_root / 'test_basins.txt'
    train_file.write_text('\n'.join(basins[:setup.train_basins]) + '\n')
    test_file.write_text('\n'.join(basins[:setup.test_basins]) + '\n')
    cfg.update_config({'data_dir': ROOT / cfg.data_dir, 'train_basin_file': train_file,
                       'validation_basin_file': test_file, 'test_basin_file': test_file, 'run_dir': run_root,
                       'test_start_date': pd.Timestamp(setup.test_start), 'test_end_date': pd.Timestamp(setup.test_end),
                       'seq_length': setup.seq_length, 'predict_last_n': setup.seq_length, 'batch_size': setup.train_batch,
                       'epochs': 1, 'max_updates_per_epoch': setup.updates, 'validate_every': None,
                       'metrics': ['NSE', 'KGE'], 'device': device, 'verbose': 0, **setup.model})
    return cfg


def _evaluate(tester_class: type, cfg: Config) -> tuple[dict, float]:
    tester = tester_class(cfg=cfg, run_dir=cfg.run_dir, period='test', init_model=True)
    start = time.perf_counter()
    results = _quietly(tester.evaluate, epoch=1, save_results=False, metrics=cfg.metrics)
    return results, time.perf_counter() - start


def _quietly(function, *args, **kwargs):
    """Call with stdout captured and the log handlers NH's trainer adds removed afterwards."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return function(*args, **kwargs)
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)


def _nse_on_dates(strided: dict, nh: dict, target: str) -> float:
    nh_xr, strided_xr = nh['1D']['xr'], strided['1D']['xr']
    days = strided_xr.sel(date=nh_xr['date'])
    return calculate_metrics(days[f'{target}_obs'].isel(time_step=-1), days[f'{target}_sim'].isel(time_step=-1),
                             metrics=['NSE'], resolution='1D')['NSE']


def _strided_windows(result: dict, predict_last_n: int) -> int:
    """Windows the strided tester ran for one basin: one per ``predict_last_n`` days, plus one for a remainder."""
    return -(-len(result['1D']['xr']['date']) // predict_last_n)


def _median(results: dict, metric: str) -> float:
    return float(np.nanmedian([result['1D'][metric] for result in results.values()]))
