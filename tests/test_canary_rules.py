"""Canary alert rules: the YAML the bundle writes is accepted by promtool, behaves as intended under
`promtool test rules`, is listed by a real Prometheus, and fires on the exporter's real metrics."""
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
from soaklib.publish import bundle
from soaklib.store.synthetic import write_synthetic_run

EXPECTED = {  # alert -> (metric, threshold in base units, for in seconds), from the seed's triggers
    "SoakCanaryMakerTakerLow": ("soak_maker_taker_ratio", "< 0.7", 300),
    "SoakCanaryP95LatencyHigh": ("soak_p95_latency_seconds", "> 0.5", 180),
    "SoakCanaryRiskHigh": ("soak_risk_ratio", "> 0.6", 120),
    "SoakCanaryNetEdgeNegative": ("soak_net_bps", "< 0", 600),
    "SoakCanaryMetricsAbsent": ("absent(soak_maker_taker_ratio)", "", 600),
}


def write_rules(tmp: Path, cfg=None, version="v1.0.0") -> Path:
    p = tmp / "canary_alerts.rules.yml"
    p.write_text(bundle.alert_rules_yaml(cfg or load_config(), version=version))
    return p


def test_rules_structure():
    doc = yaml.safe_load(bundle.alert_rules_yaml(load_config(), version="v1.0.0"))
    (group,) = doc["groups"]
    assert group["name"] == bundle.RULE_GROUP
    rules = {r["alert"]: r for r in group["rules"]}
    assert set(rules) == set(EXPECTED)
    for name, (metric, cond, _for) in EXPECTED.items():
        assert rules[name]["expr"] == f"{metric} {cond}".strip()
        assert rules[name]["labels"]["release"] == "v1.0.0"
    assert rules["SoakCanaryP95LatencyHigh"]["for"] == "3m"
    assert rules["SoakCanaryNetEdgeNegative"]["for"] == "10m"


def test_thresholds_follow_config():
    cfg = load_config(overrides={"canary": {"p95_latency_max_ms": 420.0, "p95_latency_for": "90s"}})
    rules = {r["alert"]: r for r in yaml.safe_load(bundle.alert_rules_yaml(cfg, version="v2"))["groups"][0]["rules"]}
    assert rules["SoakCanaryP95LatencyHigh"]["expr"] == "soak_p95_latency_seconds > 0.42"
    assert rules["SoakCanaryP95LatencyHigh"]["for"] == "90s"


