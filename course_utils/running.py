"""Batch execution of the notebook series with papermill, and the parameters every notebook reads.

``python -m course_utils.running --smoke`` runs ``notebooks/NN_*.ipynb`` in order; new notebooks that
follow the naming join the series automatically. The first failing notebook stops the run, naming the
notebook and the cell.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from .paths import REPO_ROOT, relative

T = TypeVar("T")
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
ENV_PREFIX = "COURSE_"


def param(name: str, default: T) -> T:
    """A notebook parameter: ``COURSE_<NAME>`` from the environment (so nbval runs can set it) or ``default``.

    The value is converted to the type of ``default`` (booleans accept 1/0/true/false/yes/no).
    """
    raw = os.environ.get(ENV_PREFIX + name.upper())
    if raw is None:
        return default
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True  # type: ignore[return-value]
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False  # type: ignore[return-value]
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean; use 1/0, true/false or yes/no")
    if default is None:
        return _literal(raw)  # type: ignore[return-value]
    try:
        return type(default)(raw)  # type: ignore[call-arg]
    except ValueError as e:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type(default).__name__}") from e


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def discover(notebooks_dir: os.PathLike | str = REPO_ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks of the series, in order."""
    return sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))


def parse_parameters(items: list[str]) -> dict[str, Any]:
    """``["epochs=3", "dataset=digits"]`` -> ``{"epochs": 3, "dataset": "digits"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"parameter {item!r} is not of the form name=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _literal(v.strip())
    return out


def run_series(notebooks: list[Path], output_dir: Path, parameters: dict[str, Any],
               kernel_name: str = "python3", timeout: int | None = None) -> list[dict[str, Any]]:
    """Execute ``notebooks`` in order with papermill; raises ``SystemExit(1)`` at the first failure."""
    import papermill as pm

    output_dir.mkdir(parents=True, exist_ok=True)
    timings: list[dict[str, Any]] = []
    for i, nb in enumerate(notebooks, 1):
        out = output_dir / nb.name
        print(f"[{i}/{len(notebooks)}] {nb.name} -> {relative(out)}", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=parameters, kernel_name=kernel_name,
                                cwd=str(nb.parent), progress_bar=sys.stderr.isatty(),
                                execution_timeout=timeout)
        except pm.PapermillExecutionError as e:
            print(f"\nFAILED: {nb.name}, cell {e.cell_index} (execution count {e.exec_count}): "
                  f"{e.ename}: {e.evalue}\nThe executed notebook with the error is {relative(out)}.",
                  file=sys.stderr)
            raise SystemExit(1) from None
        seconds = time.perf_counter() - start
        timings.append({"notebook": nb.name, "seconds": round(seconds, 1)})
        print(f"    done in {seconds:.0f} s", flush=True)
    return timings


def configure_outputs(figures_dir: str = "", results_path: str = "", checkpoint_dir: str = "") -> None:
    """Point this kernel's figures/results/checkpoints at the given paths (empty: keep the defaults)."""
    for env, value in (("COURSE_FIGURES_DIR", figures_dir), ("COURSE_RESULTS_PATH", results_path),
                       ("COURSE_CHECKPOINT_DIR", checkpoint_dir)):
        if value:
            os.environ[env] = str(value)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``course-run`` / ``python -m course_utils.running``)."""
    ap = argparse.ArgumentParser(description="Run the notebook series in batch with papermill.")
    ap.add_argument("--smoke", action="store_true", help="tiny data and 1 epoch: a fast end-to-end check")
    ap.add_argument("--notebooks-dir", type=Path, default=REPO_ROOT / "notebooks")
    ap.add_argument("--output-dir", type=Path, default=None,
                    help="executed notebooks (default runs/full or runs/smoke)")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers to run, e.g. 01,02")
    ap.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                    help="notebook parameter, e.g. -p seed=1 -p dataset=digits (repeatable)")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: this environment's)")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)

    mode = "smoke" if args.smoke else "full"
    output_dir = args.output_dir or REPO_ROOT / "runs" / mode
    notebooks = discover(args.notebooks_dir)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        notebooks = [nb for nb in notebooks if nb.name[:2] in wanted]
    if not notebooks:
        print(f"no notebooks matching {NOTEBOOK_GLOB} in {relative(args.notebooks_dir)}", file=sys.stderr)
        return 2
    parameters = {"smoke": args.smoke, **parse_parameters(args.parameter)}
    if args.smoke:
        # smoke artefacts stay beside the executed notebooks, away from the full run's figures and results
        os.environ.setdefault("COURSE_FIGURES_DIR", str(output_dir / "figures"))
        os.environ.setdefault("COURSE_RESULTS_PATH", str(output_dir / "results.json"))
    print(f"Running {len(notebooks)} notebook(s) in {mode} mode with parameters {parameters}", flush=True)
    start = time.perf_counter()
    timings = run_series(notebooks, output_dir, parameters, args.kernel, args.timeout)
    (output_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    from .paths import checkpoint_dir, figures_dir, results_path

    print(f"\nAll {len(notebooks)} notebook(s) ran in {time.perf_counter() - start:.0f} s.")
    print(f"  executed notebooks: {relative(output_dir)}/")
    print(f"  figures:            {relative(figures_dir())}/")
    print(f"  results store:      {relative(results_path())}")
    print(f"  checkpoints:        {relative(checkpoint_dir())}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

