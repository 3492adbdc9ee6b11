"""Escaping for untrusted strings (symbol, profile, notes) in Markdown and HTML outputs."""
from __future__ import annotations

import html
import re

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
