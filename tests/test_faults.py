"""Faults of a run, not of its input: SIGTERM mid-run, a full disk while saving a checkpoint, a results store that
cannot be written, and operator errors that used to surface only after minutes of work.

Every test is small: SIGTERM tests stop tiny smoke runs within seconds of their start, the disk and the store are
faked (a real tmpfs and a real immutable file where this machine allows), and the argument checks must answer before
any work starts."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from torch import nn

from course_utils import cluster, parallel, results, sweep
from course_utils import storage as course_io
from course_utils.checkpoints import CheckpointNotSavedWarning, train_or_load
from course_utils.paths import REPO_ROOT

PYTHON = sys.executable
#: Seconds allowed to start (imports, a kernel) and to stop: a few on an idle machine, minutes on a starved one. The
#: tests prove what survives and what is written, not how fast.
STARTUP, SHUTDOWN = 300, 180


# ----------------------------------------------------------------------------------------------- helpers

def _session(sid: int) -> list[psutil.Process]:
    """Live processes of session ``sid`` (every test command starts its own), zombies excluded."""
    out = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (OSError, psutil.Error):
            continue
    return out


def _survivors(sid: int, timeout: float = 10.0) -> list[psutil.Process]:
    """Processes of session ``sid`` still alive after up to ``timeout`` seconds (a resource tracker takes a moment
    to notice that its parent is gone)."""
    deadline = time.monotonic() + timeout
    while (alive := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def _all_gone(procs: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """The processes of ``procs`` still alive (not zombies) after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.Error:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") and p.name.startswith(".")]


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _spawned_workers(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            if "spawn_main" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
    return out


def _start(argv: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """Last resort after a failed assertion: nothing of the test outlives it (a kernel has a session of its own)."""
    try:
        doomed = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        doomed = []
    for p in doomed + _session(proc.pid):
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait(timeout=30)


# ----------------------------------------------------------------------------------- SIGTERM mid-run

def test_sigterm_mid_sweep_ends_every_worker_writes_nothing_more_and_exits_143(tmp_path):
    """Before: the pool's workers kept training and wrote 10 more checkpoints in 26 s after SIGTERM."""
    ckpt, store = tmp_path / "ckpt", tmp_path / "rows.json"
    proc = _start([PYTHON, "-m", "course_utils.sweep", "--seeds", "0", "--families", "vit", "--regimes",
                   "unstructured-90", "--smoke", "--alpha-seeds", "0", "--workers", "2", "--store", str(store),
                   "--checkpoint-dir", str(ckpt)], tmp_path)
    try:
        _wait_for(lambda: list(ckpt.glob("*.pt")), STARTUP, "the first checkpoint", proc)  # the others train
        assert len(_spawned_workers(proc.pid)) == 2
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)  # to the sweep alone, as a scheduler or `kill` does
        out, err = proc.communicate(timeout=SHUTDOWN)
        assert proc.returncode == 143, err[-3000:]
        assert "stopped by SIGTERM" in err and "Traceback" not in err, err[-3000:]
        assert not _all_gone(tree), "a worker outlived the sweep"
        assert not _survivors(proc.pid), "a process of the sweep's session survived"
        before = sorted((p.name, p.stat().st_mtime_ns) for p in ckpt.glob("*"))
        time.sleep(2.0)
        assert sorted((p.name, p.stat().st_mtime_ns) for p in ckpt.glob("*")) == before, "written after exit"
        assert not _partial_files(tmp_path)
        assert not store.exists() or isinstance(results.load_rows(store), list)
    finally:
        _stop(proc)


NOTEBOOK_CHILDREN = """\
import pathlib, subprocess
kids = [subprocess.Popen(["sleep", "600"]), subprocess.Popen(["sleep", "600"], start_new_session=True)]
pathlib.Path({mark!r}).write_text(" ".join(str(k.pid) for k in kids))
import time
time.sleep(600)
"""


def test_sigterm_mid_batch_run_ends_the_kernel_and_every_process_it_started(tmp_path):
    """Before: the runner died alone; the kernel (in its own session) and its 2 training workers kept running."""
    nb_dir, mark = tmp_path / "nbs", tmp_path / "children.txt"
    nb_dir.mkdir()
    nb = new_notebook(cells=[new_code_cell("seed = 0"), new_code_cell(NOTEBOOK_CHILDREN.format(mark=str(mark)))])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "01_sleep.ipynb")
    proc = _start([PYTHON, "-m", "course_utils.running", "--smoke", "--notebooks-dir", str(nb_dir),
                   "--output-dir", str(tmp_path / "out")], tmp_path)
    try:
        _wait_for(mark.exists, STARTUP, "the notebook's children", proc)
        time.sleep(0.3)
        children = [psutil.Process(int(pid)) for pid in mark.read_text().split()]
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(tree) >= 3, "the kernel and its children should be below the runner"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=SHUTDOWN)
        assert proc.returncode == 143, err[-3000:]
        assert "SIGTERM" in err and "Traceback" not in err, err[-3000:]
        assert not _all_gone(tree + children), "a process of the run outlived it (the kernel or its children)"
        assert not _survivors(proc.pid)
        assert not _partial_files(tmp_path)
        executed = tmp_path / "out" / "01_sleep.ipynb"
        assert not executed.exists() or nbformat.read(executed, as_version=4)  # complete JSON, or none
    finally:
        _stop(proc)
        for pid in (mark.read_text().split() if mark.exists() else []):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


