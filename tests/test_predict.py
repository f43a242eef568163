"""`nh-stefaland predict`: hydrographs for basins without a gauge, NaN and coverage where inputs are missing."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray
from ruamel.yaml import YAML

from neuralhydrology.evaluation import get_tester
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.nan_report import nan_days
from nh_stefaland.tools import cli
from nh_stefaland.tools.predict.applicability import applicability

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'examples' / 'data' / 'caravan_camels_sample'
TRAIN_BASINS = ['camels_01022500', 'camels_03173000', 'camels_11468500']  # tests/configs/basins_3.txt
UNGAUGED = ['camels_01632900', 'camels_02177000', 'camels_04045500', 'camels_05120500']
DRY = 'camels_02177000'  # its precipitation is removed over the prediction period
START, END = '2001-01-01', '2015-02-28'  # the record ends on 2014-12-31


@pytest.fixture(scope='module')
def ungauged(tmp_path_factory) -> Path:
    """The sample's ungauged basins without streamflow (one without precipitation from 2001); the others as shipped."""
    data = tmp_path_factory.mktemp('ungauged') / 'data'
    shutil.copytree(SAMPLE, data)
    for basin in UNGAUGED:
        path = data / 'timeseries' / 'netcdf' / 'camels' / f'{basin}.nc'
        series = xarray.load_dataset(path).drop_vars('streamflow')
        if basin == DRY:
            series['total_precipitation_sum'] = series['total_precipitation_sum'].where(series['date'] < np.datetime64(START))
        series.to_netcdf(path)
    (data / 'ungauged.txt').write_text('\n'.join(UNGAUGED) + '\n')
    return data


