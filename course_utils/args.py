"""Argument checks shared by the package: bad input gets a ValueError naming the parameter and what is allowed,
before any long work starts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` if it is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {allowed}")
    return value


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; it must be an integer >= {minimum}")
    return value


def check_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number in the given interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name}={value!r} is not valid; it must be a finite number in {lo}{low:g}, {high:g}{hi}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """A fraction in ``[0, 1)``: a sparsity or an amount to remove (removing everything is never allowed)."""
    return check_number(name, value, 0.0, 1.0, high_open=True)
