"""The seed sweep and its Dask backend: the same rows on the local pool and on a cluster, nothing lost when a worker
dies mid-sweep, checkpoints that travel to workers without a shared folder, bad arguments refused up front."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from course_utils import cluster, parallel, results, sweep
from course_utils.grading import api as grading_api

#: A small smoke sweep: two seeds of the ViT pair through two post-training regimes (four tasks).
SMALL = dict(seeds=[0, 1], families=["vit"], regimes=["ptq-w4a4", "dynamic-int8"], smoke=True, alpha_seeds=0,
             progress=False)


def _rows(path):
    return sorted(tuple(sorted(r.items())) for r in results.load_rows(path))


@pytest.fixture(scope="module")
def pool_rows(tmp_path_factory):
    """The small sweep on the local process pool (two workers): the rows every backend must reproduce."""
    tmp = tmp_path_factory.mktemp("pool")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_CHECKPOINT_DIR", str(tmp / "checkpoints"))
        info = sweep.sweep(**SMALL, store=tmp / "rows.json", workers=2)
        parallel.shutdown()
    assert info["backend"] == "processes" and info["tasks_run"] == 4
    return _rows(tmp / "rows.json")


@pytest.fixture
def disconnect():
    yield
    cluster.disconnect()


def test_local_cluster_records_the_same_rows_as_the_process_pool(pool_rows, tmp_path, disconnect):
    backend = cluster.connect(local_workers=2, quiet=True)
    assert backend.size() == 2 and backend.shared_checkpoints
    assert all(n == 1 for n in backend.client.nthreads().values()), "one thread per worker, as the local pool"
    info = sweep.sweep(**SMALL, store=tmp_path / "rows.json")
    assert info["backend"] == "dask" and info["tasks_run"] == 4
    rows = _rows(tmp_path / "rows.json")
    # 2 seeds x 2 norms x (dense + 2 regimes) x (accuracy, drop), plus each DyT dense model's learned alpha
    assert len(rows) == len(pool_rows) == 2 * 2 * 3 * 2 + 2
    assert sum(dict(r)["metric"] == "learned_alpha" for r in rows) == 2
    assert rows == pool_rows
    fixed = backend.client.run(getattr, parallel, "_MALLOC_FIXED")
    assert all(fixed.values()), "Dask's MALLOC_TRIM_THRESHOLD_ (2x slower training) was not undone in the workers"
    # a rerun finds every row recorded and runs nothing
    assert sweep.sweep(**SMALL, store=tmp_path / "rows.json")["tasks_run"] == 0


def test_a_worker_killed_mid_sweep_loses_nothing(pool_rows, tmp_path, disconnect):
    """One worker is killed while it trains; Dask reschedules its task, the sweep completes with every row. The
    cluster does not share the checkpoint folder here: the baselines come back from the workers."""
    backend = cluster.connect(local_workers=2, shared_checkpoints=False, quiet=True)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(sweep.sweep(**SMALL, store=tmp_path / "rows.json")))
    thread.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        busy = [w for w, tasks in backend.client.processing().items() if tasks]
        if busy:
            victim = cluster.worker_pids()[busy[0]]
        time.sleep(0.2)
    assert victim is not None, "no worker started a task within 60 s"
    time.sleep(1.0)  # mid-training
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep did not finish after a worker died"
    assert out["tasks_run"] == 4
    assert _rows(tmp_path / "rows.json") == pool_rows
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert len(saved) == 4 and all("vit" in name for name in saved), saved  # 2 seeds x 2 norms, sent back


@pytest.mark.parametrize("argv, named", [
    (["--seeds", "9-0"], "--seeds"),
    (["--seeds", "a"], "--seeds"),
    (["--seeds", "0-1", "--families", "vit,rnn"], "families"),
    (["--seeds", "0-1", "--regimes", "prune-all"], "regimes"),
    (["--seeds", "0-1", "--local-workers", "0"], "--local-workers"),
    (["--seeds", "0-1", "--workers", "-1"], "--workers"),
    (["--seeds", "0-1", "--scheduler", "localhost:8786"], "--scheduler"),
    (["--seeds", "0-1", "--local-workers", "2", "--scheduler", "tcp://x:8786"], "not allowed with"),
    (["--seeds", "0-1", "--dataset", "imagenet"], "dataset"),
    (["--seeds", "0-1", "--alpha-seeds", "-2"], "--alpha-seeds"),
])
def test_bad_arguments_fail_fast_naming_the_parameter(argv, named, tmp_path, capsys):
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        sweep.main([*argv, "--store", str(tmp_path / "rows.json"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert e.value.code == 2
    assert named in capsys.readouterr().err
    assert time.perf_counter() - start < 5, "refused only after starting work"
    assert not (tmp_path / "rows.json").exists() and parallel.current_backend() is None


def test_plan_and_seed_ranges():
    assert sweep.parse_seeds("0-2,7") == [0, 1, 2, 7] and sweep.parse_seeds("3") == [3]
    tasks = sweep.plan(range(10))
    assert len(tasks) == 10 * 4 + 3 * (len(sweep.ALPHAS) - 1)  # 10 seeds x 4 models + the alpha study on 3 seeds
    assert {t.setting for t in tasks} == {"ablation", "alpha_init=0.25", "alpha_init=1", "alpha_init=2"}
    assert tasks[0].family == "vit" and all(set(t.regimes) <= set(sweep.REGIMES) for t in tasks)


class _ThreadBackend:
    """A stand-in cluster: calls go to a thread pool, which shows where they went."""

    shared_checkpoints = True

    def __init__(self):
        self.pool, self.used = ThreadPoolExecutor(2), 0

    def executor(self):
        self.used += 1
        return self.pool

    def size(self):
        return 2

    def close(self):
        self.pool.shutdown()


def test_grader_jobs_use_the_connected_backend():
    backend = _ThreadBackend()
    parallel.use_backend(backend)
    try:
        assert grading_api._run_all(2, [(pow, (2, 5)), (pow, (3, 2))]) == [32, 9]
        assert backend.used == 1
    finally:
        parallel.use_backend(None)
        backend.close()
        os.environ.pop(parallel.WORKER_FLAG, None)  # set by the calls, which ran in this process's threads
    assert grading_api._run_all(2, [(pow, (2, 3))]) == [8]  # no cluster: the grader's own threads


def test_connect_refuses_bad_input():
    with pytest.raises(ValueError, match="local_workers"):
        cluster.connect(local_workers=0)
    with pytest.raises(ValueError, match="scheduler"):
        cluster.connect("localhost:8786")
    with pytest.raises(ValueError, match="not both"):
        cluster.connect("tcp://x:8786", local_workers=2)
