"""Pruning: magnitude/threshold pruning, pruning inside the training loop, structured removal, low rank.

- Unstructured: a threshold rule as a ``torch.nn.utils.prune.BasePruningMethod`` (:class:`ThresholdPruning`),
  layerwise ``l1_unstructured`` and ``global_unstructured`` from ``torch.nn.utils.prune``, :func:`make_permanent`.
- In the training loop: :class:`ThresholdPruner` and :class:`GradualPruner` (the cubic schedule of Zhu & Gupta,
  "To prune, or not to prune", 2017) are ``fit(after_step=...)`` callbacks that re-apply the masks after every step.
- Structured: :func:`prune_ffn_neurons`, :func:`prune_attention_heads` (ViT) and :func:`prune_conv_channels`
  (ConvNet) rank units by their Ln norm and return a physically smaller dense model (or, with
  ``physical=False``, the same-shape model with those units masked, which computes the same function).
- Low rank: :func:`low_rank_factorize` replaces each ``nn.Linear`` by two smaller ones from a truncated SVD.
- Reports: :func:`sparsity_report`, :func:`sparse_size_on_disk` (real bytes of sparse storage formats),
  :func:`speed_report`, :func:`norm_snapshot`/:func:`track_norms` (DyT alpha and gamma during fine-tuning).
"""

from __future__ import annotations

import copy
import io
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader

from .metrics import count_flops, count_parameters, size_on_disk
from .models import Attention, ConvNet, DynamicTanh, ViT, norm_parameters
from .train import evaluate

#: Module types whose ``weight`` the unstructured functions prune by default.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
SCALES = ("absolute", "std", "quantile")
SPARSE_FORMATS = ("coo", "csr", "bitmask")


# ------------------------------------------------------------------------------------------------ checks

def _check_fraction(value: float, name: str = "sparsity") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name}={value!r} is not valid; it must be a number in [0, 1)")
    return float(value)


def _check_tau(tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau < 0:
        raise ValueError(f"tau={tau!r} is not valid; it must be a finite number >= 0")
    return float(tau)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(allowed)}")


# ------------------------------------------------------------------------------------------------ layers

def prunable_layers(model: nn.Module, layers: Iterable[str] | None = None,
                    types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES) -> dict[str, nn.Module]:
    """The modules whose ``weight`` gets pruned, by qualified name: ``layers`` if given, else every ``types``."""
    modules = dict(model.named_modules())
    if layers is not None:
        layers = list(layers)
        unknown = [n for n in layers if n not in modules or not _has_weight(modules[n])]
        if unknown:
            raise ValueError(f"layers={unknown} are not modules with a weight in this model")
        out = {n: modules[n] for n in layers}
    else:
        out = {n: m for n, m in modules.items() if isinstance(m, types) and _has_weight(m)}
    if not out:
        raise ValueError(f"the model has no prunable layers (no {[t.__name__ for t in types]} with a weight)")
    return out


def _has_weight(m: nn.Module) -> bool:
    return isinstance(getattr(m, "weight", None), torch.Tensor) or hasattr(m, "weight_orig")


def effective_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight the module computes with: ``weight_orig * weight_mask`` when pruned (never stale)."""
    if hasattr(module, name + "_orig") and hasattr(module, name + "_mask"):
        return (getattr(module, name + "_orig") * getattr(module, name + "_mask")).detach()
    return getattr(module, name).detach()


def clone_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works right after ``torch.nn.utils.prune`` (whose masked weight is not a leaf)."""
    stash = []
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod) and isinstance(getattr(m, hook._tensor_name, None),
                                                                         torch.Tensor):
                stash.append((m, hook._tensor_name, getattr(m, hook._tensor_name)))
                setattr(m, hook._tensor_name, getattr(m, hook._tensor_name).detach())
    try:
        return copy.deepcopy(model)
    finally:
        for m, name, t in stash:
            setattr(m, name, t)


