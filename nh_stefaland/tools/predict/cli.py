"""``nh-stefaland predict``: daily streamflow for basins without a gauge, from trained runs, as one NetCDF file.

Forcings and static attributes are all it reads: a streamflow variable in the data is not needed and is ignored.
Every member (``--run-dir``, several allowed, or every fold × seed run of one model of a ``pub`` output) predicts
through NH's own dataset classes and testers (StefaLand with its strided tester); several members give the ensemble
mean, spread and quantiles. Days whose inputs a member was not trained to miss are NaN (see
:mod:`nh_stefaland.model.missing`); the file says per day how much of the input exists, and per basin how far its
attributes lie from the training basins'. Nothing is written into a run folder, nothing over an existing file
without ``--overwrite``.
"""
import argparse
import logging
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import xarray
from tqdm import tqdm

from neuralhydrology.datautils.utils import load_basin_file, load_scaler
from neuralhydrology.utils.config import Config

import nh_stefaland
from nh_stefaland.model.missing import MissingPolicy
from nh_stefaland.model.settings import Settings
from nh_stefaland.tools.predict import members as predict_members
from nh_stefaland.tools.predict.applicability import Applicability, applicability
from nh_stefaland.tools.predict.ensemble import combine
from nh_stefaland.tools.predict.output import check_destination, describe, write
from nh_stefaland.tools.predict.simulate import prediction_config, simulate
from nh_stefaland.tools.pub.folds import load_attributes
from nh_stefaland.tools.pub.lookahead import future_view

LOGGER = logging.getLogger(__name__)

DEFAULT_QUANTILES = '0.05,0.25,0.5,0.75,0.95'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nh-stefaland predict``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--run-dir', type=Path, action='append',
                        help="A trained NH run (any model); repeat for an ensemble.")
    source.add_argument('--pub-dir', type=Path,
                        help="An nh-stefaland pub output folder: every finished fold × seed run of --label is a member.")
    parser.add_argument('--label', help="With --pub-dir: the model label (needed when the folder holds several).")
    parser.add_argument('--epoch', type=int, help="Checkpoint epoch of every member (default: the last, or the "
                                                  "epoch pub chose with --epoch best).")
    parser.add_argument('--basin-file', type=Path, required=True, help="Basins to predict, one id per line.")
    parser.add_argument('--data-dir', type=Path, help="Dataset folder with the basins' forcings and attributes, in "
                                                      "the runs' dataset layout (default: each run's data_dir).")
    parser.add_argument('--start', required=True, help="First day to predict, YYYY-MM-DD.")
    parser.add_argument('--end', required=True, help="Last day to predict, YYYY-MM-DD.")
    parser.add_argument('--output', type=Path, required=True, help="NetCDF file to write (.nc).")
    parser.add_argument('--csv-dir', type=Path, help="Also write one CSV per basin into this folder.")
    parser.add_argument('--overwrite', action='store_true', help="Replace an existing output file (and CSV files).")
    parser.add_argument('--quantiles', default=DEFAULT_QUANTILES,
                        help=f"Quantile levels of the ensemble, comma-separated (default {DEFAULT_QUANTILES}).")
    parser.add_argument('--neighbours', type=int, default=5,
                        help="Training basins averaged in the attribute distance (default 5).")
    parser.add_argument('--allow-missing-attributes', action='store_true',
                        help="Predict basins with missing static attributes through the learned mask vectors; only "
                             "for runs whose mask vectors were trained (pretrained, or stefaland_input_mask_ratio > 0).")


