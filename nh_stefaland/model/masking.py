"""Window and group masks for masked reconstruction, made on the batch's device.

Masks are bool, True = hidden from the encoder. The functions are pure: a shape, ratios and an optional generator in,
a mask out. Without a generator they draw from torch's global generator of the device, which NeuralHydrology seeds
with the config's ``seed``.
"""
import logging
import math

import torch

from nh_stefaland.model.settings import Settings

LOGGER = logging.getLogger(__name__)

# Related Caravan, CAMELS(-US) and HydroATLAS attributes, masked together: none can be rebuilt from its partners.
DEFAULT_ATTRIBUTE_GROUPS: dict[str, list[str]] = {
    'climate': ['p_mean', 'pet_mean', 'aridity', 'frac_snow', 'moisture_index', 'seasonality', 'high_prec_freq',
                'high_prec_dur', 'low_prec_freq', 'low_prec_dur', 'p_seasonality', 'high_prec_timing',
                'low_prec_timing', 'pre_mm_syr', 'pet_mm_syr', 'aet_mm_syr', 'ari_ix_sav', 'cmi_ix_syr', 'snw_pc_syr',
                'tmp_dc_syr'],
    'topography': ['elev_mean', 'slope_mean', 'gauge_lat', 'gauge_lon', 'ele_mt_sav', 'ele_mt_smn', 'ele_mt_smx',
                   'slp_dg_sav'],
    'soil': ['soil_depth_pelletier', 'soil_depth_statsgo', 'soil_porosity', 'soil_conductivity', 'max_water_content',
             'sand_frac', 'silt_frac', 'clay_frac', 'water_frac', 'organic_frac', 'other_frac', 'snd_pc_sav',
             'slt_pc_sav', 'cly_pc_sav', 'soc_th_sav', 'swc_pc_syr'],
    'geology': ['geol_1st_class', 'glim_1st_class_frac', 'geol_2nd_class', 'glim_2nd_class_frac',
                'carbonate_rocks_frac', 'geol_porostiy', 'geol_permeability', 'kar_pc_sse', 'gwt_cm_sav'],
    'vegetation': ['frac_forest', 'lai_max', 'lai_diff', 'gvf_max', 'gvf_diff', 'dom_land_cover_frac',
                   'root_depth_50', 'root_depth_99', 'for_pc_sse', 'crp_pc_sse', 'pst_pc_sse', 'wet_pc_sg1',
                   'wet_pc_sg2'],
    'human': ['urb_pc_sse', 'ppd_pk_sav', 'pop_ct_usu', 'hft_ix_s09', 'hft_ix_s93', 'hdi_ix_sav', 'gdp_ud_sav',
              'gdp_ud_ssu', 'rdd_mk_sav', 'dor_pc_pva', 'ire_pc_sse', 'nli_ix_sav'],
}