def is_pruned(module: nn.Module, name: str = "weight") -> bool:
    """Whether ``module.<name>`` is reparametrized by ``torch.nn.utils.prune``."""
    return hasattr(module, name + "_mask")


# ------------------------------------------------------------------------------------- threshold pruning

class ThresholdPruning(prune.BasePruningMethod):
    """Prune every entry whose magnitude is below ``tau``: the mask keeps ``|w| >= tau``."""

    PRUNING_TYPE = "unstructured"

    def __init__(self, tau: float) -> None:
        self.tau = _check_tau(tau)

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        return default_mask * (t.abs() >= self.tau).to(default_mask.dtype)


def threshold_prune(module: nn.Module, name: str, tau: float) -> nn.Module:
    """Like ``prune.l1_unstructured``: mask ``module.<name>`` where ``|w| < tau`` (reparametrizes the module)."""
    ThresholdPruning.apply(module, name, tau=tau)
    return module


def magnitude_mask(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """0/1 mask (same dtype as ``weight``) keeping the entries with ``|w| >= tau``."""
    _check_tau(tau)
    return (weight.abs() >= tau).to(weight.dtype)


def layer_threshold(weight: torch.Tensor, tau: float, scale: str = "absolute") -> float:
    """The absolute threshold for one layer: ``tau`` itself, ``tau * std(w)``, or the ``tau``-quantile of ``|w|``."""
    _check_choice("scale", scale, SCALES)
    if scale == "quantile":
        _check_fraction(tau, "tau")
        return float(torch.quantile(weight.detach().abs().flatten().float(), tau)) if tau > 0 else 0.0
    tau = _check_tau(tau)
    return tau * float(weight.detach().float().std()) if scale == "std" else tau


def prune_by_threshold(model: nn.Module, tau: float, layers: Iterable[str] | None = None,
                       scale: str = "absolute") -> dict[str, float]:
    """Threshold-prune every prunable layer in place; ``scale`` makes tau scale-free (``"std"``, ``"quantile"``).

    Returns the absolute threshold used per layer.
    """
    used = {}
    for name, m in prunable_layers(model, layers).items():
        used[name] = layer_threshold(effective_weight(m), tau, scale)
        threshold_prune(m, "weight", used[name])
    return used


def layerwise_prune(model: nn.Module, sparsity: float, layers: Iterable[str] | None = None) -> nn.Module:
    """``prune.l1_unstructured`` on each layer: every layer loses the same fraction of its weights (in place)."""
    sparsity = _check_fraction(sparsity)
    for m in prunable_layers(model, layers).values():
        prune.l1_unstructured(m, "weight", amount=sparsity)
    return model


def global_prune(model: nn.Module, sparsity: float, layers: Iterable[str] | None = None) -> nn.Module:
    """``prune.global_unstructured``: the smallest-magnitude weights across all layers at once (in place)."""
    sparsity = _check_fraction(sparsity)
    params = [(m, "weight") for m in prunable_layers(model, layers).values()]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    return model


def global_threshold(weights: Sequence[torch.Tensor], sparsity: float) -> float:
    """The magnitude ``t`` such that pruning every ``|w| <= t`` removes a ``sparsity`` fraction (kthvalue).

    Returns 0.0 when nothing is to be pruned.
    """
    sparsity = _check_fraction(sparsity)
    if not weights:
        raise ValueError("weights is empty: give at least one tensor")
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(round(sparsity * flat.numel()))
    return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned parameter: masks are folded into plain weights (in place)."""
    for m in model.modules():
        for pname in [n[:-5] for n, _ in m.named_parameters(recurse=False) if n.endswith("_orig")]:
            if hasattr(m, pname + "_mask"):
                prune.remove(m, pname)
    return model


# ------------------------------------------------------------------------------------------------ reports

def sparsity_report(model: nn.Module, layers: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-layer weights, non-zeros, zeros and sparsity, then an overall row and an all-parameters row."""
    rows = []
    for name, m in prunable_layers(model, layers).items():
        w = effective_weight(m)
        nz = int(torch.count_nonzero(w))
        rows.append({"layer": name, "shape": "x".join(map(str, w.shape)), "weights": w.numel(), "nonzero": nz,
                     "zeros": w.numel() - nz, "sparsity": 1 - nz / w.numel()})
    total, nz = sum(r["weights"] for r in rows), sum(r["nonzero"] for r in rows)
    rows.append({"layer": "all pruned layers", "shape": "", "weights": total, "nonzero": nz, "zeros": total - nz,
                 "sparsity": 1 - nz / total})
    c = count_parameters(model)
    rows.append({"layer": "all parameters", "shape": "", "weights": c["total"], "nonzero": c["nonzero"],
                 "zeros": c["zero"], "sparsity": c["zero"] / c["total"]})
    return pd.DataFrame(rows)


def global_sparsity(model: nn.Module, layers: Iterable[str] | None = None) -> float:
    """Fraction of zero weights over the prunable layers."""
    ws = [effective_weight(m) for m in prunable_layers(model, layers).values()]
    total = sum(w.numel() for w in ws)
    return 1 - sum(int(torch.count_nonzero(w)) for w in ws) / total


def largest_sparsity_within(sparsities: Sequence[float], accuracies: Sequence[float], reference: float,
                            tolerance: float = 0.01) -> float:
    """The largest sparsity whose accuracy is at least ``reference - tolerance`` (0.0 if none)."""
    if len(sparsities) != len(accuracies):
        raise ValueError("sparsities and accuracies must have the same length")
    ok = [s for s, a in zip(sparsities, accuracies) if a >= reference - tolerance - 1e-12]
    return float(max(ok)) if ok else 0.0


# ------------------------------------------------------------------------------ pruning in the training loop

def cubic_sparsity(step: int, final_sparsity: float, total_steps: int, start_step: int = 0,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / n)^3`` for ``t0 <= t <= t0 + n``."""
    _check_fraction(final_sparsity, "final_sparsity")
    if total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r} is not valid; it must be >= 1")
    frac = min(1.0, max(0.0, (step - start_step) / total_steps))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


class _MaskedTraining:
    """Attach a (all-ones) pruning mask to each layer; ``apply_masks`` zeroes the pruned stored weights."""

    def __init__(self, model: nn.Module, layers: Iterable[str] | None) -> None:
        self.layers = prunable_layers(model, layers)
        for m in self.layers.values():
            if not is_pruned(m):
                prune.identity(m, "weight")
        self.history: list[tuple[int, float]] = []

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Re-apply the masks after an optimizer step: AdamW's decay/momentum must not revive pruned weights."""
        for m in self.layers.values():
            m.weight_orig.mul_(m.weight_mask)

    def sparsity(self) -> float:
        masks = [m.weight_mask for m in self.layers.values()]
        return 1 - sum(float(k.sum()) for k in masks) / sum(k.numel() for k in masks)


class ThresholdPruner(_MaskedTraining):
    """``fit(after_step=...)`` callback: threshold pruning inside the training loop.

    Every ``frequency`` steps the weights with ``|w| < tau_t`` join the mask, where ``tau_t`` ramps linearly
    from 0 to ``tau`` over ``ramp_steps`` (``scale`` as in :func:`layer_threshold`, measured once at the start);
    masks are re-applied after every step.
    """

    def __init__(self, model: nn.Module, tau: float, layers: Iterable[str] | None = None, scale: str = "absolute",
                 ramp_steps: int = 0, frequency: int = 1) -> None:
        super().__init__(model, layers)
        self.tau, self.ramp_steps, self.frequency = float(tau), int(ramp_steps), max(1, int(frequency))
        self.taus = {n: layer_threshold(effective_weight(m), tau, scale) for n, m in self.layers.items()}

    def tau_at(self, step: int) -> float:
        """Fraction of the final threshold in force at ``step``."""
        return 1.0 if self.ramp_steps <= 0 else min(1.0, step / self.ramp_steps)

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int) -> None:
        if step % self.frequency == 0 or step == self.ramp_steps:
            f = self.tau_at(step)
            for n, m in self.layers.items():
                m.weight_mask.mul_((effective_weight(m).abs() >= f * self.taus[n]).to(m.weight_mask.dtype))
            self.history.append((step, self.sparsity()))
        self.apply_masks()


