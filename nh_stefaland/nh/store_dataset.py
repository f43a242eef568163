"""NH's dataset interface over a packed store (``stefaland_store: STORE``): NH's batches, flat memory per process.

A config with ``stefaland_store`` gets this dataset wherever NH asks ``get_dataset`` for one (training, validation,
evaluation, finetuning), in place of the class of its ``dataset`` key. It gives NH's exact samples and batches
(``x_d`` dict [B, T, 1] per input, ``x_s`` [B, C] alphabetical, ``y`` [B, T, n_targets], ``date`` [B, T],
``per_basin_target_stds`` [B, 1, n_targets] for NH's NSE losses), with NH's periods, warm-up, valid windows and
normalisation, but reads the days of a batch from the store when the batch is drawn, keeps the valid
windows as runs (:mod:`.store_windows`) and reads a whole batch at once (``__getitems__``). Training loaders built by
StefaLand's trainers draw windows with :class:`WindowSampler`, which shards them across ``torchrun`` ranks.
"""
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.datautils.utils import infer_frequency, load_basin_file
from neuralhydrology.utils.config import Config
from neuralhydrology.utils.errors import NoEvaluationDataError, NoTrainDataError

from nh_stefaland.nh.store import opened
from nh_stefaland.nh.store_statistics import attribute_statistics, feature_statistics
from nh_stefaland.nh.store_windows import WindowIndex, WindowSampler, runs, training_windows, valid_ends

LOGGER = logging.getLogger(__name__)

# NH options a store dataset does not implement: key → how a config sets it
UNSUPPORTED = {'use_frequencies': "several frequencies", 'hindcast_inputs': "hindcast/forecast inputs",
               'forecast_inputs': "hindcast/forecast inputs", 'lagged_features': "lagged features",
               'duplicate_features': "duplicated features", 'additional_feature_files': "additional features",
               'evolving_attributes': "evolving attributes", 'autoregressive_inputs': "autoregressive inputs",
               'mass_inputs': "mass inputs", 'dynamic_conceptual_inputs': "conceptual inputs",
               'random_holdout_from_dynamic_features': "random holdouts", 'nan_step_probability': "NaN streaks",
               'nan_sequence_probability': "NaN streaks", 'custom_normalization': "custom normalisation",
               'use_basin_id_encoding': "basin id encoding", 'timestep_counter': "timestep counters",
               'per_basin_train_periods_file': "per-basin periods", 'per_basin_validation_periods_file':
               "per-basin periods", 'per_basin_test_periods_file': "per-basin periods",
               'train_data_file': "a pickled training set"}


def check_config(cfg: Config) -> None:
    """Refuse NH options that a store dataset does not implement, before anything is loaded.

    Raises
    ------
    ValueError
        Naming the option, if one is set, or if a period is given as several start/end dates.
    """
    raw = cfg.as_dict()
    for key, what in UNSUPPORTED.items():
        if raw.get(key):
            raise ValueError(f"{key}={raw[key]!r}: stefaland_store does not implement {what}; remove the key, or "
                             f"remove stefaland_store to load the data with NH's dataset class.")
    for period in ('train', 'validation', 'test'):
        for edge in ('start', 'end'):
            if isinstance(raw.get(f'{period}_{edge}_date'), list):
                raise ValueError(f"{period}_{edge}_date is a list: stefaland_store reads one period per split.")


