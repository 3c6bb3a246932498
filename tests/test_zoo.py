"""The model zoo: recipes parse or fail clearly, trained steps are cached by their full recipe, steps compose."""

import pytest
import torch

from course_utils import zoo
from course_utils.data import get_data
from course_utils.metrics import count_parameters
from course_utils.modules import is_pruned
from course_utils.paths import checkpoint_dir
from course_utils.pruning import global_sparsity
from course_utils.quantization import FakeQuantLayer
from course_utils.zoo import get_variant, parse_recipe


@pytest.fixture(scope="module")
def smoke_data():
    return get_data("mnist_5k", 64, smoke=True, seed=0)


def test_recipes_parse_and_bad_ones_list_the_valid_forms():
    assert parse_recipe("dense") == []
    assert parse_recipe("structured-50+dynamic-int8") == ["structured-50", "dynamic-int8"]
    assert parse_recipe("student-crd+kd+unstructured-70") == ["student-crd+kd", "unstructured-70"]
    for bad, msg in (("pruned", "unstructured-N"), ("qat-w9a8", "qat-wBaB"), ("unstructured-0", "1 to 99"),
                     ("structured-50+student-kd", "must come first"), ("student-magic", "student method"),
                     ("", "recipe=")):
        with pytest.raises(ValueError, match=msg):
            parse_recipe(bad)
    with pytest.raises(ValueError, match="seed"):
        get_variant("dense", seed=-1)


def test_trained_steps_are_cached_by_recipe(smoke_data, capsys):
    v = get_variant("unstructured-70", smoke=True, data=smoke_data, verbose=True)
    assert "Saved checkpoint" in capsys.readouterr().out
    assert global_sparsity(v.model) == pytest.approx(0.7, abs=0.01) and is_pruned(v.model.head)
    assert "alpha/blocks.0.norm1" in v.history, "fine-tuning records DyT's alpha every epoch"
    again = get_variant("unstructured-70", smoke=True, data=smoke_data, verbose=True)
    assert "Loaded checkpoint" in capsys.readouterr().out
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(again.model(x), v.model(x))
    names = sorted(p.name for p in checkpoint_dir().glob("zoo-*.pt"))
    assert names == ["zoo-vit-small-dyt-mnist_5k-smoke-s0--unstructured-70.pt"]
    get_variant("unstructured-70", "vit", "layernorm", smoke=True, data=smoke_data)
    assert len(list(checkpoint_dir().glob("zoo-*.pt"))) == 2, "another norm is another checkpoint"


def test_steps_compose(smoke_data):
    dense = get_variant("dense", "cnn", "dyt", smoke=True, data=smoke_data).model
    small = get_variant("structured-50+static-int8", "cnn", "dyt", smoke=True, data=smoke_data)
    assert any("quantize_per_tensor" in str(n.target) for n in small.model.graph.nodes)  # a PT2E int8 graph
    qat = get_variant("structured-50+qat-w4a8", "cnn", "dyt", smoke=True, data=smoke_data)
    assert any(isinstance(m, FakeQuantLayer) for m in qat.model.modules())
    assert list(qat.histories) == ["dense", "structured-50", "qat-w4a8"]
    student = get_variant("student-kd+dynamic-int8", "vit", "dyt", smoke=True, data=smoke_data).model
    assert student(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(get_variant("student-kd", smoke=True, data=smoke_data).model)["total"] < \
        count_parameters(get_variant("dense", smoke=True, data=smoke_data).model)["total"]
    assert count_parameters(dense)["total"] > 0


def test_get_variants_trains_side_by_side_like_get_variant(tmp_path, monkeypatch):
    """Shared baselines and steps are trained once, in workers, and give the models get_variant gives."""
    from course_utils import parallel
    from course_utils.checkpoints import is_cached

    data = get_data("digits", 32, smoke=True)
    specs = [{"recipe": r, "model": "vit", "norm": "dyt", "seed": s}
             for s in (0, 1) for r in ("unstructured-50", "student-kd", "student-kd+structured-50", "ptq-w4a4")]
    common = {"dataset": "digits", "smoke": True, "data": data}
    try:
        together = zoo.get_variants(specs, workers=2, progress=False, **common)
    finally:
        parallel.shutdown()
    assert [v.recipe for v in together] == [s["recipe"] for s in specs]
    base_cfg, plan = zoo._plan("student-kd+structured-50", "vit", "dyt", "digits", True, 1, 0.5, None, None)
    assert all(is_cached(st.name, st.config) for st in plan if st.trained)
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "one_by_one"))
    for spec, v in zip(specs, together):
        alone = zoo.get_variant(**common, **spec)
        for (k, a), b in zip(alone.model.state_dict().items(), v.model.state_dict().values()):
            assert torch.equal(a, b), (spec, k)
    with pytest.raises(ValueError, match="unknown get_variant arguments"):
        zoo.get_variants([{"recipe": "dense", "epochs": 3}])
    with pytest.raises(ValueError, match="specs="):
        zoo.get_variants("dense")


def test_every_quantizer_and_runtime_calibrates_on_one_stratified_sample(monkeypatch):
    """The zoo's quantizers, notebook 06's runtimes and the bench all calibrate on the same class-balanced images."""
    from course_utils.data import get_data
    from course_utils.deploy import bench

    bundle = get_data("mnist_5k", batch_size=64)
    x, y = zoo.calibration_set(bundle)
    counts = torch.bincount(y, minlength=10)
    assert len(x) == zoo.CALIBRATION_IMAGES and counts.max() - counts.min() <= 1, counts.tolist()
    for n in (64, 128, 256):  # every prefix the course takes (sensitivities, 06's 256) is balanced too
        c = torch.bincount(y[:n], minlength=10)
        assert c.min() > 0 and c.max() - c.min() <= 1
    assert torch.equal(zoo.calibration_images(bundle, 256), x[:256])

    seen = {}

    class Stop(Exception):
        pass

    def capture(jobs, **_):
        seen["calibration"] = [j["calibration"] for j in jobs if j["calibration"] is not None]
        raise Stop

    monkeypatch.setattr(bench, "get_baseline", lambda *a, **k: (torch.nn.Linear(1, 1), None))
    monkeypatch.setattr(bench.parallel, "submit", lambda *a, **k: None)
    monkeypatch.setattr(bench, "deploy_many", capture)
    with pytest.raises(Stop):
        bench.run_bench()
    assert seen["calibration"] and all(torch.equal(c, zoo.calibration_images(bundle, bench.CALIBRATION))
                                       for c in seen["calibration"])
