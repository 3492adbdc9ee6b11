"""Text for people: escaping untrusted strings (symbol, profile, notes) in Markdown and HTML, and how
numbers are shown (``fmt_num``: the one number formatter of reports, tables and rationales)."""
from __future__ import annotations

import html
import re
from typing import Any

from soaklib.core.numbers import finite

# characters that start Markdown syntax anywhere in a line (tables, links, emphasis, code, HTML)
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])")
# "_" only makes emphasis at a word boundary (CommonMark): leave min_interval_ms readable
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# block syntax at the start of a cell or line: headings, lists, quotes, numbered lists
_MD_LEADING = re.compile(r"^(\s*)(?:([#>])|([-+])(?=\s)|(\d+)([.)])(?=\s))")


def md_escape(text: object) -> str:
    """Escape a value for Markdown text and table cells.

    HTML-significant characters become entities, so ``<script>`` shows as text wherever the
    Markdown is rendered; Markdown syntax characters are backslash-escaped.
    """
    s = str(text).replace("\r", " ").replace("\n", " ")
    s = html.escape(s, quote=False)
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = _MD_UNDERSCORE.sub(r"\\_", s)
    return _MD_LEADING.sub(_escape_leading, s)


def _escape_leading(m: re.Match) -> str:
    if m.group(4):  # "1. " -> "1\. "
        return f"{m.group(1)}{m.group(4)}\\{m.group(5)}"
    return m.group(1) + "\\" + (m.group(2) or m.group(3))


def md_code(text: object) -> str:
    """An inline code span for an untrusted value (no escapes exist inside a code span)."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    fence = "`"
    while fence in s:
        fence += "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def fmt_num(v: Any, spec: str = ".4g", *, missing: str = "n/a", big: float | None = None) -> str:
    """A number for display.

    Floats (numpy's too) are formatted with ``spec`` (4 significant digits by default); with ``big``,
    a float whose magnitude is at least ``big`` is shown whole (``12345678``, not ``1.235e+07``).
    ``None``, NaN and infinities show as ``missing``: no report prints ``nan``. Anything else (ints,
    bools, strings) shows as written (``str``): pass ``float(x)`` to format an int with ``spec``.
    """
    if v is None:
        return missing
    if isinstance(v, float):
        if finite(v) is None:
            return missing
        if big is not None and abs(v) >= big:
            return f"{v:.0f}"
        return format(v, spec)
    return str(v)


def html_escape(text: object) -> str:
    return html.escape(str(text), quote=True)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values) -> str:
    """Unicode sparkline; NaN/None shows as a space."""
    vals = [None if v is None or v != v else float(v) for v in values]
    finite = [v for v in vals if v is not None]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(SPARK[len(SPARK) // 2])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))])
    return "".join(out)
