"""Release bundle (DESIGN §11): reports, the tuned profile, CHANGELOG, rollback plan, canary checklist,
Prometheus rules for the canary (warning and critical tiers, a harmonic-mean recording rule) with
their ``promtool test rules`` unit tests, a Grafana dashboard (publish/dashboard.py), RELEASE.json
(readiness, facts) and a MANIFEST of sha256 hashes that also hashes its own fields.

The bundle is assembled in a temporary directory beside ``--out`` and renamed into place, so a
failure leaves nothing behind. ``verify_bundle`` re-hashes every file and the manifest's own fields
and checks RELEASE.json against GATE.json; everything ``soak tag`` reads comes from those files.
No artifact carries an absolute path: bundles are named relative to where they were built.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import math
import os
import re
import shutil
import statistics
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from soaklib.core import io as _io
from soaklib.core.errors import CheckFailed, ConfigError, InputError, RecordError
from soaklib.core.goals import goals_from_config, overall
from soaklib.core.io import display_path  # tag and the CLI import it from here too
from soaklib.core.kpis import KPI
from soaklib.core.numbers import duration_seconds, finite
from soaklib.core.params import registry
from soaklib.core.records import version_string
from soaklib.core.run import Run
from soaklib.core.text import fmt_num
from soaklib.execute import supervisor
from soaklib.judge.compare import compare_records, pair_key
from soaklib.judge.gate import confirm_records, evaluate_run
from soaklib.judge.readiness import Readiness, readiness
from soaklib.judge.verify import verify_run
from soaklib.publish import dashboard, markdown
from soaklib.store import rundir
from soaklib.store.loader import open_run
from soaklib.store.rundir import (
    AUDIT,
    BASELINE_DIR,
    COMPARE_REPORT,
    DELTA_VERIFY,
    FAILURES,
    GATE,
    OVERRIDES,
    RECOMMENDATIONS,
    REPORTS_DIR,
    SNAPSHOT,
    write_errors,
)

MANIFEST = "MANIFEST.json"
RELEASE = "RELEASE.json"
PROFILE = "soak_profile.runtime_overrides.json"
PREVIOUS_PROFILE = "previous_profile.runtime_overrides.json"
RULES = "canary_alerts.rules.yml"
RULE_TESTS = "canary_alerts.test.yml"
CHANGELOG = "CHANGELOG.md"
ROLLBACK_PLAN = "rollback_plan.md"
CANARY_CHECKLIST = "CANARY_CHECKLIST.md"
DASHBOARD = dashboard.DASHBOARD
# copied from RUN/reports/analysis; value = the command that produces the file
REPORT_FILES = {
    SNAPSHOT: "soak report",
    f"{AUDIT}.html": "soak report",
    f"{AUDIT}.md": "soak report",
    f"{RECOMMENDATIONS}.md": "soak report",
    FAILURES: "soak report",
    f"{DELTA_VERIFY}.json": "soak verify",
    f"{DELTA_VERIFY}.md": "soak verify",
}
OPTIONAL_REPORT_FILES = (f"{RECOMMENDATIONS}.html", Path(FAILURES).with_suffix(".html").name, f"{AUDIT}.ipynb",
                         f"{COMPARE_REPORT}.html", f"{COMPARE_REPORT}.md", f"{COMPARE_REPORT}.ipynb")
# nbconvert --to markdown images
OPTIONAL_REPORT_DIRS = (f"{AUDIT}_files", f"{RECOMMENDATIONS}_files", f"{COMPARE_REPORT}_files")
GENERATED = (GATE, RELEASE, PROFILE, PREVIOUS_PROFILE, CHANGELOG, ROLLBACK_PLAN, CANARY_CHECKLIST, RULES, RULE_TESTS,
             DASHBOARD)
REQUIRED = tuple(REPORT_FILES) + GENERATED
# 2.0: no verdict of its own (GATE.json and RELEASE.json carry it, hashed), manifest_sha256 over its fields
MANIFEST_SCHEMA = "2.0"
RELEASE_SCHEMA = "1.0"
MANIFEST_DIGEST = "manifest_sha256"

# Canary rollback triggers (seed tag_and_canary) -> critical Prometheus rules over the soak_* gauges (DESIGN §14).
# kpi, metric (base units), fires when metric <op> threshold, [canary] value key, [canary] for key,
# scale from the KPI unit to the metric's base unit, alert name, rollback action (seed rollback plan)
TRIGGERS = (
    ("maker_taker_ratio", "soak_maker_taker_ratio", "<", "maker_taker_min", "maker_taker_for", 1.0,
     "SoakCanaryMakerTakerLow", "quick rollback"),
    ("p95_latency_ms", "soak_p95_latency_seconds", ">", "p95_latency_max_ms", "p95_latency_for", 1e-3,
     "SoakCanaryP95LatencyHigh", "quick rollback"),
    ("risk_ratio", "soak_risk_ratio", ">", "risk_max", "risk_for", 1.0, "SoakCanaryRiskHigh", "full rollback"),
    ("net_bps", "soak_net_bps", "<", "net_bps_min", "net_bps_for", 1.0, "SoakCanaryNetEdgeNegative",
     "quick rollback"),
)
# warning tier: a gate goal missed on the canary -> hold the rollout (alert name per KPI)
GOAL_ALERTS = {"maker_taker_ratio": "SoakCanaryMakerTakerBelowGoal", "p95_latency_ms": "SoakCanaryP95LatencyAboveGoal",
               "risk_ratio": "SoakCanaryRiskAboveGoal", "net_bps": "SoakCanaryNetEdgeBelowGoal"}
ABSENT_ALERT = "SoakCanaryMetricsAbsent"
RULE_GROUP = "soak_canary_rollback"
# the goal is met while `value <op> hard`; the alert fires on the negation
NEGATE = {">=": "<", ">": "<=", "<=": ">", "<": ">="}
# CANARY_CHECKLIST.md headings the runbook_url annotations point at (GitHub-style anchors)
ANCHOR_TRIGGERS = "rollback-triggers"
ANCHOR_PHASES = "phases"
ANCHOR_METRICS = "metrics-the-live-bot-must-export"


# ------------------------------------------------------------------------------------------ helpers

def _num(v: Any) -> str:
    """A threshold or profile value as the bundle shows it: up to 10 significant digits."""
    return fmt_num(v, ".10g")


def _duration(v: Any, fld: str) -> str:
    if duration_seconds(v) is None:
        raise ConfigError(f"expected a Prometheus duration such as '5m', got {v!r}", field=fld)
    return v


def flat_profile(data: Any, reg, *, src: object) -> dict[str, Any]:
    """A runtime_overrides object as flat keys (nested registry paths accepted); unknown keys kept."""
    if not isinstance(data, dict):
        raise RecordError("expected a JSON object of parameters", path=src)
    out: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if key.startswith("_"):
                continue
            if not prefix and key in reg:
                out[key] = v
            elif reg.by_path(key) is not None:
                out[reg.by_path(key).name] = v
            elif isinstance(v, Mapping):
                walk(v, key + ".")
            else:
                out[key] = v  # not in our registry (e.g. a bot-specific knob): still diffed

    walk(data, "")
    return out


def profile_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list]:
    """{"changed": [(k, old, new)], "added": [(k, new)], "removed": [(k, old)], "unchanged": [k]}."""
    out: dict[str, list] = {"changed": [], "added": [], "removed": [], "unchanged": []}
    for k in sorted(set(old) | set(new)):
        if k not in old:
            out["added"].append((k, new[k]))
        elif k not in new:
            out["removed"].append((k, old[k]))
        elif _same(old[k], new[k]):
            out["unchanged"].append(k)
        else:
            out["changed"].append((k, old[k], new[k]))
    return out


def _same(a: Any, b: Any) -> bool:
    fa, fb = finite(a), finite(b)
    if fa is not None and fb is not None:
        return math.isclose(fa, fb, rel_tol=0.0, abs_tol=1e-12)
    return a == b


def _delta(a: Any, b: Any) -> float | int | None:
    """new - old of two profile values (an int for two ints); None unless both are numbers."""
    fa, fb = finite(a), finite(b)
    if fa is None or fb is None:
        return None
    d = round(fb - fa, 10)
    return int(d) if isinstance(a, int) and isinstance(b, int) else d


# ------------------------------------------------------------------------------------------ selector

_LABEL = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER_RE = re.compile(r'\s*(' + _LABEL + r')\s*(=~|!~|!=|=)\s*"((?:[^"\\\n]|\\.)*)"\s*')


def parse_selector(text: str, *, fld: str = "--selector") -> list[tuple[str, str, str]]:
    """``job="mm-bot", instance=~"canary-.*"`` (braces optional) -> [(label, op, value)].

    InputError (exit 2) naming ``fld`` on anything that is not a comma-separated list of PromQL
    label matchers, so no string can change what a rule selects beyond its labels."""
    s = (text or "").strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1].strip()
    if not s:
        return []
    out, pos = [], 0
    while True:
        m = _MATCHER_RE.match(s, pos)
        if not m:
            raise InputError(f"expected label matchers such as job=\"mm-bot\",instance=\"canary-1\", got {text!r}",
                             field=fld)
        if m.group(1) == "__name__":
            raise InputError("the selector may not match on __name__", field=fld)
        out.append((m.group(1), m.group(2), m.group(3)))
        pos = m.end()
        if pos == len(s):
            return out
        if s[pos] != ",":
            raise InputError(f"expected ',' between label matchers at {s[pos:]!r}", field=fld)
        pos += 1


def _selector_text(matchers: list[tuple[str, str, str]]) -> str:
    return "{" + ",".join(f'{k}{op}"{v}"' for k, op, v in matchers) + "}" if matchers else ""


def _series_labels(matchers: list[tuple[str, str, str]], fld: str) -> dict[str, str]:
    """Label values a series needs to match the selector (for the rule unit tests).

    = takes the value; != and !~ are met by leaving the label out; =~ takes a simple reading of the
    regex (``.*`` and ``.+`` filled, escapes dropped), checked with Python's re (Prometheus anchors
    both ends, as fullmatch does)."""
    out: dict[str, str] = {}
    for k, op, v in matchers:
        raw = v.encode().decode("unicode_escape")  # the PromQL string literal's value
        if op == "=":
            out[k] = raw
        elif op == "=~":
            guess = re.sub(r"\\(.)", r"\1", raw.replace(".*", "").replace(".+", "x")).strip("^$")
            try:
                ok = re.fullmatch(raw, guess) is not None
            except re.error:
                raise InputError(f"label {k}: {v!r} is not a valid regular expression", field=fld) from None
            if not ok:
                raise InputError(f"label {k}: cannot derive a value matching {v!r} for the rule tests; "
                                 "use an equality matcher", field=fld)
            out[k] = guess
        else:
            try:
                if re.fullmatch(raw if op == "!~" else re.escape(raw), ""):
                    raise InputError(f"label {k}: {op}{v!r} also refuses series without the label; "
                                     "the rule tests cannot build a matching series", field=fld)
            except re.error:
                raise InputError(f"label {k}: {v!r} is not a valid regular expression", field=fld) from None
    return out


# ------------------------------------------------------------------------------------------ canary

def canary_triggers(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rollback triggers of ``[canary]`` with units resolved (KPI unit and metric base unit)."""
    c = cfg.get("canary")
    if not isinstance(c, Mapping):
        raise ConfigError("missing [canary] table", field="canary")
    out = []
    for kpi, metric, op, vkey, fkey, scale, alert, action in TRIGGERS:
        v = finite(c.get(vkey))
        if v is None:
            raise ConfigError(f"expected a number, got {c.get(vkey)!r}", field=f"canary.{vkey}")
        out.append({"kpi": kpi, "metric": metric, "op": op, "threshold": v,
                    "threshold_base": round(v * scale, 12), "for": _duration(c.get(fkey), f"canary.{fkey}"),
                    "alert": alert, "action": action})
    return out


