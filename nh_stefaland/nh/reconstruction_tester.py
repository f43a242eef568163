"""Validation and ``nh-run evaluate`` of pretraining runs: masked-reconstruction losses per basin."""
import logging
import random
import sys

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from neuralhydrology.datasetzoo.basedataset import BaseDataset
from neuralhydrology.evaluation.tester import BaseTester
from neuralhydrology.training.logger import Logger

from nh_stefaland.nh.windows import basin_dataset, mask_generator, window_batches

LOGGER = logging.getLogger(__name__)


class ReconstructionTester(BaseTester):
    """Tester of pretraining runs (``stefaland_stage: pretrain`` implies ``head: reconstruction``).

    Each basin's period is cut into non-overlapping windows, masked with the run's masking (seeded with the run's
    ``seed``, so every validation sees the same masks) and reconstructed. The dynamic, static and total
    reconstruction losses go to NH's experiment logger (TensorBoard ``valid/avg_*``) and to the run log, also when
    ``metrics: []``; ``nh-run evaluate`` writes them per basin to
    ``<period>/model_epochNNN/<period>_reconstruction_losses.csv``.
    """

    def evaluate(self, epoch: int | None = None, save_results: bool = True, save_all_output: bool = False,
                 metrics: list | dict = (), model: torch.nn.Module | None = None,
                 experiment_logger: Logger | None = None) -> dict[str, dict[str, float]]:
        """Reconstruction losses per basin, {basin: {'dynamic_loss', 'static_loss', 'total_loss'}} (normalised units).

        Parameters are NH's (``save_all_output`` and ``metrics`` do not apply to reconstruction).
        """
        if model is None:
            if not self.init_model:
                raise RuntimeError("No model was initialized for the evaluation")
            self._load_weights(epoch=epoch)
            model = self.model
        basins = self.basins
        if self.period == 'validation' and len(basins) > self.cfg.validate_n_random_basins:
            random.shuffle(basins)
            basins = basins[:self.cfg.validate_n_random_basins]
        model.eval()
        generator = mask_generator(self.cfg.seed, self.device)

        results, windows = {}, {}
        for basin in tqdm(basins, file=sys.stdout, disable=self._disable_pbar, desc='# Reconstruction'):
            dataset = self._basin_dataset(basin)
            if dataset is None:
                continue
            losses, sizes = [], []
            with torch.no_grad():
                for data in window_batches(dataset, self.cfg.seq_length, self.cfg.batch_size, self.device):
                    data = model.pre_model_hook(data, is_train=False)
                    _, parts = self.loss_obj(model.reconstruct(data, generator=generator), data)
                    losses.append({key: value.item() for key, value in parts.items()})
                    sizes.append(data['x_s'].shape[0])
            results[basin] = {key: float(np.average([loss[key] for loss in losses], weights=sizes))
                              for key in losses[0]}
            windows[basin] = sum(sizes)
            if experiment_logger is not None:
                experiment_logger.log_step(**{key: (value, len(sizes)) for key, value in results[basin].items()})

        self._log_summary(results, windows, epoch)
        if save_results and results:
            folder = self.run_dir / self.period / self._get_weight_file(epoch).stem
            folder.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(results).T.rename_axis('basin').to_csv(folder / f'{self.period}_reconstruction_losses.csv')
            LOGGER.info(f"Stored reconstruction losses at {folder / f'{self.period}_reconstruction_losses.csv'}")
        return results

    def _basin_dataset(self, basin: str) -> BaseDataset | None:
        if basin in self.cached_datasets:
            return self.cached_datasets[basin]
        dataset = basin_dataset(self.cfg, basin, self.period, self.scaler)
        if self.cfg.cache_validation_data and self.period == 'validation':
            self.cached_datasets[basin] = dataset
        return dataset

    def _log_summary(self, results: dict, windows: dict, epoch: int | None):
        if not results:
            LOGGER.warning(f"No basin has {self.period} data to reconstruct.")
            return
        weights = [windows[basin] for basin in results]
        means = {key: np.average([losses[key] for losses in results.values()], weights=weights)
                 for key in next(iter(results.values()))}
        where = f"Epoch {epoch} {self.period}" if epoch is not None else self.period.capitalize()
        LOGGER.info(f"{where} reconstruction loss: " + ", ".join(f"{key.removesuffix('_loss')}: {value:.5f}"
                                                                 for key, value in means.items()))