def window_mask(shape: tuple[int, int, int], ratio: float, min_length: int = 30, max_length: int = 90,
                generator: torch.Generator | None = None, device: torch.device | str | None = None,
                min_ratio: float | None = None) -> torch.Tensor:
    """Hide contiguous windows of each variable's days until about ``ratio`` of them are hidden.

    With ``min_ratio``, each sample hides its own share instead, drawn uniformly between ``min_ratio`` and ``ratio``
    (one draw per sample, the same for all its variables): pretraining then also sees nearly visible windows, as
    prediction does. The windows are drawn as for ``ratio``, and a sample keeps the number of them whose covered
    share is closest to its own (so a share below the shortest window hides none or one window).

    Per sample and variable, windows of a length drawn uniformly from :func:`span_lengths` are placed at random inside
    the T days, one after the other; days covered twice count once. How many windows are kept depends on the spans:

    - configured spans (``max_length`` ≤ ratio · T, e.g. 365 days with 30–90-day spans at ratio 0.5): the number of
      windows whose covered share is closest to ``ratio`` (ties: fewer windows);
    - shortened spans (T too short for them, see :func:`span_lengths`): the most windows that cover at most
      ratio · T days, plus one more with the probability that makes the expected share ``ratio``; this takes one more
      random draw per row.

    Either way the hidden share averages ``ratio`` for any T ≥ 2, within about a percentage point.

    Parameters
    ----------
    shape : tuple[int, int, int]
        (B, T, F) of the daily inputs.
    ratio : float
        Share of the days to hide, in [0, 1].
    min_length, max_length : int
        Shortest and longest window in days, shortened for short T (see :func:`span_lengths`).
    generator : torch.Generator | None
        Random source (its device is used); the device's global generator when None.
    device : torch.device | str | None
        Device of the mask when no generator is given.
    min_ratio : float | None
        Smallest per-sample share, in [0, ``ratio``] (``ratio`` below 1 then); None: every sample hides ``ratio``.

    Returns
    -------
    torch.Tensor
        Bool mask [B, T, F], True = hidden.
    """
    batch_size, length, n_variables = shape
    device = generator.device if generator is not None else device
    if ratio <= 0.0 or length == 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if min_ratio is not None and not 0.0 <= min_ratio <= ratio < 1.0:
        raise ValueError(f"min_ratio={min_ratio} must lie in [0, ratio] with ratio={ratio} below 1.")
    if ratio >= 1.0:
        return torch.ones(shape, dtype=torch.bool, device=device)
    low, high = span_lengths(length, ratio, min_length, max_length)
    n_rows, n_windows = batch_size * n_variables, _windows_needed(ratio, length, low)

    target = torch.full((n_rows, 1), ratio * length, device=device)  # [R, 1]: days to hide per row
    if min_ratio is not None:
        shares = min_ratio + (ratio - min_ratio) * torch.rand((batch_size, 1), generator=generator, device=device)
        target = (shares * length).repeat_interleave(n_variables, dim=0)  # rows are sample-major
    lengths = torch.randint(low, high + 1, (n_rows, n_windows), generator=generator, device=device)
    starts = (torch.rand((n_rows, n_windows), generator=generator, device=device) * (length - lengths + 1)).long()
    days = torch.arange(length, device=device)
    covers = (days >= starts.unsqueeze(-1)) & (days < (starts + lengths).unsqueeze(-1))  # [R, K, T]
    # index of the first window covering each day; n_windows where no window does
    first = torch.where(covers.any(dim=1), covers.to(torch.uint8).argmax(dim=1), n_windows)  # [R, T]
    newly_covered = torch.zeros(n_rows, n_windows + 1, device=device).scatter_add_(
        1, first, torch.ones_like(first, dtype=torch.float32))  # [R, K+1]
    covered = torch.cat([torch.zeros(n_rows, 1, device=device), newly_covered[:, :-1].cumsum(dim=1)], dim=1)
    if (low, high) == (min_length, max_length) or min_ratio is not None:
        n_kept = (covered - target).abs().argmin(dim=1)  # [R]; covered is sorted, ties: fewer windows
    else:
        n_kept = _kept_at_random(covered, ratio * length, generator)  # [R]
    mask = first < n_kept.unsqueeze(-1)  # [R, T]
    return mask.view(batch_size, n_variables, length).transpose(1, 2)  # [B, T, F]


def span_lengths(length: int, ratio: float, min_length: int, max_length: int) -> tuple[int, int]:
    """Shortest and longest masked window for T = ``length`` days: the configured ones where they fit.

    Windows longer than the ratio · T days to hide would overshoot it, so the longest is capped at that (at least one
    day) and the shortest at the longest. With 30–90-day windows and ratio 0.5 nothing changes from T = 180 days on.
    """
    high = min(max_length, max(1, math.floor(ratio * length)))
    return min(min_length, high), high


