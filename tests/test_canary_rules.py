"""Canary rules: the YAML the bundle writes is accepted by promtool, its shipped unit tests pass (and fail on a
wrong threshold), it is listed by a real Prometheus, and fires on the exporter's real metrics."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers import free_port, require_tool
from helpers import stop_process as _stop
from helpers import wait_http as _wait

from soaklib.core import numbers
from soaklib.core.config import load_config
from soaklib.core.errors import InputError
from soaklib.publish import bundle
from soaklib.store.synthetic import write_synthetic_run

EXPECTED = {  # critical alert -> (metric, threshold in base units, for in seconds), from the seed's triggers
    "SoakCanaryMakerTakerLow": ("soak_maker_taker_ratio", "< 0.7", 300),
    "SoakCanaryP95LatencyHigh": ("soak_p95_latency_seconds", "> 0.5", 180),
    "SoakCanaryRiskHigh": ("soak_risk_ratio", "> 0.6", 120),
    "SoakCanaryNetEdgeNegative": ("soak_net_bps", "< 0", 600),
    "SoakCanaryMetricsAbsent": ("absent(soak_maker_taker_ratio)", "", 600),
}
WARNING = {  # warning alert -> expr: the gate's hard goals ([goals]), for = [bundle] warning_for
    "SoakCanaryMakerTakerBelowGoal": "soak:maker_taker_ratio:hmean_30m < 0.83",
    "SoakCanaryP95LatencyAboveGoal": "soak_p95_latency_seconds > 0.34",
    "SoakCanaryRiskAboveGoal": "soak_risk_ratio > 0.4",
    "SoakCanaryNetEdgeBelowGoal": "soak_net_bps < 2.5",
}


def write_rules(tmp: Path, cfg=None, version="v1.0.0", selector=None, tests=True) -> Path:
    cfg = cfg or load_config()
    p = tmp / bundle.RULES
    p.write_text(bundle.alert_rules_yaml(cfg, version=version, selector=selector))
    if tests:
        (tmp / bundle.RULE_TESTS).write_text(bundle.rule_tests_yaml(cfg, version=version, selector=selector))
    return p


def _rules(text: str) -> dict:
    (group,) = yaml.safe_load(text)["groups"]
    assert group["name"] == bundle.RULE_GROUP
    return {r.get("alert") or r["record"]: r for r in group["rules"]}


def test_rules_structure():
    rules = _rules(bundle.alert_rules_yaml(load_config(), version="v1.0.0"))
    assert set(rules) == set(EXPECTED) | set(WARNING) | {"soak:maker_taker_ratio:hmean_30m"}
    assert rules["soak:maker_taker_ratio:hmean_30m"]["expr"] == \
        "1 / avg_over_time((1 / soak_maker_taker_ratio)[30m:1m])"
    for name, (metric, cond, _for) in EXPECTED.items():
        r = rules[name]
        assert r["expr"] == f"{metric} {cond}".strip() and r["labels"]["severity"] == "critical"
        assert r["labels"]["release"] == "v1.0.0"
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}
        assert r["annotations"]["runbook_url"].startswith("CANARY_CHECKLIST.md#")
    for name, expr in WARNING.items():
        r = rules[name]
        assert r["expr"] == expr and r["for"] == "15m"
        assert r["labels"]["severity"] == "warning" and r["labels"]["action"] == "hold"
        assert r["annotations"]["runbook_url"] == "CANARY_CHECKLIST.md#phases"
    assert rules["SoakCanaryP95LatencyHigh"]["for"] == "3m"
    assert rules["SoakCanaryNetEdgeNegative"]["for"] == "10m"
    assert rules["SoakCanaryRiskHigh"]["annotations"]["runbook_url"] == "CANARY_CHECKLIST.md#rollback-triggers"


def test_thresholds_selector_and_runbook_follow_config():
    cfg = load_config(overrides={"canary": {"p95_latency_max_ms": 420.0, "p95_latency_for": "90s"},
                                 "goals": {"risk_ratio": {"hard": 0.45, "soft": 0.4}},
                                 "bundle": {"warning_for": "7m", "alert_selector": 'job="mm-bot",instance="c1"',
                                            "runbook_base_url": "https://runbooks.example/rel/"}})
    rules = _rules(bundle.alert_rules_yaml(cfg, version="v2.0.0"))
    sel = '{job="mm-bot",instance="c1"}'
    assert rules["SoakCanaryP95LatencyHigh"]["expr"] == f"soak_p95_latency_seconds{sel} > 0.42"
    assert rules["SoakCanaryP95LatencyHigh"]["for"] == "90s"
    assert rules["SoakCanaryRiskAboveGoal"]["expr"] == f"soak_risk_ratio{sel} > 0.45"
    assert rules["SoakCanaryRiskAboveGoal"]["for"] == "7m"
    assert rules["SoakCanaryMetricsAbsent"]["expr"] == f"absent(soak_maker_taker_ratio{sel})"
    assert sel in rules["soak:maker_taker_ratio:hmean_30m"]["expr"]
    assert rules["SoakCanaryRiskHigh"]["annotations"]["runbook_url"] == \
        "https://runbooks.example/rel/CANARY_CHECKLIST.md#rollback-triggers"
    # --selector overrides the config's
    rules = _rules(bundle.alert_rules_yaml(cfg, version="v2.0.0", selector='instance=~"canary-.*"'))
    assert rules["SoakCanaryRiskHigh"]["expr"] == 'soak_risk_ratio{instance=~"canary-.*"} > 0.6'


@pytest.mark.parametrize("sel", ['job=mm-bot', 'job="a" instance="b"', '1job="a"', 'job=="a"', 'job="a', '{job="a"',
                                 '__name__="x"', 'job="a"}; drop'])
def test_invalid_selector_refused(sel):
    with pytest.raises(InputError) as ei:
        bundle.alert_rules_yaml(load_config(), version="v1.0.0", selector=sel)
    assert ei.value.field == "--selector"


def test_config_strings_cannot_break_the_document():
    nasty = "critical\n      - alert: Injected\n'\"{{ $x }}: #"
    cfg = load_config(overrides={"bundle": {"alert_severity": nasty}})
    rules = _rules(bundle.alert_rules_yaml(cfg, version="v1.0.0"))
    assert set(rules) == set(EXPECTED) | set(WARNING) | {"soak:maker_taker_ratio:hmean_30m"}
    assert {rules[a]["labels"]["severity"] for a in EXPECTED} == {nasty}


def test_bad_duration_refused():
    from soaklib.core.errors import ConfigError

    with pytest.raises(ConfigError) as ei:  # the config schema refuses it on load (bundle would too)
        bundle.alert_rules_yaml(load_config(overrides={"canary": {"risk_for": "2 minutes"}}), version="v1")
    assert ei.value.field == "canary.risk_for"


def test_one_duration_rule_for_schema_and_bundle():
    """The config schema's duration pattern is core.numbers' (the bundle's check): one rule."""
    schema = json.loads((Path(numbers.__file__).parent / "schemas" / "config.schema.json").read_text())
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if "pattern" in node and "ms)?" in node["pattern"]:
                found.add(node["pattern"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert found == {numbers.DURATION_PATTERN}
    assert numbers.duration_seconds("1h30m") == 5400.0 and numbers.duration_seconds("2 minutes") is None


def _promtool(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.mark.system
@pytest.mark.parametrize("selector", [None, 'job="mm-bot",instance="canary-1"', 'job="mm-bot",instance=~"canary-.*"',
                                      'job="mm-bot",env!="prod"'])
def test_promtool_check_and_test_rules(tmp_path, selector):
    """The shipped rules pass `promtool check rules`; the shipped unit tests pass `promtool test rules`:
    each alert fires just past its threshold and stays silent just inside it."""
    rules = write_rules(tmp_path, version="v1.4.0-rc.1+build.7", selector=selector)
    r = _promtool("check", "rules", rules, cwd=tmp_path)
    assert r.returncode == 0 and "SUCCESS: 10 rules found" in r.stdout + r.stderr, r.stdout + r.stderr
    tests = yaml.safe_load((tmp_path / bundle.RULE_TESTS).read_text())["tests"]
    assert len(tests) == 2 * (len(EXPECTED) - 1 + len(WARNING)) + 2
    r = _promtool("test", "rules", bundle.RULE_TESTS, cwd=tmp_path)
    assert r.returncode == 0 and "SUCCESS" in r.stdout + r.stderr, r.stdout + r.stderr


@pytest.mark.system
@pytest.mark.parametrize("wrong", [("soak_risk_ratio > 0.6", "soak_risk_ratio > 0.65"),
                                   ("soak_risk_ratio > 0.6", "soak_risk_ratio >= 0.6"),
                                   ("soak_net_bps < 2.5", "soak_net_bps < 2.4"),
                                   ("hmean_30m < 0.83", "hmean_30m < 0.84"),
                                   ("for: 3m", "for: 4m")])
def test_wrong_threshold_fails_the_shipped_unit_tests(tmp_path, wrong):
    rules = write_rules(tmp_path)
    text = rules.read_text()
    assert wrong[0] in text
    rules.write_text(text.replace(wrong[0], wrong[1], 1))
    assert _promtool("check", "rules", rules, cwd=tmp_path).returncode == 0  # still valid rules
    r = _promtool("test", "rules", bundle.RULE_TESTS, cwd=tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr


@pytest.mark.system
def test_promtool_on_built_bundle(tmp_path):
    """The files inside a real bundle (not only the generators' output) pass promtool."""
    from test_bundle import make_reported_run

    out = tmp_path / "v1.0.0"
    bundle.build_bundle(make_reported_run(tmp_path / "runs"), out, load_config())
    assert _promtool("check", "rules", bundle.RULES, cwd=out).returncode == 0
    r = _promtool("test", "rules", bundle.RULE_TESTS, cwd=out)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------------ real Prometheus

def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())






def _start_prometheus(tmp: Path, rules: Path, targets: list[str]) -> tuple[subprocess.Popen, int]:
    exe = require_tool("prometheus")
    port = free_port()
    conf = tmp / "prometheus.yml"
    conf.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "bot", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": targets}]}] if targets else [],
    }))
    proc = subprocess.Popen([exe, f"--config.file={conf}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(f"http://127.0.0.1:{port}/-/ready", proc)
    except BaseException:
        _stop(proc)
        raise
    return proc, port


@pytest.mark.system
def test_real_prometheus_lists_the_alerts(tmp_path):
    rules = write_rules(tmp_path, tests=False)
    proc, port = _start_prometheus(tmp_path, rules, [])
    try:
        body = _get_json(f"http://127.0.0.1:{port}/api/v1/rules?type=alert")
    finally:
        _stop(proc)
    assert body["status"] == "success"
    (group,) = body["data"]["groups"]
    assert group["name"] == bundle.RULE_GROUP and group["file"] == str(rules)
    got = {r["name"]: r for r in group["rules"]}
    assert set(got) == set(EXPECTED) | set(WARNING)
    for name, (metric, cond, for_s) in EXPECTED.items():
        r = got[name]
        assert r["type"] == "alerting" and r["health"] in ("ok", "unknown")
        assert r["query"] == f"{metric} {cond}".strip() and r["duration"] == for_s
        assert r["labels"]["release"] == "v1.0.0"


@pytest.mark.system
def test_alerts_fire_on_the_exporters_metrics(tmp_path):
    """End to end: `soak metrics --serve` of a bad run, scraped by Prometheus with the bundle's rules
    (for: shortened to 1s). The families and base units must line up with the exporter's."""
    require_tool("prometheus")
    # the last ok iteration is what the exporter shows: p95 exactly at the 500 ms trigger must not fire
    bad = {"maker_taker_ratio": 0.6, "p95_latency_ms": 500.0, "risk_ratio": 0.7, "net_bps": -1.0}
    run = write_synthetic_run(tmp_path / "runs", 4, kpis=bad)
    fast = {k: "1s" for k in ("maker_taker_for", "p95_latency_for", "risk_for", "net_bps_for")}
    rules = write_rules(tmp_path, load_config(overrides={"canary": fast}), tests=False)
    mport = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "soaklib", "metrics", str(run), "--serve",
                            f"127.0.0.1:{mport}", "--serve-seconds", "90"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = None
    try:
        _wait(f"http://127.0.0.1:{mport}/metrics", srv)
        proc, port = _start_prometheus(tmp_path, rules, [f"127.0.0.1:{mport}"])
        want = {"SoakCanaryMakerTakerLow", "SoakCanaryRiskHigh", "SoakCanaryNetEdgeNegative"}
        firing: set[str] = set()
        end = time.monotonic() + 45
        while time.monotonic() < end:
            alerts = _get_json(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"]
            firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
            if firing >= want:
                break
            time.sleep(0.5)
        time.sleep(3)  # a few more evaluations: the p95 rule (exactly at the trigger) must stay quiet
        alerts = _get_json(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"]
        firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        assert firing == want
        by = {a["labels"]["alertname"]: a for a in alerts}
        assert float(by["SoakCanaryRiskHigh"]["value"]) == pytest.approx(0.7)
        assert by["SoakCanaryRiskHigh"]["labels"]["action"] == "full_rollback"
    finally:
        if proc is not None:
            _stop(proc)
        _stop(srv)
