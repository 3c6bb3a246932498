"""The results store: upserts, atomic and locked writes (several processes at once lose nothing), bad input."""

import json
import multiprocessing as mp

import pytest

from course_utils import results
from course_utils.storage import OutputPathError


def test_record_upserts_instead_of_duplicating(tmp_path):
    path = tmp_path / "r.json"
    kw = dict(mode="full", dataset="mnist_5k", model="vit", norm="dyt", technique="baseline", path=path)
    assert results.record("01", {"accuracy": 0.9, "params": 100}, **kw) is None  # a cell ending in it prints nothing
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
    # the store and its (hidden, reusable) lock file; no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.lock", "r.json"]


def test_default_store_location_follows_environment(tmp_path):
    results.record("01", {"accuracy": 0.5}, mode="smoke", dataset="digits")
    assert (tmp_path / "results.json").exists()  # conftest points COURSE_RESULTS_PATH here


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):  # one read-modify-write per row: the most contention
        results.record("01", {f"m{i}": float(i)}, mode="full", dataset="d", setting=f"worker{worker}", path=path)


def _reader(path: str, stop, errors) -> None:
    while not stop.is_set():
        try:
            results.load_rows(path)
        except Exception as e:  # noqa: BLE001 - any failure to read counts
            errors.put(repr(e))


