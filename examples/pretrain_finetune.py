"""Pretrain StefaLand on the shipped sample, look at its reconstructions, finetune it to streamflow and evaluate.

Both stages go through NeuralHydrology's own entry points (the functions behind `nh-run train`, `nh-run finetune`
and `nh-run evaluate`) with the configs in basin_configs/; the paths of everything written are printed at the end.

    python examples/pretrain_finetune.py [--run-dir runs] [--adapter resconn|none|linear|dual_residual]
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from neuralhydrology.nh_run import eval_run, finetune, start_run

from nh_stefaland.tools import cli

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / 'basin_configs' / 'camels_stefaland_pretrain.yml'
FINETUNE = ROOT / 'basin_configs' / 'camels_stefaland_finetune.yml'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--run-dir', type=Path, default=Path('runs'), help="Folder for both runs (default: runs).")
    parser.add_argument('--adapter', choices=('resconn', 'none', 'linear', 'dual_residual'), default=None,
                        help="Finetuning adapter (default: the finetuning config's).")
    parser.add_argument('--gpu', type=int, default=None, help="GPU id as in nh-run (default: the configs' device).")
    args = parser.parse_args()
    os.chdir(ROOT)  # the configs' data paths are relative to the project root
    run_dir = args.run_dir.resolve()
    yaml = YAML(typ='safe')
    timings = {}

    with tempfile.TemporaryDirectory() as folder:
        pretrain_config = Path(folder) / 'pretrain.yml'
        yaml.dump({**yaml.load(PRETRAIN), 'run_dir': str(run_dir)}, pretrain_config)
        pretrained, timings['pretraining'] = _new_run(run_dir, 'camels_stefaland_pretrain',
                                                      lambda: start_run(pretrain_config, gpu=args.gpu))

        start = time.perf_counter()
        cli.main(['reconstruct', '--run-dir', str(pretrained), '--period', 'test'])
        timings['reconstruction table'] = time.perf_counter() - start

        settings = {**yaml.load(FINETUNE), 'run_dir': str(run_dir), 'base_run_dir': str(pretrained)}
        if args.adapter is not None:
            settings['stefaland_adapter'] = args.adapter
        finetune_config = Path(folder) / 'finetune.yml'
        yaml.dump(settings, finetune_config)
        finetuned, timings['finetuning'] = _new_run(run_dir, 'camels_stefaland_finetune',
                                                    lambda: finetune(finetune_config, gpu=args.gpu))

    start = time.perf_counter()
    eval_run(finetuned, period='test', gpu=args.gpu)
    timings['test evaluation'] = time.perf_counter() - start
    metrics_file = sorted(finetuned.glob('test/model_epoch*/test_metrics.csv'))[-1]
    metrics = pd.read_csv(metrics_file, dtype={'basin': str}).set_index('basin')

    print(f"\nPretraining run:      {pretrained}")
    print(f"Reconstruction table: {sorted(pretrained.glob('reconstruction_test_epoch*.csv'))[-1]}")
    print(f"Finetuned run:        {finetuned}")
    print(f"Test metrics:         {metrics_file}")
    print(f"Median test NSE over {len(metrics)} basins: {metrics['NSE'].median():.3f}")
    print("Wall times: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))


def _new_run(run_dir: Path, experiment: str, start) -> tuple[Path, float]:
    """Run ``start`` and return the run folder it created (NH adds a time stamp to the name) and its wall time."""
    before = set(run_dir.glob(f'{experiment}_*'))
    started = time.perf_counter()
    start()
    created, = set(run_dir.glob(f'{experiment}_*')) - before
    return created, time.perf_counter() - started


if __name__ == '__main__':
    main()