def test_config_strings_cannot_break_the_document():
    nasty = "critical\n      - alert: Injected\n'\"{{ $x }}: #"
    cfg = load_config(overrides={"bundle": {"alert_severity": nasty}})
    doc = yaml.safe_load(bundle.alert_rules_yaml(cfg, version="v1"))
    rules = doc["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == list(EXPECTED)
    assert {r["labels"]["severity"] for r in rules} == {nasty}


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


@pytest.mark.system
def test_promtool_check_rules(tmp_path):
    promtool = require_tool("promtool")
    rules = write_rules(tmp_path, version="v1.4.0-rc.1+build.7")
    r = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 5 rules found" in r.stdout + r.stderr


@pytest.mark.system
def test_promtool_check_rules_on_built_bundle(tmp_path):
    """The file inside a real bundle (not only the generator's output) passes promtool."""
    promtool = require_tool("promtool")
    from test_bundle import make_reported_run

    out = tmp_path / "b"
    bundle.build_bundle(make_reported_run(tmp_path / "runs"), out, load_config())
    r = subprocess.run([promtool, "check", "rules", str(out / bundle.RULES)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def _labels(alert, action):
    return {"severity": "critical", "action": action, "release": "v1.0.0", "job": "bot"}


@pytest.mark.system
def test_promtool_unit_tests_for_durations_and_units(tmp_path):
    """promtool's rule unit tests: each trigger fires only after its `for:` and only past its threshold."""
    promtool = require_tool("promtool")
    rules = write_rules(tmp_path)

    def series(name, values):
        return {"series": f'{name}{{job="bot"}}', "values": values}

    # 1m resolution, 12 samples. p95 crosses 500 ms at t=2m (0.501 s); 500 ms exactly never fires.
    # maker/taker drops below 0.7 at t=1m; risk exactly 0.6 never fires, 0.61 from t=4m; net < 0 from t=0.
    inputs = [
        series("soak_p95_latency_seconds", "0.45 0.5 0.501 0.501 0.501 0.501 0.501 0.501 0.501 0.501 0.501 0.501"),
        series("soak_maker_taker_ratio", "0.8 0.69 0.69 0.69 0.69 0.69 0.69 0.69 0.69 0.69 0.69 0.69"),
        series("soak_risk_ratio", "0.6 0.6 0.6 0.6 0.61 0.61 0.61 0.61 0.61 0.61 0.61 0.61"),
        series("soak_net_bps", "-0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1 -0.1"),
    ]
    cases = [
        ("SoakCanaryP95LatencyHigh", "4m", False), ("SoakCanaryP95LatencyHigh", "5m", True),
        ("SoakCanaryMakerTakerLow", "5m", False), ("SoakCanaryMakerTakerLow", "6m", True),
        ("SoakCanaryRiskHigh", "5m", False), ("SoakCanaryRiskHigh", "6m", True),
        ("SoakCanaryNetEdgeNegative", "9m", False), ("SoakCanaryNetEdgeNegative", "10m", True),
        ("SoakCanaryMetricsAbsent", "11m", False),
    ]
    actions = {"SoakCanaryRiskHigh": "full_rollback", "SoakCanaryMetricsAbsent": "investigate"}
    values = {"SoakCanaryP95LatencyHigh": "0.501", "SoakCanaryMakerTakerLow": "0.69",
              "SoakCanaryRiskHigh": "0.61", "SoakCanaryNetEdgeNegative": "-0.1"}
    tests = []
    for alert, t, fired in cases:
        exp = []
        if fired:
            rule = next(r for r in yaml.safe_load(rules.read_text())["groups"][0]["rules"] if r["alert"] == alert)
            ann = {k: v.replace("{{ $value }}", values[alert]) for k, v in rule["annotations"].items()}
            exp = [{"exp_labels": _labels(alert, actions.get(alert, "quick_rollback")), "exp_annotations": ann}]
        tests.append({"eval_time": t, "alertname": alert, "exp_alerts": exp})
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(json.dumps({  # JSON is YAML
        "rule_files": [rules.name], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": inputs, "alert_rule_test": tests}]}))
    r = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


@pytest.mark.system
def test_promtool_absent_rule_fires_without_data(tmp_path):
    promtool = require_tool("promtool")
    rules = write_rules(tmp_path)
    test_file = tmp_path / "absent_test.yml"
    test_file.write_text(json.dumps({
        "rule_files": [rules.name], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": 'soak_net_bps{job="bot"}', "values": "3x15"}],
                   "alert_rule_test": [
                       {"eval_time": "9m", "alertname": "SoakCanaryMetricsAbsent", "exp_alerts": []},
                       {"eval_time": "10m", "alertname": "SoakCanaryMetricsAbsent", "exp_alerts": [{
                           "exp_labels": {"severity": "critical", "action": "investigate", "release": "v1.0.0"},
                           "exp_annotations": {
                               "summary": "no soak_* canary metrics: the canary cannot be judged",
                               "description": "No data is not a pass: check the exporter before continuing "
                                              "the rollout."}}]}]}]}))
    r = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
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
    rules = write_rules(tmp_path)
    proc, port = _start_prometheus(tmp_path, rules, [])
    try:
        body = _get_json(f"http://127.0.0.1:{port}/api/v1/rules?type=alert")
    finally:
        _stop(proc)
    assert body["status"] == "success"
    (group,) = body["data"]["groups"]
    assert group["name"] == bundle.RULE_GROUP and group["file"] == str(rules)
    got = {r["name"]: r for r in group["rules"]}
    assert set(got) == set(EXPECTED)
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
    rules = write_rules(tmp_path, load_config(overrides={"canary": fast}))
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
