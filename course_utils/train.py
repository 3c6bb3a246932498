"""Training: seeding, device choice, fit/evaluate with tqdm, and checkpoints reused across notebooks."""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .io import atomic_torch_save
from .paths import checkpoint_dir, relative

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
History = dict[str, list[float]]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so the same seed gives the same numbers on the same machine."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; it must be an integer >= 0")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; otherwise the named device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise ValueError(f"device={device!r} is not valid; choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return torch.device(device)


def show_progress(progress: bool = True) -> bool:
    """Whether to draw tqdm bars: ``progress`` unless the environment sets ``TQDM_DISABLE=1`` (batch runs)."""
    return progress and os.environ.get("TQDM_DISABLE", "0") in ("", "0")


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Default training loss: cross-entropy on the model's logits; returns ``(loss, logits)``."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``loader`` (model put in eval mode)."""
    device = get_device(device)
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    if total == 0:
        raise ValueError("loader is empty: nothing to evaluate")
    return {"loss": loss_sum / total, "accuracy": correct / total}


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
    warm-up + cosine schedule over ``total_steps``."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, int(warmup_fraction * total_steps)))
    return opt, sched


def fit(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader | None = None, epochs: int = 10,
        lr: float = 1e-3, weight_decay: float = 0.05, device: str | torch.device = "auto",
        loss_fn: LossFn = cross_entropy_loss, after_step: Callable[[nn.Module, int], None] | None = None,
        after_epoch: Callable[[nn.Module, int, dict[str, float]], None] | None = None,
        warmup_fraction: float = 0.05, progress: bool = True, desc: str = "train",
        params: list[nn.Parameter] | None = None, seed: int | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> History:
    """Train with AdamW and a warm-up + cosine schedule; returns the per-epoch history.

    ``loss_fn(model, x, y) -> (loss, logits)`` customizes the objective (distillation, QAT);
    ``after_step(model, step)`` runs after every optimizer step (re-apply pruning masks);
    ``after_epoch(model, epoch, record)`` may add extra keys to that epoch's record (e.g. DyT alpha).
    ``seed`` reseeds torch and the loader's shuffling first, so a run does not depend on what ran before it.
    ``augment(x)`` transforms each training batch (e.g. ``course_utils.data.random_shift``).
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is not valid; it must be an integer >= 1")
    if lr <= 0:
        raise ValueError(f"lr={lr!r} is not valid; it must be > 0")
    if seed is not None:
        seed_everything(seed)
        if getattr(train_loader, "generator", None) is not None:
            train_loader.generator.manual_seed(seed)
    device = get_device(device)
    model.to(device)
    trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt, sched = make_optimizer(trainable, lr, weight_decay, epochs * len(train_loader), warmup_fraction)
    history: History = {}
    step = 0
    progress = show_progress(progress)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, unit="epoch")
    for epoch in bar:
        model.train()
        seen, loss_sum, correct = 0, 0.0, 0
        for x, y in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x = augment(x)
            loss, logits = loss_fn(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if after_step is not None:
                after_step(model, step)
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                  "lr": opt.param_groups[0]["lr"]}
        if test_loader is not None:
            ev = evaluate(model, test_loader, device)
            record.update(test_loss=ev["loss"], test_acc=ev["accuracy"])
        if after_epoch is not None:
            after_epoch(model, epoch + 1, record)
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if k in ("train_loss", "test_acc")})
    return history
