"""Independent trainings side by side: one worker process per CPU core, one thread in each.

Why processes and not threads: the course's models are so small that a training step is a few hundred operator
calls of a few microseconds each. A second intra-op thread barely speeds such a step up, while a second *process*
runs a second training at full speed: on the course's 2-core machine, four ViT-nano students took 64 s one after
the other with 2 threads and 34 s as two pairs in two single-threaded workers. Notebooks therefore hand their
independent trainings (seeds, regimes, students) to :func:`run`, which keeps a small pool of ``spawn`` workers
(safe with torch and inside Jupyter) and returns the results in order.

Determinism: every call runs single-threaded (:func:`single_thread`), in a worker or, with ``workers=1``, in this
process, so a result never depends on where it ran or on how many cores the machine has.

Backends: the pool is one ``concurrent.futures`` executor among others. :func:`use_backend` swaps in a Dask
cluster (``course_utils.cluster``: a ``LocalCluster`` on this machine, or a running scheduler on others), and every
``run`` -- the notebooks', the sweep's, the grader's -- goes there instead, with the same single-threaded rule and
so the same numbers. Workers of a remote cluster may not see this machine's files: a call can name the checkpoints
it reads (``call(..., checkpoints=[...])``); they travel with it, and the checkpoints it writes come back and are
saved here.

Endings: Ctrl-C and SIGTERM/SIGHUP (what a scheduler, ``timeout`` or a closed terminal sends) end the workers
and whatever they started before the caller stops (:func:`shutdown`), so no training outlives its run. The
command-line tools turn those signals into :class:`Terminated` (:func:`terminate_on_signals`) and exit with
128 + the signal's number; elsewhere :meth:`Pending.result` does the same while it waits, then lets the signal end
the process as it would have.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from .base import cpu_count, get_device, show_progress, single_thread
from .storage import Terminated, end_processes, ending_signal, terminate_on_signals

#: Set in worker processes, so a call that itself uses :func:`run` stays sequential there.
WORKER_FLAG = "COURSE_PARALLEL_WORKER"
#: Environment variables a worker takes from the caller for every call (output folders, progress bars).
FORWARDED_ENV_PREFIXES = ("COURSE_", "TQDM_")


class JobError(RuntimeError):
    """A call failed in a worker process; the message names the call and the original error."""


@dataclass(frozen=True)
class Call:
    """One unit of work: ``fn(*args, **kwargs)``; ``fn`` must be a module-level function (workers import it)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    #: Checkpoint names (files ``<name>.pt`` of ``paths.checkpoint_dir()``) the call reads: they travel with it to a
    #: worker that does not share this machine's files. Whatever it saves comes back either way.
    checkpoints: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.label or getattr(self.fn, "__qualname__", repr(self.fn))


def call(fn: Callable[..., Any], *args: Any, label: str = "", checkpoints: Sequence[str] = (),
         **kwargs: Any) -> Call:
    """``Call(fn, args, kwargs)`` with a ``label`` for progress bars and error messages, and the ``checkpoints`` it
    reads (needed only by clusters without a shared checkpoint folder)."""
    if not callable(fn):
        raise ValueError(f"fn={fn!r} is not valid; it must be a callable (a module-level function)")
    if isinstance(checkpoints, str) or not all(isinstance(c, str) for c in checkpoints):
        raise ValueError(f"checkpoints={checkpoints!r} is not valid; give a list of checkpoint names")
    return Call(fn, args, dict(kwargs), label, tuple(checkpoints))


def in_worker() -> bool:
    """Whether this process is one of :func:`run`'s workers."""
    return os.environ.get(WORKER_FLAG) == "1"


