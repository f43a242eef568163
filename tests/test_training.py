"""NH's pattern: train → evaluate → check test_results.p, for StefaLand and NH's LSTM on real data."""
import pickle

import numpy as np
import pandas as pd
import pytest

from neuralhydrology.evaluation.evaluate import start_evaluation
from neuralhydrology.training.train import start_training


def _train_and_evaluate(cfg) -> dict:
    start_training(cfg)
    start_evaluation(cfg=cfg, run_dir=cfg.run_dir, epoch=1, period='test')
    with (cfg.run_dir / 'test' / 'model_epoch001' / 'test_results.p').open('rb') as fp:
        return pickle.load(fp)


def _check_results(cfg, results: dict):
    basins = [line.strip() for line in cfg.test_basin_file.read_text().splitlines() if line.strip()]
    assert sorted(results) == sorted(basins)
    expected_dates = pd.date_range(cfg.test_start_date, cfg.test_end_date, freq='1D')
    target = cfg.target_variables[0]
    for basin in basins:
        xr = results[basin]['1D']['xr']
        assert pd.DatetimeIndex(xr['date'].values).equals(expected_dates)
        assert not np.isnan(xr[f'{target}_sim'].values).any()
        assert np.isfinite(results[basin]['1D']['NSE'])


@pytest.mark.parametrize('model', ['stefaland', 'cudalstm'])
@pytest.mark.parametrize('dataset', ['caravan_sample', 'camels_us'])
def test_train_evaluate_results(get_config, model, dataset):
    cfg = get_config(dataset, model=model)
    _check_results(cfg, _train_and_evaluate(cfg))


def test_observations_match_the_data(get_config):
    import xarray
    cfg = get_config('caravan_sample')
    results = _train_and_evaluate(cfg)
    basin = 'camels_01022500'
    raw = xarray.open_dataset(cfg.data_dir / 'timeseries' / 'netcdf' / 'camels' / f'{basin}.nc')
    observed = raw['streamflow'].sel(date=slice(cfg.test_start_date, cfg.test_end_date)).values
    stored = results[basin]['1D']['xr']['streamflow_obs'].values[:, -1]
    np.testing.assert_allclose(stored, observed, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize('head,loss', [('gmm', 'GMMLoss'), ('cmal', 'CMALLoss'), ('umal', 'UMALLoss')])
def test_every_nh_head(get_config, head, loss):
    cfg = get_config('caravan_sample', head=head, loss=loss, n_distributions=2, n_samples=5, n_taus=3,
                     negative_sample_handling='clip', mc_dropout=False, tau_down=0.01, tau_up=0.99)
    _check_results(cfg, _train_and_evaluate(cfg))