class GradualPruner(_MaskedTraining):
    """``fit(after_step=...)`` callback: gradual magnitude pruning on the cubic schedule of Zhu & Gupta (2017).

    Every ``frequency`` steps between ``start_step`` and ``start_step + total_steps`` the smallest-magnitude
    weights (globally, or per layer with ``scope="layerwise"``) are masked up to ``cubic_sparsity(step)``;
    masks only grow, and they are re-applied after every optimizer step.
    """

    def __init__(self, model: nn.Module, final_sparsity: float, total_steps: int, start_step: int = 0,
                 frequency: int = 5, initial_sparsity: float = 0.0, scope: str = "global",
                 layers: Iterable[str] | None = None) -> None:
        _check_fraction(final_sparsity, "final_sparsity")
        _check_fraction(initial_sparsity, "initial_sparsity")
        _check_choice("scope", scope, ("global", "layerwise"))
        if total_steps < 1:
            raise ValueError(f"total_steps={total_steps!r} is not valid; it must be >= 1")
        super().__init__(model, layers)
        self.final_sparsity, self.total_steps, self.start_step = final_sparsity, int(total_steps), int(start_step)
        self.frequency, self.initial_sparsity, self.scope = max(1, int(frequency)), initial_sparsity, scope

    def target(self, step: int) -> float:
        """The scheduled sparsity at ``step``."""
        return cubic_sparsity(step, self.final_sparsity, self.total_steps, self.start_step, self.initial_sparsity)

    @torch.no_grad()
    def prune_to(self, sparsity: float) -> None:
        """Mask the smallest-magnitude weights so the pruned layers reach ``sparsity``."""
        mods = list(self.layers.values())
        groups = [mods] if self.scope == "global" else [[m] for m in mods]
        for group in groups:
            scores = torch.cat([effective_weight(m).abs().flatten() for m in group])
            k = int(round(sparsity * scores.numel()))
            if k == 0:
                continue
            keep = torch.ones_like(scores)
            keep[torch.topk(scores, k, largest=False).indices] = 0
            offset = 0
            for m in group:
                n = m.weight_mask.numel()
                m.weight_mask.mul_(keep[offset:offset + n].view_as(m.weight_mask))
                offset += n

    def __call__(self, model: nn.Module, step: int) -> None:
        end = self.start_step + self.total_steps
        if self.start_step <= step <= end and ((step - self.start_step) % self.frequency == 0 or step == end):
            self.prune_to(self.target(step))
            self.history.append((step, self.sparsity()))
        self.apply_masks()


