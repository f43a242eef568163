"""Finetuning on cached encoder states (stefaland_cache_states): the same predictions, the grid windows, the runs."""
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

from neuralhydrology.nh_run import eval_run, finetune, start_run
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.state_cache import CachedStates, cache_refusal
from nh_stefaland.nh.training import FinetuneTrainer, check_finetuning

ROOT = Path(__file__).resolve().parents[1]
YAML_SAFE = YAML(typ='safe')
FINETUNE = {'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE', 'metrics': ['NSE'],
            'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'], 'validate_every': None,
            'stefaland_cache_states': True, 'stefaland_cache_stride': 3}


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory) -> Path:
    """A tiny pretraining run on the 3 sample basins of tests/configs/basins_3.txt."""
    folder = tmp_path_factory.mktemp('pretrain')
    cfg = YAML_SAFE.load(ROOT / 'tests' / 'configs' / 'caravan_pretrain.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg['run_dir'] = str(folder / 'runs')
    YAML_SAFE.dump(cfg, folder / 'pretrain.yml')
    start_run(folder / 'pretrain.yml')
    run_dir, = (folder / 'runs').glob('test_pretrain_*')
    return run_dir


def _trainer(pretrained: Path, folder: Path, **overrides) -> FinetuneTrainer:
    """The trainer `nh-run finetune` builds (NH's config merge of `nh_run.finetune`), initialised, not trained."""
    cfg = Config(pretrained / 'config.yml')
    cfg.update_config({**FINETUNE, 'base_run_dir': pretrained, 'run_dir': folder, 'experiment_name': 'cached',
                       **overrides})
    cfg.is_finetuning, cfg.is_continue_training = True, False
    check_finetuning(cfg)
    trainer = FinetuneTrainer(cfg=cfg)
    trainer.initialize_training()
    return trainer


def _predict(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(model.pre_model_hook(batch, is_train=False))['y_hat']


@pytest.mark.parametrize('adapter', ['resconn', 'none', 'linear', 'dual_residual'])
@pytest.mark.parametrize('dtype, tolerance', [('float32', 1e-5), ('bfloat16', 2e-2)])
def test_cached_states_give_the_predictions_of_the_encoder(pretrained, tmp_path, adapter, dtype, tolerance):
    trainer = _trainer(pretrained, tmp_path, stefaland_adapter=adapter, stefaland_cache_dtype=dtype)
    batch = next(iter(trainer.loader))
    assert batch['encoder_states'].dtype == getattr(torch, dtype)
    cached = _predict(trainer.model, batch)
    computed = _predict(trainer.model, {key: value for key, value in batch.items() if key != 'encoder_states'})
    scale = computed.abs().max().item()
    assert torch.allclose(cached, computed, rtol=tolerance, atol=tolerance * scale)


def test_an_encoder_input_the_config_does_not_load_is_cached_as_missing(pretrained, tmp_path):
    """The encoder reads temperature as NaN (its mask vector) in both paths, when the config asks for it."""
    base = Config(pretrained / 'config.yml')
    trainer = _trainer(pretrained, tmp_path, dynamic_inputs=['total_precipitation_sum'],
                       stefaland_encoder_inputs=base.dynamic_inputs,
                       stefaland_encoder_attributes=base.static_attributes, stefaland_cache_dtype='float32')
    batch = next(iter(trainer.loader))
    assert 'temperature_2m_mean' not in batch['x_d']
    computed = trainer.model.encode(batch)
    assert torch.isfinite(batch['encoder_states']).all()
    assert torch.allclose(batch['encoder_states'], computed, atol=1e-5)


def test_the_cache_holds_exactly_the_grid_windows(pretrained, tmp_path):
    trainer = _trainer(pretrained, tmp_path, stefaland_cache_dtype='float32')
    cache, seq_length = trainer.loader.dataset, trainer.cfg.seq_length
    assert isinstance(cache, CachedStates)
    dataset = cache.dataset
    expected = []  # naive: every NH window whose end lies a multiple of 3 days after its basin's first possible end
    for item in range(len(dataset)):
        basin, (end,) = dataset.lookup_table[item]
        dates = dataset._dates[basin]['1D']
        if int((dates[end] - dates[seq_length - 1]) / np.timedelta64(1, 'D')) % 3 == 0:
            expected.append((basin, dates[end]))
    found = [(dataset.lookup_table[item][0], cache[row]['date'][-1]) for row, item in enumerate(cache.windows)]
    assert found == expected and len(cache.windows) == len(expected) < len(dataset)
    assert cache.states.shape == (len(expected), seq_length + 1, trainer.cfg.stefaland_d_model)
    for row in (0, len(expected) // 2, len(expected) - 1):
        sample = cache.dataset.collate_fn([cache[row]])
        assert torch.allclose(trainer.model.encode(sample)[0], cache.states[row], atol=1e-5)


def test_an_epoch_on_cached_states_has_the_updates_of_nhs_epoch(pretrained, tmp_path):
    """The same epochs and max_updates_per_epoch give the same updates with and without the cache; the epoch draws
    every grid window, each as often as the others (±1)."""
    cached = _trainer(pretrained, tmp_path / 'cached', batch_size=4)
    plain = _trainer(pretrained, tmp_path / 'plain', batch_size=4, stefaland_cache_states=False)
    cache = cached.loader.dataset
    assert len(cached.loader) == len(plain.loader) == -(-len(plain.loader.dataset) // 4)
    assert len(cache) == len(plain.loader.dataset) > 2 * len(cache.windows)
    drawn = np.zeros(len(cache.windows), dtype=int)
    for item in range(len(cache)):
        sample = cache[item]
        row, = (cache.states == sample['encoder_states']).flatten(1).all(1).nonzero()[:, 0].tolist()
        assert sample['date'][-1] == cache.dataset[cache.windows[row]]['date'][-1]  # the window of those states
        drawn[row] += 1
    assert drawn.min() > 0 and drawn.max() - drawn.min() <= 1


def test_a_finetuning_on_cached_states_trains_and_evaluates(pretrained, tmp_path, caplog):
    settings = {**FINETUNE, 'experiment_name': 'cached_finetune', 'base_run_dir': str(pretrained),
                'run_dir': str(tmp_path / 'runs'), 'epochs': 2}
    YAML_SAFE.dump(settings, tmp_path / 'finetune.yml')
    with caplog.at_level(logging.INFO):
        finetune(tmp_path / 'finetune.yml')
    run_dir, = (tmp_path / 'runs').glob('cached_finetune_*')
    eval_run(run_dir, period='test')
    assert "Caching the frozen encoder's states of" in caplog.text and 'per basin-year' in caplog.text
    pretrained_state, tuned = torch.load(pretrained / 'model_epoch001.pt'), torch.load(run_dir / 'model_epoch002.pt')
    for key, tensor in pretrained_state.items():
        assert torch.equal(tuned[key], tensor), key
    with open(run_dir / 'test' / 'model_epoch002' / 'test_results.p', 'rb') as fp:
        results = pickle.load(fp)
    assert len(results) == 3
    for basin in results:
        simulation = results[basin]['1D']['xr']['streamflow_sim']
        assert np.isfinite(simulation.values).all()


@pytest.mark.parametrize('overrides, reason', [
    ({'finetune_modules': ['encoder', 'adapter', 'decoder', 'head']}, "trains ['encoder']"),
    ({'finetune_modules': {'tokens': 'dynamic', 'head': 'net'}}, "trains ['tokens']"),
    ({'nan_step_probability': 0.1, 'dynamic_inputs': [['total_precipitation_sum'], ['temperature_2m_mean']]},
     'nan_step_probability=0.1 hides random inputs'),
])
def test_a_run_whose_encoder_output_is_not_fixed_cannot_cache(get_config, overrides, reason):
    cfg = get_config('caravan_pretrain', **{**FINETUNE, **overrides})
    assert reason in cache_refusal(cfg)
    assert cache_refusal(get_config('caravan_pretrain', **FINETUNE)) is None


def test_training_the_encoder_falls_back_to_every_window_with_a_warning(pretrained, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        trainer = _trainer(pretrained, tmp_path, finetune_modules=['encoder', 'adapter', 'decoder', 'head'])
    assert not isinstance(trainer.loader.dataset, CachedStates)
    assert 'stefaland_cache_states is ignored' in caplog.text
    assert 'encoder_states' not in next(iter(trainer.loader))
