"""Techniques compose: anything pruned can be quantized, a distilled student pruned and quantized."""

import pytest
import torch
from torch import nn

from course_utils import quantization as Q
from course_utils.data import get_data
from course_utils.distillation import distill, kd_weights
from course_utils.metrics import count_parameters, output_cosine_similarity
from course_utils.models import build_model
from course_utils.modules import clone_model, effective_weight
from course_utils.pruning import global_prune, global_sparsity, make_permanent, structured_prune
from course_utils.train import fit, seed_everything


@pytest.fixture(scope="module")
def digits():
    return get_data("digits", batch_size=64, subset=512, test_subset=256, seed=0)


@pytest.fixture(scope="module")
def trained(digits):
    seed_everything(0)
    m = build_model("vit", "dyt", 10, (1, 8, 8), "nano")
    fit(m, digits.train_loader, None, epochs=3, lr=3e-3, progress=False, seed=0)
    return m.eval()


def _pruned(model, sparsity=0.5):
    return global_prune(clone_model(model), sparsity)  # still reparametrized: weight_orig + weight_mask


def _x(n=16):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_prune_then_fake_quantize_keeps_the_mask_through_qat(trained, digits):
    pruned = _pruned(trained)
    qm = Q.calibrate(Q.fake_quantize_model(pruned, 8, 8), _x(64))
    assert output_cosine_similarity(qm(_x()), pruned(_x())) > 0.99, "8-bit fake quantization of a pruned model"
    fit(qm, digits.train_loader, None, epochs=1, lr=1e-3, progress=False, seed=0)  # QAT on the pruned model
    layers = Q.fake_quant_layers(qm)
    zeros = sum(int((effective_weight(m.layer) == 0).sum()) for m in layers.values())
    assert zeros / sum(effective_weight(m.layer).numel() for m in layers.values()) == pytest.approx(0.5, abs=0.01)
    for m in layers.values():
        zero = m.layer.weight_mask == 0
        assert torch.all(m.quantized_weight()[zero] == 0), "a pruned weight came back during QAT"


@pytest.mark.parametrize("convert", ["dynamic", "static", "float16", "bfloat16"])
def test_prune_then_real_quantization_or_half(trained, convert):
    pruned = _pruned(trained)
    if convert == "dynamic":
        q = Q.dynamic_int8(pruned)
    elif convert == "static":
        q = Q.static_int8(pruned, _x(64))
    else:
        q = Q.HalfPrecision(pruned, convert)
    assert output_cosine_similarity(q(_x()), pruned(_x())) > 0.98
    assert global_sparsity(pruned) == pytest.approx(0.5, abs=0.01), "converting must not touch the original"


def test_structured_then_int8(trained):
    small = structured_prune(trained, 0.5)
    assert count_parameters(small)["total"] < count_parameters(trained)["total"]
    for q in (Q.dynamic_int8(small), Q.static_int8(small, _x(64))):
        assert output_cosine_similarity(q(_x()), small(_x())) > 0.98


def test_distilled_student_then_prune_then_int8(trained, digits):
    seed_everything(0)
    student = build_model("vit", "dyt", 10, (1, 8, 8), "nano")
    distill(student, trained, digits.train_loader, losses=kd_weights(0.9), epochs=1, progress=False)
    pruned = make_permanent(global_prune(clone_model(student), 0.5))
    q = Q.dynamic_int8(pruned)
    assert output_cosine_similarity(q(_x()), pruned(_x())) > 0.98
    assert count_parameters(pruned)["zero"] > 0.3 * count_parameters(pruned)["total"]


def test_pruned_copy_is_independent(trained):
    pruned = _pruned(trained)
    twin = clone_model(pruned)
    with torch.no_grad():
        twin.head.weight_orig.zero_()
    assert not torch.all(effective_weight(pruned.head) == 0)
    folded = clone_model(pruned, fold=True)
    assert not hasattr(folded.head, "weight_mask") and torch.equal(folded.head.weight, effective_weight(pruned.head))
    assert isinstance(folded.head.weight, nn.Parameter)
