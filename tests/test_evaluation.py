"""Strided evaluation: NH's result files and dates, NH's observations, and NH's predictions where both run one window."""
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from neuralhydrology.evaluation import get_tester
from neuralhydrology.evaluation.evaluate import start_evaluation
from neuralhydrology.evaluation.tester import RegressionTester, UncertaintyTester
from neuralhydrology.training.train import start_training

from nh_stefaland.nh.strided_tester import (StridedRegressionTester, StridedUncertaintyTester, covering_windows,
                                     stitch_windows)

PREDICT_LAST_N = 10
# the sample's streamflow ends 2014-09-30 and its forcing 2014-12-31: the period has missing targets and inputs
# (StefaLand predicts NaN for the windows that reach past the forcing)
PERIOD = {'test_start_date': pd.Timestamp('2014-09-01'), 'test_end_date': pd.Timestamp('2015-01-31')}


class DayLocalModel(torch.nn.Module):
    """A model whose prediction for a day reads only that day's inputs, whatever the window around it."""

    def __init__(self, n_inputs: int):
        super().__init__()
        self.weight = torch.linspace(-1.0, 1.0, n_inputs)

    def pre_model_hook(self, data: dict, is_train: bool) -> dict:
        return data

    def forward(self, data: dict) -> dict[str, torch.Tensor]:
        inputs = torch.nan_to_num(torch.cat(list(data['x_d'].values()), dim=-1))  # [B, T, F]
        return {'y_hat': (inputs * self.weight).sum(dim=-1, keepdim=True)}  # [B, T, 1]


def _trained(get_config, **overrides):
    cfg = get_config('caravan_sample', predict_last_n=PREDICT_LAST_N, **PERIOD, **overrides)
    start_training(cfg)
    return cfg


def _daily(results: dict, basin: str, target: str) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    xr = results[basin]['1D']['xr']
    return pd.DatetimeIndex(xr['date'].values), xr[f'{target}_obs'].values, xr[f'{target}_sim'].values


def test_covering_windows_takes_every_span_th_window_and_the_last():
    ends = np.arange(29, 100)
    assert covering_windows(ends, 10).tolist() == [0, 10, 20, 30, 40, 50, 60, 70]
    assert covering_windows(ends, 1).tolist() == list(range(len(ends)))
    assert covering_windows(ends[:3], 10).tolist() == [0, 2]


@pytest.mark.parametrize('seed', range(5))
def test_covering_windows_cover_what_all_windows_cover(seed):
    generator = np.random.default_rng(seed)
    ends = np.sort(generator.choice(400, size=150, replace=False))
    span = int(generator.integers(2, 30))
    chosen = covering_windows(ends, span)

    def covered(selected):
        return set(np.concatenate([np.arange(end - span + 1, end + 1) for end in selected]))

    assert covered(ends[chosen]) == covered(ends)
    for left_out in range(len(chosen)):  # no chosen window is redundant
        assert covered(np.delete(ends[chosen], left_out)) != covered(ends)


