"""One trained run over the basins and days of a prediction, through NH's datasets and (strided) testers.

The run's config is copied with the prediction's data folder, basins and period laid over it; nothing is written
into the run folder. NH's tester of the run's head (the strided one for StefaLand) computes the predictions in
physical units, without observations: a target variable in the data is ignored, and a basin without one gets NH's
all-NaN placeholder column. While the tester builds each basin's dataset, which inputs exist on which day is kept.
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.evaluation.tester import BaseTester, RegressionTester, UncertaintyTester
from neuralhydrology.utils.config import Config

from nh_stefaland.nh import strided_tester
from nh_stefaland.tools.predict.members import Member

LOGGER = logging.getLogger(__name__)

SAMPLED_HEADS = ('gmm', 'cmal', 'umal')


@dataclass
class Simulation:
    """What one run predicted.

    Attributes
    ----------
    flows : dict[str, xarray.DataArray]
        Per basin, the target in physical units over (date, sample): one sample for a point prediction, NH's samples
        for a probabilistic head or MC-dropout.
    available : dict[str, pd.DataFrame]
        Per basin, which of the run's dynamic inputs exist on each day (bool, date × variable).
    without_data : list[str]
        Basins for which NH found no data in the period.
    """
    flows: dict[str, xarray.DataArray] = field(default_factory=dict)
    available: dict[str, pd.DataFrame] = field(default_factory=dict)
    without_data: list[str] = field(default_factory=list)


def prediction_config(member: Member, basin_file: Path, start: pd.Timestamp, end: pd.Timestamp,
                      data_dir: Path | None, verbose: int) -> Config:
    """The run's config with the prediction's basins, test period and data folder laid over it.

    NH's one-window-per-day tester first scores the day ``predict_last_n`` − 1 after the period's start, so for it the
    period starts that much earlier; the strided tester predicts from the start.

    Raises
    ------
    ValueError
        If the run does not predict a target (a StefaLand pretraining run) or has several frequencies.
    """
    cfg = member.config
    raw = cfg.as_dict()
    if str(raw.get('model', '')).lower() == 'stefaland' and raw.get('stefaland_stage') == 'pretrain':
        raise ValueError(f"{member.run_dir} is a StefaLand pretraining run: it reconstructs inputs and predicts no "
                         f"streamflow. Finetune it first (docs/pretrain_finetune.md).")
    if len(cfg.use_frequencies) > 1:
        raise ValueError(f"{member.run_dir} predicts several frequencies {cfg.use_frequencies}; predict handles one.")
    if not _strided(cfg) and isinstance(cfg.predict_last_n, int) and cfg.predict_last_n > 1:
        start = start - pd.Timedelta(days=cfg.predict_last_n - 1)  # NH's tester first scores start + P − 1
    changes = {'test_basin_file': basin_file, 'test_start_date': start.strftime('%d/%m/%Y'),
               'test_end_date': end.strftime('%d/%m/%Y'), 'verbose': verbose}
    if data_dir is not None:
        changes['data_dir'] = data_dir
    cfg.update_config(changes)
    return cfg


def simulate(member: Member, cfg: Config) -> Simulation:
    """Predict every basin of ``cfg``'s test basin file over its test period with ``member``'s checkpoint."""
    tester = _tester_class(cfg)(cfg=cfg, run_dir=member.run_dir, period='test', init_model=True)
    results = tester.evaluate(epoch=member.epoch, save_results=False, metrics=[])
    target = cfg.target_variables[0]
    simulation = Simulation(available=tester.available)
    for basin in tester.basins:
        if basin not in results:
            simulation.without_data.append(basin)
            continue
        flows = results[basin][cfg.use_frequencies[0] if cfg.use_frequencies else '1D']['xr'][f'{target}_sim']
        flows = flows.sel(time_step=0, drop=True)
        if 'samples' not in flows.dims:
            flows = flows.expand_dims(samples=1, axis=-1)
        if target in cfg.clip_targets_to_zero:
            flows = flows.where(~(flows < 0), 0.0)
        simulation.flows[basin] = flows.transpose('date', 'samples')
    return simulation


def _tester_class(cfg: Config) -> type[BaseTester]:
    """NH's tester of the run's head (the strided one for StefaLand), recording the inputs' availability."""
    sampled = cfg.mc_dropout or cfg.head.lower() in SAMPLED_HEADS
    if _strided(cfg):
        base = strided_tester.StridedUncertaintyTester if sampled else strided_tester.StridedRegressionTester
    else:
        base = UncertaintyTester if sampled else RegressionTester
    return type(f'Predicting{base.__name__}', (_RecordsAvailability, base), {})


def _strided(cfg: Config) -> bool:
    return cfg.model.lower() == 'stefaland' and strided_tester.strides_evaluation(cfg)


class _RecordsAvailability:
    """Tester mixin: keeps, per basin, which dynamic inputs the dataset holds on each day."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.available: dict[str, pd.DataFrame] = {}

    def _get_dataset(self, basin: str):
        dataset = super()._get_dataset(basin)
        self.available[basin] = _availability(getattr(dataset, 'dataset', dataset), basin, self.cfg.dynamic_inputs)
        return dataset


def _availability(dataset: BaseDataset, basin: str, variables: list[str]) -> pd.DataFrame:
    """Bool (date × variable): the variable exists on that day (NH 1.13 keeps a basin's series in ``_x_d``)."""
    frequency = dataset.frequencies[0]
    series = dataset._x_d[basin][frequency]
    dates = pd.DatetimeIndex(np.asarray(dataset._dates[basin][frequency]))
    return pd.DataFrame({name: ~np.isnan(series[name].numpy().reshape(-1)) for name in variables}, index=dates)
