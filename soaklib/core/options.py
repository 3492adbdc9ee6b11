"""Bounds of every numeric command-line option, in one table, checked by one function.

An option that sets (or stands in for) a config key obeys that key's bounds in
``core/schemas/config.schema.json``: a value a config file may not hold is refused on the command line
too, with the same words. The few options without a config key are bounded here. Upper bounds keep a
typo (``1e308``, a 30-digit count) from reaching a timer, a buffer or a window size.

``parse(option, text)`` turns the option's text into an int or float, or raises InputError naming the
option and what was expected (the CLI prints it as one line and exits 2).
"""
from __future__ import annotations

import math
from typing import Any

from jsonschema import Draft202012Validator

from soaklib.core import schema
from soaklib.core.errors import InputError

_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}

# option -> the dotted config key whose schema bounds it, or its own (sub)schema
OPTIONS: dict[str, str | dict[str, Any]] = {
    "--iterations": "run.iterations",
    "--seed": "run.seed",
    "--duration-s": "run.duration_s",
    "--iteration-timeout": "run.iteration_timeout_s",
    "--confirm-iterations": "confirm.iterations",
    "--last-n": "report.last_n",
    "--threshold": "verify.threshold",
    "--metrics-port": _PORT,
    "--serve": _PORT,  # the PORT of HOST:PORT
    # threading's wait() overflows near 1e9 s; a month is longer than any scrape session
    "--serve-seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 30 * 86400},
}


def bounds(option: str) -> dict[str, Any]:
    """The JSON Schema of ``option``'s value (type and bounds)."""
    spec = OPTIONS[option]
    if isinstance(spec, dict):
        return spec
    node = schema.load("config")
    for part in spec.split("."):
        node = node["properties"][part]
    return node


def parse(option: str, text: Any) -> int | float | None:
    """``text`` (a string from the command line, or None when the option was not given) as the
    number ``option`` takes; InputError naming the option and what was expected otherwise."""
    if text is None:
        return None
    sch = bounds(option)
    raw = str(text).strip()
    value: int | float | None = None
    try:
        if sch["type"] == "integer":
            value = int(raw)
        else:
            value = float(raw)
    except ValueError:  # includes int()'s digit limit: such a number is out of any bound anyway
        pass
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # (an int is finite however long: math.isfinite would overflow on a 400-digit one)
    if value is None or not Draft202012Validator(sch).is_valid(value):
        raise InputError(f"expected {schema.describe(sch)}, got {schema.short(str(text))}", field=option)
    return value


def click_callback(ctx: Any, param: Any, value: Any) -> int | float | None:
    """A click option callback (``callback=options.click_callback``, the option taking a string)."""
    return parse(param.opts[0], value)
