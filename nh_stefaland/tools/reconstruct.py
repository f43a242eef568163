"""``nh-stefaland reconstruct``: masked-reconstruction skill of a run against mean imputation and interpolation.

The chosen period of the run's test basins is cut into non-overlapping windows and masked with the run's own masking
(seeded with the run's ``seed``); the model rebuilds the hidden values. On hidden, observed positions only, and in
NH's normalised units, each variable gets RMSE and NSE of StefaLand, of mean imputation (the normalisation centre,
which is NH's training mean) and, for dynamic variables, of linear interpolation across each masked span.
"""
import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from neuralhydrology.datautils.utils import load_basin_file

from nh_stefaland import pretrained
from nh_stefaland.nh.windows import basin_dataset, mask_generator, window_batches
from nh_stefaland.tools.runs import load_run

METHODS = ('stefaland', 'mean', 'interpolation')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``nh-stefaland reconstruct``."""
    parser.add_argument('--run-dir', required=True, help="A StefaLand pretraining (or finetuned) run, or a shipped "
                                                         "encoder, stefaland:<name> (files then go to the working "
                                                         "directory).")
    parser.add_argument('--period', choices=('train', 'validation', 'test'), default='test')
    parser.add_argument('--data-dir', type=Path, default=None, help="Dataset folder (default: the run's data_dir).")
    parser.add_argument('--basin-file', type=Path, default=None,
                        help="Basins to reconstruct (default: the run's test_basin_file).")
    parser.add_argument('--epoch', type=int, default=None, help="Checkpoint epoch (default: the last).")


def run(args: argparse.Namespace) -> int:
    """Write ``reconstruction_<period>_epochNNN.csv`` and ``.png`` into the run directory and print the table."""
    cfg, model, scaler, epoch = load_run(args.run_dir, args.epoch)
    cfg.update_config({key: value for key, value in (('data_dir', args.data_dir),
                                                     ('test_basin_file', args.basin_file)) if value is not None})
    outputs = reconstruct_period(cfg, model, scaler, args.period)
    table = skill_table(outputs, model.encoder_inputs, model.encoder_attributes)
    name = f'reconstruction_{args.period}_epoch{epoch:03d}'
    stem = (Path(f"{pretrained.folder(args.run_dir).name}_{name}") if pretrained.is_name(args.run_dir)
            else Path(args.run_dir) / name)
    table.to_csv(stem.with_suffix('.csv'))
    plot_example(outputs, model.encoder_inputs, stem.with_suffix('.png'))
    with pd.option_context('display.width', 160, 'display.max_columns', 20):
        print(table.to_string(float_format=lambda value: f'{value:.3f}'))
    print(f"Table: {stem.with_suffix('.csv')}\nFigure: {stem.with_suffix('.png')}")
    return 0


def reconstruct_period(cfg, model: torch.nn.Module, scaler: dict, period: str) -> dict[str, np.ndarray]:
    """Masked reconstructions of every test basin's non-overlapping windows of ``period``.

    Returns
    -------
    dict[str, np.ndarray]
        ``x_hat``, ``x_target``, ``x_mask`` [N, T, F]; ``static_hat``, ``static_target``,
        ``static_mask`` [N, C]; ``date`` [N, T]; ``basin`` [N] — N windows of all basins.
    """
    device = next(model.parameters()).device
    generator = mask_generator(cfg.seed, device)
    basins = load_basin_file(cfg.test_basin_file)
    keys = ('x_hat', 'x_target', 'x_mask', 'static_hat', 'static_target', 'static_mask')
    collected = {key: [] for key in keys + ('date', 'basin')}
    for basin in basins:
        dataset = basin_dataset(cfg, basin, period, scaler)
        if dataset is None:
            continue
        for data in window_batches(dataset, cfg.seq_length, cfg.batch_size, device):
            with torch.no_grad():
                output = model.reconstruct(model.pre_model_hook(data, is_train=False), generator=generator)
            for key in keys:
                collected[key].append(output[key].cpu().numpy())
            collected['date'].append(data['date'])
            collected['basin'].append(np.full(len(data['date']), basin))
    if not collected['basin']:
        raise ValueError(f"No test basin of {cfg.test_basin_file} has data in the {period} period.")
    return {key: np.concatenate(values) for key, values in collected.items()}


def skill_table(outputs: dict[str, np.ndarray], dynamic_names: list[str], static_names: list[str]) -> pd.DataFrame:
    """RMSE and NSE per variable (and for all static attributes together) on hidden, observed positions."""
    interpolation = interpolate_masked(outputs['x_target'], outputs['x_mask'])
    rows = {}
    for index, name in enumerate(dynamic_names):
        estimates = {'stefaland': outputs['x_hat'][..., index], 'interpolation': interpolation[..., index]}
        rows[name] = _scores('dynamic', outputs['x_target'][..., index], outputs['x_mask'][..., index],
                             estimates)
    for index, name in enumerate(static_names):
        rows[name] = _scores('static', outputs['static_target'][:, index], outputs['static_mask'][:, index],
                             {'stefaland': outputs['static_hat'][:, index]})
    rows['static attributes (all)'] = _scores('static', outputs['static_target'], outputs['static_mask'],
                                              {'stefaland': outputs['static_hat']})
    return pd.DataFrame(rows).T.rename_axis('variable')


def interpolate_masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear interpolation along time across hidden spans, from the nearest visible observed values.

    Parameters
    ----------
    values : np.ndarray
        Normalised values [N, T, F], NaN where missing.
    mask : np.ndarray
        Bool [N, T, F], True = hidden.

    Returns
    -------
    np.ndarray
        [N, T, F]: visible values kept, hidden ones interpolated; a span at a window edge takes the nearest visible
        value, and a variable with no visible value in the window the mean (0).
    """
    length = values.shape[1]
    visible = ~mask & ~np.isnan(values)
    days = np.arange(length)[None, :, None]
    before = np.maximum.accumulate(np.where(visible, days, -1), axis=1)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(visible, days, length), axis=1), axis=1), axis=1)
    filled = np.nan_to_num(values)
    value_before = np.take_along_axis(filled, before.clip(min=0), axis=1)
    value_after = np.take_along_axis(filled, after.clip(max=length - 1), axis=1)
    share = (days - before) / np.maximum(after - before, 1)
    between = value_before + share * (value_after - value_before)
    edge = np.where(before >= 0, value_before, np.where(after < length, value_after, 0.0))
    estimate = np.where((before >= 0) & (after < length), between, edge)
    return np.where(visible, values, estimate)