# -------------------------------------------------------------------------------------- structured pruning

def ln_importance(weight: torch.Tensor, p: float = 2, dim: int = 0) -> torch.Tensor:
    """Ln norm of each slice of ``weight`` along ``dim`` (rows of a Linear, output channels of a Conv)."""
    w = weight.detach().transpose(0, dim).flatten(1)
    return w.norm(p=p, dim=1)


def units_to_keep(importance: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted indices of the units kept when removing ``round(amount * n)`` least important ones."""
    amount = _check_fraction(amount, "amount")
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


def prune_attention_heads(model: ViT, amount: float, p: float = 2, physical: bool = True) -> ViT:
    """Remove ``amount`` of each block's attention heads (q/k/v rows and proj columns of the head) by Ln norm.

    Physical removal updates ``num_heads`` and ``head_mask``; ``physical=False`` zeroes ``head_mask`` instead.
    """
    _require(model, ViT, "prune_attention_heads")
    new = clone_model(model)
    for b, imp in zip(new.blocks, head_importance(new, p)):
        a: Attention = b.attn
        keep = units_to_keep(imp, amount)
        if not physical:
            with torch.no_grad():
                drop = torch.ones(a.num_heads, dtype=torch.bool, device=a.head_mask.device)
                drop[keep] = False
                a.head_mask[drop] = 0
            continue
        rows = (keep[:, None] * a.head_dim + torch.arange(a.head_dim, device=keep.device)).flatten()
        a.q, a.k, a.v = (_linear(lin, out_idx=rows) for lin in (a.q, a.k, a.v))
        a.proj = _linear(a.proj, in_idx=rows)
        a.head_mask = a.head_mask[keep].clone()
        a.num_heads = len(keep)
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


def prune_conv_channels(model: ConvNet, amount: float, p: float = 2, physical: bool = True) -> ConvNet:
    """Remove ``amount`` of each conv block's output channels by Ln norm of the filters.

    Physical removal slices the conv's out-channels, the norm's per-channel parameters (DyT weight/bias,
    BatchNorm affine and running statistics), and the next conv's in-channels or the head's in-features.
    ``physical=False`` masks the filters and the norm's weight/bias instead (same function, same shapes).
    """
    _require(model, ConvNet, "prune_conv_channels")
    new = clone_model(model)
    keeps = [units_to_keep(imp, amount) for imp in channel_importance(new, p)]
    for i, (b, keep) in enumerate(zip(new.blocks, keeps)):
        if physical:
            b.conv = _conv(b.conv, keep, keeps[i - 1] if i > 0 else None)
            b.norm = _slice_norm(b.norm, keep)
        else:
            _mask_param(b.conv, "weight", keep)
            _mask_param(b.conv, "bias", keep)
            if isinstance(b.norm, (DynamicTanh, nn.BatchNorm2d)) and getattr(b.norm, "weight", None) is not None:
                _mask_param(b.norm, "weight", keep)
                _mask_param(b.norm, "bias", keep)
    if physical:
        new.head = _linear(new.head, in_idx=keeps[-1])
    return new


def structured_prune(model: nn.Module, amount: float, p: float = 2, physical: bool = True) -> nn.Module:
    """ViT: remove ``amount`` of the attention heads and FFN neurons; ConvNet: of the conv channels."""
    if isinstance(model, ViT):
        return prune_ffn_neurons(prune_attention_heads(model, amount, p, physical), amount, p, physical)
    if isinstance(model, ConvNet):
        return prune_conv_channels(model, amount, p, physical)
    raise ValueError(f"structured_prune supports course_utils ViT and ConvNet models, not {type(model).__name__}")


# ------------------------------------------------------------------------------------ low-rank factorization

class LowRankLinear(nn.Module):
    """``up(down(x))``: a rank-``r`` factorization of a Linear (``down``: in -> r, no bias; ``up``: r -> out)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def choose_rank(singular_values: torch.Tensor, rank: int | None = None, energy: float | None = None) -> int:
    """``rank`` (capped at the full rank), or the smallest rank keeping ``energy`` of the squared singular values."""
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank= (an integer >= 1) or energy= (a fraction in (0, 1])")
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} is not valid; it must be an integer >= 1")
        return min(rank, singular_values.numel())
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1:
        raise ValueError(f"energy={energy!r} is not valid; it must be a number in (0, 1]")
    e = singular_values.double() ** 2
    cum = torch.cumsum(e, 0) / e.sum()
    return min(int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype))) + 1, e.numel())


