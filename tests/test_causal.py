"""stefaland_causal: no output for day t depends on an input after day t, in every stage, adapter and evaluation path.

Each test changes the inputs after day t and compares the outputs up to day t, with dropout configured on and the
model in eval mode (so that the comparison is deterministic); in the bidirectional mode the same change moves them.
"""
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray
from ruamel.yaml import YAML

from neuralhydrology.evaluation.evaluate import start_evaluation
from neuralhydrology.modelzoo import get_model
from neuralhydrology.nh_run import start_run
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.model.adapters import ADAPTERS, get_adapter
from nh_stefaland.model.encoder import Encoder
from nh_stefaland.model.settings import Settings
from nh_stefaland.nh.training import FinetuneTrainer, check_finetuning

ROOT = Path(__file__).resolve().parents[1]
YAML_SAFE = YAML(typ='safe')
LENGTH, LAST_KEPT = 30, 17  # window length and the last day whose outputs must not move
DROPOUT = {'stefaland_dropout': 0.3, 'stefaland_token_dropout': 0.3, 'output_dropout': 0.3}
FINETUNE = {'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE', 'metrics': ['NSE'],
            'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'], 'validate_every': None,
            'stefaland_cache_states': True, 'stefaland_cache_stride': 3, 'stefaland_cache_dtype': 'float32',
            'output_dropout': 0.3}


def _later_days_changed(batch: dict, nan: bool = False) -> dict:
    """A copy of the batch whose dynamic inputs after day LAST_KEPT are other values (or NaN)."""
    changed = {name: value.clone() for name, value in batch['x_d'].items()}
    for name, value in changed.items():
        value[:, LAST_KEPT + 1:] = float('nan') if nan else torch.randn_like(value[:, LAST_KEPT + 1:]) * 3
    return {**batch, 'x_d': changed}


def _eval_predict(model: torch.nn.Module, batch: dict, key: str = 'y_hat') -> torch.Tensor:
    """The model's output in eval mode, checked to be deterministic (dropout off)."""
    model.eval()
    assert not any(module.training for module in model.modules())
    with torch.no_grad():
        first, second = model(batch)[key], model(batch)[key]
    torch.testing.assert_close(first, second, rtol=0.0, atol=0.0, equal_nan=True)  # NaN: days after a missing input
    return first


def _assert_past_kept(before: torch.Tensor, after: torch.Tensor, causal: bool):
    """Outputs up to LAST_KEPT identical within float tolerance when causal, moved when not; later ones move."""
    kept = torch.allclose(before[:, :LAST_KEPT + 1], after[:, :LAST_KEPT + 1], rtol=1e-5, atol=1e-6)
    assert kept == causal
    assert not torch.allclose(before[:, LAST_KEPT + 1:], after[:, LAST_KEPT + 1:])


def _batch(model, batch_size: int = 4) -> dict:
    generator = torch.Generator().manual_seed(0)
    x_d = {name: torch.randn(batch_size, LENGTH, 1, generator=generator) for name in model.dynamic_inputs}
    return {'x_d': x_d, 'x_s': torch.randn(batch_size, len(model.static_attributes), generator=generator)}


def _config_file(folder: Path, name: str, **overrides) -> Path:
    cfg = YAML_SAFE.load(ROOT / 'tests' / 'configs' / f'{name}.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg.update({'run_dir': str(folder / 'runs'), **overrides})
    YAML_SAFE.dump(cfg, folder / f'{name}.yml')
    return folder / f'{name}.yml'


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory) -> dict[bool, Path]:
    """Tiny pretraining runs on 3 sample basins, bidirectional (False) and causal (True)."""
    runs = {}
    for causal in (False, True):
        folder = tmp_path_factory.mktemp(f'pretrain_causal_{causal}')
        start_run(_config_file(folder, 'caravan_pretrain', stefaland_causal=causal, **DROPOUT))
        runs[causal], = (folder / 'runs').glob('test_pretrain_*')
    return runs


def test_causal_encoder_equals_the_explicit_mask_in_token_order():
    """Static token first under PyTorch's causal mask = days reading days ≤ t and the static token, which reads only
    itself, in the tokens' own order (a boolean mask written out)."""
    torch.manual_seed(0)
    encoder = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.0, causal=True).eval()
    tokens = torch.randn(3, LENGTH + 1, 16)  # [B, T+1, D]
    hidden = torch.ones(LENGTH + 1, LENGTH + 1, dtype=torch.bool).triu(diagonal=1)  # True = not attended
    hidden[:, LENGTH] = False  # every day reads the static token
    hidden[LENGTH, :LENGTH] = True  # the static token reads no day
    with torch.no_grad():
        expected = encoder.output(encoder.layers(tokens, mask=hidden))
        assert torch.allclose(encoder(tokens), expected, atol=1e-5)


