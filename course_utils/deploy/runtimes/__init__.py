"""The deployment runtimes, one module each; importing this package registers every one of them.

A module here registers its runtime with :func:`course_utils.deploy.registry.register_runtime` when imported; every
module of this folder is imported, so a new runtime is one new file here (and its test), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
