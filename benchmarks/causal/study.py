"""Is StefaLand's lead over the LSTM architecture or future forcing? The arms of the causal study, through pub.

Every trained arm of :data:`ARMS` is one model of one ``nh-stefaland pub`` run on the 382 CAMELS-US basins split
into 5 seeded random folds (seed 0), with the configs and budget of the pretraining study's confirmation
(``benchmarks/pretraining/``: ``../ungauged/`` configs, 800 updates of 64 windows of 365 days). The arm of
:data:`RESCORED` trains nothing: it evaluates the finished runs of another arm again with changed settings (here
StefaLand from scratch with NH's one-window-per-day tester, which scores each window's last day: the bidirectional
model with no later day in view) and writes them as runs of its own label, which pub's report reads like any other.
The arms of :data:`FINETUNED` pretrain an encoder (the pretraining study's ``base`` recipe, one pretraining shared by
the folds) in either direction and finetune it frozen, on cached states, as that study's ``base`` arm; they are not
part of the default arms (stage 2: ``--arms pretrained,pretrained_causal``, with ``--fold`` for a subset).

The script works fold by fold, one process (a shared CPU), and after each fold rebuilds pub's report and this
study's summary (``summarise.py``); calling it again skips what is finished:

    python benchmarks/causal/study.py --data-dir ../shared/data/caravan_camels --summary benchmarks/causal/results
"""
import argparse
import importlib.util
import json
import logging
import shutil
import sys
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from ruamel.yaml import YAML

from neuralhydrology.evaluation import evaluate as nh_evaluate
from neuralhydrology.utils.config import Config

from nh_stefaland.tools import cli
from nh_stefaland.tools.pub.report import REPORT_METRICS, STATUS_FILE, read_status

HERE = Path(__file__).resolve().parent
FOLDS = 5