def plot_example(outputs: dict[str, np.ndarray], names: list[str], path: Path) -> None:
    """One panel per dynamic variable for the window with the most hidden observations: observed, masked spans,
    reconstruction and interpolation."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    scored = outputs['x_mask'] & ~np.isnan(outputs['x_target'])
    window = int(scored.sum(axis=(1, 2)).argmax())
    dates = pd.to_datetime(outputs['date'][window])
    interpolation = interpolate_masked(outputs['x_target'][window:window + 1],
                                       outputs['x_mask'][window:window + 1])[0]  # [T, F]
    figure, axes = plt.subplots(len(names), 1, figsize=(10, 2.4 * len(names)), sharex=True, squeeze=False)
    for index, (name, axis) in enumerate(zip(names, axes[:, 0])):
        mask = outputs['x_mask'][window, :, index]
        axis.fill_between(dates, 0, 1, where=mask, transform=axis.get_xaxis_transform(), color='0.85',
                          step='mid', label='masked')
        axis.plot(dates, outputs['x_target'][window, :, index], color='black', lw=1, label='observed')
        axis.plot(dates, np.where(mask, outputs['x_hat'][window, :, index], np.nan), color='tab:red', lw=1.2,
                  label='StefaLand')
        axis.plot(dates, np.where(mask, interpolation[:, index], np.nan), color='tab:blue', lw=1, ls='--',
                  label='interpolation')
        axis.set_ylabel(f'{name}\n(normalised)', fontsize=8)
    axes[0, 0].set_title(f"Masked reconstruction, basin {outputs['basin'][window]}")
    axes[0, 0].legend(loc='upper right', fontsize=7, ncol=4)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _scores(kind: str, observed: np.ndarray, mask: np.ndarray, estimates: dict[str, np.ndarray]) -> dict:
    scored = mask & ~np.isnan(observed)
    truth = observed[scored]
    candidates = {method: estimates[method][scored] if method in estimates else None for method in METHODS}
    candidates['mean'] = np.zeros_like(truth)
    row = {'kind': kind, 'n': int(truth.size)}
    row.update({f'rmse_{method}': _rmse(estimate, truth) for method, estimate in candidates.items()})
    row.update({f'nse_{method}': _nse(estimate, truth) for method, estimate in candidates.items()})
    return row


def _rmse(estimate: np.ndarray | None, truth: np.ndarray) -> float:
    if estimate is None or not truth.size:
        return np.nan
    return float(np.sqrt(np.mean(np.square(estimate - truth))))


def _nse(estimate: np.ndarray | None, truth: np.ndarray) -> float:
    spread = np.square(truth - truth.mean()).sum() if truth.size else 0.0
    if estimate is None or spread == 0.0:
        return np.nan
    return float(1.0 - np.square(estimate - truth).sum() / spread)