@pytest.mark.parametrize('causal', [True, False])
def test_encoder_states_up_to_day_t_ignore_later_tokens(causal):
    torch.manual_seed(0)
    encoder = Encoder(d_model=16, nheads=2, dim_feedforward=32, nlayers=2, dropout=0.3, causal=causal).eval()
    tokens = torch.randn(3, LENGTH + 1, 16)
    changed = tokens.clone()
    changed[:, LAST_KEPT + 1:LENGTH] = torch.randn_like(changed[:, LAST_KEPT + 1:LENGTH])
    with torch.no_grad():
        before, after = encoder(tokens), encoder(changed)
    _assert_past_kept(before[:, :LENGTH], after[:, :LENGTH], causal)
    assert torch.allclose(before[:, LENGTH], after[:, LENGTH], atol=1e-6) == causal  # the static state


@pytest.mark.parametrize('adapter', list(ADAPTERS))
@pytest.mark.parametrize('kernel_size', [1, 3, 4, 7])
def test_causal_adapters_read_no_later_day(adapter, kernel_size):
    torch.manual_seed(0)
    module = get_adapter(adapter, n_inputs=3, n_attributes=5, d_model=16, kernel_size=kernel_size, causal=True).eval()
    embedding, inputs, attributes = torch.randn(2, LENGTH, 16), torch.randn(2, LENGTH, 3), torch.randn(2, 5)
    changed = inputs.clone()
    changed[:, LAST_KEPT + 1:] = torch.randn_like(changed[:, LAST_KEPT + 1:])
    with torch.no_grad():
        before, after = module(embedding, inputs, attributes), module(embedding, changed, attributes)
    assert torch.allclose(before[:, :LAST_KEPT + 1], after[:, :LAST_KEPT + 1], atol=1e-6)


@pytest.mark.parametrize('adapter', ['resconn', 'dual_residual'])
def test_centred_adapters_read_the_next_days(adapter):
    torch.manual_seed(0)
    module = get_adapter(adapter, n_inputs=3, n_attributes=5, d_model=16, kernel_size=3).eval()
    embedding, inputs, attributes = torch.randn(2, LENGTH, 16), torch.randn(2, LENGTH, 3), torch.randn(2, 5)
    changed = inputs.clone()
    changed[:, LAST_KEPT + 1] += 1.0
    with torch.no_grad():
        before, after = module(embedding, inputs, attributes), module(embedding, changed, attributes)
    assert not torch.allclose(before[:, LAST_KEPT], after[:, LAST_KEPT])


def test_an_even_kernel_is_refused_only_for_the_centred_convolution():
    with pytest.raises(ValueError, match='stefaland_adapter_kernel_size=4 must be odd'):
        get_adapter('resconn', n_inputs=3, n_attributes=5, d_model=16, kernel_size=4)
    get_adapter('resconn', n_inputs=3, n_attributes=5, d_model=16, kernel_size=4, causal=True)


@pytest.mark.parametrize('adapter', list(ADAPTERS))
@pytest.mark.parametrize('causal', [True, False])
@pytest.mark.parametrize('nan', [False, True])
def test_supervised_predictions_up_to_day_t_ignore_later_inputs(get_config, adapter, causal, nan):
    """Later inputs changed, or missing (their mask vectors)."""
    torch.manual_seed(0)
    model = get_model(get_config('caravan_sample', stefaland_causal=causal, stefaland_adapter=adapter,
                                 stefaland_nlayers=2, **DROPOUT))
    batch = _batch(model)
    _assert_past_kept(_eval_predict(model, batch), _eval_predict(model, _later_days_changed(batch, nan)), causal)


@pytest.mark.parametrize('causal', [True, False])
def test_causal_pretraining_reconstructs_day_t_from_days_up_to_t(get_config, causal):
    """A causal masked autoencoder: the same masks, later inputs changed, the reconstruction of days ≤ t unchanged."""
    torch.manual_seed(0)
    model = get_model(get_config('caravan_pretrain', stefaland_causal=causal, stefaland_mask_min_days=3,
                                 stefaland_mask_max_days=8, **DROPOUT)).eval()
    batch = _batch(model)
    with torch.no_grad():
        before = model.reconstruct(batch, generator=torch.Generator().manual_seed(1))
        after = model.reconstruct(_later_days_changed(batch), generator=torch.Generator().manual_seed(1))
    assert torch.equal(before['x_mask'], after['x_mask'])
    _assert_past_kept(before['x_hat'], after['x_hat'], causal)


def _finetuner(base: Path, folder: Path, **overrides) -> FinetuneTrainer:
    """The trainer `nh-run finetune` builds (NH's config merge), initialised with its cache filled, not trained."""
    cfg = Config(base / 'config.yml')
    cfg.update_config({**FINETUNE, 'base_run_dir': base, 'run_dir': folder, 'experiment_name': 'finetune',
                       **overrides})
    cfg.is_finetuning, cfg.is_continue_training = True, False
    check_finetuning(cfg)
    trainer = FinetuneTrainer(cfg=cfg)
    trainer.initialize_training()
    return trainer


