"""Strided evaluation: one window per ``predict_last_n`` days instead of one per day, stitched into a daily series.

NH's tester runs one full window per day of the period and keeps its last ``predict_last_n`` = P steps. A model that
is trained to predict all P of those steps needs only every P-th window: windows ending P days apart cover the
period once, and a last window ending on the final day covers the remainder. The testers below reuse NH's
``evaluate`` unchanged (result files, metrics, validation during training); they only hand it fewer windows and
turn the windows' P predictions into one prediction per day.
"""
import logging
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.evaluation.tester import BaseTester, RegressionTester, UncertaintyTester
from neuralhydrology.modelzoo.basemodel import BaseModel
from neuralhydrology.utils.config import Config

LOGGER = logging.getLogger(__name__)


def strides_evaluation(cfg: Config) -> bool:
    """Whether evaluating this (StefaLand) run strides windows by ``predict_last_n``.

    It does when ``stefaland_strided_evaluation`` is on and the model predicts more than one step per window
    (``predict_last_n`` > 1, a single frequency); otherwise NH's one-window-per-day tester is the same or required.
    """
    predict_last_n = cfg.predict_last_n
    return bool(cfg.stefaland_strided_evaluation) and isinstance(predict_last_n, int) and predict_last_n > 1


def get_tester(cfg: Config, run_dir: Path, period: str, init_model: bool) -> BaseTester:
    """The strided variant of the tester NH picks for the run's head (regression, or gmm/cmal/umal/MC-dropout)."""
    sampled = cfg.mc_dropout or cfg.head.lower() in ('gmm', 'cmal', 'umal')
    tester_class = StridedUncertaintyTester if sampled else StridedRegressionTester
    return tester_class(cfg=cfg, run_dir=run_dir, period=period, init_model=init_model)


def covering_windows(ends: np.ndarray, span: int) -> np.ndarray:
    """Fewest windows whose last ``span`` steps cover every step that the last ``span`` steps of any window cover.

    Parameters
    ----------
    ends : np.ndarray
        Ascending index of each available window's last step.
    span : int
        Steps predicted per window (``predict_last_n``).

    Returns
    -------
    np.ndarray
        Ascending positions into ``ends`` of the chosen windows: for contiguous ends every ``span``-th window,
        plus the last one.
    """
    chosen = []
    position = 0
    while position < len(ends):
        first_uncovered = ends[position] - span + 1
        if chosen:
            first_uncovered = max(first_uncovered, ends[chosen[-1]] + 1)
        # the window reaching furthest ahead whose predicted steps still start at or before the first uncovered step
        position = int(np.searchsorted(ends, first_uncovered + span - 1, side='right')) - 1
        chosen.append(position)
        position += 1
    return np.array(chosen, dtype=np.int64)


def stitch_windows(values: np.ndarray, dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One value per date from overlapping windows, keeping the earliest window's value for a date seen twice.

    Parameters
    ----------
    values : np.ndarray
        Per-window values [W, P, ...] (predictions, samples or observations).
    dates : np.ndarray
        Date of each value [W, P].

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        Values [N, 1, ...] and their ascending, unique dates [N, 1]: the layout NH's tester builds for
        ``predict_last_n`` = 1, so that its result ``xarray`` has one row per day and ``time_step`` = [0].
    """
    flat_dates = dates.reshape(-1)  # [W·P]
    unique_dates, first = np.unique(flat_dates, return_index=True)
    flat_values = values.reshape(-1, *values.shape[2:])  # [W·P, ...]
    return flat_values[first][:, np.newaxis], unique_dates[:, np.newaxis]


class StridedWindows(Dataset):
    """The windows of one basin's NH evaluation dataset that cover its period once (see :func:`covering_windows`).

    Parameters
    ----------
    dataset : BaseDataset
        NH's evaluation dataset of one basin (one window per day).
    stride : int
        Steps predicted per window (``predict_last_n``).
    """

    def __init__(self, dataset: BaseDataset, stride: int):
        super().__init__()
        self.dataset = dataset
        self.frequencies = dataset.frequencies
        self.collate_fn = dataset.collate_fn
        ends = np.array([indices[0] for _, indices in dataset.lookup_table.values()])
        self.positions = covering_windows(ends, stride)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, item: int) -> dict:
        return self.dataset[int(self.positions[item])]


class _StridedEvaluation:
    """Tester mixin: strided windows in, one prediction per day out; everything else is NH's tester.

    NH's ``evaluate`` reads ``predict_last_n`` again after each basin's forward passes, to lay out and score the
    predictions. The stitched series have the layout of ``predict_last_n`` = 1 (one value per day), so for that part
    the config says 1; otherwise NH would announce "metrics over the last 1 element only, ignoring P−1 predictions",
    which is not what happens: every day is scored once. The run's value is restored whenever NH reads windows.
    """

    def __init__(self, cfg: Config, run_dir: Path, period: str = 'test', init_model: bool = True):
        super().__init__(cfg, run_dir, period, init_model)
        self._stride = cfg.predict_last_n
        LOGGER.info(f"Evaluating the {period} period with one window per predict_last_n={cfg.predict_last_n} days, "
                    f"each day predicted once (stefaland_strided_evaluation).")

    def evaluate(self, *args, **kwargs) -> dict:
        """NH's ``evaluate`` (same arguments and results); the config keeps its ``predict_last_n`` afterwards."""
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._set_predict_last_n(self._stride)

    def _get_dataset(self, basin: str) -> StridedWindows:
        self._set_predict_last_n(self._stride)
        return StridedWindows(super()._get_dataset(basin), stride=self._stride)

    def _evaluate(self, model: BaseModel, loader: DataLoader, frequencies: list[str], save_all_output: bool = False):
        """NH's ``_evaluate`` over the strided windows; predictions, observations and dates stitched per day.

        The per-window losses and the optional ``all_output`` (one row per strided window) are passed on as they are.
        """
        self._set_predict_last_n(self._stride)
        predictions, observations, dates, losses, all_output = super()._evaluate(model, loader, frequencies,
                                                                                save_all_output)
        for freq in predictions:
            predictions[freq], stitched_dates = stitch_windows(predictions[freq], dates[freq])
            observations[freq], _ = stitch_windows(observations[freq], dates[freq])
            dates[freq] = stitched_dates
        self._set_predict_last_n(1)  # what NH reads next lays out and scores the stitched, daily series
        return predictions, observations, dates, losses, all_output

    def _set_predict_last_n(self, value: int) -> None:
        self.cfg.as_dict()['predict_last_n'] = value


class StridedRegressionTester(_StridedEvaluation, RegressionTester):
    """NH's ``RegressionTester`` with strided windows (see module docstring)."""


class StridedUncertaintyTester(_StridedEvaluation, UncertaintyTester):
    """NH's ``UncertaintyTester`` (sampled heads, MC-dropout) with strided windows (see module docstring)."""