POOL_SCRIPT = """\
import time
from course_utils import parallel
parallel.run([parallel.call(time.sleep, 600) for _ in range(2)], workers=2, progress=False)
"""


def test_sigterm_while_a_pool_works_ends_its_workers_then_the_process(tmp_path):
    """Outside the command-line tools (a script, a notebook kernel), waiting for ``parallel.run`` ends the workers
    on SIGTERM, then the signal ends the process as it would have."""
    proc = _start([PYTHON, "-c", POOL_SCRIPT], tmp_path)
    try:
        _wait_for(lambda: len(_spawned_workers(proc.pid)) >= 2, STARTUP, "two pool workers", proc)
        time.sleep(1.0)
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=SHUTDOWN)
        assert proc.returncode == -signal.SIGTERM
        assert not _all_gone(tree), "a pool worker outlived its caller"
        assert not _survivors(proc.pid)
    finally:
        _stop(proc)


WRITER_SCRIPT = """\
import sys, time
from course_utils.storage import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of it")
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_sigterm_during_an_atomic_write_leaves_no_partial_file(tmp_path):
    """A worker killed by ``shutdown(kill=True)`` or ``timeout`` mid-save used to leave its ``.tmp`` file."""
    target = tmp_path / "out.json"
    proc = _start([PYTHON, "-c", WRITER_SCRIPT, str(target)], tmp_path)
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.exists()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGTERM
        assert not tmp.exists() and not target.exists() and not _partial_files(tmp_path)
    finally:
        _stop(proc)


# ------------------------------------------------------------------------------------- full disk

def tiny_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


def train_bias_7(model):
    with torch.no_grad():
        model[1].bias.fill_(7.0)
    return {"test_acc": [0.9]}


TORCH_FULL_DISK = "[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file data/0: " \
                  "file write failed"


@pytest.mark.parametrize("message, free, why", [
    (TORCH_FULL_DISK, 4096, "the disk is full: 0.0 MiB free"),  # what torch says: no errno, so the space is measured
    ("unexpected pos 64 vs 0: No space left on device", 10 << 30, "no space left on device"),
])
def test_full_disk_while_saving_keeps_the_model_and_says_it_was_not_saved(tmp_path, monkeypatch, message, free, why):
    """Before: torch.save's RuntimeError was not caught (only OSError was): the trained model was lost."""
    folder = tmp_path / "ckpt"

    def full_disk(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"PK\x03\x04 the first bytes of a zip")  # torch writes some, then fails
        raise RuntimeError(message)

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(course_io.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, free))
    with pytest.warns(CheckpointNotSavedWarning) as caught:
        model, history = train_or_load("m", tiny_model, train_bias_7, {"k": 1}, directory=folder)
    text = str(caught[0].message)
    assert "NOT saved" in text and "ckpt/m.pt" in text and why in text and "kept in memory" in text, text
    assert torch.all(model[1].bias == 7.0) and history == {"test_acc": [0.9]}, "the trained model was lost"
    assert list(folder.iterdir()) == [], "a partial checkpoint was left behind"
    with pytest.raises(course_io.OutputPathError) as e:
        course_io.atomic_torch_save({"w": torch.zeros(3)}, folder / "x.pt")
    assert e.value.errno == errno.ENOSPC and list(folder.iterdir()) == []


