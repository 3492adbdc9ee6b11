"""Tuner rules (issue 4): the seed's live rules with the seed's bugs fixed, and the tuning block."""
from __future__ import annotations

import copy

import pytest

from soaklib.core import records
from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.params import registry
from soaklib.core.records import build_record, validate_record
from soaklib.tune import tuner

CFG = load_config()
REG = registry(CFG)
DEF = REG.defaults()

# an iteration where every goal passes and no rule fires
CALM = {"net_bps": 2.9, "risk_ratio": 0.37, "maker_taker_ratio": 0.9, "p95_latency_ms": 250.0,
        "adverse_bps_p95": 2.0, "slippage_bps_p95": 1.0, "cancel_ratio": 0.3}


def rec(n=1, status="ok", params=None, **kpis):
    s = dict(CALM, **kpis)
    return {"iteration": n, "status": status, "summary": s if status == "ok" else {}, "params": params or dict(DEF)}


def prop(params=None, *history, **kpis):
    h = list(history) + [rec(len(history) + 1, params=params, **kpis)]
    return tuner.propose(h, params or dict(DEF), CFG)


def test_calm_iteration_proposes_nothing():
    p = prop()
    assert p.deltas == {} and p.mode == "normal"


def test_risk_zones():
    agg = prop(risk_ratio=0.65)
    assert agg.deltas == {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30}
    mod = prop(risk_ratio=0.45)
    assert mod.deltas == {"min_interval_ms": 5, "impact_cap_ratio": -0.005}
    norm = prop(risk_ratio=0.2, net_bps=3.5)
    assert norm.deltas == {"min_interval_ms": -3, "impact_cap_ratio": 0.005}
    # seed bug fixed: NORMALIZE used to be cleared by its own should_apply (risk<0.40 and net>=3.0)
    assert norm.mode == "healthy"


def test_deltas_are_relative_to_current_values():
    cur = dict(DEF, min_interval_ms=100, impact_cap_ratio=0.2)
    block = tuner.decide([rec(params=cur, risk_ratio=0.65)], cur, CFG, iteration=1, total=10, auto_tune=True)
    new = {d["param"]: d["new"] for d in block["decisions"]}
    # seed computed from the starting values (60 / 0.09): we add to what the iteration ran with
    assert new["min_interval_ms"] == 105 and new["impact_cap_ratio"] == pytest.approx(0.19)
    assert block["deltas"]["min_interval_ms"] == 5


def test_maker_boost_reads_the_real_ratio():
    # seed bug: the ratio defaulted to 0.6 so the boost fired on a healthy 0.90
    assert "maker_boost" not in " ".join(prop(maker_taker_ratio=0.90, net_bps=2.8, risk_ratio=0.3).rules).lower()
    p = prop(maker_taker_ratio=0.80, net_bps=2.8, risk_ratio=0.3)
    assert p.deltas == {"base_spread_bps_delta": 0.02, "impact_cap_ratio": -0.005, "max_delta_ratio": 0.02}
    assert set(p.deltas) <= set(REG)  # no phantom base_spread_bps
    # in the AGGRESSIVE risk zone the boost waits (risk rules first)
    assert "MAKER_BOOST" not in " ".join(prop(maker_taker_ratio=0.80, risk_ratio=0.7).rules)


def test_latency_buffer_bands():
    # soft band starts at 300 (the goal is the window MAX <= 340); hard above 340
    assert prop(p95_latency_ms=320.0).deltas == {"min_interval_ms": 10, "replace_rate_per_min": -20,
                                                 "tail_age_ms": 50, "concurrency_limit": -1}
    assert prop(p95_latency_ms=400.0).deltas == {"min_interval_ms": 20, "replace_rate_per_min": -50,
                                                 "tail_age_ms": 100, "concurrency_limit": -3}
    assert prop(p95_latency_ms=299.0).deltas == {}


def test_drivers():
    assert prop(adverse_bps_p95=3.8).deltas == {"impact_cap_ratio": -0.01}
    assert prop(slippage_bps_p95=2.8).deltas == {"base_spread_bps_delta": 0.02, "tail_age_ms": 30}
    # risk zone first: impact_cap keeps the zone's step ("only if not already set", seed)
    both = prop(adverse_bps_p95=3.8, risk_ratio=0.45)
    assert both.deltas == {"min_interval_ms": 5, "impact_cap_ratio": -0.005}


def test_low_net_widens_spread():
    assert prop(net_bps=2.0).deltas == {"base_spread_bps_delta": 0.05}
    # also alongside other rules (seed: only when nothing else failed, so net was never fixed under risk)
    assert prop(net_bps=2.0, risk_ratio=0.45).deltas == {"min_interval_ms": 5, "base_spread_bps_delta": 0.05,
                                                          "impact_cap_ratio": -0.005}
    # LOW_NET comes before the slippage driver: its bigger spread step wins
    assert prop(net_bps=2.0, slippage_bps_p95=2.8).deltas == {"base_spread_bps_delta": 0.05, "tail_age_ms": 30}


