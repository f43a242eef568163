"""The pretrained encoder shipped with the package: finetuning it by name, its errors, listing, embeddings, pub."""
import argparse
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import xarray
from ruamel.yaml import YAML

from neuralhydrology.nh_run import eval_run, finetune
from neuralhydrology.utils.config import Config

from nh_stefaland import pretrained
from nh_stefaland.tools import cli
from nh_stefaland.tools.pub import cli as pub, plan as pub_plan, report as pub_report, runs as pub_runs
from nh_stefaland.tools.pub import settings as pub_settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'examples' / 'data' / 'caravan_camels_sample'
NAME = 'caravan_camels_d64'
TEST_BASINS = ['camels_01022500', 'camels_01632900', 'camels_02177000', 'camels_03173000', 'camels_04045500',
               'camels_05120500']


def _finetune_config(tmp_path: Path, **changes) -> Path:
    """basin_configs/camels_stefaland_pretrained.yml, shrunk to a few updates on a few basins, in ``tmp_path``."""
    yaml = YAML()
    settings = yaml.load(ROOT / 'basin_configs' / 'camels_stefaland_pretrained.yml')
    basins = tmp_path / 'basins.txt'
    basins.write_text('\n'.join(TEST_BASINS) + '\n')
    settings.update({'run_dir': str(tmp_path / 'runs'), 'data_dir': str(SAMPLE), 'train_basin_file': str(basins),
                     'validation_basin_file': str(basins), 'test_basin_file': str(basins),
                     'test_start_date': '01/10/1993', 'test_end_date': '30/09/1995', 'epochs': 1,
                     'max_updates_per_epoch': 3, 'batch_size': 8, 'validate_every': None,
                     'stefaland_cache_states': False, 'log_tensorboard': False, **changes})
    path = tmp_path / 'finetune.yml'
    yaml.dump(settings, path)
    return path


def test_the_shipped_encoder_is_a_small_target_free_nh_run_folder_with_a_manifest_and_card():
    assert NAME in pretrained.names()
    folder = pretrained.resolve(f'stefaland:{NAME}')
    manifest = pretrained.manifest(NAME)
    weights = pretrained.weight_file(folder)
    assert manifest['sha256'] == pretrained.sha256(weights) and weights.stat().st_size < 5e6
    scaler = YAML(typ='safe').load(folder / 'train_data' / 'train_data_scaler.yml')
    assert 'streamflow' not in str(scaler)  # no target statistics
    cfg = Config(folder / 'config.yml')
    assert cfg.stefaland_stage == 'pretrain' and 'epochs' not in cfg.as_dict()
    assert (folder / 'MODEL_CARD.md').is_file() and set(TEST_BASINS) <= set(manifest['basins'])
    assert len((folder / 'basins.txt').read_text().split()) == len(manifest['basins'])


def test_nh_run_finetune_by_name_trains_records_the_encoder_and_evaluates_every_test_basin(tmp_path):
    finetune(_finetune_config(tmp_path))
    run_dir, = (tmp_path / 'runs').glob('camels_stefaland_pretrained_*')
    record = json.loads((run_dir / 'base_run.json').read_text())
    manifest = pretrained.manifest(NAME)
    assert record['name'] == NAME and record['version'] == manifest['version']
    assert record['sha256'] == manifest['sha256'] and record['matches_manifest']
    assert Config(run_dir / 'config.yml').as_dict()['base_run_dir'] == Path(f'stefaland:{NAME}')
    shipped = torch.load(pretrained.weight_file(pretrained.resolve(f'stefaland:{NAME}')))
    finetuned = torch.load(run_dir / 'model_epoch001.pt')
    assert all(torch.equal(shipped[key], finetuned[key]) for key in shipped if key.startswith('encoder.'))
    eval_run(run_dir, period='test')
    metrics = pd.read_csv(run_dir / 'test' / 'model_epoch001' / 'test_metrics.csv', dtype={'basin': str})
    assert sorted(metrics['basin']) == sorted(TEST_BASINS) and metrics['NSE'].notna().all()


def test_an_unknown_encoder_name_is_an_error_naming_the_shipped_ones(tmp_path):
    with pytest.raises(ValueError, match=rf"stefaland:nope is not a shipped pretrained encoder; shipped: .*{NAME}"):
        finetune(_finetune_config(tmp_path, base_run_dir='stefaland:nope'))


def test_inputs_that_do_not_match_the_encoder_are_an_error_naming_the_missing_and_the_extra(tmp_path):
    inputs = ['total_precipitation_sum', 'temperature_2m_mean', 'pet']
    with pytest.raises(ValueError, match=r"reads \['potential_evaporation_sum'\], which this config does not load.*"
                                         r"loads \['pet'\], which the encoder was not pretrained on"):
        finetune(_finetune_config(tmp_path, dynamic_inputs=inputs))
    assert not list((tmp_path / 'runs').glob('*/model_epoch*.pt'))


def test_pretrained_command_lists_names_inputs_attributes_and_size(capsys):
    assert cli.main(['pretrained']) == 0
    text = capsys.readouterr().out
    manifest = pretrained.manifest(NAME)
    assert f'stefaland:{NAME}' in text and 'potential_evaporation_sum' in text and 'soil_porosity' in text
    assert f"{manifest['size_bytes'] / 1e6:.2f} MB" in text and f"{len(manifest['basins'])} basins" in text
    assert cli.main(['pretrained', NAME]) == 0 and 'MODEL_CARD.md' in capsys.readouterr().out
    with pytest.raises(ValueError, match='not a shipped pretrained encoder'):
        cli.main(['pretrained', 'nope'])


