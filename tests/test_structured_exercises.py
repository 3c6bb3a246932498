"""The references of notebook 02's exercises 5 and 6: one coupled group of layers pruned at a time.

``prune_channel_pair`` (conv -> norm -> next conv) and ``prune_heads`` (one attention module) are checked against
Torch-Pruning's dependency graph, which finds the coupled slices by itself, and against the masked function (the
removed units zeroed, same shapes). The model-level functions must run whatever function they are given.
"""

import copy
import warnings

import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from course_utils.models import Attention, ConvNet, DynamicTanh, build_model
from course_utils.pruning import (
    channel_importance,
    prune_attention_heads,
    prune_channel_pair,
    prune_conv_channels,
    prune_heads,
    structured_prune,
    units_to_keep,
)

KEEP = torch.tensor([0, 2, 3, 6])
DROP = [1, 4, 5, 7]


def _graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with warnings.catch_warnings():  # DyT's alpha/weight/bias are "unwrapped parameters" to Torch-Pruning
        warnings.simplefilter("ignore", UserWarning)
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def _pair(norm: str) -> nn.Sequential:
    torch.manual_seed(0)
    mid = DynamicTanh(8, channels_last=False, alpha_init_value=0.7) if norm == "dyt" else nn.BatchNorm2d(8)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), mid, nn.Conv2d(8, 5, 3, padding=1))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    model.train()
    model(torch.randn(16, 3, 6, 6) * 2 + 1)  # non-trivial BatchNorm running statistics
    return model.eval()


@pytest.mark.parametrize("norm", ["dyt", "batchnorm"])
def test_channel_pair_matches_torch_pruning_and_the_masked_function(norm):
    model = _pair(norm)
    before = copy.deepcopy(model)
    small = nn.Sequential(*prune_channel_pair(model[0], model[1], model[2], KEEP)).eval()
    for a, b in zip(model.state_dict().values(), before.state_dict().values()):
        assert torch.equal(a, b), "the original layers are left as they are"
    reference = copy.deepcopy(model)
    _graph(reference, torch.randn(1, 3, 6, 6)).get_pruning_group(reference[0], tp.prune_conv_out_channels,
                                                                   idxs=DROP).prune()
    got, want = small.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert (small[0].out_channels, small[2].in_channels, small[2].out_channels) == (4, 4, 5)
    if norm == "dyt":
        assert small[1].normalized_shape == (4,) and not small[1].channels_last
        assert torch.equal(small[1].alpha, model[1].alpha), "DyT's scalar alpha is copied, never sliced"
    else:
        assert small[1].num_features == 4
        assert torch.equal(small[1].running_var, model[1].running_var[KEEP])
    masked = copy.deepcopy(model)
    prune.custom_from_mask(masked[2], "weight", torch.zeros(8)[None, :, None, None].index_fill(1, KEEP, 1)
                           .expand_as(masked[2].weight).clone())
    x = torch.randn(4, 3, 6, 6)
    torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-5)


def test_channel_pair_keeps_the_order_given_and_a_missing_bias():
    conv, nxt = nn.Conv2d(2, 6, 3, bias=False), nn.Conv2d(6, 3, 1)
    small, norm, after = prune_channel_pair(conv, nn.Identity(), nxt, torch.tensor([4, 1]))
    assert small.bias is None and isinstance(norm, nn.Identity)
    assert torch.equal(small.weight, conv.weight[[4, 1]]) and torch.equal(after.weight, nxt.weight[:, [4, 1]])
    assert torch.equal(after.bias, nxt.bias)


@pytest.mark.parametrize("keep", [torch.tensor([]), torch.tensor([0, 0]), torch.tensor([8]),
                                  torch.tensor([0.0, 1.0]), [0, 1], torch.tensor([[0, 1]])])
def test_bad_keep_is_a_value_error(keep):
    model = _pair("dyt")
    with pytest.raises(ValueError, match="keep"):
        prune_channel_pair(model[0], model[1], model[2], keep)
    with pytest.raises(ValueError, match="keep"):
        prune_heads(Attention(16, 8), keep)


class _Wrapped(nn.Module):
    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


def test_prune_heads_matches_torch_pruning_and_the_masked_head():
    torch.manual_seed(1)
    attn = Attention(12, 4).eval()  # head_dim 3
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.3 * torch.randn_like(p))
    before = copy.deepcopy(attn)
    keep = torch.tensor([0, 3])
    small = prune_heads(attn, keep)
    assert all(torch.equal(a, b) for a, b in zip(attn.state_dict().values(), before.state_dict().values()))
    assert (small.num_heads, small.head_dim, small.q.out_features, small.proj.in_features) == (2, 3, 6, 6)
    assert torch.equal(small.head_mask, torch.ones(2))
    reference = _Wrapped(copy.deepcopy(attn))
    group = _graph(reference, torch.randn(1, 5, 12)).get_pruning_group(
        reference.attn.q, tp.prune_linear_out_channels, idxs=[h * 3 + j for h in (1, 2) for j in range(3)])
    assert {dep.target.module for dep, _ in group} >= {reference.attn.k, reference.attn.v, reference.attn.proj}
    group.prune()
    for name in ("q", "k", "v", "proj"):
        for what in ("weight", "bias"):
            assert torch.equal(getattr(getattr(small, name), what), getattr(getattr(reference.attn, name), what))
    masked = copy.deepcopy(attn)
    masked.head_mask[[1, 2]] = 0
    x = torch.randn(3, 5, 12)
    torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-5)


def _trained_looking(family: str, norm: str) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(family, norm, 10, (1, 8, 8), "tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    model.train()
    model(torch.randn(16, 1, 8, 8))
    return model.eval()


@pytest.mark.parametrize("norm", ["dyt", "batchnorm"])
def test_conv_channels_run_the_pair_function_given_on_every_block_and_the_head(norm):
    model, calls = _trained_looking("cnn", norm), []

    def spy(conv, mid, after, keep):
        calls.append((conv.out_channels, type(after).__name__, after.kernel_size, len(keep)))
        return prune_channel_pair(conv, mid, after, keep)

    small = prune_conv_channels(model, 0.5, pair_fn=spy)
    assert calls == [(16, "Conv2d", (3, 3), 8), (32, "Conv2d", (3, 3), 16), (64, "Conv2d", (1, 1), 32)]
    assert isinstance(small, ConvNet) and isinstance(small.head, nn.Linear) and small.head.in_features == 32
    keep = units_to_keep(channel_importance(model)[-1], 0.5)
    assert torch.equal(small.head.weight, model.head.weight[:, keep]) and torch.equal(small.head.bias, model.head.bias)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(small(x), prune_conv_channels(model, 0.5, physical=False)(x), atol=1e-5, rtol=1e-5)
    assert not small.training


def test_vit_heads_run_the_head_function_given():
    model, calls = _trained_looking("vit", "dyt"), []

    def spy(attn, keep):
        calls.append((attn.num_heads, len(keep)))
        return prune_heads(attn, keep)

    small = structured_prune(model, 0.34, head_fn=spy)
    assert calls == [(3, 2)] * len(model.blocks)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(small(x), structured_prune(model, 0.34)(x))
    torch.testing.assert_close(prune_attention_heads(model, 0.34)(x),
                               prune_attention_heads(model, 0.34, physical=False)(x), atol=1e-5, rtol=1e-5)
