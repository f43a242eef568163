"""UMAL: NH's sampled asymmetry tau reaches StefaLand's head for every adapter, and its quantiles come out ordered."""
import pytest
import torch

from neuralhydrology.modelzoo import get_model
from neuralhydrology.training import get_loss_obj

ADAPTERS = ['resconn', 'none', 'linear', 'dual_residual']
UMAL = {'head': 'umal', 'loss': 'UMALLoss', 'n_taus': 4, 'tau_down': 0.05, 'tau_up': 0.95}


def _batch(model, batch_size: int = 16, length: int = 30) -> dict:
    """Random normalised inputs and a skewed target that no input explains (its quantiles are the noise's)."""
    x_d = {name: torch.randn(batch_size, length, 1) for name in model.dynamic_inputs}
    return {'x_d': x_d, 'x_s': torch.randn(batch_size, len(model.static_attributes)),
            'y': torch.randn(batch_size, length, 1).exp() - 1}


def _at_tau(model, data: dict, tau: float) -> dict[str, torch.Tensor]:
    some_input = next(iter(data['x_d'].values()))
    with torch.no_grad():
        return model({**data, 'x_d': {**data['x_d'], '_tau': torch.full_like(some_input, tau)}})


@pytest.mark.parametrize('adapter', ADAPTERS)
def test_umal_prediction_depends_on_tau_but_the_encoder_does_not(get_config, adapter):
    torch.manual_seed(0)
    model = get_model(get_config('caravan_sample', stefaland_adapter=adapter, **UMAL)).eval()
    data = _batch(model)
    low, high = _at_tau(model, data, 0.1), _at_tau(model, data, 0.9)
    torch.testing.assert_close(low['embedding'], high['embedding'])
    assert not torch.allclose(low['mu'], high['mu'])
    extended = model.pre_model_hook(data, is_train=True)
    assert model(extended)['mu'].shape[0] == 4 * 16


def test_umal_without_nh_tau_fails_clearly(get_config):
    model = get_model(get_config('caravan_sample', **UMAL))
    with pytest.raises(ValueError, match=r"head: umal reads the asymmetry x_d\['_tau'\]"):
        model(_batch(model))


@pytest.mark.parametrize('adapter', ['resconn', 'linear'])
def test_umal_quantiles_are_ordered_after_a_short_training(get_config, adapter):
    """40 Adam steps with NH's UMAL batch extension and loss: the median over a batch rises with tau."""
    torch.manual_seed(0)
    cfg = get_config('caravan_sample', stefaland_adapter=adapter, **UMAL)
    model, loss = get_model(cfg), get_loss_obj(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(40):
        data = model.pre_model_hook(_batch(model), is_train=True)
        total, _ = loss(model(data), data)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    data = _batch(model.eval(), batch_size=64)
    medians = [_at_tau(model, data, tau)['mu'][:, -1].median().item() for tau in (0.1, 0.5, 0.9)]
    assert medians[0] < medians[1] < medians[2]