def hmean_record_name(cfg: Mapping[str, Any]) -> str:
    """The recording rule's series: harmonic mean of soak_maker_taker_ratio over ``[bundle] hmean_window``."""
    w = _duration(cfg["bundle"]["hmean_window"], "bundle.hmean_window")
    return f"soak:maker_taker_ratio:hmean_{w}"


def goal_alerts(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Warning tier: one alert per gate goal that has a canary metric, firing past the goal's hard value."""
    scale_of = {kpi: (metric, scale) for kpi, metric, _op, _v, _f, scale, _a, _ac in TRIGGERS}
    for_ = _duration(cfg["bundle"]["warning_for"], "bundle.warning_for")
    out = []
    for g in goals_from_config(cfg):
        if g.kpi not in GOAL_ALERTS:
            continue
        metric, scale = scale_of[g.kpi]
        if g.kpi == "maker_taker_ratio":
            metric = hmean_record_name(cfg)  # the seed's maker/taker goal is a harmonic mean over a window
        out.append({"kpi": g.kpi, "metric": metric, "op": NEGATE[g.op], "threshold": g.hard,
                    "threshold_base": round(g.hard * scale, 12), "for": for_, "alert": GOAL_ALERTS[g.kpi],
                    "action": "hold", "agg": g.agg, "goal_op": g.op})
    return out


def _runbook(cfg: Mapping[str, Any], anchor: str) -> str:
    base = str(cfg["bundle"]["runbook_base_url"]).rstrip("/")
    return f"{base}/{CANARY_CHECKLIST}#{anchor}" if base else f"{CANARY_CHECKLIST}#{anchor}"


def _rules(cfg: Mapping[str, Any], version: str, selector: str | None) -> tuple[list[dict], list[tuple]]:
    """(rules of the group, matchers). Rules are plain data for yaml.safe_dump; alert annotations are
    static text (no $value templates), so the unit tests can state them exactly."""
    fld = "--selector" if selector is not None else "bundle.alert_selector"
    matchers = parse_selector(selector if selector is not None else cfg["bundle"]["alert_selector"], fld=fld)
    sel = _selector_text(matchers)
    b = cfg["bundle"]
    critical = str(b["alert_severity"])
    absent_for = _duration(b["absent_for"], "bundle.absent_for")
    window = _duration(b["hmean_window"], "bundle.hmean_window")

    def alert(name: str, expr: str, for_: str, severity: str, action: str, summary: str, description: str,
              anchor: str) -> dict[str, Any]:
        return {"alert": name, "expr": expr, "for": for_,
                "labels": {"severity": severity, "action": action, "release": version},
                "annotations": {"summary": summary, "description": description,
                                "runbook_url": _runbook(cfg, anchor)}}

    # 1 / avg(1/x) over the window; a zero ratio makes 1/x +Inf and the mean 0, as metrics.harmonic_mean
    rules: list[dict[str, Any]] = [{"record": hmean_record_name(cfg),
                                    "expr": f"1 / avg_over_time((1 / soak_maker_taker_ratio{sel})[{window}:1m])"}]
    for t in canary_triggers(cfg):
        word = "below" if t["op"] == "<" else "above"
        unit = " ms" if t["kpi"] == "p95_latency_ms" else ""
        rules.append(alert(t["alert"], f"{t['metric']}{sel} {t['op']} {_num(t['threshold_base'])}", t["for"], critical,
                           t["action"].replace(" ", "_"),
                           f"Canary {t['kpi']} {word} the rollback trigger {_num(t['threshold'])}{unit} for {t['for']}",
                           f"{t['metric']} {t['op']} {_num(t['threshold_base'])} for {t['for']}: {t['action']} of "
                           f"release {version} now ({ROLLBACK_PLAN}).", ANCHOR_TRIGGERS))
    for t in goal_alerts(cfg):
        unit = " ms" if t["kpi"] == "p95_latency_ms" else ""
        msel = "" if t["metric"].startswith("soak:") else sel  # the recorded series already carries the selection
        rules.append(alert(t["alert"], f"{t['metric']}{msel} {t['op']} {_num(t['threshold_base'])}", t["for"],
                           "warning", "hold",
                           f"Canary {t['kpi']} misses the gate's hard goal "
                           f"({t['goal_op']} {_num(t['threshold'])}{unit}) "
                           f"for {t['for']}",
                           f"{t['metric']} {t['op']} {_num(t['threshold_base'])} for {t['for']}: hold the rollout of "
                           f"release {version}; the phase fails if its {t['agg']} stays there.", ANCHOR_PHASES))
    first = TRIGGERS[0][1]  # one family is enough: the exporter emits them together
    rules.append(alert(ABSENT_ALERT, f"absent({first}{sel})", absent_for, critical, "investigate",
                       "No soak_* canary metrics: the canary cannot be judged",
                       "No data is not a pass: check the bot's exporter before continuing the rollout.",
                       ANCHOR_METRICS))
    return rules, matchers


def alert_rules_yaml(cfg: Mapping[str, Any], *, version: str, selector: str | None = None) -> str:
    """``canary_alerts.rules.yml``: a harmonic-mean recording rule, critical rollback triggers,
    warning-tier goal alerts and an absent-data alert, all restricted by the selector
    (``--selector`` or ``[bundle] alert_selector``). Written by ``yaml.safe_dump``, so no string
    (untrusted or not) can break the document."""
    version = _check_version_chars(version)  # it also lands in label values, which Prometheus templates
    rules, _m = _rules(cfg, version, selector)
    header = [f"Canary rules for release {version}: critical = roll back now, warning = hold the rollout.",
              "Generated by soaklib (soak bundle) from [canary], [goals] and [bundle] of the soaklib config.",
              f"Unit tests: promtool test rules {RULE_TESTS}. Metrics: the soak_* gauges (base units: seconds,",
              "ratios 0-1) the live bot exports, or `soak metrics RUN --serve HOST:PORT` over its records."]
    doc = {"groups": [{"name": RULE_GROUP, "rules": rules}]}
    # comments are not part of YAML's data model: the header goes in front of the dumped document
    return "".join(f"# {line}\n" for line in header) + _dump(doc)


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 16)


