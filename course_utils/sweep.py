"""Seed sweeps: notebook 07's ablation for many seeds, on this machine or on a Dask cluster.

``python -m course_utils.sweep --seeds 0-9 [--families vit,cnn] [--regimes ...] [--smoke]
[--workers N | --local-workers N | --scheduler ADDR]`` (``make sweep SEEDS=0-9``).

Why: with three seeds none of the twenty DyT-vs-reference comparisons of notebook 07 left the noise; ten seeds make
the intervals about 3.5x narrower (a t quantile of 2.26 instead of 4.30, and sqrt(10/3)). Ten seeds of two families
cost most of an hour on a laptop, so the course ships the result (``results/reference/ablation.json``, made by this
command) and notebook 07 reads it.

The work is one task per (family, norm, seed) -- its baseline, then every regime of 07 from it, then the evaluation
rows -- plus the alpha-init study's tasks (ViT-DyT baselines with another ``alpha_init``). Tasks are independent, so
N workers finish in about total/N, bounded below by the longest task (the critical path). Each returns its rows,
which are recorded here as it finishes; trained weights are checkpoints (sent back from workers that share no
folder with this machine). A rerun skips tasks whose rows are recorded and trainings whose checkpoints exist.
Every training is single-threaded wherever it runs, so both backends record identical rows.

Operator errors fail before any work: a bad argument, a store or checkpoint folder that cannot be written (the store
is rewritten unchanged to prove it), an unreachable ``--scheduler`` (a 5 s connection test) and a plan of more than
``MAX_TASKS`` tasks without ``--yes`` (``--seeds 0-100000`` is 400,013 tasks, weeks of work). A write to the store
that still fails mid-sweep stops the sweep at once, the task's rows saved to a side file named in the message.
SIGTERM and SIGHUP are handled like Ctrl-C: the workers end, finished tasks stay recorded, exit status 128 + signal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import parallel, results
from .args import check_choice
from .baselines import DEFAULT_ALPHA
from .paths import REPO_ROOT
from .storage import Terminated, atomic_write_text, ending_signal, ensure_writable_dir, terminate_on_signals

FAMILIES = {"vit": ("dyt", "layernorm"), "cnn": ("dyt", "batchnorm")}
#: Notebook 07's regimes, plus ``finetune`` (the same fine-tuning without pruning: the control of RQ2).
REGIMES = ("unstructured-50", "unstructured-70", "unstructured-90", "structured-50", "ptq-w8a8", "ptq-w4a8",
           "ptq-w4a4", "qat-w4a8", "dynamic-int8", "student-kd", "finetune")
SMOKE_REGIMES = ("unstructured-90", "ptq-w4a4", "dynamic-int8")
#: The alpha-init study (07, section 2): ViT-DyT baselines with these initial alphas, through these regimes.
ALPHAS = (0.25, 0.5, 1.0, 2.0)
ALPHA_REGIMES = ("unstructured-90", "ptq-w4a4", "qat-w4a8")
#: Every model is trained and evaluated on the data bundle of seed 0 (batch 64): notebook 07's default.
DATA_SEED, BATCH_SIZE = 0, 64
#: Without ``--yes``, the command refuses plans of more tasks (a typo in ``--seeds`` is not a week of work).
MAX_TASKS = 1000
#: Seeds are NumPy seeds (below 2**32); a seed list longer than this is refused even with ``--yes``.
MAX_SEED, MAX_SEEDS = 2**32 - 1, 1_000_000
REFERENCE = REPO_ROOT / "results" / "reference" / "ablation.json"
SWEEP_CHECKPOINTS = REPO_ROOT / "runs" / "sweep" / "checkpoints"


@dataclass(frozen=True)
class Task:
    """One (family, norm, seed, alpha_init) chain: the baseline and its regimes."""

    family: str
    norm: str
    seed: int
    regimes: tuple[str, ...]
    alpha_init: float = DEFAULT_ALPHA

    @property
    def setting(self) -> str:
        """The rows' ``setting``: ``ablation`` for the main sweep, ``alpha_init=A`` for the study's other alphas."""
        return "ablation" if self.alpha_init == DEFAULT_ALPHA else f"alpha_init={self.alpha_init:g}"

    def __str__(self) -> str:
        extra = "" if self.alpha_init == DEFAULT_ALPHA else f" alpha_init={self.alpha_init:g}"
        return f"{self.family}-{self.norm} seed {self.seed}{extra}"


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,5"`` or ``"0-2,7"`` -> sorted distinct seeds (each an integer in [0, 2**32 - 1], at most
    ``MAX_SEEDS`` of them: the ranges are measured before any list is built)."""
    if not isinstance(text, str) or not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", text.replace(" ", "")):
        raise ValueError(f"--seeds {text!r} is not valid; give a range or a list such as 0-9, 0,3,5 or 0-2,7")
    ranges = []
    for part in text.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        if hi_i < lo_i:
            raise ValueError(f"--seeds {text!r}: the range {part} runs backwards; write {hi}-{lo}")
        if hi_i > MAX_SEED:
            raise ValueError(f"--seeds {text!r}: seed {hi_i} is too large; seeds are integers from 0 to {MAX_SEED}")
        ranges.append(range(lo_i, hi_i + 1))
    if sum(map(len, ranges)) > MAX_SEEDS:
        raise ValueError(f"--seeds {text!r} lists {sum(map(len, ranges)):,} seeds; at most {MAX_SEEDS:,} per sweep")
    return sorted({seed for r in ranges for seed in r})


