"""The one set-up call of a notebook: it checks its parameters before any work and records through one helper."""

from __future__ import annotations

import os

import pytest
import torch

from course_utils import results
from course_utils.notebook import setup_notebook
from course_utils.paths import OUTPUT_VARIABLES


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    for variable in OUTPUT_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    return {"figures_dir": str(tmp_path / "figures"), "results_path": str(tmp_path / "results.json"),
            "checkpoint_dir": str(tmp_path / "checkpoints")}


def test_setup_returns_the_lab_and_points_the_outputs(outputs):
    lab = setup_notebook("02", smoke=True, dataset="digits", seed=3, **outputs)
    assert (lab.notebook, lab.mode, lab.dataset, lab.seed, lab.device) == ("02", "smoke", "digits", 3, "cpu")
    assert os.environ[OUTPUT_VARIABLES["results_path"]] == outputs["results_path"]
    first = torch.rand(3)
    setup_notebook("02", smoke=True, dataset="digits", seed=3, **outputs)
    assert torch.equal(first, torch.rand(3)), "the set-up seeds torch"


def test_record_fills_in_notebook_mode_dataset_and_seed(outputs):
    lab = setup_notebook("04", smoke=False, dataset="mnist_5k", seed=7, **outputs)
    lab.record({"accuracy": 0.9}, model="vit", norm="dyt", technique="kd", setting="T=2")
    lab.record({"accuracy": 0.8}, model="vit", norm="dyt", technique="kd", setting="T=2", seed=8)
    rows = results.load_results(outputs["results_path"]).sort_values("seed")
    assert rows[["notebook", "mode", "dataset", "seed", "value"]].values.tolist() == [
        ["04", "full", "mnist_5k", 7, 0.9], ["04", "full", "mnist_5k", 8, 0.8]]


@pytest.mark.parametrize("kwargs, name", [
    ({"smoke": "yes"}, "smoke"), ({"dataset": ""}, "dataset"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"device": "tpu"}, "device"), ({"figures_dir": 3}, "figures_dir")])
def test_bad_parameters_fail_with_their_name(outputs, kwargs, name):
    args = {"smoke": True, "dataset": "digits", "seed": 0, **outputs, **kwargs}
    with pytest.raises(ValueError, match=name):
        setup_notebook("01", **args)