def test_embed_takes_the_shipped_encoder_by_name_and_other_data(tmp_path):
    basins = tmp_path / 'basins.txt'
    basins.write_text('\n'.join(TEST_BASINS[:2]) + '\n')
    output = tmp_path / 'embeddings.nc'
    assert cli.main(['embed', '--run-dir', f'stefaland:{NAME}', '--basin-file', str(basins), '--data-dir',
                     str(SAMPLE), '--start-date', '01/10/1993', '--end-date', '30/09/1995',
                     '--output', str(output)]) == 0
    embeddings = xarray.open_dataset(output)
    assert embeddings['static_embedding'].shape == (2, 64)
    assert bool(embeddings['static_embedding'].notnull().all())
    assert embeddings.attrs['sha256'] == pretrained.manifest(NAME)['sha256']


def test_pub_finetunes_the_shipped_encoder_per_fold_and_says_what_it_saw(tmp_path):
    config = tmp_path / 'shipped.yml'
    YAML().dump({'base_run_dir': f'stefaland:{NAME}', 'stefaland_stage': 'finetune', 'head': 'regression',
                 'loss': 'NSE', 'metrics': ['NSE'], 'target_variables': ['streamflow'], 'predict_last_n': 30,
                 'finetune_modules': ['adapter', 'decoder', 'head'], 'data_dir': str(SAMPLE)}, config)
    basins = tmp_path / 'basins.txt'
    basins.write_text('\n'.join(TEST_BASINS) + '\n')
    parser = argparse.ArgumentParser()
    pub.add_arguments(parser)
    command = ['--model', f'ft={config}', '--basin-file', str(basins), '--output-dir', str(tmp_path / 'pub'),
               '--folds', '3']
    settings, models = pub_settings.settings_from(parser.parse_args(command))
    assert settings['models']['ft']['shipped'] == {'name': NAME, 'version': pretrained.manifest(NAME)['version'],
                                                   'sha256': pretrained.manifest(NAME)['sha256'], 'basins_seen': 6}
    folds = pub_plan.load_or_make_folds(settings, tmp_path / 'pub')
    pretraining, final = pub_plan.plan(settings, models, folds, tmp_path / 'pub')
    assert not pretraining and len(final) == 3
    cfg = pub_runs._stage_config(final[0])
    assert cfg.is_finetuning and cfg.base_run_dir == pretrained.resolve(f'stefaland:{NAME}')
    assert cfg.seq_length == pretrained.manifest(NAME)['architecture']['seq_length']
    assert cfg.train_basin_file == final[0].basin_files['train'] and cfg.data_dir == SAMPLE
    pub_settings.save_settings(settings, tmp_path / 'pub')
    report = pub_report.write_report(tmp_path / 'pub').read_text()
    assert f"finetunes the shipped encoder stefaland:{NAME}" in report and "saw 6 of these basins" in report
    with pytest.raises(ValueError, match=r"was pretrained on 6 of these basins .*--pretrain-exclude-held-out"):
        pub_settings.settings_from(parser.parse_args([*command, '--pretrain-exclude-held-out']))


def test_packaging_reads_losses_and_compute_time_from_the_log_without_the_pause_of_a_resumed_run(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / 'benchmarks' / 'pretrained'))
    import packaging_steps

    log = tmp_path / 'output.log'
    lines = ["2026-12-02 10:00:00,000: Logging to output.log initialized.",
             "2026-12-02 10:01:00,000: Epoch 1 average loss: avg_dynamic_loss: 0.70000, avg_static_loss: 0.60000, "
             "avg_total_loss: 1.00000",
             "2026-12-02 10:01:05,000: Epoch 1 validation reconstruction loss: dynamic: 0.65000, static: 0.55000, "
             "total: 0.92500",
             "2026-12-02 10:02:00,000: Epoch 2 average loss: avg_dynamic_loss: 0.50000, avg_static_loss: 0.40000, "
             "avg_total_loss: 0.70000",
             "2026-12-03 09:00:00,000: Continuing training from epoch 2",
             "2026-12-03 09:01:30,000: Epoch 3 average loss: avg_dynamic_loss: 0.45000, avg_static_loss: 0.35000, "
             "avg_total_loss: 0.62500",
             "2026-12-03 09:03:00,000: Epoch 4 average loss: avg_dynamic_loss: 0.44000, avg_static_loss: 0.34000, "
             "avg_total_loss: 0.61000"]
    log.write_text('\n'.join(lines) + '\n')
    parsed = packaging_steps.training_log(log, last_epoch=3)
    assert parsed['epochs']['epoch'].tolist() == [1, 2, 3]
    assert parsed['epochs']['dynamic'].tolist() == [0.7, 0.5, 0.45]
    assert parsed['validation'][['epoch', 'static']].values.tolist() == [[1, 0.55]]
    assert parsed['seconds'] == 60 + 5 + 55 + 90  # not the pause before the continuation, nor epoch 4


def test_reconstruct_takes_the_shipped_encoder_by_name_and_writes_to_the_working_directory(tmp_path, monkeypatch):
    basins = tmp_path / 'basins.txt'
    basins.write_text('\n'.join(TEST_BASINS) + '\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(['reconstruct', '--run-dir', f'stefaland:{NAME}', '--data-dir', str(SAMPLE), '--basin-file',
                     str(basins), '--period', 'validation']) == 0
    epoch = pretrained.manifest(NAME)['epoch']
    table = pd.read_csv(tmp_path / f'{NAME}_reconstruction_validation_epoch{epoch:03d}.csv', index_col=0)
    assert {'total_precipitation_sum', 'soil_porosity'} <= set(table.index)
    assert not list(pretrained.resolve(f'stefaland:{NAME}').glob('reconstruction_*'))
