"""Escaping for untrusted strings (symbol, profile, notes) in Markdown and HTML outputs."""
from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md_escape(text: object) -> str:
    """Escape a value for Markdown text/table cells; HTML-significant characters become entities."""
    s = str(text).replace("\r", " ").replace("\n", " ")
    s = html.escape(s, quote=False)  # <script> shows as text in rendered Markdown too
    return _MD_SPECIAL.sub(r"\\\1", s).replace("\\&lt;", "&lt;").replace("\\&gt;", "&gt;")


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
