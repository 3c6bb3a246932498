"""Compression-identified exemplars (Hooker et al. 2019, "What Do Compressed Deep Neural Networks Forget?").

Train a population of dense models and a population of compressed ones (different seeds); on each test example
take each population's *modal* (most frequent) predicted label. The examples where the two modal labels differ
are the compression-identified exemplars (CIEs): the small, atypical part of the test set that compression
changes, where both populations are usually wrong, while top-1 accuracy hides it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def _labels(preds: torch.Tensor, name: str) -> torch.Tensor:
    """Predicted labels (M, N) from labels (M, N) or logits (M, N, classes)."""
    if not isinstance(preds, torch.Tensor) or preds.ndim not in (2, 3) or preds.shape[0] < 1:
        shape = tuple(preds.shape) if isinstance(preds, torch.Tensor) else type(preds).__name__
        raise ValueError(f"{name} must be predicted labels (models, examples) or logits (models, examples, "
                         f"classes) for at least one model; got {shape}")
    labels = preds.argmax(dim=2) if preds.ndim == 3 else preds
    if labels.is_floating_point():
        raise ValueError(f"{name} holds floats of shape {tuple(preds.shape)}: pass integer labels, or logits "
                         f"with a class dimension")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"{name} contains negative labels")
    return labels.long().cpu()


def modal_labels(preds: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """The most frequent label per example over the models of a population; ties go to the smallest label.

    ``preds``: labels ``(models, examples)`` or logits ``(models, examples, classes)``.
    """
    labels = _labels(preds, "preds")
    k = int(labels.max()) + 1 if num_classes is None else num_classes
    votes = torch.zeros(labels.shape[1], k, dtype=torch.long)
    votes.scatter_add_(1, labels.t(), torch.ones_like(labels.t()))
    return votes.argmax(dim=1)  # argmax returns the first of equal maxima: the smallest label


@dataclass
class Exemplars:
    """The CIE ``mask`` (N,), both modal labels, and accuracies (mean over each population's models) on the
    exemplars and on the rest (NaN where that part is empty or no labels were given)."""

    mask: torch.Tensor
    dense_modal: torch.Tensor
    compressed_modal: torch.Tensor
    dense_acc_exemplars: float = float("nan")
    dense_acc_rest: float = float("nan")
    compressed_acc_exemplars: float = float("nan")
    compressed_acc_rest: float = float("nan")

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    @property
    def fraction(self) -> float:
        return self.count / max(1, len(self.mask))

    def summary(self) -> dict[str, float]:
        """The numbers of a results table row."""
        return {"exemplars": self.count, "fraction": self.fraction,
                "dense_acc_exemplars": self.dense_acc_exemplars, "dense_acc_rest": self.dense_acc_rest,
                "compressed_acc_exemplars": self.compressed_acc_exemplars,
                "compressed_acc_rest": self.compressed_acc_rest}


def _mean_acc(labels: torch.Tensor, targets: torch.Tensor, where: torch.Tensor) -> float:
    if not where.any():
        return float("nan")
    return (labels[:, where] == targets[where]).double().mean().item()


def compression_identified_exemplars(dense: torch.Tensor, compressed: torch.Tensor,
                                     targets: torch.Tensor | None = None) -> Exemplars:
    """CIEs of two populations evaluated on the same test set (same examples, same order).

    ``dense`` / ``compressed``: labels ``(models, N)`` or logits ``(models, N, classes)``; the populations may
    differ in size. With the true ``targets`` (N,), also the accuracies on the exemplars and on the rest.
    """
    d, c = _labels(dense, "dense"), _labels(compressed, "compressed")
    if d.shape[1] != c.shape[1]:
        raise ValueError(f"dense and compressed cover different numbers of examples: {d.shape[1]} and "
                         f"{c.shape[1]}")
    k = int(max(d.max(), c.max())) + 1 if d.numel() else 1
    dm, cm = modal_labels(d, k), modal_labels(c, k)
    mask = dm != cm
    out = Exemplars(mask, dm, cm)
    if targets is not None:
        targets = targets.detach().long().cpu().reshape(-1)
        if len(targets) != d.shape[1]:
            raise ValueError(f"targets has {len(targets)} labels for {d.shape[1]} examples")
        out.dense_acc_exemplars, out.dense_acc_rest = _mean_acc(d, targets, mask), _mean_acc(d, targets, ~mask)
        out.compressed_acc_exemplars = _mean_acc(c, targets, mask)
        out.compressed_acc_rest = _mean_acc(c, targets, ~mask)
    return out
