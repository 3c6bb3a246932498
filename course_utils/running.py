"""Batch execution of the notebook series with papermill (the parameters themselves: :mod:`.params`).

``python -m course_utils.running --smoke`` runs ``notebooks/NN_*.ipynb`` in order (new notebooks that follow the
naming join automatically); the first failing notebook stops the run, naming the notebook and the cell.

* ``-p NAME=VALUE`` goes through :func:`convert`, the rule ``param()`` applies to ``COURSE_<NAME>``, to the type of
  NAME's default in each notebook's ``parameters`` cell (``papermill.inspect_notebook``): ``-p smoke=false`` is
  False, ``-p seed=x`` an error. A name must exist in at least one selected notebook; one that only some declare
  goes to those only (the run says so), so ``-p tau=0.5`` tunes 02 while the whole series runs.
* Everything is checked before the first notebook starts. Problems end the run with one line on stderr: exit 2 for
  bad input, 1 for a notebook or kernel that fails.
* Smoke mode (``--smoke``, ``-p smoke=true``/``1`` or ``COURSE_SMOKE=1``) writes figures and results beside the
  executed notebooks (``runs/smoke/``), never into the repository's ``figures/`` or ``results/``.
* Kernels talk over IPC sockets (:mod:`.kernels`): no loopback interface needed, no "TCP without encryption" warning.
* SIGTERM and SIGHUP (a scheduler, ``timeout``, a closed terminal) are handled like Ctrl-C: the kernel and every
  process it started (its training workers) are ended, a half-written executed notebook is removed, and the run
  exits with 128 + the signal (143 for SIGTERM). Before, the runner died alone and the kernel trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from . import paths
from .params import (
    ENV_PREFIX,
    OUTPUT_PARAMETERS,
    RunnerError,
    convert,
    notebook_parameters,
    param,
    parse_parameters,
    typed_parameters,
)
from .paths import REPO_ROOT, check_path, configure_outputs, display_path
from .storage import (
    OutputPathError,
    Terminated,
    atomic_write_text,
    end_processes,
    ensure_writable_dir,
    ensure_writable_file,
    terminate_on_signals,
)

__all__ = ["ENV_PREFIX", "OUTPUT_PARAMETERS", "RunnerError", "configure_outputs", "convert", "discover", "main",
           "notebook_parameters", "param", "parse_parameters", "run_series", "typed_parameters"]

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
#: Seconds a kernel and its workers get to end on SIGTERM (removing their temporary files) before SIGKILL.
KERNEL_GRACE = 5.0


def discover(notebooks_dir: os.PathLike | str = REPO_ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks of the series, in order (empty when the folder does not exist)."""
    return sorted(check_path("notebooks_dir", notebooks_dir).glob(NOTEBOOK_GLOB))


def select(notebooks: list[Path], only: str) -> list[Path]:
    """The notebooks whose numbers ``only`` lists (e.g. ``"01,3"``), in series order; ``RunnerError`` naming any
    entry that is not a number or not in the series."""
    if not isinstance(only, str):
        raise ValueError(f"only={only!r} is not valid; it must be a str of notebook numbers such as '01,02'")
    series = list(dict.fromkeys(nb.name[:2] for nb in notebooks))
    items = [s.strip() for s in only.split(",") if s.strip()]
    bad = [s for s in items if not (s.isdigit() and len(s) <= 2)]
    if bad or not items:
        raise RunnerError(f"--only {','.join(bad) or repr(only)}: not a notebook number (use e.g. --only 01,02); "
                          f"the series is {', '.join(series)}")
    missing = [s.zfill(2) for s in items if s.zfill(2) not in series]
    if missing:
        raise RunnerError(f"--only {','.join(missing)}: no notebook {', '.join(missing)} in the series "
                          f"({', '.join(series)})")
    return [nb for nb in notebooks if nb.name[:2] in {s.zfill(2) for s in items}]


@dataclass
class Plan:
    """Everything a run needs, checked: nothing in it can fail for a reason known in advance."""

    notebooks: list[Path]
    parameters: dict[str, dict[str, Any]]  # notebook file name -> injected parameters
    smoke: bool
    smoke_source: str  # what asked for smoke mode ("" in full mode)
    output_dir: Path
    environment: dict[str, str]  # exported to every kernel
    kernel: str = "python3"
    timeout: int | None = None
    notes: list[str] = field(default_factory=list)


