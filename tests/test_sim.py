"""The embedded simulator: determinism, accounting identities, guards, scenarios, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.params import load_profile, registry
from soaklib.sim import SimResult, simulate
from soaklib.sim.scenario import load_scenario, shipped

REG = registry(load_config())
BEST = load_profile("best_cell", REG)
BAD = load_profile("bad", REG)
SHORT = 600.0

SUMMARY_FIELDS = [  # docs/ARCHITECTURE.md record contract, minus the record builder's own fields
    "net_bps", "gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps", "adverse_bps_p95",
    "slippage_bps_p95", "order_age_p95_ms", "cancel_ratio", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
    "risk_ratio", "min_interval_ratio", "concurrency_ratio", "throttle_ratio", "blocks", "fills",
    "maker_taker_ratio", "maker_taker_source", "pnl_quote", "drawdown_quote", "inventory_utilisation",
    "neg_edge_drivers", "freeze_time_s",
]


def _mean(values, scenario, key, seeds=range(4), dur=SHORT):
    return float(np.mean([simulate(values, scenario, s, dur).kpis[key] for s in seeds]))


def test_same_seed_identical_and_seeds_differ():
    a = simulate(BEST, "default", 7, SHORT, start_s=3600.0)
    b = simulate(BEST, "default", 7, SHORT, start_s=3600.0)
    c = simulate(BEST, "default", 8, SHORT, start_s=3600.0)
    assert isinstance(a, SimResult)
    assert a.kpis == b.kpis and a.market == b.market and a.runtime_guards == b.runtime_guards and a.events == b.events
    assert a.kpis["net_bps"] != c.kpis["net_bps"] and a.kpis["fills"] != c.kpis["fills"]


def test_summary_fields_and_shapes():
    r = simulate(BEST, "calm", 1, SHORT)
    for f in SUMMARY_FIELDS:
        assert f in r.kpis, f
    assert r.kpis["maker_taker_source"] == "fills_volume"
    assert set(r.kpis["blocks"]["counts"]) == {"min_interval", "concurrency", "risk", "throttle", "allowed", "other"}
    assert r.kpis["blocks"]["total"] == sum(r.kpis["blocks"]["counts"].values())
    assert r.params == BEST
    assert r.events > 100 * SHORT  # >= 100 market events per simulated second
    assert r.market["regimes"][0]["regime"] == "calm" and r.market["realized_vol_bps"] > 0
    for k in ("latency_buffer_active_s", "latency_spread_add_bps", "partial_freeze_count", "partial_freeze_time_s",
              "partial_freeze_active", "freeze_blocked_actions"):
        assert k in r.runtime_guards


@pytest.mark.parametrize("scenario", ["calm", "trending", "flash-crash"])
def test_accounting_identities(scenario):
    k = simulate(BAD, scenario, 3, SHORT).kpis
    assert k["net_bps"] == pytest.approx(k["gross_bps"] + k["fees_eff_bps"] + k["slippage_bps"] + k["inventory_bps"],
                                         abs=1e-9)
    f = k["fills"]
    assert f["maker_count"] + f["taker_count"] == f["count"] > 0
    assert f["maker_volume"] + f["taker_volume"] == pytest.approx(f["volume"], abs=1e-5)
    assert sum(f[f"{s}_{liq}_count"] for s in ("buy", "sell") for liq in ("maker", "taker")) == f["count"]
    assert f["maker_volume"] / f["volume"] == pytest.approx(k["maker_taker_ratio"], abs=1e-5)
    # PnL from cash accounting == the per-fill decomposition summed in quote currency
    assert k["pnl_quote"] == pytest.approx(k["net_bps"] * k["turnover_quote"] / 1e4, rel=1e-6, abs=1e-6)
    # inventory position: buys minus sells
    inv = f["buy_maker_volume"] + f["buy_taker_volume"] - f["sell_maker_volume"] - f["sell_taker_volume"]
    assert inv == pytest.approx(k["inventory_end"], abs=1e-5)
    assert k["drawdown_quote"] >= 0 and 0 <= k["risk_ratio"] <= 1


def test_pnl_is_cash_plus_inventory_marked_to_mid():
    for scenario in ("volatile", "flash-crash"):
        r = simulate(BAD, scenario, 5, SHORT)
        k, x = r.kpis, r.extra
        # cash accounting (cash incl. fees, inventory at the final mid) ...
        assert k["pnl_quote"] == pytest.approx(x["cash_quote"] + x["inventory"] * x["mid_end"], abs=1e-8)
        assert x["mid_end"] == pytest.approx(r.market["mid_end"]) and x["inventory"] == pytest.approx(k["inventory_end"])
        # ... equals the per-fill decomposition (gross + fees + slippage + inventory mark) in quote currency
        assert k["pnl_quote"] == pytest.approx(k["net_bps"] * k["turnover_quote"] / 1e4, rel=1e-6, abs=1e-6)
        assert abs(k["inventory_end"]) <= 1.0 + 0.3  # limit Q plus at most one in-flight race


def test_runtime_guards_fire_in_latency_storm():
    r = simulate(BEST, "latency-storm", 2, 1800.0)
    g = r.runtime_guards
    assert g["partial_freeze_count"] >= 1 and g["partial_freeze_time_s"] > 0 and g["freeze_blocked_actions"] > 0
    assert g["latency_buffer_active_s"] > 0 and g["latency_spread_add_bps"] > 0
    assert r.kpis["freeze_time_s"] == g["partial_freeze_time_s"]
    assert r.kpis["blocks"]["counts"]["other"] == g["freeze_blocked_actions"]
    calm = simulate(BEST, "calm", 2, 1800.0).runtime_guards
    assert calm["partial_freeze_count"] == 0 and calm["freeze_blocked_actions"] == 0


def test_guards_off_by_config():
    from soaklib.core.config import load_config

    cfg = load_config(overrides={"sim": {"runtime_guards": False}})
    g = simulate(BEST, "latency-storm", 2, 900.0, config=cfg).runtime_guards
    assert g["partial_freeze_count"] == 0 and g["latency_buffer_active_s"] == 0


def test_chaos_scenarios_degrade_vs_calm():
    calm = {k: _mean(BEST, "calm", k) for k in ("p95_latency_ms", "net_bps", "adverse_bps_p95", "drawdown_quote")}
    assert _mean(BEST, "latency-storm", "p95_latency_ms") > calm["p95_latency_ms"] + 50
    assert _mean(BEST, "volatile", "adverse_bps_p95") > calm["adverse_bps_p95"]
    assert _mean(BEST, "volatile", "net_bps") < calm["net_bps"]
    assert _mean(BEST, "trending", "net_bps") < calm["net_bps"]
    fc = [simulate(BEST, "flash-crash", s, 900.0) for s in range(4)]
    assert all(r.market["flash_crashes"] == 1 for r in fc)
    assert all(any(f["kind"] == "flash_crash" for f in r.market["faults"]) for r in fc)
    assert np.mean([r.kpis["drawdown_quote"] for r in fc]) > calm["drawdown_quote"]
    rs = [simulate(BEST, "reject-storm", s, SHORT).kpis for s in range(4)]
    cs = [simulate(BEST, "calm", s, SHORT).kpis for s in range(4)]
    assert all(k["orders"]["rejects"] > 0 for k in rs) and all(k["orders"]["rejects"] == 0 for k in cs)
    assert np.mean([k["fills"]["maker_volume"] for k in rs]) < np.mean([k["fills"]["maker_volume"] for k in cs])


def test_default_scenario_walks_through_regimes():
    sc = load_scenario("default")
    assert sc.cycle_s == 24 * 3600
    seen = set()
    for n in range(1, 25):
        seen.update(sc.segments[n - 1]["regimes"])
    assert {"calm", "volatile", "trending"} <= seen
    r1 = simulate(BEST, "default", 1, 300.0, start_s=0.0)
    r3 = simulate(BEST, "default", 1, 300.0, start_s=2 * 3600.0)
    assert r1.market["regimes"][0]["regime"] == "calm" and r3.market["regimes"][0]["regime"] == "volatile"
    assert r3.market["regimes"][0]["start_s"] == 7200.0
    # a window crossing a segment boundary sees both
    r = simulate(BEST, "default", 1, 600.0, start_s=3 * 3600.0 - 300.0)
    assert [x["regime"] for x in r.market["regimes"]][:2] == ["volatile", "trending"]


def test_shipped_scenarios():
    assert {"calm", "volatile", "trending", "latency-storm", "flash-crash", "reject-storm", "default"} <= set(shipped())
    for name in shipped():
        load_scenario(name)


def test_bad_profile_fails_goals_best_cell_better():
    """Last 8 of 24 iterations of the default scenario (seed derived per iteration), 2 run seeds."""
    def goals(p, run_seed):
        ks = [simulate(p, "default", (run_seed * 1000003 + n * 7919) % 2**31, 3600.0, start_s=(n - 1) * 3600.0).kpis
              for n in range(17, 25)]
        return {"mt": np.mean([k["maker_taker_ratio"] for k in ks]), "p95": max(k["p95_latency_ms"] for k in ks),
                "risk": float(np.median([k["risk_ratio"] for k in ks])), "net": np.mean([k["net_bps"] for k in ks])}

    for seed in (11, 12):
        bad, best = goals(BAD, seed), goals(BEST, seed)
        fails = [bad["mt"] < 0.83, bad["p95"] > 340, bad["risk"] > 0.40, bad["net"] < 2.5]
        assert sum(fails) >= 2, bad
        assert best["p95"] < bad["p95"] and best["net"] > bad["net"] and best["risk"] < bad["risk"]
        assert best["mt"] > bad["mt"]


# ---- bad input ----
def test_unknown_parameter():
    with pytest.raises(ConfigError, match="unknown parameter") as e:
        simulate({"min_interval": 60}, "calm", 0, 10.0)
    assert e.value.field == "min_interval"


def test_out_of_bounds_and_non_numeric():
    with pytest.raises(ConfigError, match="out of bounds") as e:
        simulate({"impact_cap_ratio": 0.9}, "calm", 0, 10.0)
    assert e.value.field == "impact_cap_ratio"
    with pytest.raises(ConfigError, match="expected a number") as e:
        simulate({"tail_age_ms": "fast"}, "calm", 0, 10.0)
    assert e.value.field == "tail_age_ms"


def test_unknown_scenario():
    with pytest.raises(ConfigError, match="unknown scenario 'nope'.*calm"):
        simulate(BEST, "nope", 0, 10.0)


def test_malformed_scenario_toml(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("[[segments]\nduration_s = 3600\n")
    with pytest.raises(ConfigError, match="invalid TOML") as e:
        simulate(BEST, p, 0, 10.0)
    assert str(p) in str(e.value)
    p.write_text('[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nreject_prob = 2\n')
    with pytest.raises(ConfigError) as e:
        simulate(BEST, p, 0, 10.0)
    assert e.value.field == "segments[0].reject_prob" and str(p) in str(e.value)
    p.write_text('[[segments]]\nduration_s = 3600\nregimes = ["sunny"]\n')
    with pytest.raises(ConfigError, match="unknown regime 'sunny'"):
        simulate(BEST, p, 0, 10.0)
    p.write_text('[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nspeed = 3\n')
    with pytest.raises(ConfigError) as e:
        simulate(BEST, p, 0, 10.0)
    assert e.value.field == "segments[0].speed"


def test_custom_scenario_file_runs(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[regimes.calm]\nvol_bps_per_sqrt_s = 0.1\n[[segments]]\nduration_s = 60\nregimes = ["calm"]\n')
    r = simulate(BEST, p, 0, 120.0)
    assert r.market["scenario"] == "mine" and r.market["realized_vol_bps_per_sqrt_s"] < 0.3


def test_bad_duration_and_seed():
    with pytest.raises(ConfigError):
        simulate(BEST, "calm", 0, 0.0)
    with pytest.raises(ConfigError):
        simulate(BEST, "calm", "x", 10.0)


@pytest.mark.parametrize("profile,scenario", [("bad", "latency-storm"), ("best_cell", "flash-crash"),
                                              ("best_cell", "default")])
def test_result_fits_the_iteration_record_schema(profile, scenario):
    """Contract with soaklib.core.records: a simulator result builds a valid ITER_SUMMARY record."""
    from soaklib.core.records import build_record, tuning_off_block, validate_record

    r = simulate(load_profile(profile, REG), scenario, 3, 600.0, start_s=7200.0)
    rec = build_record(iteration=3, seed=3, runner="sim", scenario=scenario, start_s=7200.0, duration_s=600.0,
                       kpis=r.kpis, params=r.params, market=r.market, runtime_guards=r.runtime_guards,
                       events=r.events, tuning=tuning_off_block(r.params))
    validate_record(rec)


# ---- reviewer findings: no invented KPIs, one neg_edge_drivers rule, price sanity, config checks ----
_REJECT_ALL = '[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nreject_prob = 1.0\n'
_UNMEASURED = ["net_bps", "gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps",
               "adverse_bps_p95", "slippage_bps_p95", "order_age_p95_ms", "maker_taker_ratio"]


def _zero_fill_results(tmp_path):
    p = tmp_path / "reject-all.toml"
    p.write_text(_REJECT_ALL)
    return {"tiny window": simulate(BEST, "calm", 0, 0.05), "reject_prob=1": simulate(BEST, p, 0, 60.0)}


def test_zero_fills_report_null_not_zero(tmp_path):
    from soaklib.core.config import load_config
    from soaklib.core.records import build_record, tuning_off_block, validate_record

    for label, r in _zero_fill_results(tmp_path).items():
        k = r.kpis
        assert k["fills"]["count"] == 0 and k["turnover_quote"] == 0, label
        for f in _UNMEASURED:
            assert k[f] is None, (label, f, k[f])
        assert k["maker_taker_source"] == "none", label
        assert k["pnl_quote"] == 0.0 and k["drawdown_quote"] == 0.0  # measured: nothing traded
        rec = build_record(iteration=1, seed=0, runner="sim", scenario="calm", start_s=0.0, duration_s=60.0,
                           kpis=k, params=r.params, market=r.market, runtime_guards=r.runtime_guards,
                           events=r.events, tuning=tuning_off_block(r.params), cfg=load_config())
        validate_record(rec)
        s = rec["summary"]
        assert s["maker_taker_ratio"] is None and s["maker_taker_source"] == "none" and s["net_bps"] is None
        assert s["neg_edge_drivers"] == [] and s["kpi_verdict"] == "FAIL"  # a missing goal KPI never passes
        assert "net_bps missing" in s["kpi_reasons"] and "maker_taker_ratio missing" in s["kpi_reasons"]
    # sends happened under reject_prob=1 (all rejected), so latency was measured
    rej = _zero_fill_results(tmp_path)["reject_prob=1"].kpis
    assert rej["orders"]["rejects"] > 0 and rej["p95_latency_ms"] > 0


def test_unmeasured_kpis_are_inconclusive_at_the_gate(tmp_path):
    from soaklib.core import goals
    from soaklib.core.config import load_config
    from soaklib.judge import gate
    from soaklib.store.loader import open_run
    from soaklib.store.synthetic import write_synthetic_run

    k = _zero_fill_results(tmp_path)["reject_prob=1"].kpis
    kpis = {f: k[f] for f in _UNMEASURED + ["p95_latency_ms", "risk_ratio", "fills", "blocks", "maker_taker_source"]}
    cfg = load_config()
    run = write_synthetic_run(tmp_path / "runs", 8, kpis=kpis, config=cfg)
    res = gate.evaluate(open_run(run), cfg, last_n=8)
    st = {g.kpi: g.status for g in res.goals}
    assert st["net_bps"] == goals.INCONCLUSIVE and st["maker_taker_ratio"] == goals.INCONCLUSIVE
    assert res.verdict in (goals.INCONCLUSIVE, goals.FAIL) and res.verdict != goals.PASS


def test_normal_results_keep_measured_values():
    k = simulate(BEST, "calm", 0, 30.0).kpis
    assert k["fills"]["count"] > 0 and k["fills"]["taker_count"] == 0
    assert all(isinstance(k[f], float) for f in _UNMEASURED + ["p95_latency_ms", "cancel_ratio"])
    assert k["slippage_bps_p95"] == 0.0  # maker fills only: no fill paid slippage (measured)


def test_neg_edge_drivers_come_from_records_negative_components_only():
    from soaklib.core.records import build_record, tuning_off_block, validate_record

    r = simulate(BAD, "default", 2, 1800.0, start_s=7200.0)
    k = r.kpis
    assert k["neg_edge_drivers"] is None  # the simulator leaves it to soaklib.core.records (one rule)
    assert k["net_bps"] < 0 and k["fees_eff_bps"] > 0  # a rebate-positive iteration that loses money
    rec = build_record(iteration=3, seed=2, runner="sim", scenario="default", start_s=7200.0, duration_s=1800.0,
                       kpis=k, params=r.params, market=r.market, runtime_guards=r.runtime_guards,
                       events=r.events, tuning=tuning_off_block(r.params))
    validate_record(rec)
    drivers = rec["summary"]["neg_edge_drivers"]
    assert drivers and "fees_eff_bps" not in drivers
    assert all(rec["summary"][d] < 0 for d in drivers)


@pytest.mark.parametrize("toml, field", [
    ('[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nflash_crash_at_s = 10\nflash_crash_bps = 10000\n',
     "segments[0].flash_crash_bps"),
    ('[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nflash_crash_at_s = 10\nflash_crash_bps = 25000\n',
     "segments[0].flash_crash_bps"),
    ('[regimes.calm]\nvol_bps_per_sqrt_s = 5000\n[[segments]]\nduration_s = 60\nregimes = ["calm"]\n',
     "regimes.calm.vol_bps_per_sqrt_s"),
    ('[regimes.calm]\ninformed_impact_bps = 10000\n[[segments]]\nduration_s = 60\nregimes = ["calm"]\n',
     "regimes.calm.informed_impact_bps"),
    ('[regimes.calm]\ndrift_bps_per_s = -2000\n[[segments]]\nduration_s = 60\nregimes = ["calm"]\n',
     "regimes.calm.drift_bps_per_s"),
])
def test_price_moves_that_make_no_sense_are_refused(tmp_path, toml, field):
    p = tmp_path / "crash.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_scenario(p)
    assert e.value.field == field and str(p) in str(e.value)


@pytest.mark.parametrize("toml", [
    # a crash just under 100 %: the mid lands below one tick
    '[[segments]]\nduration_s = 3600\nregimes = ["calm"]\nflash_crash_at_s = 5\nflash_crash_bps = 9999.95\n',
    # allowed per-step numbers, but very sparse order flow makes each diffusion step huge
    '[regimes.calm]\nvol_bps_per_sqrt_s = 1000\norder_rate_per_s = 0.001\n'
    '[[segments]]\nduration_s = 360000\nregimes = ["calm"]\n',
])
def test_mid_at_or_below_zero_fails_loudly(tmp_path, toml):
    p = tmp_path / "broken-market.toml"
    p.write_text(toml)
    load_scenario(p)  # the file itself passes validation
    with pytest.raises(ConfigError, match="simulated market broke") as e:
        simulate(BEST, p, 0, 300000.0)
    assert str(p) in str(e.value)


@pytest.mark.parametrize("toml, field", [
    ("[sim]\ntick = 0.0\n", "sim.tick"),
    ("[sim]\ntick = 150.0\n", "sim.tick"),
    ("[sim]\ninventory_limit = -1.0\n", "sim.inventory_limit"),
    ("[sim]\ntaker_fee_bps = -4.0\n", "sim.taker_fee_bps"),
    ("[sim]\nlatency_inflight_ms = -1.0\n", "sim.latency_inflight_ms"),
    ("[sim]\nrescue_hold_ms = -500.0\n", "sim.rescue_hold_ms"),
    ("[sim]\nrisk_soft_ratio = 1.5\n", "sim.risk_soft_ratio"),
    ("[sim]\nrescue_target_ratio = 0.6\n", "sim.rescue_target_ratio"),
    ("[sim]\nguard_tick_ms = 0.0\n", "sim.guard_tick_ms"),
    ("[runtime_guards]\nlatency_soft_ms = 400.0\n", "runtime_guards.latency_soft_ms"),
    ("[runtime_guards]\nfreeze_min_duration_ms = -1.0\n", "runtime_guards.freeze_min_duration_ms"),
    ("[runtime_guards]\np95_window_ms = 0.0\n", "runtime_guards.p95_window_ms"),
    ("[params.concurrency_limit]\nmax = 100\n", "params.concurrency_limit.max"),
])
def test_config_validate_refuses_bad_sim_values(tmp_path, toml, field):
    from helpers import assert_config_refused

    assert_config_refused(tmp_path, toml, field)


def test_sim_config_validation_accepts_defaults_and_sane_changes(tmp_path):
    from soaklib.core.config import load_config
    from soaklib.core.sections import MAX_IN_FLIGHT, validate_sim_config
    from soaklib.sim import engine

    assert engine._INFL == MAX_IN_FLIGHT  # the registry bound is the compiled loop's slot count
    cfg = load_config(overrides={"sim": {"tick": 0.01, "taker_fee_bps": 0.0},
                                 "params": {"concurrency_limit": {"max": MAX_IN_FLIGHT}}})
    validate_sim_config(cfg)
    cfg["sim"]["inventory_limit"] = 0.0  # a config handed to simulate() directly is checked too
    with pytest.raises(ConfigError) as e:
        simulate(BEST, "calm", 0, 10.0, config=cfg)
    assert e.value.field == "sim.inventory_limit"
