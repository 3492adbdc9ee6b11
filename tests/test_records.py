"""Record construction, the shipped JSON Schema and the derived TUNING_REPORT."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import RecordError
from soaklib.core.records import (
    SUMMARY_KPI_KEYS,
    WALL_CLOCK_FIELDS,
    build_record,
    build_summary,
    kpi_verdict,
    neg_edge_drivers,
    next_params,
    plain,
    schema,
    strip_wall_clock,
    tuning_off_block,
    tuning_report,
    validate_record,
)
from soaklib.store.synthetic import DEFAULT_KPIS

CFG = load_config()
PARAMS = {"min_interval_ms": 60, "impact_cap_ratio": 0.1, "base_spread_bps_delta": 0.05}


def _rec(i=3, kpis=None, failure=None, params=PARAMS):
    r = build_record(iteration=i, seed=42, runner="sim", scenario="default", start_s=(i - 1) * 60.0, duration_s=60.0,
                     kpis=DEFAULT_KPIS if kpis is None else kpis, params={} if failure else params,
                     market={"regimes": ["calm"]}, runtime_guards={}, events=10, failure=failure, cfg=CFG)
    r["tuning"] = tuning_off_block(params, summary=r["summary"])
    return r


def test_schema_is_shipped_and_valid():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    assert schema()["$defs"]["summary"]["properties"]["risk_ratio"]["$ref"] == "#/$defs/ratio"


def test_built_record_validates_and_has_the_documented_shape():
    r = _rec()
    assert validate_record(r, "ITER_SUMMARY_3.json") is r
    assert set(r) >= {"schema_version", "iteration", "status", "failure", "seed", "runner", "scenario", "window",
                      "summary", "params", "market", "runtime_guards", "events", "tuning", "wall"}
    assert r["status"] == "ok" and r["failure"] is None
    assert r["window"] == {"start_s": 120.0, "duration_s": 60.0}
    assert set(SUMMARY_KPI_KEYS) <= set(r["summary"])
    # written with sorted keys, ASCII, parses back identically
    assert json.loads(_io.dumps(r)) == r


@pytest.mark.parametrize("mutate, field, expected", [
    (lambda r: r["summary"].__setitem__("risk_ratio", 1.7), "summary.risk_ratio", "expected a number in [0, 1]"),
    (lambda r: r["summary"].__setitem__("net_bps", "2.9"), "summary.net_bps", "expected a number"),
    (lambda r: r.pop("seed"), "seed", "missing"),
    (lambda r: r.__setitem__("iteration", 0), "iteration", "expected an integer >= 1"),
    (lambda r: r.__setitem__("status", "done"), "status", 'expected one of "ok", "failed"'),
    (lambda r: r["tuning"].__setitem__("applied", "yes"), "tuning.applied", "expected true or false"),
    (lambda r: r["tuning"]["decisions"].append({"param": "x"}), "tuning.decisions.0.current", "missing"),
    (lambda r: r["summary"]["blocks"]["counts"].__setitem__("risk", -1), "summary.blocks.counts.risk",
     "expected an integer >= 0"),
    (lambda r: r["summary"].pop("p95_latency_ms"), "summary.p95_latency_ms", "missing"),
])
def test_invalid_record_is_reported_by_path_and_field(mutate, field, expected):
    r = _rec()
    mutate(r)
    with pytest.raises(RecordError) as ei:
        validate_record(r, "ITER_SUMMARY_3.json")
    msg = str(ei.value)
    assert msg.startswith(f"ITER_SUMMARY_3.json: field '{field}': ")
    assert expected in msg
    assert "\n" not in msg


def test_applied_tuning_needs_a_state_hash_and_failed_needs_a_failure():
    r = _rec()
    r["tuning"].update(applied=True, state_hash=None)
    with pytest.raises(RecordError, match="tuning.state_hash"):
        validate_record(r, "x")
    f = _rec(failure={"reason": "exit 3", "stderr_tail": "boom"})
    validate_record(f, "x")
    f["failure"] = None
    with pytest.raises(RecordError, match="'failure'"):
        validate_record(f, "x")
    with pytest.raises(RecordError, match="expected a JSON object"):
        validate_record([1], "x")


def test_failed_record_has_null_kpis_and_a_failure():
    f = _rec(failure={"reason": "runner exited 3", "stderr_tail": "Traceback ..."})
    assert f["status"] == "failed"
    assert f["failure"] == {"reason": "runner exited 3", "stderr_tail": "Traceback ..."}
    assert all(f["summary"][k] is None for k in SUMMARY_KPI_KEYS)
    assert f["summary"]["kpi_verdict"] == "FAIL" and f["params"] == {}


def test_strip_wall_clock_removes_only_wall_fields_and_copies():
    r = _rec()
    s = strip_wall_clock(r)
    assert WALL_CLOCK_FIELDS == ("summary.runtime_utc", "wall")
    assert "wall" not in s and "runtime_utc" not in s["summary"]
    assert "wall" in r and "runtime_utc" in r["summary"]  # original untouched
    r2 = copy.deepcopy(r)
    r2["wall"]["elapsed_s"] = 99.0
    r2["summary"]["runtime_utc"] = "2030-01-01T00:00:00Z"
    assert strip_wall_clock(r2) == s
    r2["summary"]["net_bps"] += 1e-9
    assert strip_wall_clock(r2) != s


def test_tuning_off_block():
    b = tuning_off_block(PARAMS)
    assert b["applied"] is False and b["deltas"] == {} and b["proposed_deltas"] == {}
    assert b["skip_reason"] == {"reason": "auto_tune_off"}
    assert b["state_hash"] == b["old_hash"] == b["signature"] == _io.state_hash(PARAMS)
    assert b["changed_keys"] == [] and b["decisions"] == [] and b["freeze_ready"] is False
    assert tuning_off_block(PARAMS, reason="iteration_failed")["skip_reason"]["reason"] == "iteration_failed"


def test_summary_derivations_come_from_the_kpis_only():
    k = {"net_bps": -1.0, "gross_bps": 1.0, "fees_eff_bps": -0.5, "slippage_bps": -0.3, "inventory_bps": -1.2,
         "adverse_bps": -0.1, "adverse_bps_p95": 2.0, "slippage_bps_p95": 1.0, "p95_latency_ms": 200.0,
         "fills": {"maker_count": 3, "taker_count": 1, "maker_volume": 30.0, "taker_volume": 10.0},
         "blocks": {"counts": {"min_interval": 6, "concurrency": 2, "risk": 2, "throttle": 0, "allowed": 90}}}
    s = build_summary(k, cfg=CFG)
    assert s["maker_taker_ratio"] == pytest.approx(0.75) and s["maker_taker_source"] == "fills_volume"
    assert s["risk_ratio"] == pytest.approx(0.2) and s["min_interval_ratio"] == pytest.approx(0.6)
    assert s["blocks"]["total"] == 100 and s["blocks"]["ratios"]["risk"] == 2.0
    assert s["neg_edge_drivers"] == ["inventory_bps", "fees_eff_bps"]
    assert neg_edge_drivers({"net_bps": 1.0, "fees_eff_bps": -3}) == []
    # count-based fallback, and "none" without fills
    s2 = build_summary({"fills": {"maker_count": 1, "taker_count": 3, "maker_volume": 0.0, "taker_volume": 0.0}})
    assert s2["maker_taker_ratio"] == pytest.approx(0.25) and s2["maker_taker_source"] == "fills_count"
    s3 = build_summary({"net_bps": 1.0})
    assert s3["maker_taker_ratio"] is None and s3["maker_taker_source"] == "none"
    # a reported ratio is kept as is
    assert build_summary({"maker_taker_ratio": 0.9})["maker_taker_source"] == "existing"


def test_kpi_verdict_against_goals():
    good = {"maker_taker_ratio": 0.9, "p95_latency_ms": 250.0, "risk_ratio": 0.2, "net_bps": 3.0}
    assert kpi_verdict(good, CFG) == ("PASS", [])
    v, why = kpi_verdict({**good, "net_bps": 2.6}, CFG)
    assert v == "WARN" and why == ["net_bps=2.6 < soft 2.7"]
    v, why = kpi_verdict({**good, "risk_ratio": 0.5, "net_bps": 2.6}, CFG)
    assert v == "FAIL" and "risk_ratio=0.5 > 0.4" in why
    v, why = kpi_verdict({**good, "p95_latency_ms": None}, CFG)
    assert v == "FAIL" and why == ["p95_latency_ms missing"]  # missing data is never a pass


def test_plain_makes_json_values():
    out = plain({"a": np.float64(1.5), "b": np.int64(3), "c": np.array([1, 2]), "d": float("nan"), "e": (1, 2),
                 "f": np.bool_(True)})
    assert out == {"a": 1.5, "b": 3, "c": [1, 2], "d": None, "e": [1, 2], "f": True}
    assert type(out["b"]) is int
    json.dumps(out, allow_nan=False)


def test_next_params_uses_decisions_then_deltas():
    cur = {"a": 10, "b": 0.5, "c": 1}
    t = {"deltas": {"a": 2, "c": 5},
         "decisions": [{"param": "a", "verdict": "clamped", "new": 12},
                       {"param": "b", "verdict": "blocked", "new": 0.6}]}
    assert next_params(cur, t) == {"a": 12, "b": 0.5, "c": 6}
    assert next_params(cur, None) == cur


def _dec(param, verdict, guard):
    return {"param": param, "current": 1, "proposed_delta": 1, "verdict": verdict, "guard": guard,
            "clamped_delta": 0, "new": 1, "reason": "r"}


def test_tuning_report_counts_are_true_counts():
    recs = []
    for i in range(1, 5):
        r = _rec(i)
        recs.append(r)
    recs[0]["tuning"].update(applied=True, skip_reason="", changed_keys=["a"], deltas={"a": 1},
                             proposed_deltas={"a": 1, "b": 1},
                             decisions=[_dec("a", "applied", None), _dec("b", "blocked", "oscillation")])
    recs[1]["tuning"]["decisions"] = [_dec("a", "blocked", "cooldown"), _dec("b", "clamped", "velocity")]
    recs[2]["tuning"]["decisions"] = [_dec("a", "blocked", "oscillation")]
    rep = tuning_report(reversed(recs))
    s = rep["summary"]
    assert [e["iteration"] for e in rep["iterations"]] == [1, 2, 3, 4]
    assert s["count"] == 4 and s["applied"] == 1
    # blocked_<guard> counts decisions that guard stopped; a clamped one counts as clamped_<guard>
    assert s["blocked_oscillation"] == 2 and s["blocked_velocity"] == 0 and s["clamped_velocity"] == 1
    assert s["cooldown_skips"] == 1 and s["guard_counts"] == {"cooldown": 1, "oscillation": 2, "velocity": 1}
    e1, e2 = rep["iterations"][0], rep["iterations"][1]
    assert e1["oscillation_detected"] and not e1["velocity_violation"]
    assert e2["velocity_violation"] and e2["cooldown_active"]
    assert e1["suggested_deltas"] == e1["proposed_deltas"] == {"a": 1, "b": 1}
    assert all(e["signature"] for e in rep["iterations"])
    for key in ("iteration", "runtime_utc", "net_bps", "kpi_verdict", "neg_edge_drivers", "proposed_deltas",
                "suggested_deltas", "rationale", "applied", "signature", "state_hash", "skip_reason", "changed_keys",
                "oscillation_detected", "velocity_violation", "cooldown_active"):
        assert key in e1


finite = st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e6, max_value=1e6)
ratio = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=60, deadline=None)
@given(net=finite, risk=ratio, mt=ratio, p95=st.floats(min_value=0, max_value=1e4), counts=st.lists(
    st.integers(min_value=0, max_value=10**6), min_size=6, max_size=6))
def test_any_finite_kpis_give_a_valid_record_that_round_trips(net, risk, mt, p95, counts):
    keys = ("min_interval", "concurrency", "risk", "throttle", "allowed", "other")
    k = {"net_bps": net, "risk_ratio": risk, "maker_taker_ratio": mt, "p95_latency_ms": p95,
         "adverse_bps_p95": 1.0, "slippage_bps_p95": 1.0, "blocks": {"counts": dict(zip(keys, counts))},
         "turnover_quote": float("nan")}
    r = _rec(kpis=k)
    validate_record(r, "x")
    assert r["summary"]["turnover_quote"] is None  # non-finite never reaches the file
    back = json.loads(_io.dumps(r))
    assert back == r and not any(isinstance(v, float) and math.isnan(v) for v in back["summary"].values())


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    import os
    import stat

    from soaklib.core import io as _io

    umask = os.umask(0o022)
    os.umask(umask)
    _io.write_json(tmp_path / "a.json", {"x": 1})
    _io.write_text(tmp_path / "b.md", "hi", exclusive=True)
    for name in ("a.json", "b.md"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o666 & ~umask, oct(mode)
