"""The KPI gate: statuses, aggregates, missing data, and `soak gate` exit codes."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli

from soaklib.core import goals
from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.judge import gate
from soaklib.publish.markdown import gate_markdown
from soaklib.store.synthetic import write_synthetic_run

GOOD = {"maker_taker_ratio": 0.88, "p95_latency_ms": 250.0, "risk_ratio": 0.25, "net_bps": 3.0}


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def frame(n=10, failed=(), **cols):
    """Iterations frame like Run.iterations: KPI columns (scalars or per-iteration lists) + status."""
    idx = pd.Index(range(1, n + 1), name="iteration")
    data = {}
    for k, v in {**GOOD, **cols}.items():
        data[k] = np.asarray(v, dtype=float) if np.ndim(v) else np.full(n, float(v))
    df = pd.DataFrame(data, index=idx)
    df["status"] = "ok"
    for i in failed:
        df.loc[i, list(data)] = np.nan
        df.loc[i, "status"] = "failed"
    return df



# ------------------------------------------------------------------------------------ evaluate

def test_all_goals_met_pass(cfg):
    r = gate.evaluate(frame(), cfg, 8)
    assert r.verdict == "PASS"
    assert [g.status for g in r.goals] == ["PASS"] * 4
    assert r.window == (3, 10) and r.iterations_evaluated == list(range(3, 11))
    assert r.goal("net_bps").value == pytest.approx(3.0) and r.goal("net_bps").n == 8
    assert r.thresholds["p95_latency_ms"] == {"agg": "max", "op": "<=", "hard": 340.0, "soft": 330.0}


def test_soft_band_warns_and_hard_miss_fails(cfg):
    r = gate.evaluate(frame(maker_taker_ratio=0.84), cfg, 8)  # between hard 0.83 and soft 0.85
    assert r.goal("maker_taker_ratio").status == "WARN" and r.verdict == "WARN"
    r = gate.evaluate(frame(maker_taker_ratio=0.84, net_bps=2.0), cfg, 8)
    assert r.goal("net_bps").status == "FAIL" and r.verdict == "FAIL"


def test_threshold_is_inclusive(cfg):
    r = gate.evaluate(frame(maker_taker_ratio=0.85, p95_latency_ms=330.0), cfg, 8)
    assert r.goal("maker_taker_ratio").status == "PASS" and r.goal("p95_latency_ms").status == "PASS"


def test_aggregates_follow_config(cfg):
    lat = [250.0] * 10
    lat[6] = 341.0  # one spike inside the window: max fails
    risk = [0.3] * 10
    risk[9] = 0.9  # one outlier: the median does not move
    r = gate.evaluate(frame(p95_latency_ms=lat, risk_ratio=risk), cfg, 8)
    assert r.goal("p95_latency_ms").value == 341.0 and r.goal("p95_latency_ms").status == "FAIL"
    assert r.goal("risk_ratio").value == pytest.approx(0.3) and r.goal("risk_ratio").status == "PASS"
    # the spike outside the last 8 does not count
    lat2 = [250.0] * 10
    lat2[0] = 900.0
    assert gate.evaluate(frame(p95_latency_ms=lat2), cfg, 8).goal("p95_latency_ms").status == "PASS"


def test_last_agg_and_mean_values(cfg):
    c = load_config(overrides={"goals": {"net_bps": {"agg": "last"}}})
    net = [3.0] * 9 + [1.0]
    r = gate.evaluate(frame(net_bps=net), c, 8)
    assert r.goal("net_bps").value == 1.0 and r.goal("net_bps").status == "FAIL"
    r = gate.evaluate(frame(net_bps=net), cfg, 8)
    assert r.goal("net_bps").value == pytest.approx((3.0 * 7 + 1.0) / 8)


def test_failed_iterations_excluded_with_note(cfg):
    # failed 9 and 10: the window is the last 8 ok ones (1..8), the failures are named
    r = gate.evaluate(frame(failed=(9, 10)), cfg, 8)
    assert r.iterations_evaluated == list(range(1, 9)) and r.verdict == "PASS"
    assert any("2 failed iteration(s) excluded: 9-10" in n for n in r.notes)


def test_missing_kpi_is_inconclusive_never_pass(cfg):
    df = frame().drop(columns=["risk_ratio"])
    r = gate.evaluate(df, cfg, 8)
    assert r.goal("risk_ratio").status == "INCONCLUSIVE" and r.goal("risk_ratio").value is None
    assert r.verdict == "INCONCLUSIVE"


def test_all_nan_kpi_is_inconclusive(cfg):
    r = gate.evaluate(frame(net_bps=np.nan), cfg, 8)
    assert r.goal("net_bps").status == "INCONCLUSIVE" and r.goal("net_bps").n == 0
    assert r.verdict == "INCONCLUSIVE"


def test_some_nan_values_counted_and_named(cfg):
    net = [3.0] * 10
    net[9] = np.nan
    r = gate.evaluate(frame(net_bps=net), cfg, 8)
    g = r.goal("net_bps")
    assert g.n == 7 and g.status == "INCONCLUSIVE" and "10" in g.note


def test_no_iterations_inconclusive(cfg):
    r = gate.evaluate(frame().iloc[0:0], cfg, 8)
    assert r.verdict == "INCONCLUSIVE" and r.window is None
    assert all(g.status == "INCONCLUSIVE" and g.n == 0 for g in r.goals)


def test_short_run_evaluated_but_not_passed(cfg):
    r = gate.evaluate(frame(n=3), cfg, 8)
    assert r.verdict == "INCONCLUSIVE"
    assert r.goal("net_bps").value == pytest.approx(3.0) and r.goal("net_bps").n == 3
    assert any("fewer than last_n=8" in n for n in r.notes)
    # a short run that already misses a hard goal fails
    r = gate.evaluate(frame(n=3, net_bps=-1.0), cfg, 8)
    assert r.verdict == "FAIL" and r.goal("net_bps").status == "FAIL"


def test_overall_order():
    assert goals.overall(["PASS", "WARN", "INCONCLUSIVE", "FAIL"]) == "FAIL"
    assert goals.overall(["PASS", "WARN", "INCONCLUSIVE"]) == "INCONCLUSIVE"
    assert goals.overall(["PASS", "WARN"]) == "WARN"
    assert goals.overall(["PASS"]) == "PASS"
    assert goals.overall([]) == "INCONCLUSIVE"


@pytest.mark.parametrize("goal,field", [({"agg": "avg"}, "goals.net_bps.agg"), ({"op": "=>"}, "goals.net_bps.op"),
                                        ({"soft": 2.0}, "goals.net_bps.soft"), ({"hard": "x"}, "goals.net_bps.hard")])
def test_bad_goal_config_names_field(goal, field):
    c = load_config()
    c["goals"]["net_bps"].update(goal)
    with pytest.raises(ConfigError) as ei:
        gate.evaluate(frame(), c, 8)
    assert ei.value.field == field


def test_dict_roundtrip_and_markdown(cfg):
    r = gate.evaluate(frame(maker_taker_ratio=0.84, failed=(2,)), cfg, 8)
    d = r.to_dict()
    assert d["verdict"] == "WARN" and d["thresholds"]["net_bps"]["hard"] == 2.5
    back = gate.GateResult.from_dict(json.loads(_io.dumps(d)))
    assert back.to_dict() == d
    md = gate_markdown(r)
    assert "## Soak gate: **WARN**" in md and "| maker_taker_ratio | mean | >= 0.83 (soft 0.85) | 0.84 | 8 | WARN |" in md


def test_markdown_escapes_untrusted_goal_name():
    c = load_config()  # a goal name the config would refuse (not a KPI) must still be escaped
    c["goals"]["<script>x"] = {"agg": "mean", "op": ">=", "hard": 1.0}
    md = gate_markdown(gate.evaluate(frame(), c, 8))
    assert "<script>" not in md and "&lt;script&gt;" in md


def test_snapshot_evaluation_agrees(cfg, tmp_path):
    from soaklib.judge import analysis
    from soaklib.store.loader import open_run

    p = write_synthetic_run(tmp_path, 10, kpis=lambda i: {"net_bps": 2.0 + 0.1 * i, "maker_taker_ratio": 0.84})
    run = open_run(p)
    snap = analysis.snapshot(run, cfg, 8)
    a = gate.evaluate(run.iterations, cfg, 8)
    b = gate.evaluate_snapshot(snap, cfg)
    assert a.verdict == b.verdict == "WARN"
    for ga, gb in zip(a.goals, b.goals):
        assert ga.status == gb.status and math.isclose(ga.value, gb.value, abs_tol=1e-4)
    # a snapshot without statistics is never a pass
    assert gate.evaluate_snapshot({"iterations_analyzed": list(range(3, 11))}, cfg).verdict == "INCONCLUSIVE"
    # seed spelling kpi_last8 is accepted
    seed = {"kpi_last8": snap["kpi_last_n"], "iterations_analyzed": snap["iterations_analyzed"]}
    assert gate.evaluate_snapshot(seed, cfg).verdict == "WARN"


# ------------------------------------------------------------------------------------ soak gate

def test_cli_pass_writes_gate_json_and_summary(tmp_path, capsys):
    p = write_synthetic_run(tmp_path / "runs", 10, failed=[4])
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    code, out, err = run_cli(["gate", str(tmp_path / "runs" / "latest"), "--summary-md", str(summary)], capsys)
    assert code == 0, err
    assert "verdict: PASS" in out
    d = _io.read_json(p / "reports" / "analysis" / "GATE.json")
    assert d["verdict"] == "PASS" and d["window"] == [2, 10] and 4 not in d["iterations_evaluated"]
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "## Soak gate: **PASS**" in text


def test_cli_fails_a_deliberately_bad_run(tmp_path, capsys):
    # a strategy that loses money and lags: latency spikes and negative edge in the window
    bad = lambda i: {"net_bps": -0.5 - 0.1 * i, "p95_latency_ms": 300.0 + 20 * i, "maker_taker_ratio": 0.6}
    p = write_synthetic_run(tmp_path, 12, kpis=bad)
    code, out, err = run_cli(["gate", str(p)], capsys)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("soak: error: gate FAIL")
    d = _io.read_json(p / "reports" / "analysis" / "GATE.json")
    assert d["verdict"] == "FAIL"
    assert {g["kpi"]: g["status"] for g in d["goals"]} == {
        "maker_taker_ratio": "FAIL", "p95_latency_ms": "FAIL", "risk_ratio": "PASS", "net_bps": "FAIL"}


def test_cli_warn_exit_codes(tmp_path, capsys):
    p = write_synthetic_run(tmp_path, 10, kpis={"maker_taker_ratio": 0.84})
    assert run_cli(["gate", str(p)], capsys)[0] == 0
    code, _out, err = run_cli(["gate", str(p), "--fail-on-warn"], capsys)
    assert code == 1 and "WARN" in err


def test_cli_missing_data_is_not_a_pass(tmp_path, capsys):
    # a goal on a KPI the run never measured
    p = write_synthetic_run(tmp_path, 10)
    conf = tmp_path / "extra.toml"
    conf.write_text('[goals.ws_lag_p95_ms]\nagg = "mean"\nop = "<="\nhard = 1.0\n')
    code, out, err = run_cli(["gate", str(p), "--config", str(conf)], capsys)
    assert code == 1 and "gate INCONCLUSIVE" in err and "ws_lag_p95_ms=INCONCLUSIVE" in err
    assert "KPI missing" not in err and _io.read_json(p / "reports/analysis/GATE.json")["verdict"] == "INCONCLUSIVE"
    p2 = write_synthetic_run(tmp_path / "short", 3)
    code, out, _ = run_cli(["gate", str(p2)], capsys)
    assert code == 1 and "fewer than last_n=8" in out
    assert run_cli(["gate", str(p2), "--last-n", "3"], capsys)[0] == 0


def test_cli_bad_input_one_line_exit_2(tmp_path, capsys):
    code, out, err = run_cli(["gate", str(tmp_path / "nope")], capsys)
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    p = write_synthetic_run(tmp_path, 4)
    bad = tmp_path / "bad.toml"
    bad.write_text('[goals.net_bps]\nagg = "avg"\n')
    code, out, err = run_cli(["gate", str(p), "--config", str(bad)], capsys)
    assert code == 2 and "goals.net_bps.agg" in err and "Traceback" not in err


# ------------------------------------------------------------------ one gate: the per-value check

def test_goal_status_per_value(cfg):
    g = cfg["goals"]["net_bps"]  # >= hard 2.5, soft 2.7
    assert goals.goal_status(2.8, g) == goals.PASS
    assert goals.goal_status(2.7, g) == goals.PASS      # inclusive
    assert goals.goal_status(2.6, g) == goals.WARN
    assert goals.goal_status(2.5, g) == goals.WARN      # inclusive
    assert goals.goal_status(2.4, g) == goals.FAIL
    for missing in (None, float("nan"), float("inf"), True, "3.0"):
        assert goals.goal_status(missing, g) == goals.INCONCLUSIVE
        assert goals.goal_met(missing, g) is False
    lat = goals.Goal(kpi="p95_latency_ms", agg="max", op="<=", hard=340.0, soft=330.0)
    assert [goals.goal_status(v, lat) for v in (330.0, 335.0, 340.0, 341.0)] == ["PASS", "WARN", "WARN", "FAIL"]
    assert [goals.goal_met(v, lat) for v in (330.0, 340.0, 340.5)] == [True, True, False]
    assert goals.goal_status(1, {"op": ">=", "hard": 1}) == goals.PASS  # no soft: never WARN
    with pytest.raises(ConfigError):
        goals.goal_status(1.0, {"op": "=>", "hard": 1.0})


# values on, inside and outside each threshold, plus missing ones, for every operator the gate knows
_ONE_GATE_CASES = [(op, v) for op in (">=", ">", "<=", "<")
                   for v in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, None, float("nan"))]


@pytest.mark.parametrize("op, value", _ONE_GATE_CASES)
def test_per_iteration_goal_checks_agree_with_the_gate(op, value, monkeypatch):
    """records.kpi_verdict, goals.goals_pass/failing_goals and the calibration sweep judge one value
    exactly as gate.evaluate judges a one-iteration window: there is one goal check."""
    from types import SimpleNamespace

    from soaklib.bench import calibration
    from soaklib.core import records

    hard, soft = (2.0, 3.0) if op in (">=", ">") else (3.0, 2.0)
    cfg = load_config()
    cfg["goals"] = {"k": {"agg": "last", "op": op, "hard": hard, "soft": soft}}
    summary = {"k": value}
    f = pd.DataFrame({"k": [np.nan if value is None else value], "status": ["ok"]},
                     index=pd.Index([1], name="iteration"))
    expected = gate.evaluate(f, cfg, 1).goal("k").status
    assert goals.goal_status(value, cfg["goals"]["k"]) == expected

    verdict, reasons = records.kpi_verdict(summary, cfg)
    assert verdict == {"PASS": "PASS", "WARN": "WARN", "FAIL": "FAIL", "INCONCLUSIVE": "FAIL"}[expected]
    assert bool(reasons) == (expected != "PASS")
    met = expected in ("PASS", "WARN")
    assert goals.goals_pass(summary, cfg) is met
    assert goals.failing_goals(summary, cfg) == ([] if met else ["k"])

    monkeypatch.setattr(calibration, "simulate",
                        lambda *a, **kw: SimpleNamespace(kpis={"k": np.nan if value is None else value}))
    out = calibration.evaluate_goals({}, 0, iterations=1, last=1, cfg=cfg)
    assert out["k"]["pass"] is met and out["all_pass"] is met
