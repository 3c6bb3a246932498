"""One call from a model to an OOD table: features and logits once per set, every detector, every metric."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..metrics import logits_and_features
from ..modules import head_linear
from .detectors import DETECTORS, FEATURE_DETECTORS, LOGIT_DETECTORS, fit_detector, score
from .ood_data import OODSet
from .ood_metrics import detection_metrics


def _loader(source: DataLoader | OODSet) -> DataLoader:
    return source.loader() if isinstance(source, OODSet) else source


def detector_scores(model: nn.Module, train_loader: DataLoader, loaders: Mapping[str, DataLoader | OODSet],
                    detectors: Iterable[str] = DETECTORS, k: int = 50, vim_dim: int | None = None,
                    temperature: float = 1.0) -> dict[str, dict[str, torch.Tensor]]:
    """``{detector: {set name: scores}}`` (higher = more in-distribution) for every loader or OOD set.

    The feature detectors are fitted on the features of ``train_loader`` (its order does not matter).
    """
    detectors = list(detectors)
    bad = [d for d in detectors if d not in DETECTORS]
    if bad:
        raise ValueError(f"detectors {bad} are not valid; choose from {list(DETECTORS)}")
    outputs = {name: logits_and_features(model, _loader(src)) for name, src in loaders.items()}
    fitted = {}
    if any(d in FEATURE_DETECTORS for d in detectors):
        _, train_features, train_labels = logits_and_features(model, train_loader)
        head = head_linear(model)
        fitted = {d: fit_detector(d, train_features, train_labels, head=head, k=k,
                                  vim_dim=vim_dim) for d in detectors if d in FEATURE_DETECTORS}
    table: dict[str, dict[str, torch.Tensor]] = {}
    for d in detectors:
        det = d if d in LOGIT_DETECTORS else fitted[d]
        table[d] = {name: score(det, logits=lg, features=ft, temperature=temperature)
                    for name, (lg, ft, _) in outputs.items()}
    return table


def evaluate_ood(model: nn.Module, train_loader: DataLoader, id_loader: DataLoader,
                 ood_sets: Mapping[str, DataLoader | OODSet], detectors: Iterable[str] = DETECTORS,
                 positive: str = "ood", tpr: float = 0.95, **kwargs) -> pd.DataFrame:
    """One row per (detector, OOD set): AUROC, AUPR-In, AUPR-Out and FPR@95 (convention ``positive``) against
    the in-distribution test set ``id_loader``; ``kwargs`` go to :func:`detector_scores`."""
    if "id" in ood_sets:
        raise ValueError("ood_sets must not contain the name 'id' (it is the in-distribution test set)")
    scores = detector_scores(model, train_loader, {"id": id_loader, **ood_sets}, detectors, **kwargs)
    rows = [{"detector": d, "ood_set": name, **detection_metrics(by_set["id"], by_set[name], positive, tpr)}
            for d, by_set in scores.items() for name in ood_sets]
    return pd.DataFrame(rows)
