"""The module-tree helpers: one copy, one swap, one capture, and a float view of any linear layer."""

import pytest
import torch
from torch import nn

from course_utils import quantization as Q
from course_utils.models import build_model
from course_utils.modules import (
    as_float_linear,
    capture,
    clone_model,
    find_modules,
    graph_with_features,
    head_linear,
    of_type,
    replace_modules,
)
from course_utils.pruning import global_prune


def _vit():
    torch.manual_seed(0)
    return build_model("vit", "dyt", 10, (1, 8, 8), "nano").eval()


def test_replace_modules_swaps_matches_only_and_not_twice():
    m = _vit()
    calls = []
    replace_modules(m, lambda mod, fqn: calls.append(fqn) or nn.Sequential(mod), of_type(nn.Linear))
    assert len(calls) == len([1 for _ in find_modules(_vit(), of_type(nn.Linear))])
    assert all(isinstance(mod, nn.Sequential) for mod in find_modules(m, of_type(nn.Sequential)).values())
    root = replace_modules(nn.Linear(2, 2), lambda mod, fqn: nn.Identity(), of_type(nn.Linear))
    assert isinstance(root, nn.Identity), "a matching root is replaced too"
    named = replace_modules(_vit(), lambda mod, fqn: nn.Identity(), ["head"])
    assert isinstance(named.head, nn.Identity)


def test_capture_inputs_outputs_and_cleans_up():
    m = _vit()
    x = torch.randn(3, 1, 8, 8)
    with capture(m, ["head"], "input") as ins, capture(m, ["blocks.0"], "output") as outs:
        logits = m(x)
    torch.testing.assert_close(m.head(ins["head"]), logits)
    assert outs["blocks.0"].shape[0] == 3 and not outs["blocks.0"].requires_grad
    assert not m.head._forward_pre_hooks and not m.blocks[0]._forward_hooks
    with pytest.raises(ValueError, match="nope"):
        with capture(m, ["nope"]):
            pass


@pytest.mark.parametrize("kind", ["plain", "pruned", "fake", "dynamic", "static"])
def test_as_float_linear_computes_the_same_as_the_layer(kind):
    m = _vit()
    x = torch.randn(16, 1, 8, 8)
    q = {"plain": lambda: m, "pruned": lambda: global_prune(clone_model(m), 0.5),
         "fake": lambda: Q.fake_quantize_model(m, 4, None), "dynamic": lambda: Q.dynamic_int8(m),
         "static": lambda: Q.static_int8(m, torch.randn(64, 1, 8, 8))}[kind]()
    if kind == "static":  # an exported graph has no hooks: its head and features are read from the graph
        out, feature = graph_with_features(q)(x)
        ins = {"head": feature}
    else:
        with capture(q, ["head"], "input") as ins:
            out = q(x)
    lin = head_linear(q)
    assert isinstance(lin, nn.Linear)
    if kind != "static":
        torch.testing.assert_close(as_float_linear(q.head).weight, lin.weight)
    tol = 0.05 if kind in ("dynamic", "static") else 1e-5  # int8: activations are quantized inside the kernel
    torch.testing.assert_close(lin(ins["head"].float()), out, atol=tol * out.abs().max().item(), rtol=0)
    with pytest.raises(ValueError, match="not a linear layer"):
        as_float_linear(nn.ReLU())
