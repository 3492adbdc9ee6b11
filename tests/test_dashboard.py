"""Grafana dashboard of the bundle: a panel per goal KPI with the configured goals as thresholds, and every
panel's PromQL answered by a real Prometheus scraping a running soak (with the shipped canary rules loaded)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, require_tool, run_cli
from helpers import stop_process as _stop
from helpers import wait_http as _wait
from test_bundle import make_reported_run, ramp

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.kpis import KPI
from soaklib.publish import bundle, dashboard

SELECTOR = 'job="soak-canary"'
OTHER = {  # a second config: other goals, and a goal on a KPI the defaults do not judge
    "goals": {"maker_taker_ratio": {"hard": 0.75, "soft": 0.8}, "p95_latency_ms": {"hard": 420.0, "soft": 400.0},
              "risk_ratio": {"hard": 0.5, "soft": 0.45}, "net_bps": {"hard": 1.5, "soft": 1.5},
              "cancel_ratio": {"agg": "mean", "op": "<=", "hard": 0.3, "soft": 0.25}},
}


def _build(tmp: Path, cfg, selector: str | None = SELECTOR) -> Path:
    out = tmp / "release" / "v1.0.0"
    bundle.build_bundle(make_reported_run(tmp / "runs", params=ramp, cfg=cfg), out, cfg, selector=selector,
                        allow_not_ready=True)
    return out


def _panels(doc: dict) -> list[dict]:
    return [p for p in doc["panels"] if p["type"] != "row"]


# ------------------------------------------------------------------------------------ structure

@pytest.mark.parametrize("overrides", [None, OTHER], ids=["default-goals", "other-goals"])
def test_a_panel_per_goal_kpi_with_the_configured_goals(tmp_path, overrides):
    cfg = load_config(overrides=overrides)
    out = _build(tmp_path, cfg)
    doc = _io.read_json(out / bundle.DASHBOARD)
    # the bundle lists and hashes it like every other file
    assert _io.read_json(out / bundle.MANIFEST)["files"][bundle.DASHBOARD]["sha256"] == \
        _io.sha256_file(out / bundle.DASHBOARD)
    assert bundle.verify_bundle(out).ok
    goals = cfg["goals"]
    assert ("cancel_ratio" in goals) == (overrides is not None)
    for kpi, g in goals.items():
        k = KPI[kpi]
        metric = re.compile(rf"^{k.prom_name}\{{")
        (panel,) = [p for p in _panels(doc) if any(metric.match(t["expr"]) for t in p["targets"])
                    and "thresholds" in p["fieldConfig"]["defaults"]]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        hard, soft = round(g["hard"] * k.prom_scale, 12), round(g["soft"] * k.prom_scale, 12)
        colors = {s["value"]: s["color"] for s in steps}
        assert steps[0]["value"] is None  # the base step (-inf)
        if g["op"] in (">=", ">"):  # below hard FAIL, between WARN, from soft PASS
            assert colors[None] == "red"
            assert colors == ({None: "red", hard: "yellow", soft: "green"} if soft != hard else
                              {None: "red", hard: "green"})
        else:
            assert colors == ({None: "green", soft: "yellow", hard: "red"} if soft != hard else
                              {None: "green", hard: "red"})
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"  # drawn as lines
    # the p95 goal is in the gauge's base unit (seconds), as the alert rules have it
    p95 = [p for p in _panels(doc) if p["targets"][0]["expr"].startswith("soak_p95_latency_seconds")][0]
    assert p95["fieldConfig"]["defaults"]["unit"] == "s"
    assert {s["value"] for s in p95["fieldConfig"]["defaults"]["thresholds"]["steps"]} == \
        {None, goals["p95_latency_ms"]["hard"] / 1000, goals["p95_latency_ms"]["soft"] / 1000}
    # every target carries the rules' selector and the two variables; one panel per registry parameter
    exprs = [e for _t, _r, e in dashboard.panel_targets(doc)]
    assert all(SELECTOR in e and 'job=~"$job"' in e and 'instance=~"$instance"' in e for e in exprs)
    params = {m.group(1) for e in exprs for m in re.finditer(r'param="([^"]+)"', e)}
    assert params == set(cfg["params"])
    # unique panel ids, same input -> same bytes
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    rules, m = bundle._rules(cfg, "v1.0.0", SELECTOR)
    assert (out / bundle.DASHBOARD).read_text() == dashboard.dashboard_json(
        cfg, version="v1.0.0", matchers=m, alerts=[r["alert"] for r in rules if "alert" in r])


def test_tampered_dashboard_fails_verify(tmp_path, capsys):
    out = _build(tmp_path, load_config())
    doc = _io.read_json(out / bundle.DASHBOARD)
    _panels(doc)[0]["targets"][0]["expr"] = "vector(1)"
    _io.write_json(out / bundle.DASHBOARD, doc)
    code, _o, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 1 and f"{bundle.DASHBOARD}: content changed" in err


# ------------------------------------------------------------------------------------ real Prometheus

def _grafana_regex_escape(value: str) -> str:
    """Grafana's Prometheus datasource (prometheusSpecialRegexEscape) for a multi/include-all variable:
    regex metacharacters get a backslash, written as a PromQL string escape (two backslashes)."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