def run(args: argparse.Namespace) -> int:
    """Predict, write the file(s) and print a summary."""
    nh_stefaland.register()
    members = (predict_members.from_run_dirs(args.run_dir, args.epoch) if args.run_dir
               else predict_members.from_pub_dir(args.pub_dir, args.label, args.epoch))
    start, end = _day(args.start, '--start'), _day(args.end, '--end')
    if end < start:
        raise ValueError(f"--end {args.end} is before --start {args.start}.")
    quantiles = _quantiles(args.quantiles)
    basins = _basins(args.basin_file)
    run_dirs = [member.run_dir for member in members]
    check_destination(args.output, args.overwrite, run_dirs)
    if args.csv_dir is not None:
        check_destination(args.csv_dir, args.overwrite or not any(args.csv_dir.glob('*.csv')), run_dirs, suffix=None)
    with tempfile.TemporaryDirectory() as scratch:
        basin_file = Path(scratch) / 'basins.txt'
        basin_file.write_text('\n'.join(basins) + '\n')
        configs = [prediction_config(member, basin_file, start, end, args.data_dir, verbose=1) for member in members]
        target = _common_target(configs, members)
        attributes = _check_attributes(configs, members, basins, args.allow_missing_attributes)
        fit = _applicability(configs, members, attributes, args.neighbours)
        simulations = [simulate(member, cfg) for member, cfg in
                       tqdm(list(zip(members, configs)), desc='Members', unit='run', file=sys.stdout,
                            disable=len(members) == 1)]
    dates = pd.date_range(start, end, freq='D', name='time')
    dataset = combine(simulations, [member.name for member in members], basins, dates, quantiles)
    if fit is not None:
        dataset = _with_applicability(dataset, fit)
    provenance = [_provenance(member, cfg) for member, cfg in zip(members, configs)]
    dataset = describe(dataset, target, provenance, {
        'nh_stefaland_version': nh_stefaland.__version__, 'neuralhydrology_version': version('neuralhydrology'),
        'data_dir': str(args.data_dir or configs[0].data_dir)})
    write(dataset, args.output, args.csv_dir, target)
    _print_summary(dataset, target, simulations, fit, args)
    return 0


def _provenance(member: predict_members.Member, cfg: Config) -> dict:
    """What the file says of a member: model, run, checkpoint and what it reads."""
    policy = _policy(cfg)
    return {'name': member.name, 'model': cfg.model, 'run_dir': str(member.run_dir), 'epoch': member.epoch,
            'sha256': member.sha256(), 'future_forcing_days': future_view(member.run_dir / 'config.yml')[0],
            'missing_inputs': policy.describe() if policy else 'NH model: a missing input gives NaN from that day on'}


def _policy(cfg: Config) -> MissingPolicy | None:
    if cfg.model.lower() != 'stefaland':
        return None
    return MissingPolicy.from_settings(Settings.from_config(cfg), cfg.seq_length)


def _check_attributes(configs: list[Config], members: list, basins: list[str], allow_missing: bool) -> pd.DataFrame:
    """The basins' static attributes that the members read; missing ones are an error unless allowed and handled.

    Raises
    ------
    ValueError
        If a basin misses an attribute and ``allow_missing`` is off or a member's mask vectors are untrained.
    """
    names = sorted({name for cfg in configs for name in cfg.static_attributes + cfg.hydroatlas_attributes})
    table = load_attributes(configs[0], basins, 'nh-stefaland predict').reindex(index=basins)
    absent = [name for name in names if name not in table.columns]
    if absent:
        LOGGER.warning(f"The attribute files of {configs[0].data_dir} have no {absent} (NH reads them from elsewhere, "
                       f"e.g. HydroATLAS files): they are not checked for missing values.")
    table = table[[name for name in names if name in table.columns]]
    missing = table.isna()
    if not missing.any().any():
        return table
    untrained = [member.name for member, cfg in zip(members, configs) if not getattr(_policy(cfg), 'trained', False)]
    rows = [f"{basin}: {', '.join(missing.columns[missing.loc[basin]])}" for basin in missing.index[missing.any(axis=1)]]
    listing = '; '.join(rows[:10]) + (f"; … ({len(rows)} basins)" if len(rows) > 10 else '')
    if allow_missing and not untrained:
        LOGGER.warning(f"Missing attributes are predicted through the learned mask vectors: {listing}.")
        return table
    reason = (f"the mask vectors of {untrained} were never trained, so these basins cannot be predicted"
              if untrained else "pass --allow-missing-attributes to predict them through the trained mask vectors")
    raise ValueError(f"Static attributes are missing: {listing}. {reason[0].upper() + reason[1:]}.")