def group_mask(batch_size: int, group_ids: torch.Tensor, ratio: float, group_probability: float = 0.5,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Hide whole groups of related static attributes, then single attributes until ``ratio`` are hidden.

    Each group is hidden with probability ``group_probability``; if fewer than round(ratio · maskable) attributes
    are hidden then, randomly chosen single attributes are added until that many are. With no maskable attribute
    (every id -1) nothing is hidden and nothing is drawn.

    Parameters
    ----------
    batch_size : int
        Number of samples B.
    group_ids : torch.Tensor
        Long [C]: group of each attribute (0, 1, ...), -1 for attributes that are never masked. Its device is the
        mask's device.
    ratio : float
        Share of the maskable attributes hidden at least, in [0, 1].
    group_probability : float
        Probability that a group is hidden as a whole.
    generator : torch.Generator | None
        Random source on ``group_ids``' device; the device's global generator when None.

    Returns
    -------
    torch.Tensor
        Bool mask [B, C], True = hidden.
    """
    device = group_ids.device
    maskable = group_ids >= 0  # [C]
    if not maskable.any():
        return torch.zeros((batch_size, group_ids.numel()), dtype=torch.bool, device=device)
    n_groups = int(group_ids.max().item()) + 1
    drawn = torch.rand((batch_size, n_groups), generator=generator, device=device) < group_probability  # [B, G]
    mask = drawn[:, group_ids.clamp(min=0)] & maskable  # [B, C]
    shortfall = (round(ratio * int(maskable.sum().item())) - mask.sum(dim=1)).clamp(min=0)  # [B]
    priority = torch.rand(mask.shape, generator=generator, device=device).masked_fill(mask | ~maskable, 2.0)
    rank = priority.argsort(dim=1).argsort(dim=1)  # [B, C]: 0 = first single attribute to add
    return mask | (rank < shortfall.unsqueeze(-1))


def attribute_group_ids(attributes: list[str], groups: dict[str, list[str]] | None,
                        never_masked: list[str]) -> list[int]:
    """Group index of each attribute for :func:`group_mask`.

    Attributes of one group share an index; attributes in no group form a group of their own; never-masked ones
    get -1. With ``groups=None`` the built-in groups for Caravan/CAMELS/HydroATLAS names are used.

    Raises
    ------
    ValueError
        If configured groups or never-masked attributes name an attribute that is not an encoder attribute, or an
        attribute is in two groups.
    """
    if groups is None:
        groups = {name: [a for a in members if a in attributes] for name, members in DEFAULT_ATTRIBUTE_GROUPS.items()}
    else:
        unknown = sorted({a for members in groups.values() for a in members} - set(attributes))
        if unknown:
            raise ValueError(f"stefaland_attribute_groups names {unknown}, which are not static attributes of the "
                             f"encoder ({attributes}).")
    unknown = sorted(set(never_masked) - set(attributes))
    if unknown:
        raise ValueError(f"stefaland_never_masked_attributes names {unknown}, which are not static attributes of the "
                         f"encoder ({attributes}).")
    group_of = {}
    for name, members in groups.items():
        for attribute in members:
            if attribute in group_of:
                raise ValueError(f"Attribute {attribute!r} is in two groups of stefaland_attribute_groups: "
                                 f"{group_of[attribute]!r} and {name!r}.")
            group_of[attribute] = ('group', name)
    keys = list(dict.fromkeys(group_of.get(a, ('single', a)) for a in attributes if a not in never_masked))
    return [-1 if a in never_masked else keys.index(group_of.get(a, ('single', a))) for a in attributes]


def warn_about_masking(settings: Settings, length: int, attributes: list[str], group_ids: torch.Tensor) -> None:
    """Say when pretraining masks shorter spans than configured, or no static attribute at all."""
    low, high = span_lengths(length, settings.mask_ratio, settings.mask_min_days, settings.mask_max_days)
    if 0 < settings.mask_ratio < 1 and (low, high) != (settings.mask_min_days, settings.mask_max_days):
        LOGGER.warning(f"seq_length={length} is short for masked spans of stefaland_mask_min_days="
                       f"{settings.mask_min_days} to stefaland_mask_max_days={settings.mask_max_days} days at "
                       f"stefaland_mask_ratio={settings.mask_ratio}: pretraining masks spans of {low} to {high} "
                       f"days instead, hiding about {settings.mask_ratio:.0%} of each window.")
    if not (group_ids >= 0).any():
        LOGGER.warning(f"No encoder attribute can be masked (all of {attributes} are in "
                       f"stefaland_never_masked_attributes): static reconstruction has nothing to learn and its "
                       f"loss stays 0.")


def _windows_needed(ratio: float, length: int, min_length: int) -> int:
    """Candidate windows per row: twice what shortest windows at random places need to cover ``ratio``."""
    if min_length >= length:
        return 2
    per_window = -math.log1p(-min_length / length)
    return 2 * math.ceil(-math.log1p(-ratio) / per_window) + 2


def _kept_at_random(covered: torch.Tensor, target: float, generator: torch.Generator | None) -> torch.Tensor:
    """Windows kept per row [R]: the most that cover at most ``target`` days, one more with the probability that
    makes the expected covered count ``target`` (``covered`` [R, K+1]: days covered by the first k windows)."""
    below = (covered <= target).sum(dim=1) - 1  # [R]: the most windows covering at most the target
    above = (below + 1).clamp(max=covered.shape[1] - 1)  # covers more than the target, unless no window is left
    under, over = covered.gather(1, below[:, None])[:, 0], covered.gather(1, above[:, None])[:, 0]
    p_more = torch.where(above > below, (target - under) / (over - under).clamp(min=1.0), 0.0)  # [R]
    draw = torch.rand(p_more.shape, generator=generator, device=covered.device)
    return below + (draw < p_more).long()
