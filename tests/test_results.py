import json

import pytest

from course_utils import results


def test_record_upserts_instead_of_duplicating(tmp_path):
    path = tmp_path / "r.json"
    kw = dict(mode="full", dataset="mnist_5k", model="vit", norm="dyt", technique="baseline", path=path)
    results.record("01", {"accuracy": 0.9, "params": 100}, **kw)
    results.record("01", {"accuracy": 0.95}, **kw)  # rerun replaces its own row
    results.record("01", {"accuracy": 0.8}, **{**kw, "norm": "layernorm"})
    df = results.load_results(path)
    assert len(df) == 3
    dyt = df[(df.norm == "dyt") & (df.metric == "accuracy")]
    assert dyt.value.tolist() == [0.95]
    assert results.load_results(path, norm="layernorm").value.tolist() == [0.8]
    table = results.results_table(df)
    assert table.loc[("vit", "dyt", "baseline", ""), "params"] == 100


def test_store_is_valid_json_and_written_atomically(tmp_path):
    path = tmp_path / "r.json"
    results.record("02", {"accuracy": 0.5}, mode="smoke", dataset="digits", path=path)
    assert json.loads(path.read_text())[0]["metric"] == "accuracy"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_default_store_location_follows_environment(tmp_path):
    results.record("01", {"accuracy": 0.5}, mode="smoke", dataset="digits")
    assert (tmp_path / "results.json").exists()  # conftest points COURSE_RESULTS_PATH here


@pytest.mark.parametrize("kwargs, match", [
    (dict(metrics={"a": 1}, mode="fast"), "mode='fast'"),
    (dict(metrics={}, mode="full"), "metrics is empty"),
    (dict(metrics={"a": float("nan")}, mode="full"), "NaN"),
])
def test_bad_records(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        results.record("01", dataset="d", path=tmp_path / "r.json", **kwargs)


def test_corrupt_store_is_reported(tmp_path):
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.load_rows(tmp_path / "r.json")


def test_unknown_filter(tmp_path):
    with pytest.raises(ValueError, match="filter 'colour'"):
        results.load_results(tmp_path / "none.json", colour="red")
