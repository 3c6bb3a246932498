"""parallel.run: the same results in worker processes as here, in order, with clear errors."""

import multiprocessing.connection
import os
import time
from pathlib import Path

import pytest
import torch

from course_utils import parallel
from course_utils.data import get_data
from course_utils.models import build_model
from course_utils.train import fit


def square(x):
    return x * x


def fail_on(x, bad):
    if x == bad:
        raise KeyError(f"no {x}")
    return x


def threads_and_env():
    return torch.get_num_threads(), os.environ.get("COURSE_CHECKPOINT_DIR"), parallel.in_worker()


def tiny_training(seed):
    data = get_data("digits", 32, subset=96, seed=seed)
    torch.manual_seed(seed)
    model = build_model("vit", "dyt", 10, (1, 8, 8), "nano")
    fit(model, data.train_loader, epochs=1, lr=1e-2, seed=seed, progress=False, device="cpu")
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", autouse=True)
def stop_workers():
    yield
    parallel.shutdown()


def test_results_in_order_and_same_as_here():
    calls = [parallel.call(square, i, label=f"square {i}") for i in range(7)]
    assert parallel.run(calls, workers=2, progress=False) == [i * i for i in range(7)]
    assert parallel.run(calls, workers=1, progress=False) == [i * i for i in range(7)]
    assert parallel.run([], workers=2) == []


def test_training_in_a_worker_matches_training_here():
    here = parallel.run([parallel.call(tiny_training, s) for s in (0, 1)], workers=1, progress=False)
    there = parallel.run([parallel.call(tiny_training, s) for s in (0, 1)], workers=2, progress=False)
    for a, b in zip(here, there):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(here[0][k], here[1][k]) for k in here[0])  # the seeds differ


def test_workers_are_single_threaded_and_take_the_callers_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "elsewhere"))
    out = parallel.run([parallel.call(threads_and_env) for _ in range(2)], workers=2, progress=False)
    assert out == [(1, str(tmp_path / "elsewhere"), True)] * 2
    before = torch.get_num_threads()
    threads, _, worker = parallel.run([parallel.call(threads_and_env)], workers=2, progress=False)[0]
    assert (threads, worker) == (1, False)  # one call runs here, single-threaded too
    assert torch.get_num_threads() == before


def test_a_failing_call_is_named():
    calls = [parallel.call(fail_on, i, 3, label=f"job {i}") for i in range(5)]
    with pytest.raises(parallel.JobError, match=r"job 3 failed in a worker process: KeyError: 'no 3'"):
        parallel.run(calls, workers=2, progress=False)
    with pytest.raises(KeyError):  # here, the original error
        parallel.run(calls, workers=1, progress=False)


