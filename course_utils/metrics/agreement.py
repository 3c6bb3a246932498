"""How good a model is, and how closely it follows another: accuracy, logit cosine, feature CKA, agreement.

Seed 002's "cosine similarity between original and compressed outputs" and the distillation notebook's teacher
comparisons are the same question asked of different model pairs, so they share these functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..modules import capture, graph_with_features, head_name

Data = DataLoader | tuple[torch.Tensor, torch.Tensor]


def _batches(data: Data, batch_size: int = 256):
    """Batches ``(x, y)`` of a loader, or of a pair of tensors (calibration images kept apart from the test set)."""
    if isinstance(data, tuple):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"images and labels differ in length: {len(x)} vs {len(y)}")
        return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return data


@torch.no_grad()
def predictions(model: nn.Module, data: Data, device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenated logits (float32, on the CPU) of ``model`` over a loader or a pair ``(x, y)``."""
    model.eval()
    return torch.cat([model(batch[0].to(device)).float().cpu() for batch in _batches(data)])


def labels(data: Data) -> torch.Tensor:
    """The labels of a loader (which must not shuffle) or of a pair ``(x, y)``, in order."""
    return torch.cat([batch[1] for batch in _batches(data)])


def accuracy(model: nn.Module | torch.Tensor, data: Data, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy of a model (or of precomputed logits) on a loader or a pair ``(x, y)``."""
    logits = model if isinstance(model, torch.Tensor) else predictions(model, data, device)
    y = labels(data)
    if len(y) == 0:
        raise ValueError("no examples: nothing to evaluate")
    if len(logits) != len(y):
        raise ValueError(f"{len(logits)} predictions for {len(y)} labels")
    return (logits.argmax(1) == y).float().mean().item()


def output_cosine_similarity(a: nn.Module | torch.Tensor, b: nn.Module | torch.Tensor,
                             loader: DataLoader | None = None) -> float:
    """Mean per-example cosine similarity of two models' logits on ``loader`` (or of two logit tensors)."""
    if loader is None and not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        raise ValueError("pass a loader when comparing models (or give two logit tensors)")
    la = a if isinstance(a, torch.Tensor) else predictions(a, loader)
    lb = b if isinstance(b, torch.Tensor) else predictions(b, loader)
    if la.shape != lb.shape:
        raise ValueError(f"the two outputs have different shapes {tuple(la.shape)} and {tuple(lb.shape)}")
    return F.cosine_similarity(la.float(), lb.float(), dim=1).mean().item()


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two feature matrices ``(n, d1)``, ``(n, d2)``.

    It is the cosine similarity of the two centered Gram matrices, so the widths may differ.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"features must be (n, d) with the same n; got {tuple(a.shape)} and {tuple(b.shape)}")
    a = (a - a.mean(0)).double()
    b = (b - b.mean(0)).double()
    num = (a.t() @ b).pow(2).sum()
    den = (a.t() @ a).pow(2).sum().sqrt() * (b.t() @ b).pow(2).sum().sqrt()
    return (num / den).item()


@torch.no_grad()
def logits_and_features(model: nn.Module, loader: DataLoader,
                        device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, penultimate features (the input of ``model.head``) and labels over ``loader``.

    An exported graph (a PT2E int8 model) has no hooks: a copy of its graph returns the head's input as well.
    """
    head = head_name(model)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no `head` module whose input is the penultimate feature")
    model.eval()
    ls, fs, ys = [], [], []
    if isinstance(model, torch.fx.GraphModule):
        both = graph_with_features(model, head)
        for batch in loader:
            logits, f = both(batch[0].to(device))
            ls.append(logits.float().cpu())
            fs.append(f.float().cpu().flatten(1))
            ys.append(batch[1])
        return torch.cat(ls), torch.cat(fs), torch.cat(ys)
    with capture(model, [head], kind="input") as seen:
        for batch in loader:
            ls.append(model(batch[0].to(device)).float().cpu())
            f = seen[head]
            fs.append(f.float().cpu().flatten(1))
            ys.append(batch[1])
    return torch.cat(ls), torch.cat(fs), torch.cat(ys)


def compare_to_teacher(student: nn.Module, teacher: nn.Module, loader: DataLoader,
                       device: str | torch.device = "cpu") -> dict[str, float]:
    """Student accuracy plus agreement with the teacher's predictions, logit cosine similarity and feature CKA."""
    s_logits, s_feat, y = logits_and_features(student, loader, device)
    t_logits, t_feat, _ = logits_and_features(teacher, loader, device)
    if s_logits.shape != t_logits.shape:
        raise ValueError(f"student logits {tuple(s_logits.shape)} and teacher logits {tuple(t_logits.shape)} differ")
    return {
        "accuracy": (s_logits.argmax(1) == y).float().mean().item(),
        "agreement": (s_logits.argmax(1) == t_logits.argmax(1)).float().mean().item(),
        "logit_cosine": F.cosine_similarity(s_logits, t_logits, dim=1).mean().item(),
        "feature_cka": linear_cka(s_feat, t_feat),
    }
