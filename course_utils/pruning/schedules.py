"""Pruning inside the training loop: ``fit(after_step=...)`` callbacks that grow masks on a schedule.

:class:`ThresholdPruner` masks weights below a (ramping) threshold; :class:`GradualPruner` follows the cubic
schedule of Zhu & Gupta ("To prune, or not to prune", 2017). Both re-apply the masks after every optimizer step,
because AdamW's momentum and weight decay would otherwise move pruned weights away from zero.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from ..args import check_choice, check_fraction, check_int
from ..modules import effective_weight, is_pruned
from .unstructured import layer_threshold, prunable_layers


def cubic_sparsity(step: int, final_sparsity: float, total_steps: int, start_step: int = 0,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta (2017): ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / n)^3`` for ``t0 <= t <= t0 + n``."""
    check_fraction("final_sparsity", final_sparsity)
    check_int("total_steps", total_steps, 1)
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

    def masks(self) -> dict[str, torch.Tensor]:
        """The live mask buffers keyed by the name of the parameter they mask (``<layer>.weight_orig``), as
        :func:`masked_step` takes them: the pruner grows these very tensors in place."""
        return {f"{n}.weight_orig": m.weight_mask for n, m in self.layers.items()}

    def sparsity(self) -> float:
        masks = [m.weight_mask for m in self.layers.values()]
        return 1 - sum(float(k.sum()) for k in masks) / sum(k.numel() for k in masks)


def masked_step(model: nn.Module, masks: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step of masked (pruned) training: cross-entropy, fresh gradients, the optimizer step, then
    every mask re-applied in place to the parameter it is keyed by (``dict(model.named_parameters())``), because
    AdamW's momentum and decay move pruned weights off zero. Returns the (detached) loss and logits."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)
    return loss.detach(), logits.detach()


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
        check_fraction("final_sparsity", final_sparsity)
        check_fraction("initial_sparsity", initial_sparsity)
        check_choice("scope", scope, ("global", "layerwise"))
        check_int("total_steps", total_steps, 1)
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
