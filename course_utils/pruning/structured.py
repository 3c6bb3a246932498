"""Structured pruning: remove whole FFN neurons, attention heads and conv channels, for real.

The result is an ordinary dense model with smaller matrices, so every CPU runs it faster. Units are ranked by
the Ln norm of their weights (``prune.ln_structured``'s criterion). Removing a unit slices every tensor that
depends on it: for a conv channel, the filter, the following norm's per-channel parameters (DyT weight/bias, or
BatchNorm's affine parameters and running statistics) and the next layer's input. DyT's scalar alpha is kept.
With ``physical=False`` the same units are masked instead (same shapes, same function): the tests check that the
small model computes exactly what the masked one does, and that Torch-Pruning (DepGraph) removes the same units.

The two coupled slicings students write in notebook 02 are public, one layer group at a time:
:func:`prune_channel_pair` (conv -> norm -> next conv) and :func:`prune_heads` (one attention module). The model-level
functions take the one to use (``pair_fn``, ``head_fn``), so the notebook can run a student's version.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from ..args import check_fraction
from ..models import Attention, ConvNet, DynamicTanh, ViT
from ..modules import clone_model, effective_weight


def ln_importance(weight: torch.Tensor, p: float = 2, dim: int = 0) -> torch.Tensor:
    """Ln norm of each slice of ``weight`` along ``dim`` (rows of a Linear, output channels of a Conv)."""
    w = weight.detach().transpose(0, dim).flatten(1)
    return w.norm(p=p, dim=1)


def units_to_keep(importance: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted indices of the units kept when removing ``round(amount * n)`` least important ones."""
    amount = check_fraction("amount", amount)
    n = importance.numel()
    n_remove = int(round(amount * n))
    if n_remove >= n:
        raise ValueError(f"amount={amount} would remove all {n} units of a layer; keep at least one "
                         f"(amount < {(n - 0.5) / n:.3f})")
    order = torch.argsort(importance, descending=True, stable=True)
    return order[: n - n_remove].sort().values


def _sliced(src: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None):
    """The (masked) weight and bias of ``src`` restricted to the kept output/input units."""
    w = effective_weight(src)
    w = w[out_idx] if out_idx is not None else w
    w = w[:, in_idx] if in_idx is not None else w
    b = None
    if src.bias is not None:
        b = effective_weight(src, "bias")
        b = b[out_idx] if out_idx is not None else b
    return w, b


def _copy_into(new: nn.Module, w: torch.Tensor, b: torch.Tensor | None) -> nn.Module:
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _linear(src: nn.Linear, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Linear:
    w, b = _sliced(src, out_idx, in_idx)
    return _copy_into(nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device), w, b)


def _mask_param(module: nn.Module, name: str, keep: torch.Tensor, dim: int = 0) -> None:
    p = getattr(module, name, None)
    if p is None:
        return
    shape = [1] * p.dim()
    shape[dim] = p.shape[dim]
    unit = torch.zeros(p.shape[dim], dtype=p.dtype, device=p.device)
    unit[keep] = 1
    prune.custom_from_mask(module, name, unit.view(shape).expand_as(p).clone())


def _require(model: nn.Module, cls: type, what: str) -> None:
    if not isinstance(model, cls):
        raise ValueError(f"{what} needs a course_utils {cls.__name__}, got {type(model).__name__}")


def ffn_importance(model: ViT, p: float = 2) -> list[torch.Tensor]:
    """Per block: the Ln norm of each FFN hidden neuron's ``fc1`` row."""
    return [ln_importance(effective_weight(b.mlp.fc1), p) for b in model.blocks]


def head_importance(model: ViT, p: float = 2) -> list[torch.Tensor]:
    """Per block: the Ln norm of each head's q/k/v rows (zero for heads already masked by ``head_mask``)."""
    out = []
    for b in model.blocks:
        a: Attention = b.attn
        rows = torch.cat([effective_weight(lin).view(a.num_heads, a.head_dim, -1) for lin in (a.q, a.k, a.v)], 1)
        out.append(rows.flatten(1).norm(p=p, dim=1) * (a.head_mask != 0))
    return out


def prune_ffn_neurons(model: ViT, amount: float, p: float = 2, physical: bool = True) -> ViT:
    """Remove ``amount`` of each block's FFN hidden neurons (fc1 rows + bias, fc2 columns) by Ln norm.

    Returns a copy: smaller dense ``nn.Linear`` layers, or with ``physical=False`` the same shapes with those
    neurons masked (``prune.custom_from_mask`` on fc1 weight and bias), which computes the same function.
    """
    _require(model, ViT, "prune_ffn_neurons")
    new = clone_model(model)
    for b, imp in zip(new.blocks, ffn_importance(new, p)):
        keep = units_to_keep(imp, amount)
        if physical:
            b.mlp.fc2 = _linear(b.mlp.fc2, in_idx=keep)
            b.mlp.fc1 = _linear(b.mlp.fc1, out_idx=keep)
        else:
            _mask_param(b.mlp.fc1, "weight", keep)
            _mask_param(b.mlp.fc1, "bias", keep)
    return new


