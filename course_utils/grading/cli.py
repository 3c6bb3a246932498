"""``python -m course_utils.grading {release,grade,validate,check,merge}``.

Exit status: 0 when the command ran (whatever the students scored), 1 when ``validate`` finds a problem or the
grader itself cannot run (its environment is checked before any kernel starts), 2 for bad input (every argument is
checked before any kernel starts), 143 on SIGTERM (every kernel's process group is killed, nothing is written).
Problems are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from ..paths import REPO_ROOT, display_path, relative
from ..storage import Terminated, terminate_on_signals
from . import api, manual
from .core import PASSED
from .report import number
from .runner import GraderError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m course_utils.grading",
                                 description="Release, grade, validate and self-check the course's notebooks.")
    sub = ap.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="student versions of every numbered notebook")
    rel.add_argument("--out", default=str(REPO_ROOT / "student"))
    rel.add_argument("--notebooks-dir", default=str(api.NOTEBOOKS))
    gr = sub.add_parser("grade", help="grade a folder of submissions (one folder per student)")
    gr.add_argument("submissions")
    gr.add_argument("--out", required=True)
    for p in (gr, sub.add_parser("validate", help="instructor notebooks score full marks, released ones zero")):
        p.add_argument("--notebooks-dir", default=str(api.NOTEBOOKS))
        p.add_argument("--jobs", type=int, default=2, help="notebooks graded in parallel (default 2)")
        p.add_argument("--timeout-cell", type=float, default=60.0, help="seconds per exercise or check cell")
        p.add_argument("--timeout-notebook", type=float, default=600.0, help="seconds per notebook run")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--local-workers", type=int, default=None,
                           help="grade on a Dask LocalCluster of N workers instead of --jobs threads")
        where.add_argument("--scheduler", default=None, help="grade on a running Dask cluster, tcp://HOST:8786 "
                           "(its workers must see the submissions and the notebooks)")
    gr.add_argument("--memory-gb", type=float, default=6.0, help="address-space limit of each kernel")
    gr.add_argument("--design-smoke", action="store_true", help="measure design tasks in smoke mode (tests only)")
    ck = sub.add_parser("check", help="grade your own notebook with its public checks")
    ck.add_argument("notebook")
    ck.add_argument("--timeout-cell", type=float, default=60.0)
    ck.add_argument("--timeout-notebook", type=float, default=600.0)
    mg = sub.add_parser("merge", help="merge the hand-graded written answers (manual/answers.csv) into a grades folder")
    mg.add_argument("grades", help="the folder `grade --out` wrote")
    mg.add_argument("--sheet", default=None, help="the filled sheet (default: GRADES/manual/answers.csv)")
    for p in (gr, sub.choices["validate"], ck):
        p.add_argument("--no-sandbox", action="store_true", help="no namespaces (debugging the grader only)")
    return ap


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; see the module docstring for the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0].startswith("--") and argv[0] != "--help":
        argv = ["release", *argv]  # the old interface: ``python -m course_utils.grading --out student``
    args = _parser().parse_args(argv)
    with terminate_on_signals():  # SIGTERM/SIGHUP unwind like Ctrl-C: every kernel's box is killed on the way out
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "local_workers", None) is not None and args.local_workers < 1:
        print(f"error: --local-workers {args.local_workers} is not valid; it must be >= 1", file=sys.stderr)
        return 2
    if getattr(args, "local_workers", None) is not None or getattr(args, "scheduler", None):
        from .. import cluster

        try:
            cluster.connect(args.scheduler, local_workers=args.local_workers, shared_checkpoints=True)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        if args.command == "release":
            for path in api.release(args.out, args.notebooks_dir):
                print(f"{path.name} -> {display_path(path)}")
        elif args.command == "grade":
            report = api.grade(args.submissions, args.out, args.jobs, args.timeout_cell, args.timeout_notebook,
                               args.notebooks_dir, args.memory_gb, not args.no_sandbox, args.design_smoke)
            _warn(report.warnings)
            counts = Counter(r.status for r in report.rows)
            students = len({r.student for r in report.rows})
            print(f"graded {students} student(s) in {report.seconds:.1f} s: "
                  f"{', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}")
            print(f"sandbox: {report.protections}")
            print(f"gradebook: {display_path(report.out / 'gradebook.csv')}; feedback: "
                  f"{display_path(report.out / 'feedback')}/")
            if counts.get(manual.PENDING):
                print(f"written answers: fill in {display_path(report.out / 'manual' / 'answers.csv')} with "
                      f"{display_path(report.out / 'manual' / 'rubric.md')}, then run "
                      f"`python -m course_utils.grading merge {display_path(report.out)}`")
        elif args.command == "merge":
            done = manual.merge(args.grades, args.sheet)
            print(f"merged {done.graded} hand-graded answer(s) for {done.students} student(s); "
                  f"{done.pending} still pending")
        elif args.command == "validate":
            _warn(list(api.probe(not args.no_sandbox).warnings))
            problems = api.validate(args.notebooks_dir, args.jobs, args.timeout_cell, args.timeout_notebook,
                                    not args.no_sandbox)
            for p in problems:
                print(f"validate: {p}", file=sys.stderr)
            if problems:
                return 1
            print(f"validate: every notebook in {relative(Path(args.notebooks_dir))} scores full marks with its "
                  "solutions and zero as released")
        else:
            results = api.check(args.notebook, args.timeout_cell, args.timeout_notebook, not args.no_sandbox)
            for r in results:
                print(f"exercise {r.exercise}: {number(r.points)}/{number(r.max_points)} {r.status}"
                      f"{': ' + r.message if r.message else ''}")
            got, best = sum(r.points for r in results), sum(r.max_points for r in results)
            passed = sum(r.status == PASSED for r in results)
            print(f"{passed}/{len(results)} exercises pass the public checks ({number(got)}/{number(best)} points; "
                  "the instructor's hidden tests may find more)")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (GraderError, OSError) as e:
        print(f"grader error: {e}", file=sys.stderr)
        return 1
    except Terminated as e:
        print(f"{e}: every grading kernel was stopped; nothing was written", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("interrupted: every grading kernel was stopped", file=sys.stderr)
        return 130
    finally:
        from .. import cluster

        cluster.disconnect()
    return 0