def test_fallback_after_two_negative_net_iterations_once_per_two():
    h1 = rec(1, net_bps=-1.0)
    p = prop(None, h1, net_bps=-0.5)
    assert p.mode == "fallback"
    assert p.deltas == {"min_interval_ms": 20, "replace_rate_per_min": -60, "base_spread_bps_delta": 0.02,
                        "tail_age_ms": 100}
    # one negative iteration is not enough
    assert prop(None, rec(1, net_bps=1.0), net_bps=-0.5).mode != "fallback"
    # rate limit: the previous decision was a fallback -> not again right away
    h2 = rec(2, net_bps=-0.5)
    h2["tuning"] = {"rationale": p.rationale}
    assert prop(None, h1, h2, net_bps=-0.5).mode != "fallback"


def test_multi_fail_calming():
    p = prop(cancel_ratio=0.7, adverse_bps_p95=4.5, p95_latency_ms=400.0)
    assert p.mode == "multi_fail"
    assert p.deltas == {"min_interval_ms": 20, "replace_rate_per_min": -30, "base_spread_bps_delta": 0.05,
                        "concurrency_limit": -2}
    # two failing conditions are handled by the targeted rules instead
    assert prop(cancel_ratio=0.7, adverse_bps_p95=4.5).mode == "normal"


def test_conflict_guard_prefers_risk():
    cfg = copy.deepcopy(CFG)
    cfg["tuner"]["moderate_deltas"] = {"min_interval_ms": -5, "base_spread_bps_delta": 0.02}
    h = [rec(risk_ratio=0.45)]
    p = tuner.propose(h, DEF, cfg)
    assert "min_interval_ms" not in p.deltas and p.deltas["base_spread_bps_delta"] == 0.02
    assert any("conflict=spread_widen_vs_speedup" in r for r in p.rules)


def test_spread_cap_per_iteration():
    cfg = copy.deepcopy(CFG)
    cfg["tuner"]["calming_deltas"]["base_spread_bps_delta"] = 0.5
    p = tuner.propose([rec(cancel_ratio=0.7, adverse_bps_p95=4.5, p95_latency_ms=400.0)], DEF, cfg)
    assert p.deltas["base_spread_bps_delta"] == pytest.approx(0.1)


def test_unknown_parameter_in_rule_config():
    cfg = copy.deepcopy(CFG)
    cfg["tuner"]["moderate_deltas"] = {"base_spread_bps": 0.1}   # the seed's phantom key
    with pytest.raises(ConfigError, match="base_spread_bps"):
        tuner.propose([rec(risk_ratio=0.45)], DEF, cfg)


def test_failed_iteration_is_skipped_explicitly():
    h = [rec(1, risk_ratio=0.7), rec(2, status="failed")]
    b = tuner.decide(h, DEF, CFG, iteration=2, total=10, auto_tune=True)
    assert b["deltas"] == {} and b["proposed_deltas"] == {} and not b["applied"]
    assert b["skip_reason"]["reason"] == "iteration_failed"
    assert "failed" in b["rationale"]


def test_auto_tune_off_block():
    b = tuner.decide([rec(risk_ratio=0.9)], DEF, CFG, iteration=1, total=10, auto_tune=False)
    assert b["deltas"] == {} and b["applied"] is False and b["skip_reason"]["reason"] == "auto_tune_off"
    assert b["state_hash"] == b["old_hash"] == b["signature"]


def test_tuning_block_fields_and_schema():
    r = build_record(iteration=1, seed=1, runner="sim", scenario="default", start_s=0.0, duration_s=3600.0,
                     kpis=dict(CALM, risk_ratio=0.65, maker_taker_source="fills_volume"), params=DEF, market={},
                     runtime_guards={}, events=1, cfg=CFG)
    r["tuning"] = tuner.decide([r], DEF, CFG, iteration=1, total=10, auto_tune=True)
    validate_record(r)
    t = r["tuning"]
    assert t["applied"] and t["skip_reason"] == "" and t["changed_keys"] == sorted(t["deltas"])
    assert t["state_hash"] != t["old_hash"] and t["signature"] == t["state_hash"]
    assert set(t["conditions"]) >= {"net_bps", "risk_ratio", "adverse_p95", "slippage_p95", "order_age_p95_ms",
                                    "min_interval_ratio", "concurrency_ratio"}
    for d in t["decisions"]:
        assert d["param"] in REG and d["verdict"] in ("applied", "clamped", "blocked")


def test_last_iteration_changes_nothing():
    b = tuner.decide([rec(risk_ratio=0.7)], DEF, CFG, iteration=5, total=5, auto_tune=True)
    assert b["deltas"] == {} and b["proposed_deltas"]
    assert {d["guard"] for d in b["decisions"]} == {"last_iteration"}
    assert b["guards"]["last_iteration"] is True


