"""Calibration: does a 90%-confident prediction come true 90% of the time?

Expected calibration error (ECE; Naeini et al. 2015, Guo et al. 2017) with equal-width confidence bins
``((b - 1) / B, b / B]``: ``ECE = sum_b |acc_b - conf_b| * n_b / N``, where ``conf_b`` is the mean top-1
probability and ``acc_b`` the accuracy of the examples in bin ``b``. ``torchmetrics``'
``MulticlassCalibrationError(norm="l1")`` computes the same sum but with bins ``[lo, hi)`` plus one extra bin
for confidence exactly 1.0 (common with float32 softmax), so the two differ only when confidences land exactly on
a bin edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ReliabilityData:
    """Per-bin ``lower``/``upper`` edges, mean ``confidence``, ``accuracy`` (NaN for an empty bin) and ``count``."""

    lower: np.ndarray
    upper: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error of these bins."""
        full = self.count > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float((gaps * self.count[full]).sum() / self.count.sum())


def _check(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r} is not valid; it must be an integer >= 1")
    if probs.ndim != 2 or labels.ndim != 1 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"probs must be (N, classes) and labels (N,) with N >= 1; got {tuple(probs.shape)} "
                         f"and {tuple(labels.shape)}")
    if probs.min() < 0 or probs.max() > 1 or not torch.allclose(probs.sum(1), torch.ones(len(probs),
                                                                                          dtype=probs.dtype),
                                                                atol=1e-3):
        raise ValueError("probs must be probabilities (rows in [0, 1] summing to 1); for logits pass "
                         "logits.softmax(dim=1)")


def reliability_data(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> ReliabilityData:
    """Confidence, accuracy and count per equal-width confidence bin (the data of a reliability diagram)."""
    probs, labels = probs.detach().double().cpu(), labels.detach().long().cpu()
    _check(probs, labels, n_bins)
    conf, pred = probs.max(dim=1)
    correct = (pred == labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 (impossible for a softmax) joins bin 0
    idx = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    confidence, accuracy = (conf_sum / count).numpy(), (acc_sum / count).numpy()  # 0 / 0 = NaN: empty bin
    return ReliabilityData(edges[:-1].numpy(), edges[1:].numpy(), confidence, accuracy, count.numpy().astype(int))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width bins (15, as Guo et al. 2017 and torchmetrics' default)."""
    return reliability_data(probs, labels, n_bins).ece