def resolve_workers(workers: int = 0, device: str | torch.device = "cpu") -> int:
    """How many processes to use: ``workers`` (0 = one per core); 1 inside a worker and for accelerators (one GPU
    is one device: its trainings queue up in this process)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers={workers!r} is not valid; it must be an integer >= 0 (0: one per CPU core)")

    if in_worker() or get_device(device).type != "cpu":
        return 1
    if _BACKEND is not None:  # a cluster: its scheduler decides where calls run, one thread per worker
        return max(2, _BACKEND.size())
    return workers or cpu_count()


# ------------------------------------------------------------------------------------------------ workers

def _init_worker() -> None:
    os.environ[WORKER_FLAG] = "1"
    torch.set_num_threads(1)
    # Ctrl-C (a Jupyter interrupt) is the caller's to handle: it stops the workers (see Pending.result), which
    # would otherwise each print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _undo_malloc_trim() -> None:
    """Give a Dask worker glibc's usual allocator thresholds back.

    Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to the OS).
    Setting it fixes glibc's mmap threshold at its 128 kB default, so every activation tensor above that size is a
    fresh ``mmap`` with page faults: a training step of the course ViT took 80 ms instead of 36 ms here, and a seed of
    the sweep 2.5x longer than in the local pool. The thresholds do not change any number, only where memory
    comes from; without glibc (macOS, musl) there is nothing to undo."""
    global _MALLOC_FIXED
    if _MALLOC_FIXED or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _MALLOC_FIXED = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's dynamic maximum (32 MB on 64-bit)
        libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD: twice that, as glibc's dynamic rule keeps it
    except (OSError, AttributeError):
        pass


_MALLOC_FIXED = False


def _execute(payload: bytes, env: Mapping[str, str], files: Mapping[str, bytes] | None = None) -> bytes:
    """What a worker does with one call: take the caller's output folders, run it single-threaded, and return the
    result pickled, with the checkpoints it wrote.

    ``files`` is ``None`` where the worker shares the caller's checkpoint folder; otherwise the call runs with a
    private checkpoint folder holding ``files`` (name -> bytes) and every checkpoint it saves there is returned, so
    nothing depends on the worker's disk and a worker that dies loses nothing the caller had.

    Calls and results travel as plain ``pickle`` bytes, tensors copied by value. Through multiprocessing's own
    pickler, torch would move every tensor argument into shared memory and pass file descriptors, and while the
    workers were alive the caller's own PyTorch code then ran 3-5x slower here (measured: a ViT's batch-1 latency
    0.98 -> 4.8 ms after sending the dataset to two workers, 0.89 ms again once they stopped).
    """
    for key in [k for k in os.environ if k.startswith(FORWARDED_ENV_PREFIXES) and k != WORKER_FLAG]:
        if key not in env:
            del os.environ[key]
    os.environ.update(env)
    os.environ[WORKER_FLAG] = "1"  # a Dask worker has no initializer: mark it here (nested runs stay sequential)
    _undo_malloc_trim()
    fn, args, kwargs = pickle.loads(payload)
    if files is None:
        with single_thread():
            return pickle.dumps((fn(*args, **kwargs), {}), protocol=pickle.HIGHEST_PROTOCOL)
    with tempfile.TemporaryDirectory(prefix="course-ckpt-") as tmp:
        for name, data in files.items():
            (Path(tmp) / f"{name}.pt").write_bytes(data)
        os.environ["COURSE_CHECKPOINT_DIR"] = tmp
        with single_thread():
            result = fn(*args, **kwargs)
        saved = {p.stem: p.read_bytes() for p in Path(tmp).glob("*.pt")
                 if p.stem not in files or files[p.stem] != p.read_bytes()}
        return pickle.dumps((result, saved), protocol=pickle.HIGHEST_PROTOCOL)


class Backend(Protocol):
    """Where :func:`submit` sends calls when not to the local pool (``course_utils.cluster.DaskBackend``)."""

    shared_checkpoints: bool

    def executor(self) -> Executor: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


_BACKEND: Backend | None = None


def use_backend(backend: Backend | None) -> Backend | None:
    """Send every later :func:`run` to ``backend`` (``None``: back to the local process pool); returns the old one.
    Usually called through ``course_utils.cluster.connect``."""
    global _BACKEND
    if backend is not None and not all(hasattr(backend, a) for a in ("executor", "size", "close")):
        raise ValueError(f"backend={backend!r} is not valid; give None or a course_utils.cluster backend")
    old, _BACKEND = _BACKEND, backend
    return old


def current_backend() -> Backend | None:
    """The cluster backend in use, or ``None`` for the local process pool."""
    return _BACKEND


def _save_returned(saved: Mapping[str, bytes]) -> None:
    """Write the checkpoints a remote worker trained into this machine's checkpoint folder (atomically)."""
    from .paths import checkpoint_path
    from .storage import atomic_path

    for name, data in saved.items():
        try:
            with atomic_path(checkpoint_path(name)) as tmp:
                Path(tmp).write_bytes(data)
        except OSError as e:  # the call's result is still good: only the cache is lost (say so, as train_or_load)
            from .storage import CheckpointNotSavedWarning

            warnings.warn(f"could not save checkpoint {name!r} trained by a worker: it was NOT saved ({e}); later "
                          "runs will train it again", CheckpointNotSavedWarning, stacklevel=2)


def _shipped(c: Call) -> dict[str, bytes]:
    from .paths import checkpoint_path

    return {n: p.read_bytes() for n in c.checkpoints if (p := checkpoint_path(n)).is_file()}


_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE = 0


def _pool(size: int) -> ProcessPoolExecutor:
    """The module's pool of ``size`` workers, started on first use and kept for later calls (a worker costs a
    few seconds to start: it imports torch)."""
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE != size:
        shutdown()
        _POOL = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        _POOL_SIZE = size
    return _POOL


