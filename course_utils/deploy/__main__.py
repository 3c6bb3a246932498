"""``python -m course_utils.deploy --bench [--smoke]``: deploy the ViT-DyT baseline everywhere and print one JSON
line of speedups, sizes and accuracy deltas, with the CPU (model, instruction sets), the threads each runtime used,
the load and the bars it was measured against (see :func:`course_utils.deploy.bench.run_bench`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.deploy", description=__doc__)
    parser.add_argument("--bench", action="store_true", help="deploy to every runtime/precision and time them")
    parser.add_argument("--smoke", action="store_true", help="1-epoch baseline, 3 short rounds: a quick check")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 21; smoke 3)")
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds per measurement (default 0.1)")
    parser.add_argument("--workdir", default=None, help="artifact folder (default: checkpoints/deploy)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every runtime, the eager baseline included (default: the cores this "
                             "process may use, len(os.sched_getaffinity(0)))")
    parser.add_argument("--workers", type=int, default=0,
                        help="exports side by side (default 0: one process per CPU core; 1: one at a time)")
    parser.add_argument("--reuse", action="store_true", help="load artifacts built earlier from the same model")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return 2
    for flag, value in (("--rounds", args.rounds), ("--threads", args.threads)):
        if value is not None and value < 1:
            parser.error(f"{flag} {value} is not valid; it must be >= 1")
    if args.workers < 0:
        parser.error(f"--workers {args.workers} is not valid; it must be >= 0 (0: one process per CPU core)")
    if args.min_run_time is not None and not 0 < args.min_run_time <= 3600:  # NaN fails too
        parser.error(f"--min-run-time {args.min_run_time} is not valid; it must be a number of seconds in (0, 3600]")
    from ..storage import OutputPathError
    from .bench import check_bench_arguments, run_bench

    try:  # the artifact folder is checked before minutes of training, not after
        check_bench_arguments(workdir=args.workdir)
    except (OutputPathError, ValueError) as e:
        parser.error(f"--workdir: {e}")

    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the JSON line only (training notes go to stderr)
        result = run_bench(smoke=args.smoke, rounds=args.rounds, min_run_time=args.min_run_time,
                           workdir=args.workdir, threads=args.threads, workers=args.workers, reuse=args.reuse)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
