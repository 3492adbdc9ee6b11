"""Every Markdown file soaklib writes (and the tag message) comes from a Jinja2 template in
``publish/templates``; this module holds the one environment and the render functions.

The environment: autoescape off (the output is Markdown, not HTML: untrusted strings go through the
``md`` filter, ``core.text.md_escape``, or ``code``, an inline code span), ``StrictUndefined`` (a
misspelt name fails the render instead of printing nothing), the template's trailing newline kept,
and block tags on their own line leave no blank line behind. ``num`` is ``core.text.fmt_num``.

The judge layer below keeps its results as data (``GateResult``, ``VerifyReport``,
``Recommendations``); their Markdown is rendered here.
"""
from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from soaklib.core.text import fmt_num, md_code, md_escape
from soaklib.judge.compare import Comparison
from soaklib.judge.gate import GateResult
from soaklib.judge.recommend import Recommendations
from soaklib.judge.verify import VerifyReport

_ENV = Environment(loader=PackageLoader("soaklib.publish", "templates"), autoescape=False,
                   undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(md=md_escape, code=md_code, num=fmt_num)


def render(template: str, **context: Any) -> str:
    """Render ``publish/templates/<template>`` with ``context``."""
    return _ENV.get_template(template).render(**context)


def part(template: str, macro: str, **kwargs: Any) -> str:
    """Call one macro of a template holding several small pieces (the notebook views' Markdown)."""
    return str(getattr(_ENV.get_template(template).module, macro)(**kwargs))


def gate_markdown(result: GateResult) -> str:
    """``soak gate --summary-md``: the CI step summary."""
    return render("gate_summary.md.j2", r=result)


def compare_markdown(comparison: Comparison) -> str:
    """COMPARE.md: the paired judge's KPI table, verdicts and reasons."""
    return render("compare.md.j2", c=comparison)


def verify_markdown(report: VerifyReport, *, demote: int = 0) -> str:
    """DELTA_VERIFY_REPORT.md; ``demote`` adds that many levels to every heading (the audit nests it)."""
    return render("delta_verify.md.j2", rep=report, h="#" * demote)


def recommendations_status(rec: Recommendations) -> str:
    return part("recommendations.md.j2", "status", rec=rec)


def recommendations_details(rec: Recommendations) -> str:
    return part("recommendations.md.j2", "details", rec=rec)


def recommendations_notes(rec: Recommendations) -> str:
    return part("recommendations.md.j2", "notes", rec=rec)
