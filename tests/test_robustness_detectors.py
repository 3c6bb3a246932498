"""OOD detectors on toy data with known answers, and the metrics against sklearn and pytorch-ood."""

import numpy as np
import pytest
import torch
from pytorch_ood.metrics import OODMetrics
from sklearn.metrics import roc_curve
from torch import nn

from course_utils.robustness import detectors as Det
from course_utils.robustness import ood_metrics as M
from course_utils.robustness.ood_eval import detector_scores, evaluate_ood

MEANS = 4.0 * torch.eye(3, 8)  # three classes along the first three axes of an 8-d feature space


def _clusters(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    return MEANS[y] + 0.5 * torch.randn(len(y), 8, generator=g), y


def _far(n: int, seed: int) -> torch.Tensor:
    """Off the in-distribution subspace: large components along the five unused axes."""
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(n, 8)
    z[:, 3:] = 4.0 * torch.randn(n, 5, generator=g)
    return z


def _head() -> nn.Linear:
    head = nn.Linear(8, 3)
    with torch.no_grad():
        head.weight.copy_(MEANS / 4)
        head.bias.zero_()
    return head


def test_logit_scores_on_hand_logits():
    logits = torch.tensor([[10.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    msp = Det.score("msp", logits=logits)
    assert msp[0] > msp[1] and torch.isclose(msp[1], torch.tensor(1 / 3))
    energy = Det.score("energy", logits=logits)
    assert torch.allclose(energy, torch.logsumexp(logits, 1))  # minus the free energy: higher = more ID
    assert torch.isclose(energy[1], torch.tensor(1 + np.log(3), dtype=torch.float32))
    t = 4.0
    assert torch.allclose(Det.score("energy", logits=logits, temperature=t), t * torch.logsumexp(logits / t, 1))
    assert torch.equal(Det.score("max_logit", logits=logits), torch.tensor([10.0, 1.0]))
    assert torch.allclose(Det.score("msp", logits=logits, temperature=1e6), torch.full((2,), 1 / 3), atol=1e-5)


@pytest.mark.parametrize("name", Det.FEATURE_DETECTORS)
def test_feature_detectors_separate_toy_ood(name):
    z, y = _clusters(100, seed=0)
    det = Det.fit_detector(name, z, y, head=_head(), k=5, vim_dim=3)
    id_scores = Det.score(det, features=_clusters(30, seed=1)[0])
    ood_scores = Det.score(det, features=_far(30, seed=2))
    assert id_scores.shape == (90,) and id_scores.min() > ood_scores.max()  # higher = more in-distribution
    assert M.detection_metrics(id_scores, ood_scores)["AUROC"] == 1.0


def test_mahalanobis_score_is_the_distance_to_the_nearest_class():
    z, y = _clusters(100, seed=0)
    det = Det.fit_detector("mahalanobis", z, y)
    q = _clusters(10, seed=1)[0]
    mu = torch.stack([z[y == c].mean(0) for c in range(3)])
    cov = sum((z[y == c] - mu[c]).T @ (z[y == c] - mu[c]) for c in range(3)) / len(z)
    d2 = torch.stack([((q - m) @ torch.linalg.inv(cov) * (q - m)).sum(1) for m in mu], 1)
    # pytorch-ood's covariance is the sum of outer products (not divided by N): scores are -d^2 / (2 N)
    assert torch.allclose(Det.score(det, features=q) * len(z), -0.5 * d2.min(1).values, rtol=1e-3)


def test_mahalanobis_on_layernorm_features_ignores_the_missing_direction():
    """A LayerNorm's outputs lie on a hyperplane: the covariance is singular. The scores must be the distances in
    the directions the data spans (NumPy's float64 pseudo-inverse), and still separate ID from OOD."""
    g = torch.Generator().manual_seed(0)
    weight, bias = 1 + 0.3 * torch.randn(8, generator=g), 0.1 * torch.randn(8, generator=g)
    ln = lambda x: torch.nn.functional.layer_norm(x, (8,), weight, bias)  # noqa: E731
    z, y = _clusters(200, seed=0)
    z = ln(z)
    det = Det.fit_detector("mahalanobis", z, y)
    mu = torch.stack([z[y == c].mean(0) for c in range(3)]).double().numpy()
    centred = z.double().numpy() - mu[y.numpy()]
    cov = centred.T @ centred
    assert np.linalg.matrix_rank(cov, tol=1e-6 * np.abs(cov).max()) == 7, "the fixture must be singular"
    precision = np.linalg.pinv(cov, rcond=1e-6, hermitian=True)
    q = torch.cat([ln(_clusters(20, seed=1)[0]), ln(_far(20, seed=2))])
    d2 = np.stack([np.einsum("nd,de,ne->n", q.double().numpy() - m, precision, q.double().numpy() - m)
                   for m in mu], 1).min(1)
    got = Det.score(det, features=q).double().numpy()
    np.testing.assert_allclose(got, -0.5 * d2, rtol=1e-3, atol=1e-6)
    assert M.detection_metrics(torch.from_numpy(got[:60]), torch.from_numpy(got[60:]))["AUROC"] > 0.99


def test_knn_score_is_the_kth_neighbour_distance():
    z, y = _clusters(50, seed=0)
    q = torch.randn(7, 8)
    det = Det.fit_detector("knn", z, y, k=4)
    unit = lambda a: a / a.norm(dim=1, keepdim=True)
    expected = torch.cdist(unit(q), unit(z)).sort(dim=1).values[:, 3]
    assert torch.allclose(Det.score(det, features=q), -expected, atol=1e-5)


def test_vim_default_dimension_and_repr():
    z, y = _clusters(40, seed=0)
    det = Det.fit_detector("vim", z, y, head=_head())
    assert det.settings["vim_dim"] == 4 and "vim" in repr(det)


@pytest.mark.parametrize("call, match", [
    (lambda z, y: Det.fit_detector("msp", z, y), "not a feature detector.*need no fitting"),
    (lambda z, y: Det.fit_detector("knn", z, y, k=0), "k=0 is not valid"),
    (lambda z, y: Det.fit_detector("vim", z, y), "head must be the model's last nn.Linear"),
    (lambda z, y: Det.fit_detector("vim", z, y, head=_head(), vim_dim=8), "vim_dim=8 is not valid"),
    (lambda z, y: Det.fit_detector("mahalanobis", z, y * 2), r"every class 0..C-1.*\[0, 2, 4\]"),
    (lambda z, y: Det.fit_detector("mahalanobis", z[:5], y), "features must be \\(N, D\\)"),
    (lambda z, y: Det.score("mahalanobis", features=z), "must be fitted first"),
    (lambda z, y: Det.score("odin", logits=z), "detector='odin' is not valid"),
    (lambda z, y: Det.score("msp"), "needs logits"),
    (lambda z, y: Det.score("energy", logits=z, temperature=0), "temperature=0 is not valid"),
    (lambda z, y: Det.score(Det.fit_detector("knn", z, y, k=3), logits=z), "pass features="),
])
def test_bad_detector_arguments(call, match):
    z, y = _clusters(10, seed=0)
    with pytest.raises(ValueError, match=match):
        call(z, y)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tied", [False, True])
def test_fpr_at_tpr_matches_sklearn(seed, tied):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    labels = rng.random(n) < rng.uniform(0.2, 0.8)
    scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
    if tied:
        scores = np.round(scores * 2) / 2  # a handful of distinct values: many ties across the classes
    labels[:2] = [True, False]
    for drop in (True, False):
        fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=drop)
        for target in (0.5, 0.9, 0.95, 1.0):
            assert M.fpr_at_tpr(scores, labels, target) == pytest.approx(fpr[np.argmax(tpr >= target)])


def test_fpr_at_tpr_by_hand():
    scores = np.array([5, 4, 4, 3, 2, 1])
    positive = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    assert M.fpr_at_tpr(scores, positive, 1 / 3) == 0  # threshold 5: one positive, no negative
    assert M.fpr_at_tpr(scores, positive, 0.5) == pytest.approx(1 / 3)  # the tie at 4 enters as a whole
    assert M.fpr_at_tpr(torch.tensor(scores), torch.tensor(positive), 1.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("tied", [False, True])
def test_ood_metrics_match_pytorch_ood(tied):
    g = torch.Generator().manual_seed(0)
    id_scores, ood_scores = torch.randn(300, generator=g) + 1.0, torch.randn(200, generator=g)
    if tied:
        id_scores, ood_scores = id_scores.round(), ood_scores.round()
    ours = M.detection_metrics(id_scores, ood_scores, positive="ood")
    ref = OODMetrics()  # outlier scores (higher = OOD), OOD labelled -1
    ref.update(-torch.cat([id_scores, ood_scores]), torch.cat([torch.zeros(300), -torch.ones(200)]).long())
    ref = ref.compute()
    for ours_key, ref_key in [("AUROC", "AUROC"), ("AUPR-In", "AUPR-IN"), ("AUPR-Out", "AUPR-OUT"),
                              ("FPR@95", "FPR95TPR")]:
        assert ours[ours_key] == pytest.approx(ref[ref_key], abs=1e-9), ours_key


def test_the_two_fpr_conventions_differ():
    """ID scores 0.0 .. 1.9; half the OOD examples far below, half far above every ID score."""
    id_scores = np.arange(20) / 10
    ood_scores = np.r_[np.full(10, -10.0), np.full(10, 100.0)]
    openood = M.detection_metrics(id_scores, ood_scores, positive="ood")
    papers = M.detection_metrics(id_scores, ood_scores, positive="id")
    # OOD positive: detecting 95% of OOD means flagging all the ID examples too
    assert openood["FPR@95"] == 1.0
    # ID positive: keeping 95% of ID (scores >= 0.1) accepts the 10 OOD examples above them
    assert papers["FPR@95"] == 0.5
    assert openood["AUROC"] == papers["AUROC"] == 0.5 and openood["AUPR-In"] == papers["AUPR-In"]
    assert "FPR@90" in M.detection_metrics(id_scores, ood_scores, tpr=0.9)


@pytest.mark.parametrize("call, match", [
    (lambda: M.detection_metrics([1.0], [0.0], positive="in"), "positive='in' is not valid; choose 'ood'"),
    (lambda: M.detection_metrics([1.0], [0.0], tpr=0), "tpr=0 is not valid"),
    (lambda: M.detection_metrics([np.nan], [0.0]), "id_scores contains 1 NaN"),
    (lambda: M.detection_metrics([], [0.0]), "id_scores is empty"),
    (lambda: M.fpr_at_tpr([1.0, 2.0], [True, True]), "0 negative"),
    (lambda: M.fpr_at_tpr([1.0, 2.0], [True]), "differ in length"),
])
def test_bad_metric_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


class ToyNet(nn.Module):
    """Features are the inputs themselves; ``head`` is the toy classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.head = _head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def test_evaluate_ood_table():
    def loader(x, y):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)

    train, test = loader(*_clusters(60, 0)), loader(*_clusters(20, 1))
    far = loader(_far(40, 2), -torch.ones(40, dtype=torch.long))
    table = evaluate_ood(ToyNet(), train, test, {"far": far}, k=5, vim_dim=3)
    assert list(table["detector"]) == list(Det.DETECTORS) and set(table["ood_set"]) == {"far"}
    assert (table.loc[table["detector"].isin(Det.FEATURE_DETECTORS), "AUROC"] == 1.0).all()
    scores = detector_scores(ToyNet(), train, {"test": test}, ["msp"])
    assert scores["msp"]["test"].shape == (60,)
    with pytest.raises(ValueError, match="detectors \\['odin'\\] are not valid"):
        detector_scores(ToyNet(), train, {"test": test}, ["odin"])
    with pytest.raises(ValueError, match="must not contain the name 'id'"):
        evaluate_ood(ToyNet(), train, test, {"id": far})
