"""Numbers: the one home for "is this a finite number".

``finite(x)`` is the rule (a real int or float, not a bool, not NaN/inf); ``finite_or`` names what a
call site uses for "missing" (0.0, NaN) explicitly; ``require_finite`` raises the caller's error
class naming the file and the field. ``duration_seconds`` reads a Prometheus duration ("5m", "1h30m").
"""
from __future__ import annotations

import math
import re
from typing import Any, TypeVar

from soaklib.core.errors import ConfigError, SoakError

T = TypeVar("T")


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite real number (bools are not numbers here), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    try:
        f = float(x)
    except OverflowError:  # an int too large for a float is not a usable number either
        return None
    return f if math.isfinite(f) else None


def finite_or(x: Any, default: T) -> float | T:
    """``finite(x)``, or ``default`` (0.0, NaN, ...) when ``x`` is not a finite number."""
    f = finite(x)
    return default if f is None else f


def require_finite(x: Any, *, path: object = None, field: str | None = None, expected: str = "a finite number",
                   error: type[SoakError] = ConfigError) -> float:
    """``finite(x)``, or ``error("expected <expected>, got <x>")`` naming ``path`` and ``field``."""
    f = finite(x)
    if f is None:
        raise error(f"expected {expected}, got {x!r}", path=path, field=field)
    return f


# A Prometheus duration: units largest first, each at most once, at least one. The config schema
# (core/schemas/config.schema.json) spells the same pattern; a test keeps the two equal.
DURATION_PATTERN = "^(?=.)([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_DURATION_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 1e-3)


def duration_seconds(x: Any) -> float | None:
    """A Prometheus duration string in seconds, or None when ``x`` is not one."""
    m = _DURATION_RE.match(x) if isinstance(x, str) else None
    if m is None:
        return None
    return sum(int(g[:-2] if g.endswith("ms") else g[:-1]) * u for g, u in zip(m.groups(), _DURATION_UNITS) if g)
