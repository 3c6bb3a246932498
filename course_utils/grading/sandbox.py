"""What the grader can do on this machine to keep a student's code in its box, decided once per process.

Levels, best first (``probe`` picks the best that works and says what is missing):

* ``unshare --net --mount --pid --fork`` as root, the kernel run as an unprivileged uid of its own: no network, and
  a new root file system built from an allow-list (:func:`mount_plan`): the system folders (``/usr``, ``/etc``, the
  ``/bin``, ``/lib``... links), the Python installation and ``course_utils``, all read-only; a fresh ``/proc`` (the
  box's own processes), a read-only ``/sys``, a minimal ``/dev`` and private ``/tmp``, ``/var/tmp`` and
  ``/dev/shm``, in which the kernel's working folder lives. Nothing else of the host's file system (the repository,
  the home folders, the submissions, any copy of the instructor's notebooks anywhere) exists in the box. The whole
  box is killed with its namespace's first process.
* the same namespaces inside a user namespace (``unshare --user --map-root-user``) when not root: a deny-list
  instead, the repository, the home folders, the instructor's notebooks, the submissions and the output folder
  hidden under empty tmpfs mounts (``course_utils`` and the Python installation mounted back, read-only); the kernel
  keeps the grading user's rights on the rest of the file system.
* no namespaces at all: only resource limits, a fresh folder and a clean environment (a warning says so).
"""

from __future__ import annotations

import functools
import grp
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..paths import REPO_ROOT

#: Mounted over with an empty tmpfs in every box (besides the repository and the grading run's own folders).
HOME_FOLDERS = ("/root", "/home")
#: Folders a box must never hide (the system the kernel runs on), nor any of their ancestors.
SYSTEM = ("/", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/dev", "/proc", "/sys", "/var", "/run", "/opt")
#: World-writable places replaced by private tmpfs mounts inside a box.
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
#: The host's system folders in an allow-list box, read-only (a symbolic link, such as ``/bin -> usr/bin``, is copied
#: as a link). Anything else the kernel needs is added by :func:`allowed_paths`.
ALLOWED_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Device nodes of an allow-list box's /dev (bound from the host's).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: Kernels run as uid BOX_UID + slot (one slot per box running at the same time): an unprivileged uid of their own,
#: so the per-user process limit of one student's box cannot be used up by another's fork bomb.
BOX_UID = 1_900_000_000
NOGROUP = "nogroup"


@dataclass(frozen=True)
class Sandbox:
    """How workers are started: the command prefix and which protections the worker must set up."""

    prefix: tuple[str, ...] = ()
    mounts: bool = False  # the worker hides folders under tmpfs (needs a mount namespace)
    pid_namespace: bool = False  # killing the worker kills everything it started
    user: tuple[int, int] | None = None  # uid, gid the kernel runs as
    protections: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return "; ".join(self.protections) if self.protections else "none"


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command + ["true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _unprivileged_group() -> int:
    try:
        return grp.getgrnam(NOGROUP).gr_gid
    except KeyError:
        return 65534


@functools.lru_cache(maxsize=4)
def probe(enabled: bool = True) -> Sandbox:
    """The best sandbox this machine allows (``enabled=False``: none, for debugging the grader itself)."""
    if not enabled:
        return Sandbox(warnings=("sandbox disabled: student code runs with the grader's rights and network",))
    unshare = shutil.which("unshare")
    if os.name != "posix" or unshare is None:
        return Sandbox(warnings=("no 'unshare' on this machine: student code can reach the network and read "
                                 "every file the grading user can; grade as root on Linux for full isolation",))
    spaces = [unshare, "--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private"]
    root = os.geteuid() == 0
    if root and _works(spaces):
        return Sandbox(tuple(spaces), True, True, (BOX_UID, _unprivileged_group()),
                       ("no network (network namespace)", "a root file system of its own with only the system "
                        "folders, Python and course_utils (read-only) and a private /tmp (mount namespace)",
                        "whole box killed at once (pid namespace)",
                        f"kernel runs as an unprivileged uid of its own ({BOX_UID}+slot, group {NOGROUP})",
                        "memory, file-size and process limits"))
    rootless = [unshare, "--user", "--map-root-user", *spaces[1:]]
    if _works(rootless):
        return Sandbox(tuple(rootless), True, True, None,
                       ("no network (network namespace)", "private /tmp and hidden repository, home folders, "
                        "notebooks, submissions and output (mount namespace in a user namespace)",
                        "whole box killed at once (pid namespace)", "memory and file-size limits"),
                       ("not root: the kernel keeps the grading user's write access outside the hidden folders",))
    if _works([unshare, "--user", "--map-root-user", "--net"]):
        return Sandbox((unshare, "--user", "--map-root-user", "--net"), False, False, None,
                       ("no network (network namespace)", "memory and file-size limits"),
                       ("no mount namespace: student code can read the instructor's notebooks if it guesses "
                        "their path",))
    return Sandbox(warnings=("'unshare' is not permitted here: student code can reach the network and read every "
                             "file the grading user can; grade as root on Linux for full isolation",))


def _is_system(path: Path) -> bool:
    return any(path == Path(s) or path in Path(s).parents for s in SYSTEM)


def _outermost(paths: set[Path]) -> list[Path]:
    """``paths`` without those inside another, shortest first."""
    ordered = sorted(paths, key=lambda p: (len(p.parts), str(p)))
    kept: list[Path] = []
    for path in ordered:
        if not any(k == path or k in path.parents for k in kept):
            kept.append(path)
    return kept


def allowed_paths() -> list[tuple[str, str]]:
    """``(source, target)`` folders bound read-only into an allow-list box besides :data:`ALLOWED_SYSTEM`: the Python
    installation (``sys.prefix`` and ``sys.base_prefix``, which may live in a home folder), the course package (an
    editable install points into the repository: only the package folder, never the repository) and the folders of
    ``LD_LIBRARY_PATH`` (the kernel inherits it). Each is bound at its own path and, when that differs, at the path
    it resolves to, so symbolic links into it keep working."""
    import course_utils

    wanted: dict[Path, Path] = {}
    folders = [Path(course_utils.__file__).parent, Path(sys.prefix), Path(sys.base_prefix)]
    folders += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if os.path.isabs(p)]
    for folder in folders:
        if folder.is_dir():
            real = folder.resolve()
            wanted.setdefault(Path(os.path.abspath(folder)), real)
            wanted.setdefault(real, real)
    system = {Path(s) for s in ALLOWED_SYSTEM}
    targets = [t for t in _outermost(set(wanted)) if not any(s == t or s in t.parents for s in system)
               and t != Path("/")]
    return [(str(wanted[t]), str(t)) for t in targets]


