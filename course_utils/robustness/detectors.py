"""Post-hoc OOD detectors behind one interface, with one sign: **higher score = more in-distribution**.

- from the logits: maximum softmax probability (MSP, Hendrycks & Gimpel 2017), energy
  ``T * logsumexp(logits / T)`` (the *negative* free energy of Liu et al. 2020, so that it grows with
  confidence like MSP), and the maximum logit (Hendrycks et al. 2022);
- from the penultimate features (the input of ``model.head``), fitted on training features through
  ``pytorch-ood``: Mahalanobis distance to the nearest class mean with a shared covariance (Lee et al. 2018),
  distance to the k-th nearest normalized training feature (KNN, Sun et al. 2022), and ViM (Wang et al. 2022).
  pytorch-ood returns *outlier* scores (higher = more OOD); they are negated here.

``score(detector, logits=..., features=...)`` scores any of them; ``fit_detector`` fits the feature ones.
``mahalanobis_score`` is the Mahalanobis score in one call, on the scale of Lee et al. (notebook 05, exercise 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..args import check_number

LOGIT_DETECTORS: tuple[str, ...] = ("msp", "energy", "max_logit")
FEATURE_DETECTORS: tuple[str, ...] = ("mahalanobis", "knn", "vim")
DETECTORS: tuple[str, ...] = LOGIT_DETECTORS + FEATURE_DETECTORS


def msp_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Maximum softmax probability of ``logits / temperature``."""
    check_number("temperature", temperature, 0.0, low_open=True)
    return torch.softmax(logits.double() / temperature, dim=1).amax(dim=1).float()


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T * logsumexp(logits / T)``: minus the free energy ``E(x) = -T logsumexp(f(x) / T)`` of Liu et al.

    Minus, so that higher means more in-distribution, as for MSP; for large ``T`` it tends to the mean logit
    plus a constant, for small ``T`` to the maximum logit.
    """
    check_number("temperature", temperature, 0.0, low_open=True)
    return (temperature * torch.logsumexp(logits.double() / temperature, dim=1)).float()


def max_logit_score(logits: torch.Tensor) -> torch.Tensor:
    """The largest logit (no softmax: it keeps the feature norm that MSP normalizes away)."""
    return logits.amax(dim=1).float()


@dataclass
class FittedDetector:
    """A feature detector fitted on training features: its name, settings and the pytorch-ood object."""

    name: str
    impl: Any
    settings: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"FittedDetector({self.name!r}, {dict(self.settings)})"


def _check_labels(features: torch.Tensor, labels: torch.Tensor) -> None:
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise ValueError(f"features must be (N, D) and labels (N,); got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    classes = torch.unique(labels)
    if classes.min() < 0 or len(classes) != int(classes.max()) + 1:
        raise ValueError(f"labels must cover every class 0..C-1 (pytorch-ood's Mahalanobis needs each class); "
                         f"got classes {classes.tolist()}")


def fit_detector(name: str, features: torch.Tensor, labels: torch.Tensor, head: nn.Linear | None = None,
                 k: int = 50, vim_dim: int | None = None) -> FittedDetector:
    """Fit feature detector ``name`` (``FEATURE_DETECTORS``) on in-distribution training ``features`` (N, D).

    ``k``: the neighbour whose distance is the KNN score (the paper's CIFAR-10 choice). ViM needs the last
    layer (``head``, an ``nn.Linear``) and the dimension of its principal subspace, ``vim_dim`` (default D // 2).
    """
    from pytorch_ood.detector import KNN, Mahalanobis, ViM

    if name not in FEATURE_DETECTORS:
        raise ValueError(f"name={name!r} is not a feature detector; choose one of {list(FEATURE_DETECTORS)} "
                         f"(the logit detectors {list(LOGIT_DETECTORS)} need no fitting)")
    features, labels = features.detach().float().cpu(), labels.detach().long().cpu()
    _check_labels(features, labels)
    if name == "mahalanobis":
        impl = Mahalanobis(None).fit_features(features, labels)
        # pytorch-ood inverts the pooled covariance (plus a 1e-6 ridge). A LayerNorm's output lies on a hyperplane
        # (sum_i (y_i - beta_i) / gamma_i = 0), so its covariance is singular and that inverse multiplies float32
        # round-off along the missing direction about a million-fold: the scores become noise. The pseudo-inverse
        # ignores directions without variance and changes nothing otherwise; the cut-off is the usual one for a
        # matrix accumulated in float32 (eps times the dimension).
        rtol = torch.finfo(torch.float32).eps * features.shape[1]
        impl.precision = torch.linalg.pinv(impl.cov.double(), hermitian=True, rtol=rtol).float()
        return FittedDetector(name, impl, {})
    if name == "knn":
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(features):
            raise ValueError(f"k={k!r} is not valid; it must be an integer from 1 to the {len(features)} "
                             f"training features")
        return FittedDetector(name, KNN(None, k=k).fit_features(features, labels), {"k": k})
    if not isinstance(head, nn.Linear) or head.in_features != features.shape[1]:
        raise ValueError(f"head must be the model's last nn.Linear taking the {features.shape[1]}-dim features "
                         f"(e.g. model.head); got {head!r}")
    d = features.shape[1] // 2 if vim_dim is None else vim_dim
    if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d < features.shape[1]:
        raise ValueError(f"vim_dim={vim_dim!r} is not valid; it must be an integer from 1 to "
                         f"{features.shape[1] - 1} (the feature dimension minus one)")
    vim = ViM(None, d=d, w=head.weight.detach().cpu(), b=head.bias.detach().cpu())
    return FittedDetector(name, vim.fit_features(features, labels), {"vim_dim": d})


def score(detector: str | FittedDetector, logits: torch.Tensor | None = None,
          features: torch.Tensor | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Scores (N,), higher = more in-distribution: ``detector`` is a name from ``LOGIT_DETECTORS`` (give
    ``logits``) or a ``FittedDetector`` (give ``features``). ``temperature`` applies to MSP and energy."""
    if isinstance(detector, FittedDetector):
        if features is None:
            raise ValueError(f"the {detector.name!r} detector scores penultimate features; pass features=")
        with torch.no_grad():
            return -detector.impl.predict_features(features.detach().float().cpu()).float()
    if detector in FEATURE_DETECTORS:
        raise ValueError(f"detector={detector!r} must be fitted first: fit_detector({detector!r}, features, "
                         f"labels)")
    if detector not in LOGIT_DETECTORS:
        raise ValueError(f"detector={detector!r} is not valid; choose one of {list(LOGIT_DETECTORS)} or a "
                         f"FittedDetector for {list(FEATURE_DETECTORS)}")
    if logits is None or logits.ndim != 2:
        raise ValueError(f"the {detector!r} detector needs logits of shape (N, classes); got "
                         f"{None if logits is None else tuple(logits.shape)}")
    logits = logits.detach().cpu()
    if detector == "msp":
        return msp_score(logits, temperature)
    if detector == "energy":
        return energy_score(logits, temperature)
    return max_logit_score(logits)


def mahalanobis_score(train_features: torch.Tensor, train_labels: torch.Tensor,
                      test_features: torch.Tensor) -> torch.Tensor:
    """Minus the smallest squared Mahalanobis distance of each test feature to a class mean (M,), with one
    covariance shared by all classes: Lee et al.'s (2018) confidence score, higher = more in-distribution.

    The covariance is that of the training features centred on their own class means, divided by N (the
    maximum-likelihood estimate, sklearn's ``EmpiricalCovariance``). This is the course's fitted detector
    (:func:`fit_detector`, pseudo-inverse included) on Lee et al.'s scale: pytorch-ood sums the centred outer
    products without dividing by N and halves the distance, so its outlier score is ``d^2 / (2 N)``; ``2 N`` times
    :func:`score` is ``-d^2``. The reference of notebook 05's exercise 5, whose table row it computes.
    """
    if test_features.ndim != 2 or test_features.shape[1:] != train_features.shape[1:]:
        raise ValueError(f"test_features must be (M, {train_features.shape[-1]}) like the training features; got "
                         f"{tuple(test_features.shape)}")
    fitted = fit_detector("mahalanobis", train_features, train_labels)
    return 2 * len(train_features) * score(fitted, features=test_features)
