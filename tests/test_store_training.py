"""Every stage trains and evaluates from a packed store with the stock NH entry points."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray
from ruamel.yaml import YAML

from neuralhydrology.evaluation import get_tester
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.store_dataset import StoreDataset
from nh_stefaland.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
YAML_SAFE = YAML(typ='safe')
FINETUNE = {'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE', 'metrics': ['NSE'],
            'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'], 'validate_every': None,
            'experiment_name': 'test_finetune', 'epochs': 1}


def _config_file(folder: Path, name: str, **overrides) -> Path:
    cfg = YAML_SAFE.load(ROOT / 'tests' / 'configs' / f'{name}.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg.update({'run_dir': str(folder / 'runs'), **overrides})
    path = folder / f'{cfg["experiment_name"]}.yml'
    YAML_SAFE.dump(cfg, path)
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True)


def _run_dir(folder: Path, prefix: str) -> Path:
    run_dir, = (folder / 'runs').glob(f'{prefix}_*')
    return run_dir


def test_nh_run_pretrains_finetunes_and_evaluates_from_a_store(tmp_path):
    """The stock console scripts in fresh processes: pack, pretrain, finetune (strided tester), evaluate."""
    store = tmp_path / 'store'
    _run(BIN / 'nh-stefaland', 'pack', '--config', _config_file(tmp_path, 'caravan_pretrain'), '--output', store)
    _run(BIN / 'nh-run', 'train', '--config-file', _config_file(tmp_path, 'caravan_pretrain', stefaland_store=str(store)))
    pretrained = _run_dir(tmp_path, 'test_pretrain')
    assert 'Epoch 1 validation reconstruction loss' in (pretrained / 'output.log').read_text()
    _run(BIN / 'nh-run', 'finetune', '--config-file',
         _config_file(tmp_path, 'caravan_pretrain', **FINETUNE, base_run_dir=str(pretrained)))
    run_dir = _run_dir(tmp_path, 'test_finetune')
    assert Config(run_dir / 'config.yml').stefaland_store == str(store)
    _run(BIN / 'nh-run', 'evaluate', '--run-dir', run_dir)
    metrics = pd.read_csv(run_dir / 'test' / 'model_epoch001' / 'test_metrics.csv', index_col='basin')
    assert len(metrics) == 3 and np.isfinite(metrics['NSE']).all()


def test_supervised_run_from_a_store_evaluates_identically_with_nh_loader(tmp_path):
    store = tmp_path / 'store'
    assert main(['pack', '--config', str(_config_file(tmp_path, 'caravan_sample')), '--output', str(store)]) == 0
    cfg = Config(_config_file(tmp_path, 'caravan_sample', stefaland_store=str(store), validate_every=1,
                              validate_n_random_basins=3))
    start_training(cfg)
    run_dir = _run_dir(tmp_path, 'test_caravan')
    results = {}
    for name, value in (('store', str(store)), ('nh', None)):
        cfg = Config(run_dir / 'config.yml')
        cfg.update_config({'stefaland_store': value})
        tester = get_tester(cfg=cfg, run_dir=run_dir, period='test', init_model=True)
        assert isinstance(tester._get_dataset('camels_01022500'), StoreDataset) == (value is not None)
        tester.evaluate(epoch=1, save_results=True, metrics=cfg.metrics)
        with (run_dir / 'test' / 'model_epoch001' / 'test_results.p').open('rb') as stream:
            results[name] = pickle.load(stream)
    assert results['store'].keys() == results['nh'].keys() == {'camels_01022500', 'camels_03173000', 'camels_11468500'}
    for basin, by_frequency in results['nh'].items():
        expected: xarray.Dataset = by_frequency['1D']['xr']
        got = results['store'][basin]['1D']['xr']
        xarray.testing.assert_identical(got, expected)
        assert np.isfinite(got['streamflow_sim'].values).all()


def test_torchrun_pretrains_from_a_store_on_two_processes(tmp_path):
    """Two ranks draw disjoint shares of the store's windows (WindowSampler) and train one run."""
    store = tmp_path / 'store'
    assert main(['pack', '--config', str(_config_file(tmp_path, 'caravan_pretrain')), '--output', str(store)]) == 0
    config = _config_file(tmp_path, 'caravan_pretrain', stefaland_store=str(store), validate_every=None)
    _run(BIN / 'torchrun', '--standalone', '--nproc_per_node=2', BIN / 'nh-run', 'train', '--config-file', config)
    run_dir = _run_dir(tmp_path, 'test_pretrain')
    assert (run_dir / 'model_epoch001.pt').is_file()
    assert '2 processes, one device each' in (run_dir / 'output.log').read_text()
