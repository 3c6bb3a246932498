"""Training: the course's one training loop, with seeding, device choice and evaluation.

Baselines, fine-tuning after pruning, quantization-aware training and distillation all run through :func:`fit`:
what changes is the loss (``loss_fn``, which may return several named terms and read extra batch fields such as
the example index), what happens after each step (``after_step``: re-apply pruning masks) and after each epoch
(``after_epoch``: record DyT's alpha). Settings live in one small dataclass, :class:`TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .args import check_int, check_number
from .base import get_device as get_device  # re-exported: the training loop's device rules
from .base import show_progress as show_progress

History = dict[str, list[float]]
#: How checkpointed trainings run (part of every baseline's and zoo model's checkpoint key): a change here retrains
#: them instead of loading models that the current code would not reproduce.
TRAINER = "fit-2: one thread per training (parallel.single_thread), fused AdamW"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so the same seed gives the same numbers on the same machine."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; it must be an integer >= 0")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TrainConfig:
    """How to train: AdamW with linear warm-up and cosine decay, evaluated every ``eval_every`` epochs.

    ``seed`` reseeds torch and the loader's shuffling first, so a run does not depend on what ran before it.
    """

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float | None = None
    eval_every: int = 1
    seed: int | None = None
    device: str = "auto"
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        for name in ("epochs", "eval_every"):
            check_int(name, getattr(self, name), 1)
        check_number("lr", self.lr, 0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("warmup_fraction", self.warmup_fraction, 0.0, 1.0, high_open=True)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, 0.0, low_open=True)
        if self.seed is not None:
            check_int("seed", self.seed)


# --------------------------------------------------------------------------------------------- batches, losses

@dataclass
class Batch:
    """One training batch: images, labels and, when the loader yields them, the examples' dataset indices."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None

    @classmethod
    def from_loader(cls, item: Sequence[torch.Tensor], device: torch.device) -> Batch:
        if len(item) not in (2, 3):
            raise ValueError(f"a loader batch must be (x, y) or (x, y, index); got {len(item)} fields")
        return cls(*(t.to(device) for t in item))


class StepOutput(NamedTuple):
    """What a loss function returns: the total to minimize, the logits (for accuracy) and its named terms."""

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor] = {}


#: ``loss_fn(model, batch) -> StepOutput`` (or ``(loss, logits)``). An ``nn.Module`` loss is trained too.
LossFn = Callable[[nn.Module, Batch], "StepOutput | tuple[torch.Tensor, torch.Tensor]"]


def cross_entropy_loss(model: nn.Module, batch: Batch) -> StepOutput:
    """The default loss: cross-entropy of the model's logits."""
    logits = model(batch.x)
    return StepOutput(F.cross_entropy(logits, batch.y), logits)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``loader`` (model put in eval mode)."""
    device = get_device(device)
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    for batch in loader:
        x, y = batch[0].to(device), batch[1].to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    if total == 0:
        raise ValueError("loader is empty: nothing to evaluate")
    return {"loss": loss_sum / total, "accuracy": correct / total}


# --------------------------------------------------------------------------------------------- optimizer

def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up for ``warmup_steps`` then cosine decay to 0 at ``total_steps``."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def make_optimizer(params: list[nn.Parameter], lr: float, weight_decay: float, total_steps: int,
                   warmup_fraction: float = 0.05) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on vectors and scalars: biases, norm gains, DyT alpha) and a per-step
    warm-up + cosine schedule over ``total_steps``. The *fused* update (one kernel for all tensors, CPU and CUDA)
    took the optimizer step of the ViT-nano student from 1.5 to 0.7 ms here, a tenth of its training step; other
    devices batch the update with ``foreach``."""
    if not params:
        raise ValueError("no trainable parameters: every parameter has requires_grad=False")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                            **({"fused": True} if fused else {"foreach": True}))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, int(warmup_fraction * total_steps)))
    return opt, sched


#: ``step_fn(model, batch, loss_fn, optimizer, params, grad_clip) -> StepOutput``: one optimizer step of :func:`fit`.
StepFn = Callable[[nn.Module, Batch, LossFn, torch.optim.Optimizer, list[nn.Parameter], "float | None"], StepOutput]


