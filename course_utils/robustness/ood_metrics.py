"""OOD detection metrics from in-distribution (ID) and OOD scores, with the convention stated and applied.

Scores follow :mod:`.detectors`: **higher = more in-distribution**. Two conventions exist for which class is
"positive", and FPR@95 changes meaning with it (AUROC does not; AUPR-In and AUPR-Out name their positive class):

- ``positive="ood"`` (default; OpenOOD v1.5, Zhang et al. 2023, and pytorch-ood): OOD is the positive class.
  FPR@95 = the fraction of ID examples flagged as OOD when the threshold detects 95% of the OOD examples.
- ``positive="id"`` (Hendrycks & Gimpel 2017, ODIN, the energy paper of Liu et al. 2020): ID is positive.
  FPR@95 = the fraction of OOD examples accepted as ID when the threshold keeps 95% of the ID examples.

The two FPR@95 values are different numbers for the same scores: tables from different papers are only
comparable when they use the same convention.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

CONVENTIONS: tuple[str, ...] = ("ood", "id")
ArrayLike = torch.Tensor | np.ndarray


def _np(a: ArrayLike, name: str) -> np.ndarray:
    arr = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    arr = arr.reshape(-1)
    if len(arr) == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains {int(np.isnan(arr).sum())} NaN values")
    return arr


def _check_tpr(tpr: float) -> None:
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr={tpr!r} is not valid; it must be in (0, 1]")


def fpr_at_tpr(scores: ArrayLike, is_positive: ArrayLike, tpr: float = 0.95) -> float:
    """False positive rate at the first threshold (from high to low) whose true positive rate reaches ``tpr``.

    ``scores``: higher = more positive. Reference implementation (one point per distinct score, so tied scores
    cross the threshold together): sort, count positives and negatives above each threshold, take the first
    point with TPR >= ``tpr``. Equals ``fpr[argmax(tpr_curve >= tpr)]`` of ``sklearn.metrics.roc_curve``.
    """
    _check_tpr(tpr)
    s = _np(scores, "scores")
    pos = np.asarray(is_positive.cpu() if isinstance(is_positive, torch.Tensor) else is_positive).reshape(-1)
    if pos.shape != s.shape:
        raise ValueError(f"scores and is_positive differ in length: {len(s)} and {len(pos)}")
    pos = pos.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need positive and negative examples; got {n_pos} positive, {n_neg} negative")
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last_of_tie = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tps, fps = np.cumsum(pos)[last_of_tie], np.cumsum(~pos)[last_of_tie]
    first = int(np.argmax(tps / n_pos >= tpr))
    return float(fps[first] / n_neg)


def detection_metrics(id_scores: ArrayLike, ood_scores: ArrayLike, positive: str = "ood", tpr: float = 0.95
                ) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR at ``tpr`` (key ``"FPR@95"`` for 0.95) from scores (higher = more ID).

    ``positive`` picks the convention of the FPR (see the module docstring); AUROC is the same under both.
    AUPR-In takes ID as positive, AUPR-Out OOD; both are the trapezoidal area under
    ``sklearn.metrics.precision_recall_curve``, as OpenOOD and pytorch-ood compute them.
    """
    if positive not in CONVENTIONS:
        raise ValueError(f"positive={positive!r} is not valid; choose 'ood' (OpenOOD v1.5) or 'id' "
                         f"(Hendrycks & Gimpel 2017 / Liu et al. 2020)")
    _check_tpr(tpr)
    s_id, s_ood = _np(id_scores, "id_scores"), _np(ood_scores, "ood_scores")
    scores = np.concatenate([s_id, s_ood])
    is_ood = np.r_[np.zeros(len(s_id), bool), np.ones(len(s_ood), bool)]
    p_in, r_in, _ = skm.precision_recall_curve(~is_ood, scores)
    p_out, r_out, _ = skm.precision_recall_curve(is_ood, -scores)
    fpr = fpr_at_tpr(-scores, is_ood, tpr) if positive == "ood" else fpr_at_tpr(scores, ~is_ood, tpr)
    return {
        "AUROC": float(skm.roc_auc_score(is_ood, -scores)),
        "AUPR-In": float(skm.auc(r_in, p_in)),
        "AUPR-Out": float(skm.auc(r_out, p_out)),
        f"FPR@{tpr * 100:g}": fpr,
    }
