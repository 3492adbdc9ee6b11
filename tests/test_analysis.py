"""soaklib.judge.analysis: last-N statistics, trend, guards, tuning summary and the snapshot, checked
against values computed by hand from the fixture below."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soaklib.bench.analysis import synthetic_run
from soaklib.core.config import load_config
from soaklib.core.errors import InputError
from soaklib.core.run import Run
from soaklib.judge import analysis, gate
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run


def _kpis(i: int) -> dict:
    return {
        "maker_taker_ratio": round(0.80 + 0.02 * i, 4),
        "net_bps": round(-1.0 - 0.5 * i, 4),                  # negative and falling
        "p95_latency_ms": 350.0 if i == 9 else 200.0 + 10 * i,  # one spike in the window
        "risk_ratio": 0.30,
    }


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    path = write_synthetic_run(root, 10, kpis=_kpis, failed=[8],
                               params=lambda i: {"min_interval_ms": 60 + min(i, 5)})
    return open_run(path)


def test_window_skips_failed_iterations_like_the_gate(run, cfg):
    its, notes = analysis.window(run.iterations, 4)
    assert its == [6, 7, 9, 10]
    assert notes == []
    assert gate.evaluate(run.iterations, cfg, 4).iterations_evaluated == its


def test_snapshot_values_match_hand_computation(run, cfg):
    s = analysis.snapshot(run, cfg, 4)
    assert s["schema_version"] == "1.2"
    assert s["iterations_total"] == 10 and s["iterations_ok"] == 9
    assert s["iterations_failed"] == [8]
    assert s["iterations_analyzed"] == [6, 7, 9, 10]
    mt = s["kpi_last_n"]["maker_taker_ratio"]   # .92 .94 .98 1.00
    assert (mt["mean"], mt["median"], mt["min"], mt["max"]) == (0.96, 0.96, 0.92, 1.0)
    assert mt["trend"] == "up"
    net = s["kpi_last_n"]["net_bps"]            # -4 -4.5 -5.5 -6
    assert (net["mean"], net["median"], net["min"], net["max"]) == (-5.0, -5.0, -6.0, -4.0)
    assert net["trend"] == "down" and net["slope"] == pytest.approx(-0.5)
    p95 = s["kpi_last_n"]["p95_latency_ms"]     # 260 270 350 300
    assert (p95["max"], p95["mean"]) == (350.0, 295.0)
    assert s["kpi_last_n"]["risk_ratio"]["trend"] == "flat"
    # all iterations: maker .82 .. 1.00 without .96 (failed 8)
    assert s["kpi_all"]["maker_taker_ratio"]["count"] == 9
    assert s["kpi_all"]["maker_taker_ratio"]["min"] == 0.82
    # goals from the gate: maker mean .96 ok, p95 max 350 > 340 fail, risk .3 ok, net -5 < 2.5 fail
    assert s["goals_met"] == {"maker_taker_ok": True, "p95_latency_ok": False, "risk_ok": True, "net_bps_ok": False}
    assert s["pass_count_last_n"] == 2
    assert s["verdict"] == "FAIL" and s["freeze_ready"] is False
    assert s["goals"]["p95_latency_ms"]["value"] == 350.0


def test_tuning_summary_counts_what_really_changed(run, cfg):
    t = analysis.snapshot(run, cfg, 4)["tuning_summary"]
    # params 61,62,63,64,65,65...: iterations 1-4 moved min_interval_ms, nothing after
    assert t["applied_count"] == 4 and t["applied_iterations"] == [1, 2, 3, 4]
    assert t["changed_keys"] == ["min_interval_ms"]
    assert t["skip_reasons"] == {"iteration_failed": 1, "no_change": 5}
    assert t["decisions"] == {"applied": 4}


def test_snapshot_is_gateable_and_agrees_with_the_gate(run, cfg):
    s = analysis.snapshot(run, cfg, 4)
    assert gate.evaluate_snapshot(s, cfg, 4).verdict == s["verdict"] == gate.evaluate(run.iterations, cfg, 4).verdict


@pytest.mark.parametrize("values, label", [
    ([-1.0, -1.5, -2.0, -2.6, -3.0, -3.4], "down"),   # negative, falling
    ([-3.0, -2.6, -2.0, -1.5, -1.0, -0.6], "up"),     # negative, rising
    ([-2.0, -2.01, -1.99, -2.0, -2.005, -2.0], "flat"),
    ([1.0, 1.2, 1.4, 1.7, 2.0, 2.2], "up"),
    ([0.0, -0.1, -0.2, -0.3, -0.4, -0.5], "down"),    # crosses zero
])
def test_trend_is_sign_safe(values, label, cfg):
    df = pd.DataFrame({"k": values}, index=range(1, len(values) + 1))
    assert analysis.trend(df, cfg).loc["k", "trend"] == label


def test_theil_sen_resists_one_outlier():
    x = np.arange(10.0)
    y = 2.0 * x
    y[3] = 500.0
    assert analysis.theil_sen(x, y)[0] == pytest.approx(2.0)


def test_direction_respects_goal_operator():
    assert analysis.direction("down", "<=") == "improving"
    assert analysis.direction("down", ">=") == "worsening"
    assert analysis.direction("flat", ">=") == "flat"


def test_guard_counts_only_inside_the_window(cfg):
    decs = {1: [("a", "blocked", "velocity")],                          # outside the window
            4: [("a", "blocked", "velocity")],
            5: [("a", "clamped", "velocity"), ("b", "blocked", "velocity")],  # same iteration once
            6: [("a", "blocked", "frozen"), ("b", "applied", None)]}
    recs = [{"iteration": i, "status": "ok", "summary": {"net_bps": 3.0},
             "runtime_guards": {"latency_buffer_active_s": 2.0 if i == 5 else 0.0,
                                "partial_freeze_count": 1 if i == 2 else 0},
             "tuning": {"decisions": [{"param": p, "verdict": v, "guard": g} for p, v, g in decs.get(i, [])]}}
            for i in range(1, 7)]
    run = Run(path=Path("."), layout="soaklib", dialect="soaklib", manifest={}, records=recs)
    g = analysis.guards_in_window(run, [4, 5, 6])
    assert g["counts"]["velocity"] == 2 and g["iterations"]["velocity"] == [4, 5]
    assert g["counts"]["freeze"] == 1
    assert g["counts"]["latency_soft"] == 1 and g["counts"]["latency_hard"] == 0


def test_bad_windows(run, cfg, tmp_path):
    s = analysis.snapshot(run, cfg, 50)
    assert s["iterations_analyzed"] == [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert any("larger than the run" in n for n in s["notes"])
    with pytest.raises(InputError, match="last_n"):
        analysis.snapshot(run, cfg, 0)
    one = open_run(write_synthetic_run(tmp_path / "one", 1))
    s1 = analysis.snapshot(one, cfg, 8)
    assert s1["kpi_last_n"]["net_bps"]["trend"] == "n/a" and s1["verdict"] == "INCONCLUSIVE"
    empty = open_run(write_synthetic_run(tmp_path / "empty", 0, latest=False))
    with pytest.raises(InputError, match="no iterations"):
        analysis.snapshot(empty, cfg, 8)


def test_snapshot_of_100k_iterations_counts_everything(cfg):
    # speed is the benchmark's business (python -m soaklib.bench analysis); this checks the result
    run = synthetic_run(100_000)
    s = analysis.snapshot(run, cfg, 8)
    assert s["iterations_total"] == 100_000 and s["tuning_summary"]["applied_count"] == 100_000


def test_trend_of_a_long_noisy_series_uses_buckets_and_stays_right(cfg):
    n = 100_001
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"k": -np.arange(n) * 0.001 + rng.normal(0, 0.5, n)}, index=np.arange(1, n + 1))
    t = analysis.trend(df, cfg).loc["k"]
    assert t["trend"] == "down" and t["slope"] == pytest.approx(-0.001, rel=0.02)
