"""What pretraining needs to pay off: the recipes of the pretraining study, run through ``nh-stefaland pub``.

Every arm of :data:`ARMS` is one model of one ``pub`` run: a copy of a benchmark config of
``benchmarks/ungauged/`` with a few keys changed (and, for pretrained arms, the pretraining recipe of
:data:`PRETRAINING` it finetunes). The script writes those configs to ``OUTPUT/configs`` and calls ``pub`` on the
382 CAMELS-US basins split into 5 seeded random folds (seed 0), with ``--train-fraction`` and the folds and seeds
asked for. Arms that finetune the same pretraining recipe share one pretraining run (pub shares identical pretraining
stages), and every run is resumable: calling the script again skips what is finished.

    python benchmarks/pretraining/study.py --train-fraction 0.1 --fold 1 --fold 2 --jobs 2 \\
        --arms lstm,scratch,base,shipped,lr_warmup,long_3k

Screening (README.md here) runs the arms on folds 1 and 2 with one seed into ``runs/pretraining/fraction_<F>``; the
confirmation (``--confirm``) runs the baselines and the recipes that matter on all 5 folds and several seeds into
``runs/pretraining/confirm_<F>``. The report of each output folder is pub's (``OUTPUT/report/``).
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from ruamel.yaml import YAML

from nh_stefaland.tools import cli

HERE = Path(__file__).resolve().parent
BENCHMARK = HERE.parent / 'ungauged'
DEFAULT_DATA = Path('../shared/data/caravan_camels')  # the configs' data_dir, from the project root

# finetuning / training budgets: 4 epochs of N/4 updates of 64 windows, the learning rate halved for the last epoch
BUDGETS = {800: {'epochs': 4, 'max_updates_per_epoch': 200}, 3200: {'epochs': 4, 'max_updates_per_epoch': 800}}

# pretraining recipes: changes to benchmarks/ungauged/stefaland_pretrain.yml (1,000 updates, lr 1e-3 then 5e-4)
PRETRAINING = {
    'base': {},
    'random': {'epochs': 1, 'max_updates_per_epoch': 1},  # control: an encoder that has (almost) not learned
    'lr_warmup': {'learning_rate': {0: 2.5e-5, 1: 5e-5, 2: 1e-4}},  # the paper's 1e-4, reached over 200 updates
    'long_3k': {'epochs': 30, 'learning_rate': {0: 1e-3, 24: 5e-4}},
    'mask_uniform': {'stefaland_min_mask_ratio': 0.0},  # each window hides a share drawn from U(0, 0.5)
    'visible_0.1': {'stefaland_visible_loss_weight': 0.1},
    'mlp_decoder': {'stefaland_reconstruction_decoder': 'mlp'},
}

# stage of the study → prefix of its output folders, runs/pretraining/<prefix>_<F>
FOLDERS = {'screening': 'fraction', 'confirmation': 'confirm'}

# arm: (benchmark config, pretraining recipe or None, changes to the config, finetuning budget)
ARMS = {
    'lstm': ('lstm.yml', None, {}, 800),
    'lstm_3200': ('lstm.yml', None, {}, 3200),
    'scratch': ('stefaland.yml', None, {}, 800),
    'base': ('stefaland_finetune.yml', 'base', {'stefaland_cache_states': True}, 800),
    'base_3200': ('stefaland_finetune.yml', 'base', {'stefaland_cache_states': True}, 3200),
    'dual_residual': ('stefaland_finetune.yml', 'base',
                      {'stefaland_cache_states': True, 'stefaland_adapter': 'dual_residual'}, 800),
    'random_encoder': ('stefaland_finetune.yml', 'random', {'stefaland_cache_states': True}, 800),
    'random_3200': ('stefaland_finetune.yml', 'random', {'stefaland_cache_states': True}, 3200),  # base_3200's control
    'lr_warmup': ('stefaland_finetune.yml', 'lr_warmup', {'stefaland_cache_states': True}, 800),
    'long_3k': ('stefaland_finetune.yml', 'long_3k', {'stefaland_cache_states': True}, 800),
    'mask_uniform': ('stefaland_finetune.yml', 'mask_uniform', {'stefaland_cache_states': True}, 800),
    'visible': ('stefaland_finetune.yml', 'visible_0.1', {'stefaland_cache_states': True}, 800),
    'mlp_decoder': ('stefaland_finetune.yml', 'mlp_decoder', {'stefaland_cache_states': True}, 800),
    # pretraining as an initialisation: the whole model trains as from scratch, starting from the pretrained encoder
    'base_unfrozen': ('stefaland_finetune.yml', 'base',
                      {'finetune_modules': ['tokens', 'encoder', 'adapter', 'decoder', 'head']}, 800),
    # the cache's control: base finetuned on every window, the frozen encoder computed at every update
    'base_uncached': ('stefaland_finetune.yml', 'base', {'stefaland_cache_states': False}, 800),
    # diagnostics: without the adapter's residual branch the decoder reads nothing but the frozen encoder's states
    'base_no_adapter': ('stefaland_finetune.yml', 'base',
                        {'stefaland_cache_states': True, 'stefaland_adapter': 'none'}, 800),
    'random_no_adapter': ('stefaland_finetune.yml', 'random',
                          {'stefaland_cache_states': True, 'stefaland_adapter': 'none'}, 800),
    'shipped_no_adapter': ('stefaland_finetune.yml', None,
                           {'stefaland_cache_states': True, 'stefaland_adapter': 'none',
                            'base_run_dir': 'stefaland:caravan_camels_d64', 'verbose': 0}, 800),
    # the shipped encoder: 7,600 updates of the base recipe (learning rate halved after 8,000, never reached)
    'shipped': ('stefaland_finetune.yml', None,
                {'stefaland_cache_states': True, 'base_run_dir': 'stefaland:caravan_camels_d64', 'verbose': 0}, 800),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arms', required=True, help=f"Comma-separated arms, of {sorted(ARMS)}.")
    parser.add_argument('--data-dir', type=Path,
                        help="The caravan_camels folder (382 basins), if not the configs' ../shared/data/caravan_camels.")
    parser.add_argument('--train-fraction', type=float, default=1.0)
    parser.add_argument('--confirm', action='store_true',
                        help="The confirmation stage: default output folder runs/pretraining/confirm_<F>.")
    parser.add_argument('--output-dir', type=Path,
                        help="Default: runs/pretraining/fraction_<F> (the screening, one pub folder per train "
                             "fraction), or confirm_<F> with --confirm.")
    parser.add_argument('--fold', type=int, action='append', help="Folds to run (default: all 5).")
    parser.add_argument('--seeds', type=int, default=1)
    parser.add_argument('--first-seed', type=int, default=0, metavar='K',
                        help="Seed offsets K…K+N−1 (pub's --first-seed): the seeds of the design one call at a time.")
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--figures-for', action='append', metavar='ARM',
                        help="Maps and hydrographs of the pairs with these arms (default: scratch, when run).")
    parser.add_argument('--cache-stride', type=int, metavar='DAYS',
                        help="stefaland_cache_stride of the arms that finetune on cached states (default 7, the "
                             "configs'). A run caches every training basin's windows at this stride but draws only "
                             "updates × 64 of them: with all 306 training basins of a fold, stride 7 caches 130,000 "
                             "windows (6 GB, longer to compute than the 800 updates), stride 28 about 33,000.")
    parser.add_argument('--reuse-pretraining-from', type=Path, metavar='DIR',
                        help="Another output folder of this script (another train fraction): its finished pretraining "
                             "runs are copied here instead of pretraining again (pub checks that config, basins and "
                             "seed are the same).")
    args = parser.parse_args()

    arms = args.arms.split(',')
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: no arm {unknown}; choose from {sorted(ARMS)}.")
    prefix = FOLDERS['confirmation' if args.confirm else 'screening']
    output_dir = args.output_dir or Path('runs/pretraining') / f'{prefix}_{args.train_fraction:g}'
    models = []
    for arm in arms:
        config, recipe, changes, budget = ARMS[arm]
        if args.cache_stride is not None and changes.get('stefaland_cache_states'):
            changes = {**changes, 'stefaland_cache_stride': args.cache_stride}
        models += ['--model', f'{arm}={write_config(BENCHMARK / config, {**changes, **BUDGETS[budget]}, output_dir / "configs" / f"{arm}.yml")}']
        if recipe is not None:
            pretraining = write_config(BENCHMARK / 'stefaland_pretrain.yml', PRETRAINING[recipe],
                                       output_dir / 'configs' / f'pretrain_{recipe}.yml')
            models += ['--pretrain', f'{arm}={pretraining}']
    if args.reuse_pretraining_from is not None:
        reuse_pretraining(args.reuse_pretraining_from, output_dir)
    folds = [arg for fold in args.fold or [] for arg in ('--fold', str(fold))]
    has_scratch = 'scratch' in arms or (output_dir / 'runs' / 'scratch').is_dir()
    figures = [arg for arm in args.figures_for or (['scratch'] if has_scratch else [])
               for arg in ('--figures-for', arm)]
    data = ['--data-dir', str(args.data_dir)] if args.data_dir else []
    return cli.main(['pub', *models, '--basin-file', str((args.data_dir or DEFAULT_DATA) / 'basins.txt'), *data,
                     '--output-dir', str(output_dir), '--folds', '5', '--seed', '0', '--jobs', str(args.jobs),
                     '--train-fraction', str(args.train_fraction), '--seeds', str(args.seeds), '--first-seed', str(args.first_seed),
                     *folds, *figures])


def reuse_pretraining(source: Path, output_dir: Path) -> None:
    """Copy the finished pretraining runs of ``source`` (``runs/<label>/*pretrain``) to ``output_dir``, keeping any
    that are there already."""
    for status_file in source.glob('runs/*/*pretrain/status.json'):
        if json.loads(status_file.read_text()).get('state') != 'done':
            continue
        target = output_dir / status_file.parent.relative_to(source)
        if not target.exists():
            shutil.copytree(status_file.parent, target, symlinks=True)
            print(f"Pretraining {status_file.parent} reused as {target}")


def write_config(config: Path, changes: dict, path: Path) -> Path:
    """A copy of ``config`` at ``path`` with ``changes`` applied (a key set to None is removed)."""
    yaml = YAML()
    cfg = yaml.load(config)
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    yaml.dump(cfg, path)
    return path


if __name__ == '__main__':
    sys.exit(main())