def shutdown(kill: bool = False) -> None:
    """Stop the worker processes (the next :func:`run` starts new ones); ``kill`` ends calls still running (on a
    cluster: cancels them, and closes the cluster this process started)."""
    global _POOL, _POOL_SIZE, _BACKEND
    if kill and _BACKEND is not None:
        _BACKEND.close()
        _BACKEND = None
    if _POOL is not None:
        if kill:  # ProcessPoolExecutor can only wait for running calls; end their processes instead
            end_processes([p.pid for p in list(getattr(_POOL, "_processes", {}).values()) if p.pid])
        _POOL.shutdown(wait=not kill, cancel_futures=True)
    _POOL, _POOL_SIZE = None, 0


atexit.register(shutdown)


def _forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES) and k != WORKER_FLAG}


def _check_calls(calls: Sequence[Call]) -> list[Call]:
    if isinstance(calls, (str, bytes)) or not isinstance(calls, Sequence):
        raise ValueError(f"calls={calls!r} is not valid; give a list of parallel.call(fn, ...) items")
    bad = [c for c in calls if not isinstance(c, Call)]
    if bad:
        raise ValueError(f"calls must be parallel.call(...) items; got {type(bad[0]).__name__}")
    return list(calls)


def _check_after(after: Sequence[Sequence[int]] | None, n: int) -> list[frozenset[int]]:
    """``after[i]``: the calls that must finish before call ``i`` starts; each an earlier index (so no cycles)."""
    if after is None:
        return [frozenset()] * n
    if isinstance(after, (str, bytes)) or not isinstance(after, Sequence) or len(after) != n:
        raise ValueError(f"after={after!r} is not valid; give one list of earlier call indices per call ({n})")
    out = []
    for i, deps in enumerate(after):
        if isinstance(deps, (str, bytes)) or not isinstance(deps, (Sequence, set, frozenset)):
            raise ValueError(f"after[{i}]={deps!r} is not valid; give a list of call indices")
        bad = [d for d in deps if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < i]
        if bad:
            raise ValueError(f"after[{i}]={list(deps)!r} is not valid; call {i} can only wait for earlier calls "
                             f"(indices 0 to {i - 1})")
        out.append(frozenset(deps))
    return out


class Pending:
    """Calls handed to the workers by :func:`submit`; :meth:`result` waits for them (same rules as :func:`run`).

    A call that waits for others (``after``) is handed to the workers as soon as they have finished, while
    :meth:`result` waits: the cores never idle at a stage boundary while work that could start is left.
    """

    def __init__(self, calls: list[Call], results: list[Any] | None, desc: str, progress: bool,
                 start: Callable[[int], Future] | None = None, after: list[frozenset[int]] | None = None,
                 on_result: Callable[[int, Any], None] | None = None) -> None:
        self.calls, self._results, self.desc, self.progress = calls, results, desc, progress
        self._start, self._after, self._on_result = start, after or [frozenset()] * len(calls), on_result
        self._futures: dict[Future, int] = {}
        if start is not None:
            self._futures = {start(i): i for i, deps in enumerate(self._after) if not deps}

    def done(self) -> bool:
        """Whether every call has finished (successfully or not)."""
        if self._results is not None:
            return True
        return len(self._futures) == len(self.calls) and all(f.done() for f in self._futures)

    def result(self) -> list[Any]:
        """The result of every call, in order; :class:`JobError` naming the first call that failed."""
        if self._results is None:
            ended = None
            with terminate_on_signals() as own:  # a SIGTERM while waiting must end the workers too
                try:
                    self._results = self._collect()
                except KeyboardInterrupt as e:  # an interrupted cell must not leave trainings running
                    shutdown(kill=True)
                    if not (own and isinstance(e, Terminated)):
                        raise
                    ended = e.signum
            if ended is not None:  # the handler was ours: let the signal end the process, as it would have
                os.kill(os.getpid(), ended)
                time.sleep(1)
                raise Terminated(ended)
        return self._results

    def _abort(self) -> None:
        """Stop every call not finished: cancel the queued ones, end the local workers (a cluster's running calls
        finish there, unused)."""
        for f in self._futures:
            f.cancel()
        if _BACKEND is None:
            shutdown(kill=True)

    def _collect(self) -> list[Any]:
        calls, futures = self.calls, self._futures
        results: list[Any] = [None] * len(calls)
        finished: set[int] = set()
        failures: list[tuple[int, BaseException]] = []
        with tqdm(total=len(calls), desc=self.desc, disable=_quiet(self.progress), unit="job") as bar:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(done, key=futures.__getitem__):
                    i = futures[f]
                    try:
                        results[i], saved = pickle.loads(f.result())
                        _save_returned(saved)
                        finished.add(i)
                    except BrokenProcessPool as e:
                        shutdown(kill=True)
                        if ending_signal() is not None:  # the workers died of the signal this process got
                            raise Terminated(ending_signal()) from e
                        raise JobError(f"a worker process died while running {calls[i]} (out of memory, or "
                                       "killed?); run again with workers=1 to see the error in this process") from e
                    except Exception as e:  # noqa: BLE001 - re-raised below with the call named
                        if type(e).__name__ == "KilledWorker":  # Dask gave up after workers died running it
                            e = JobError(f"workers died {e.args[-1] if e.args else ''} times running it")
                        failures.append((i, e))
                    else:
                        if self._on_result is not None:  # e.g. the sweep records rows as each call finishes
                            try:
                                self._on_result(i, results[i])
                            except BaseException:  # the caller's own failure (a store it cannot write): stop all
                                self._abort()
                                raise
                    bar.update()
                started = set(futures.values())
                for j, deps in enumerate(self._after):  # hand over every call whose predecessors are all done
                    if j not in started and deps <= finished and self._start is not None:
                        f = self._start(j)
                        futures[f] = j
                        pending.add(f)
        skipped = len(calls) - len(futures)  # waited for a call that failed
        if failures:
            i, e = min(failures, key=lambda item: item[0])
            more = f" ({len(failures) - 1} other call(s) failed too)" if len(failures) > 1 else ""
            more += f"; {skipped} call(s) waiting for it did not run" if skipped else ""
            raise JobError(f"{calls[i]} failed in a worker process: {type(e).__name__}: {e}{more}") from e
        return results