@pytest.fixture(scope='module')
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny trained runs on the three gauged sample basins: StefaLand (untrained and trained mask vectors), NH's LSTM
    and StefaLand with a GMM head."""
    directory = tmp_path_factory.mktemp('runs')
    variants = {'stefaland': {}, 'cudalstm': {'model': 'cudalstm'},
                'masked': {'stefaland_input_mask_ratio': 0.3, 'stefaland_mask_min_days': 3, 'stefaland_mask_max_days': 8},
                'gmm': {'head': 'gmm', 'loss': 'GMMLoss', 'n_distributions': 2, 'n_samples': 20,
                        'negative_sample_handling': 'clip'}}
    folders = {}
    for name, changes in variants.items():
        cfg = Config(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
        cfg.update_config({key: ROOT / getattr(cfg, key) for key in
                           ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file')})
        cfg.update_config({'run_dir': directory / name, 'experiment_name': name, 'predict_last_n': 10, **changes})
        start_training(cfg)
        folders[name] = next((directory / name).iterdir())
    return folders


def _predict(data: Path, output: Path, *sources: str, extra: tuple = ()) -> int:
    return cli.main(['predict', *sources, '--data-dir', str(data), '--basin-file', str(data / 'ungauged.txt'),
                     '--start', START, '--end', END, '--output', str(output), *extra])


def test_one_run_and_an_ensemble_predict_ungauged_basins_with_nan_where_inputs_are_missing(ungauged, runs, tmp_path,
                                                                                           capsys):
    output = tmp_path / 'flows.nc'
    assert _predict(ungauged, output, '--run-dir', str(runs['stefaland']), '--run-dir', str(runs['cudalstm']),
                    extra=('--csv-dir', str(tmp_path / 'csv'))) == 0
    assert 'basin-days predicted' in capsys.readouterr().out
    flows = xarray.load_dataset(output)
    assert list(flows['basin'].values) == UNGAUGED and flows['time'].values[0] == np.datetime64(START)
    assert flows.sizes['member'] == 2 and flows['streamflow'].attrs['units'] == 'mm d-1'
    members = json.loads(flows.attrs['members'])
    assert [member['model'] for member in members] == ['stefaland', 'cudalstm']
    assert [member['future_forcing_days'] for member in members] == [0, 0]  # StefaLand causal by default
    assert all(len(member['sha256']) == 64 for member in members)
    gauged_like = flows.sel(basin=[b for b in UNGAUGED if b != DRY], time=slice(START, '2014-12-01'))
    assert np.isfinite(gauged_like['streamflow_member'].values).all()  # every input exists: every day predicted
    assert (gauged_like['input_coverage'] == 1).all()
    after = flows.sel(time=slice('2015-01-01', END))  # after the record: no input, no flow, from either model
    assert after['streamflow_member'].isnull().all() and (after['input_coverage'] == 0).all()
    dry = flows.sel(basin=DRY)  # no precipitation: NaN from both models, coverage 2 of 3 inputs
    assert dry['streamflow_member'].isnull().all()
    np.testing.assert_allclose(dry['input_coverage'].sel(time=slice(START, '2014-12-31')), 2 / 3, rtol=1e-6)
    assert np.isfinite(gauged_like['streamflow_spread']).all() and 'streamflow_quantile' in flows
    csv = pd.read_csv(tmp_path / 'csv' / f'{UNGAUGED[0]}.csv', parse_dates=['date'])
    np.testing.assert_allclose(csv['streamflow'], flows['streamflow'].sel(basin=UNGAUGED[0]), atol=1e-4)
    assert flows['attribute_distance'].notnull().all()


def test_the_same_flows_as_nh_evaluate_on_a_gauged_basin(runs, tmp_path):
    cfg = Config(runs['stefaland'] / 'config.yml')
    results = get_tester(cfg, run_dir=runs['stefaland'], period='test', init_model=True).evaluate(
        epoch=1, save_results=False, metrics=[])
    expected = results['camels_01022500']['1D']['xr']['streamflow_sim'].isel(time_step=-1).to_series()
    (tmp_path / 'one.txt').write_text('camels_01022500\n')
    start, end = expected.index[0].strftime('%Y-%m-%d'), expected.index[-1].strftime('%Y-%m-%d')
    assert cli.main(['predict', '--run-dir', str(runs['stefaland']), '--basin-file', str(tmp_path / 'one.txt'),
                     '--start', start, '--end', end, '--output', str(tmp_path / 'one.nc')]) == 0
    predicted = xarray.load_dataset(tmp_path / 'one.nc')['streamflow'].sel(basin='camels_01022500').to_series()
    np.testing.assert_allclose(predicted.to_numpy(), expected.clip(lower=0).to_numpy(), rtol=1e-5, atol=1e-6)


def test_missing_attribute_is_an_error_unless_the_mask_vectors_were_trained_and_it_is_allowed(ungauged, runs,
                                                                                            tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(ungauged, data)
    path = data / 'attributes' / 'camels' / 'attributes_caravan_camels.csv'
    table = pd.read_csv(path, index_col='gauge_id')
    table.loc[UNGAUGED[2], 'aridity'] = np.nan
    table.to_csv(path)
    with pytest.raises(ValueError, match=f"{UNGAUGED[2]}: aridity.*never trained"):
        _predict(data, tmp_path / 'a.nc', '--run-dir', str(runs['stefaland']))
    with pytest.raises(ValueError, match=f"{UNGAUGED[2]}: aridity.*--allow-missing-attributes"):
        _predict(data, tmp_path / 'b.nc', '--run-dir', str(runs['masked']))
    assert _predict(data, tmp_path / 'c.nc', '--run-dir', str(runs['masked']),
                    extra=('--allow-missing-attributes',)) == 0
    flows = xarray.load_dataset(tmp_path / 'c.nc')['streamflow'].sel(basin=UNGAUGED[2], time=slice(START, '2014-12-01'))
    assert np.isfinite(flows).all()


def test_trained_mask_vectors_still_refuse_a_record_without_precipitation(ungauged, runs, tmp_path):
    assert _predict(ungauged, tmp_path / 'masked.nc', '--run-dir', str(runs['masked'])) == 0
    flows = xarray.load_dataset(tmp_path / 'masked.nc')['streamflow']
    assert flows.sel(basin=DRY).isnull().all()  # a gap of years: far longer than the 8 days training hid
    assert flows.sel(time=slice('2015-01-01', END)).isnull().all()


def test_probabilistic_head_gives_quantiles_from_nh_samples(ungauged, runs, tmp_path):
    assert _predict(ungauged, tmp_path / 'gmm.nc', '--run-dir', str(runs['gmm']), extra=('--quantiles', '0.1,0.9')) == 0
    flows = xarray.load_dataset(tmp_path / 'gmm.nc').sel(basin=UNGAUGED[0], time=slice(START, '2014-12-01'))
    low, high = flows['streamflow_quantile'].sel(quantile=0.1), flows['streamflow_quantile'].sel(quantile=0.9)
    assert np.isfinite(low).all() and (high >= low).all() and (high > low).mean() > 0.9
    assert 'streamflow_spread' not in flows  # one member


def test_pub_output_members_are_every_fold_and_seed_of_one_label(ungauged, tmp_path):
    yaml = YAML()
    cfg = yaml.load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    cfg.update({'data_dir': str(SAMPLE), 'predict_last_n': 10})
    yaml.dump(cfg, tmp_path / 'model.yml')
    (tmp_path / 'basins.txt').write_text('\n'.join(TRAIN_BASINS + ['camels_04185000']) + '\n')
    assert cli.main(['pub', '--model', f'small={tmp_path / "model.yml"}', '--basin-file', str(tmp_path / 'basins.txt'),
                     '--output-dir', str(tmp_path / 'pub'), '--folds', '2']) == 0
    with pytest.raises(ValueError, match="--label other"):
        _predict(ungauged, tmp_path / 'x.nc', '--pub-dir', str(tmp_path / 'pub'), extra=('--label', 'other'))
    assert _predict(ungauged, tmp_path / 'pub.nc', '--pub-dir', str(tmp_path / 'pub')) == 0
    flows = xarray.load_dataset(tmp_path / 'pub.nc')
    assert sorted(flows['member'].values) == ['small/fold_01', 'small/fold_02']
    assert np.isfinite(flows['streamflow_spread'].sel(basin=UNGAUGED[0], time=slice(START, '2014-12-01'))).all()


def test_never_over_an_existing_file_nor_into_a_run_folder(ungauged, runs, tmp_path):
    existing = tmp_path / 'exists.nc'
    existing.write_text('mine')
    with pytest.raises(ValueError, match='--overwrite'):
        _predict(ungauged, existing, '--run-dir', str(runs['stefaland']))
    assert existing.read_text() == 'mine'
    with pytest.raises(ValueError, match='inside the run folder'):
        _predict(ungauged, runs['stefaland'] / 'flows.nc', '--run-dir', str(runs['stefaland']))
    with pytest.raises(ValueError, match='pretraining run|not a date'):
        cli.main(['predict', '--run-dir', str(runs['stefaland']), '--basin-file', str(ungauged / 'ungauged.txt'),
                  '--start', '01/01/2001', '--end', END, '--output', str(tmp_path / 'd.nc')])


def test_nh_evaluate_warns_once_counting_the_nan_days(runs, caplog):
    cfg = Config(runs['stefaland'] / 'config.yml')
    cfg.update_config({'test_start_date': '01/12/2014', 'test_end_date': '31/01/2015'})
    tester = get_tester(cfg, run_dir=runs['stefaland'], period='test', init_model=True)
    results = tester.evaluate(epoch=1, save_results=False, metrics=[])
    counts = nan_days(results, ['streamflow'])
    assert sorted(counts) == TRAIN_BASINS and all(count >= 31 for count in counts.values())
    warnings = [record for record in caplog.records if 'returned NaN' in record.message]
    assert len(warnings) == 1 and '3 basins' in warnings[0].message


def test_applicability_distances_rank_basins_by_how_far_their_attributes_lie():
    rng = np.random.default_rng(0)
    training = pd.DataFrame(rng.normal(size=(50, 3)), columns=list('abc'))
    basins = pd.DataFrame([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, np.nan, 9.0]], columns=list('abc'),
                          index=['near', 'far', 'farther'])
    fit = applicability(basins, training, training.mean(), training.std(), neighbours=5)
    assert fit.distance['near'] < fit.distance['far'] < fit.distance['farther']
    assert fit.percentile['near'] < 50 and fit.percentile['farther'] == 100
    assert fit.outside['near'] == '' and fit.outside['far'] == 'a' and fit.outside['farther'] == 'c'
