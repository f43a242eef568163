"""Run by tests/test_distributed.py under torchrun: StefaLand trainings through nh_stefaland's trainers.

    torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py RUNS OUT CONFIG [CONFIG ...]

Each CONFIG is a training config, or a finetuning file (it has ``base_run_dir``) merged as ``nh-run finetune`` merges
it. Every rank saves its trained weights as ``OUT/<experiment_name>_rank<R>.pt`` and what it found about its model in
``OUT/<experiment_name>_rank<R>.json``; ranks above 0 also record every write they made below RUNS
(``OUT/writes_rank<R>.json``, through an audit hook).
"""
import json
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from neuralhydrology.training.basetrainer import BaseTrainer
from neuralhydrology.utils.config import Config

import nh_stefaland
from nh_stefaland.nh import distributed
from nh_stefaland.nh.training import FinetuneTrainer, check_finetuning

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main(runs: Path, out: Path, config_files: list[Path]):
    rank = int(os.environ['RANK'])
    writes = []
    if rank > 0:
        sys.addaudithook(_write_recorder(runs.resolve(), writes))
    nh_stefaland.register()
    dist.init_process_group('gloo')  # held across the runs: the trainers use it and leave it open
    for config_file in config_files:
        logging.getLogger().handlers.clear()  # each run its own output.log, as with one run per process
        cfg = _config(config_file)
        name = cfg.experiment_name
        trainer_class = FinetuneTrainer if cfg.is_finetuning else BaseTrainer
        if cfg.is_finetuning:
            check_finetuning(cfg)
        trainer = distributed.trainer_class(trainer_class)(cfg=cfg)
        trainer.initialize_training()
        trainer.train_and_validate()
        torch.save(trainer.model.state_dict(), out / f'{name}_rank{rank}.pt')
        trainer.model.train()
        found = {'run_dir': str(cfg.run_dir), 'wrapper': type(trainer.model).__name__,
                 'in_train_mode': {part: getattr(trainer.model.module, part).training
                                   for part in trainer.model.module_parts}}
        (out / f'{name}_rank{rank}.json').write_text(json.dumps(found))
    dist.destroy_process_group()
    if rank > 0:
        (out / f'writes_rank{rank}.json').write_text(json.dumps(writes))


def _config(config_file: Path) -> Config:
    cfg = Config(config_file)
    if cfg.as_dict().get('base_run_dir') is None:
        return cfg
    merged = Config(cfg.base_run_dir / 'config.yml')  # as nh-run finetune merges a finetuning file
    merged.update_config({'run_dir': None, 'experiment_name': None})
    merged.update_config(config_file)
    merged.is_finetuning = True
    merged.is_continue_training = False
    return merged


def _write_recorder(root: Path, writes: list):
    def record(event: str, args: tuple):
        if event == 'open':
            path, mode, flags = args
            writing = (isinstance(flags, int) and flags & WRITE_FLAGS) or any(c in str(mode) for c in 'wax+')
        elif event in ('os.mkdir', 'os.rename', 'os.remove', 'shutil.rmtree'):
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, Path)) and Path(os.path.abspath(path)).is_relative_to(root):
            writes.append([event, str(path)])

    return record


if __name__ == '__main__':
    main(Path(sys.argv[1]), Path(sys.argv[2]), [Path(arg) for arg in sys.argv[3:]])
