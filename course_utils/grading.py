"""Instructor tools: make the student version of a notebook (solutions removed, outputs cleared)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import nbformat

from .paths import REPO_ROOT, relative

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_BLOCK = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$", re.M | re.S)


def strip_solutions(source: str) -> str:
    """Replace every solution block with ``raise NotImplementedError`` at the block's indentation."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced solution markers: {source.count(BEGIN)} {BEGIN!r} vs "
                         f"{source.count(END)} {END!r}")
    return _BLOCK.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()", source)


def student_version(src: os.PathLike | str, dst: os.PathLike | str) -> int:
    """Write the student version of notebook ``src`` to ``dst``; returns the number of exercises stripped."""
    nb = nbformat.read(src, as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += cell.source.count(BEGIN)
        cell.source = strip_solutions(cell.source)
        cell.outputs, cell.execution_count = [], None
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return count


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.grading [--out student/]``: student versions of every numbered notebook."""
    from .running import discover

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--notebooks-dir", type=Path, default=REPO_ROOT / "notebooks")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "student")
    args = ap.parse_args(argv)
    for nb in discover(args.notebooks_dir):
        n = student_version(nb, args.out / nb.name)
        print(f"{nb.name}: {n} exercise(s) stripped -> {relative(args.out / nb.name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
