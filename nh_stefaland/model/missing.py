"""Missing inputs: where StefaLand predicts, where it returns NaN, and the input masks of supervised training.

A missing input is replaced by its variable's learned mask vector. Those vectors learn only when training hides
inputs behind them: pretraining does (masked reconstruction), supervised training does with
``stefaland_input_mask_ratio`` > 0, and nothing else does (NH drops training windows with missing inputs). The
policy below therefore depends on whether they were trained:

- **untrained**: any missing input of a window makes every output of the window that can see it NaN (all days of a
  bidirectional window; in a causal one, the days from the first missing one on), as NH's LSTM gives NaN after a
  missing input; a missing attribute makes the whole window NaN;
- **trained**: a day is NaN when a variable is missing for longer than the longest span training hid (the day lies
  in a longer gap; a gap that reaches the window's first or last day may go on outside it and counts as longer),
  and the whole window is NaN when it misses a larger share of a variable's days than training hid; missing
  attributes are predicted through their mask vectors.

Masks are bool, True = hidden (missing or masked); validity is bool, True = the model predicts the day.
"""
from dataclasses import dataclass

import torch

from nh_stefaland.model.masking import span_lengths, window_mask
from nh_stefaland.model.settings import Settings

# the head outputs that carry predicted values (regression; gmm, cmal, umal)
PREDICTED_VALUES = ('y_hat', 'mu')


@dataclass(frozen=True)
class MissingPolicy:
    """What missing inputs a run was trained to stand in for.

    Parameters
    ----------
    trained : bool
        Whether training hid inputs behind the mask vectors (pretraining, or ``stefaland_input_mask_ratio`` > 0).
    longest_gap : int
        Longest run of days of one variable that training hid (0 when untrained).
    largest_share : float
        Largest share of a variable's days in one window that training hid (0 when untrained).
    causal : bool
        Whether no output depends on a later input (then a gap invalidates only the days from it on).
    """
    trained: bool
    longest_gap: int = 0
    largest_share: float = 0.0
    causal: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, seq_length: int) -> 'MissingPolicy':
        """The policy of a run with these settings and windows of ``seq_length`` days."""
        ratio = settings.mask_ratio if settings.stage != 'supervised' else settings.input_mask_ratio
        if ratio <= 0:
            return cls(trained=False, causal=settings.causal)
        longest = span_lengths(seq_length, ratio, settings.mask_min_days, settings.mask_max_days)[1]
        return cls(trained=True, longest_gap=longest, largest_share=ratio, causal=settings.causal)

    def describe(self) -> str:
        """One sentence for logs and file attributes."""
        if not self.trained:
            return ("mask vectors untrained: a window with a missing input or attribute gives NaN wherever the "
                    "model can see it")
        return (f"mask vectors trained: NaN on days in a gap longer than {self.longest_gap} days and in windows "
                f"missing more than {self.largest_share:.0%} of a variable's days")


def valid_days(dynamic_missing: torch.Tensor, static_missing: torch.Tensor, policy: MissingPolicy) -> torch.Tensor:
    """The days a model with this policy predicts (True) instead of returning NaN.

    Parameters
    ----------
    dynamic_missing : torch.Tensor
        Bool [B, T, F], True where a daily input is missing.
    static_missing : torch.Tensor
        Bool [B, C], True where an attribute is missing.
    policy : MissingPolicy
        What the run was trained to stand in for.

    Returns
    -------
    torch.Tensor
        Bool [B, T].
    """
    length = dynamic_missing.shape[1]
    if not policy.trained:
        bad_day = dynamic_missing.any(dim=-1) | static_missing.any(dim=-1, keepdim=True)  # [B, T]
        if policy.causal:
            return ~(bad_day.cumsum(dim=1) > 0)
        return ~bad_day.any(dim=1, keepdim=True).expand(-1, length)
    in_long_gap = _in_run_longer_than(dynamic_missing, policy.longest_gap).any(dim=-1)  # [B, T]
    too_sparse = (dynamic_missing.float().mean(dim=1) > policy.largest_share + 1e-6).any(dim=-1)  # [B]
    return ~(in_long_gap | too_sparse.unsqueeze(-1))