def _module(path: Path, name: str):
    """A module of the benchmarks by file (the pretraining study has a study.py as well)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PRETRAINING = _module(HERE.parent / 'pretraining' / 'study.py', 'pretraining_study')  # configs, budgets

# trained arm: (benchmark config, changes to it, updates)
ARMS = {
    'lstm': ('lstm.yml', {}, 800),
    'scratch': ('stefaland.yml', {'stefaland_causal': False}, 800),  # strided evaluation: up to 179 later days seen
    'causal': ('stefaland.yml', {'stefaland_causal': True}, 800),
}
# re-evaluated arm: (arm whose runs it evaluates again, changes to their config)
# (predict_last_n 1: NH's tester keeps only the last step, the one it scores, not 180 per day)
RESCORED = {'scratch_last_day': ('scratch', {'stefaland_strided_evaluation': False, 'predict_last_n': 1})}
# pretrained + finetuned arm: (changes to the pretraining recipe, changes to the finetuning config, updates); the
# finetuning config leaves stefaland_causal unset, so it inherits its encoder's
FINETUNED = {
    'pretrained': ({'stefaland_causal': False}, {'stefaland_cache_states': True}, 800),
    'pretrained_causal': ({'stefaland_causal': True}, {'stefaland_cache_states': True}, 800),
}
STAGE_1 = [*ARMS, *RESCORED]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arms', default=','.join(STAGE_1),
                        help=f"Comma-separated arms, of {[*STAGE_1, *FINETUNED]} (default: {STAGE_1}).")
    parser.add_argument('--data-dir', type=Path,
                        help="The caravan_camels folder (382 basins), if not the configs' "
                             "../shared/data/caravan_camels.")
    parser.add_argument('--train-fraction', type=float, default=1.0)
    parser.add_argument('--output-dir', type=Path, help="Default: runs/causal/fraction_<F>.")
    parser.add_argument('--fold', type=int, action='append', help=f"Folds to run, in this order (default: 1…{FOLDS}).")
    parser.add_argument('--seeds', type=int, default=1)
    parser.add_argument('--first-seed', type=int, default=0, metavar='K')
    parser.add_argument('--summary', type=Path, metavar='DIR',
                        help="After each fold, write summarise.py's tables and plot to DIR.")
    args = parser.parse_args()

    arms = args.arms.split(',')
    unknown = sorted(set(arms) - set(STAGE_1) - set(FINETUNED))
    if unknown:
        parser.error(f"--arms: no arm {unknown}; choose from {[*STAGE_1, *FINETUNED]}.")
    missing = sorted({RESCORED[arm][0] for arm in arms if arm in RESCORED} - set(arms))
    if missing:
        parser.error(f"--arms: {[arm for arm in arms if arm in RESCORED]} evaluate the runs of {missing}: add it.")
    output_dir = args.output_dir or Path('runs/causal') / f'fraction_{args.train_fraction:g}'
    models = []
    for arm in (arm for arm in arms if arm in ARMS):
        config, changes, updates = ARMS[arm]
        path = PRETRAINING.write_config(PRETRAINING.BENCHMARK / config, {**changes, **PRETRAINING.BUDGETS[updates]},
                                        output_dir / 'configs' / f'{arm}.yml')
        models += ['--model', f'{arm}={path}']
    for arm in (arm for arm in arms if arm in FINETUNED):
        pretraining, changes, updates = FINETUNED[arm]
        path = PRETRAINING.write_config(PRETRAINING.BENCHMARK / 'stefaland_finetune.yml',
                                        {**changes, **PRETRAINING.BUDGETS[updates]},
                                        output_dir / 'configs' / f'{arm}.yml')
        encoder = PRETRAINING.write_config(PRETRAINING.BENCHMARK / 'stefaland_pretrain.yml',
                                           {**PRETRAINING.PRETRAINING['base'], **pretraining},
                                           output_dir / 'configs' / f'pretrain_{arm}.yml')
        models += ['--model', f'{arm}={path}', '--pretrain', f'{arm}={encoder}']
    data = ['--data-dir', str(args.data_dir)] if args.data_dir else []
    common = ['--basin-file', str((args.data_dir or PRETRAINING.DEFAULT_DATA) / 'basins.txt'), *data, '--output-dir',
              str(output_dir), '--folds', str(FOLDS), '--seed', '0', '--jobs', '1', '--train-fraction',
              str(args.train_fraction), '--seeds', str(args.seeds), '--first-seed', str(args.first_seed)]
    # maps and hydrographs of the pairs with StefaLand from scratch (when it is a model of the folder)
    figures = ['--figures-for', 'scratch'] if 'scratch' in arms or (output_dir / 'runs' / 'scratch').is_dir() else []
    failed = 0
    for fold in args.fold or range(1, FOLDS + 1):
        failed |= cli.main(['pub', *models, *common, '--fold', str(fold), *figures])
        for arm in (arm for arm in arms if arm in RESCORED):
            source, changes = RESCORED[arm]
            rescore(output_dir, source, arm, changes, fold)
        cli.main(['pub', '--report-only', str(output_dir), *figures])
        if args.summary is not None:
            _module(HERE / 'summarise.py', 'causal_summarise').summarise(output_dir, args.summary)
    return failed


def rescore(output_dir: Path, source: str, label: str, changes: dict, fold: int) -> None:
    """Evaluate the finished runs of arm ``source`` in ``fold`` (every seed) again, with ``changes`` to their config,
    as runs of ``label``: a copy of each NH run folder (config, scaler, weights; not its evaluations) in
    ``runs/<label>/<fold_NN…>/`` with a pub status, skipped when done from the same source run."""
    for status_file in sorted((output_dir / 'runs' / source).glob(f'fold_{fold:02d}*/{STATUS_FILE}')):
        status = read_status(status_file.parent)
        if status['state'] != 'done':
            continue
        directory = output_dir / 'runs' / label / status_file.parent.name
        done = read_status(directory)
        if done is not None and done['state'] == 'done' and done.get('source_fingerprint') == status['fingerprint']:
            continue
        if directory.exists():
            shutil.rmtree(directory)
        source_run = (status_file.parent / status['run_dir']).resolve()
        run_dir = directory / source_run.name
        shutil.copytree(source_run, run_dir, ignore=shutil.ignore_patterns('test', 'validation', 'optimizer_state*',
                                                                            'output.log'))
        _change_config(run_dir / 'config.yml', {**changes, 'run_dir': str(run_dir)})
        start = time.perf_counter()
        with _output_to(directory / 'pub.log'):
            cfg = Config(run_dir / 'config.yml')
            cfg.metrics = list(cfg.metrics) + [metric for metric in REPORT_METRICS if metric not in cfg.metrics]
            nh_evaluate.start_evaluation(cfg=cfg, run_dir=run_dir, epoch=None, period='test')
        metrics_file = sorted((run_dir / 'test').glob('model_epoch*/test_metrics.csv'))[-1]
        record = {'state': 'done', 'run_dir': str(run_dir.relative_to(directory)), 'target': status['target'],
                  'metrics_file': str(metrics_file.relative_to(directory)),
                  'seconds': round(time.perf_counter() - start, 1), 'label': label, 'name': directory.name,
                  'log': 'pub.log', 'source': f'{source}/{status_file.parent.name}',
                  'source_fingerprint': status['fingerprint'], 'changes': changes}
        (directory / STATUS_FILE).write_text(json.dumps(record, indent=1))
        print(f"{label} {directory.name}: {source}'s run evaluated with {changes} in {record['seconds'] / 60:.1f} min")


def _change_config(path: Path, changes: dict) -> None:
    yaml = YAML()
    cfg = yaml.load(path)
    cfg.update(changes)
    yaml.dump(cfg, path)


@contextmanager
def _output_to(log_file: Path):
    """Logging, stdout and stderr of one evaluation into ``log_file``."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    with log_file.open('w') as stream, redirect_stdout(stream), redirect_stderr(stream):
        root.handlers = [logging.StreamHandler(stream)]
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.handlers = saved[0]
            root.setLevel(saved[1])


if __name__ == '__main__':
    sys.exit(main())