def test_bad_input():
    with pytest.raises(ValueError, match="workers=-1 is not valid"):
        parallel.run([parallel.call(square, 1)], workers=-1)
    with pytest.raises(ValueError, match="workers=True is not valid"):
        parallel.resolve_workers(True)
    with pytest.raises(ValueError, match="cannot be sent to a worker process"):
        parallel.run([parallel.call(lambda x: x, 1), parallel.call(square, 2)], workers=2, progress=False)
    with pytest.raises(ValueError, match="parallel.call"):
        parallel.run([square], workers=2)
    with pytest.raises(ValueError, match="fn=3 is not valid"):
        parallel.call(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' is not available"):
            parallel.resolve_workers(0, device="cuda")


def test_worker_count():
    assert parallel.resolve_workers(3) == 3
    assert parallel.resolve_workers(0) == parallel.cpu_count()


def slow_square(x, seconds):
    import time

    time.sleep(seconds)
    return x * x


def test_submit_returns_at_once_and_later_runs_queue_behind():
    start = time.perf_counter()
    pending = parallel.submit([parallel.call(slow_square, i, 1.0) for i in (2, 3)], workers=2, progress=False)
    assert time.perf_counter() - start < 0.9, "submit must not wait for the calls"
    assert parallel.run([parallel.call(square, i) for i in range(4)], workers=2, progress=False) == [0, 1, 4, 9]
    assert pending.result() == [4, 9] and pending.done()
    assert pending.result() == [4, 9], "the results stay"
    lone = parallel.submit([parallel.call(square, 5)], workers=2, progress=False)  # one call: still in a worker
    assert lone.result() == [25] and lone.done()
    here = parallel.submit([parallel.call(square, 5)], workers=1, progress=False)  # one worker: here, now
    assert here.done() and here.result() == [25]
    assert parallel.submit([], workers=2).result() == []
    with pytest.raises(ValueError, match="cannot be sent to a worker process"):
        parallel.submit([parallel.call(square, 1), parallel.call(lambda: 0)], workers=2)


def test_an_interrupted_wait_stops_the_workers(monkeypatch):
    pending = parallel.submit([parallel.call(slow_square, i, 30.0) for i in range(2)], workers=2, progress=False)
    processes = list(parallel._POOL._processes.values())

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel.Pending, "_collect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pending.result()
    # A process's sentinel becomes ready when it exits. (Not is_alive(): the pool's own thread may reap a killed
    # worker first, and then is_alive() of this copy of the handle wrongly says True.)
    running, deadline = {p.sentinel for p in processes}, time.monotonic() + 10
    while running and time.monotonic() < deadline:
        running -= set(multiprocessing.connection.wait(list(running), timeout=deadline - time.monotonic()))
    assert not running, "the running calls were ended, not left in the background"
    assert parallel._POOL is None
    monkeypatch.undo()
    assert parallel.run([parallel.call(square, 3), parallel.call(square, 4)], workers=2, progress=False) == [9, 16]


def test_arguments_travel_by_value_not_in_shared_memory():
    """Through multiprocessing's pickler torch would move the caller's tensors into shared memory, and the caller's
    own PyTorch code then ran several times slower while the workers lived."""
    x = torch.arange(6.0)
    out = parallel.run([parallel.call(square, x), parallel.call(square, x)], workers=2, progress=False)
    assert not x.is_shared() and not out[0].is_shared()
    assert torch.equal(out[0], x * x)


def write_then_wait(path: str, text: str, seconds: float) -> str:
    time.sleep(seconds)
    Path(path).write_text(text)
    return text


def read_file(path: str) -> str:
    return Path(path).read_text()


def test_after_starts_a_call_once_its_predecessors_finished_and_fills_idle_cores(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    calls = [parallel.call(write_then_wait, a, "A", 1.5), parallel.call(write_then_wait, b, "B", 0.1),
             parallel.call(read_file, a), parallel.call(read_file, b), parallel.call(slow_square, 3, 1.0)]
    start = time.perf_counter()
    out = parallel.run(calls, workers=2, progress=False, after=[[], [], [0], [1], [1]])
    took = time.perf_counter() - start
    assert out == ["A", "B", "A", "B", 9], "a call that waits for another must see its output"
    # with stage barriers this takes 1.5 + 1.0 s; the freed core runs call 4 while call 0 still runs
    assert took < 2.3, f"the dependent calls did not start as soon as they could ({took:.1f} s)"
    assert parallel.run(calls, workers=1, progress=False, after=[[], [], [0], [1], [1]]) == out


def test_after_skips_the_calls_waiting_for_a_failed_one(tmp_path):
    calls = [parallel.call(fail_on, 1, 1), parallel.call(read_file, str(tmp_path / "never")), parallel.call(square, 2)]
    with pytest.raises(parallel.JobError, match=r"fail_on.*1 call\(s\) waiting for it did not run"):
        parallel.run(calls, workers=2, progress=False, after=[[], [0], []])


@pytest.mark.parametrize("after, match", [([[1], []], "only wait for earlier calls"), ([[]], "one list"),
                                          ("01", "one list"), ([[], ["0"]], "only wait for earlier")])
def test_after_is_checked(after, match):
    with pytest.raises(ValueError, match=match):
        parallel.submit([parallel.call(square, 1), parallel.call(square, 2)], workers=2, after=after)