def _names(text: str | Sequence[str] | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    if text is None:
        return tuple(allowed)
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    for item in items:
        check_choice(what, item, allowed)
    if not items:
        raise ValueError(f"--{what} is empty; choose from {list(allowed)}")
    return tuple(dict.fromkeys(items))


def plan(seeds: Sequence[int], families: Sequence[str] = tuple(FAMILIES), regimes: Sequence[str] | None = None,
         smoke: bool = False, alpha_seeds: int = 3, alphas: Sequence[float] = ALPHAS) -> list[Task]:
    """Every task of a sweep, longest first (ViT before ConvNet, the ablation before the alpha study)."""
    regimes = tuple(regimes or (SMOKE_REGIMES if smoke else REGIMES))
    tasks = [Task(f, n, s, regimes) for f in sorted(families, key=lambda f: f != "vit") for s in seeds
             for n in FAMILIES[f]]
    if "vit" in families:
        study = tuple(r for r in ALPHA_REGIMES if r in regimes)
        tasks += [Task("vit", "dyt", s, study, a) for s in list(seeds)[:alpha_seeds] for a in alphas
                  if a != DEFAULT_ALPHA]
    return tasks


def task_count(n_seeds: int, families: Sequence[str] = tuple(FAMILIES), alpha_seeds: int = 3,
               alphas: Sequence[float] = ALPHAS) -> int:
    """``len(plan(...))`` for ``n_seeds`` seeds, without building the plan."""
    study = min(alpha_seeds, n_seeds) * sum(a != DEFAULT_ALPHA for a in alphas) if "vit" in families else 0
    return n_seeds * sum(len(FAMILIES[f]) for f in families) + study


class RowsNotRecorded(RuntimeError):
    """A finished task's rows could not be written to the results store; the sweep stopped there.

    ``rows`` holds them; ``side_file`` is where they were saved instead (``None`` if nowhere could be written)."""

    def __init__(self, message: str, rows: list[dict[str, Any]], side_file: Path | None) -> None:
        super().__init__(message)
        self.rows, self.side_file = rows, side_file


def _save_aside(store: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Write ``rows`` (the store's format) beside the store, else in the temporary folder; where, or None."""
    name = f"{store.stem}.unrecorded-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    for folder in dict.fromkeys((store.parent, Path(tempfile.gettempdir()), Path.cwd())):
        try:
            return atomic_write_text(json.dumps(rows, indent=1) + "\n", folder / name)
        except OSError:
            continue
    return None


def run_task(task: Task, dataset: str = "mnist_5k", smoke: bool = False) -> dict[str, Any]:
    """Worker side: train (or load) the task's models, evaluate them, return ``{"rows": [...], "seconds": s}``.

    Rows use notebook 07's identity (notebook ``07``, technique = regime); metrics: ``accuracy``,
    ``drop_points`` (vs the same seed's dense model) and, for DyT models that trained, ``alpha_change_pct`` and
    ``gamma_std_change_pct`` (mean relative change of each layer's alpha and gamma spread over the fine-tuning)."""
    import numpy as np

    from . import zoo
    from .data import get_data
    from .metrics import accuracy
    from .models import norm_snapshot

    start = time.perf_counter()
    data = get_data(dataset, BATCH_SIZE, smoke=smoke, seed=DATA_SEED)
    recipes = ("dense", *task.regimes)
    built = zoo.get_variants([{"recipe": r} for r in recipes], workers=1, progress=False, model=task.family,
                             norm=task.norm, seed=task.seed, dataset=dataset, smoke=smoke, data=data,
                             alpha_init=task.alpha_init)
    base = dict(notebook="07", mode="smoke" if smoke else "full", dataset=dataset, model=task.family,
                norm=task.norm, setting=task.setting, seed=task.seed)
    dense = accuracy(built[0].model, data.test_loader)
    snapshot = norm_snapshot(built[0].model)
    metrics = {"dense": {"accuracy": dense, "drop_points": 0.0}}
    alphas = [v for k, v in snapshot.items() if k.startswith("alpha/")]
    if alphas:
        metrics["dense"]["learned_alpha"] = float(np.mean(alphas))
    for regime, v in zip(recipes[1:], built[1:]):
        a = accuracy(v.model, data.test_loader)
        m = metrics[regime] = {"accuracy": a, "drop_points": 100 * (a - dense)}
        h = v.history if regime != "dense" and not regime.startswith(("ptq", "dynamic")) else {}
        for key, name in (("alpha/", "alpha_change_pct"), ("gamma_std/", "gamma_std_change_pct")):
            changes = [h[k][-1] / snapshot[k] - 1 for k in h if k.startswith(key) and k in snapshot and snapshot[k]]
            if changes and task.norm == "dyt" and not regime.startswith("student"):
                m[name] = 100 * float(np.mean(changes))
    rows = [{**base, "technique": regime, "metric": k, "value": float(val)}
            for regime, ms in metrics.items() for k, val in ms.items()]
    return {"rows": rows, "seconds": time.perf_counter() - start}


def _done(task: Task, recorded: set[tuple], mode: str, dataset: str) -> bool:
    return all((mode, dataset, task.family, task.norm, r, task.setting, task.seed) in recorded
               for r in ("dense", *task.regimes))


def _provenance(argv: Sequence[str], backend: str, workers: int, wall: float, seconds: list[float]) -> dict:
    import torch

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    from .ablation import cpu_model

    cpu = cpu_model()
    return {"command": "python -m course_utils.sweep " + " ".join(argv), "commit": git("rev-parse", "HEAD"),
            "uncommitted_package_files": git("status", "--porcelain", "--", "course_utils").splitlines(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "torch": torch.__version__,
            "python": platform.python_version(), "threads_per_task": 1, "backend": backend, "workers": workers,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": parallel.cpu_count(),
                        "platform": platform.platform()},
            "wall_seconds": round(wall, 1), "tasks_run": len(seconds),
            "task_seconds_total": round(sum(seconds), 1),
            "longest_task_seconds": round(max(seconds), 1) if seconds else 0.0}


def sweep(seeds: Sequence[int], families: Sequence[str] = tuple(FAMILIES), regimes: Sequence[str] | None = None, *,
          smoke: bool = False, dataset: str = "mnist_5k", store: os.PathLike | str | None = None, workers: int = 0,
          alpha_seeds: int = 3, progress: bool = True, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Run every task not yet recorded in ``store`` through ``course_utils.parallel`` (whatever backend is
    connected) and record its rows as it finishes; write the provenance beside the store; return it."""
    tasks = plan(seeds, families, regimes, smoke, alpha_seeds)
    store_path = Path(store) if store is not None else REFERENCE
    results.check_writable(store_path)  # an unwritable store fails now, not after the first task
    mode = "smoke" if smoke else "full"
    recorded = {(r["mode"], r["dataset"], r["model"], r["norm"], r["technique"], r["setting"], r["seed"])
                for r in results.load_rows(store_path) if r.get("notebook") == "07" and r.get("metric") == "accuracy"}
    todo = [t for t in tasks if not _done(t, recorded, mode, dataset)]
    seconds: list[float] = []

    def keep(i: int, out: dict[str, Any]) -> None:  # runs here as each task finishes: nothing done is lost
        try:
            results.upsert(out["rows"], store_path)
        except (OSError, ValueError) as e:  # stop now: every later task's rows would be lost the same way
            side = _save_aside(store_path, out["rows"])
            where = (f"they are saved in {side}; results.upsert(results.load_rows({str(side)!r}), "
                     f"{str(store_path)!r}) records them once the store is writable") if side else \
                "they could not be saved anywhere else either and are printed below"
            raise RowsNotRecorded(f"the {len(out['rows'])} rows of {todo[i]} could not be written to the results "
                                  f"store {store_path} ({e}); the sweep stopped. {where[0].upper()}{where[1:]}. "
                                  f"Tasks recorded before are in the store; a rerun goes on from them",
                                  out["rows"], side) from e
        seconds.append(out["seconds"])

    backend = parallel.current_backend()
    n = parallel.resolve_workers(workers)
    if progress:
        print(f"{len(tasks)} tasks ({len(tasks) - len(todo)} already recorded) on "
              f"{'a Dask cluster' if backend else f'{n} local worker processes'}; rows -> {store_path}")
    start = time.perf_counter()
    calls = [parallel.call(run_task, t, dataset, smoke, label=str(t)) for t in todo]
    parallel.run(calls, workers=workers, desc="sweep", progress=progress, on_result=keep)
    wall = time.perf_counter() - start
    info = _provenance(argv, "dask" if backend else "processes", backend.size() if backend else n, wall, seconds)
    info.update(seeds=list(seeds), families=list(families), regimes=list(tasks[0].regimes) if tasks else [],
                smoke=smoke, dataset=dataset, tasks=len(tasks))
    if todo:
        atomic_write_text(json.dumps(info, indent=1) + "\n", store_path.with_name(store_path.stem + ".provenance.json"))
    return info


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", required=True, help="seeds to run: 0-9, 0,3,5 or 0-2,7")
    p.add_argument("--families", default=",".join(FAMILIES), help="vit, cnn or vit,cnn (default)")
    p.add_argument("--regimes", default=None, help=f"comma-separated, from {', '.join(REGIMES)} (default: all)")
    p.add_argument("--smoke", action="store_true", help="tiny data, 1 epoch, 3 regimes: a fast end-to-end check")
    p.add_argument("--dataset", default="mnist_5k")
    p.add_argument("--alpha-seeds", type=int, default=3, help="seeds of the alpha-init study (default 3; 0: skip)")
    p.add_argument("--store", default=None, help="results store for the rows (default results/reference/"
                   "ablation.json; smoke: runs/sweep/smoke.json)")
    p.add_argument("--checkpoint-dir", default=None, help="where the sweep's models are kept (default "
                   "runs/sweep/checkpoints, away from the series' own)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0, help="local process pool size (0: one per core)")
    where.add_argument("--local-workers", type=int, default=None, help="start a Dask LocalCluster of N workers")
    where.add_argument("--scheduler", default=None, help="join a running Dask scheduler, tcp://HOST:8786 "
                       "(default: $COURSE_DASK_SCHEDULER when set)")
    p.add_argument("--shared-checkpoints", action="store_true", help="remote workers see the same checkpoint "
                   "folder (else checkpoints travel with the tasks)")
    p.add_argument("--yes", action="store_true", help=f"run a plan of more than {MAX_TASKS} tasks")
    return p


def _stopped(ending: Terminated | None) -> int:
    """Say how the sweep ended early (Ctrl-C, or the signal that ended it) and return the exit status."""
    how = str(ending) if ending is not None else "interrupted"
    print(f"\nsweep {how}: its workers are ended, finished tasks are recorded; run the same command again to go on",
          file=sys.stderr)
    return ending.exit_status if ending is not None else 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    a = p.parse_args(argv)
    from . import cluster
    from .data import DATASETS

    try:  # every argument checked before anything starts
        seeds = parse_seeds(a.seeds)
        families = _names(a.families, tuple(FAMILIES), "families")
        regimes = _names(a.regimes, REGIMES, "regimes") if a.regimes else None
        check_choice("dataset", a.dataset, DATASETS)
        if a.alpha_seeds < 0:
            raise ValueError(f"--alpha-seeds {a.alpha_seeds} is not valid; it must be >= 0")
        if a.workers < 0:
            raise ValueError(f"--workers {a.workers} is not valid; it must be >= 0 (0: one per core)")
        if a.local_workers is not None and a.local_workers < 1:
            raise ValueError(f"--local-workers {a.local_workers} is not valid; it must be >= 1")
        n_tasks = task_count(len(seeds), families, a.alpha_seeds)
        if n_tasks > MAX_TASKS and not a.yes:
            raise ValueError(f"--seeds {a.seeds} makes {n_tasks:,} tasks ({len(seeds):,} seeds), more than "
                             f"{MAX_TASKS:,}; check the seeds, or add --yes to run them all")
        scheduler = a.scheduler or (os.environ.get(cluster.SCHEDULER_ENV) if a.local_workers is None else None)
        if scheduler and not scheduler.startswith(("tcp://", "tls://")):
            raise ValueError(f"--scheduler {scheduler!r} is not valid; give an address such as tcp://HOST:8786")
        store = Path(a.store) if a.store else (REPO_ROOT / "runs" / "sweep" / "smoke.json" if a.smoke else REFERENCE)
        ckpt = Path(a.checkpoint_dir) if a.checkpoint_dir else SWEEP_CHECKPOINTS
        ensure_writable_dir(ckpt, "checkpoint folder")
        results.check_writable(store)
        if scheduler:
            try:
                cluster.check_scheduler(scheduler)
            except (ValueError, OSError) as e:
                raise ValueError(f"--scheduler: {e}") from None
    except (ValueError, OSError) as e:
        p.error(str(e))
    os.environ["COURSE_CHECKPOINT_DIR"] = str(ckpt.resolve())
    with terminate_on_signals():  # SIGTERM/SIGHUP: the same clean-up as Ctrl-C, no worker left behind
        try:
            if a.local_workers is not None:
                cluster.connect(local_workers=a.local_workers)
            elif scheduler:
                cluster.connect(scheduler, shared_checkpoints=a.shared_checkpoints)
            info = sweep(seeds, families, regimes, smoke=a.smoke, dataset=a.dataset, store=store,
                         workers=a.workers, alpha_seeds=a.alpha_seeds, argv=argv)
        except KeyboardInterrupt as e:
            parallel.shutdown(kill=True)
            return _stopped(e if isinstance(e, Terminated) else None)
        except RowsNotRecorded as e:
            print(f"sweep failed: {e}", file=sys.stderr)
            if e.side_file is None:
                print(json.dumps(e.rows), file=sys.stderr)
            return 1
        except ConnectionError as e:  # the scheduler answered the test but not Dask's handshake
            print(f"sweep failed: --scheduler: {e}", file=sys.stderr)
            return 2
        except parallel.JobError as e:
            if (signum := ending_signal()) is not None:  # its workers died of the signal we got
                return _stopped(Terminated(signum))
            print(f"sweep failed: {e}; finished tasks are recorded, a rerun goes on from them", file=sys.stderr)
            return 1
        finally:
            cluster.disconnect()
    print(json.dumps({k: info[k] for k in ("backend", "workers", "tasks", "tasks_run", "wall_seconds",
                                           "task_seconds_total", "longest_task_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
