"""``nh-stefaland pub``: train and test models in ungauged basins (PUB) or regions (PUR) on the same folds."""
import argparse
import logging
import os
import sys
from pathlib import Path

LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nh-stefaland pub`` (see docs/ungauged.md)."""
    parser.add_argument('--model', action='append', default=[], metavar='LABEL=CONFIG',
                        help="NH config of a model under a label; repeat for each model to compare.")
    parser.add_argument('--pretrain', action='append', default=[], metavar='LABEL=CONFIG',
                        help="Pretraining stage of model LABEL: CONFIG is pretrained first, and the --model config of "
                             "LABEL then finetunes it (NH's finetune; base_run_dir is set by pub).")
    parser.add_argument('--basin-file', type=Path, help="All basins of the test; the folds split them.")
    parser.add_argument('--output-dir', type=Path, help="Where folds, runs and the report are kept (resumable).")
    parser.add_argument('--data-dir', type=Path,
                        help="Dataset folder for every model and stage, in place of the configs' data_dir.")
    protocol = parser.add_mutually_exclusive_group()
    protocol.add_argument('--folds', type=int, metavar='K', help="K seeded random basin folds (PUB, default 10).")
    protocol.add_argument('--regions', action='store_true',
                          help="Hold out HUC-02 regions (PUR): --group-by huc_02 with the paper's 7 groups.")
    protocol.add_argument('--group-by', metavar='ATTRIBUTE', help="Hold out basins grouped by a static attribute.")
    parser.add_argument('--groups', nargs='+', metavar='V1,V2',
                        help="Attribute values held out together, one group per argument (default with --group-by: "
                             "one fold per value; with --regions: {1,2} {3,6} {4,5,7} {9,10} {8,11,12,13} "
                             "{14,15,16,18} {17}).")
    parser.add_argument('--seed', type=int, default=0, help="Seed of the random folds (default 0).")
    parser.add_argument('--fold', type=int, action='append', metavar='N',
                        help="Run fold N only (repeat for several); the report covers every finished run.")
    parser.add_argument('--pretrain-exclude-held-out', action='store_true',
                        help="Pretrain on each fold's training basins only (default: pretraining sees all basins' "
                             "forcings and attributes, never the held-out basins' streamflow).")
    parser.add_argument('--allow-attribute', action='append', default=[], metavar='NAME',
                        help="Accept a static attribute whose name looks derived from streamflow.")
    parser.add_argument('--train-fraction', type=float, default=1.0, metavar='F',
                        help="Train each fold on a seeded share F of its training basins, the same for every model "
                             "(few gauges); pretraining still sees all basins' inputs, the test all held-out basins "
                             "(default 1).")
    parser.add_argument('--seeds', type=int, default=1, metavar='N',
                        help="Train every model of every fold N times, with the config's seed + 0…N−1; the report "
                             "adds per-seed medians, the seed spread and each model's seed ensemble (default 1).")
    parser.add_argument('--first-seed', type=int, default=0, metavar='K',
                        help="Seed offsets K…K+N−1 instead of 0…N−1: adds seeds to an earlier call's runs in the "
                             "same output folder, or splits the seeds over calls; a run of offset k is the run that "
                             "--seeds k+1 makes (default 0).")
    parser.add_argument('--epoch', choices=('last', 'best'), default='last',
                        help="Test the last epoch (NH's default) or the epoch with the best median NSE on the fold's "
                             "training basins over the validation period (needs a checkpoint per epoch).")
    parser.add_argument('--epoch-basins', type=int, default=50, metavar='N',
                        help="With --epoch best: the number of training basins (a seeded subset, the same for every "
                             "model) that choose the epoch (default 50).")
    parser.add_argument('--devices', metavar='D1,D2',
                        help="Spread the runs over these torch devices (e.g. cuda:0,cuda:1), one run per device at a "
                             "time, in place of the configs' `device`; --jobs defaults to the number of devices.")
    parser.add_argument('--jobs', type=int, default=None,
                        help="Runs at a time, each in a worker process with 1/N of the cores as PyTorch threads "
                             "(default 1: one after the other in this process).")
    parser.add_argument('--figures-for', action='append', default=[], metavar='LABEL',
                        help="Draw the difference maps and hydrographs of the model pairs that include LABEL only "
                             "(repeat for several; default: every pair). With many models, every pair is many "
                             "figures; the tables still compare every pair.")
    parser.add_argument('--report-only', type=Path, metavar='DIR', help="Only rebuild the report of DIR's runs.")


def run(args: argparse.Namespace) -> int:
    """Make the folds, run every model on every fold (skipping finished ones) and write the report."""
    # NH and torch load here, not at import: `nh-stefaland --help` stays fast
    from tqdm import tqdm

    import nh_stefaland
    from nh_stefaland.tools.pub import plan as pub_plan, report as pub_report, runs as pub_runs, workers as pub_workers
    from nh_stefaland.tools.pub import schedule as pub_schedule, settings as pub_settings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stdout)
    if args.report_only is not None:
        LOGGER.info(f"Report written to {pub_report.write_report(args.report_only, args.figures_for or None)}")
        return 0
    nh_stefaland.register()
    settings, models = pub_settings.settings_from(args)
    devices, jobs = pub_workers.parse_devices(args.devices, args.jobs)
    output_dir = args.output_dir.resolve()
    folds = pub_plan.load_or_make_folds(settings, output_dir)
    pretraining, final = pub_plan.plan(settings, models, folds, output_dir, only=args.fold)
    finished = {task.directory for task in (*pretraining, *final) if pub_runs.is_finished(task)}
    pub_settings.save_settings(settings, output_dir)
    final_todo = [task for task in final if task.directory not in finished]
    needed = {task.base.directory for task in final_todo if task.base is not None}
    pretraining_todo = [task for task in pretraining if task.directory in needed and task.directory not in finished]
    # pretraining first, then runs without pretraining; a finetuning run starts as soon as its pretraining is done
    todo = (pretraining_todo + [task for task in final_todo if task.base is None]
            + [task for task in final_todo if task.base is not None])
    total = len(pretraining_todo) + len(final_todo)
    with tqdm(total=len(final) + len(pretraining_todo), initial=len(final) - len(final_todo), file=sys.stdout,
              desc='folds × models', unit='run') as progress:
        statuses = pub_schedule.run_tasks(todo, jobs=jobs, progress=progress, devices=devices)
    failed = {directory: status for directory, status in statuses.items() if status['state'] != 'done'}
    for directory, status in failed.items():
        LOGGER.error(f"Model '{status['label']}' {status['name']} failed ({status['error']}); "
                     f"log: {os.path.normpath(directory / status['log'])}")
    LOGGER.info(f"{len(finished)} run(s) reused, {total - len(failed)} run now, {len(failed)} failed. "
                f"Report: {pub_report.write_report(output_dir, args.figures_for or None)}")
    return 1 if failed else 0