def _applicability(configs: list[Config], members: list, attributes: pd.DataFrame,
                   neighbours: int) -> Applicability | None:
    """The attribute distance to the members' training basins (all members' together), or None if unknown.

    The training basins' attributes are read from the first member's own ``data_dir`` (``configs`` hold the
    prediction's).
    """
    training = set()
    for member, cfg in zip(members, configs):
        basin_file = cfg.train_basin_file
        if basin_file is None or not Path(basin_file).is_file():
            LOGGER.warning(f"{member.name}: its training basin file {basin_file} is gone; no applicability check.")
            return None
        training.update(load_basin_file(Path(basin_file)))
    table = load_attributes(members[0].config, sorted(training), 'The applicability check')[attributes.columns]
    scaler = load_scaler(members[0].run_dir)
    return applicability(attributes, table, scaler['attribute_means'], scaler['attribute_stds'], neighbours)


def _with_applicability(dataset: xarray.Dataset, fit: Applicability) -> xarray.Dataset:
    dataset['attribute_distance'] = ('basin', fit.distance.reindex(dataset['basin'].values).to_numpy())
    dataset['attribute_distance'].attrs.update({
        'long_name': f'mean normalised attribute distance to the {fit.neighbours} nearest training basins',
        'units': '1'})
    dataset['attribute_distance_percentile'] = ('basin', fit.percentile.reindex(dataset['basin'].values).to_numpy())
    dataset['attribute_distance_percentile'].attrs.update({
        'long_name': 'percentile of attribute_distance among the training basins\' own distances', 'units': '%'})
    dataset['attributes_outside_training_range'] = ('basin', fit.outside.reindex(dataset['basin'].values).to_numpy()
                                                    .astype(str))
    return dataset


def _common_target(configs: list[Config], members: list) -> str:
    targets = {tuple(cfg.target_variables) for cfg in configs}
    if len(targets) > 1:
        raise ValueError(f"The members predict different targets: "
                         f"{ {member.name: cfg.target_variables for member, cfg in zip(members, configs)} }.")
    target = configs[0].target_variables
    if len(target) > 1:
        raise ValueError(f"predict writes one target; the runs predict {target}.")
    return target[0]


def _basins(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"--basin-file {path} does not exist.")
    basins = load_basin_file(path)
    duplicated = sorted({basin for basin in basins if basins.count(basin) > 1})
    if duplicated:
        raise ValueError(f"--basin-file {path} lists basins twice: {duplicated}.")
    if not basins:
        raise ValueError(f"--basin-file {path} lists no basin.")
    return basins


def _day(text: str, option: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(pd.to_datetime(text, format='%Y-%m-%d'))
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date YYYY-MM-DD.") from None


def _quantiles(text: str) -> list[float]:
    try:
        levels = [float(value) for value in text.split(',') if value.strip()]
    except ValueError:
        raise ValueError(f"--quantiles {text!r} must be comma-separated numbers between 0 and 1.") from None
    if any(not 0 < level < 1 for level in levels):
        raise ValueError(f"--quantiles {text!r}: every level must lie strictly between 0 and 1.")
    return sorted(levels)


def _print_summary(dataset: xarray.Dataset, target: str, simulations: list, fit: Applicability | None,
                   args: argparse.Namespace) -> None:
    values = dataset[target]
    predicted = int(values.notnull().sum())
    nan_days = values.isnull() & (dataset['input_coverage'] < 1)
    print(f"{target} of {dataset.sizes['basin']} basins × {dataset.sizes['time']} days from "
          f"{dataset.sizes['member']} member(s): {args.output}" + (f" and {args.csv_dir}/" if args.csv_dir else ''))
    print(f"{predicted} basin-days predicted, {int(values.isnull().sum())} NaN "
          f"({int(nan_days.sum())} of them on days with missing inputs, in "
          f"{int(nan_days.any(dim='time').sum())} basins).")
    without = sorted({basin for simulation in simulations for basin in simulation.without_data})
    if without:
        print(f"No data in the period for {len(without)} basins: {', '.join(without[:10])}"
              + (' …' if len(without) > 10 else ''))
    if fit is not None:
        print(fit.summary())
