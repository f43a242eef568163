"""``nh-stefaland embed``: a run's encoder states per basin (and per day) as NetCDF, to use as inputs elsewhere.

The basin embedding is the static token's encoder state, averaged over the period's non-overlapping windows (one
D-vector per basin). The daily embedding is the finetuning representation E_t = H_t + H_static, one D-vector per
day of the period. Nothing is masked: only missing values are hidden, as at prediction time.
"""
import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray

from neuralhydrology.datautils.utils import load_basin_file

from nh_stefaland import pretrained
from nh_stefaland.nh.windows import basin_dataset, window_batches
from nh_stefaland.tools.runs import load_run

LOGGER = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nh-stefaland embed``."""
    parser.add_argument('--run-dir', required=True,
                        help="A StefaLand run (any stage), or a shipped pretrained encoder: stefaland:<name>.")
    parser.add_argument('--data-dir', type=Path, default=None,
                        help="Dataset folder of the basins (default: the run's data_dir).")
    parser.add_argument('--start-date', default=None, help="First day of the period, DD/MM/YYYY (default: the "
                                                            "run's start of --period).")
    parser.add_argument('--end-date', default=None, help="Last day, DD/MM/YYYY (default: the run's end of --period).")
    parser.add_argument('--basin-file', type=Path, required=True, help="Basins to embed, one id per line.")
    parser.add_argument('--period', choices=('train', 'validation', 'test'), default='test',
                        help="Period of the run's config whose forcings are encoded.")
    parser.add_argument('--epoch', type=int, default=None, help="Checkpoint epoch (default: the last).")
    parser.add_argument('--daily', action='store_true', help="Also write one embedding per basin and day.")
    parser.add_argument('--output', type=Path, default=None,
                        help="NetCDF file to write (default: RUN/embeddings_<period>_epochNNN.nc; for a shipped "
                             "encoder ./embeddings_<name>_<period>_epochNNN.nc).")


def run(args: argparse.Namespace) -> int:
    """Write the embeddings and print the file's path."""
    cfg, model, scaler, epoch = load_run(args.run_dir, args.epoch)
    cfg.update_config({key: value for key, value in (('data_dir', args.data_dir),
                                                     (f'{args.period}_start_date', args.start_date),
                                                     (f'{args.period}_end_date', args.end_date)) if value is not None})
    basins = load_basin_file(args.basin_file)
    embeddings = embed_basins(cfg, model, scaler, basins, args.period, daily=args.daily)
    embeddings.attrs.update({'run_dir': str(args.run_dir), 'epoch': epoch, 'period': args.period})
    if pretrained.is_name(args.run_dir):
        embeddings.attrs.update({'sha256': pretrained.manifest(args.run_dir)['sha256']})
        default = Path(f"embeddings_{pretrained.folder(args.run_dir).name}_{args.period}_epoch{epoch:03d}.nc")
    else:
        default = Path(args.run_dir) / f'embeddings_{args.period}_epoch{epoch:03d}.nc'
    path = args.output or default
    embeddings.to_netcdf(path)
    print(f"Embeddings of {len(basins)} basins: {path}")
    return 0


def embed_basins(cfg, model: torch.nn.Module, scaler: dict, basins: list[str], period: str,
                 daily: bool = False) -> xarray.Dataset:
    """Static (and optionally daily) embeddings of ``basins`` over ``period``.

    Returns
    -------
    xarray.Dataset
        ``static_embedding`` (basin, dimension) and, with ``daily``, ``daily_embedding`` (basin, date, dimension);
        NaN for basins without data in the period.
    """
    device = next(model.parameters()).device
    static, days = {}, {}
    for basin in basins:
        dataset = basin_dataset(cfg, basin, period, scaler)
        if dataset is None:
            LOGGER.warning(f"Basin {basin} has no data in the {period} period: its embedding is NaN.")
            continue
        states, daily_states, dates = [], [], []
        for data in window_batches(dataset, cfg.seq_length, cfg.batch_size, device):
            with torch.no_grad():
                hidden = model.encode(model.pre_model_hook(data, is_train=False))  # [B, T+1, D]
            states.append(hidden[:, -1].cpu().numpy())
            if daily:
                daily_states.append((hidden[:, :-1] + hidden[:, -1:]).flatten(0, 1).cpu().numpy())  # [B·T, D]
                dates.append(np.asarray(data['date']).reshape(-1))
        static[basin] = np.concatenate(states).mean(axis=0)
        if daily:
            frame = pd.DataFrame(np.concatenate(daily_states), index=pd.DatetimeIndex(np.concatenate(dates)))
            days[basin] = frame[_in_period(frame.index, cfg, period) & ~frame.index.duplicated()]
    width = model.encoder.output[-1].out_features
    dataset = xarray.Dataset(coords={'basin': basins, 'dimension': np.arange(width)})
    dataset['static_embedding'] = (('basin', 'dimension'),
                                   np.stack([static.get(basin, np.full(width, np.nan)) for basin in basins]))
    if daily:
        dates = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in days.values()))), name='date')
        values = np.full((len(basins), len(dates), width), np.nan, dtype=np.float32)
        for row, basin in enumerate(basins):
            if basin in days:
                values[row, dates.get_indexer(days[basin].index)] = days[basin].values
        dataset = dataset.assign_coords(date=dates)
        dataset['daily_embedding'] = (('basin', 'date', 'dimension'), values)
    return dataset


def _in_period(dates: pd.DatetimeIndex, cfg, period: str) -> np.ndarray:
    """Which dates lie in the period (NH allows lists of start and end dates); windows reach into the warm-up."""
    starts, ends = getattr(cfg, f'{period}_start_date'), getattr(cfg, f'{period}_end_date')
    starts, ends = (starts, ends) if isinstance(starts, list) else ([starts], [ends])
    return np.any([(dates >= start) & (dates <= end) for start, end in zip(starts, ends)], axis=0)