def _smoke(flag: bool, raw: Mapping[str, str], typed: Mapping[Path, Mapping[str, Any]]) -> tuple[bool, str]:
    """Whether this is a smoke run, and what asked for it (``-p smoke`` beats ``COURSE_SMOKE``)."""
    if "smoke" in raw:
        asked = any(bool(v["smoke"]) for v in typed.values() if "smoke" in v)
        if flag and not asked:
            raise RunnerError(f"--smoke and -p smoke={raw['smoke']} contradict each other; give only one")
        return asked, f"-p smoke={raw['smoke']}"
    if flag:
        return True, "--smoke"
    try:
        from_env = param("smoke", False)
    except ValueError as e:
        raise RunnerError(str(e)) from None
    return from_env, f"{ENV_PREFIX}SMOKE={os.environ.get(ENV_PREFIX + 'SMOKE')}" if from_env else ""


def _outputs(smoke: bool, output_dir: Path, typed: Mapping[Path, Mapping[str, Any]]) -> dict[str, str]:
    """Figures, results and checkpoint locations of the run, checked writable, as the kernels' environment."""
    given = {n: str(v[n]) for v in typed.values() for n in OUTPUT_PARAMETERS if v.get(n)}
    try:
        where = paths.run_locations(smoke, output_dir, given)
    except ValueError as e:
        raise RunnerError(str(e)) from None
    for name, (path, source) in where.items():
        try:
            if name == "results_path":
                ensure_writable_file(path, "results store")
            else:
                ensure_writable_dir(path, f"{name.split('_')[0]} folder")
        except OutputPathError as e:
            raise RunnerError(f"{source}: {e}" if source else str(e)) from None
    return {OUTPUT_PARAMETERS[name]: str(path) for name, (path, _) in where.items()}


def build_plan(args: argparse.Namespace) -> Plan:
    """Check every input and location of a run and return its ``Plan``; ``RunnerError`` for the first problem."""
    from jupyter_client.kernelspec import KernelSpecManager

    nb_dir = Path(args.notebooks_dir)
    if not nb_dir.is_dir():
        raise RunnerError(f"--notebooks-dir {display_path(nb_dir)} "
                          f"{'is a file, not a folder' if nb_dir.exists() else 'does not exist'}")
    if not (series := discover(nb_dir)):
        raise RunnerError(f"--notebooks-dir {display_path(nb_dir)}: no notebooks named {NOTEBOOK_GLOB} in it")
    notebooks = select(series, args.only) if args.only.strip() else series
    if args.timeout is not None and args.timeout <= 0:
        raise RunnerError(f"--timeout {args.timeout}: must be a positive number of seconds per cell")
    if args.kernel not in (kernels := KernelSpecManager().find_kernel_specs()):
        raise RunnerError(f"--kernel {args.kernel}: no such Jupyter kernel; installed: {', '.join(sorted(kernels))}")
    specs = {nb: notebook_parameters(nb) for nb in notebooks}
    raw = parse_parameters(args.parameter, dict.fromkeys(n for spec in specs.values() for n in spec))
    nobody = "no notebook" if len(notebooks) == len(series) else \
        f"no selected notebook ({', '.join(nb.name[:2] for nb in notebooks)})"
    typed = typed_parameters(raw, specs, nobody)
    smoke, source = _smoke(args.smoke, raw, typed)
    for nb, spec in specs.items():
        if "smoke" in spec:
            typed[nb].setdefault("smoke", smoke)
    output_dir = Path(args.output_dir or REPO_ROOT / "runs" / ("smoke" if smoke else "full")).expanduser().resolve()
    try:
        ensure_writable_dir(output_dir, "--output-dir")
    except OutputPathError as e:
        raise RunnerError(str(e)) from None
    env = {"COURSE_SMOKE": "1" if smoke else "0", **_outputs(smoke, output_dir, typed)}
    if smoke:  # the deprecation canary (notebook.install_deprecation_canary): a deprecation fails the smoke series
        env["COURSE_DEPRECATIONS"] = "error"
    notes = [f"-p {name} only goes to {', '.join(nb.name[:2] for nb in notebooks if name in typed[nb])} "
             f"(the others have no such parameter)" for name in raw if not all(name in typed[nb] for nb in notebooks)]
    return Plan(notebooks, {nb.name: typed[nb] for nb in notebooks}, smoke, source, output_dir, env,
                args.kernel, args.timeout, notes)


