"""Markdown through templates (soaklib.publish.markdown): every template compiles and renders, untrusted
strings are escaped wherever they land, a misspelt name fails the render, and numbers show one way."""
from __future__ import annotations

import math

import jinja2
import numpy as np
import pandas as pd
import pytest

from soaklib.core.config import load_config
from soaklib.core.text import fmt_num
from soaklib.judge import gate, recommend
from soaklib.judge.verify import verify_records
from soaklib.publish import markdown, reports, tag
from soaklib.publish.bundle import VerifyResult
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run

EVIL = "<script>alert(1)</script> | `x` *y* #z"


def _assert_escaped(text: str) -> None:
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "| `x`" not in text  # neither a table cell break nor a code span from the untrusted value


def frame(n: int = 10, **kpis) -> pd.DataFrame:
    rows = {i: {"net_bps": 3.0, "maker_taker_ratio": 0.9, "p95_latency_ms": 250.0, "risk_ratio": 0.2,
                "status": "ok", **kpis} for i in range(1, n + 1)}
    return pd.DataFrame.from_dict(rows, orient="index")


def test_every_template_compiles():
    names = markdown._ENV.list_templates()
    assert {"gate_summary.md.j2", "delta_verify.md.j2", "failures.md.j2", "changelog.md.j2", "rollback_plan.md.j2",
            "canary_checklist.md.j2", "tag_message.txt.j2", "audit.md.j2", "recommendations.md.j2"} <= set(names)
    for name in names:
        markdown._ENV.get_template(name)  # a syntax error raises here


def test_gate_summary_escapes_kpi_names_and_notes():
    cfg = load_config()  # a goal name the config would refuse (not a KPI) must still be escaped
    cfg["goals"][EVIL] = {"agg": "mean", "op": ">=", "hard": 1.0}
    res = gate.evaluate(frame(), cfg, 8)
    res.notes.append(EVIL)
    md = markdown.gate_markdown(res)
    _assert_escaped(md)
    assert md.startswith("## Soak gate: **") and "|\n\nNotes:\n\n- " in md and md.endswith("\n")
    assert md.count("\n| ") == 1 + len(res.goals)  # header + one row per goal: no row broken by a value


def test_verify_report_escapes_params_and_keeps_the_seed_line():
    rec = [{"iteration": i, "status": "ok", "params": {EVIL: 1.0 if i == 1 else 2.0}, "tuning": {}} for i in (1, 2)]
    rep = verify_records(rec, load_config(), run_path="/runs/`odd` name")
    md = markdown.verify_markdown(rep)
    _assert_escaped(md)
    assert "Run: ``/runs/`odd` name``." in md  # a code span longer than any backtick run inside
    assert "Full applications: 0/0 (100.0%)" in md and "## Detailed Mismatches" in md
    nested = markdown.verify_markdown(rep, demote=2)
    assert nested.startswith("### Delta-Apply Verification Report\n") and "\n#### Verdict\n" in nested


def test_recommendations_render_in_every_mode_and_escape(tmp_path):
    cfg = load_config()
    rec = recommend.Recommendations(mode="none", targets=[], goals={"net_bps": {"status": "PASS"}}, notes=[EVIL])
    for fn in (markdown.recommendations_status, markdown.recommendations_details, markdown.recommendations_notes):
        assert fn(rec).endswith("\n")
    _assert_escaped(markdown.recommendations_details(rec))
    run = open_run(write_synthetic_run(tmp_path, 10, runner="./bot", kpis=lambda i: {"p95_latency_ms": 300.0 + 5 * i},
                                       params=lambda i: {"min_interval_ms": 60 + i}))
    rule = recommend.recommend(run, cfg, 8)
    assert rule.mode == "rule-based"
    details = markdown.recommendations_details(rule)
    assert details.count("\n| p95_latency_ms |") == len(rule.rules)
    assert "## Status: Tuning Required [WARN]" in markdown.recommendations_status(rule)


def test_notebook_views_and_failures_escape_untrusted_text(tmp_path):
    p = write_synthetic_run(tmp_path, 10, failed=[4])
    audit = reports.Audit(str(p), 8, "")
    assert audit.ok
    audit.run.warnings.append(EVIL)
    _assert_escaped(reports.failures_section(audit.run, audit.snap))
    doc = reports.failures_markdown(audit.run, audit.snap)
    _assert_escaped(doc)
    assert doc.startswith("# Soak Test Failures Report\n") and "- iteration 4: " in doc
    table = reports.frame_markdown(pd.DataFrame({EVIL: [1.5, np.nan], "n": ["a|b", None]},
                                                index=pd.Index(["r1", "r2"], name="metric")))
    _assert_escaped(table)
    assert table.splitlines()[2] == "| r1 | 1.5 | a\\|b |" and table.splitlines()[3] == "| r2 | n/a | n/a |"
    for view in ("header", "executive_summary", "kpi_table", "sparklines", "guards", "anomalies", "verification",
                 "failures", "final_assessment"):
        assert getattr(audit, view)().data.endswith("\n"), view
    bad = reports.Audit(EVIL, 8, "")
    _assert_escaped(bad.header().data)


def test_tag_message_renders_from_a_manifest(tmp_path):
    rel = {"version": "v1", "run_id": "r1", "iterations": 9, "applied_deltas": 2, "applied_iterations": [3, 4],
           "changed_params": ["a", "b"], "previous": {"version": "v0"}, "active_guards": [],
           "readiness": {"state": "READY", "reasons": []}}
    gate_d = {"verdict": "PASS", "last_n": 8, "window": [2, 9], "goals": [{"kpi": "net_bps", "agg": "mean",
                                                                         "value": 3.14159, "op": ">=", "hard": 2.5,
                                                                         "status": "PASS"}]}
    verified = VerifyResult(path=tmp_path, ok=True, problems=[], checked=0, manifest={}, gate=gate_d, release=rel)
    msg = tag.tag_message("v1", verified, "v1", "abc")
    assert "KPI summary (last 8 ok iterations, iterations 2-9):\n  net_bps: mean=3.142 (goal >= 2.5) PASS\n" in msg
    assert "Changed vs previous: a, b (previous release v0)\nActive guards: none\n" in msg
    assert msg.endswith("MANIFEST.json sha256: abc\n")


def test_a_misspelt_name_fails_the_render():
    with pytest.raises(jinja2.UndefinedError):
        markdown.render("gate_summary.md.j2")


@pytest.mark.parametrize("v,kw,want", [
    (None, {}, "n/a"), (float("nan"), {}, "n/a"), (math.inf, {"missing": "-"}, "-"), (3, {}, "3"),
    (True, {}, "True"), (0.123456, {}, "0.1235"), (np.float64(2.0), {}, "2"), (123456.7, {"big": 1e5}, "123457"),
    (12345.6, {"big": 1e5}, "1.235e+04"), (0.5, {"spec": "+g"}, "+0.5"), (float(5), {"spec": ".2f"}, "5.00"),
])
def test_fmt_num(v, kw, want):
    assert fmt_num(v, **kw) == want
