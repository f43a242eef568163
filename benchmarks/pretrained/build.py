"""Build a shipped pretrained encoder from the data: pretrain (resumable), measure, package with its model card.

    python benchmarks/pretrained/build.py train   [--name caravan_camels_d64]   # start, or resume after a stop
    python benchmarks/pretrained/build.py package [--name caravan_camels_d64] [--run-dir RUN]

``train`` runs ``nh-run train`` on ``benchmarks/pretrained/<name>.yml`` the first time and
``nh-run continue_training`` on the newest run folder of that config afterwards, so an interrupted pretraining
continues from its last epoch checkpoint. ``package`` measures the reconstruction skill of the run's last epoch on
the config's test period, writes ``nh_stefaland/pretrained/<name>/`` (config, scaler without target statistics,
one weight file, ``manifest.json``) and renders ``MODEL_CARD.md`` from the measured numbers. Run from the project
root; the config's data paths (``../shared/data/caravan_camels``) are relative to it.
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
    parser.add_argument('--run-dir', type=Path, default=None,
                        help="Pretraining run to package (default: the newest run folder of the config).")
    args = parser.parse_args(argv)
    config = HERE / f'{args.name}.yml'
    if not config.is_file():
        raise SystemExit(f"build.py: no config {config}")
    if args.step == 'train':
        return train(config)
    import packaging_steps

    run_dir = args.run_dir or newest_run(config)
    if run_dir is None:
        raise SystemExit(f"build.py: no run of {config.name} yet; run `build.py train` first.")
    packaging_steps.package(args.name, run_dir.resolve(), config)
    return 0


def train(config: Path) -> int:
    """Start the pretraining of ``config``, or continue its newest run from the last checkpoint."""
    import torch
    from neuralhydrology.nh_run import continue_run, start_run

    torch.set_num_threads(1)  # one thread per run uses a small shared CPU best (benchmarks/ungauged/README.md)
    run_dir = newest_run(config)
    if run_dir is None:
        start_run(config_file=config)
    else:
        print(f"Continuing {run_dir}")
        continue_run(run_dir=run_dir)
    return 0


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