def hide_invalid(prediction: dict[str, torch.Tensor], valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Set the predicted values (``y_hat``; ``mu`` of probabilistic heads) to NaN on invalid days.

    A probabilistic head's spreads and weights stay finite, so NH's samplers run and every sample drawn for an
    invalid day is NaN.

    Parameters
    ----------
    prediction : dict[str, torch.Tensor]
        Model outputs, each [B, T, ...].
    valid : torch.Tensor
        Bool [B, T] from :func:`valid_days`.

    Returns
    -------
    dict[str, torch.Tensor]
        ``prediction`` with the predicted values replaced.
    """
    invalid = ~valid.unsqueeze(-1)  # [B, T, 1]
    for key in PREDICTED_VALUES:
        if key in prediction:
            prediction[key] = prediction[key].masked_fill(invalid, float('nan'))
    return prediction


def input_masks(dynamic: torch.Tensor, static: torch.Tensor, settings: Settings,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of supervised training with ``stefaland_input_mask_ratio``: every missing value, plus random inputs.

    Each window hides its own share of each variable's days, drawn uniformly up to the ratio, in spans of
    ``stefaland_mask_min_days``…``stefaland_mask_max_days``; each attribute is hidden with a per-window probability
    drawn the same way.

    Parameters
    ----------
    dynamic : torch.Tensor
        Encoder inputs [B, T, F], NaN where missing.
    static : torch.Tensor
        Encoder attributes [B, C], NaN where missing.
    settings : Settings
        The run's settings.
    generator : torch.Generator | None
        Random source on the inputs' device (the global one when None).

    Returns
    -------
    tuple[torch.Tensor, torch.Tensor]
        Bool masks [B, T, F] and [B, C], True = hidden.
    """
    ratio = settings.input_mask_ratio
    days = window_mask(dynamic.shape, ratio, settings.mask_min_days, settings.mask_max_days, generator=generator,
                       device=dynamic.device, min_ratio=0.0)  # [B, T, F]
    share = ratio * torch.rand((static.shape[0], 1), generator=generator, device=static.device)  # [B, 1]
    attributes = torch.rand(static.shape, generator=generator, device=static.device) < share  # [B, C]
    return torch.isnan(dynamic) | days, torch.isnan(static) | attributes


def columns(names: list[str], among: list[str]) -> list[int]:
    """Position of each of ``names`` in ``among``; ``len(among)`` (one past the last) for names not in it."""
    return [among.index(name) if name in among else len(among) for name in names]


def zero_hidden(values: torch.Tensor, mask: torch.Tensor, mask_columns: list[int]) -> torch.Tensor:
    """``values`` [..., V_a] with 0 where missing or hidden: by column ``mask_columns[v]`` of ``mask`` [..., V], never
    for a column one past its last."""
    hidden = torch.cat([mask, torch.zeros_like(mask[..., :1])], dim=-1)[..., mask_columns]  # [..., V_a]
    return values.masked_fill(hidden, 0.0).nan_to_num(0.0)


def _in_run_longer_than(missing: torch.Tensor, limit: int) -> torch.Tensor:
    """Bool [B, T, F]: True where a value lies in a run of more than ``limit`` consecutive missing days.

    A run that reaches the first or last day of the window may go on outside it: its length is unknown, and it
    counts as longer than ``limit``.
    """
    length, span = missing.shape[1], limit + 1
    edge = torch.ones_like(missing[:, :1]).expand(-1, span, -1)  # [B, limit+1, F]
    padded = torch.cat([edge, missing, edge], dim=1)  # [B, T+2·span, F]
    counts = torch.nn.functional.pad(padded.long().cumsum(dim=1), (0, 0, 1, 0))  # [B, T+2·span+1, F]
    full = (counts[:, span:] - counts[:, :-span]) == span  # [B, T+span+1, F]: days s…s+limit all missing
    full = torch.nn.functional.pad(full.long(), (0, 0, 0, limit))  # [B, T+2·span, F]
    starts = torch.nn.functional.pad(full.cumsum(dim=1), (0, 0, 1, 0))  # [B, T+2·span+1, F]: runs starting before t
    # padded day t lies in such a run if one starts at some s in [t−limit, t]
    days = torch.arange(span, span + length, device=missing.device)  # the window's days in the padded series
    return (starts[:, days + 1] - starts[:, days - limit]) > 0
