"""The foundation-model workflow on the shipped sample: finetune the shipped pretrained encoder, evaluate it, and
compare it with StefaLand from scratch and NH's LSTM twin on the same basins and days.

By default the encoder is the one shipped with the package (``stefaland:caravan_camels_d64``, finetuned with
``basin_configs/camels_stefaland_pretrained.yml``); with ``--pretrain`` it is pretrained on the sample first
(``camels_stefaland_pretrain.yml``, with its reconstruction table) and finetuned with
``camels_stefaland_finetune.yml``. Every stage goes through NeuralHydrology's own entry points (the functions behind
``nh-run train``, ``finetune`` and ``evaluate``). The comparison trains ``camels_stefaland.yml`` (the quickstart) and
``camels_lstm.yml`` (its LSTM twin) with the same budget and scores the three models on the days all of them predict,
as ``nh-stefaland pub`` does. The sample's basins are among the shipped encoder's pretraining basins (it saw their
forcings and attributes, never their streamflow), so this shows the workflow, not an ungauged-basin result.

    python examples/pretrain_finetune.py [--run-dir runs] [--pretrain] [--adapter resconn|none|linear|dual_residual]
                                         [--no-baselines] [--gpu N]
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
from nh_stefaland.tools.pub.scoring import FoldRun, score_folds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'basin_configs'
SHIPPED = CONFIGS / 'camels_stefaland_pretrained.yml'
PRETRAIN = CONFIGS / 'camels_stefaland_pretrain.yml'
FINETUNE = CONFIGS / 'camels_stefaland_finetune.yml'
BASELINES = {'stefaland from scratch': CONFIGS / 'camels_stefaland.yml', 'lstm twin': CONFIGS / 'camels_lstm.yml'}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--run-dir', type=Path, default=Path('runs'), help="Folder for every run (default: runs).")
    parser.add_argument('--pretrain', action='store_true',
                        help="Pretrain on the sample first instead of finetuning the shipped encoder.")
    parser.add_argument('--adapter', choices=('resconn', 'none', 'linear', 'dual_residual'), default=None,
                        help="Finetuning adapter (default: the finetuning config's).")
    parser.add_argument('--no-baselines', action='store_true', help="Skip StefaLand from scratch and the LSTM.")
    parser.add_argument('--gpu', type=int, default=None, help="GPU id as in nh-run (default: the configs' device).")
    args = parser.parse_args()
    os.chdir(ROOT)  # the configs' data paths are relative to the project root
    run_dir = args.run_dir.resolve()
    yaml = YAML(typ='safe')
    timings, runs = {}, {}

    with tempfile.TemporaryDirectory() as folder:
        def written(config: Path, **changes) -> Path:
            path = Path(folder) / config.name
            yaml.dump({**yaml.load(config), 'run_dir': str(run_dir), **changes}, path)
            return path

        finetune_changes = {} if args.adapter is None else {'stefaland_adapter': args.adapter}
        if args.pretrain:
            pretrained, timings['pretraining'] = _new_run(run_dir, 'camels_stefaland_pretrain',
                                                          lambda: start_run(written(PRETRAIN), gpu=args.gpu))
            cli.main(['reconstruct', '--run-dir', str(pretrained), '--period', 'test'])
            finetune_config = written(FINETUNE, base_run_dir=str(pretrained), **finetune_changes)
            experiment = 'camels_stefaland_finetune'
        else:
            cli.main(['pretrained', 'caravan_camels_d64'])
            finetune_config = written(SHIPPED, **finetune_changes)
            experiment = 'camels_stefaland_pretrained'
        runs['stefaland pretrained'], timings['finetuning'] = _new_run(
            run_dir, experiment, lambda: finetune(finetune_config, gpu=args.gpu))
        for label, config in ({} if args.no_baselines else BASELINES).items():
            name = yaml.load(config)['experiment_name']
            runs[label], timings[label] = _new_run(run_dir, name, lambda: start_run(written(config), gpu=args.gpu))

    for label, folder in runs.items():
        start = time.perf_counter()
        eval_run(folder, period='test', gpu=args.gpu)
        timings[f'{label} test'] = time.perf_counter() - start

    print()
    for label, folder in runs.items():
        print(f"{label + ':':24s}{folder}")
    print(f"\nTest period, the days every model predicts ({len(runs)} models):")
    print(compare(runs).to_string(float_format=lambda value: f'{value:.3f}'))
    print("Wall times: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))


def compare(runs: dict[str, Path]) -> pd.DataFrame:
    """Median NSE and KGE per model over the basins, each basin scored on the days every model predicts."""
    fold_runs = []
    for label, folder in runs.items():
        cfg = YAML(typ='safe').load(folder / 'config.yml')
        results = sorted(folder.glob('test/model_epoch*/test_results.p'))[-1]
        target = cfg['target_variables'][0]
        fold_runs.append(FoldRun(label=label, fold=1, seed=0, results_file=results, target=target,
                                 clip_to_zero=target in (cfg.get('clip_targets_to_zero') or [])))
    scores = score_folds(fold_runs, pd.DataFrame({'basin': [], 'fold': [], 'group': []}))
    table = scores.groupby('model', sort=False)[['NSE', 'KGE']].median().add_prefix('median ')
    table['basins'] = scores.groupby('model', sort=False)['basin'].nunique()
    table['days per basin'] = scores.groupby('model', sort=False)['days'].median().astype(int)
    return table


def _new_run(run_dir: Path, experiment: str, start) -> tuple[Path, float]:
    """Run ``start`` and return the run folder it created (NH adds a time stamp to the name) and its wall time."""
    before = set(run_dir.glob(f'{experiment}_*'))
    started = time.perf_counter()
    start()
    created, = set(run_dir.glob(f'{experiment}_*')) - before
    return created, time.perf_counter() - started


if __name__ == '__main__':
    main()
