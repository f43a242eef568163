"""Window and group masks, and the masked reconstruction loss, checked against naive loops."""
import pytest
import torch

from neuralhydrology.modelzoo import get_model
from neuralhydrology.training import get_loss_obj

from nh_stefaland.model.masking import (DEFAULT_ATTRIBUTE_GROUPS, _windows_needed, attribute_group_ids, group_mask,
                                        span_lengths, window_mask)
from nh_stefaland.nh.losses import masked_mse

# every window length up to half a year (where 30–90-day spans get shortened at ratio 0.5), then every 61st
LENGTHS = [*range(2, 181), *range(181, 731, 61)]


@pytest.mark.parametrize('ratio', [0.3, 0.5, 0.75])
def test_window_mask_hides_about_the_requested_ratio(ratio):
    generator = torch.Generator().manual_seed(0)
    mask = window_mask((64, 365, 5), ratio=ratio, generator=generator)
    assert mask.dtype == torch.bool and mask.shape == (64, 365, 5)
    assert mask.float().mean().item() == pytest.approx(ratio, abs=0.02)


def test_window_mask_is_reproducible_and_differs_per_variable():
    first = window_mask((8, 180, 3), 0.5, generator=torch.Generator().manual_seed(3))
    second = window_mask((8, 180, 3), 0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert not torch.equal(first[..., 0], first[..., 1])
    torch.manual_seed(5)
    third = window_mask((8, 180, 3), 0.5)
    torch.manual_seed(5)
    assert torch.equal(third, window_mask((8, 180, 3), 0.5))


def test_window_mask_matches_a_loop_that_counts_overlaps_once():
    """Replay the same random draws window by window in Python and stop where the covered share is closest."""
    shape, ratio, low, high = (4, 120, 2), 0.5, 10, 30
    mask = window_mask(shape, ratio, low, high, generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    n_rows, n_windows = shape[0] * shape[2], _windows_needed(ratio, shape[1], low)
    lengths = torch.randint(low, high + 1, (n_rows, n_windows), generator=generator)
    starts = (torch.rand((n_rows, n_windows), generator=generator) * (shape[1] - lengths + 1)).long()
    for row in range(n_rows):
        covered, best = set(), (ratio * shape[1], set())
        for start, length in zip(starts[row].tolist(), lengths[row].tolist()):
            covered |= set(range(start, start + length))
            if abs(len(covered) - ratio * shape[1]) < best[0]:
                best = (abs(len(covered) - ratio * shape[1]), set(covered))
        sample, variable = divmod(row, shape[2])
        hidden = set(torch.nonzero(mask[sample, :, variable]).flatten().tolist())
        assert hidden == best[1]


@pytest.mark.parametrize('ratio', [0.3, 0.5, 0.75])
def test_window_mask_hides_the_ratio_at_every_window_length(ratio):
    generator = torch.Generator().manual_seed(0)
    errors = []
    for length in LENGTHS:
        mask = window_mask((max(8, 2048 // length), length, 8), ratio, 30, 90, generator=generator)
        errors.append(mask.float().mean().item() - ratio)
        assert errors[-1] == pytest.approx(0.0, abs=0.04), f"T={length}"
    assert sum(errors) / len(errors) == pytest.approx(0.0, abs=0.01)


def test_span_lengths_shrink_only_for_short_windows():
    assert span_lengths(365, 0.5, 30, 90) == span_lengths(180, 0.5, 30, 90) == (30, 90)
    assert span_lengths(179, 0.5, 30, 90) == (30, 89)
    assert span_lengths(45, 0.5, 30, 90) == (22, 22)
    assert span_lengths(2, 0.3, 30, 90) == (1, 1)


def test_shortened_window_masks_are_reproducible_spans_no_longer_than_allowed():
    mask = window_mask((16, 20, 3), 0.5, 30, 90, generator=torch.Generator().manual_seed(2))
    assert torch.equal(mask, window_mask((16, 20, 3), 0.5, 30, 90, generator=torch.Generator().manual_seed(2)))
    rows = mask.transpose(1, 2).int()  # [B, F, T]
    span_starts = torch.diff(rows, dim=-1, prepend=torch.zeros_like(rows[..., :1])) == 1
    assert mask.float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert 1 <= span_starts.sum(dim=-1).float().mean().item() <= 2  # spans of 10 days, not one of 20


def test_group_mask_hides_nothing_when_no_attribute_is_maskable():
    generator = torch.Generator().manual_seed(0)
    mask = group_mask(7, torch.tensor([-1, -1, -1]), ratio=0.5, generator=generator)
    assert mask.dtype == torch.bool and mask.shape == (7, 3) and not mask.any()
    assert group_mask(4, torch.zeros(0, dtype=torch.long), ratio=0.5).shape == (4, 0)


def test_pretraining_says_when_spans_shrink_or_nothing_static_is_maskable(get_config, caplog):
    cfg = get_config('caravan_pretrain', stefaland_mask_min_days=30, stefaland_mask_max_days=90,
                     stefaland_never_masked_attributes=['area', 'aridity', 'clay_frac', 'elev_mean', 'p_mean',
                                                        'sand_frac'])
    model = get_model(cfg)
    assert "seq_length=30 is short for masked spans of stefaland_mask_min_days=30" in caplog.text
    assert "pretraining masks spans of 15 to 15 days" in caplog.text
    assert "static reconstruction has nothing to learn" in caplog.text
    dynamic, static = torch.randn(4, 30, 2), torch.randn(4, 6)
    dynamic_mask, static_mask = model.draw_masks(dynamic, static, torch.Generator().manual_seed(0))
    assert not static_mask.any() and dynamic_mask.float().mean().item() == pytest.approx(0.5, abs=0.1)
    caplog.clear()
    get_model(get_config('caravan_pretrain'))
    assert "is short for masked spans" not in caplog.text and "nothing to learn" not in caplog.text


def test_group_mask_hides_whole_groups():
    groups = torch.tensor([0, 0, 0, 1, 1, 2, -1])
    mask = group_mask(500, groups, ratio=0.0, group_probability=0.5, generator=torch.Generator().manual_seed(0))
    for group in range(3):
        members = mask[:, groups == group]
        assert (members.all(dim=1) | ~members.any(dim=1)).all()
        assert members[:, 0].float().mean().item() == pytest.approx(0.5, abs=0.07)


def test_group_mask_tops_up_with_single_attributes_and_never_masks_the_protected():
    groups = torch.tensor([0, 0, 1, 2, 3, 4, 5, -1])
    mask = group_mask(300, groups, ratio=0.5, group_probability=0.2, generator=torch.Generator().manual_seed(1))
    assert not mask[:, -1].any()
    assert (mask[:, :-1].sum(dim=1) >= round(0.5 * 7)).all()


def test_attribute_groups_from_defaults_config_and_never_masked():
    attributes = sorted(['area', 'aridity', 'clay_frac', 'p_mean', 'sand_frac', 'lai_max'])
    ids = dict(zip(attributes, attribute_group_ids(attributes, None, ['area'])))
    assert ids['area'] == -1
    assert ids['clay_frac'] == ids['sand_frac'] and ids['aridity'] == ids['p_mean'] != ids['sand_frac']
    assert {'sand_frac', 'clay_frac'} <= set(DEFAULT_ATTRIBUTE_GROUPS['soil'])
    ids = dict(zip(attributes, attribute_group_ids(attributes, {'texture': ['clay_frac', 'lai_max']}, [])))
    assert ids['clay_frac'] == ids['lai_max'] and len(set(ids.values())) == 5
    with pytest.raises(ValueError, match=r"stefaland_attribute_groups names \['silt_frac'\]"):
        attribute_group_ids(attributes, {'soil': ['sand_frac', 'silt_frac']}, [])
    with pytest.raises(ValueError, match=r"stefaland_never_masked_attributes names \['areas'\]"):
        attribute_group_ids(attributes, None, ['areas'])


def test_masked_mse_ignores_visible_and_missing_positions():
    target = torch.tensor([[1.0, 2.0, float('nan'), 4.0, 5.0]])
    hidden = torch.tensor([[True, False, True, True, False]])
    estimate = torch.tensor([[0.0, 100.0, 100.0, 2.0, -100.0]], requires_grad=True)
    loss = masked_mse(estimate, target, hidden)
    assert loss.item() == pytest.approx(((0 - 1) ** 2 + (2 - 4) ** 2) / 2)
    loss.backward()
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad[0, [1, 2, 4]].eq(0).all()
    assert masked_mse(estimate, target, torch.zeros_like(hidden)).item() == 0.0


def test_per_sample_mask_ratio_spreads_the_hidden_share_between_its_bounds():
    mask = window_mask((512, 365, 3), 0.5, min_ratio=0.0, generator=torch.Generator().manual_seed(4))
    shares = mask.float().mean(dim=1)  # [B, F]
    assert shares.mean().item() == pytest.approx(0.25, abs=0.03)
    assert (shares < 0.1).float().mean() > 0.1 and (shares > 0.4).float().mean() > 0.1
    assert shares.max() < 0.6
    per_sample = shares.mean(dim=1, keepdim=True)  # one share per sample, its variables within one window of it
    assert (shares - per_sample).abs().max() < 90 / 365
    same = window_mask((64, 365, 3), 0.5, min_ratio=0.5, generator=torch.Generator().manual_seed(4))
    assert same.float().mean().item() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match='min_ratio=0.6 must lie in'):
        window_mask((2, 365, 3), 0.5, min_ratio=0.6)


def test_visible_loss_weight_adds_the_error_at_visible_positions(get_config):
    target = torch.tensor([[[1.0], [2.0], [float('nan')], [4.0]]])  # [B, T, F]
    hidden = torch.tensor([[[True], [False], [True], [False]]])
    estimate = torch.zeros_like(target)
    static = {'static_hat': torch.zeros(1, 2), 'static_target': torch.tensor([[1.0, 3.0]]),
              'static_mask': torch.tensor([[True, False]])}
    prediction = {'x_hat': estimate, 'x_target': target, 'x_mask': hidden, **static}
    cfg = get_config('caravan_pretrain', stefaland_visible_loss_weight=0.1, stefaland_static_loss_weight=1.0)
    total, parts = get_loss_obj(cfg)(prediction, {})
    assert parts['dynamic_loss'].item() == pytest.approx(1.0 + 0.1 * (4 + 16) / 2)
    assert parts['static_loss'].item() == pytest.approx(1.0 + 0.1 * 9)
    plain, _ = get_loss_obj(get_config('caravan_pretrain', stefaland_static_loss_weight=1.0))(prediction, {})
    assert plain.item() == pytest.approx(2.0)