def _check_keep(keep: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """``keep`` as a long tensor of distinct indices into ``n`` units, at least one; ValueError naming it otherwise."""
    if not isinstance(keep, torch.Tensor) or keep.dim() != 1 or keep.is_floating_point() or keep.dtype == torch.bool:
        raise ValueError(f"keep must be a 1-D tensor of {what} indices, got {keep!r}")
    keep = keep.long()
    if not len(keep) or len(keep.unique()) != len(keep) or keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep={keep.tolist()} must name at least one of the {n} {what}, each once")
    return keep


def prune_heads(attn: Attention, keep: torch.Tensor) -> Attention:
    """A new, smaller :class:`Attention` with only the heads ``keep`` (indices, in the order given).

    Head ``h`` owns rows ``h*d:(h+1)*d`` of ``q``, ``k`` and ``v`` (``d = head_dim``) and the same columns of
    ``proj``: all four are sliced together (a head's queries, keys and values only meet each other), ``num_heads``
    and ``head_mask`` follow and ``head_dim`` stays. The result computes what ``attn`` does with the other heads'
    ``head_mask`` entries set to 0, with fewer multiply-adds. ``attn`` is left as it is.
    """
    keep = _check_keep(keep, attn.num_heads, "heads").to(attn.head_mask.device)
    d = attn.head_dim
    rows = (keep[:, None] * d + torch.arange(d, device=keep.device)).flatten()
    new = Attention(attn.q.in_features, len(keep), head_dim=d)
    new.q, new.k, new.v = (_linear(lin, out_idx=rows) for lin in (attn.q, attn.k, attn.v))
    new.proj = _linear(attn.proj, in_idx=rows)
    new.head_mask = attn.head_mask[keep].clone()
    return new.to(attn.head_mask.device).train(attn.training)


HeadFn = Callable[[Attention, torch.Tensor], Attention]


def prune_attention_heads(model: ViT, amount: float, p: float = 2, physical: bool = True,
                          head_fn: HeadFn = prune_heads) -> ViT:
    """Remove ``amount`` of each block's attention heads (q/k/v rows and proj columns of the head) by Ln norm.

    Physical removal replaces each block's attention by ``head_fn(attn, keep)`` (:func:`prune_heads`, or a
    student's version of it), which updates ``num_heads`` and ``head_mask``; ``physical=False`` zeroes
    ``head_mask`` instead.
    """
    _require(model, ViT, "prune_attention_heads")
    new = clone_model(model)
    for b, imp in zip(new.blocks, head_importance(new, p)):
        a: Attention = b.attn
        keep = units_to_keep(imp, amount)
        if physical:
            b.attn = head_fn(a, keep).to(a.head_mask.device).train(a.training)
            continue
        with torch.no_grad():
            drop = torch.ones(a.num_heads, dtype=torch.bool, device=a.head_mask.device)
            drop[keep] = False
            a.head_mask[drop] = 0
    return new


def channel_importance(model: ConvNet, p: float = 2) -> list[torch.Tensor]:
    """Per block: the Ln norm of each output channel's conv filter."""
    return [ln_importance(effective_weight(b.conv), p) for b in model.blocks]


def _slice_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    if isinstance(norm, DynamicTanh):
        new = DynamicTanh(len(keep), channels_last=norm.channels_last, alpha_init_value=norm.alpha_init_value)
        with torch.no_grad():
            new.alpha.copy_(norm.alpha)
            new.weight.copy_(effective_weight(norm)[keep])
            new.bias.copy_(effective_weight(norm, "bias")[keep])
        return new.to(norm.weight.device).train(norm.training)
    if isinstance(norm, nn.BatchNorm2d):
        new = nn.BatchNorm2d(len(keep), eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                             track_running_stats=norm.track_running_stats)
        with torch.no_grad():
            if norm.affine:
                new.weight.copy_(effective_weight(norm)[keep])
                new.bias.copy_(effective_weight(norm, "bias")[keep])
            if norm.track_running_stats:
                new.running_mean.copy_(norm.running_mean[keep])
                new.running_var.copy_(norm.running_var[keep])
                new.num_batches_tracked.copy_(norm.num_batches_tracked)
        return new.to(norm.running_mean.device if norm.running_mean is not None else "cpu").train(norm.training)
    if isinstance(norm, nn.Identity):
        return norm
    raise ValueError(f"cannot prune channels through a {type(norm).__name__} norm")


def _conv(src: nn.Conv2d, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Conv2d:
    w, b = _sliced(src, out_idx, in_idx)
    new = nn.Conv2d(w.shape[1], w.shape[0], src.kernel_size, src.stride, src.padding, src.dilation,
                    bias=b is not None, device=w.device)
    return _copy_into(new, w, b)


def prune_channel_pair(conv: nn.Conv2d, norm: nn.Module, next_conv: nn.Conv2d,
                       keep: torch.Tensor) -> tuple[nn.Conv2d, nn.Module, nn.Conv2d]:
    """New, smaller layers for one coupled ``conv -> norm -> next_conv`` group: the channels ``keep`` survive.

    ``conv`` keeps those output channels (filters and bias), ``norm`` the same entries (channels-first DyT:
    ``weight``/``bias``, its scalar ``alpha`` copied; BatchNorm: affine parameters and running statistics;
    Identity passes) and ``next_conv`` the same input channels (its output channels and bias stay). Slicing one
    without the others breaks the shapes, or (a norm left whole) silently scales the wrong channels. The result
    computes what the original does with the other channels zeroed between ``norm`` and ``next_conv``.
    """
    keep = _check_keep(keep, effective_weight(conv).shape[0], "channels").to(conv.weight.device)
    return _conv(conv, keep, None), _slice_norm(norm, keep), _conv(next_conv, None, keep)


PairFn = Callable[[nn.Conv2d, nn.Module, nn.Conv2d, torch.Tensor], tuple[nn.Conv2d, nn.Module, nn.Conv2d]]


def _head_as_conv(head: nn.Linear) -> nn.Conv2d:
    """The ConvNet's head as the 1x1 conv it equals on the last feature map (a linear map commutes with the global
    average pool), so the last block is pruned through the same conv -> norm -> conv function as the others."""
    w, b = _sliced(head, None, None)
    conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=b is not None, device=w.device)
    return _copy_into(conv, w[:, :, None, None], b)


def _conv_as_head(conv: nn.Conv2d) -> nn.Linear:
    w = conv.weight.detach()[:, :, 0, 0]
    b = conv.bias.detach() if conv.bias is not None else None
    return _copy_into(nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device), w, b)


