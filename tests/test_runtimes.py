"""The runtime registry: every runtime is one registered EdgeRuntime in its own module; unknown runtimes are
refused before any export; a new runtime plugs in without touching the deployment API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

import course_utils.deploy as D
from course_utils.deploy import api
from course_utils.deploy.registry import RUNTIME_REGISTRY, EdgeRuntime, register_runtime, registered
from course_utils.deploy.runners import TorchRunner


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def test_every_runtime_is_registered_in_its_own_module():
    names = [r.name for r in registered()]
    assert names == ["pytorch", "torch_compile", "onnxruntime", "openvino", "executorch"]
    assert D.RUNTIMES == {r.name: r.precisions for r in registered()}
    folder = Path(api.__file__).parent / "runtimes"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    assert modules == {"pytorch", "onnx_runtime", "openvino_nncf", "executorch_xnnpack"}
    assert {lib for r in registered() for lib in r.libraries} <= set(D.machine_info()["versions"])


def test_the_api_names_no_runtime():
    """No if/elif on a runtime's name is left in the API: it loops over the registry."""
    text = Path(api.__file__).read_text()
    assert not re.search(r"runtime (==|in) [(\"']", text)


@pytest.mark.parametrize("call", ["deploy", "deploy_many", "build_artifact"])
def test_an_unknown_runtime_is_refused_before_any_export(call, tmp_path):
    model = _tiny()
    with pytest.raises(ValueError) as e:
        if call == "deploy_many":
            D.deploy_many([{"model": model, "runtime": "openvino"}, {"model": model, "runtime": "tflite"}])
        else:
            getattr(D, call)(model, "tflite", workdir=tmp_path)
    assert "runtime='tflite' is not valid" in str(e.value) and all(n in str(e.value) for n in RUNTIME_REGISTRY)
    assert not any(tmp_path.iterdir())


def test_a_runtime_needs_one_way_to_make_a_runner():
    with pytest.raises(ValueError, match="either build and load"):
        EdgeRuntime("half-made", ("fp32",), make=lambda *a: None, build=lambda *a: ({}, {}), load=lambda *a: None)
    with pytest.raises(ValueError, match="attention"):
        EdgeRuntime("no-attention", ("fp32",), build=lambda *a: ({}, {}), load=lambda *a: None)
    with pytest.raises(ValueError, match="must include"):
        EdgeRuntime("bad-calibration", ("fp32",), calibrated=("int8",), make=lambda *a: None)
    with pytest.raises(ValueError, match="already registered"):
        register_runtime(EdgeRuntime("pytorch", ("fp32",), make=lambda *a: None))


def test_a_new_runtime_is_one_registration(tmp_path):
    """An artifact runtime that saves a TorchScript-free state dict and reloads it: registered, deployed, checked."""

    def build(ready, precision, shape, folder, batches, sizes, threads):
        torch.save(ready.state_dict(), folder / "weights.pt")
        return {"weights": "weights.pt"}, {"note": "toy"}

    def load(folder, files, precision, sizes, threads, info):
        model = _tiny()
        model.load_state_dict(torch.load(folder / files["weights"]))
        return TorchRunner(model.eval(), "toy", precision, (folder / files["weights"]).stat().st_size, info=info)

    register_runtime(EdgeRuntime("toy", ("fp32",), attention="bmm", build=build, load=load))
    try:
        runner = D.deploy(_tiny(), "toy", example_shape=(1, 8, 8), workdir=tmp_path, name="tiny")
        assert runner.runtime == "toy" and runner.parity.max_abs_diff == 0 and runner.info["note"] == "toy"
        assert (tmp_path / "tiny-toy-fp32" / "manifest.json").is_file()
    finally:
        del RUNTIME_REGISTRY["toy"]
    with pytest.raises(ValueError, match="not valid"):
        D.deploy(_tiny(), "toy", example_shape=(1, 8, 8), workdir=tmp_path)