def mount_plan(extra_hidden: list[os.PathLike | str]) -> dict[str, Any]:
    """The worker's mount plan.

    As root (the kernel runs as an uid of its own): ``{"root": {...}}``, a new root built from an allow-list
    (``system``: :data:`ALLOWED_SYSTEM` folders, ``keep``: :func:`allowed_paths`, ``devices``: :data:`DEVICES`,
    ``scratch``: private tmpfs folders); ``extra_hidden`` needs no mention, it is simply not there.

    Otherwise (in a user namespace, see :func:`probe`), ``{"scratch": [...], "hide": [...], "keep": [...]}``: the
    deny-list: world-writable folders to replace by private tmpfs mounts, folders to cover with an empty read-only
    tmpfs (outermost first), and the folders inside those to mount back read-only (the course package and the
    Python installation)."""
    if probe().user is not None:
        return {"root": {"system": [s for s in ALLOWED_SYSTEM if os.path.lexists(s)], "keep": allowed_paths(),
                         "devices": [d for d in DEVICES if os.path.exists(f"/dev/{d}")],
                         "scratch": ["/tmp", "/var/tmp", "/dev/shm"]}}
    return _deny_plan(extra_hidden)


def _deny_plan(extra_hidden: list[os.PathLike | str]) -> dict[str, list[str]]:
    import course_utils

    keep = {Path(course_utils.__file__).resolve().parent, Path(sys.prefix).resolve(),
            Path(sys.base_prefix).resolve()}
    scratch = [Path(s) for s in SCRATCH]
    candidates = [REPO_ROOT, *map(Path, HOME_FOLDERS), Path.home(), *map(Path, extra_hidden)]
    hide: list[Path] = []
    for path in sorted({Path(p).expanduser().resolve() for p in candidates}, key=lambda p: len(p.parts)):
        covered = any(c == path or c in path.parents for c in hide + scratch)
        kept = any(k == path or k in path.parents for k in keep)
        if not (_is_system(path) or covered or kept):
            hide.append(path)
    back = sorted({k for k in keep if any(c in k.parents for c in hide + scratch)}, key=lambda p: len(p.parts))
    return {"scratch": list(SCRATCH), "hide": [str(p) for p in hide], "keep": [str(p) for p in back]}


def kernel_environment(workdir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's whole environment: nothing inherited but the search path, every course output and every
    cache inside ``workdir``, grading and smoke mode on, one thread per library (jobs run side by side)."""
    w = Path(workdir)
    env = {
        "PATH": os.pathsep.join([str(Path(sys.prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(w), "TMPDIR": str(w / "tmp"), "USER": "student",
        "LOGNAME": "student",
        "IPYTHONDIR": str(w / ".ipython"), "MPLCONFIGDIR": str(w / ".matplotlib"), "XDG_CACHE_HOME": str(w / ".cache"),
        "JUPYTER_RUNTIME_DIR": str(w / ".jupyter" / "runtime"), "JUPYTER_DATA_DIR": str(w / ".jupyter" / "data"),
        "JUPYTER_CONFIG_DIR": str(w / ".jupyter" / "config"), "TORCH_HOME": str(w / ".torch"),
        "COURSE_GRADING": "1", "COURSE_SMOKE": "1", "COURSE_FIGURES_DIR": str(w / "figures"),
        "COURSE_RESULTS_PATH": str(w / "results.json"), "COURSE_CHECKPOINT_DIR": str(w / "checkpoints"),
        "COURSE_DATA_DIR": str(w / "data"), "MPLBACKEND": "Agg", "TQDM_DISABLE": "1",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
        "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    if os.environ.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    env.update(extra or {})
    return env


def worker_environment() -> dict[str, str]:
    """The worker's environment: the grader's, minus anything that would point the kernel somewhere else."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("COURSE_", "JUPYTER_", "IPYTHON", "PYTHONSTARTUP", "MPL"))}
