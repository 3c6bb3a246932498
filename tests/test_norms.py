"""The normalization registry and Derf, the normalization added through it."""

import pytest
import torch
from scipy.special import erf
from torch import nn

from course_utils import norms
from course_utils.models import build_model, norm_parameters
from course_utils.norms.derf import DynamicErf
from course_utils.plots import NORM_COLORS, NORM_LABELS


def test_derf_matches_the_formula_computed_with_scipy():
    torch.manual_seed(0)
    layer = DynamicErf(8, alpha_init_value=0.7)
    with torch.no_grad():
        layer.shift.fill_(0.3)
        layer.weight.copy_(torch.randn(8))
        layer.bias.copy_(torch.randn(8))
    x = torch.randn(5, 3, 8) * 4
    want = layer.weight.detach().numpy() * erf(0.7 * x.numpy() + 0.3) + layer.bias.detach().numpy()
    assert torch.allclose(layer(x), torch.from_numpy(want).float(), atol=1e-6)
    assert (layer(x * 1e6) - layer.bias).abs().le(layer.weight.abs() + 1e-6).all()  # bounded by bias +/- |weight|


def test_derf_trains_in_a_vit_and_reports_its_alpha():
    torch.manual_seed(0)
    model = build_model("vit", "derf", size="nano")
    assert sum(isinstance(m, DynamicErf) for m in model.modules()) == 5  # 2 per block, 2 blocks, the final norm
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    rows = norm_parameters(model)
    assert set(rows) == {"blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm"}
    assert all("alpha" in r for r in rows.values()) and any(r["alpha"] != 0.5 for r in rows.values())


def test_the_registry_is_where_names_colours_and_families_come_from():
    assert list(norms.REGISTRY)[:3] == ["layernorm", "batchnorm", "dyt"]
    assert norms.norms_for("vit") == ("layernorm", "dyt", "derf", "identity")
    assert norms.norms_for("cnn") == ("batchnorm", "dyt", "identity")
    assert NORM_COLORS["derf"] not in {c for n, c in NORM_COLORS.items() if n != "derf"}
    assert NORM_LABELS["derf"] == "Derf"
    with pytest.raises(ValueError, match=r"norm='derf' is not valid; choose one of \['batchnorm', 'dyt', 'identity'\]"):
        build_model("cnn", "derf")
    with pytest.raises(ValueError, match="norm='rmsnorm' is not valid; choose one of"):
        norms.make_norm("rmsnorm", 8)
    with pytest.raises(ValueError, match="already registered"):
        norms.register_norm(norms.REGISTRY["dyt"])
    with pytest.raises(ValueError, match="families=.*choose from"):
        norms.register_norm(norms.Normalization("x", "X", "#000000", ("mlp",), lambda d, c, a: nn.Identity()))


def test_a_new_normalization_is_one_registration(monkeypatch):
    """What a new module in course_utils/norms does: register, and every model builder can use it."""
    monkeypatch.setattr(norms, "REGISTRY", dict(norms.REGISTRY))
    norms.register_norm(norms.Normalization("rmsnorm", "RMSNorm", "#000000", ("vit",),
                                            lambda dim, channels_last, alpha_init: nn.RMSNorm(dim), (nn.RMSNorm,)))
    model = build_model("vit", "rmsnorm", size="nano")
    assert isinstance(model.norm, nn.RMSNorm) and "norm" in norm_parameters(model)


def test_the_zoo_compresses_a_derf_vit_like_any_other():
    """The zoo takes a registered norm by name: baseline, pruning and PTQ with no Derf-specific code."""
    from course_utils.data import get_data
    from course_utils.pruning import global_sparsity
    from course_utils.zoo import get_variant

    data = get_data("mnist_5k", 64, smoke=True, seed=0)
    pruned = get_variant("unstructured-70", "vit", "derf", smoke=True, data=data).model
    assert sum(isinstance(m, DynamicErf) for m in pruned.modules()) == 9
    assert global_sparsity(pruned) == pytest.approx(0.7, abs=0.01)
    from course_utils.quantization import FakeQuantLayer

    ptq = get_variant("ptq-w8a8", "vit", "derf", smoke=True, data=data).model
    assert any(isinstance(m, FakeQuantLayer) for m in ptq.modules())
    assert sum(isinstance(m, DynamicErf) for m in ptq.modules()) == 9