class StoreDataset(BaseDataset):
    """NH's dataset of one period (all basins of its basin file, or one basin) read from ``cfg.stefaland_store``.

    Same parameters and errors as NH's ``BaseDataset``; ``additional_features`` are refused (see :func:`check_config`).
    """

    def __init__(self, cfg: Config, is_train: bool, period: str, basin: str | None = None,
                 additional_features: list | None = None, id_to_int: dict | None = None, scaler: dict | None = None):
        Dataset.__init__(self)
        check_config(cfg)
        if period not in ('train', 'validation', 'test'):
            raise ValueError("'period' must be one of 'train', 'validation' or 'test' ")
        if period != 'train' and not scaler:
            raise ValueError("During evaluation of validation or test period, scaler dictionary has to be passed")
        self.cfg, self.is_train, self.period = cfg, is_train, period
        self.store = opened(cfg.stefaland_store)
        self.basins = load_basin_file(getattr(cfg, f'{period}_basin_file')) if basin is None else [basin]
        self.id_to_int, self.additional_features = {}, []
        self.seq_len, self._predict_last_n = [cfg.seq_length], [cfg.predict_last_n]
        self.frequencies = [infer_frequency(self.store.dates[:3])]
        self._inputs, self._targets = cfg.dynamic_inputs_flattened, cfg.target_variables
        self._variables = list(dict.fromkeys(self._inputs + self._targets))
        self._positions = self._store_positions()  # [N]
        self._days = self._period_days()
        self.scaler = dict(scaler) if scaler else {}
        if is_train and not scaler:
            self.scaler.update(feature_statistics(self.store, self._positions, self._variables, self._targets,
                                                  self._days))
        self._attributes = self._normalised_attributes(compute=is_train and not scaler)  # [N, C] or None
        self._center = {v: np.asarray(self.scaler['xarray_feature_center'][v].values) for v in self._variables}
        self._scale = {v: np.asarray(self.scaler['xarray_feature_scale'][v].values) for v in self._variables}
        self._target_stds = self._per_basin_target_stds()  # [N, 1, n_targets] or None
        self._windows = self._window_index()
        self.num_samples = len(self._windows)
        self.period_starts = {} if is_train else {b: pd.Timestamp(self.store.dates[self._days[0]]) for b in self.basins}
        self.lookup_table = WindowTable(self)
        if self.num_samples == 0:
            raise NoTrainDataError if is_train else NoEvaluationDataError
        if is_train:
            self._dump_scaler()

    def __getitem__(self, item: int) -> dict:
        batch = self.__getitems__([item])
        return {key: ({k: v[0] for k, v in value.items()} if key.startswith('x_d') else value[0])
                for key, value in batch.items()}

    def __getitems__(self, items: list[int]) -> dict:
        """A batch of windows read at once, in NH's batch format (see module docstring)."""
        position, end = self._windows.locate(np.asarray(items, dtype=np.int64))
        first = self._days[0] + end - self.cfg.seq_length + 1  # store day of each window's first day [B]
        days = first[:, None] + np.arange(self.cfg.seq_length)  # [B, T]
        stored = self._positions[position]
        batch = {'x_d': {v: torch.from_numpy(self._read(v, stored, first)[..., None]) for v in self._inputs},
                 'x_d_hindcast': {}, 'x_d_forecast': {}}
        targets = np.stack([self._read(t, stored, first) for t in self._targets], axis=-1)  # [B, T, n_targets]
        targets[days < self._days[1]] = np.nan  # NH hides the targets of warm-up days
        batch['y'] = torch.from_numpy(targets)
        batch['date'] = self.store.dates[days]
        if self._attributes is not None:
            batch['x_s'] = torch.from_numpy(self._attributes[position])
        if self._target_stds is not None:
            batch['per_basin_target_stds'] = torch.from_numpy(self._target_stds[position])
        return batch

    @staticmethod
    def collate_fn(samples: dict | list[dict]) -> dict:
        """A batch from ``__getitems__`` as it is; a list of single samples stacked by NH's ``collate_fn``."""
        return samples if isinstance(samples, dict) else BaseDataset.collate_fn(samples)

    def window_end(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Basin position (into ``basins``) and end (days since the first loaded day) of each window [n]."""
        return self._windows.locate(np.asarray(items, dtype=np.int64))

    def _read(self, variable: str, stored: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Normalised values of ``variable`` [B, T]: the window of days from ``first`` [B] of the basins at store
        positions ``stored`` [B]; normalised as NH does (the scaler's dtypes, then float32)."""
        values = self.store.read(variable, stored, first, self.cfg.seq_length)
        return ((values - self._center[variable]) / self._scale[variable]).astype(np.float32)

    def _store_positions(self) -> np.ndarray:
        unknown = [b for b in self.basins if b not in self.store.rows]
        if unknown:
            raise ValueError(f"{len(unknown)} basins of the {self.period} period are not in stefaland_store="
                             f"{self.store.path}: {unknown[:5]}{' …' if len(unknown) > 5 else ''}. Pack them with "
                             f"`nh-stefaland pack --append`.")
        return np.array([self.store.rows[b] for b in self.basins], dtype=np.int64)

    def _period_days(self) -> tuple[int, int, int]:
        """Store days of the first loaded day (warm-up of seq_length − predict_last_n), the period's first, its last."""
        start = self.store.day(getattr(self.cfg, f'{self.period}_start_date'))
        end = self.store.day(getattr(self.cfg, f'{self.period}_end_date'))
        first = start - (self.cfg.seq_length - self.cfg.predict_last_n)
        if first < 0 or end >= self.store.meta.days:
            first_date = pd.Timestamp(self.store.meta.start) + pd.Timedelta(days=first)
            raise ValueError(f"The {self.period} period with its warm-up ({first_date:%Y-%m-%d} … "
                             f"{getattr(self.cfg, f'{self.period}_end_date'):%Y-%m-%d}) is not inside stefaland_store="
                             f"{self.store.path}, which holds {self.store.meta.start} … {self.store.meta.end}.")
        return first, start, end

    def _normalised_attributes(self, compute: bool) -> np.ndarray | None:
        names = sorted(self.cfg.static_attributes + self.cfg.hydroatlas_attributes)
        if not names:
            return None
        missing = [a for a in names if a not in self.store.attributes.columns]
        if missing:
            raise ValueError(f"Static attributes {missing} are not in stefaland_store={self.store.path} (it holds "
                             f"{self.store.meta.attributes}).")
        table = self.store.attributes.iloc[self._positions][names]
        if compute:
            self.scaler.update(attribute_statistics(table))
        normalised = (table - self.scaler['attribute_means']) / self.scaler['attribute_stds']
        return normalised[names].to_numpy().astype(np.float32)

    def _per_basin_target_stds(self) -> np.ndarray | None:
        if self.cfg.loss.lower() not in ('nse', 'weightednse'):
            return None
        first, start, last = self._days
        stds = np.full((len(self._positions), 1, len(self._targets)), np.nan, dtype=np.float32)
        for basin in range(len(self._positions)):
            observed = np.stack([self.store.series(t, self._positions[basin:basin + 1], first, last)[0]
                                 for t in self._targets])  # [n_targets, L], unnormalised as in NH
            observed[:, :start - first] = np.nan
            if np.sum(~np.isnan(observed)) > 1:
                stds[basin, 0] = np.nanstd(observed, axis=1)
        return stds

    def _window_index(self) -> WindowIndex:
        first, _, last = self._days
        if self.is_train:
            index = training_windows(self.store, self._positions, self._inputs, self._targets, self._days,
                                     self.cfg.seq_length, self.cfg.predict_last_n)
        else:  # NH evaluates every day with enough days before it
            valid = valid_ends(np.zeros((len(self._positions), last - first + 1), dtype=bool), None,
                               self.cfg.seq_length, 0)
            index = WindowIndex(*runs(valid))
        without = sorted(set(range(len(self._positions))) - set(index.basins_with_windows().tolist()))
        if without:
            LOGGER.info(f"These basins do not have a single valid sample in the {self.period} period: "
                        f"{[self.basins[b] for b in without]}")
        return index


class WindowTable(Mapping):
    """NH's ``lookup_table`` (window → (basin, [end])) as a read-only view of the window runs, built on demand."""

    def __init__(self, dataset: StoreDataset):
        self._dataset = dataset

    def __getitem__(self, item: int) -> tuple[str, list[int]]:
        if not 0 <= item < len(self):
            raise KeyError(item)
        position, end = self._dataset.window_end(np.array([item]))
        return self._dataset.basins[int(position[0])], [int(end[0])]

    def __len__(self) -> int:
        return self._dataset.num_samples

    def __iter__(self):
        return iter(range(len(self)))


class StoreLoading:
    """Trainer mixin: a store dataset's training loader draws its windows with :class:`WindowSampler` (NH's
    shuffling sampler would list every window); any other dataset gets NH's loader."""

    def _get_data_loader(self, ds: Dataset) -> DataLoader:
        self._window_sampler = window_sampler(ds, 1, 0, self.cfg.seed)
        if self._window_sampler is None:
            return super()._get_data_loader(ds)
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=self._window_sampler,
                          num_workers=self.cfg.num_workers, collate_fn=ds.collate_fn)

    def _train_epoch(self, epoch: int):
        if getattr(self, '_window_sampler', None) is not None:
            self._window_sampler.set_epoch(epoch)
        super()._train_epoch(epoch=epoch)


def window_sampler(dataset: Dataset, replicas: int, rank: int, seed: int | None) -> WindowSampler | None:
    """The lazy, rank-sharded shuffling sampler for a store dataset; None for any other dataset."""
    if not isinstance(dataset, StoreDataset):
        return None
    return WindowSampler(len(dataset), replicas=replicas, rank=rank, seed=seed or 0)