def test_stitch_windows_keeps_one_value_per_day_from_the_earliest_window():
    dates = np.array([[0, 1, 2], [3, 4, 5], [4, 5, 6]]).astype('datetime64[D]')
    values = np.array([[0.0, 1.0, np.nan], [3.0, 4.0, 5.0], [40.0, 50.0, 6.0]])[..., np.newaxis]  # [W, P, 1]
    stitched, stitched_dates = stitch_windows(values, dates)
    assert stitched.shape == (7, 1, 1) and stitched_dates.shape == (7, 1)
    np.testing.assert_array_equal(stitched[:, 0, 0], [0.0, 1.0, np.nan, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(stitched_dates[:, 0], np.arange(7).astype('datetime64[D]'))


def test_strided_series_equals_nh_for_a_day_local_model(get_config):
    cfg = _trained(get_config)
    model = DayLocalModel(len(cfg.dynamic_inputs))
    evaluate = dict(model=model, save_results=False, metrics=['NSE'])
    nh = RegressionTester(cfg, cfg.run_dir, 'test', init_model=False).evaluate(**evaluate)
    strided = StridedRegressionTester(cfg, cfg.run_dir, 'test', init_model=False).evaluate(**evaluate)
    target = cfg.target_variables[0]
    for basin in nh:
        nh_dates, nh_obs, nh_sim = _daily(nh, basin, target)
        dates, obs, sim = _daily(strided, basin, target)
        assert dates.equals(pd.date_range(cfg.test_start_date, cfg.test_end_date))
        assert nh_dates[0] == cfg.test_start_date + pd.Timedelta(days=PREDICT_LAST_N - 1)
        shared = dates.isin(nh_dates)
        np.testing.assert_allclose(sim[shared, 0], nh_sim[:, -1], rtol=1e-6)
        np.testing.assert_array_equal(obs[shared, 0], nh_obs[:, -1])
        assert np.isnan(obs).any() and np.isfinite(sim).all()


def test_strided_stefaland_equals_nh_on_the_windows_both_run(get_config):
    cfg = _trained(get_config)
    nh = RegressionTester(cfg, cfg.run_dir, 'test').evaluate(epoch=1, save_results=False, metrics=['NSE'])
    strided = StridedRegressionTester(cfg, cfg.run_dir, 'test').evaluate(epoch=1, save_results=False, metrics=['NSE'])
    target = cfg.target_variables[0]
    for basin in nh:
        nh_xr = nh[basin]['1D']['xr']
        dates, obs, sim = _daily(strided, basin, target)
        window_ends = list(pd.DatetimeIndex(nh_xr['date'].values)[::PREDICT_LAST_N]) + [dates[-1]]
        for day, day_obs, day_sim in zip(dates, obs[:, 0], sim[:, 0]):
            end = next(end for end in window_ends if end >= day)  # the earliest strided window predicting the day
            nh_day = nh_xr.sel(date=end, time_step=(day - end).days)
            np.testing.assert_allclose(day_sim, nh_day[f'{target}_sim'].item(), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(day_obs, nh_day[f'{target}_obs'].item())
        assert np.isfinite(sim[dates < '2014-12-01']).all() and np.isfinite(strided[basin]['1D']['NSE'])
        assert np.isnan(sim[dates > '2014-12-31']).all()  # no forcing: no flow (the mask vectors are untrained)


def test_strided_evaluation_does_not_announce_ignored_predictions(get_config, capsys):
    cfg = _trained(get_config)
    capsys.readouterr()
    results = StridedRegressionTester(cfg, cfg.run_dir, 'test').evaluate(epoch=1, save_results=False,
                                                                          metrics=['NSE'])
    assert 'Ignoring' not in capsys.readouterr().out
    assert cfg.predict_last_n == PREDICT_LAST_N
    assert all(np.isfinite(results[basin]['1D']['NSE']) for basin in results)


def test_the_run_config_stays_as_it_is_while_the_strided_tester_evaluates(get_config):
    """The tester keeps its own window length: what NH (logger, model, trainer) reads from the run's config during
    and after the evaluation is the run's predict_last_n."""
    cfg = _trained(get_config)
    before = dict(cfg.as_dict())
    seen = []

    class Logger:
        def log_step(self, **values):
            seen.append(cfg.predict_last_n)

    model = DayLocalModel(len(cfg.dynamic_inputs))
    forward = model.forward
    model.forward = lambda data: (seen.append(cfg.predict_last_n), forward(data))[1]
    tester = StridedRegressionTester(cfg, cfg.run_dir, 'test', init_model=False)
    tester.evaluate(model=model, save_results=False, metrics=['NSE'], experiment_logger=Logger())
    assert len(seen) > 6 and set(seen) == {PREDICT_LAST_N}  # forward passes and log steps of 3 basins
    assert cfg.as_dict() == before and tester.window == PREDICT_LAST_N


def test_predict_last_n_beyond_seq_length_leaves_no_day_unpredicted(get_config):
    """With predict_last_n P > seq_length T a window predicts T days: windows T days apart, no gap, NH's values."""
    cfg = _trained(get_config)
    cfg.update_config({'predict_last_n': cfg.seq_length + 10})
    model = DayLocalModel(len(cfg.dynamic_inputs))
    evaluate = dict(model=model, save_results=False, metrics=['NSE'])
    nh = RegressionTester(cfg, cfg.run_dir, 'test', init_model=False).evaluate(**evaluate)
    strided = StridedRegressionTester(cfg, cfg.run_dir, 'test', init_model=False).evaluate(**evaluate)
    target = cfg.target_variables[0]
    for basin in nh:
        nh_dates, _, nh_sim = _daily(nh, basin, target)
        dates, _, sim = _daily(strided, basin, target)
        # NH loads T − P days of warm-up: with P > T the first window ends on test_start_date + P − 1
        assert nh_dates[0] == cfg.test_start_date + pd.Timedelta(days=cfg.predict_last_n - 1)
        assert dates.equals(pd.date_range(nh_dates[0] - pd.Timedelta(days=cfg.seq_length - 1), cfg.test_end_date))
        assert np.isfinite(sim).all()
        np.testing.assert_allclose(sim[dates.isin(nh_dates), 0], nh_sim[:, -1], rtol=1e-6)


# NH 1.13.0 samples UMAL for predict_last_n = 1 only (samplingutils.sample_umal), where NH's own tester runs anyway.
@pytest.mark.parametrize('head,loss,mc_dropout', [('regression', 'MSE', False), ('regression', 'MSE', True),
                                                  ('gmm', 'GMMLoss', False), ('cmal', 'CMALLoss', False)])
def test_every_nh_head_evaluates_strided_into_nh_result_files(get_config, head, loss, mc_dropout):
    cfg = _trained(get_config, head=head, loss=loss, n_distributions=2, n_samples=5,
                   negative_sample_handling='clip', mc_dropout=mc_dropout, output_dropout=0.1 if mc_dropout else 0.0,
                   validate_every=1, validate_n_random_basins=3)
    start_evaluation(cfg=cfg, run_dir=cfg.run_dir, epoch=1, period='test')
    results_dir = cfg.run_dir / 'test' / 'model_epoch001'
    with (results_dir / 'test_results.p').open('rb') as fp:
        results = pickle.load(fp)
    assert (results_dir / 'test_metrics.csv').exists()
    target = cfg.target_variables[0]
    for basin in results:
        xr = results[basin]['1D']['xr']
        assert pd.DatetimeIndex(xr['date'].values).equals(pd.date_range(cfg.test_start_date, cfg.test_end_date))
        assert xr['time_step'].values.tolist() == [0]
        assert xr[f'{target}_sim'].dims[-1] == ('samples' if mc_dropout or head != 'regression' else 'time_step')
        simulation = xr[f'{target}_sim']
        assert not simulation.sel(date=slice(None, '2014-11-30')).isnull().any()
        assert simulation.sel(date=slice('2015-01-01', None)).isnull().all()  # past the forcing: every sample NaN
        assert np.isfinite(results[basin]['1D']['NSE'])


def test_nh_tester_is_kept_where_striding_does_not_apply(get_config):
    cfg = _trained(get_config)
    assert type(get_tester(cfg, cfg.run_dir, 'test', False)) is StridedRegressionTester
    cfg.update_config({'head': 'gmm', 'loss': 'GMMLoss', 'n_distributions': 2, 'n_samples': 5})
    assert type(get_tester(cfg, cfg.run_dir, 'test', False)) is StridedUncertaintyTester
    cfg.update_config({'head': 'regression', 'loss': 'MSE'})
    cfg.update_config({'stefaland_strided_evaluation': False})
    assert type(get_tester(cfg, cfg.run_dir, 'test', False)) is RegressionTester
    cfg.update_config({'stefaland_strided_evaluation': True, 'predict_last_n': 1})
    assert type(get_tester(cfg, cfg.run_dir, 'test', False)) is RegressionTester
    cfg.update_config({'predict_last_n': PREDICT_LAST_N, 'model': 'cudalstm', 'head': 'gmm'})
    assert type(get_tester(cfg, cfg.run_dir, 'test', False)) is UncertaintyTester
