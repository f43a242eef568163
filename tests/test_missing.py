"""Missing inputs: NaN where the mask vectors would invent flows, mask vectors where training taught them."""
import pytest
import torch

from neuralhydrology.modelzoo import get_model

from nh_stefaland.model.missing import MissingPolicy, input_masks, valid_days
from nh_stefaland.model.settings import Settings


def _batch(model, batch_size: int = 2, length: int = 30) -> dict:
    generator = torch.Generator().manual_seed(0)
    x_d = {name: torch.randn(batch_size, length, 1, generator=generator) for name in model.dynamic_inputs}
    return {'x_d': x_d, 'x_s': torch.randn(batch_size, len(model.static_attributes), generator=generator)}


def _naive_valid(missing, static_missing, policy):
    """The policy written out day by day and variable by variable."""
    batch, length, n_variables = missing.shape
    valid = torch.ones(batch, length, dtype=torch.bool)
    for b in range(batch):
        if not policy.trained:
            bad = [bool(missing[b, t].any() or static_missing[b].any()) for t in range(length)]
            for t in range(length):
                valid[b, t] = not (any(bad[:t + 1]) if policy.causal else any(bad))
            continue
        for f in range(n_variables):
            if missing[b, :, f].float().mean() > policy.largest_share + 1e-6:
                valid[b] = False
            t = 0
            while t < length:
                if missing[b, t, f]:
                    end = t
                    while end < length and missing[b, end, f]:
                        end += 1
                    if end - t > policy.longest_gap or t == 0 or end == length:  # may go on outside the window
                        valid[b, t:end] = False
                    t = end
                else:
                    t += 1
    return valid


@pytest.mark.parametrize('policy', [MissingPolicy(trained=False), MissingPolicy(trained=False, causal=True),
                                    MissingPolicy(trained=True, longest_gap=4, largest_share=0.3),
                                    MissingPolicy(trained=True, longest_gap=1, largest_share=0.5)])
def test_valid_days_match_a_naive_loop(policy):
    generator = torch.Generator().manual_seed(3)
    missing = torch.rand(16, 40, 3, generator=generator) < 0.15
    missing[0] = False
    missing[1, 5:12, 0] = True  # a 7-day gap
    missing[2, 30:, :] = True  # the record ends
    static_missing = torch.rand(16, 4, generator=generator) < 0.05
    static_missing[0] = False
    expected = _naive_valid(missing, static_missing, policy)
    assert torch.equal(valid_days(missing, static_missing, policy), expected)
    assert expected[0].all() and not expected.all()


@pytest.mark.parametrize('causal', [True, False])
def test_untrained_mask_vectors_give_nan_for_every_day_that_sees_a_missing_input(get_config, causal):
    model = get_model(get_config('caravan_sample', stefaland_causal=causal)).eval()
    assert not model.missing_policy.trained
    batch = _batch(model, batch_size=3)
    batch['x_d']['total_precipitation_sum'][0, 25] = float('nan')
    batch['x_s'][1, 0] = float('nan')
    with torch.no_grad():
        y_hat = model(batch)['y_hat']
    assert torch.isnan(y_hat[0, 25:]).all() and torch.isnan(y_hat[1]).all()  # an attribute: every day
    assert torch.isfinite(y_hat[0, :25]).all() == causal  # bidirectional: day 0 sees day 25
    assert torch.isfinite(y_hat[2]).all()


def test_trained_mask_vectors_stand_in_for_short_gaps_and_attributes(get_config):
    model = get_model(get_config('caravan_sample', stefaland_input_mask_ratio=0.3, stefaland_mask_min_days=3,
                                 stefaland_mask_max_days=8)).eval()
    policy = model.missing_policy
    assert policy.trained and policy.longest_gap == 8 and policy.largest_share == 0.3
    batch = _batch(model)
    batch['x_d']['total_precipitation_sum'][0, 5:12] = float('nan')  # 7 days: within what training hid
    batch['x_s'][0, 0] = float('nan')
    batch['x_d']['temperature_2m_mean'][1, 10:19] = float('nan')  # 9 days: longer than any hidden span
    batch['x_d']['potential_evaporation_sum'][0, -1] = float('nan')  # a gap at the window's end may go on
    with torch.no_grad():
        y_hat = model(batch)['y_hat']
        assert torch.isfinite(y_hat[0, :-1]).all() and torch.isnan(y_hat[0, -1]).all()
        model.tokens.dynamic.mask_vectors[0] += 1.0
        changed = model(batch)['y_hat']
    assert not torch.allclose(changed[0, :-1], y_hat[0, :-1])  # the gap is filled by the precipitation mask vector
    assert torch.isnan(y_hat[1, 10:19]).all() and torch.isfinite(y_hat[1, :10]).all()
    assert torch.isfinite(y_hat[1, 19:]).all()


def test_probabilistic_heads_return_nan_locations_and_finite_spreads(get_config):
    model = get_model(get_config('caravan_sample', head='gmm', n_distributions=2, loss='GMMLoss',
                                 stefaland_causal=False)).eval()
    batch = _batch(model)
    batch['x_d']['total_precipitation_sum'][0, 3] = float('nan')
    with torch.no_grad():
        prediction = model(batch)
    assert torch.isnan(prediction['mu'][0]).all() and torch.isfinite(prediction['mu'][1]).all()
    assert torch.isfinite(prediction['sigma']).all() and torch.isfinite(prediction['pi']).all()


def test_supervised_training_hides_inputs_and_trains_the_mask_vectors(get_config):
    model = get_model(get_config('caravan_sample', stefaland_input_mask_ratio=0.3)).train()
    batch = _batch(model, batch_size=16)
    model(batch)['y_hat'].pow(2).mean().backward()
    assert model.tokens.dynamic.mask_vectors.grad.abs().sum() > 0
    assert model.tokens.static.mask_vectors.grad.abs().sum() > 0
    untrained = get_model(get_config('caravan_sample')).train()
    untrained(batch)['y_hat'].pow(2).mean().backward()
    assert untrained.tokens.dynamic.mask_vectors.grad.abs().sum() == 0


def test_input_masks_hide_up_to_the_ratio_and_every_missing_value():
    settings = Settings.from_config({'stefaland_input_mask_ratio': 0.2, 'stefaland_mask_min_days': 10,
                                     'stefaland_mask_max_days': 20})
    dynamic, static = torch.zeros(256, 365, 3), torch.zeros(256, 20)
    dynamic[0, :5, 0] = float('nan')
    static[0, 0] = float('nan')
    generator = torch.Generator().manual_seed(0)
    dynamic_mask, static_mask = input_masks(dynamic, static, settings, generator=generator)
    assert dynamic_mask[0, :5, 0].all() and static_mask[0, 0]
    share = dynamic_mask.float().mean(dim=1)  # [B, F]
    assert share.max() <= 0.2 + 0.06 and 0.05 < share.mean() < 0.15
    assert 0.05 < static_mask.float().mean() < 0.15
