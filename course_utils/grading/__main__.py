"""``python -m course_utils.grading``: see :mod:`course_utils.grading.cli`."""

from .cli import main

raise SystemExit(main())
