"""Where the course reads and writes: data, checkpoints, results and figures.

Every location can be moved with an environment variable so papermill/nbval/CI runs stay isolated.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root (the folder holding ``course_utils/``).
REPO_ROOT = Path(__file__).resolve().parents[1]


def _dir(env: str, default: Path) -> Path:
    return Path(os.environ.get(env, default))


def data_dir() -> Path:
    """Root for torchvision downloads (``COURSE_DATA_DIR``, default ``data/``)."""
    return _dir("COURSE_DATA_DIR", REPO_ROOT / "data")


def checkpoint_dir() -> Path:
    """Trained weights shared between notebooks (``COURSE_CHECKPOINT_DIR``, default ``checkpoints/``)."""
    return _dir("COURSE_CHECKPOINT_DIR", REPO_ROOT / "checkpoints")


def results_path() -> Path:
    """The results store (``COURSE_RESULTS_PATH``, default ``results/results.json``)."""
    return _dir("COURSE_RESULTS_PATH", REPO_ROOT / "results" / "results.json")


def figures_dir() -> Path:
    """Saved plots (``COURSE_FIGURES_DIR``, default ``figures/``)."""
    return _dir("COURSE_FIGURES_DIR", REPO_ROOT / "figures")


def relative(path: os.PathLike | str) -> str:
    """``path`` relative to the repository when inside it (keeps machine paths out of notebook outputs)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(REPO_ROOT))
    except ValueError:
        return p.name if p.is_absolute() else str(path)