TMPFS_SCRIPT = """\
import json, sys, warnings
import torch
from torch import nn
from course_utils.checkpoints import train_or_load

def train(model):
    with torch.no_grad():
        model.weight.fill_(3.0)
    return {"loss": [1.0]}

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model, _ = train_or_load("big", lambda: nn.Linear(400, 400), train, {"k": 1}, directory=sys.argv[1])
print(json.dumps({"weight": float(model.weight.mean()), "warnings": [str(w.message) for w in caught]}))
"""


def test_a_real_full_disk_keeps_the_model(tmp_path):
    """A 256 KiB tmpfs (a private mount namespace: root and ``unshare -m`` needed) and a 640 KB model."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a tiny tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -m is not allowed here")
    script = f"mount -t tmpfs -o size=256k tmpfs {disk} && exec {PYTHON} -c '{TMPFS_SCRIPT}' {disk}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["weight"] == 3.0, "the trained model was lost"
    assert any("NOT saved" in w and "disk is full" in w for w in out["warnings"]), out["warnings"]


# ------------------------------------------------------------------------------- the results store

SMALL = dict(seeds=[0, 1], families=["vit"], regimes=["ptq-w4a4"], smoke=True, alpha_seeds=0, progress=False,
             workers=1)


def fake_task(task, dataset="mnist_5k", smoke=False):
    """Rows of a task's identity, at once (the store's behaviour is under test, not the training)."""
    base = dict(notebook="07", mode="smoke" if smoke else "full", dataset=dataset, model=task.family,
                norm=task.norm, setting=task.setting, seed=task.seed)
    rows = [{**base, "technique": r, "metric": "accuracy", "value": 0.5} for r in ("dense", *task.regimes)]
    fake_task.ran.append(str(task))
    return {"rows": rows, "seconds": 0.0}


@pytest.fixture
def fake_tasks(monkeypatch):
    fake_task.ran = []
    monkeypatch.setattr(sweep, "run_task", fake_task)
    return fake_task.ran


def _immutable(path: Path) -> bool:
    return shutil.which("chattr") is not None and \
        subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("how", ["immutable file", "failing write"])
def test_a_store_that_cannot_be_written_is_refused_before_the_first_task(tmp_path, monkeypatch, fake_tasks,
                                                                         capsys, how):
    store = tmp_path / "rows.json"
    results.upsert([{"notebook": "01", "metric": "accuracy", "value": 1.0}], store)
    if how == "immutable file":
        if not _immutable(store):
            pytest.skip("chattr +i is not available here")
    else:
        monkeypatch.setattr(results, "atomic_write_text",
                            lambda *a: (_ for _ in ()).throw(PermissionError(errno.EPERM, "Operation not permitted")))
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    try:
        start = time.perf_counter()
        with pytest.raises(SystemExit) as e:
            sweep.main(["--seeds", "0-1", "--families", "vit", "--regimes", "ptq-w4a4", "--smoke", "--alpha-seeds",
                        "0", "--workers", "1", "--store", str(store), "--checkpoint-dir", str(tmp_path / "ckpt")])
        assert e.value.code == 2 and time.perf_counter() - start < 5
        err = capsys.readouterr().err
        assert "results store" in err and "rows.json" in err and "Operation not permitted" in err, err
        with pytest.raises(course_io.OutputPathError, match="results store .*rows.json cannot be written"):
            sweep.sweep(**SMALL, store=store)
        assert fake_tasks == [], "a task ran although its rows could not be recorded"
        assert results.load_rows(store) == [{"notebook": "01", "metric": "accuracy", "value": 1.0}]
    finally:
        subprocess.run(["chattr", "-i", str(store)], capture_output=True)


def test_a_store_that_fails_mid_sweep_stops_it_and_keeps_the_rows_in_a_side_file(tmp_path, monkeypatch, fake_tasks,
                                                                                  capsys):
    """Before: the rows of every finished task were lost while the sweep said "finished tasks are recorded"."""
    store = tmp_path / "rows.json"
    real_upsert, calls = results.upsert, []

    def upsert_then_fail(rows, path=None):
        calls.append(len(rows))
        if len(calls) > 1:  # the disk filled up, or someone made the store immutable, after the first task
            raise course_io.OutputPathError(f"cannot write {path} (Read-only file system)")
        return real_upsert(rows, path)

    monkeypatch.setattr(results, "upsert", upsert_then_fail)
    with pytest.raises(sweep.RowsNotRecorded) as e:
        sweep.sweep(**SMALL, store=store)
    assert fake_tasks == ["vit-dyt seed 0", "vit-layernorm seed 0"], "the sweep went on after a failed write"
    side = e.value.side_file
    assert side is not None and side.parent == tmp_path and str(side) in str(e.value)
    assert "Read-only file system" in str(e.value) and "vit-layernorm seed 0" in str(e.value)
    assert json.loads(side.read_text()) == e.value.rows and {r["norm"] for r in e.value.rows} == {"layernorm"}
    assert {r["norm"] for r in results.load_rows(store)} == {"dyt"}, "the first task's rows were lost"
    assert not _partial_files(tmp_path)

    # the command says it, once, with the side file, and does not claim the rows are recorded
    side.unlink()
    calls.clear()
    fake_tasks.clear()
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    code = sweep.main(["--seeds", "1", "--families", "vit", "--regimes", "ptq-w4a4", "--smoke", "--alpha-seeds",
                       "0", "--workers", "1", "--store", str(store), "--checkpoint-dir", str(tmp_path / "ckpt")])
    err = capsys.readouterr().err
    assert code == 1 and "finished tasks are recorded" not in err and "Traceback" not in err
    sides = list(tmp_path.glob("rows.unrecorded-*.json"))
    assert len(sides) == 1 and str(sides[0]) in err, err


class _ThreadBackend:
    """A stand-in cluster: calls run in this process's threads."""

    shared_checkpoints = True

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1)

    def executor(self):
        return self.pool

    def size(self):
        return 2

    def close(self):
        self.pool.shutdown(cancel_futures=True)


