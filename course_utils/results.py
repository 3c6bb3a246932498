"""The results store: every notebook records its headline numbers so later notebooks can aggregate them.

Rows are tidy (one metric per row). A row's identity is every field but ``value``; recording a row with the same
identity replaces the old one, so reruns never duplicate. Every read-modify-write holds a file lock
(``.<store>.lock`` beside the store) so that processes recording at the same time never lose each other's rows,
and every write is atomic so that readers, which take no lock, never see a half-written file. Values must be
finite numbers: NaN and infinities are refused with the metric's name instead of being written as invalid JSON.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import check_path, display_path, results_path
from .storage import OutputPathError, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

KEY_FIELDS = ("notebook", "mode", "dataset", "model", "norm", "technique", "setting", "seed", "metric")
MODES = ("full", "smoke")
#: Names of the techniques one notebook records and another reads back (07 reads 02's and 03's): both sides use
#: these constants, so a rename changes both instead of leaving a lookup that silently finds nothing.
DENSE, FP32 = "dense", "fp32"
ONESHOT, GRADUAL = "unstructured one-shot", "unstructured gradual"
ONESHOT_FINETUNE = "unstructured one-shot + fine-tune"
PTQ_FAKE, QAT_FAKE = "ptq_fake", "qat_fake"
#: 02's pruning methods (as its tables label them) -> the technique recorded.
PRUNING_TECHNIQUE = {"one-shot": ONESHOT, "one-shot + fine-tune": ONESHOT_FINETUNE, "gradual": GRADUAL}
#: Seconds a writer waits for another process's lock before giving up with an error naming the lock file.
LOCK_TIMEOUT = 120.0


def _path(path: os.PathLike | str | None) -> Path:
    p = check_path("path", path, optional=True)
    return p if p is not None else results_path()


def _lock_path(store: Path) -> Path:
    return store.with_name(f".{store.name}.lock")


@contextmanager
def _locked(store: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the store's lock (shared by every process and thread on this machine)."""
    from filelock import FileLock, Timeout

    if store.is_dir():
        raise OutputPathError(f"results store {display_path(store)} is a folder, not a file")
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"results store folder {display_path(store.parent)} cannot be created ({e})") from e
    lock = FileLock(_lock_path(store), timeout=timeout)
    try:
        lock.acquire()
    except Timeout as e:
        raise TimeoutError(f"results store {display_path(store)} stayed locked by another process for {timeout:.0f}"
                           f" s; if none is running, delete {display_path(_lock_path(store))}") from e
    except OSError as e:
        raise OutputPathError(f"results store {display_path(store)}: cannot create its lock file ({e})") from e
    try:
        yield
    finally:
        lock.release()


def check_writable(path: os.PathLike | str | None = None) -> Path:
    """Prove that rows can be recorded in the store now, before hours of work depend on it; returns its path.

    An existing store is rewritten unchanged under its lock, so whatever would stop a real write (an immutable or
    read-only file, a read-only or full disk, a lock that cannot be taken) raises ``OutputPathError`` naming the
    store here. A store not created yet needs a writable folder and its lock."""
    from .storage import ensure_writable_file

    p = _path(path)
    try:
        if p.is_file():
            _rewrite(p, lambda r: False, [])
        else:
            ensure_writable_file(p, "results store")
            with _locked(p):
                pass
    except OutputPathError as e:
        raise OutputPathError(f"results store {display_path(p)} cannot be written: {e}") from e
    except OSError as e:
        raise OutputPathError(f"results store {display_path(p)} cannot be written ({e})") from e
    return p


def load_rows(path: os.PathLike | str | None = None) -> list[dict[str, Any]]:
    """All stored rows (an empty list when the store does not exist yet)."""
    p = _path(path)
    if not p.exists():
        return []
    if p.is_dir():
        raise OutputPathError(f"results store {display_path(p)} is a folder, not a file")
    try:
        rows = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"results store {display_path(p)} is not valid JSON ({e}); delete it to start over") from e
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"results store {display_path(p)} is not a list of rows; delete it to start over")
    return rows