def _fail(message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(1)


def _brief(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _open_kernel(km: Any, nb: Path, env: Mapping[str, str]) -> list[Any]:
    """Start ``km``'s kernel for ``nb``; returns the list that will hold the clients nbclient makes, which it leaves
    open for a kernel it did not start (the runner closes them)."""
    clients: list[Any] = []
    factory = km.client

    def client(**kw: Any) -> Any:
        clients.append(factory(**kw))
        return clients[-1]

    km.client, km.client_class = client, "jupyter_client.asynchronous.AsyncKernelClient"  # nbclient awaits it
    km.start_kernel(cwd=str(nb.parent), env=dict(env), extra_arguments=["--HistoryManager.hist_file=:memory:"])
    return clients


def _run_notebook(nb: Path, out: Path, parameters: Mapping[str, Any], kernel_name: str = "python3",
                  timeout: int | None = None, environment: Mapping[str, str] | None = None) -> None:
    """Execute ``nb`` into ``out`` with papermill in a fresh IPC kernel; ``SystemExit(1)`` with one line on stderr
    if the kernel cannot start or dies, or a cell fails."""
    import papermill as pm

    from .kernels import kernel_manager

    with kernel_manager(kernel_name) as km:
        clients: list[Any] = []
        try:
            try:
                clients = _open_kernel(km, nb, {**os.environ, **(environment or {})})
            except Exception as e:  # noqa: BLE001 - a missing executable, a bad kernelspec, a full disk...
                _fail(f"FAILED: {nb.name}: the Jupyter kernel {kernel_name!r} could not start ({_brief(e)})")
            try:
                pm.execute_notebook(str(nb), str(out), parameters=dict(parameters), kernel_name=kernel_name, km=km,
                                    progress_bar=sys.stderr.isatty(), execution_timeout=timeout)
            except pm.PapermillExecutionError as e:
                evalue = (str(e.evalue).strip().splitlines() or [""])[0]
                _fail(f"FAILED: {nb.name}, cell {e.cell_index} (execution count {e.exec_count}): {e.ename}: "
                      f"{evalue} -- the executed notebook with the error is {display_path(out)}")
            except Exception as e:  # noqa: BLE001 - the kernel died, a timeout, an unwritable output...
                _fail(f"FAILED: {nb.name}: {'the run failed' if km.is_alive() else 'the kernel died'} "
                      f"({_brief(e)})")
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (``finally`` ends the kernel and all it started)
            _drop_if_partial(out)
            raise
        finally:
            for kc in clients:
                kc.stop_channels()
            _end_kernel(km)


def _end_kernel(km: Any) -> None:
    """End ``km``'s kernel and every process it started, also those in another process group or session
    (``shutdown_kernel(now=True)`` only SIGKILLs the kernel's group, with no time to remove temporary files)."""
    if not km.has_kernel:
        return
    pid = getattr(getattr(km, "provisioner", None), "pid", None)
    if pid:
        end_processes([pid], grace=KERNEL_GRACE)
    km.shutdown_kernel(now=True)  # closes its sockets and connection file; nothing left to kill


def _drop_if_partial(out: Path) -> None:
    """Remove the executed notebook if an interruption left it half-written (papermill writes it in place)."""
    try:
        json.loads(out.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        out.unlink(missing_ok=True)


def run_series(notebooks: list[Path], output_dir: Path, parameters: Mapping[str, Any], kernel_name: str = "python3",
               timeout: int | None = None, *, per_notebook: Mapping[str, Mapping[str, Any]] | None = None,
               environment: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Execute ``notebooks`` in order, each in a fresh IPC kernel, stopping at the first failure; ``per_notebook`` adds
    parameters by notebook file name, ``environment`` variables for the kernels. Returns the timings."""
    if not isinstance(kernel_name, str) or not kernel_name.strip():
        raise ValueError(f"kernel_name={kernel_name!r} is not valid; it must be a kernel name such as 'python3'")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        raise ValueError(f"timeout={timeout!r} is not valid; it must be a positive int (seconds per cell) or None")
    if not isinstance(parameters, Mapping) or any(not isinstance(nb, Path) for nb in notebooks):
        raise ValueError("notebooks must be a list of Paths and parameters a dict of name -> value")
    output_dir = ensure_writable_dir(output_dir, "output folder")  # OutputPathError naming it (main checked it)
    log = logging.getLogger("papermill")  # nbclient logs failures there too; the runner's one line says it all
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    timings: list[dict[str, Any]] = []
    for i, nb in enumerate(notebooks, 1):
        out = output_dir / nb.name
        print(f"[{i}/{len(notebooks)}] {nb.name} -> {display_path(out)}", flush=True)
        start = time.perf_counter()
        _run_notebook(nb, out, {**parameters, **(per_notebook or {}).get(nb.name, {})}, kernel_name, timeout,
                     environment)
        timings.append({"notebook": nb.name, "seconds": round(time.perf_counter() - start, 1)})
        print(f"    done in {timings[-1]['seconds']:.0f} s", flush=True)
    return timings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``course-run``."""
    ap = argparse.ArgumentParser(prog="course-run", description="Run the notebook series in batch with papermill.")
    ap.add_argument("--smoke", action="store_true", help="tiny data and 1 epoch: a fast end-to-end check")
    ap.add_argument("--notebooks-dir", type=Path, default=REPO_ROOT / "notebooks")
    ap.add_argument("--output-dir", type=Path, default=None, help="executed notebooks (default runs/full, runs/smoke)")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers to run, e.g. 01,02")
    ap.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                    help="notebook parameter, typed like the notebook's default, e.g. -p seed=1 (repeatable)")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: this environment's)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``course-run`` / ``python -m course_utils.running``)."""
    try:
        plan = build_plan(parse_args(argv))
    except RunnerError as e:
        print(f"course-run: error: {e}", file=sys.stderr, flush=True)
        return 2
    shown = {k: v for params in plan.parameters.values() for k, v in params.items()}
    asked = f" (asked by {plan.smoke_source})" if plan.smoke_source else ""
    print(f"Running {len(plan.notebooks)} notebook(s) in {'smoke' if plan.smoke else 'full'} mode{asked} "
          f"with parameters {shown}", flush=True)
    for note in plan.notes:
        print(f"  note: {note}", flush=True)
    start = time.perf_counter()
    with terminate_on_signals():  # SIGTERM/SIGHUP: the kernel and its workers end too, as on Ctrl-C
        try:
            timings = run_series(plan.notebooks, plan.output_dir, {}, plan.kernel, plan.timeout,
                                 per_notebook=plan.parameters, environment=plan.environment)
        except KeyboardInterrupt as e:
            # the interrupted cell's task finds the kernel gone; asyncio would print that as a traceback at exit
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            how = str(e) if isinstance(e, Terminated) else "interrupted"
            print(f"course-run: {how}: the kernel and the processes it started are ended; notebooks executed so "
                  f"far are in {display_path(plan.output_dir)}/", file=sys.stderr, flush=True)
            return e.exit_status if isinstance(e, Terminated) else 130
    atomic_write_text(json.dumps(timings, indent=1), plan.output_dir / "timings.json")
    env = {k.removeprefix(ENV_PREFIX): display_path(v) for k, v in plan.environment.items() if k != "COURSE_SMOKE"}
    print(f"\nAll {len(plan.notebooks)} notebook(s) ran in {time.perf_counter() - start:.0f} s.")
    print(f"  executed notebooks: {display_path(plan.output_dir)}/")
    print(f"  figures:            {env['FIGURES_DIR']}/")
    print(f"  results store:      {env['RESULTS_PATH']}")
    print(f"  checkpoints:        {env['CHECKPOINT_DIR']}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
