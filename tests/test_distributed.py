"""Training on 2 processes (torchrun, gloo on the CPU): one run folder, plain checkpoints, same weights on every rank,
the loss curve of one process with the same global batch; other NH models and bad batch sizes refused."""
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

from neuralhydrology.evaluation.evaluate import start_evaluation
from neuralhydrology.training.basetrainer import BaseTrainer
from neuralhydrology.training.train import start_training
from neuralhydrology.utils.config import Config

from nh_stefaland.nh import distributed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
YAML_SAFE = YAML(typ='safe')
# full batch (276 training windows, 138 per process), no dropout: one process and two compute the same updates
FULL_BATCH = {'experiment_name': 'full_batch', 'batch_size': 276, 'epochs': 3, 'max_updates_per_epoch': 1,
              'stefaland_dropout': 0.0, 'stefaland_token_dropout': 0.0, 'stefaland_attention_dropout': 0.0}
FINETUNE = {'experiment_name': 'finetune', 'stefaland_stage': 'finetune', 'head': 'regression', 'loss': 'NSE',
            'metrics': ['NSE'], 'predict_last_n': 5, 'finetune_modules': ['adapter', 'decoder', 'head'],
            'validate_every': None}


def _config_file(folder: Path, name: str, **overrides) -> Path:
    cfg = YAML_SAFE.load(ROOT / 'tests' / 'configs' / f'{name}.yml')
    for key in ('data_dir', 'train_basin_file', 'validation_basin_file', 'test_basin_file'):
        cfg[key] = str(ROOT / cfg[key])
    cfg.update({'run_dir': str(folder / 'runs'), **overrides})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{cfg["experiment_name"]}.yml'
    YAML_SAFE.dump(cfg, path)
    return path


def _torchrun(folder: Path, *args) -> subprocess.CompletedProcess:
    """torchrun on 2 processes whose temporary files go to ``folder/tmp`` (made here), and nowhere else."""
    (folder / 'tmp').mkdir()
    command = [BIN / 'torchrun', '--standalone', '--nproc_per_node=2', *args]
    result = subprocess.run([str(a) for a in command], capture_output=True, text=True,
                            env={**os.environ, 'TMPDIR': str(folder / 'tmp')})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _epoch_losses(log: str) -> list[float]:
    return [float(value) for value in re.findall(r'Epoch \d+ average loss: .*avg_total_loss: ([-\d.]+)', log)]


def _files(run_dir: Path) -> set[str]:
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob('*')}


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory) -> Path:
    """A pretraining run (validated every epoch, TensorBoard on) by `torchrun … nh-run train` on 2 processes."""
    folder = tmp_path_factory.mktemp('pretrain')
    config = _config_file(folder, 'caravan_pretrain', log_tensorboard=True)
    _torchrun(folder, BIN / 'nh-run', 'train', '--config-file', config)
    run_dir, = (folder / 'runs').iterdir()
    return run_dir


@pytest.fixture(scope='module')
def workers(tmp_path_factory, pretrained) -> Path:
    """tests/distributed_worker.py on 2 processes: a full-batch supervised run, then a finetuning of ``pretrained``."""
    folder = tmp_path_factory.mktemp('workers')
    supervised = _config_file(folder, 'caravan_sample', **FULL_BATCH)
    finetune = folder / 'finetune.yml'
    YAML_SAFE.dump({**FINETUNE, 'base_run_dir': str(pretrained), 'run_dir': str(folder / 'runs')}, finetune)
    (folder / 'out').mkdir()
    _torchrun(folder, ROOT / 'tests' / 'distributed_worker.py', folder / 'runs', folder / 'out', supervised, finetune)
    return folder


def _run_dir(workers: Path, name: str) -> Path:
    run_dir, = (workers / 'runs').glob(f'{name}_*')
    return run_dir


def test_torchrun_nh_run_writes_one_run_folder_with_a_plain_checkpoint(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert {'config.yml', 'output.log', 'model_epoch001.pt', 'optimizer_state_epoch001.pt',
            'train_data/train_data_scaler.yml'} <= _files(pretrained)
    assert len(list(pretrained.glob('events.out.tfevents.*'))) == 1
    state = torch.load(pretrained / 'model_epoch001.pt')
    assert {key.split('.')[0] for key in state} == {'tokens', 'encoder', 'reconstruction_decoder'}
    assert Config(pretrained / 'config.yml').batch_size == 32  # the global batch, as configured
    events = EventAccumulator(str(pretrained))
    events.Reload()
    value, = events.Scalars('valid/avg_total_loss')
    assert np.isfinite(value.value)
    assert not list((pretrained.parents[1] / 'tmp').glob('nh_stefaland_rank*'))  # rank 1's private run folder is gone


def test_two_processes_follow_one_process_with_the_same_global_batch(workers, tmp_path, caplog):
    reference = Config(_config_file(tmp_path, 'caravan_sample', **FULL_BATCH))
    with caplog.at_level(logging.INFO):
        start_training(reference)  # its log goes to pytest's handler, not to output.log
    run_dir = _run_dir(workers, 'full_batch')
    losses, expected = _epoch_losses((run_dir / 'output.log').read_text()), _epoch_losses(caplog.text)
    assert len(losses) == 3 and losses[0] > losses[-1]
    np.testing.assert_allclose(losses, expected, rtol=1e-4)
    two, one = torch.load(run_dir / 'model_epoch003.pt'), torch.load(reference.run_dir / 'model_epoch003.pt')
    assert two.keys() == one.keys()
    # Adam turns rounding noise in gradients that are exactly 0 (the attention's key bias) into steps of up to the
    # learning rate (1e-3): a tenth of one step is the tolerance
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-4, rtol=1e-4)
    assert _files(run_dir) == _files(reference.run_dir)