def factorize_linear(linear: nn.Linear, rank: int | None = None, energy: float | None = None) -> LowRankLinear:
    """Truncated SVD ``W ~ U_r S_r V_r^T``: ``down = sqrt(S_r) V_r^T``, ``up = U_r sqrt(S_r)``, bias kept."""
    w = effective_weight(linear).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = choose_rank(s, rank, energy)
    root = s[:r].sqrt()
    new = LowRankLinear(linear.in_features, linear.out_features, r, bias=linear.bias is not None)
    with torch.no_grad():
        new.down.weight.copy_(root[:, None] * vh[:r])
        new.up.weight.copy_(u[:, :r] * root[None, :])
        if linear.bias is not None:
            new.up.bias.copy_(effective_weight(linear, "bias"))
    return new.to(linear.weight.device if isinstance(linear.weight, torch.Tensor) else "cpu")


def low_rank_factorize(model: nn.Module, rank: int | None = None, energy: float | None = None,
                       layers: Iterable[str] | None = None, only_if_smaller: bool = True) -> nn.Module:
    """A copy of ``model`` with each ``nn.Linear`` (or those named in ``layers``) replaced by a LowRankLinear.

    With ``only_if_smaller`` a layer stays dense when ``r * (in + out) >= in * out`` (no saving).
    """
    new = clone_model(model)
    targets = prunable_layers(new, layers, types=(nn.Linear,))
    for name, lin in targets.items():
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"layer {name!r} is a {type(lin).__name__}, not an nn.Linear")
        fact = factorize_linear(lin, rank, energy)
        if only_if_smaller and fact.rank * (lin.in_features + lin.out_features) >= lin.in_features * lin.out_features:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent_name) if parent_name else new, child, fact)
    return new


