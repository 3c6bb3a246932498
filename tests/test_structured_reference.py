"""The hand-written structured pruning against the library: Torch-Pruning (DepGraph, Fang et al. 2023).

For the course's ConvNet and ViT, DyT included, Torch-Pruning's dependency graph is asked to remove the units that
its own magnitude importance ranks lowest. The course's functions must pick the same units, and the two pruned
models must have the same parameter counts and compute the same outputs.
"""

import warnings

import pytest
import torch
import torch_pruning as tp

from course_utils.metrics import count_parameters
from course_utils.models import build_model
from course_utils.pruning import prune_attention_heads, prune_conv_channels, prune_ffn_neurons

AMOUNT = 0.5


def _trained_looking(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    if any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()):
        model.train()
        model(torch.randn(32, 1, 8, 8))  # non-trivial running statistics
    return model.eval()


def _lowest(importance: torch.Tensor, amount: float) -> list[int]:
    """The indices Torch-Pruning's ranking removes: the round(amount * n) least important."""
    n_remove = round(amount * importance.numel())
    return sorted(torch.argsort(importance, stable=True)[:n_remove].tolist())


def _graph(model):
    with warnings.catch_warnings():  # DyT's alpha/weight/bias are "unwrapped parameters" to Torch-Pruning
        warnings.simplefilter("ignore", UserWarning)
        return tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(2, 1, 8, 8))


IMPORTANCE = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="first", normalizer=None)


@pytest.mark.parametrize("norm", ["dyt", "batchnorm"])
def test_conv_channels_match_torch_pruning(norm):
    model = _trained_looking(build_model("cnn", norm, 10, (1, 8, 8), "tiny"))
    ours = prune_conv_channels(model, AMOUNT)
    reference = _graph(model)
    dropped = []
    for block in model.blocks:  # rank every block on the unpruned model, as the course's function does
        group = reference.get_pruning_group(block.conv, tp.prune_conv_out_channels,
                                            idxs=list(range(block.conv.out_channels)))
        dropped.append(_lowest(IMPORTANCE(group), AMOUNT))
    for block, drop in zip(model.blocks, dropped):
        reference.get_pruning_group(block.conv, tp.prune_conv_out_channels, idxs=drop).prune()
    for i, (a, b) in enumerate(zip(ours.blocks, model.blocks)):
        assert a.conv.weight.shape == b.conv.weight.shape, f"block {i}: different channels kept"
        torch.testing.assert_close(a.conv.weight, b.conv.weight)  # the same channels, in the same order
    if norm == "dyt":
        assert ours.blocks[0].norm.weight.shape == model.blocks[0].norm.weight.shape
        assert ours.blocks[0].norm.alpha.shape == (1,), "DyT's scalar alpha is never pruned"
    assert count_parameters(ours) == count_parameters(model)
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(ours(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm", ["dyt", "layernorm"])
def test_ffn_neurons_and_heads_match_torch_pruning(norm):
    model = _trained_looking(build_model("vit", norm, 10, (1, 8, 8), "tiny"))
    ours = prune_attention_heads(prune_ffn_neurons(model, AMOUNT), AMOUNT)
    reference = _graph(model)
    for block in model.blocks:
        fc1 = block.mlp.fc1
        group = reference.get_pruning_group(fc1, tp.prune_linear_out_channels, idxs=list(range(fc1.out_features)))
        reference.get_pruning_group(fc1, tp.prune_linear_out_channels,
                                    idxs=_lowest(IMPORTANCE(group), AMOUNT)).prune()
        attn = block.attn
        h, d = attn.num_heads, attn.head_dim
        # a head's importance is the norm of its q, k and v rows (the course's criterion); DepGraph then finds
        # everything coupled to those rows of q: the same rows of k and v and the same columns of proj
        head_rows = torch.cat([lin.weight.detach().view(h, d, -1) for lin in (attn.q, attn.k, attn.v)], 1)
        heads = _lowest(head_rows.flatten(1).norm(dim=1), AMOUNT)
        group = reference.get_pruning_group(attn.q, tp.prune_linear_out_channels,
                                            idxs=[i * d + j for i in heads for j in range(d)])
        coupled = {dep.target.module for dep, _ in group}
        assert {attn.k, attn.v, attn.proj} <= coupled, "q's rows must be coupled to k, v and proj"
        group.prune()
        keep = [i for i in range(h) if i not in heads]
        attn.num_heads, attn.head_mask = len(keep), attn.head_mask[keep].clone()  # by hand, as DepGraph can't
    assert count_parameters(ours) == count_parameters(model)
    for a, b in zip(ours.blocks, model.blocks):
        torch.testing.assert_close(a.mlp.fc1.weight, b.mlp.fc1.weight)
        torch.testing.assert_close(a.attn.q.weight, b.attn.q.weight)
        torch.testing.assert_close(a.attn.proj.weight, b.attn.proj.weight)
        assert a.attn.num_heads == b.attn.num_heads
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(ours(x), model(x), atol=1e-5, rtol=1e-5)
