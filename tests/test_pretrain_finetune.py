"""Pretrain with the stock `nh-run train`, finetune with `nh-run finetune`, evaluate; the model's stage logic."""
import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray
from ruamel.yaml import YAML

from neuralhydrology.datasetzoo import get_dataset
from neuralhydrology.datautils.utils import load_scaler
from neuralhydrology.modelzoo import get_model
from neuralhydrology.nh_run import eval_run, finetune, start_run
from neuralhydrology.training import get_loss_obj
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.nh.normalisation import finetuning_scaler, pretraining_scaler
from nh_stefaland.tools import cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
YAML_SAFE = YAML(typ='safe')
FINETUNE = {'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE', 'metrics': ['NSE'],
            'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'], 'validate_every': None}
OTHER_BASINS = ['camels_01632900', 'camels_02177000', 'camels_02464000']  # none of basins_3.txt
STATISTICS = ('xarray_feature_center', 'xarray_feature_scale')


def _config_file(folder: Path, name: str = 'caravan_pretrain', **overrides) -> Path:
    cfg = YAML_SAFE.load(ROOT / 'tests' / 'configs' / f'{name}.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg.update({'run_dir': str(folder / 'runs'), **overrides})
    path = folder / f'{cfg["experiment_name"]}.yml'
    folder.mkdir(parents=True, exist_ok=True)
    YAML_SAFE.dump({k: str(v) if isinstance(v, Path) else v for k, v in cfg.items()}, path)
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True)


def _run_dir(folder: Path, prefix: str) -> Path:
    run_dir, = (folder / 'runs').glob(f'{prefix}_*')
    return run_dir


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory) -> Path:
    """A pretraining run made by NH's `nh-run train` entry point (`start_run`) in this process."""
    folder = tmp_path_factory.mktemp('pretrain')
    start_run(_config_file(folder, log_tensorboard=True))
    return _run_dir(folder, 'test_pretrain')


