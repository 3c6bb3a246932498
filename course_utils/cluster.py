"""Scale-out: the course's trainings on a Dask cluster instead of this machine's process pool.

One laptop trains a seed of the ablation in about a minute per core; ten seeds of two families are most of an hour.
The work is a set of independent trainings, so more machines finish it sooner. :func:`connect` makes
``course_utils.parallel`` send every call to a Dask cluster, through the ``concurrent.futures`` interface of
``distributed`` (``Client.get_executor``), with the same rule as the local pool: one thread per worker, so the same
seed gives the same numbers on either backend.

Three ways to get a cluster:

- ``connect(local_workers=2)``: a ``LocalCluster`` of single-threaded worker processes on this machine;
- ``connect("tcp://HOST:8786")`` (or ``COURSE_DASK_SCHEDULER``): a running scheduler, started with
  ``dask scheduler`` on one machine and ``dask worker tcp://HOST:8786 --nthreads 1`` on each of the others;
- ``connect(SLURMCluster(...))``: any cluster object of ``dask-jobqueue`` (SLURM, PBS, ...).

Workers of a remote cluster need not share a file system with the client: calls take the checkpoints they read
with them and the checkpoints they write come back (``parallel.Call.checkpoints``). Set
``shared_checkpoints=True`` when every worker sees the same checkpoint folder (a local cluster always does).
A worker that dies has its task rescheduled by Dask on another worker; finished tasks are kept.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Executor
from typing import Any
from urllib.parse import urlsplit

from . import parallel

#: Environment variable naming a running scheduler (``tcp://HOST:8786``), used when none is given.
SCHEDULER_ENV = "COURSE_DASK_SCHEDULER"
#: Seconds to wait for a scheduler: one that does not answer fails in seconds, not after Dask's 30 s traceback.
CONNECT_TIMEOUT = 5.0
DEFAULT_PORT = 8786
#: Environment of every worker process of a local cluster: one thread, the way the local pool runs.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


class DaskBackend:
    """A ``distributed.Client`` seen as a ``concurrent.futures`` executor by :mod:`course_utils.parallel`."""

    def __init__(self, client: Any, shared_checkpoints: bool, owns_cluster: bool) -> None:
        self.client, self.shared_checkpoints, self._owns = client, shared_checkpoints, owns_cluster
        self._executor: Executor | None = None

    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = self.client.get_executor(pure=False)
        return self._executor

    def size(self) -> int:
        """Worker threads the cluster has now (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    @property
    def dashboard(self) -> str:
        return str(getattr(self.client, "dashboard_link", "") or "")

    def close(self) -> None:
        """Cancel what is still queued; close the client, and the cluster too when :func:`connect` started it."""
        cluster = self.client.cluster if self._owns else None
        try:
            self.client.close()
        finally:
            if cluster is not None:
                cluster.close()


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise ``ConnectionError`` (one line naming ``address`` and the reason) unless a TCP connection to the
    scheduler opens within ``timeout`` seconds, name lookup included; ``ValueError`` for an address without a
    host or with a bad port. Addresses other than ``tcp://`` and ``tls://`` are not tested."""
    if not isinstance(address, str):
        raise ValueError(f"scheduler={address!r} is not valid; give an address such as tcp://HOST:8786")
    parts = urlsplit(address)
    if parts.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError:
        host = port = None
    if not host or not port:
        raise ValueError(f"scheduler {address!r} is not valid; give an address such as tcp://HOST:8786")
    outcome: list[BaseException | None] = []

    def probe() -> None:  # in a thread: create_connection's timeout does not bound the name lookup
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=probe, daemon=True, name="scheduler-probe")
    thread.start()
    thread.join(timeout + 0.5)
    if outcome and outcome[0] is None:
        return
    e = outcome[0] if outcome else None
    why = f"no answer within {timeout:g} s" if e is None or isinstance(e, TimeoutError) else \
        (e.strerror or str(e) or type(e).__name__)
    raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({why}); is `dask scheduler` running "
                          "there, and the port open?")


def connect(scheduler: Any = None, *, local_workers: int | None = None, shared_checkpoints: bool | None = None,
            quiet: bool = False) -> DaskBackend:
    """Send every later ``parallel.run`` to a Dask cluster and return its backend (:func:`disconnect` ends it).

    ``scheduler``: a ``tcp://`` address, a ``distributed.Client``, a cluster object (``LocalCluster``,
    ``SLURMCluster``), or ``None`` for ``COURSE_DASK_SCHEDULER``; ``local_workers``: start a ``LocalCluster`` of that
    many single-threaded workers instead. ``shared_checkpoints``: whether the workers see this machine's checkpoint
    folder (default: yes for a local cluster, no otherwise). Prints the dashboard link unless ``quiet``.
    """
    if local_workers is not None and (isinstance(local_workers, bool) or not isinstance(local_workers, int)
                                      or local_workers < 1):
        raise ValueError(f"local_workers={local_workers!r} is not valid; it must be an integer >= 1")
    if local_workers is not None and scheduler is not None:
        raise ValueError("give either scheduler (join a running cluster) or local_workers (start one), not both")
    if scheduler is None and local_workers is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
        if scheduler is None:
            raise ValueError(f"no cluster given: pass scheduler='tcp://HOST:8786', local_workers=N, or set "
                             f"{SCHEDULER_ENV}")
    if isinstance(scheduler, str) and not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise ValueError(f"scheduler={scheduler!r} is not valid; give an address such as tcp://HOST:8786")
    from distributed import Client, LocalCluster

    owns = False
    if local_workers is not None:
        cluster = LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True, env=dict(WORKER_ENV),
                               dashboard_address=":0", silence_logs=40)
        client, owns, local = Client(cluster), True, True
    elif isinstance(scheduler, Client):
        client, local = scheduler, False
    elif isinstance(scheduler, str):
        check_scheduler(scheduler)
        try:
            client, local = Client(scheduler, timeout=f"{CONNECT_TIMEOUT * 2:g}s"), False
        except OSError as e:  # Dask's own timeout (an OSError) or a refused handshake, without its 22 frames
            raise ConnectionError(f"cannot connect to the Dask scheduler at {scheduler} "
                                  f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    elif hasattr(scheduler, "scheduler_address"):  # a cluster object
        client, local = Client(scheduler), isinstance(scheduler, LocalCluster)
    else:
        raise ValueError(f"scheduler={scheduler!r} is not valid; give an address, a Client or a cluster object")
    backend = DaskBackend(client, local if shared_checkpoints is None else bool(shared_checkpoints), owns)
    parallel.shutdown()  # the local pool's workers would only compete for the cores
    old = parallel.use_backend(backend)
    if old is not None:
        old.close()
    if not quiet:
        print(f"Dask cluster: {len(client.nthreads())} workers, {backend.size()} threads; dashboard: "
              f"{backend.dashboard or '(none: install bokeh for it)'}")
    return backend


def disconnect() -> None:
    """Back to the local process pool; closes the cluster if :func:`connect` started it."""
    old = parallel.use_backend(None)
    if old is not None:
        old.close()


def worker_pids() -> dict[str, int]:
    """``{worker address: process id}`` of the connected cluster (tests kill one to check nothing is lost)."""
    backend = parallel.current_backend()
    if not isinstance(backend, DaskBackend):
        raise RuntimeError("no Dask cluster is connected: call course_utils.cluster.connect first")
    return backend.client.run(os.getpid)