def _series(metric: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{_promql_str(v)}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{inner}}}" if inner else metric


def _promql_str(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def rule_tests_yaml(cfg: Mapping[str, Any], *, version: str, selector: str | None = None) -> str:
    """``canary_alerts.test.yml`` for ``promtool test rules``: each alert fires with its metric just past
    its threshold and stays silent just inside it; the absent alert fires without data."""
    version = _check_version_chars(version)
    rules, matchers = _rules(cfg, version, selector)
    fld = "--selector" if selector is not None else "bundle.alert_selector"
    labels = _series_labels(matchers, fld)
    by_name = {r["alert"]: r for r in rules if "alert" in r}
    tests = []

    def case(name: str, series: list[dict], alertname: str, checks: list[tuple[int, bool]]) -> None:
        r = by_name[alertname]
        # absent() carries only the selector's equality labels; other alerts carry the series' labels
        own = {k: v for k, op, v in matchers if op == "="} if alertname == ABSENT_ALERT else labels
        exp = [{"exp_labels": {**own, **r["labels"]}, "exp_annotations": dict(r["annotations"])}]
        tests.append({"name": name, "interval": "1m", "input_series": series,
                      "alert_rule_test": [{"eval_time": f"{m}m", "alertname": alertname,
                                           "exp_alerts": exp if fires else []} for m, fires in checks]})

    def values(v: float, n: int) -> str:
        return f"{_num(v)}+0x{n}"

    def timing(for_: str) -> tuple[int, list[tuple[int, bool]]]:
        """Minutes to feed, and checks of a condition true from t=0: pending one minute before `for:`,
        firing at it (so a changed `for:` fails too); non-whole minutes: firing at the next minute."""
        s = duration_seconds(for_)
        m = math.ceil(s / 60)
        checks = ([(m - 1, False)] if s % 60 == 0 and m >= 1 else []) + [(m, True)]
        return m + 3, checks

    for t in canary_triggers(cfg) + goal_alerts(cfg):
        th = t["threshold_base"]
        eps = 1e-3 * max(1.0, abs(th))
        past = th - eps if t["op"] in ("<", "<=") else th + eps
        recorded = t["metric"].startswith("soak:")
        # a raw gauge is checked exactly at its threshold (which catches < vs <=); the recorded harmonic
        # mean goes through 1/x twice, so it is checked a hair inside instead
        inside = (th + eps if t["op"] in ("<", "<=") else th - eps) if recorded else th
        if t["op"] in ("<=", ">="):
            inside = th + eps if t["op"] == "<=" else th - eps
        metric = "soak_maker_taker_ratio" if recorded else t["metric"]  # the recording rule reads the raw ratio
        n, checks = timing(t["for"])
        case(f"{t['alert']}: {t['kpi']} just past {_num(th)} ({_num(past)})",
             [{"series": _series(metric, labels), "values": values(past, n)}], t["alert"], checks)
        case(f"{t['alert']}: {t['kpi']} just inside {_num(th)} ({_num(inside)})",
             [{"series": _series(metric, labels), "values": values(inside, n)}], t["alert"], [(checks[-1][0], False)])
    n, checks = timing(cfg["bundle"]["absent_for"])
    case(f"{ABSENT_ALERT}: no soak_maker_taker_ratio", [{"series": _series("soak_risk_ratio", labels),
                                                          "values": values(0.1, n)}], ABSENT_ALERT, checks)
    case(f"{ABSENT_ALERT}: soak_maker_taker_ratio present", [{"series": _series("soak_maker_taker_ratio", labels),
                                                               "values": values(0.9, n)}], ABSENT_ALERT,
         [(checks[-1][0], False)])
    header = [f"Unit tests of {RULES} (release {version}): promtool test rules {RULE_TESTS}",
              "Each alert fires with its metric just past its threshold and stays silent just inside it."]
    doc = {"rule_files": [RULES], "evaluation_interval": "1m", "tests": tests}
    return "".join(f"# {line}\n" for line in header) + _dump(doc)


def kpi_spread(run: Run, window: list[int], kpis: list[str]) -> dict[str, float]:
    """Standard deviation of each KPI's per-iteration values over the gate window (the soak's
    window-to-window spread); KPIs with fewer than two values are left out."""
    df = run.iterations
    out = {}
    rows = df.loc[[i for i in window if i in df.index]] if len(df) else df
    for k in kpis:
        if k in rows.columns:
            vals = [v for v in (finite(x) for x in rows[k].tolist()) if v is not None]
            if len(vals) >= 2:
                out[k] = statistics.stdev(vals)
    return out


def canary_phases(cfg: Mapping[str, Any], spread: Mapping[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """Phase thresholds = the gate's goals: missing ``hard`` over the phase means FAIL (roll back), missing
    ``soft`` means WARN (hold). ``[bundle] phase_spread_widen[i]`` > 0 widens phase i's hard and soft
    values by that many standard deviations of the soak's values (``spread``) in the tolerant direction."""
    b = cfg.get("bundle", {})
    traffic, durs = b.get("phase_traffic_pct"), b.get("phase_duration")
    widen = b.get("phase_spread_widen") or []
    if not (isinstance(traffic, list) and isinstance(durs, list) and len(traffic) == len(durs) and traffic):
        raise ConfigError("phase_traffic_pct and phase_duration must be lists of one length", field="bundle")
    if widen and len(widen) != len(traffic):
        raise ConfigError(f"expected {len(traffic)} entries (one per phase) or none, got {len(widen)}",
                          field="bundle.phase_spread_widen")
    spread = spread or {}
    goals = goals_from_config(cfg)
    notes: list[str] = []
    phases = []
    for i, (pct, dur) in enumerate(zip(traffic, durs)):
        w = float(widen[i]) if widen else 0.0
        th = {}
        for g in goals:
            s = spread.get(g.kpi)
            hard, soft = g.hard, g.soft
            if w > 0 and s is not None:
                sign = -1.0 if g.op in (">=", ">") else 1.0  # tolerant direction
                hard, soft = round(hard + sign * w * s, 10), round(soft + sign * w * s, 10)
            elif w > 0 and i == 0:
                notes.append(f"{g.kpi}: no spread in the soak's window (fewer than 2 values); phases use the goal")
            th[g.kpi] = {"agg": g.agg, "op": g.op, "hard": hard, "soft": soft, "fail_op": NEGATE[g.op]}
        phases.append({"phase": i + 1, "traffic_pct": pct, "duration": _duration(dur, f"bundle.phase_duration[{i}]"),
                       "widen": w, "thresholds": th})
    return phases, notes


# ------------------------------------------------------------------------------------------ documents

def _kpi_fmt(kpi: str) -> str:
    k = KPI.get(kpi)
    return k.fmt if k is not None else ".4g"


def _kpi_rows(snapshot: Mapping[str, Any], gate_d: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CHANGELOG's KPI rows: the gate's goals first, then every other KPI of the snapshot; each with
    the KPI's one display format."""
    stats = snapshot.get("kpi_last_n") or snapshot.get("kpi_last8") or {}
    stats = stats if isinstance(stats, Mapping) else {}
    goals = {g["kpi"]: g for g in gate_d.get("goals", [])}
    rows = []
    for k in list(goals) + [k for k in stats if k not in goals]:
        st = stats.get(k)
        rows.append({"kpi": k, "goal": goals.get(k), "stats": st if isinstance(st, Mapping) else {},
                     "fmt": _kpi_fmt(k)})
    return rows


def _compare_rows(gate_d: Mapping[str, Any], prev_gate: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """This release's goal values beside the previous release's (its verified GATE.json)."""
    if not prev_gate:
        return []
    prev = {g.get("kpi"): g for g in prev_gate.get("goals", []) if isinstance(g, Mapping)}
    rows = []
    for g in gate_d.get("goals", []):
        p = prev.get(g["kpi"]) or {}
        a, b = finite(p.get("value")), finite(g.get("value"))
        rows.append({"kpi": g["kpi"], "agg": g["agg"], "prev": a, "prev_status": p.get("status", "n/a"), "new": b,
                     "status": g["status"], "change": None if a is None or b is None else b - a,
                     "fmt": _kpi_fmt(g["kpi"])})
    return rows


_VERSION_HEAD_RE = re.compile(r"^## \[(?P<v>[^\]]+)\]", re.M)
_LINK_RE = re.compile(r"^\[[^\]]+\]: \S+\s*$", re.M)


def _history(previous_changelog: str | None) -> tuple[str, list[str]]:
    """The previous CHANGELOG's version sections (without [Unreleased] and the link block) and their versions."""
    if not previous_changelog:
        return "", []
    heads = [m for m in _VERSION_HEAD_RE.finditer(previous_changelog) if m["v"] != "Unreleased"]
    if not heads:
        return "", []
    body = _LINK_RE.sub("", previous_changelog[heads[0].start():]).rstrip("\n")
    return body, [m["v"] for m in heads]


def changelog_md(*, version: str, bare: str, tag: str, date: str, gate_d: Mapping[str, Any],
                 snapshot: Mapping[str, Any], release: Mapping[str, Any], diff: Mapping[str, list],
                 previous: Mapping[str, Any] | None, cfg: Mapping[str, Any], ready: Readiness,
                 allow_not_ready: bool) -> str:
    """Keep a Changelog 1.1.0: [Unreleased], this release's entry, the previous bundle's entries, and
    compare links when ``[bundle] repository_url`` is known."""
    history, older = _history(previous["changelog"] if previous else None)
    prefix = str(cfg["bundle"]["version_prefix"])
    repo = str(cfg["bundle"]["repository_url"]).rstrip("/")
    links: list[tuple[str, str]] = []
    if repo:
        versions = [bare] + [v for v in older if v != bare]
        links.append(("Unreleased", f"{repo}/compare/{tag}...HEAD"))
        for i, v in enumerate(versions):
            links.append((v, f"{repo}/compare/{prefix}{versions[i + 1]}...{prefix}{v}" if i + 1 < len(versions)
                          else f"{repo}/releases/tag/{prefix}{v}"))
    return markdown.render("changelog.md.j2", version=version, bare=bare, date=date, gate=gate_d, release=release,
                           kpi_rows=_kpi_rows(snapshot, gate_d), diff=diff, previous=previous, delta=_delta,
                           history=history, links=links, ready=ready, allow_not_ready=allow_not_ready,
                           compare=_compare_rows(gate_d, previous.get("gate") if previous else None))


def rollback_plan_md(*, version: str, tag: str, gate_d: Mapping[str, Any], prev_profile: Mapping[str, Any],
                     new_profile: Mapping[str, Any], previous: Mapping[str, Any] | None, start_name: str,
                     bundle_ref: str, cfg: Mapping[str, Any], reg) -> str:
    keys = sorted(set(prev_profile) | set(new_profile))
    return markdown.render("rollback_plan.md.j2", version=version, tag=tag, gate=gate_d, prev=prev_profile,
                           new=new_profile, keys=keys, previous=previous, start_name=start_name, bundle=bundle_ref,
                           bot_overrides=str(cfg["bundle"]["bot_overrides_path"]),
                           cold=[k for k in keys if k in reg and not reg[k].hot],
                           triggers=canary_triggers(cfg), PROFILE=PROFILE, PREVIOUS_PROFILE=PREVIOUS_PROFILE,
                           RULES=RULES, RULE_GROUP=RULE_GROUP)


def canary_checklist_md(*, version: str, gate_d: Mapping[str, Any], verify_d: Any, cfg: Mapping[str, Any],
                        spread: Mapping[str, float], bundle_ref: str, ready: Readiness,
                        selector: str | None = None) -> str:
    phases, notes = canary_phases(cfg, spread)
    far = verify_d.get("full_apply_ratio") if isinstance(verify_d, Mapping) else None
    matchers = parse_selector(selector if selector is not None else cfg["bundle"]["alert_selector"],
                              fld="--selector" if selector is not None else "bundle.alert_selector")
    return markdown.render("canary_checklist.md.j2", version=version, gate=gate_d, phases=phases, notes=notes,
                           goals=goals_from_config(cfg), fmt=_kpi_fmt,
                           triggers=canary_triggers(cfg), warnings=goal_alerts(cfg),
                           threshold=(cfg.get("verify") or {}).get("threshold", 0.95),
                           far=finite(far), absent_for=cfg["bundle"]["absent_for"], bundle=bundle_ref, ready=ready,
                           selector=_selector_text(matchers), hmean=hmean_record_name(cfg),
                           PREVIOUS_PROFILE=PREVIOUS_PROFILE, RULES=RULES, RULE_TESTS=RULE_TESTS,
                           ABSENT_ALERT=ABSENT_ALERT)


# ------------------------------------------------------------------------------------------ release facts

def release_facts(run: Run) -> dict[str, Any]:
    """What the tag message needs, from the run's records: applied changes and guards active at the end."""
    applied = 0
    applied_iters = []
    for rec in run.records:
        t = rec.get("tuning") if isinstance(rec, Mapping) else None
        if not isinstance(t, Mapping):
            continue
        n = 0
        for d in t.get("decisions") or []:
            if isinstance(d, Mapping) and d.get("verdict") in ("applied", "clamped") and finite(d.get("clamped_delta")):
                n += 1 if d.get("clamped_delta") != 0 else 0
        if not t.get("decisions") and t.get("applied") and isinstance(t.get("deltas"), Mapping):
            n = sum(1 for x in t["deltas"].values() if finite(x))  # seed records carry deltas only
        if n:
            applied += n
            applied_iters.append(int(rec.get("iteration", 0)))
    active: list[str] = []
    last = run.records[-1] if run.records else {}
    g = ((last.get("tuning") or {}).get("guards") or {}) if isinstance(last, Mapping) else {}
    if isinstance(g, Mapping):
        for k, val in sorted(g.items()):
            if k == "frozen_params" and val:
                active.append("frozen: " + ", ".join(str(x) for x in val))
            elif val is True:
                active.append(k)
    rg = (last.get("runtime_guards") or {}) if isinstance(last, Mapping) else {}
    if isinstance(rg, Mapping) and rg.get("partial_freeze_active"):
        active.append("partial_freeze_active")
    return {"run_id": (run.manifest or {}).get("run_id"), "applied_deltas": applied, "applied_iterations": applied_iters,
            "active_guards": active, "iterations": len(run.records)}


# ------------------------------------------------------------------------------------------ comparisons

def _comparison_summary(against: str, label: str, run_id: Any, cmp: Any, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What RELEASE.json keeps of a comparison (the CHANGELOG and the tag message show it): per KPI the
    estimate of this release − the other arm, its interval, p-value, margin and class."""
    rows = [{"kpi": k.kpi, "n": k.n, "estimate": k.estimate, "ci_low": k.ci_low, "ci_high": k.ci_high,
             "p_value": k.p_value, "margin": k.margin, "verdict": k.verdict, "fmt": _diff_fmt(k.kpi)}
            for k in cmp.kpis]
    return {"against": against, "label": label, "run_id": run_id, "method": cmp.method, "verdict": cmp.verdict,
            "n_pairs": cmp.n_pairs, "confidence": float(cfg["compare"]["confidence"]), "kpis": rows,
            "notes": list(cmp.notes)}


def _diff_fmt(kpi: str) -> str:
    """A difference's display format: the KPI's fixed-point format with one more decimal (a change is
    smaller than the value), else 4 significant digits."""
    m = re.fullmatch(r"\.(\d+)f", _kpi_fmt(kpi))
    return f".{int(m[1]) + 1}f" if m else ".4g"


def _profile_name(run: Run) -> str:
    prof = (run.manifest or {}).get("profile")
    return str(prof.get("name")) if isinstance(prof, Mapping) and prof.get("name") else "n/a"


def release_comparisons(run: Run, cfg: Mapping[str, Any], previous: Mapping[str, Any] | None
                        ) -> tuple[list[dict[str, Any]], list[str]]:
    """The comparisons a release carries (CHANGELOG, tag message): the run (its confirmation phase) against
    its own baseline arm ``RUN/baseline``, and against the previous release's run when that run (named
    by run id in the previous RELEASE.json) sits beside this one: paired by (seed, window) when the two
    share windows, else Mann–Whitney, which the method says. Returns (comparisons, notes)."""
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    mine = confirm_records(run)
    arm = Path(run.path) / BASELINE_DIR
    if (arm / rundir.MANIFEST).is_file():
        base = open_run(arm)
        cmp = compare_records(confirm_records(base), mine, cfg)
        out.append(_comparison_summary("baseline", f"the baseline arm (profile {_profile_name(base)})",
                                       (base.manifest or {}).get("run_id"), cmp, cfg))
    rid = previous.get("run_id") if previous else None
    here = (run.manifest or {}).get("run_id")
    if isinstance(rid, str) and rundir.RUN_ID_RE.fullmatch(rid) and rid != here:
        p = Path(run.path).parent / rid
        if (p / rundir.MANIFEST).is_file():
            prun = open_run(p)
            theirs = confirm_records(prun)
            shared = {pair_key(r) for r in theirs} & {pair_key(r) for r in mine} - {None}
            cmp = compare_records(theirs, mine, cfg, unpaired=not shared)
            out.append(_comparison_summary("previous", f"release {previous.get('version')} (its run)", rid, cmp, cfg))
        else:
            notes.append(f"the previous release's run {rid} is not beside this run: no comparison against it")
    return out, notes


# ------------------------------------------------------------------------------------------ build

@dataclass
class BundleResult:
    path: Path
    version: str
    verdict: str
    readiness: Readiness
    previous: str | None
    said: str  # how the previous release was chosen (or that this is the first): the CLI puts it on stderr
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _reports_dir(run: Run) -> Path:
    p = Path(run.path)
    cands = [p / REPORTS_DIR, p.parent.parent / REPORTS_DIR, p.parent / REPORTS_DIR]
    for c in cands:
        if (c / SNAPSHOT).is_file():
            return c
    return cands[0]


def _overrides_path(run: Run) -> Path:
    p = Path(run.path)
    for c in (p / OVERRIDES, p.parent / OVERRIDES):
        if c.is_file():
            return c
    raise InputError(f"missing {OVERRIDES} (the run's final parameters)", path=p / OVERRIDES)


_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def _check_version_chars(version: str) -> str:
    # the version lands in Markdown, YAML and Prometheus label templates: keep it to a safe alphabet
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise InputError(f"version {version!r} must be 1-128 characters of A-Z a-z 0-9 . _ + - "
                         "(starting with a letter or digit)", field="--version")
    return version


def parse_version(text: str, cfg: Mapping[str, Any], *, fld: str = "--version", path: object = None) -> Version:
    """``<prefix>MAJOR.MINOR.PATCH`` (``[bundle] version_prefix``, default ``v``), the rest a canonical
    PEP 440 version with three release numbers (pre/post/dev releases allowed). One style for every
    release, so ``1.5`` beside ``v1.4.0`` is refused instead of sorting wrongly."""
    prefix = str(cfg["bundle"]["version_prefix"])
    if fld == "--version":
        _check_version_chars(text)
    want = f"{prefix}MAJOR.MINOR.PATCH (bundle.version_prefix = {prefix!r})"
    if not isinstance(text, str) or not text.startswith(prefix):
        raise InputError(f"version {text!r}: expected {want}", field=fld, path=path)
    rest = text[len(prefix):]
    try:
        v = Version(rest)
    except InvalidVersion:
        raise InputError(f"version {text!r} is not a PEP 440 version: expected {want}", field=fld, path=path) from None
    if len(v.release) != 3 or str(v) != rest or v.epoch or v.local:
        raise InputError(f"version {text!r}: expected {want}, written canonically (e.g. {prefix}{v.major}.{v.minor}."
                         f"{v.micro})", field=fld, path=path)
    return v


def load_previous(prev: str | os.PathLike, reg) -> dict[str, Any]:
    """A previous bundle's release facts, gate, profile and changelog; InputError (exit 2) when it is
    not a bundle or not intact."""
    p = Path(prev)
    if not p.is_dir() or not (p / MANIFEST).is_file():
        raise InputError("--previous is not a release bundle (expected a directory with MANIFEST.json)", path=p)
    res = verify_bundle(p, raise_on_fail=False)
    if res.problems:
        raise InputError("previous bundle is not intact: " + "; ".join(res.problems), path=p)
    prof = flat_profile(_io.read_json(p / PROFILE), reg, src=p / PROFILE)
    ch = (p / CHANGELOG).read_text("utf-8")
    return {"path": p, "version": res.manifest.get("version"), "tag": res.release.get("tag"), "profile": prof,
            "changelog": ch, "gate": res.gate, "run_id": res.release.get("run_id")}


def find_previous(out: Path, version: Version, cfg: Mapping[str, Any]) -> tuple[Path | None, list[str]]:
    """The newest bundle beside ``out`` with a version below ``version`` (None: a first release), and
    notes on directories skipped (not parseable)."""
    parent = out.parent if str(out.parent) else Path(".")
    best: tuple[Version, Path] | None = None
    notes: list[str] = []
    if not parent.is_dir():
        return None, notes
    for d in sorted(parent.iterdir()):
        if d.name.startswith(".") or d.name == out.name or not d.is_dir() or not (d / MANIFEST).is_file():
            continue
        try:
            man = _io.read_json(d / MANIFEST)
            v = parse_version(man.get("version") if isinstance(man, dict) else None, cfg, fld="version", path=d)
        except InputError as exc:
            notes.append(f"skipped {display_path(d)} as a previous release: {str(exc).split(': ', 1)[-1]}")
            continue
        if v < version and (best is None or v > best[0]):
            best = (v, d)
    return (best[1] if best else None), notes


def build_bundle(run_path: str | os.PathLike | Run, out: str | os.PathLike, cfg: Mapping[str, Any], *,
                 version: str | None = None, previous: str | os.PathLike | None = None, force: bool = False,
                 allow_not_ready: bool = False, selector: str | None = None,
                 now: _dt.datetime | None = None) -> BundleResult:
    """Assemble the release bundle of ``run_path`` at ``out`` (atomically: all or nothing).

    ``previous``: the previous release's bundle; None = the newest bundle beside ``out`` (said in
    ``BundleResult.said``), or a first release when there is none. A run whose readiness is NOT READY or INCONCLUSIVE
    is refused (CheckFailed, exit 1, nothing written) unless ``allow_not_ready``.
    ``run_path`` may also be a Run already opened with ``open_run`` (the CLI has one; no second load)."""
    out = Path(out)
    vtext = version if version is not None else out.name
    ver = parse_version(vtext, cfg)
    tag = vtext  # the tag is the version as given: version_prefix + the PEP 440 release
    reg = registry(cfg)
    # the rules are built before anything is written: a bad selector is exit 2 with nothing behind
    rules_text = alert_rules_yaml(cfg, version=vtext, selector=selector)
    tests_text = rule_tests_yaml(cfg, version=vtext, selector=selector)
    rules, matchers = _rules(cfg, vtext, selector)  # the dashboard watches what the rules watch
    dashboard_text = dashboard.dashboard_json(cfg, version=vtext, matchers=matchers,
                                              alerts=[r["alert"] for r in rules if "alert" in r])
    notes: list[str] = []
    if previous is None:
        found, skipped = find_previous(out, ver, cfg)
        notes += skipped
        if found is not None:
            said = (f"previous release: {display_path(found)} (the newest bundle beside --out; "
                    "pass --previous to choose)")
        else:
            said = (f"first release: no earlier bundle beside {display_path(out)}; CHANGELOG starts here and the "
                    "rollback target is the soak's starting profile")
        previous = found
    else:
        said = f"previous release: {display_path(Path(previous))} (--previous)"
    prev = load_previous(previous, reg) if previous is not None else None
    if prev is not None:
        pv = parse_version(prev["version"], cfg, fld="version", path=Path(previous) / MANIFEST)
        if not pv < ver:
            raise InputError(f"version {vtext} is not newer than the previous release {prev['version']}",
                             field="--version")

    if isinstance(run_path, Run):
        run, run_path = run_path, run_path.path  # the path for messages
    else:
        run = open_run(run_path)
    rdir = _reports_dir(run)
    missing = [f"{name} (written by `{cmd}`)" for name, cmd in REPORT_FILES.items() if not (rdir / name).is_file()]
    if not (rdir / SNAPSHOT).is_file():
        raise InputError(f"missing {SNAPSHOT}; run `soak report {run_path}` first", path=rdir / SNAPSHOT)
    snapshot = _io.read_json(rdir / SNAPSHOT)
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("kpi_last_n", snapshot.get("kpi_last8")), dict):
        raise RecordError("not a post-soak snapshot: expected an object with kpi_last_n", path=rdir / SNAPSHOT)
    if missing:
        raise InputError("report files missing: " + ", ".join(missing), path=rdir)
    total = snapshot.get("iterations_total")
    if isinstance(total, int) and not isinstance(total, bool) and total != len(run.records):
        # e.g. the run was resumed after `soak report`: the reports describe another run state
        raise InputError(f"stale snapshot: it covers {total} iterations, the run has {len(run.records)}; "
                         f"run `soak report {run_path}` again", path=rdir / SNAPSHOT)
    verify_d = _io.read_json(rdir / f"{DELTA_VERIFY}.json")
    ov_path = _overrides_path(run)
    new_profile = flat_profile(_io.read_json(ov_path), reg, src=ov_path)

    last_n = snapshot.get("last_n") if isinstance(snapshot.get("last_n"), int) and snapshot["last_n"] >= 1 else None
    gate_res = evaluate_run(run, cfg, last_n)
    gate_d = gate_res.to_dict()
    notes += [f"run: {w}" for w in run.warnings]
    if snapshot.get("verdict") and snapshot.get("verdict") != gate_res.verdict:
        notes.append(f"snapshot verdict {snapshot.get('verdict')} differs from the gate's {gate_res.verdict} "
                     "(config changed since `soak report`?); the bundle uses the gate's")
        gate_d["notes"].append(notes[-1])
    ready = readiness(gate_res, verify_run(run, cfg), run, cfg=cfg)
    if not ready.shippable and not allow_not_ready:
        raise CheckFailed(f"readiness {ready.state}: {'; '.join(ready.reasons)}; nothing written "
                          "(pass --allow-not-ready to bundle it anyway)", path=run_path)

    with write_errors(out, "clean up an interrupted bundle"):
        _recover(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise InputError("output already exists; pass --force to replace it", path=out)
        if not out.is_dir() or out.is_symlink() or not (out / MANIFEST).is_file():
            # --force replaces a bundle, never an arbitrary directory
            raise InputError("--force only replaces an existing bundle (a directory with MANIFEST.json)", path=out)

    facts = release_facts(run)
    comparisons, cmp_notes = release_comparisons(run, cfg, prev)
    notes += cmp_notes
    start = (run.manifest.get("profile") or {}) if isinstance(run.manifest, Mapping) else {}
    start_name = str(start.get("name", "")) if isinstance(start, Mapping) else ""
    if prev is not None:
        prev_profile = prev["profile"]
    else:
        vals = start.get("values") if isinstance(start, Mapping) else None
        if not isinstance(vals, Mapping):
            raise InputError("first release (no previous bundle) and the run manifest has no starting profile values",
                             path=Path(run.path) / rundir.MANIFEST, field="profile.values")
        prev_profile = flat_profile(dict(vals), reg, src=Path(run.path) / rundir.MANIFEST)
    diff = profile_diff(prev_profile, new_profile)
    now = now or _dt.datetime.now(_dt.UTC)
    bundle_ref = display_path(out)
    spread = kpi_spread(run, gate_res.iterations_evaluated, [g.kpi for g in goals_from_config(cfg)])
    prev_info = None if prev is None else {"version": prev["version"], "tag": prev["tag"] or prev["version"],
                                           "bundle": display_path(prev["path"]), "run_id": prev["run_id"]}
    release = {"schema_version": RELEASE_SCHEMA, "version": vtext, "tag": tag, "bare_version": str(ver),
               **facts, "gate_verdict": gate_res.verdict, "readiness": ready.to_dict(),
               "allow_not_ready": bool(allow_not_ready and not ready.shippable),
               "previous": prev_info, "changed_params": [k for k, _a, _b in diff["changed"]]}
    if comparisons:  # only then: a release without a baseline keeps its RELEASE.json as it was
        release["comparisons"] = comparisons

    docs: dict[str, str] = {
        GATE: _io.dumps(gate_d) + "\n",
        RELEASE: _io.dumps(release) + "\n",
        PREVIOUS_PROFILE: _io.dumps(prev_profile) + "\n",
        CHANGELOG: changelog_md(version=vtext, bare=str(ver), tag=tag, date=now.date().isoformat(), gate_d=gate_d,
                                snapshot=snapshot, release=release, diff=diff,
                                previous=None if prev is None else {**prev, **prev_info}, cfg=cfg, ready=ready,
                                allow_not_ready=release["allow_not_ready"]),
        ROLLBACK_PLAN: rollback_plan_md(version=vtext, tag=tag, gate_d=gate_d, prev_profile=prev_profile,
                                        new_profile=new_profile, previous=prev_info, start_name=start_name,
                                        bundle_ref=bundle_ref, cfg=cfg, reg=reg),
        CANARY_CHECKLIST: canary_checklist_md(version=vtext, gate_d=gate_d, verify_d=verify_d, cfg=cfg, spread=spread,
                                              bundle_ref=bundle_ref, ready=ready, selector=selector),
        RULES: rules_text,
        RULE_TESTS: tests_text,
        DASHBOARD: dashboard_text,
    }

    parent = out.parent if str(out.parent) else Path(".")
    created = []
    for d in reversed([parent, *parent.parents]):
        if not d.exists():
            created.append(d)
    with write_errors(parent, "create the output's parent"):
        parent.mkdir(parents=True, exist_ok=True)
    with write_errors(parent, "create the bundle's temporary directory"):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    # disk full, read-only: one line naming the bundle; the temp dir goes either way
    with write_errors(out, "write the bundle"):
        try:
            for name in REPORT_FILES:
                shutil.copyfile(rdir / name, tmp / name)
            for name in OPTIONAL_REPORT_FILES:
                if (rdir / name).is_file():
                    shutil.copyfile(rdir / name, tmp / name)
            for name in OPTIONAL_REPORT_DIRS:
                if (rdir / name).is_dir():
                    shutil.copytree(rdir / name, tmp / name, symlinks=False)
            shutil.copyfile(ov_path, tmp / PROFILE)
            for name, text in docs.items():
                _write_doc(tmp / name, text)
            files = {rel: {"sha256": _io.sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                     for rel in _list_files(tmp) if rel != MANIFEST}
            manifest = {
                "schema_version": MANIFEST_SCHEMA,
                "generator": version_string(),
                "version": vtext,
                "created_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "files": files,
            }
            manifest[MANIFEST_DIGEST] = _io.state_hash(manifest)
            _io.write_json(tmp / MANIFEST, manifest)
            os.chmod(tmp, 0o755)
            _install(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
    return BundleResult(path=out, version=vtext, verdict=gate_res.verdict, readiness=ready,
                        previous=prev["version"] if prev else None, said=said, files=files, notes=notes)


def _write_doc(path: Path, text: str) -> None:
    _io.write_text(path, text)


def _install(tmp: Path, out: Path) -> None:
    """Put the finished temp dir at ``out``. An existing bundle is exchanged with it in one step
    (renameat2 RENAME_EXCHANGE), so ``out`` is always a whole bundle, old or new; the old one, now
    at ``tmp``, is removed (by the next run if we are killed first). Where the file system cannot
    exchange, the old bundle is renamed aside first and the next run restores it if we die between."""
    if out.exists():
        if _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            old.rmdir()
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    _io._fsync_dir(out.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # no such libc function (not Linux, or glibc < 2.28)
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


# a temp or swapped-out dir of `soak bundle` process <pid> for the bundle <name>
_LEFTOVER_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]+$")


def _recover(out: Path) -> None:
    """Clean up after a `soak bundle` of ``out`` that was killed: its temp dirs are removed; an old
    bundle it had renamed aside comes back when nothing is at ``out``. Only dirs of dead processes."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return
    for p in sorted(parent.iterdir()):
        m = _LEFTOVER_RE.match(p.name)
        if not m or m["name"] != out.name or not p.is_dir() or p.is_symlink() or supervisor.alive(int(m["pid"])):
            continue
        if m["kind"] == "old" and not (out.exists() or out.is_symlink()) and (p / MANIFEST).is_file():
            os.rename(p, out)
        else:
            shutil.rmtree(p)


def _list_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            out.append((Path(dirpath) / f).relative_to(root).as_posix())
    return sorted(out)


# ------------------------------------------------------------------------------------------ verify

@dataclass
class VerifyResult:
    path: Path
    ok: bool
    problems: list[str]
    checked: int
    manifest: dict
    gate: dict = field(default_factory=dict)      # GATE.json, once its hash matched
    release: dict = field(default_factory=dict)   # RELEASE.json, once its hash matched

    @property
    def verdict(self) -> str | None:
        """The gate verdict, from the verified GATE.json only."""
        v = self.gate.get("verdict")
        return v if isinstance(v, str) else None


def _read_verified(p: Path, rel: str, problems: list[str]) -> dict:
    try:
        d = _io.read_json(p / rel)
    except RecordError as exc:
        problems.append(f"{rel}: {str(exc).split(': ', 1)[-1]}")
        return {}
    if not isinstance(d, dict):
        problems.append(f"{rel}: expected a JSON object")
        return {}
    return d


def _check_release(gate: dict, release: dict, manifest: dict, problems: list[str]) -> None:
    """What tag reads must agree: GATE.json's verdict with its goals, RELEASE.json with both."""
    goals = gate.get("goals")
    statuses = [g.get("status") for g in goals if isinstance(g, dict)] if isinstance(goals, list) else None
    if not statuses or gate.get("verdict") != overall(statuses):
        problems.append(f"{GATE}: verdict {gate.get('verdict')!r} does not follow from its goals' statuses")
    if release.get("gate_verdict") != gate.get("verdict"):
        problems.append(f"{RELEASE}: gate_verdict {release.get('gate_verdict')!r} differs from {GATE}'s "
                        f"{gate.get('verdict')!r}")
    if release.get("version") != manifest.get("version"):
        problems.append(f"{RELEASE}: version {release.get('version')!r} differs from {MANIFEST}'s "
                        f"{manifest.get('version')!r}")
    r = release.get("readiness")
    if not (isinstance(r, dict) and isinstance(r.get("state"), str)):
        problems.append(f"{RELEASE}: no readiness state")


def verify_bundle(path: str | os.PathLike, *, raise_on_fail: bool = True) -> VerifyResult:
    """Re-hash every file against MANIFEST.json, the manifest's own fields against its
    ``manifest_sha256``, and check RELEASE.json and GATE.json agree.

    Problems name the file: changed (hash or size), missing, not in the manifest, required but
    unlisted, manifest fields edited, verdicts that disagree. With ``raise_on_fail`` a problem raises
    CheckFailed (exit 1); a missing directory raises InputError (exit 2).
    """
    p = Path(path)
    if not p.is_dir():
        raise InputError("bundle directory not found", path=p)
    problems: list[str] = []
    manifest: dict = {}
    try:
        manifest = _io.read_json(p / MANIFEST)
    except RecordError as exc:
        problems.append(f"{MANIFEST}: {str(exc).split(': ', 1)[-1]}")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not problems and not isinstance(files, dict):
        problems.append(f"{MANIFEST}: no 'files' object")
    if not problems:
        if manifest.get("schema_version") != MANIFEST_SCHEMA:
            problems.append(f"{MANIFEST}: schema_version {manifest.get('schema_version')!r}, expected "
                            f"{MANIFEST_SCHEMA!r} (older bundles do not hash their own fields: rebuild it)")
        body = {k: v for k, v in manifest.items() if k != MANIFEST_DIGEST}
        if manifest.get(MANIFEST_DIGEST) != _io.state_hash(body):
            problems.append(f"{MANIFEST}: fields changed ({MANIFEST_DIGEST} does not match the manifest's contents)")
    checked = 0
    gate: dict = {}
    release: dict = {}
    if not problems:
        for rel, meta in sorted(files.items()):
            rp = Path(rel)
            if rp.is_absolute() or ".." in rp.parts or not rel:
                problems.append(f"{rel}: unsafe path in the manifest")
                continue
            f = p / rp
            if not f.is_file() or f.is_symlink():
                problems.append(f"{rel}: missing")
                continue
            want = meta.get("sha256") if isinstance(meta, dict) else None
            checked += 1
            if _io.sha256_file(f) != want:
                problems.append(f"{rel}: content changed (sha256 does not match the manifest)")
        for rel in REQUIRED:
            if rel not in files:
                problems.append(f"{rel}: required file not listed in the manifest")
        for rel in _list_files(p):
            if rel != MANIFEST and rel not in files:
                problems.append(f"{rel}: not in the manifest")
        if not problems:  # only files whose hash matched are read
            gate = _read_verified(p, GATE, problems)
            release = _read_verified(p, RELEASE, problems)
            if not problems:
                _check_release(gate, release, manifest, problems)
    res = VerifyResult(path=p, ok=not problems, problems=problems, checked=checked,
                       manifest=manifest if isinstance(manifest, dict) else {},
                       gate=gate if not problems else {}, release=release if not problems else {})
    if problems and raise_on_fail:
        raise CheckFailed("bundle verification failed: " + "; ".join(problems), path=p)
    return res