def train_step(model: nn.Module, batch: Batch, loss_fn: LossFn, optimizer: torch.optim.Optimizer,
               params: list[nn.Parameter], grad_clip: float | None = None) -> StepOutput:
    """One optimizer step of :func:`fit`: the loss, fresh gradients, backward, the gradient norm of ``params``
    clipped to ``grad_clip`` (when given), the update. A function of its own so that a loop can take another
    (``fit(step_fn=...)``; ``distillation.distill(step=...)`` runs a distillation step written as a plain function)."""
    out = loss_fn(model, batch)
    out = out if isinstance(out, StepOutput) else StepOutput(*out)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return out


# --------------------------------------------------------------------------------------------- the loop

def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None = None,
        config: TrainConfig | None = None, *, loss_fn: LossFn = cross_entropy_loss,
        after_step: Callable[[nn.Module, int], None] | None = None,
        after_epoch: Callable[[nn.Module, int, dict[str, float]], None] | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        params: list[nn.Parameter] | None = None, step_fn: StepFn | None = None, **overrides: Any) -> History:
    """Train ``model``; returns the per-epoch history (``epoch, lr, train_loss, train_acc, loss_<term>...`` and
    ``test_epoch, test_loss, test_acc`` every ``eval_every`` epochs and at the last one).

    ``config`` (default ``TrainConfig()``) with keyword ``overrides`` such as ``epochs=2, lr=1e-3``.
    ``loss_fn(model, batch)`` computes the objective; when it is an ``nn.Module`` (a distillation loss with its
    own heads) its trainable parameters join the optimizer. ``after_step(model, step)`` runs after every optimizer
    step; ``after_epoch(model, epoch, record)`` may add keys to the epoch's record. ``augment(x)`` transforms every
    training batch; ``params`` restricts what is trained (e.g. everything but DyT's alpha). ``step_fn``
    (default :func:`train_step`) takes each optimizer step; the learning-rate schedule advances after it.
    """
    step_fn = train_step if step_fn is None else step_fn
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    if len(train_loader) == 0:
        raise ValueError("train_loader is empty: there is nothing to train on")
    device = get_device(cfg.device)
    if cfg.seed is not None:
        seed_everything(cfg.seed)
        if getattr(train_loader, "generator", None) is not None:
            train_loader.generator.manual_seed(cfg.seed)
    model.to(device)
    trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)
        trainable = trainable + [p for p in loss_fn.parameters() if p.requires_grad]
    opt, sched = make_optimizer(trainable, cfg.lr, cfg.weight_decay, cfg.epochs * len(train_loader),
                                cfg.warmup_fraction)
    history: History = {}
    step = 0
    progress = show_progress(cfg.progress)
    bar = tqdm(range(cfg.epochs), desc=cfg.desc, disable=not progress, unit="epoch")
    with torch.enable_grad():  # fit() may be called inside a no_grad block (e.g. from a benchmark or a widget)
        for epoch in bar:
            model.train()
            if isinstance(loss_fn, nn.Module):
                loss_fn.train()
            seen, loss_sum, correct, term_sums = 0, 0.0, 0, {}
            for item in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
                batch = Batch.from_loader(item, device)
                if augment is not None:
                    batch.x = augment(batch.x)
                out = step_fn(model, batch, loss_fn, opt, trainable, cfg.grad_clip)
                sched.step()
                step += 1
                if after_step is not None:
                    after_step(model, step)
                n = len(batch.y)
                seen += n
                loss_sum += out.loss.item() * n
                correct += (out.logits.argmax(1) == batch.y).sum().item()
                for k, v in out.terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + v.item() * n
            record: dict[str, float] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                                        "train_loss": loss_sum / seen, "train_acc": correct / seen}
            record.update({f"loss_{k}": v / seen for k, v in term_sums.items()})
            if test_loader is not None and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                ev = evaluate(model, test_loader, device)
                record.update(test_epoch=epoch + 1, test_loss=ev["loss"], test_acc=ev["accuracy"])
            if after_epoch is not None:
                after_epoch(model, epoch + 1, record)
            for k, v in record.items():
                history.setdefault(k, []).append(v)
            bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("train_loss", "test_acc")})
    model.eval()
    if isinstance(loss_fn, nn.Module):
        loss_fn.eval()
    return history
