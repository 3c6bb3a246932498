"""robustness.mahalanobis_score, the reference of notebook 05's exercise 5: Lee et al.'s score (minus the smallest
squared Mahalanobis distance, one covariance shared by the classes) against sklearn, pytorch-ood and the formula."""

import numpy as np
import pytest
import torch
from pytorch_ood.detector import Mahalanobis
from sklearn.covariance import EmpiricalCovariance

from course_utils import robustness as R
from course_utils.robustness import detection_metrics


def _features(seed: int, hyperplane: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four unbalanced classes, each with its own covariance, shuffled; test points near the means and far away.
    ``hyperplane``: every feature vector minus its own mean, as a LayerNorm's output (a singular covariance)."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(4, 6, generator=g)
    f = torch.cat([means[k] + torch.randn(n, 6, generator=g) @ ((0.5 + 0.4 * k) * torch.randn(6, 6, generator=g))
                   for k, n in enumerate((60, 90, 45, 75))])
    y = torch.cat([torch.full((n,), k) for k, n in enumerate((60, 90, 45, 75))])
    perm = torch.randperm(len(y), generator=g)
    x = torch.cat([means.repeat(5, 1) + torch.randn(20, 6, generator=g), 6 * torch.randn(20, 6, generator=g)])
    f, y = f[perm], y[perm]
    if hyperplane:
        f, x = f - f.mean(1, keepdim=True), x - x.mean(1, keepdim=True)
    return f.float(), y, x.float()


def _by_formula(f: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    means = torch.stack([f[y == k].mean(0) for k in range(int(y.max()) + 1)])
    centred = f - means[y]
    precision = torch.linalg.pinv(centred.T @ centred / len(f), hermitian=True)  # float32 cut-off
    diff = x[:, None] - means[None]
    return -((diff @ precision) * diff).sum(-1).min(1).values


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    return bool(((a.double() - b.double()).abs() <= rtol * b.double().abs().clamp(min=1)).all())


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_pytorch_ood_and_the_formula(seed):
    f, y, x = _features(seed)
    got = R.mahalanobis_score(f, y, x)
    assert got.shape == (len(x),) and got.dtype == torch.float32 and bool((got <= 0).all())
    means = torch.stack([f[y == k].mean(0) for k in range(4)])
    cov = EmpiricalCovariance(assume_centered=True).fit((f - means[y]).double().numpy())
    sk = -np.min(np.stack([cov.mahalanobis((x - m).double().numpy()) for m in means], 1), 1)
    assert _close(got, torch.from_numpy(sk))
    pood = Mahalanobis(None).fit_features(f, y).predict_features(x)  # d^2 / (2 N), an outlier score
    assert _close(got, -2 * len(f) * pood)
    assert _close(got, _by_formula(f, y, x))
    # the ranking of the notebook's table: the fitted detector's scores give the same AUROC and FPR@95
    fitted = R.score(R.fit_detector("mahalanobis", f, y), features=x)
    assert detection_metrics(got[:20], got[20:]) == detection_metrics(fitted[:20], fitted[20:])


def test_a_singular_covariance_is_pseudo_inverted():
    f, y, x = _features(0, hyperplane=True)
    got = R.mahalanobis_score(f, y, x)
    assert bool(torch.isfinite(got).all()) and _close(got, _by_formula(f, y, x), 1e-3)
    means = torch.stack([f[y == k].mean(0) for k in range(4)])
    centred = f - means[y]
    inverted = torch.linalg.inv(centred.T @ centred / len(f))  # what the pseudo-inverse avoids: round-off as distance
    diff = x[:, None] - means[None]
    assert not _close(got, -((diff @ inverted) * diff).sum(-1).min(1).values, 1e-2)


def test_bad_shapes_are_refused():
    f, y, x = _features(0)
    with pytest.raises(ValueError, match="test_features"):
        R.mahalanobis_score(f, y, x[:, :3])
    with pytest.raises(ValueError, match="labels"):
        R.mahalanobis_score(f, y[:-1], x)