def submit(calls: Sequence[Call], workers: int = 0, device: str | torch.device = "cpu", desc: str = "jobs",
           progress: bool = True, after: Sequence[Sequence[int]] | None = None,
           on_result: Callable[[int, Any], None] | None = None) -> Pending:
    """Start the calls in the workers and return at once; ``.result()`` waits. Later :func:`run` calls queue
    behind them, so a notebook can start a slow training early and keep both cores busy meanwhile. With one
    worker the calls run here, now, in order. ``after[i]`` lists the earlier calls that call ``i`` needs finished
    first (a fine-tuning needs its baseline's checkpoint). ``on_result(i, result)`` runs here as each call
    finishes (so work done before an interruption or a failure is kept)."""
    calls = _check_calls(calls)
    if not isinstance(desc, str):
        raise ValueError(f"desc={desc!r} is not valid; it must be a str")
    deps = _check_after(after, len(calls))
    n = resolve_workers(workers, device)
    if n <= 1 or not calls:
        out = []
        for i, c in enumerate(tqdm(calls, desc=desc, disable=_quiet(progress) or not calls, unit="job")):
            with single_thread():
                out.append(c.fn(*c.args, **c.kwargs))
            if on_result is not None:
                on_result(i, out[-1])
        return Pending(calls, out, desc, progress)
    env = _forwarded_env()
    payloads = []
    for i, c in enumerate(calls):  # all pickled before any is submitted: a bad call starts nothing
        try:
            payloads.append(pickle.dumps((c.fn, c.args, c.kwargs), protocol=pickle.HIGHEST_PROTOCOL))
        except (pickle.PicklingError, AttributeError, TypeError) as e:
            raise ValueError(f"call {i} ({c}) cannot be sent to a worker process ({e}); use a module-level function "
                             "and picklable arguments, or workers=1") from e
    if _BACKEND is None:
        pool: Executor = _pool(n)
        ship = False
    else:
        pool, ship = _BACKEND.executor(), not _BACKEND.shared_checkpoints
    return Pending(calls, None, desc, progress, after=deps, on_result=on_result,
                   start=lambda i: pool.submit(_execute, payloads[i], env, _shipped(calls[i]) if ship else None))


def run(calls: Sequence[Call], workers: int = 0, device: str | torch.device = "cpu", desc: str = "jobs",
        progress: bool = True, after: Sequence[Sequence[int]] | None = None,
        on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """The result of every call, in the order given, computed by up to ``workers`` processes side by side.

    ``workers``: 0 = one per CPU core; 1 = here, one after the other (so is a single call, and every call inside a
    worker or for an accelerator ``device``). Each call runs single-threaded either way. A failing call raises
    :class:`JobError` naming it (the other calls still finish first); arguments and results travel by pickle, so
    ``fn`` must be importable. The workers stay up for the next ``run`` (:func:`shutdown` stops them). ``after``:
    see :func:`submit`; so is ``on_result``. With a cluster backend (:func:`use_backend`) every call goes to the
    cluster, whatever ``workers`` says.
    """
    resolve_workers(workers, device)  # checks the value
    if isinstance(calls, Sequence) and len(calls) == 1 and _BACKEND is None:  # one call: here, without a worker
        workers = 1
    return submit(calls, workers, device, desc, progress, after, on_result).result()


def _quiet(progress: bool) -> bool:

    return not show_progress(progress)