def _finetune(folder: Path, base: Path, **overrides) -> Path:
    """`nh-run finetune` in this process (NH's own `finetune` function) with a finetuning file."""
    settings = {**FINETUNE, 'experiment_name': 'test_finetune', 'base_run_dir': str(base),
                'run_dir': str(folder / 'runs'), **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    YAML_SAFE.dump(settings, folder / 'finetune.yml')
    finetune(folder / 'finetune.yml')
    return _run_dir(folder, 'test_finetune')


def _on_other_basins(folder: Path) -> dict:
    """Settings that train, validate and test on :data:`OTHER_BASINS` (the pretraining used basins_3.txt)."""
    basin_file = folder / 'other_basins.txt'
    folder.mkdir(parents=True, exist_ok=True)
    basin_file.write_text('\n'.join(OTHER_BASINS) + '\n')
    return {f'{period}_basin_file': str(basin_file) for period in ('train', 'validation', 'test')}


def _own_statistics(run_dir: Path, folder: Path) -> dict:
    """The scaler NH computes from the run's own training basins and period alone."""
    cfg = Config(run_dir / 'config.yml')
    cfg.update_config({'is_finetuning': False, 'train_dir': folder})
    return get_dataset(cfg=cfg, is_train=True, period='train', scaler={}).scaler


def _with_target_statistics(run_dir: Path, folder: Path) -> Path:
    """A copy of a pretraining run whose scaler, as those of older versions, holds streamflow statistics."""
    shutil.copytree(run_dir, folder)
    scaler_file = folder / 'train_data' / 'train_data_scaler.yml'
    scaler = YAML_SAFE.load(scaler_file)
    for key, value in zip(STATISTICS, (100.0, 50.0)):
        scaler[key]['data_vars']['streamflow'] = {'dims': [], 'attrs': {}, 'data': value}
    YAML_SAFE.dump(scaler, scaler_file)
    return folder


def test_pretraining_stores_no_target_statistics(pretrained):
    scaler = load_scaler(pretrained)
    for key in STATISTICS:
        assert 'streamflow' not in scaler[key]
        assert set(scaler[key]) == {'total_precipitation_sum', 'temperature_2m_mean'}


@pytest.mark.parametrize('older', [False, True], ids=['pretraining', 'older pretraining with target statistics'])
def test_finetuning_normalises_the_target_with_its_own_training_basins_only(pretrained, tmp_path, older, caplog):
    caplog.set_level(logging.INFO)
    base = _with_target_statistics(pretrained, tmp_path / 'older') if older else pretrained
    run_dir = _finetune(tmp_path, base, epochs=1, **_on_other_basins(tmp_path))
    tuned, own, pretraining = load_scaler(run_dir), _own_statistics(run_dir, tmp_path / 'own'), load_scaler(base)
    for key in STATISTICS:
        assert tuned[key]['streamflow'].item() == own[key]['streamflow'].item()
        assert tuned[key]['temperature_2m_mean'].item() == pretraining[key]['temperature_2m_mean'].item()
    centre = 'xarray_feature_center'  # the inputs keep the pretraining basins' statistics, not their own
    assert own[centre]['temperature_2m_mean'].item() != pretraining[centre]['temperature_2m_mean'].item()
    assert "this run's training data for the targets and the variables it lacks: ['streamflow']" in caplog.text


def test_a_target_that_is_also_a_dynamic_input_keeps_its_input_statistics(get_config, tmp_path, caplog):
    """NH keeps one centre and scale per variable, and the pretrained encoder reads such a target as an input.

    (NH 1.13 itself loads a variable named in both lists twice, so such a run does not train; the scaler is checked.)
    """
    inputs = ['total_precipitation_sum', 'temperature_2m_mean', 'streamflow']
    pretraining = get_config('caravan_pretrain', dynamic_inputs=inputs, train_dir=tmp_path / 'base' / 'train_data')
    scaler = get_dataset(cfg=pretraining, is_train=True, period='train', scaler={}).scaler
    stored = pretraining_scaler(pretraining, scaler)
    pretraining.dump_config(tmp_path / 'base')
    finetuning = get_config('caravan_pretrain', **FINETUNE, dynamic_inputs=inputs, is_finetuning=True,
                            base_run_dir=tmp_path / 'base', **_on_other_basins(tmp_path))
    caplog.set_level(logging.INFO)
    tuned = finetuning_scaler(finetuning, stored)
    for key in STATISTICS:
        assert stored[key]['streamflow'].item() == scaler[key]['streamflow'].item()
        assert tuned[key]['streamflow'].item() == scaler[key]['streamflow'].item()
    assert "the targets ['streamflow'] are dynamic inputs of base_run_dir" in caplog.text


def test_nh_run_evaluate_of_a_pretraining_run_writes_reconstruction_losses(pretrained):
    eval_run(pretrained, period='test')
    losses = pd.read_csv(pretrained / 'test' / 'model_epoch001' / 'test_reconstruction_losses.csv', index_col='basin')
    assert len(losses) == 3 and np.isfinite(losses.values).all()


def test_pretraining_logs_train_and_validation_reconstruction_losses_to_tensorboard(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(pretrained))
    events.Reload()
    for tag in ('train/avg_dynamic_loss', 'train/avg_static_loss', 'valid/avg_dynamic_loss', 'valid/avg_static_loss'):
        value, = events.Scalars(tag)
        assert value.step == 1 and np.isfinite(value.value)
    state = torch.load(pretrained / 'model_epoch001.pt')
    assert {key.split('.')[0] for key in state} == {'tokens', 'encoder', 'reconstruction_decoder'}


def test_nh_run_train_finetune_evaluate_keeps_pretrained_tensors_bit_identical(tmp_path):
    """The stock console scripts in fresh processes (the .pth registration), stage after stage."""
    _run(BIN / 'nh-run', 'train', '--config-file', _config_file(tmp_path))
    pretrained = _run_dir(tmp_path, 'test_pretrain')
    _run(BIN / 'nh-run', 'finetune', '--config-file', _config_file(tmp_path, **FINETUNE, base_run_dir=str(pretrained),
                                                                   experiment_name='test_finetune', epochs=2))
    run_dir = _run_dir(tmp_path, 'test_finetune')
    _run(BIN / 'nh-run', 'evaluate', '--run-dir', run_dir)
    log = (pretrained / 'output.log').read_text()
    assert 'Epoch 1 average loss: avg_dynamic_loss' in log and 'avg_static_loss' in log
    assert 'Epoch 1 validation reconstruction loss: dynamic:' in log and 'static:' in log
    metrics = pd.read_csv(run_dir / 'test' / 'model_epoch002' / 'test_metrics.csv', index_col='basin')
    assert len(metrics) == 3 and np.isfinite(metrics['NSE']).all()

    pretrained_state = torch.load(pretrained / 'model_epoch001.pt')
    first, last = (torch.load(run_dir / f'model_epoch00{epoch}.pt') for epoch in (1, 2))
    for key, tensor in pretrained_state.items():
        assert torch.equal(last[key], tensor), key
    assert not torch.equal(first['head.net.0.weight'], last['head.net.0.weight'])  # the task parts did train
    log = (run_dir / 'output.log').read_text()
    assert "frozen, in eval mode and without gradients: ['tokens', 'encoder', 'reconstruction_decoder']" in log
    assert (f"Normalisation: the statistics of base_run_dir={pretrained}, plus this run's training data for the "
            f"targets and the variables it lacks: ['streamflow']") in log


def test_finetune_to_a_new_target_with_new_attributes_reuses_the_pretraining_normalisation(pretrained, tmp_path):
    run_dir = _finetune(tmp_path, pretrained, target_variables=['potential_evaporation_sum'],
                        static_attributes=['p_mean', 'aridity', 'area', 'elev_mean', 'sand_frac', 'clay_frac',
                                           'frac_snow'], stefaland_adapter='dual_residual', epochs=1)
    base, tuned = load_scaler(pretrained), load_scaler(run_dir)
    for variable in ('total_precipitation_sum', 'temperature_2m_mean'):
        for key in ('xarray_feature_center', 'xarray_feature_scale'):
            assert tuned[key][variable].item() == base[key][variable].item()
    assert 'potential_evaporation_sum' not in base['xarray_feature_center']
    assert tuned['xarray_feature_scale']['potential_evaporation_sum'].item() > 0
    pd.testing.assert_series_equal(tuned['attribute_means'][base['attribute_means'].index], base['attribute_means'])
    assert 'frac_snow' in tuned['attribute_means']

    cfg = Config(run_dir / 'config.yml')
    assert cfg.stefaland_encoder_attributes == sorted(['p_mean', 'aridity', 'area', 'elev_mean', 'sand_frac',
                                                       'clay_frac'])
    from neuralhydrology.evaluation.evaluate import start_evaluation
    start_evaluation(cfg=cfg, run_dir=run_dir, epoch=1, period='test')
    with (run_dir / 'test' / 'model_epoch001' / 'test_results.p').open('rb') as fp:
        results = pickle.load(fp)
    assert all(np.isfinite(r['1D']['xr']['potential_evaporation_sum_sim'].values).all() for r in results.values())


@pytest.mark.parametrize('overrides,error,message', [
    ({'stefaland_encoder_inputs': ['total_precipitation_sum', 'temperature_2m_mean', 'potential_evaporation_sum'],
      'dynamic_inputs': ['total_precipitation_sum', 'temperature_2m_mean', 'potential_evaporation_sum']},
     ValueError, r"asks the pretrained encoder for \['potential_evaporation_sum'\], which it was not pretrained on"),
    ({'stefaland_encoder_attributes': ['p_mean']}, ValueError, r"leaves out \['area', 'aridity'"),
    ({'stefaland_d_model': 32, 'stefaland_nheads': 2}, ValueError, 'stefaland_d_model=32 differs'),
    ({'stefaland_reconstruction_decoder': 'mlp'}, ValueError, 'stefaland_reconstruction_decoder=mlp differs'),
    ({'finetune_modules': ['adapter'], 'stefaland_adapter': 'none'}, ValueError,
     r"finetune_modules=\['adapter'\] names nothing trainable"),
    ({'finetune_modules': ['reconstruction_decoder']}, ValueError, 'names nothing trainable'),
    ({'finetune_modules': ['reconstruction_decoder', 'embedding']}, ValueError,
     r"finetune_modules names 'embedding', which model: stefaland \(stefaland_stage: finetune\) does not have"),
])
def test_finetuning_errors_name_the_problem(pretrained, tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        _finetune(tmp_path, pretrained, **overrides)


def test_finetuning_from_a_run_that_is_not_a_pretraining_fails_clearly(get_config, tmp_path):
    supervised = get_config('caravan_sample')
    (tmp_path / 'base').mkdir()
    supervised.dump_config(tmp_path / 'base')
    with pytest.raises(ValueError, match=r"base_run_dir=.*base is not a StefaLand pretraining run \(model: "
                                         r"stefaland, stefaland_stage: supervised\)"):
        _finetune(tmp_path, tmp_path / 'base', **{'predict_last_n': 1})
    cfg = get_config('caravan_sample', stefaland_stage='finetune')
    with pytest.raises(ValueError, match='use `nh-run finetune`'):
        start_training(cfg)


def test_pretraining_works_on_basins_without_any_streamflow(tmp_path, caplog):
    data_dir = tmp_path / 'ungauged'
    source = ROOT / 'examples' / 'data' / 'caravan_camels_sample'
    (data_dir / 'timeseries' / 'netcdf' / 'camels').mkdir(parents=True)
    (data_dir / 'attributes').symlink_to(source / 'attributes')
    basins = (ROOT / 'tests' / 'configs' / 'basins_3.txt').read_text().split()
    for basin in basins:
        series = xarray.load_dataset(source / 'timeseries' / 'netcdf' / 'camels' / f'{basin}.nc')
        series['streamflow'][:] = np.nan
        series.to_netcdf(data_dir / 'timeseries' / 'netcdf' / 'camels' / f'{basin}.nc')
    cfg = Config(_config_file(tmp_path, data_dir=str(data_dir), run_dir=str(tmp_path / 'runs')))
    caplog.set_level(logging.INFO)
    start_training(cfg)
    losses = [float(r.message.split('avg_total_loss: ')[1]) for r in caplog.records if 'average loss' in r.message]
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert (cfg.run_dir / 'model_epoch001.pt').is_file()


def test_reconstruct_and_embed_commands(pretrained, capsys):
    assert cli.main(['reconstruct', '--run-dir', str(pretrained), '--period', 'test']) == 0
    table = pd.read_csv(pretrained / 'reconstruction_test_epoch001.csv', index_col='variable')
    assert list(table.index[:2]) == ['total_precipitation_sum', 'temperature_2m_mean']
    assert table.loc['area', 'n'] == 0  # never masked
    assert (table.loc['temperature_2m_mean', ['rmse_stefaland', 'rmse_mean', 'rmse_interpolation']] > 0).all()
    assert np.isnan(table.loc['static attributes (all)', 'rmse_interpolation'])
    assert (pretrained / 'reconstruction_test_epoch001.png').stat().st_size > 0
    assert 'rmse_stefaland' in capsys.readouterr().out

    basin_file = ROOT / 'tests' / 'configs' / 'basins_3.txt'
    output = pretrained.parent / 'embeddings.nc'
    assert cli.main(['embed', '--run-dir', str(pretrained), '--basin-file', str(basin_file), '--daily',
                     '--output', str(output)]) == 0
    embeddings = xarray.load_dataset(output)
    assert embeddings['static_embedding'].shape == (3, 16)
    assert embeddings['daily_embedding'].shape == (3, 59, 16)
    assert pd.Timestamp(embeddings['date'].values[0]) == pd.Timestamp('2001-01-01')
    assert np.isfinite(embeddings['daily_embedding'].values).all()


def test_finetuning_model_keeps_frozen_parts_in_eval_mode_without_a_graph(get_config):
    cfg = get_config('caravan_pretrain', **{**FINETUNE, 'is_finetuning': True,
                                            'dynamic_inputs': ['total_precipitation_sum', 'temperature_2m_mean',
                                                               'potential_evaporation_sum'],
                                            'stefaland_encoder_inputs': ['total_precipitation_sum',
                                                                         'temperature_2m_mean']})
    model = get_model(cfg)
    assert model.tokens.dynamic.n_variables == 2 and model.adapter.conv.in_channels == 3
    for part in ('tokens', 'encoder', 'reconstruction_decoder'):
        for parameter in getattr(model, part).parameters():
            parameter.requires_grad = False
    model.train()
    assert not model.encoder.training and not model.tokens.training and model.adapter.training
    batch = {'x_d': {name: torch.randn(2, 30, 1) for name in model.dynamic_inputs},
             'x_s': torch.randn(2, len(model.static_attributes))}
    prediction = model(batch)
    assert not prediction['embedding'].requires_grad and prediction['y_hat'].requires_grad


def test_reconstruction_hides_missing_values_and_loss_weights_parts(get_config):
    cfg = get_config('caravan_pretrain', stefaland_static_loss_weight=0.25)
    model = get_model(cfg)
    batch = {'x_d': {name: torch.randn(4, 30, 1) for name in model.dynamic_inputs},
             'x_s': torch.randn(4, len(model.static_attributes))}
    batch['x_d']['temperature_2m_mean'][0, :10] = float('nan')
    batch['x_s'][1, model.static_attributes.index('area')] = float('nan')
    output = model(batch)
    assert output['x_mask'][0, :10, 1].all() and output['static_mask'][1, 0]
    assert not output['static_mask'][[0, 2, 3], model.encoder_attributes.index('area')].any()
    assert torch.isfinite(output['x_hat']).all() and torch.isfinite(output['static_hat']).all()
    total, parts = get_loss_obj(cfg)(output, batch)
    torch.testing.assert_close(total, parts['dynamic_loss'] + 0.25 * parts['static_loss'])


def test_mlp_reconstruction_decoder_reads_each_encoder_state_alone(get_config):
    model = get_model(get_config('caravan_pretrain', stefaland_reconstruction_decoder='mlp',
                                 stefaland_min_mask_ratio=0.0))
    assert model.reconstruction_decoder.lstm is None
    assert not any('lstm' in name for name, _ in model.named_parameters())
    batch = {'x_d': {name: torch.randn(3, 30, 1) for name in model.dynamic_inputs},
             'x_s': torch.randn(3, len(model.static_attributes))}
    output = model(batch)
    assert output['x_hat'].shape == (3, 30, len(model.encoder_inputs))
    states = output['states'].detach().clone()
    # one day's state changes (not by a constant, which the LayerNorm removes): only that day's reconstruction may
    states[:, 5] += torch.linspace(-1.0, 1.0, states.shape[-1])
    changed = model.reconstruction_decoder(states)['x_hat'] != output['x_hat']
    assert changed[:, 5].all() and not changed[:, :5].any() and not changed[:, 6:].any()


def test_shipped_pretraining_and_finetuning_configs_build_their_models():
    pretrain = Config(ROOT / 'basin_configs' / 'camels_stefaland_pretrain.yml')
    model = get_model(pretrain)
    assert model.module_parts == ['tokens', 'encoder', 'reconstruction_decoder']
    assert (model.attribute_groups == -1).sum() == 1  # area is never masked
    merged = Config(ROOT / 'basin_configs' / 'camels_stefaland_pretrain.yml')
    merged.update_config(ROOT / 'basin_configs' / 'camels_stefaland_finetune.yml')
    merged.is_finetuning = True
    tuned = get_model(merged)
    assert {key.split('.')[0] for key in model.state_dict()} <= {key.split('.')[0] for key in tuned.state_dict()}
    tuned.load_state_dict(model.state_dict())
    for key, tensor in model.state_dict().items():
        assert torch.equal(tuned.state_dict()[key], tensor)


def test_the_stage_alone_makes_a_pretraining_run(get_config):
    cfg = get_config('caravan_pretrain')
    assert 'head' not in cfg.as_dict() and 'loss' not in cfg.as_dict()
    assert cfg.head == 'reconstruction' and cfg.loss == 'reconstruction'
    assert type(get_loss_obj(cfg)).__name__ == 'ReconstructionLoss'
    assert get_model(cfg).module_parts == ['tokens', 'encoder', 'reconstruction_decoder']


def test_a_written_reconstruction_head_and_loss_are_accepted_with_a_note(get_config, caplog):
    caplog.set_level(logging.INFO)
    model = get_model(get_config('caravan_pretrain', head='reconstruction', loss='reconstruction'))
    assert model.stage == 'pretrain'
    assert "head: reconstruction and loss: reconstruction can go" in caplog.text


@pytest.mark.parametrize('overrides, message', [
    ({'head': 'regression'}, "head: regression contradicts it"),
    ({'loss': 'NSE'}, "loss: NSE contradicts it"),
])
def test_a_head_or_loss_that_contradicts_pretraining_fails_clearly(get_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        get_model(get_config('caravan_pretrain', **overrides))


def test_the_stage_implies_nothing_for_other_models_and_stages(get_config):
    cfg = get_config('caravan_sample')
    assert cfg.head == 'regression'
    lstm = Config({'model': 'cudalstm', 'stefaland_stage': 'pretrain'})
    with pytest.raises(ValueError, match="head"):
        lstm.head