def test_tuning_report_true_counts():
    # three iterations with known decisions
    h = []
    for n, kp in enumerate([dict(risk_ratio=0.7), dict(risk_ratio=0.7), dict(risk_ratio=0.7)], 1):
        cur = h[-1]["params"] if h else dict(DEF)
        if h:
            cur = dict(cur)
            for d in h[-1]["tuning"]["decisions"]:
                cur[d["param"]] = d["new"]
        h.append(rec(n, params=cur, **kp))
        h[-1]["tuning"] = tuner.decide(h, cur, CFG, iteration=n, total=3, auto_tune=True)
    rep = records.tuning_report(h)
    s = rep["summary"]
    decs = [d for r in h for d in r["tuning"]["decisions"]]
    assert s["count"] == 3 and s["decisions"] == len(decs)
    assert s["blocked_last_iteration"] == sum(d["guard"] == "last_iteration" for d in decs) > 0
    assert s["blocked_cooldown"] == sum(d["guard"] == "cooldown" and d["verdict"] == "blocked" for d in decs)
    assert s["applied"] == sum(bool(r["tuning"]["applied"]) for r in h)
    assert s["changes"] == sum(d["new"] != d["current"] for d in decs)
    assert [e["iteration"] for e in rep["iterations"]] == [1, 2, 3]
    assert rep["iterations"][0]["decisions"] == h[0]["tuning"]["decisions"]


@pytest.mark.parametrize("section, key, value, field", [
    ("tuner", "aggressive_deltas", {"base_spread_bps": 0.1}, "tuner.aggressive_deltas.base_spread_bps"),
    ("tuner", "risk_moderate", "high", "tuner.risk_moderate"),
    ("guards", "cooldown_iters", -1, "guards.cooldown_iters"),
    ("guards", "velocity_max_frac_per_iter", 0.0, "guards.velocity_max_frac_per_iter"),
])
def test_bad_tuning_config_names_the_field(section, key, value, field):
    cfg = copy.deepcopy(CFG)
    cfg[section][key] = value
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        tuner.decide([rec()], DEF, cfg, iteration=1, total=5, auto_tune=True)


def test_maker_boost_stops_at_the_aggressive_boundary():
    """docs/TUNER.md: MAKER_BOOST needs risk < 0.60 (not AGGRESSIVE); AGGRESSIVE starts at risk >= 0.60."""
    assert CFG["tuner"]["risk_aggressive"] == CFG["tuner"]["maker_boost_risk_max"] == 0.60
    at = prop(risk_ratio=0.60, maker_taker_ratio=0.70, net_bps=2.8)
    assert any(r.startswith("RISK_AGGRESSIVE") for r in at.rules)
    assert not any(r.startswith("MAKER_BOOST") for r in at.rules)
    assert "max_delta_ratio" not in at.deltas
    below = prop(risk_ratio=0.59, maker_taker_ratio=0.70, net_bps=2.8)
    assert any(r.startswith("RISK_MODERATE") for r in below.rules)
    assert any(r.startswith("MAKER_BOOST") for r in below.rules) and below.deltas["max_delta_ratio"] == 0.02


def test_user_config_replaces_a_rule_delta_table(tmp_path):
    """docs/TUNER.md: a user config can override any tuner constant, including a rule's whole
    parameter->delta table (replaced, not merged with the default's)."""
    f = tmp_path / "soak.toml"
    f.write_text("[tuner]\nmoderate_deltas = { tail_age_ms = 30 }\n", encoding="utf-8")
    cfg = load_config(f)
    assert cfg["tuner"]["moderate_deltas"] == {"tail_age_ms": 30}
    assert CFG["tuner"]["moderate_deltas"] == {"min_interval_ms": 5, "impact_cap_ratio": -0.005}  # defaults intact
    h = [rec(risk_ratio=0.45)]
    p = tuner.propose(h, dict(DEF), cfg)
    assert any(r.startswith("RISK_MODERATE") for r in p.rules)
    assert p.deltas == {"tail_age_ms": 30} and "min_interval_ms" not in p.deltas
    block = tuner.decide(h, dict(DEF), cfg, iteration=1, total=5, auto_tune=True)
    assert block["deltas"] == {"tail_age_ms": 30}
    assert [(d["param"], d["new"]) for d in block["decisions"]] == [("tail_age_ms", DEF["tail_age_ms"] + 30)]
    # the default table still moves min_interval_ms, not tail_age_ms
    assert set(tuner.propose(h, dict(DEF), CFG).deltas) == {"min_interval_ms", "impact_cap_ratio"}
    # a replaced table is checked like the default one
    f.write_text("[tuner]\nmoderate_deltas = { tail_age = 30 }\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tuner\.moderate_deltas\.tail_age"):
        load_config(f)
