"""Build a shipped pretrained encoder from the data: pretrain (resumable), measure, package with its model card.

    python benchmarks/pretrained/build.py train   [--name caravan_camels_d64]   # start, or resume after a stop
    python benchmarks/pretrained/build.py train   --store STORE   # read the data from a store (nh-stefaland pack)
    python benchmarks/pretrained/build.py package [--name caravan_camels_d64] [--run-dir RUN]

``train`` runs ``nh-run train`` on ``benchmarks/pretrained/<name>.yml`` the first time and
``nh-run continue_training`` on the newest run folder of that config afterwards, so an interrupted pretraining
continues from its last epoch checkpoint up to the config's ``epochs``. Without a run folder (a fresh clone) it
continues the packaged state of an unfinished pretraining: ``resume/<name>/`` (the run's config, log and optimizer
state, written by ``package``) with the shipped weights. ``package`` measures the reconstruction skill of the run's
last epoch on the config's test period, writes ``nh_stefaland/pretrained/<name>/`` (config, scaler without target
statistics, one weight file, ``manifest.json``) and renders ``MODEL_CARD.md`` from the measured numbers. Run from the
project root; the config's data paths (``../shared/data/caravan_camels``) are relative to it. With ``--store`` the
pretraining reads its data from a store packed from the config (``nh-stefaland pack --config <name>.yml --output
STORE``; docs/large_corpus.md) instead of the dataset files; the packaged encoder's config does not name the store.
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('step', choices=('train', 'package'))
    parser.add_argument('--name', default='caravan_camels_d64', help="Encoder name: benchmarks/pretrained/<name>.yml.")
    parser.add_argument('--store', type=Path, default=None,
                        help="train: a store packed from the config (stefaland_store); the run reads its data there.")
    parser.add_argument('--run-dir', type=Path, default=None,
                        help="Pretraining run to package (default: the newest run folder of the config).")
    args = parser.parse_args(argv)
    config = HERE / f'{args.name}.yml'
    if not config.is_file():
        raise SystemExit(f"build.py: no config {config}")
    if args.step == 'train':
        return train(config, args.store)
    import packaging_steps

    run_dir = args.run_dir or newest_run(config)
    if run_dir is None:
        raise SystemExit(f"build.py: no run of {config.name} yet; run `build.py train` first.")
    packaging_steps.package(args.name, run_dir.resolve(), config)
    return 0


def train(config: Path, store: Path | None = None) -> int:
    """Start the pretraining of ``config`` (reading ``store`` when given), or continue its newest run (or the committed
    resume state) from the last checkpoint up to the planned number of epochs."""
    import tempfile

    import torch
    from ruamel.yaml import YAML
    from neuralhydrology.nh_run import continue_run, start_run
    from nh_stefaland import pretrained

    torch.set_num_threads(1)  # one thread per run uses a small shared CPU best (benchmarks/ungauged/README.md)
    run_dir = newest_run(config) or restore_run(config)
    if run_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            if store is not None:
                settings = YAML(typ='safe').load(config)
                config = Path(folder) / config.name
                YAML(typ='safe').dump({**settings, 'stefaland_store': str(store.resolve())}, config)
            start_run(config_file=config)
        return 0
    planned = YAML(typ='safe').load(config)['epochs']
    done = int(pretrained.weight_file(run_dir).stem[-3:])
    if done >= planned:
        print(f"{run_dir} has all {planned} epochs; package it with `build.py package`.")
        return 0
    print(f"Continuing {run_dir} from epoch {done} to {planned}")
    with tempfile.TemporaryDirectory() as folder:
        remaining = Path(folder) / 'remaining.yml'
        YAML(typ='safe').dump({'epochs': planned - done}, remaining)  # NH's continue_training adds `epochs` more
        continue_run(run_dir=run_dir, config_file=remaining)
    return 0


def restore_run(config: Path) -> Path | None:
    """Rebuild the run folder of an unfinished pretraining from what the repository keeps (``resume/<name>/``: the
    run's config, log and optimizer state; the weights of the shipped encoder), so another machine can continue it."""
    import shutil

    from ruamel.yaml import YAML
    from nh_stefaland import pretrained

    name = config.stem
    state = HERE / 'resume' / name
    if not (state / 'config.yml').is_file():
        return None
    manifest = pretrained.manifest(name)
    shipped = pretrained.folder(name)
    if pretrained.sha256(shipped / manifest['weights']) != manifest['sha256']:
        raise SystemExit(f"build.py: {shipped / manifest['weights']} does not match its manifest; cannot resume.")
    run_dir = ROOT / YAML(typ='safe').load(state / 'config.yml')['run_dir']
    (run_dir / 'train_data').mkdir(parents=True)
    for source in state.iterdir():
        shutil.copyfile(source, run_dir / source.name)
    shutil.copyfile(shipped / manifest['weights'], run_dir / manifest['weights'])
    shutil.copyfile(shipped / 'train_data' / 'train_data_scaler.yml', run_dir / 'train_data' / 'train_data_scaler.yml')
    print(f"Restored {run_dir} at epoch {manifest['epoch']} from {state}")
    return run_dir


def newest_run(config: Path) -> Path | None:
    """The newest run folder NH made for ``config`` (``<run_dir>/<experiment_name>_<ddmm_hhmmss>``), if any."""
    from ruamel.yaml import YAML

    settings = YAML(typ='safe').load(config)
    runs = sorted((ROOT / settings['run_dir']).glob(f"{settings['experiment_name']}_*"),
                  key=lambda folder: folder.stat().st_mtime)
    runs = [folder for folder in runs if (folder / 'config.yml').is_file()]
    return runs[-1] if runs else None


if __name__ == '__main__':
    sys.exit(main())
