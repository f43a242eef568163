"""The packed store gives NH's tensors: same windows, values, dates, attributes and per-basin spreads as NH's loader."""
import numpy as np
import pandas as pd
import pytest
import torch
from ruamel.yaml import YAML

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datasetzoo.caravan import Caravan
from neuralhydrology.utils.config import Config

from nh_stefaland.nh import store as store_format
from nh_stefaland.nh.store_dataset import StoreDataset
from nh_stefaland.nh.store_windows import WindowSampler, permute, scan_training_windows
from nh_stefaland.tools.cli import main

from conftest import CONFIGS


@pytest.fixture
def packed(tmp_path, get_config):
    """The caravan sample's test config (3 basins) written as a config file and packed into a store."""
    cfg = get_config('caravan_sample', loss='NSE')
    cfg.update_config({'train_dir': cfg.run_dir / 'train_data'})
    config_file = _config_file(cfg, tmp_path / 'pack.yml')
    assert main(['pack', '--config', str(config_file), '--output', str(tmp_path / 'store'), '--chunk-basins', '2']) == 0
    return cfg, config_file, tmp_path / 'store'


def _config_file(cfg, path):
    raw = {k: (str(v) if hasattr(v, 'as_posix') else v) for k, v in cfg.as_dict().items()}
    raw.update({f'{p}_{e}_date': getattr(cfg, f'{p}_{e}_date').strftime('%d/%m/%Y')
                for p in ('train', 'validation', 'test') for e in ('start', 'end')})
    with path.open('w') as stream:
        YAML().dump(raw, stream)
    return path


def _assert_same_batches(nh_dataset, store_dataset, items):
    nh_batch = nh_dataset.collate_fn([nh_dataset[i] for i in items])
    batch = store_dataset.collate_fn(store_dataset.__getitems__(items))
    assert batch.keys() == nh_batch.keys()
    for key, value in nh_batch.items():
        if key.startswith('x_d'):
            assert list(batch[key]) == list(value)
            for name, tensor in value.items():
                assert batch[key][name].dtype == tensor.dtype
                assert torch.equal(batch[key][name].nan_to_num(-999.0), tensor.nan_to_num(-999.0)), (key, name)
        elif key.startswith('date'):
            np.testing.assert_array_equal(batch[key], value)
        else:
            assert batch[key].dtype == value.dtype and batch[key].shape == value.shape, key
            assert torch.equal(batch[key].nan_to_num(-999.0), value.nan_to_num(-999.0)), key


def test_training_windows_and_tensors_are_nh_loaders(packed):
    cfg, _, store = packed
    nh_dataset = Caravan(cfg=cfg, is_train=True, period='train')
    cfg.update_config({'stefaland_store': str(store)})
    dataset = get_dataset(cfg=cfg, is_train=True, period='train', scaler=nh_dataset.scaler)
    assert isinstance(dataset, StoreDataset)
    assert len(dataset) == len(nh_dataset) and len(list((store / 'windows').glob('*.npz'))) == 1  # pack saved them
    scanned = scan_training_windows(dataset.store, dataset._positions, cfg.dynamic_inputs_flattened,
                                    cfg.target_variables, dataset._days, cfg.seq_length, cfg.predict_last_n)
    assert np.array_equal(scanned.offsets, dataset._windows.offsets)
    assert [dataset.lookup_table[i] for i in range(len(dataset))] == \
        [(b, [int(i) for i in idx]) for b, idx in nh_dataset.lookup_table.values()]
    _assert_same_batches(nh_dataset, dataset, list(range(len(dataset))))


def test_evaluation_windows_and_tensors_are_nh_loaders_with_a_saved_scaler(packed, tmp_path):
    cfg, _, store = packed
    train = Caravan(cfg=cfg, is_train=True, period='train')  # writes the scaler as a training run does
    from neuralhydrology.datautils.utils import load_scaler
    scaler = load_scaler(cfg.run_dir)
    basin = 'camels_03173000'
    nh_dataset = Caravan(cfg=cfg, is_train=False, period='test', basin=basin, scaler=scaler)
    cfg.update_config({'stefaland_store': str(store)})
    dataset = get_dataset(cfg=cfg, is_train=False, period='test', basin=basin, scaler=scaler)
    assert len(dataset) == len(nh_dataset) and dataset.get_period_start(basin) == nh_dataset.get_period_start(basin)
    _assert_same_batches(nh_dataset, dataset, list(range(len(dataset))))
    assert dataset[3]['date'][-1] == nh_dataset[3]['date'][-1]
    assert train.scaler['attribute_means'].index.tolist() == sorted(cfg.static_attributes)