def test_a_failing_on_result_stops_the_run_as_itself_not_as_a_worker_failure():
    """It used to be counted as the call's failure and the run went on to the last call, then raised JobError."""
    backend = _ThreadBackend()
    parallel.use_backend(backend)
    seen = []

    def record(i, value):
        seen.append(i)
        if i == 0:
            raise OSError(errno.EROFS, "Read-only file system")

    try:
        with pytest.raises(OSError, match="Read-only"):
            parallel.run([parallel.call(time.sleep, 0.05) for _ in range(6)], progress=False, on_result=record)
    finally:
        parallel.use_backend(None)
        backend.close()
        os.environ.pop(parallel.WORKER_FLAG, None)
    assert seen == [0]


# ---------------------------------------------------------------------- late failures, now up front

def _sweep_main(argv, tmp_path):
    return sweep.main([*argv, "--store", str(tmp_path / "rows.json"), "--checkpoint-dir", str(tmp_path / "ckpt")])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path, monkeypatch, capsys):
    """Before: a raw 22-frame traceback after 33 s."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        _sweep_main(["--seeds", "0", "--smoke", "--scheduler", address], tmp_path)
    err = capsys.readouterr().err
    assert e.value.code == 2 and time.perf_counter() - start < 10
    assert "--scheduler" in err and address in err and "cannot reach" in err and "Traceback" not in err, err
    assert parallel.current_backend() is None and not (tmp_path / "rows.json").exists()
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler"):
        cluster.connect(address, quiet=True)
    with pytest.raises(ValueError, match="tcp://HOST:8786"):
        cluster.check_scheduler("tcp://:8786")


def test_a_listening_port_passes_the_scheduler_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        cluster.check_scheduler(f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout=2)


def test_a_huge_seed_range_is_refused_unless_confirmed(tmp_path, monkeypatch, capsys):
    """Before: --seeds 0-100000 was accepted (400,013 tasks)."""
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        _sweep_main(["--seeds", "0-100000"], tmp_path)
    err = capsys.readouterr().err
    assert e.value.code == 2 and time.perf_counter() - start < 5
    assert "--seeds 0-100000" in err and "400,013 tasks" in err and "--yes" in err, err
    with pytest.raises(SystemExit):
        _sweep_main(["--seeds", "0-5000000000", "--yes"], tmp_path)  # not NumPy seeds: refused even with --yes
    assert "too large" in capsys.readouterr().err
    with pytest.raises(ValueError, match="2,000,002 seeds; at most 1,000,000"):
        sweep.parse_seeds("0-1999999,3000000-3000001")  # measured before any list is built

    ran = {}
    monkeypatch.setattr(sweep, "sweep", lambda seeds, *a, **k: ran.update(n=len(seeds)) or dict.fromkeys(
        ("backend", "workers", "tasks", "tasks_run", "wall_seconds", "task_seconds_total", "longest_task_seconds")))
    assert _sweep_main(["--seeds", "0-300", "--yes"], tmp_path) == 0 and ran == {"n": 301}
    for seeds, families, alpha in (([0, 1], ("vit",), 3), (range(10), ("vit", "cnn"), 3), ([5], ("cnn",), 0),
                                   (range(2), ("vit", "cnn"), 5)):
        assert sweep.task_count(len(seeds), families, alpha) == len(sweep.plan(seeds, families, alpha_seeds=alpha))


@pytest.mark.parametrize("argv, named", [
    (["--min-run-time", "-1"], "--min-run-time -1.0 is not valid"),
    (["--min-run-time", "nan"], "--min-run-time nan is not valid"),
    (["--workdir", "{tmp}/file/sub"], "--workdir"),
    (["--rounds", "0"], "--rounds 0 is not valid"),
])
def test_bench_arguments_are_checked_before_any_training(argv, named, tmp_path, capsys):
    """Before: --min-run-time -1 failed after 175 s of training, an unwritable --workdir after 31 s."""
    from course_utils.deploy.__main__ import main

    (tmp_path / "file").write_text("a file where the folder should go")
    start = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(["--bench", "--smoke", *[a.format(tmp=tmp_path) for a in argv]])
    assert e.value.code == 2 and time.perf_counter() - start < 5
    assert named in capsys.readouterr().err


def test_bench_workdir_that_is_not_writable_fails_first(tmp_path, monkeypatch, capsys):
    from course_utils.deploy import bench
    from course_utils.deploy.__main__ import main

    workdir = tmp_path / "artifacts"
    workdir.mkdir()
    if not _immutable(workdir):
        pytest.skip("chattr +i is not available here")
    monkeypatch.setattr(bench, "get_data", lambda *a, **k: pytest.fail("work started before the checks"))
    try:
        with pytest.raises(SystemExit) as e:
            main(["--bench", "--smoke", "--workdir", str(workdir)])
        assert e.value.code == 2 and "--workdir" in capsys.readouterr().err
        with pytest.raises(OSError, match="not writable"):
            bench.run_bench(smoke=True, workdir=workdir)
    finally:
        subprocess.run(["chattr", "-i", str(workdir)], capture_output=True)
    with pytest.raises(ValueError, match="min_run_time=-1"):
        bench.run_bench(smoke=True, min_run_time=-1, workdir=workdir)


def test_each_sigterm_test_is_self_contained():
    """The module's own hygiene: no test above left a signal handler behind in this process."""
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and signal.getsignal(signal.SIGHUP) == signal.SIG_DFL