def prune_conv_channels(model: ConvNet, amount: float, p: float = 2, physical: bool = True,
                        pair_fn: PairFn = prune_channel_pair) -> ConvNet:
    """Remove ``amount`` of each conv block's output channels by Ln norm of the filters.

    Physical removal runs ``pair_fn(conv, norm, next_conv, keep)`` (:func:`prune_channel_pair`, or a student's
    version of it) on every block: it slices the conv's out-channels, the norm's per-channel parameters (DyT
    weight/bias, BatchNorm affine and running statistics) and the next conv's in-channels; after the last block the
    next layer is the head, passed as the 1x1 conv it equals and turned back into a Linear. ``physical=False``
    masks the filters and the norm's weight/bias instead (same function, same shapes).
    """
    _require(model, ConvNet, "prune_conv_channels")
    new = clone_model(model)
    keeps = [units_to_keep(imp, amount) for imp in channel_importance(new, p)]
    if physical:
        blocks = list(new.blocks)
        for i, (b, keep) in enumerate(zip(blocks, keeps)):
            after = blocks[i + 1].conv if i + 1 < len(blocks) else _head_as_conv(new.head)
            b.conv, b.norm, after = pair_fn(b.conv, b.norm, after, keep)
            if i + 1 < len(blocks):
                blocks[i + 1].conv = after
            else:
                new.head = _conv_as_head(after)
        return new.to(keeps[0].device).train(model.training)
    for b, keep in zip(new.blocks, keeps):
        _mask_param(b.conv, "weight", keep)
        _mask_param(b.conv, "bias", keep)
        if isinstance(b.norm, (DynamicTanh, nn.BatchNorm2d)) and getattr(b.norm, "weight", None) is not None:
            _mask_param(b.norm, "weight", keep)
            _mask_param(b.norm, "bias", keep)
    return new


def structured_prune(model: nn.Module, amount: float, p: float = 2, physical: bool = True,
                     pair_fn: PairFn = prune_channel_pair, head_fn: HeadFn = prune_heads) -> nn.Module:
    """ViT: remove ``amount`` of the attention heads (through ``head_fn``) and FFN neurons; ConvNet: of the conv
    channels (through ``pair_fn``)."""
    if isinstance(model, ViT):
        return prune_ffn_neurons(prune_attention_heads(model, amount, p, physical, head_fn), amount, p, physical)
    if isinstance(model, ConvNet):
        return prune_conv_channels(model, amount, p, physical, pair_fn)
    raise ValueError(f"structured_prune supports course_utils ViT and ConvNet models, not {type(model).__name__}")