def interpolate(expr: str, selected: dict[str, list[str] | None]) -> str:
    """Substitute $job/$instance as Grafana does: "All" (None) -> the custom all value, unescaped; one value
    -> escaped; several -> (a|b)."""
    def one(m):
        vals = selected[m.group(1)]
        if vals is None:
            return dashboard.ALL_VALUE
        esc = [_grafana_regex_escape(v) for v in vals]
        return esc[0] if len(esc) == 1 else "(" + "|".join(esc) + ")"
    out = re.sub(r"\$(\w+)", one, expr)
    assert "$" not in out, out
    return out


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.system
def test_every_panel_query_returns_data_from_a_running_soak(tmp_path):
    """`soak run --metrics-port` on the simulator, scraped every second by a real Prometheus as job
    "soak-canary" (the bundle's selector) with the bundle's rules loaded; the configured net edge goal is
    out of reach, so the warning-tier alert is pending and ALERTS has a series. Every target of every
    panel, with the variables substituted as Grafana would (All, then the one job and instance), must
    return data, and so must the variables' own label_values queries."""
    exe = require_tool("prometheus")
    cfg = load_config(overrides={"goals": {"net_bps": {"hard": 50.0, "soft": 60.0}}})
    out = _build(tmp_path, cfg)
    doc = _io.read_json(out / bundle.DASHBOARD)
    targets = dashboard.panel_targets(doc)
    assert len(targets) >= 30

    mport, pport = free_port(), free_port()
    soak = subprocess.Popen([sys.executable, "-m", "soaklib", "run", "--runs-dir", str(tmp_path / "soak"),
                             "--iterations", "60", "--auto-tune", "--metrics-port", str(mport)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    conf = tmp_path / "prometheus.yml"
    conf.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(out / bundle.RULES)],
        "scrape_configs": [{"job_name": "soak-canary", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"127.0.0.1:{mport}"]}]}],
    }))
    prom = None
    try:
        _wait(f"http://127.0.0.1:{mport}/metrics", soak, deadline_s=60)
        prom = subprocess.Popen([exe, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait(f"http://127.0.0.1:{pport}/-/ready", prom)

        def query(expr: str) -> list:
            return _get(f"http://127.0.0.1:{pport}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["result"]

        def without_data(selected: dict, exprs: list[tuple[str, str, str]], deadline_s: float) -> list:
            """The targets still empty at the deadline (each polled until it answers with data: the first
            scrape after the first iteration and the first rule evaluation after it come at their own time)."""
            end = time.monotonic() + deadline_s
            while True:
                exprs = [(t, r, e) for t, r, e in exprs if not query(interpolate(e, selected))]
                if not exprs or time.monotonic() > end:
                    return exprs
                time.sleep(0.5)

        everything = {"job": None, "instance": None}  # the variables' default: All
        empty = without_data(everything, targets, 40)
        assert not empty, "panels without data: " + "; ".join(f"{t} [{r}] {e}" for t, r, e in empty)
        # one job and instance chosen in the variables' drop-downs (escaped as Grafana escapes them)
        chosen = {"job": ["soak-canary"], "instance": [f"127.0.0.1:{mport}"]}
        empty = without_data(chosen, targets + [("net edge goal alert", "-", 'ALERTS{alertname='
                                                 '"SoakCanaryNetEdgeBelowGoal",job=~"$job",instance=~"$instance"}')], 20)
        assert not empty, empty
        assert soak.poll() is None, "the soak finished before every panel had data: not a running soak"
        # the variables: label_values(METRIC{matchers}, LABEL) is Grafana's call of /api/v1/label/LABEL/values
        for var in doc["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"])
            assert m, var["query"]
            vals = _get(f"http://127.0.0.1:{pport}/api/v1/label/{m.group(2)}/values?"
                        + urllib.parse.urlencode({"match[]": interpolate(m.group(1), everything)}))
            assert vals == chosen[var["name"]], (var["name"], vals)
    finally:
        if prom is not None:
            _stop(prom)
        _stop(soak)
