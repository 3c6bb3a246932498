"""Where the course reads and writes: data, checkpoints, results and figures.

Every location can be moved with an environment variable so papermill/nbval/CI runs stay isolated. Smoke mode
(``COURSE_SMOKE=1``) never defaults to the repository's committed ``figures/`` or to ``results/results.json``: its
figures and results go to ``runs/smoke/`` unless a variable says otherwise, so a quick check cannot overwrite them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: Repository root (the folder holding ``course_utils/``).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The repository's own output locations (full mode); smoke runs must never write there.
REPO_FIGURES = REPO_ROOT / "figures"
REPO_RESULTS = REPO_ROOT / "results" / "results.json"
SMOKE_OUTPUTS = REPO_ROOT / "runs" / "smoke"
_TRUE = ("1", "true", "yes", "on")
#: Each output location's notebook parameter and environment variable.
OUTPUT_VARIABLES = {"figures_dir": "COURSE_FIGURES_DIR", "results_path": "COURSE_RESULTS_PATH",
                    "checkpoint_dir": "COURSE_CHECKPOINT_DIR"}


def check_path(name: str, value: object, optional: bool = False) -> Path | None:
    """``value`` as a ``Path`` if it is a non-empty ``str`` or ``os.PathLike`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and str(os.fspath(value)).strip():
        return Path(value)
    allowed = "a non-empty str or os.PathLike" + (" or None" if optional else "")
    raise ValueError(f"{name}={value!r} is not valid; it must be {allowed}")


def _env_path(env: str, default: Path) -> Path:
    value = os.environ.get(env, "").strip()  # an empty variable means "the default", never the current folder
    return Path(value).expanduser() if value else default


def _smoke(smoke: bool | None) -> bool:
    if smoke is not None and not isinstance(smoke, bool):
        raise ValueError(f"smoke={smoke!r} is not valid; it must be True, False or None (read COURSE_SMOKE)")
    return smoke_from_environment() if smoke is None else smoke


def smoke_from_environment() -> bool:
    """Whether ``COURSE_SMOKE`` asks for smoke mode (1/true/yes/on); anything else counts as full mode here."""
    return os.environ.get("COURSE_SMOKE", "").strip().lower() in _TRUE


def data_dir() -> Path:
    """Root for torchvision downloads (``COURSE_DATA_DIR``, default ``data/``)."""
    return _env_path("COURSE_DATA_DIR", REPO_ROOT / "data")


def checkpoint_dir() -> Path:
    """Trained weights shared between notebooks (``COURSE_CHECKPOINT_DIR``, default ``checkpoints/``)."""
    return _env_path("COURSE_CHECKPOINT_DIR", REPO_ROOT / "checkpoints")


def checkpoint_path(name: str, directory: os.PathLike | str | None = None) -> Path:
    """Where ``train_or_load`` keeps the checkpoint ``name``: ``<directory or checkpoint_dir()>/<name>.pt``."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"name={name!r} is not valid; it must be a non-empty file stem without / or \\")
    folder = check_path("directory", directory, optional=True)
    return (folder if folder is not None else checkpoint_dir()) / f"{name}.pt"


def results_path(smoke: bool | None = None) -> Path:
    """The results store (``COURSE_RESULTS_PATH``; default ``results/results.json``, smoke ``runs/smoke/``).

    ``smoke=None`` reads ``COURSE_SMOKE``.
    """
    return _env_path("COURSE_RESULTS_PATH", SMOKE_OUTPUTS / "results.json" if _smoke(smoke) else REPO_RESULTS)


def figures_dir(smoke: bool | None = None) -> Path:
    """Saved plots (``COURSE_FIGURES_DIR``; default ``figures/``, smoke ``runs/smoke/figures/``).

    ``smoke=None`` reads ``COURSE_SMOKE``.
    """
    return _env_path("COURSE_FIGURES_DIR", SMOKE_OUTPUTS / "figures" if _smoke(smoke) else REPO_FIGURES)


def is_repository_output(path: os.PathLike | str) -> bool:
    """Whether ``path`` is the repository's committed ``figures/`` or its results store (or inside figures/)."""
    p = Path(check_path("path", path)).expanduser().resolve()
    return p == REPO_RESULTS.resolve() or p == REPO_FIGURES.resolve() or REPO_FIGURES.resolve() in p.parents


def relative(path: os.PathLike | str) -> str:
    """``path`` relative to the repository when inside it (keeps machine paths out of notebook outputs)."""
    p = Path(check_path("path", path)).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return p.name if p.is_absolute() else str(path)


def display_path(path: os.PathLike | str) -> str:
    """``path`` for an error message: relative to the repository when inside it, else as given, so the user can
    find it (error messages never end up in committed outputs)."""
    p = Path(check_path("path", path))
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def run_locations(smoke: bool, output_dir: os.PathLike | str,
                  given: Mapping[str, str] | None = None) -> dict[str, tuple[Path, str]]:
    """Where a batch run writes: ``{parameter: (absolute path, what chose it or "")}`` for figures, results and
    checkpoints. ``given`` (the runner's ``-p``) beats the environment, which beats the defaults; a smoke run's
    defaults lie in ``output_dir``, and asking a smoke run to write into the repository's outputs is a ValueError."""
    out = Path(check_path("output_dir", output_dir))
    if not isinstance(smoke, bool) or not isinstance(given or {}, Mapping):
        raise ValueError(f"smoke must be True or False and given a dict of parameter -> path, not {smoke!r}/{given!r}")
    defaults = {"figures_dir": out / "figures" if smoke else REPO_FIGURES,
                "results_path": out / "results.json" if smoke else REPO_RESULTS,
                "checkpoint_dir": REPO_ROOT / "checkpoints"}
    locations = {}
    for name, var in OUTPUT_VARIABLES.items():
        value, source = str((given or {}).get(name, "")).strip(), f"-p {name}"
        if not value:
            value, source = os.environ.get(var, "").strip(), var
        path = Path(value or defaults[name]).expanduser().resolve()
        if smoke and value and name != "checkpoint_dir" and is_repository_output(path):
            raise ValueError(f"{source}={value}: a smoke run never writes into the repository's {relative(path)}; "
                             f"unset it or choose another place")
        locations[name] = (path, source if value else "")
    return locations


def configure_outputs(figures_dir: str = "", results_path: str = "", checkpoint_dir: str = "") -> None:
    """Point this kernel's figures/results/checkpoints at the given paths (empty: keep the defaults)."""
    for name, value in (("figures_dir", figures_dir), ("results_path", results_path),
                        ("checkpoint_dir", checkpoint_dir)):
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{name}={value!r} is not valid; it must be a path or ''")
        if str(value).strip():
            os.environ[OUTPUT_VARIABLES[name]] = str(value)