def test_computed_statistics_agree_with_nh_to_float32_rounding(packed):
    cfg, _, store = packed
    packed_period = Caravan(cfg=cfg, is_train=True, period='train', scaler={}).scaler
    cfg.update_config({'stefaland_store': str(store), 'train_end_date': pd.Timestamp('2000-11-30')})
    reference = Caravan(cfg=cfg, is_train=True, period='train', scaler={}).scaler
    scaler = StoreDataset(cfg=cfg, is_train=True, period='train').scaler  # not the statistics stored by pack
    for key in ('xarray_feature_center', 'xarray_feature_scale'):
        for name in reference[key]:
            assert float(scaler[key][name]) == pytest.approx(float(reference[key][name]), rel=1e-5)
            assert scaler[key][name].dtype == reference[key][name].dtype
    for key in ('attribute_means', 'attribute_stds'):
        assert scaler[key].equals(reference[key])
    assert float(packed_period['xarray_feature_center']['streamflow']) != \
        pytest.approx(float(reference['xarray_feature_center']['streamflow']), rel=1e-3)


def test_pack_appends_another_dataset_with_its_variables_missing_elsewhere(packed, tmp_path, get_config):
    cfg, config_file, store = packed
    other = _config_file(get_config('camels_us'), tmp_path / 'camels_us.yml')  # NH's camels_us: other names
    with pytest.raises(FileExistsError, match='--append'):
        main(['pack', '--config', str(other), '--output', str(store)])
    assert main(['pack', '--config', str(other), '--output', str(store), '--append']) == 0
    opened = store_format.Store(store)
    assert len(opened.basins) == 7 and not opened.basins[6].startswith('camels_')
    assert not opened.stored(0, 'prcp(mm/day)')  # chunks packed before the variable existed read as missing
    caravan, camels = np.array([0]), np.array([6])
    whole = (0, opened.meta.days - 1)
    assert np.isnan(opened.series('prcp(mm/day)', caravan, *whole)).all()
    assert not np.isnan(opened.series('prcp(mm/day)', camels, *whole)).any()
    assert np.isnan(opened.series('total_precipitation_sum', camels, *whole)).all()
    assert np.isnan(opened.attributes.iloc[0]['frac_forest']) and np.isnan(opened.attributes.iloc[6]['area'])
    assert main(['pack', '--config', str(config_file), '--output', str(store)]) == 0  # a resume: nothing new
    assert len(store_format.Store(store).basins) == 7


def test_pack_resumes_from_pending_basins_with_several_processes(packed, tmp_path):
    _, config_file, complete = packed
    output = tmp_path / 'resumed'
    first = store_format.Store(complete)
    (output / 'pending').mkdir(parents=True)  # a pack stopped after loading one basin and writing a stray chunk
    store_format.write_meta(output, first.meta)
    (output / 'chunks' / 'c00000').mkdir(parents=True)
    values = np.stack([first.series(v, np.array([0]), 0, first.meta.days - 1)[0] for v in first.meta.variables])
    np.save(output / 'pending' / f'{first.basins[0]}.npy', values + 1.0)  # marked: must be packed as it is
    assert main(['pack', '--config', str(config_file), '--output', str(output), '--jobs', '2']) == 0
    resumed = store_format.Store(output)
    assert sorted(resumed.basins) == sorted(first.basins) and not (output / 'pending').exists()
    for basin in first.basins:
        for variable in first.meta.variables:
            expected = first.series(variable, np.array([first.rows[basin]]), 0, first.meta.days - 1)
            got = resumed.series(variable, np.array([resumed.rows[basin]]), 0, first.meta.days - 1)
            np.testing.assert_array_equal(got, expected + (1.0 if basin == first.basins[0] else 0.0))


def test_pack_refuses_a_folder_that_is_not_a_store(packed, tmp_path):
    _, config_file, _ = packed
    (tmp_path / 'occupied').mkdir()
    (tmp_path / 'occupied' / 'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not a store'):
        main(['pack', '--config', str(config_file), '--output', str(tmp_path / 'occupied')])


def test_store_refuses_what_it_does_not_implement(packed):
    cfg, _, store = packed
    cfg.update_config({'stefaland_store': str(store), 'lagged_features': {'streamflow': 1}})
    with pytest.raises(ValueError, match='lagged_features'):
        StoreDataset(cfg=cfg, is_train=True, period='train')


def test_window_sampler_shards_a_permutation_across_ranks():
    n = 1000
    order = [list(WindowSampler(n, replicas=3, rank=r, seed=7)) for r in range(3)]
    assert all(len(o) == 334 for o in order)
    drawn = sorted(i for o in order for i in o)
    assert sorted(set(drawn)) == list(range(n)) and len(drawn) == 1002  # padded by wrapping around, as DDP's
    first = WindowSampler(n, seed=7)
    epoch0 = list(first)
    first.set_epoch(1)
    assert sorted(epoch0) == list(range(n)) and list(first) != epoch0
    keys = np.random.SeedSequence([0, 0]).generate_state(4, dtype=np.uint64)
    assert np.array_equal(np.sort(permute(np.arange(37, dtype=np.uint64), 37, keys)), np.arange(37))
