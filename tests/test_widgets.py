"""The threshold slider: it reports the sparsity and accuracy it sets, and prunes copies only."""

import math

import pytest
import torch

from course_utils.data import get_data
from course_utils.models import build_model
from course_utils.modules import clone_model, effective_weight
from course_utils.pruning import global_sparsity, prunable_layers
from course_utils.train import evaluate
from course_utils.widgets import threshold_slider


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, seed=0)


def _vit():
    m = build_model("vit", "dyt", 10, (1, 8, 8), "nano").eval()
    with torch.no_grad():  # trained-looking weights: larger than the init's std 0.02, and not all equal
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def test_threshold_slider_reports_the_sparsity_and_accuracy_it_sets(digits):
    m = _vit()
    w = threshold_slider(m, digits.test_loader, tau=0.1, plot=False)
    assert w.result["tau"] == pytest.approx(0.1)
    weights = torch.cat([effective_weight(x).flatten() for x in prunable_layers(m).values()])
    for tau in (0.05, 0.3):
        w.children[0].value = tau
        assert w.result["tau"] == pytest.approx(tau)
        assert w.result["sparsity"] == pytest.approx((weights.abs() < tau).float().mean().item(), abs=1e-6)
        ref = clone_model(m)
        for layer in prunable_layers(ref).values():
            with torch.no_grad():
                layer.weight.mul_(layer.weight.abs() >= tau)
        assert w.result["accuracy"] == pytest.approx(evaluate(ref, digits.test_loader)["accuracy"])
    assert global_sparsity(m) == 0  # the slider prunes copies
    assert math.isclose(w.children[0].max, weights.abs().max().item(), rel_tol=1e-6)
    w2 = threshold_slider(m, digits.test_loader, tau=0.5, scale="quantile", plot=True)
    assert w2.result["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_the_readout_follows_the_slider_with_every_decimal_of_its_step(digits):
    from course_utils.widgets import decimals

    assert (decimals(0.005), decimals(0.01), decimals(0.5), decimals(1.0)) == (3, 2, 1, 1)
    w = threshold_slider(_vit(), digits.test_loader, tau=0.1, step=0.005, plot=False)
    readout = w.children[1]
    assert "tau = 0.100" in readout.value and w.children[0].readout_format == ".3f"
    w.children[0].value = 0.215
    assert "tau = 0.215" in readout.value
    assert f"sparsity <b>{w.result['sparsity']:.1%}</b>" in readout.value
    assert f"test accuracy <b>{w.result['accuracy']:.2%}</b>" in readout.value