def low_rank_layers(model: nn.Module) -> dict[str, LowRankLinear]:
    """Every LowRankLinear of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


# ------------------------------------------------------------------------------------------ sparse storage

def _dense_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return make_permanent(clone_model(model)).state_dict()


def sparse_state_dict(model: nn.Module, fmt: str = "csr") -> dict[str, Any]:
    """The state dict with every matrix/filter (>= 2 dims) stored sparsely when that is smaller.

    ``"coo"``/``"csr"``: torch sparse tensors (int64 indices); ``"bitmask"``: one bit per entry plus the
    non-zero values, ``{"shape", "bits", "values"}``.
    """
    _check_choice("fmt", fmt, SPARSE_FORMATS)
    out: dict[str, Any] = {}
    for k, t in _dense_state(model).items():
        if t.dim() < 2 or not t.is_floating_point():
            out[k] = t
            continue
        if fmt == "coo":
            s: Any = t.to_sparse().coalesce()
            nbytes = s.values().numel() * (t.element_size() + 8 * t.dim())
        elif fmt == "csr":
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                c = t.reshape(t.shape[0], -1).to_sparse_csr()  # clone: to_sparse_csr over-allocates col_indices
                s = torch.sparse_csr_tensor(c.crow_indices().clone(), c.col_indices().clone(), c.values().clone(),
                                            c.shape)
            nbytes = s.values().numel() * (t.element_size() + 8) + 8 * (t.shape[0] + 1)
        else:
            nz = t != 0
            s = {"shape": list(t.shape), "bits": torch.from_numpy(np.packbits(nz.flatten().numpy())),
                 "values": t[nz]}
            nbytes = s["bits"].numel() + s["values"].numel() * t.element_size()
        out[k] = s if nbytes < t.numel() * t.element_size() else t
    return out


def dense_from_sparse(state: dict[str, Any], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rebuild the dense state dict from :func:`sparse_state_dict` (``reference`` gives the shapes)."""
    out = {}
    for k, v in state.items():
        shape = reference[k].shape
        if isinstance(v, dict):
            n = math.prod(v["shape"])
            nz = torch.from_numpy(np.unpackbits(v["bits"].numpy())[:n].astype(bool))
            dense = torch.zeros(n, dtype=v["values"].dtype)
            dense[nz] = v["values"]
            out[k] = dense.view(shape)
        elif v.layout != torch.strided:
            out[k] = v.to_dense().reshape(shape)
        else:
            out[k] = v
    return out


def sparse_size_on_disk(model: nn.Module, fmt: str = "csr") -> int:
    """Bytes of ``torch.save(sparse_state_dict(model, fmt))``: what the sparse model really costs on disk."""
    buf = io.BytesIO()
    torch.save(sparse_state_dict(model, fmt), buf)
    return buf.getbuffer().nbytes