def test_concurrent_writers_lose_nothing_and_readers_never_see_half_a_file(tmp_path):
    path = str(tmp_path / "r.json")
    workers, n = 4, 40
    ctx = mp.get_context("spawn")
    stop, errors = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(path, stop, errors))
    reader.start()
    procs = [ctx.Process(target=_writer, args=(path, w, n)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    stop.set()
    reader.join(30)
    assert [p.exitcode for p in procs] == [0] * workers
    assert errors.empty(), f"a reader saw a broken store: {errors.get()}"
    rows = results.load_rows(path)
    assert len(rows) == workers * n, f"rows were lost: {len(rows)} of {workers * n}"
    assert {(r["setting"], r["metric"]) for r in rows} == {(f"worker{w}", f"m{i}") for w in range(workers)
                                                           for i in range(n)}


@pytest.mark.parametrize("kwargs, match", [
    (dict(metrics={"a": 1}, mode="fast"), "mode='fast'"),
    (dict(metrics={}, mode="full"), "metrics is empty"),
    (dict(metrics={"acc": float("nan")}, mode="full"), "metric 'acc' is NaN"),
    (dict(metrics={"speedup": float("inf")}, mode="full"), r"metric 'speedup' is \+inf"),
    (dict(metrics={"loss": float("-inf")}, mode="full"), "metric 'loss' is -inf"),
    (dict(metrics={"acc": "0.9"}, mode="full"), "metric 'acc'='0.9' is not valid; it must be a number"),
    (dict(metrics={"acc": None}, mode="full"), "metric 'acc'=None"),
    (dict(metrics={"": 1.0}, mode="full"), "metric name ''"),
    (dict(metrics=[("a", 1.0)], mode="full"), "metrics must be a dict"),
    (dict(metrics={"a": 1}, mode="full", seed="0"), "seed='0'"),
    (dict(metrics={"a": 1}, mode="full", seed=True), "seed=True"),
    (dict(metrics={"a": 1}, mode="full", model=None), "model=None"),
    (dict(metrics={"a": 1}, mode="full", setting=None), "setting=None"),
    (dict(metrics={"a": 1}, mode="full", dataset=""), "dataset=''"),
    (dict(metrics={"a": 1}, mode="full", notebook=""), "notebook=''"),
    (dict(metrics={"a": 1}, mode="full", path=""), "path=''"),
])
def test_bad_records(tmp_path, kwargs, match):
    kwargs = {"dataset": "d", "notebook": "01", "path": tmp_path / "r.json", **kwargs}
    with pytest.raises(ValueError, match=match):
        results.record(kwargs.pop("notebook"), **kwargs)
    assert not (tmp_path / "r.json").exists(), "a refused record still wrote the store"


def test_store_never_contains_non_json_numbers(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(ValueError, match="'x' is NaN"):
        results.upsert([{"metric": "x", "value": float("nan")}], path)
    results.record("01", {"a": 1.0}, mode="full", dataset="d", path=path)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the store"))


@pytest.mark.parametrize("rows, match", [
    ({"metric": "a", "value": 1.0}, "not a single dict"),
    ("rows", "not a single dict or a str"),
    ([1, 2], "not a dict"),
    ([{"metric": "a"}], "lacks 'metric' or 'value'"),
])
def test_bad_upserts(tmp_path, rows, match):
    with pytest.raises(ValueError, match=match):
        results.upsert(rows, tmp_path / "r.json")


def test_corrupt_store_is_reported(tmp_path):
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.load_rows(tmp_path / "r.json")
    (tmp_path / "r.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="not a list of rows"):
        results.load_rows(tmp_path / "r.json")


def test_store_that_is_a_folder_is_reported(tmp_path):
    (tmp_path / "r.json").mkdir()
    with pytest.raises(OutputPathError, match="r.json is a folder"):
        results.record("01", {"a": 1.0}, mode="full", dataset="d", path=tmp_path / "r.json")
    with pytest.raises(OutputPathError, match="r.json is a folder"):
        results.load_rows(tmp_path / "r.json")


def test_locked_store_times_out_with_the_lock_named(tmp_path):
    from filelock import FileLock

    path = tmp_path / "r.json"
    with FileLock(tmp_path / ".r.json.lock"):  # another process (or thread) holds the lock
        with pytest.raises(TimeoutError, match=r"stayed locked.*\.r\.json\.lock"):
            with results._locked(path, timeout=0.1):
                pass


def test_unknown_filter_and_bad_table(tmp_path):
    with pytest.raises(ValueError, match="filter 'colour'"):
        results.load_results(tmp_path / "none.json", colour="red")
    with pytest.raises(ValueError, match="df must be a DataFrame"):
        results.results_table([{"metric": "a", "value": 1}])
    results.record("01", {"a": 1.0}, mode="full", dataset="d", path=tmp_path / "r.json")
    df = results.load_results(tmp_path / "r.json")
    with pytest.raises(ValueError, match="index=\\['colour'\\]"):
        results.results_table(df, ["colour"])
    assert results.results_table(df, "dataset").loc["d", "a"] == 1.0


def test_paths_and_io_reject_bad_arguments(tmp_path):
    from course_utils import paths
    from course_utils import storage as io

    for call, match in [(lambda: paths.figures_dir(smoke="yes"), "smoke='yes'"),
                        (lambda: paths.results_path(smoke=1), "smoke=1"),
                        (lambda: paths.relative(None), "path=None"),
                        (lambda: paths.run_locations("no", tmp_path), "smoke must be True or False"),
                        (lambda: io.atomic_write_text(b"x", tmp_path / "a"), "text must be a str"),
                        (lambda: io.ensure_writable_dir("", "x"), "directory=''"),
                        (lambda: io.ensure_writable_dir(tmp_path, 3), "what=3")]:
        with pytest.raises(ValueError, match=match):
            call()


def test_smoke_defaults_never_point_at_the_repository(monkeypatch):
    from course_utils import paths

    monkeypatch.delenv("COURSE_FIGURES_DIR")
    monkeypatch.delenv("COURSE_RESULTS_PATH")
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert paths.figures_dir() == paths.SMOKE_OUTPUTS / "figures"
    assert paths.figures_dir(smoke=False) == paths.REPO_FIGURES
    assert paths.results_path() == paths.SMOKE_OUTPUTS / "results.json"
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert paths.results_path() == paths.REPO_RESULTS
    monkeypatch.setenv("COURSE_FIGURES_DIR", "")  # empty means the default, never the current folder
    assert paths.figures_dir() == paths.REPO_FIGURES


def test_forget_removes_one_notebooks_rows_only(tmp_path):
    path = tmp_path / "r.json"
    for nb, seed in (("06", 0), ("06", 1), ("07", 0)):
        results.record(nb, {"accuracy": 0.9, "ms": 1.0}, mode="full", dataset="d", seed=seed, path=path)
    results.record("06", {"accuracy": 0.5}, mode="smoke", dataset="d", path=path)
    assert results.forget("06", mode="full", dataset="d", seed=0, path=path) == 2
    assert results.forget("06", mode="full", dataset="d", path=path) == 2
    left = {(r["notebook"], r["mode"], r["seed"]) for r in results.load_rows(path)}
    assert left == {("07", "full", 0), ("06", "smoke", 0)}
    assert results.forget("06", mode="full", dataset="d", path=path) == 0
    with pytest.raises(ValueError, match="mode='fast'"):
        results.forget("06", mode="fast", dataset="d", path=path)


def test_a_summary_names_the_notebooks_whose_results_are_missing(tmp_path):
    store = tmp_path / "results.json"
    results.record("02", {"accuracy": 0.9}, mode="smoke", dataset="digits", path=store)
    df = results.load_results(store, mode="smoke", dataset="digits")
    results.require_notebooks(df, ["02"], mode="smoke", dataset="digits", path=store)
    with pytest.raises(LookupError, match=r"no smoke-mode rows for dataset 'digits' from notebook\(s\) 03, 05: run "
                                          r"them first \(e.g. `python -m course_utils.running --only 03,05 --smoke`"):
        results.require_notebooks(df, ["02", "03", "05"], mode="smoke", dataset="digits", path=store)
    with pytest.raises(LookupError, match="from notebook"):
        results.require_notebooks(results.load_results(tmp_path / "empty.json"), ["02"], mode="full", dataset="x")


def test_what_07_reads_back_is_recorded_under_the_same_constants():
    import re

    import nbformat

    from course_utils.paths import REPO_ROOT

    def code(name: str, cell_id: str | None = None) -> str:
        nb = nbformat.read(REPO_ROOT / "notebooks" / name, 4)
        return "\n".join(c.source for c in nb.cells if c.cell_type == "code" and cell_id in (None, c.id))

    hold = code("07_ablation_summary.ipynb", "hold")
    used = set(re.findall(r"results\.([A-Z][A-Z0-9_]+)", hold))
    assert {"ONESHOT_FINETUNE", "PTQ_FAKE", "QAT_FAKE", "DENSE", "FP32"} <= used
    recorded = code("02_pruning.ipynb") + code("03_quantization.ipynb")
    for name in used:
        value = getattr(results, name)
        assert isinstance(value, str)
        assert f"results.{name}" in recorded or any(
            f"results.{k}" in recorded for k, v in vars(results).items() if isinstance(v, dict) and value in
            v.values()), f"07 reads technique {value!r} (results.{name}) that neither 02 nor 03 records by that name"
        assert f'"{value}"' not in hold, f"07 spells {value!r} out instead of using results.{name}"
