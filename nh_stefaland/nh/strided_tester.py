"""Strided evaluation: one window per ``predict_last_n`` days instead of one per day, stitched into a daily series.

NH's tester runs one full window per day of the period and keeps its last ``predict_last_n`` = P steps. A model that
is trained to predict all P of those steps needs only every P-th window: windows ending P days apart cover the
period once, and a last window ending on the final day covers the remainder. A window holds ``seq_length`` = T steps,
so with P > T the windows end T days apart. The testers below reuse NH's ``evaluate`` unchanged (result files,
metrics, validation during training); they only hand it fewer windows and turn the windows' predictions into one
prediction per day.
"""
import copy
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neuralhydrology.datasetzoo import get_dataset
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

    The tester keeps its own window length, ``window`` = min(``predict_last_n``, ``seq_length``): the steps each
    window predicts (a window has no more than ``seq_length`` steps, so windows further apart would leave days
    unpredicted). NH's ``evaluate`` lays out and scores the series of every basin after reading ``predict_last_n``
    from the tester's config; the stitched series have the layout of ``predict_last_n`` = 1 (one value per day), so the
    tester reads from a copy of the run's config that says 1 (NH would otherwise announce "metrics over the last 1
    element only, ignoring P−1 predictions", which is not what happens: every day is scored once). The run's config,
    which the model, the loss, the datasets and the trainer read, is never changed.
    """

    def __init__(self, cfg: Config, run_dir: Path, period: str = 'test', init_model: bool = True):
        super().__init__(cfg, run_dir, period, init_model)
        self._run_cfg = cfg
        self.window = min(cfg.predict_last_n, cfg.seq_length)
        self.cfg = copy.deepcopy(cfg)
        self.cfg.update_config({'predict_last_n': 1})
        LOGGER.info(f"Evaluating the {period} period with one window per {self.window} days "
                    f"(predict_last_n={cfg.predict_last_n}, seq_length={cfg.seq_length}), each day predicted once "
                    f"(stefaland_strided_evaluation).")

    def _get_dataset(self, basin: str) -> StridedWindows:
        """The basin's windows, loaded as NH's tester loads them for the run's ``predict_last_n``, every
        ``window``-th kept."""
        dataset = get_dataset(cfg=self._run_cfg, is_train=False, period=self.period, basin=basin,
                              additional_features=self.additional_features, id_to_int=self.id_to_int,
                              scaler=self.scaler)
        return StridedWindows(dataset, stride=self.window)

    def _evaluate(self, model: BaseModel, loader: DataLoader, frequencies: list[str], save_all_output: bool = False):
        """NH's ``_evaluate`` over the strided windows, keeping the last ``window`` steps of each; predictions,
        observations and dates stitched per day.

        The mean losses per window and the optional ``all_output`` (one row per strided window) are NH's.
        """
        freq, = frequencies
        predictions, observations, dates, losses, all_output = [], [], [], [], {}
        with torch.no_grad():
            for data in loader:
                data = {key: ({k: v.to(self.device) for k, v in value.items()} if key.startswith('x_d') else
                              value if key.startswith('date') else value.to(self.device))
                        for key, value in data.items()}
                data = model.pre_model_hook(data, is_train=False)
                output, loss = self._get_predictions_and_loss(model, data)
                if save_all_output:
                    for key, value in output.items():
                        if value is not None and not isinstance(value, dict):
                            all_output.setdefault(key, []).append(value.detach().cpu().numpy())
                y_hat, y = self._subset_targets(model, data, output, self.window, '')
                predictions.append(y_hat.detach().cpu().numpy())  # [W, window, n_targets(, samples)]
                observations.append(y.cpu().numpy())
                dates.append(data['date'][:, -self.window:])
                losses.append(loss)
        values, stitched_dates = stitch_windows(np.concatenate(predictions), np.concatenate(dates))
        observed, _ = stitch_windows(np.concatenate(observations), np.concatenate(dates))
        all_output = {key: np.concatenate(parts) for key, parts in all_output.items()}
        return {freq: values}, {freq: observed}, {freq: stitched_dates}, _mean_losses(losses), all_output


class StridedRegressionTester(_StridedEvaluation, RegressionTester):
    """NH's ``RegressionTester`` with strided windows (see module docstring)."""


class StridedUncertaintyTester(_StridedEvaluation, UncertaintyTester):
    """NH's ``UncertaintyTester`` (sampled heads, MC-dropout) with strided windows (see module docstring)."""


def _mean_losses(losses: list[dict[str, float]]) -> dict[str, float]:
    """Each loss averaged over the windows, NaN ones left out (NaN when all are), as NH's tester does."""
    if not losses:
        return {'loss': np.nan}
    values = {name: np.array([loss[name] for loss in losses]) for name in losses[0]}
    return {name: np.nan if np.isnan(value).all() else float(np.nanmean(value)) for name, value in values.items()}