def storage_report(model: nn.Module) -> pd.DataFrame:
    """Bytes on disk: the dense state dict (masks folded in) and each sparse format."""
    rows = [{"format": "dense fp32", "bytes": size_on_disk(_dense_state(model))}]
    rows += [{"format": f"sparse {f}", "bytes": sparse_size_on_disk(model, f)} for f in SPARSE_FORMATS]
    df = pd.DataFrame(rows)
    df["kB"] = df["bytes"] / 1024
    df["vs dense"] = df["bytes"] / df["bytes"].iloc[0]
    return df


# ----------------------------------------------------------------------------------------------- speed

def speed_report(models: dict[str, nn.Module], example_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 256),
                 min_run_time: float = 0.3, rounds: int = 3) -> pd.DataFrame:
    """Parameters, FLOPs per example and CPU latency per batch size; speedups relative to the first model.

    Latency is measured in ``rounds`` interleaved rounds of ``min_run_time / rounds`` seconds per model and the
    fastest round kept, so a burst of load on a shared machine does not hit one model only. The models are moved
    to the CPU (latency is a CPU measurement here).
    """
    rows = []
    for name, m in models.items():
        m.cpu().eval()
        c = count_parameters(m)
        rows.append({"model": name, "params": c["total"], "nonzero": c["nonzero"],
                     "mflops": count_flops(m, torch.zeros(1, *example_shape)) / 1e6})
    examples = {bs: torch.randn(bs, *example_shape) for bs in batch_sizes}
    for _ in range(max(1, rounds)):
        for row, m in zip(rows, models.values()):
            for bs in batch_sizes:
                t = measure_latency(m, examples[bs], min_run_time / max(1, rounds))
                row[f"ms_b{bs}"] = min(t, row.get(f"ms_b{bs}", math.inf))
    df = pd.DataFrame(rows).set_index("model")
    base = df.iloc[0]
    df["flop_reduction"] = base["mflops"] / df["mflops"]
    for bs in batch_sizes:
        df[f"speedup_b{bs}"] = base[f"ms_b{bs}"] / df[f"ms_b{bs}"]
    return df


#: Operators whose work structured pruning shrinks (matrix multiplies, convolutions, attention).
MATRIX_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::mkldnn_convolution",
              "aten::convolution", "aten::_scaled_dot_product_flash_attention_for_cpu",
              "aten::_scaled_dot_product_attention_math")


@contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence C++ writes to file descriptor 2 (the profiler's start/stop log lines) for the duration."""
    sys.stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def op_time_breakdown(model: nn.Module, example: torch.Tensor, repeats: int = 3) -> pd.DataFrame:
    """Self CPU time and calls per operator of ``model(example)`` (``torch.profiler``), per forward, largest first.

    ``matrix`` marks the operators in :data:`MATRIX_OPS`; ``share`` is each operator's fraction of the total.
    """
    from torch.profiler import ProfilerActivity, profile

    model.cpu().eval()
    with torch.no_grad():
        model(example)
        with _quiet_fd2(), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(example)
    rows = [{"op": e.key, "calls": e.count / repeats, "ms": e.self_cpu_time_total / 1e3 / repeats}
            for e in prof.key_averages() if e.self_cpu_time_total > 0]
    df = pd.DataFrame(rows, columns=["op", "calls", "ms"]).sort_values("ms", ascending=False).reset_index(drop=True)
    df["matrix"] = df.op.isin(MATRIX_OPS)
    df["share"] = df.ms / df.ms.sum()
    return df


def amdahl_speedup(matrix_share: float, flop_reduction: float, other_reduction: float = 1.0) -> float:
    """Amdahl's law: the ``matrix_share`` of the time shrinks by ``flop_reduction``, the rest by ``other_reduction``."""
    if not 0 <= matrix_share <= 1 or flop_reduction <= 0 or other_reduction <= 0:
        raise ValueError("matrix_share must be in [0, 1]; flop_reduction and other_reduction must be > 0")
    return 1.0 / (matrix_share / flop_reduction + (1.0 - matrix_share) / other_reduction)


# ------------------------------------------------------------------------------ DyT / norm parameter tracking

def norm_snapshot(model: nn.Module) -> dict[str, float]:
    """Flat ``{"alpha/<layer>": ..., "gamma_std/<layer>": ..., "gamma_mean/<layer>": ...}`` for every norm layer."""
    return {f"{key}/{name}": row[key] for name, row in norm_parameters(model).items()
            for key in ("gamma_std", "gamma_mean", "alpha") if key in row}


def track_norms() -> Callable[[nn.Module, int, dict[str, float]], None]:
    """A ``fit(after_epoch=...)`` callback adding :func:`norm_snapshot` to each epoch's record."""
    def after_epoch(model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        record.update(norm_snapshot(model))
    return after_epoch


def norm_trajectory(history: dict[str, list[float]], start: dict[str, float] | None = None) -> pd.DataFrame:
    """Long table (epoch, quantity, layer, value) from a tracked history; ``start`` is the epoch-0 snapshot."""
    rows = []
    if start:
        rows += [{"epoch": 0, "quantity": k.split("/", 1)[0], "layer": k.split("/", 1)[1], "value": v}
                 for k, v in start.items()]
    for k, values in history.items():
        if "/" in k:
            q, layer = k.split("/", 1)
            rows += [{"epoch": e, "quantity": q, "layer": layer, "value": v}
                     for e, v in zip(history["epoch"], values)]
    return pd.DataFrame(rows, columns=["epoch", "quantity", "layer", "value"])


# ------------------------------------------------------------------------------------------ sensitivity

def sensitivity_scan(model: nn.Module, loader: DataLoader, sparsities: Sequence[float],
                     layers: Iterable[str] | None = None) -> pd.DataFrame:
    """Accuracy when pruning one layer at a time (``l1_unstructured``) to each sparsity, the rest dense."""
    rows = []
    for name in prunable_layers(model, layers):
        for s in sparsities:
            m = clone_model(model)
            prune.l1_unstructured(m.get_submodule(name), "weight", amount=_check_fraction(s))
            rows.append({"layer": name, "sparsity": s, "accuracy": evaluate(m, loader)["accuracy"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ the slider

def threshold_slider(model: nn.Module, loader: DataLoader, layers: Iterable[str] | None = None,
                     tau: float = 0.4, tau_max: float | None = None, step: float = 0.01, scale: str = "absolute",
                     plot: bool = True):
    """An ``ipywidgets.interactive`` slider over tau: each move threshold-prunes a copy of ``model``.

    The function returns (and the widget's ``result`` holds) ``{"tau", "sparsity", "accuracy"}``; with
    ``plot`` it also draws the weight histogram (log counts) with the pruned region and the numbers.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .plots import weight_histogram

    names = list(prunable_layers(model, layers))
    weights = torch.cat([effective_weight(model.get_submodule(n)).flatten() for n in names])
    if tau_max is None:
        tau_max = 1.0 if scale == "quantile" else float(weights.abs().max())
    tau = min(_check_tau(tau), tau_max)

    def update(tau: float) -> dict[str, float]:
        m = clone_model(model)
        used = prune_by_threshold(m, tau, names, scale)
        res = {"tau": float(tau), "sparsity": global_sparsity(m, names), "accuracy": evaluate(m, loader)["accuracy"]}
        if plot:
            fig, ax = plt.subplots(figsize=(7, 3.2))
            weight_histogram(ax, weights, threshold=float(np.mean(list(used.values()))) if used else None)
            ax.set_title(f"tau={tau:.2f} ({scale}): sparsity {res['sparsity']:.1%}, "
                         f"test accuracy {res['accuracy']:.2%}")
            plt.show()
        return res

    slider = widgets.FloatSlider(value=tau, min=0.0, max=tau_max, step=step, description="tau",
                                 continuous_update=False, readout_format=".2f")
    return widgets.interactive(update, tau=slider)