@pytest.mark.parametrize('adapter', list(ADAPTERS))
@pytest.mark.parametrize('causal', [True, False])
def test_finetuned_predictions_up_to_day_t_ignore_later_inputs_with_and_without_the_cache(pretrained, tmp_path,
                                                                                         adapter, causal):
    """Frozen pretrained encoder: computed at each forward, or read from the cache of encoder states."""
    torch.manual_seed(0)
    trainer = _finetuner(pretrained[causal], tmp_path, stefaland_adapter=adapter)
    model = trainer.model
    batch = {key: value for key, value in next(iter(trainer.loader)).items() if key in ('x_d', 'x_s', 'encoder_states')}
    inputs = {key: value for key, value in batch.items() if key != 'encoder_states'}
    changed = _later_days_changed(inputs)
    model.eval()
    with torch.no_grad():
        # what the cache holds (computed in other batches: equal up to the thread-dependent order of float sums)
        torch.testing.assert_close(batch['encoder_states'], model.encode(inputs), rtol=1e-5, atol=1e-6)
        changed_states = model.encode(changed)
    cached = _eval_predict(model, batch), _eval_predict(model, {**changed, 'encoder_states': changed_states})
    computed = _eval_predict(model, inputs), _eval_predict(model, changed)
    assert torch.allclose(cached[0], computed[0], atol=1e-6)
    _assert_past_kept(*cached, causal)
    _assert_past_kept(*computed, causal)


@pytest.mark.parametrize('pretrained_causal', [True, False])
def test_finetuning_keeps_the_pretraining_direction(pretrained, tmp_path, pretrained_causal):
    message = ('needs an encoder pretrained with stefaland_causal: True' if not pretrained_causal
               else 'holds a causal encoder')
    with pytest.raises(ValueError, match=message):
        _finetuner(pretrained[pretrained_causal], tmp_path, stefaland_causal=not pretrained_causal)


def _with_later_forcing_changed(source: Path, target: Path, basin: str, after: pd.Timestamp) -> Path:
    """A copy of the sample data set whose basin's forcings after ``after`` are other values."""
    shutil.copytree(source, target)
    path = target / 'timeseries' / 'netcdf' / 'camels' / f'{basin}.nc'
    with xarray.open_dataset(path) as opened:
        data = opened.load()
    later = data['date'] > np.datetime64(after)
    generator = np.random.default_rng(0)
    for name in ('total_precipitation_sum', 'temperature_2m_mean', 'potential_evaporation_sum'):
        values = data[name].values
        values[later] = generator.permutation(values[later])
        data[name].values = values
    data.to_netcdf(path)
    return target


@pytest.mark.parametrize('causal', [True, False])
def test_strided_evaluation_of_a_day_ignores_later_forcing(get_config, tmp_path, causal):
    """nh-run evaluate's strided tester (windows 10 days apart) on the data with the basin's forcings after a day
    changed: every day up to it keeps its prediction when causal."""
    basin, after = 'camels_01022500', pd.Timestamp('2001-01-24')
    cfg = get_config('caravan_sample', stefaland_causal=causal, predict_last_n=10, **DROPOUT,
                     test_start_date=pd.Timestamp('2001-01-01'), test_end_date=pd.Timestamp('2001-02-28'))
    start_training(cfg)
    changed = _with_later_forcing_changed(cfg.data_dir, tmp_path / 'changed', basin, after)
    predictions = []
    for data_dir in (cfg.data_dir, changed):
        run_cfg = Config(cfg.run_dir / 'config.yml')
        run_cfg.update_config({'data_dir': data_dir})
        start_evaluation(run_cfg, cfg.run_dir, epoch=1, period='test')
        with (cfg.run_dir / 'test' / 'model_epoch001' / 'test_results.p').open('rb') as stream:
            xr = pickle.load(stream)[basin]['1D']['xr']
        predictions.append(pd.Series(xr['streamflow_sim'].values[:, 0], index=pd.DatetimeIndex(xr['date'].values)))
    before, after_change = predictions
    assert len(before) == 59  # every day of the period, one window per 10 days
    kept = np.allclose(before[:after], after_change[:after], rtol=1e-5, atol=1e-6)
    assert kept == causal
    assert not np.allclose(before[after + pd.Timedelta(days=1):], after_change[after + pd.Timedelta(days=1):])


def test_a_new_config_is_causal_and_a_run_saved_before_the_default_changed_is_bidirectional():
    raw = YAML_SAFE.load(ROOT / 'tests' / 'configs' / 'caravan_sample.yml')
    assert 'stefaland_causal' not in raw
    saved = {**raw, 'package_version': '1.13.0'}  # NH writes it into the config of every run it trains
    for config, causal in ((raw, True), (saved, False), ({**saved, 'stefaland_causal': True}, True)):
        assert Config(config).stefaland_causal is causal
        assert Settings.from_config(Config(config)).causal is causal
        assert get_model(Config(config)).settings.causal is causal


def test_a_trained_run_states_its_direction_so_that_it_reads_the_same_under_any_default(get_config):
    cfg = get_config('caravan_sample')
    start_training(cfg)
    saved = YAML_SAFE.load(cfg.run_dir / 'config.yml')
    assert saved['stefaland_causal'] is True and saved['package_version']
    lstm = get_config('caravan_sample', model='cudalstm', experiment_name='lstm')
    start_training(lstm)
    assert 'stefaland_causal' not in YAML_SAFE.load(lstm.run_dir / 'config.yml')  # NH's own models: untouched