@pytest.mark.parametrize('name', ['full_batch', 'finetune'])
def test_both_ranks_end_with_identical_weights(workers, name):
    out = workers / 'out'
    rank0, rank1 = torch.load(out / f'{name}_rank0.pt'), torch.load(out / f'{name}_rank1.pt')
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    checkpoint = torch.load(_run_dir(workers, name) / 'model_epoch001.pt')
    assert not [key for key in checkpoint if key.startswith('module.')]


def test_finetuning_keeps_the_frozen_encoder_and_its_eval_mode(workers, pretrained):
    found = json.loads((workers / 'out' / 'finetune_rank1.json').read_text())
    assert found['wrapper'] == 'DistributedModel'
    assert found['in_train_mode'] == {'tokens': False, 'encoder': False, 'reconstruction_decoder': False,
                                      'adapter': True, 'decoder': True, 'head': True}
    base, tuned = torch.load(pretrained / 'model_epoch001.pt'), torch.load(workers / 'out' / 'finetune_rank1.pt')
    for key in base:
        assert torch.equal(base[key], tuned[key]), key
    assert {key.split('.')[0] for key in tuned.keys() - base.keys()} == {'adapter', 'decoder', 'head'}


def test_rank_1_writes_nothing_to_the_runs_folder(workers):
    assert json.loads((workers / 'out' / 'writes_rank1.json').read_text()) == []
    found = json.loads((workers / 'out' / 'full_batch_rank1.json').read_text())
    assert Path(found['run_dir']).parent == workers / 'tmp'  # its private folder was made in this run's TMPDIR
    assert not Path(found['run_dir']).exists() and not list((workers / 'tmp').glob('nh_stefaland_rank*'))  # gone
    assert len(list((workers / 'runs').iterdir())) == 2


def test_the_distributed_checkpoint_evaluates_with_nh(workers):
    run_dir = _run_dir(workers, 'full_batch')
    cfg = Config(run_dir / 'config.yml')
    start_evaluation(cfg=cfg, run_dir=run_dir, epoch=3, period='test')
    with (run_dir / 'test' / 'model_epoch003' / 'test_results.p').open('rb') as fp:
        results = pickle.load(fp)
    assert len(results) == 3
    for basin in results.values():
        assert not np.isnan(basin['1D']['xr']['streamflow_sim'].values).any()


def test_other_nh_models_refuse_several_processes(get_config, monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ValueError, match=r'model: cudalstm cannot train on several processes \(WORLD_SIZE=2\)'):
        start_training(get_config('caravan_sample', model='cudalstm'))


def test_batch_size_must_split_evenly():
    assert distributed.local_batch_size(256, 4) == 64
    with pytest.raises(ValueError, match=r'batch_size=30 must be divisible .* \(WORLD_SIZE=4\)'):
        distributed.local_batch_size(30, 4)


def test_one_process_keeps_nh_trainer(monkeypatch):
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    assert distributed.trainer_class(BaseTrainer) is BaseTrainer
    monkeypatch.setenv('WORLD_SIZE', '1')
    assert distributed.trainer_class(BaseTrainer) is BaseTrainer
    monkeypatch.setenv('WORLD_SIZE', '2')
    assert issubclass(distributed.trainer_class(BaseTrainer), (distributed.DistributedTraining, BaseTrainer))


@pytest.mark.parametrize('gpus', [0, 2])
def test_each_rank_takes_its_device_before_the_first_collective(get_config, monkeypatch, gpus):
    """Rank 1 of 2, with the collectives recorded: on GPUs (what would run on CUDA) it must be on cuda:1, in its
    config too, before NCCL starts; on the CPU (gloo) the config keeps its device."""
    calls = []
    monkeypatch.setenv('WORLD_SIZE', '2')
    monkeypatch.setenv('RANK', '1')
    monkeypatch.setenv('LOCAL_RANK', '1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: gpus)
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: calls.append(('set_device', str(device))))
    monkeypatch.setattr(distributed.dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(distributed.dist, 'init_process_group',
                        lambda backend, timeout: calls.append(('init_process_group', backend)))
    monkeypatch.setattr(distributed, '_broadcast', lambda value: calls.append(('broadcast',)) or value or 1)
    cfg = get_config('caravan_sample', device='cuda:0' if gpus else 'cpu')
    handlers = logging.getLogger().handlers[:]
    try:
        trainer = distributed.trainer_class(BaseTrainer)(cfg=cfg)
    finally:
        logging.getLogger().handlers = handlers  # NH's setup_logging added the rank's output.log
    shutil.rmtree(trainer._private_dir)
    first_collective = calls.index(('broadcast',))
    if gpus:
        assert calls[:2] == [('set_device', 'cuda:1'), ('init_process_group', 'nccl')] and first_collective == 2
        assert cfg.device == 'cuda:1' and trainer.device == torch.device('cuda', 1)
    else:
        assert calls[0] == ('init_process_group', 'gloo') and ('set_device', 'cuda:1') not in calls
        assert cfg.device == 'cpu' and trainer.device == torch.device('cpu')
