"""deploy.fold, the reference of notebook 06's exercise 4: DyT's weight and bias folded into the Linear layers it
feeds give the same logits with fewer parameters and operators, in eager PyTorch and in ONNX Runtime."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from course_utils import deploy as D
from course_utils.deploy import fold
from course_utils.metrics import count_parameters, op_time_breakdown
from course_utils.models import build_model
from course_utils.norms.dyt import DynamicTanh
from course_utils.quantization.int8 import dynamic_int8


def _trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """DyT weights and biases away from their initial ones and 1 and 0 (else the fold would have nothing to do)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, DynamicTanh):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))
                m.alpha.fill_(0.3 + torch.rand(1, generator=g).item())
    return model.eval()


@pytest.mark.parametrize("shape", [(16, 16), (16, 40), (16, 3)])
def test_pair_fold_is_exact_and_leaves_its_inputs(shape):
    dyt, lin = _trained_looking(DynamicTanh(shape[0])), nn.Linear(*shape)
    before = {k: v.clone() for k, v in {**dyt.state_dict(), **lin.state_dict()}.items()}
    x = 3 * torch.randn(4, 5, shape[0])
    part, new = fold.fold_dyt_into_linear(dyt, lin)
    with torch.no_grad():
        assert torch.allclose(new(part(x)), lin(dyt(x)), atol=1e-5)
        assert torch.allclose(part(x), torch.tanh(dyt.alpha * x))
    assert torch.allclose(new.weight, lin.weight @ torch.diag(dyt.weight))  # W diag(g)
    assert torch.allclose(new.bias, lin.weight @ dyt.bias + lin.bias, atol=1e-6)
    assert all(torch.equal(v, {**dyt.state_dict(), **lin.state_dict()}[k]) for k, v in before.items())
    assert isinstance(part, fold.ScaledTanh) and sum(p.numel() for p in part.parameters()) == 1


def test_pair_fold_refuses_what_it_cannot_fold():
    with pytest.raises(ValueError, match="DynamicTanh"):
        fold.fold_dyt_into_linear(nn.LayerNorm(8), nn.Linear(8, 4))
    with pytest.raises(ValueError, match="channels"):
        fold.fold_dyt_into_linear(DynamicTanh(8), nn.Linear(6, 4))
    pruned = prune.l1_unstructured(nn.Linear(8, 4), "weight", amount=0.5)
    with pytest.raises(ValueError, match="plain float"):
        fold.fold_dyt_into_linear(DynamicTanh(8), pruned)


def test_model_fold_matches_and_saves_parameters_and_operators():
    vit = _trained_looking(build_model("vit", "dyt", size="tiny"))
    calls = []

    def counting(dyt, linear):
        calls.append(linear.out_features)
        return fold.fold_dyt_into_linear(dyt, linear)

    folded = fold.fold_dyt(vit, counting)
    depth, dim = len(vit.blocks), vit.head.in_features
    assert len(calls) == 4 * depth + 1  # q, k, v and fc1 per block, and the head
    assert not any(isinstance(m, DynamicTanh) for m in folded.modules())
    assert any(isinstance(m, DynamicTanh) for m in vit.modules()), "the model itself is unchanged"
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(folded(x), vit(x), atol=1e-5)
    n_dyt = 2 * depth + 1
    assert count_parameters(vit)["total"] - count_parameters(folded)["total"] == 2 * dim * n_dyt
    ops = {name: op_time_breakdown(m, x[:1]).calls.sum() for name, m in (("vit", vit), ("folded", folded))}
    assert ops["vit"] - ops["folded"] == 2 * n_dyt  # one mul and one add per DyT


def test_model_fold_of_a_pruned_vit_and_what_does_not_fold():
    vit = _trained_looking(build_model("vit", "dyt", size="nano"))
    prune.l1_unstructured(vit.blocks[0].attn.q, "weight", amount=0.5)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fold.fold_dyt(vit)(x), vit(x), atol=1e-5)
    for model in (build_model("vit", "layernorm", size="nano"), build_model("cnn", "dyt", size="tiny"),
                  dynamic_int8(vit)):
        with pytest.raises(ValueError, match="no DyT"):
            fold.fold_dyt(model)


def test_the_folded_vit_runs_in_onnxruntime(tmp_path):
    vit = _trained_looking(build_model("vit", "dyt", size="nano"))
    folded = fold.fold_dyt(vit)
    x = torch.randn(8, 1, 28, 28)
    runner = D.deploy(folded, "onnxruntime", "fp32", example_shape=(1, 28, 28), batch_sizes=(8,), workdir=tmp_path,
                      verify=x)
    report = D.check_parity(runner, vit, x)  # against the unfolded model
    assert report.max_abs_diff < 1e-4 and report.agreement == 1.0
