"""Notebook parameters: one conversion rule for ``param()`` in a notebook and ``-p NAME=VALUE`` on the runner.

A value means the same thing wherever it comes from: ``COURSE_SMOKE=false`` and ``-p smoke=false`` are both False,
because both go through :func:`convert` to the type of the notebook's default (read from its ``parameters`` cell).
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from . import paths
from .paths import check_path, display_path

T = TypeVar("T")
ENV_PREFIX = "COURSE_"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
#: Parameters naming output locations: resolved where the run starts and exported to every kernel.
OUTPUT_PARAMETERS = paths.OUTPUT_VARIABLES


class RunnerError(Exception):
    """Bad input or an unusable environment, found before any notebook runs; the message is one line for the user."""


def convert(raw: str, default: Any, label: str) -> Any:
    """``raw`` text (an environment variable or a ``-p`` value) as the type of ``default``: the one rule for both,
    so a value means the same in a notebook and on the command line. Booleans take 1/0, true/false, yes/no, on/off;
    a ``None`` default takes a Python literal (else the text); ``label`` names the source in errors."""
    if not isinstance(raw, str):
        raise ValueError(f"{label}: the value must be text, not {type(raw).__name__}")
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in TRUE + FALSE:
            return text.lower() in TRUE
        raise ValueError(f"{label}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")
    if isinstance(default, str):
        return text
    try:
        value = int(text) if isinstance(default, int) else float(text) if isinstance(default, float) \
            else ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text if default is None else None
    finite = not isinstance(value, float) or math.isfinite(value)
    if default is None or (isinstance(value, type(default)) and finite):
        return value
    kind = "finite float" if isinstance(default, float) else type(default).__name__
    raise ValueError(f"{label}={raw!r} is not a valid {kind} (the default is {default!r})")


def param(name: str, default: T) -> T:
    """A notebook parameter: ``COURSE_<NAME>`` from the environment (so nbval runs can set it) or ``default``,
    converted to the type of ``default`` by :func:`convert` (the runner's ``-p`` uses the same rule)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name={name!r} is not valid; it must be a Python identifier such as 'seed'")
    var = ENV_PREFIX + name.upper()
    raw = os.environ.get(var)
    return default if raw is None else convert(raw, default, var)


def _default_of(source: str) -> Any:
    """The default in a parameters cell line: the literal, or ``param("x", <literal>)``'s; None if not a literal.
    (papermill cannot read ``param("x", default=...)``: write defaults positionally.)"""
    try:
        node: ast.expr = ast.parse(source.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "param":
        if len(node.args) < 2:
            return None
        node = node.args[1]
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def notebook_parameters(notebook: os.PathLike | str) -> dict[str, Any]:
    """``{name: default}`` from the notebook's ``parameters`` cell (``None`` where the default is not a literal)."""
    import papermill as pm

    path = check_path("notebook", notebook)
    try:
        specs = pm.inspect_notebook(str(path))
    except Exception as e:  # noqa: BLE001 - unreadable notebook, invalid JSON, no kernelspec...
        raise RunnerError(f"cannot read the parameters of {display_path(path)} ({type(e).__name__}: {e})") from e
    return {name: _default_of(str(spec.get("default", ""))) for name, spec in specs.items()}


def parse_parameters(items: Iterable[str], allowed: Iterable[str] = ()) -> dict[str, str]:
    """``["epochs=3", "dataset=digits"]`` -> ``{"epochs": "3", "dataset": "digits"}``: names checked, values kept
    as text for :func:`typed_parameters`. ``allowed`` only lists the known names in error messages."""
    items = [items] if isinstance(items, str) else list(items)  # one "NAME=VALUE" is a list of one
    if not all(isinstance(i, str) for i in items):
        raise ValueError(f"items={items!r} is not valid; it must be a list of 'NAME=VALUE' strings")
    hint = f"; parameters: {', '.join(allowed)}" if (allowed := list(allowed)) else ""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise RunnerError(f"-p {item}: not of the form NAME=VALUE{hint}")
        if not name.isidentifier():
            what = "the parameter name is missing" if not name else f"{name!r} is not a valid parameter name"
            raise RunnerError(f"-p {item}: {what}{hint}")
        if name in out:
            raise RunnerError(f"-p {name} is given twice ({name}={out[name]} and {item}); give it once")
        out[name] = value
    return out


def typed_parameters(raw: Mapping[str, str], specs: Mapping[Path, Mapping[str, Any]],
                     nobody: str = "no notebook") -> dict[Path, dict[str, Any]]:
    """Per notebook, the ``-p`` values it declares, converted to its defaults' types; ``RunnerError`` for a name no
    notebook in ``specs`` declares or a value that does not convert."""
    known = list(dict.fromkeys(n for spec in specs.values() for n in spec))
    out: dict[Path, dict[str, Any]] = {nb: {} for nb in specs}
    for name, text in raw.items():
        owners = [nb for nb, spec in specs.items() if name in spec]
        if not owners:
            raise RunnerError(f"-p {name}={text}: {nobody} has a parameter {name!r}; parameters: {', '.join(known)}")
        for nb in owners:
            try:
                value = convert(text, specs[nb][name], f"-p {name}")
            except ValueError as e:
                raise RunnerError(f"{e} (for {nb.name})") from None
            if name in OUTPUT_PARAMETERS and isinstance(value, str) and value:
                value = str(Path(value).expanduser().resolve())  # relative to where the run starts, not the notebook
            out[nb][name] = value
    return out