def _check_value(metric: Any, value: Any) -> float:
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric name {metric!r} is not valid; it must be a non-empty str")
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise ValueError(f"metric {metric!r}={value!r} is not valid; it must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"metric {metric!r}={value!r} is not valid; it must be a number") from e
    if not math.isfinite(number):
        shown = "NaN" if math.isnan(number) else f"{number:+}"
        raise ValueError(f"metric {metric!r} is {shown}; refusing to record it (only finite numbers are stored)")
    return number


def _check_text(name: str, value: Any, required: bool = False) -> str:
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{name}={value!r} is not valid; it must be a {'non-empty ' if required else ''}str")
    return value


def record(notebook: str, metrics: Mapping[str, float], *, mode: str, dataset: str, model: str = "", norm: str = "",
           technique: str = "", setting: str = "", seed: int = 0,
           path: os.PathLike | str | None = None) -> None:
    """Upsert one row per metric for this (notebook, mode, dataset, model, norm, technique, setting, seed).

    Returns nothing, so a ``record(...)`` at the end of a notebook cell prints nothing."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; choose 'full' or 'smoke'")
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be a dict of metric name -> number, not {type(metrics).__name__}")
    if not metrics:
        raise ValueError("metrics is empty: nothing to record")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed={seed!r} is not valid; it must be an integer")
    if isinstance(setting, bool) or not isinstance(setting, (str, int, float)):
        raise ValueError(f"setting={setting!r} is not valid; it must be a str (or a number, stored as text)")
    base = dict(notebook=_check_text("notebook", notebook, True), mode=mode,
                dataset=_check_text("dataset", dataset, True), model=_check_text("model", model),
                norm=_check_text("norm", norm), technique=_check_text("technique", technique),
                setting=str(setting), seed=int(seed))
    new = [{**base, "metric": metric, "value": _check_value(metric, value)} for metric, value in metrics.items()]
    upsert(new, path)


def _key(row: Mapping[str, Any]) -> tuple:
    return tuple(row.get(k, "") for k in KEY_FIELDS)


def upsert(rows: Iterable[dict[str, Any]], path: os.PathLike | str | None = None) -> list[dict[str, Any]]:
    """Insert ``rows``, replacing stored rows with the same identity; returns the whole store.

    The load-merge-replace runs under the store's lock, so concurrent writers all keep their rows.
    """
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
        raise ValueError("rows must be an iterable of row dicts (not a single dict or a str)")
    rows = list(rows)
    if not all(isinstance(r, Mapping) for r in rows):
        raise ValueError("rows must be an iterable of row dicts; one of them is not a dict")
    rows = [dict(r) for r in rows]
    for r in rows:
        if "metric" not in r or "value" not in r:
            raise ValueError(f"row {r!r} lacks 'metric' or 'value'; rows need {list(KEY_FIELDS)} and 'value'")
        r["value"] = _check_value(r["metric"], r["value"])
    incoming = {_key(r) for r in rows}
    return _rewrite(_path(path), lambda r: _key(r) in incoming, rows)[0]


def _rewrite(store: Path, drop: Callable[[Mapping[str, Any]], bool],
             add: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Under the store's lock: remove the rows ``drop`` selects, append ``add``, write atomically.

    Returns the new store and how many rows were removed."""
    with _locked(store):
        rows = load_rows(store)
        kept = [r for r in rows if not drop(r)]
        new = kept + (add or [])
        if add is not None or len(kept) != len(rows):  # upsert always writes; forget only when it removed rows
            atomic_write_text(json.dumps(new, indent=1, allow_nan=False), store)
    return new, len(rows) - len(kept)


def forget(notebook: str, *, mode: str, dataset: str, seed: int | None = None,
           path: os.PathLike | str | None = None) -> int:
    """Delete a notebook's rows for one mode and dataset (and ``seed``, when given); returns how many went.

    A notebook whose set of rows can change between runs (notebook 06's deployments) forgets its old rows before
    recording, so the store never mixes two runs; the others only ever overwrite the same rows."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; choose 'full' or 'smoke'")
    _check_text("notebook", notebook, True)
    _check_text("dataset", dataset, True)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed={seed!r} is not valid; it must be an integer or None")

    def gone(r: Mapping[str, Any]) -> bool:
        return (r.get("notebook") == notebook and r.get("mode") == mode and r.get("dataset") == dataset
                and (seed is None or r.get("seed") == seed))

    return _rewrite(_path(path), gone)[1]


def load_results(path: os.PathLike | str | None = None, **filters: Any) -> pd.DataFrame:
    """The store as a DataFrame, optionally filtered by field values (e.g. ``notebook="01"``)."""
    import pandas as pd

    columns = [*KEY_FIELDS, "value"]
    unknown = [k for k in filters if k not in columns]
    if unknown:
        raise ValueError(f"filter {unknown[0]!r} is not a results field; choose from {columns}")
    df = pd.DataFrame(load_rows(path), columns=columns)
    for k, v in filters.items():
        df = df[df[k] == v]
    return df.reset_index(drop=True)


def require_notebooks(store: pd.DataFrame, notebooks: Iterable[str], *, mode: str, dataset: str,
                      path: os.PathLike | str | None = None) -> None:
    """Raise ``LookupError`` naming the notebooks with no rows in ``store`` (already filtered to ``mode`` and
    ``dataset``) and how to produce them: a summary that reads other notebooks' results fails with that sentence
    instead of a ``KeyError`` deep in a table."""
    wanted = list(notebooks)
    missing = [n for n in wanted if store.empty or not (store.notebook == n).any()]
    if missing:
        raise LookupError(f"the results store {display_path(_path(path))} has no {mode}-mode rows for dataset "
                          f"{dataset!r} from notebook(s) {', '.join(missing)}: run them first (e.g. `python -m "
                          f"course_utils.running --only {','.join(missing)}{' --smoke' if mode == 'smoke' else ''}`"
                          f", or the whole series with `make run`), then this notebook again")


def results_table(df: pd.DataFrame, index: list[str] | None = None) -> pd.DataFrame:
    """Pivot tidy rows into one column per metric."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame) or not {"metric", "value"} <= set(df.columns):
        raise ValueError("df must be a DataFrame of tidy rows with 'metric' and 'value' columns (see load_results)")
    index = [index] if isinstance(index, str) else list(index or ["model", "norm", "technique", "setting"])
    missing = [c for c in index if c not in df.columns]
    if not index or missing:
        raise ValueError(f"index={index!r} is not valid; choose one or more of {list(df.columns)}")
    return df.pivot_table(index=index, columns="metric", values="value", aggfunc="mean")
