"""Calibration (vs torchmetrics), compression-identified exemplars, corruption summaries, and the figures."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from course_utils import data as D
from course_utils.metrics import accuracy
from course_utils.plots import NORM_COLORS
from course_utils.robustness import calibration as Cal
from course_utils.robustness import corruption_metrics as CM
from course_utils.robustness import exemplars as E
from course_utils.robustness import plots as RP
from course_utils.robustness.ood_data import ood_set

matplotlib.use("Agg")


@pytest.mark.parametrize("n_bins", [5, 10, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_matches_torchmetrics(n_bins, seed):
    g = torch.Generator().manual_seed(seed)
    probs = (3 * torch.randn(500, 10, generator=g)).softmax(1)
    labels = torch.where(torch.rand(500, generator=g) < 0.7, probs.argmax(1), torch.randint(0, 10, (500,),
                                                                                          generator=g))
    ref = MulticlassCalibrationError(num_classes=10, n_bins=n_bins, norm="l1")(probs, labels).item()
    assert Cal.expected_calibration_error(probs, labels, n_bins) == pytest.approx(ref, abs=1e-6)


def test_reliability_data_by_hand():
    # four predictions at confidence 0.75 (three right) and two at 0.95 (one right), 10 bins
    probs = torch.tensor([[0.75, 0.25]] * 4 + [[0.05, 0.95]] * 2)
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    data = Cal.reliability_data(probs, labels, n_bins=10)
    assert data.count.tolist() == [0] * 7 + [4, 0, 2]
    assert data.accuracy[7] == 0.75 and data.confidence[9] == pytest.approx(0.95) and data.accuracy[9] == 0.5
    assert np.isnan(data.accuracy[0])
    assert data.ece == pytest.approx(2 / 6 * 0.45)
    assert Cal.expected_calibration_error(probs, labels, 10) == pytest.approx(0.15)


def test_confidence_one_falls_in_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    data = Cal.reliability_data(probs, torch.tensor([0, 0, 0]), n_bins=4)
    assert data.count.tolist() == [0, 1, 0, 2] and data.count.sum() == 3


@pytest.mark.parametrize("probs, labels, n_bins, match", [
    (torch.randn(4, 3), torch.zeros(4, dtype=torch.long), 15, "logits.softmax"),
    (torch.full((4, 2), 0.5), torch.zeros(3, dtype=torch.long), 15, "probs must be \\(N, classes\\)"),
    (torch.full((4, 2), 0.5), torch.zeros(4, dtype=torch.long), 0, "n_bins=0 is not valid"),
])
def test_bad_calibration_arguments(probs, labels, n_bins, match):
    with pytest.raises(ValueError, match=match):
        Cal.expected_calibration_error(probs, labels, n_bins)


def test_exemplars_on_a_hand_made_population():
    dense = torch.tensor([[0, 1, 2, 3, 4, 5],
                          [0, 1, 2, 3, 4, 6],
                          [0, 1, 9, 3, 7, 5]])
    compressed = torch.tensor([[0, 2, 2, 3, 4, 5],
                               [0, 2, 2, 8, 4, 5]])
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    ex = E.compression_identified_exemplars(dense, compressed, targets)
    assert ex.dense_modal.tolist() == [0, 1, 2, 3, 4, 5]
    # example 3: compressed models tie between 3 and 8, the smaller label wins
    assert ex.compressed_modal.tolist() == [0, 2, 2, 3, 4, 5]
    assert ex.mask.tolist() == [False, True, False, False, False, False] and ex.count == 1
    assert ex.fraction == pytest.approx(1 / 6)
    assert ex.dense_acc_exemplars == 1.0 and ex.compressed_acc_exemplars == 0.0
    assert ex.dense_acc_rest == pytest.approx(12 / 15) and ex.compressed_acc_rest == pytest.approx(9 / 10)
    assert set(ex.summary()) >= {"exemplars", "fraction", "dense_acc_exemplars"}
    # logits give the same answer as their argmax
    logits = torch.nn.functional.one_hot(dense, 10).float()
    assert torch.equal(E.compression_identified_exemplars(logits, compressed).mask, ex.mask)
    no_targets = E.compression_identified_exemplars(dense, compressed)
    assert math.isnan(no_targets.dense_acc_exemplars)


def test_modal_labels_ties_and_bad_inputs():
    assert E.modal_labels(torch.tensor([[2, 1], [1, 2]])).tolist() == [1, 1]
    with pytest.raises(ValueError, match="different numbers of examples: 3 and 2"):
        E.compression_identified_exemplars(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="holds floats"):
        E.modal_labels(torch.rand(2, 3))
    with pytest.raises(ValueError, match="labels \\(models, examples\\) or logits"):
        E.modal_labels(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets has 2 labels for 3 examples"):
        E.compression_identified_exemplars(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                                           torch.zeros(2))


def _table() -> pd.DataFrame:
    rows = [("ref", "clean", 0, 0.9), ("new", "clean", 0, 0.95)]
    errors = {("ref", "fog"): (0.2, 0.4), ("new", "fog"): (0.1, 0.2),
              ("ref", "rotate"): (0.3, 0.5), ("new", "rotate"): (0.4, 0.8)}
    rows += [(m, c, s + 1, 1 - e) for (m, c), errs in errors.items() for s, e in enumerate(errs)]
    return pd.DataFrame(rows, columns=["model", "corruption", "severity", "accuracy"])


def test_corruption_errors_by_hand():
    table = _table()
    ce = CM.corruption_errors(table, "ref")
    assert ce.loc["ref"].tolist() == pytest.approx([1.0, 1.0])
    assert ce.loc["new", "fog"] == pytest.approx(0.3 / 0.6) and ce.loc["new", "rotate"] == pytest.approx(1.2 / 0.8)
    rel = CM.corruption_errors(table, "ref", relative=True)
    # extra error over clean: new (0.05, 0.15) vs ref (0.1, 0.3) on fog
    assert rel.loc["new", "fog"] == pytest.approx(0.2 / 0.4)
    summary = CM.summarize_corruptions(table, "ref")
    assert summary.loc["new", "mCE"] == pytest.approx((0.5 + 1.5) / 2)
    assert summary.loc["new", "mCA"] == pytest.approx(1 - (0.1 + 0.2 + 0.4 + 0.8) / 4)
    assert summary.loc["new", "clean_accuracy"] == 0.95 and summary.loc["ref", "relative_mCE"] == pytest.approx(1)
    assert CM.mean_corruption_accuracy(table)["ref"] == pytest.approx(1 - 1.4 / 4)


def test_corruption_error_is_undefined_where_the_reference_is_perfect():
    table = pd.DataFrame([("ref", "fog", 1, 1.0), ("new", "fog", 1, 0.9)], columns=list(CM.COLUMNS))
    assert np.isnan(CM.corruption_errors(table, "ref").loc["new", "fog"])


@pytest.mark.parametrize("call, match", [
    (lambda t: CM.corruption_errors(t, "alexnet"), "reference='alexnet' is not a model of the table.*'ref'"),
    (lambda t: CM.corruption_errors(t.drop(columns="severity"), "ref"), "lacks columns \\['severity'\\]"),
    (lambda t: CM.corruption_errors(t[t["corruption"] != "clean"], "ref", relative=True), "needs a clean row"),
    (lambda t: CM.corruption_accuracy({}), "models is empty"),
])
def test_bad_summary_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(_table())


def test_corruption_accuracy_runs_every_model_on_every_set():
    torch.manual_seed(0)
    models = {"linear-dyt": nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), "linear-layernorm":
              nn.Sequential(nn.Flatten(), nn.Linear(64, 10))}
    table = CM.corruption_accuracy(models, "digits", ["rotate", "fog"], [1, 2], size=24)
    assert len(table) == 2 * (1 + 2 * 2) and table["accuracy"].between(0, 1).all()
    clean = D.get_data("digits", test_subset=24, seed=0).test_loader
    row = table[(table["model"] == "linear-dyt") & (table["corruption"] == "clean")]
    assert row["accuracy"].item() == pytest.approx(accuracy(models["linear-dyt"], clean))


def test_figures():
    info = D.DatasetInfo("mnist_5k", 10, (1, 28, 28), [str(i) for i in range(10)], (0.13,), (0.31,))
    fig = RP.corruption_grid(torch.rand(1, 28, 28), ["rotate", "stripe"], (0, 1, 5))
    assert len(fig.axes) == 6
    rgb = RP.corruption_grid(torch.rand(1, 3, 32, 32), ["fog"], (0, 3))
    assert len(rgb.axes) == 2
    sets = {n: ood_set(n, info, n=4) for n in ("letters", "uniform_noise")}
    assert len(RP.ood_grid(sets, info, per_set=5).axes) == 10
    probs = torch.rand(50, 3).softmax(1)
    ax = RP.reliability_diagram(Cal.reliability_data(probs, torch.randint(0, 3, (50,))), color=NORM_COLORS["dyt"],
                                label="dyt")
    assert "ECE" in ax.get_legend().get_texts()[0].get_text()
    RP.score_histograms({"id": torch.randn(30), "letters": torch.randn(30) - 1})
    RP.corruption_heatmap(_table())
    ax = RP.severity_curves(_table(), colors={"ref": "black"})
    assert ax.get_lines()[0].get_color() == "black"
    matplotlib.pyplot.close("all")


def test_model_colours_follow_the_course():
    assert RP.model_color("vit-dyt-pruned") == NORM_COLORS["dyt"]
    assert RP.model_color("cnn-LayerNorm") == NORM_COLORS["layernorm"]
    assert RP.model_color("cnn-batchnorm-int8") == NORM_COLORS["batchnorm"]
    assert RP.model_color("teacher") is None
