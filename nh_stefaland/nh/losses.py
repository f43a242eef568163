"""Masked reconstruction loss of pretraining (``stefaland_stage: pretrain`` implies ``loss: reconstruction``)."""
import torch

from neuralhydrology.training.loss import BaseLoss
from neuralhydrology.utils.config import Config

from nh_stefaland.model.settings import Settings


class ReconstructionLoss(BaseLoss):
    """MSE in normalised units over the hidden, observed positions: w_d · dynamic + w_s · static.

    Missing (NaN) values carry no loss: they are hidden but have nothing to reconstruct. Positions the encoder saw
    carry none either, unless ``stefaland_visible_loss_weight`` w_v > 0: each part is then the MSE over the hidden
    positions plus w_v × the MSE over the visible ones. Weights come from ``stefaland_dynamic_loss_weight``,
    ``stefaland_static_loss_weight`` and ``stefaland_visible_loss_weight``.

    Parameters
    ----------
    cfg : Config
        The run configuration.

    Raises
    ------
    ValueError
        If the config asks for NH regularization terms, which do not apply to reconstruction.
    """

    def __init__(self, cfg: Config):
        super().__init__(cfg, prediction_keys=['x_hat', 'static_hat'], ground_truth_keys=[])
        if cfg.regularization:
            raise ValueError(f"loss: reconstruction does not combine with regularization={cfg.regularization}.")
        settings = Settings.from_config(cfg)
        self._dynamic_weight = settings.dynamic_loss_weight
        self._static_weight = settings.static_loss_weight
        self._visible_weight = settings.visible_loss_weight

    def forward(self, prediction: dict[str, torch.Tensor],
                data: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch from the model's reconstruction outputs (``data`` is not needed).

        Parameters
        ----------
        prediction : dict[str, torch.Tensor]
            ``x_hat``, ``x_target``, ``x_mask`` [B, T, F] and ``static_hat``, ``static_target``, ``static_mask``
            [B, C], as returned by ``StefaLand.reconstruct``.
        data : dict[str, torch.Tensor]
            The NH batch.

        Returns
        -------
        tuple[torch.Tensor, dict[str, torch.Tensor]]
            The total loss and its parts ``dynamic_loss``, ``static_loss``, ``total_loss``.
        """
        dynamic = self._part(prediction['x_hat'], prediction['x_target'], prediction['x_mask'])
        static = self._part(prediction['static_hat'], prediction['static_target'], prediction['static_mask'])
        total = self._dynamic_weight * dynamic + self._static_weight * static
        return total, {'dynamic_loss': dynamic, 'static_loss': static, 'total_loss': total}

    def _part(self, estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Loss of the dynamic or the static part: hidden positions, plus w_v × visible ones when w_v > 0."""
        hidden = masked_mse(estimate, target, mask)
        if self._visible_weight == 0:
            return hidden
        return hidden + self._visible_weight * masked_mse(estimate, target, ~mask)


def masked_mse(estimate: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions that are hidden and observed (0 when there are none).

    Parameters
    ----------
    estimate : torch.Tensor
        Reconstruction [...].
    target : torch.Tensor
        Normalised values [...], NaN where missing.
    mask : torch.Tensor
        Bool [...], True = hidden from the encoder.
    """
    scored = mask & ~torch.isnan(target)
    squared = (estimate - target.nan_to_num()).square().masked_fill(~scored, 0.0)
    return squared.sum() / scored.sum().clamp(min=1)
