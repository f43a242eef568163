"""Writing a prediction: one CF-conventions NetCDF file (and optional per-basin CSV files), never over a run's files."""
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import xarray

LOGGER = logging.getLogger(__name__)

# units of the target variables of NH's datasets that are known here; others are the training data's own units
KNOWN_UNITS = {'streamflow': 'mm d-1', 'QObs(mm/d)': 'mm d-1', 'QObs(mm/h)': 'mm h-1', 'qobs_mm_per_hour': 'mm h-1'}


def check_destination(path: Path, overwrite: bool, run_dirs: list[Path], suffix: str | None = '.nc') -> None:
    """Refuse a destination inside a run folder, an existing one without ``overwrite``, or a wrong suffix.

    Raises
    ------
    ValueError
        If ``path`` lies in one of ``run_dirs``, exists and ``overwrite`` is off, or lacks ``suffix``.
    """
    resolved = path.resolve()
    for run_dir in run_dirs:
        if resolved == run_dir or run_dir in resolved.parents:
            raise ValueError(f"{path} lies inside the run folder {run_dir}: predictions are never written into a "
                             f"run folder; choose a path outside it.")
    if suffix is not None and path.suffix != suffix:
        raise ValueError(f"--output {path} must end in {suffix}.")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists; pass --overwrite to replace it.")


def describe(dataset: xarray.Dataset, target: str, members: list[dict], attributes: dict) -> xarray.Dataset:
    """Name the variables after the target and add CF attributes, units and provenance."""
    units = KNOWN_UNITS.get(target, 'same as the training target')
    names = {'members': f'{target}_member', 'mean': target, 'spread': f'{target}_spread',
             'quantiles': f'{target}_quantile'}
    dataset = dataset.rename({old: new for old, new in names.items() if old in dataset})
    described = {
        f'{target}_member': f'{target} predicted by each ensemble member (mean over its samples)',
        target: f'{target} predicted by the ensemble (mean of the members)',
        f'{target}_spread': f'standard deviation of the members\' {target}',
        f'{target}_quantile': f'quantiles of {target} over all members\' samples',
    }
    for name, long_name in described.items():
        if name in dataset:
            dataset[name].attrs.update({'long_name': long_name, 'units': units, 'coordinates': 'basin'})
    dataset['input_coverage'].attrs.update({
        'long_name': 'share of the dynamic inputs present on the day', 'units': '1', 'valid_range': [0.0, 1.0]})
    dataset['time'].attrs.update({'standard_name': 'time', 'long_name': 'day'})
    dataset['basin'].attrs.update({'cf_role': 'timeseries_id', 'long_name': 'basin id'})
    if 'quantile' in dataset.coords:
        dataset['quantile'].attrs.update({'long_name': 'quantile level', 'units': '1'})
    for key in ('run_dir', 'epoch', 'sha256', 'model', 'future_forcing_days', 'missing_inputs'):
        dataset = dataset.assign_coords({f'member_{key}': ('member', [member[key] for member in members])})
    dataset['member_future_forcing_days'].attrs['long_name'] = ('days of forcing after a predicted day that the '
                                                                'member reads (0: causal)')
    dataset.attrs.update({
        'Conventions': 'CF-1.8', 'featureType': 'timeSeries',
        'title': f'{target} predicted by nh_stefaland from forcings and static attributes (no observations used)',
        'history': f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ} nh-stefaland predict",
        'members': json.dumps(members), **attributes})
    return dataset


def write(dataset: xarray.Dataset, path: Path, csv_dir: Path | None, target: str) -> None:
    """The NetCDF file and, with ``csv_dir``, one CSV per basin (date, ensemble, spread, quantiles, coverage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = {name: {'zlib': True, 'complevel': 4} for name in dataset.data_vars}
    dataset.to_netcdf(path, encoding=encoding)
    if csv_dir is None:
        return
    csv_dir.mkdir(parents=True, exist_ok=True)
    for basin in dataset['basin'].values:
        frame = pd.DataFrame({'date': dataset['time'].values})
        point = dataset.sel(basin=basin)
        for name in (target, f'{target}_spread', 'input_coverage'):
            if name in point:
                frame[name] = point[name].values
        if f'{target}_quantile' in point:
            for level in point['quantile'].values:
                frame[f'{target}_q{level:g}'] = point[f'{target}_quantile'].sel(quantile=level).values
        frame.to_csv(csv_dir / f'{basin}.csv', index=False, float_format='%.4f')
