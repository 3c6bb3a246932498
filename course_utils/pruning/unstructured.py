"""Unstructured pruning with ``torch.nn.utils.prune``: a threshold rule, layerwise and global magnitude pruning.

A pruned layer keeps ``weight_orig`` and a ``weight_mask`` buffer, and a forward pre-hook computes
``weight = weight_orig * weight_mask``; :func:`make_permanent` folds the masks in. Pruning zeroes weights but keeps
every tensor dense, so it saves bytes only in a sparse file format (:mod:`.storage`) and time only with kernels
that skip zeros (structured pruning, :mod:`.structured`, is the one that buys speed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader

from ..args import check_choice, check_fraction, check_number
from ..metrics import count_parameters
from ..modules import clone_model, effective_weight, fold_masks, is_pruned
from ..train import evaluate

#: Module types whose ``weight`` the unstructured functions prune by default.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
#: How a threshold ``tau`` is read: as is, as a multiple of each layer's std, or as a per-layer quantile of |w|.
SCALES = ("absolute", "std", "quantile")


def _check_tau(tau: float) -> float:
    return check_number("tau", tau, 0.0)


def _has_weight(m: nn.Module) -> bool:
    return isinstance(getattr(m, "weight", None), torch.Tensor) or is_pruned(m)


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
    check_choice("scale", scale, SCALES)
    if scale == "quantile":
        check_fraction("tau", tau)
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


# ------------------------------------------------------------------------------------- magnitude pruning

def layerwise_prune(model: nn.Module, sparsity: float, layers: Iterable[str] | None = None) -> nn.Module:
    """``prune.l1_unstructured`` on each layer: every layer loses the same fraction of its weights (in place)."""
    sparsity = check_fraction("sparsity", sparsity)
    for m in prunable_layers(model, layers).values():
        prune.l1_unstructured(m, "weight", amount=sparsity)
    return model


def fine_grained_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """0/1 mask (weight's dtype) removing the ``round(sparsity * numel)`` smallest-magnitude entries of one tensor.

    MIT 6.5940 Lab 1's ``fine_grained_prune``, written with ``torch.kthvalue``: the mask keeps ``|w| > t`` where
    ``t`` is the k-th smallest magnitude. Without ties at ``t`` it is ``prune.l1_unstructured``'s mask; with ties
    this rule removes every tied entry (possibly more than k), while ``l1_unstructured`` removes exactly k and picks
    among the tied ones in ``torch.topk``'s order. ``sparsity`` 1 removes everything, like ``l1_unstructured``."""
    sparsity = check_number("sparsity", sparsity, 0.0, 1.0)
    k = int(round(sparsity * weight.numel()))
    if k == 0:
        return torch.ones_like(weight)
    t = weight.detach().abs().flatten().kthvalue(k).values
    return (weight.detach().abs() > t).to(weight.dtype)


def global_prune(model: nn.Module, sparsity: float, layers: Iterable[str] | None = None) -> nn.Module:
    """``prune.global_unstructured``: the smallest-magnitude weights across all layers at once (in place)."""
    sparsity = check_fraction("sparsity", sparsity)
    params = [(m, "weight") for m in prunable_layers(model, layers).values()]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    return model


def global_threshold(weights: Sequence[torch.Tensor], sparsity: float) -> float:
    """The magnitude ``t`` such that pruning every ``|w| <= t`` removes ``round(sparsity * N)`` of the N weights
    (``torch.kthvalue``); 0.0 when nothing is to be pruned."""
    sparsity = check_fraction("sparsity", sparsity)
    if not weights:
        raise ValueError("weights is empty: give at least one tensor")
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    k = int(round(sparsity * flat.numel()))
    return float(torch.kthvalue(flat, k).values) if k > 0 else 0.0


def make_permanent(model: nn.Module) -> nn.Module:
    """``prune.remove`` on every pruned parameter: masks are folded into plain weights (in place)."""
    return fold_masks(model)


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


def sensitivity_scan(model: nn.Module, loader: DataLoader, sparsities: Sequence[float],
                     layers: Iterable[str] | None = None,
                     mask_fn: Callable[[torch.Tensor, float], torch.Tensor] | None = None) -> pd.DataFrame:
    """Accuracy when pruning one layer at a time (``l1_unstructured``) to each sparsity, the rest dense.

    ``mask_fn(weight, sparsity) -> mask`` (e.g. :func:`fine_grained_mask`) replaces ``l1_unstructured``: its mask
    is applied with ``prune.custom_from_mask``."""
    rows = []
    for name in prunable_layers(model, layers):
        for s in sparsities:
            m = clone_model(model)
            module = m.get_submodule(name)
            if mask_fn is None:
                prune.l1_unstructured(module, "weight", amount=check_fraction("sparsity", s))
            else:
                prune.custom_from_mask(module, "weight", mask_fn(module.weight.detach(), check_fraction("sparsity", s)))
            rows.append({"layer": name, "sparsity": s, "accuracy": evaluate(m, loader)["accuracy"]})
    return pd.DataFrame(rows)
