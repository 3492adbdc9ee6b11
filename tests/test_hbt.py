"""The opt-in hftbacktest engine (soaklib.sim.hbt, issue 12): common random numbers, determinism,
a direct hftbacktest run reproducing an iteration, queue/latency behaviour, bad input, the market
cache and `soak run --runner hbt` end to end.

Short windows keep the file fast and small on disk; the strategy's machine code is numba-cached
(it calls hftbacktest through soaklib.sim.hbt.binding). Every market goes to a tmp cache.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from helpers import assert_config_refused, run_cli
from hftbacktest import FILLED, GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest
from numba import njit

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.params import load_profile, registry
from soaklib.execute.runners import HbtRunner, make_runner
from soaklib.sim import hbt
from soaklib.sim.hbt import backtest as B
from soaklib.sim.hbt import strategy as ST
from soaklib.sim.hbt.cache import ENV, MarketCache, market_key
from soaklib.sim.hbt.generator import generate, validate_latency
from soaklib.sim.hbt.scenario import load_scenario

SHORT_S = 300.0  # simulated seconds per test window (an hour is ~150-180 book rows per second)
# the prototype's calibrated best cell (stronger skew, smaller quotes than the sim's best_cell)
BEST = {"min_interval_ms": 60, "replace_rate_per_min": 300, "base_spread_bps_delta": 0.05, "tail_age_ms": 600,
        "impact_cap_ratio": 0.07, "max_delta_ratio": 0.30, "concurrency_limit": 10}
CFG = load_config()


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _tmp_market_cache(tmp_path_factory):
    """No test writes to the user's cache: $SOAK_MARKET_CACHE points at a tmp dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(tmp_path_factory.mktemp("hbt-markets")))
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return MarketCache(tmp_path_factory.mktemp("markets"))


@pytest.fixture(scope="module")
def market(cache):
    return cache.get("default", 7, 16, SHORT_S)


def _random_params(rng) -> dict:
    out = {}
    for name, p in registry(CFG).items():
        v = p.normalise(rng.uniform(p.min, p.max))
        out[name] = v
    return out


# -- common random numbers, determinism, accounting -----------------------------------------------

def test_crn_market_byte_identical_over_random_param_pairs(market):
    rng = np.random.default_rng(12)
    ev0, lat0 = _sha(market.events), _sha(market.latency)
    fresh = generate("default", 7, 16, SHORT_S)  # the market is a function of (scenario, seed, window)
    assert _sha(fresh.events) == ev0 and _sha(fresh.latency) == lat0
    for _ in range(3):
        a, b = _random_params(rng), _random_params(rng)
        ra, rb = B.run_iteration(a, market, CFG), B.run_iteration(b, market, CFG)
        assert ra.params != rb.params
        assert ra.market["mid_end"] == rb.market["mid_end"] and ra.events == rb.events
        # the replayed arrays are untouched by either run
        assert _sha(market.events) == ev0 and _sha(market.latency) == lat0


def test_seed_and_window_change_the_market():
    a = generate("calm", 1, 0, 60.0)
    assert _sha(a.events) != _sha(generate("calm", 2, 0, 60.0).events)
    assert _sha(a.events) != _sha(generate("calm", 1, 1, 60.0).events)


def test_simulate_is_deterministic_and_reads_the_window_from_start_s(market):
    r1 = hbt.simulate(BEST, "default", 7, SHORT_S, start_s=16 * SHORT_S)
    r2 = hbt.simulate(BEST, "default", 7, SHORT_S, start_s=16 * SHORT_S + 10.0)  # same window (16)
    dump = (lambda r: json.dumps([r.kpis, r.params, r.runtime_guards, r.market, r.events, r.extra],
                                 sort_keys=True))
    assert dump(r1) == dump(r2)
    assert r1.market["window"] == 16 and r1.events == len(market.events)
    assert r1.kpis == B.run_iteration(BEST, market, CFG).kpis


def test_kpis_have_the_simulators_keys_and_the_accounting_holds(market):
    from soaklib.sim import simulate as sim_simulate

    r = B.run_iteration({}, market, CFG)
    s = r.kpis
    assert set(s) == set(sim_simulate({}, "calm", 0, 5.0).kpis)
    assert s["fills"]["count"] > 0
    assert s["net_bps"] == pytest.approx(s["gross_bps"] + s["fees_eff_bps"] + s["slippage_bps"] + s["inventory_bps"],
                                         abs=1e-12)
    hb = r.extra["hbt_state"]
    # our fills log agrees with hftbacktest's own state: position, trades, cash
    assert s["inventory_end"] == pytest.approx(hb["position"], abs=1e-9)
    assert s["fills"]["count"] == hb["num_trades"]
    assert r.extra["cash_quote"] == pytest.approx(hb["balance"] - hb["fee"], abs=1e-6)
    assert s["pnl_quote"] == pytest.approx(s["turnover_quote"] * s["net_bps"] / 1e4, abs=1e-6)


def test_golden_direct_hftbacktest_run_reproduces_iteration(market, tmp_path):
    """Store the window as hftbacktest files and replay the same @njit strategy directly."""
    np.savez(tmp_path / "feed.npz", data=market.events)
    np.savez(tmp_path / "latency.npz", data=market.latency)
    h, s = CFG["hbt"], CFG["sim"]
    _, C, fi, ff, _, _, st, end = B.run_raw(BEST, market, CFG)
    _, P, C2, lat_rows, fi2, ff2, lats2, ages2, st2 = B.strategy_inputs(BEST, market, CFG)
    asset = (BacktestAsset().data([str(tmp_path / "feed.npz")]).linear_asset(1.0)
             .intp_order_latency([str(tmp_path / "latency.npz")]).power_prob_queue_model(h["prob_queue_power"])
             .no_partial_fill_exchange()
             .trading_value_fee_model(-s["maker_rebate_bps"] * 1e-4, s["taker_fee_bps"] * 1e-4)
             .tick_size(market.meta["tick"]).lot_size(market.meta["lot"]))
    bt = HashMapMarketDepthBacktest([asset])
    ST.mm_strategy(bt.ptr, P, C2, lat_rows, fi2, ff2, lats2, ages2, st2)  # the backtest's address
    pos = bt.position(0)
    bt.close()
    n = int(st[ST.ST_NFILL])
    assert n > 0 and int(st2[ST.ST_NFILL]) == n
    assert np.array_equal(fi[:n], fi2[:n]) and np.array_equal(ff[:n], ff2[:n])
    assert pos == end["position"]
    k = B.run_iteration(BEST, market, CFG).kpis
    assert k["fills"]["count"] == n and k["inventory_end"] == pytest.approx(pos, abs=1e-12)


# -- queue and latency behaviour --------------------------------------------------------------

def test_risk_averse_queue_net_not_above_probabilistic(cache):
    """Risk-averse queue (advances only on trades) is the pessimistic check, window by window."""
    ra_cfg = load_config(overrides={"hbt": {"queue_model": "risk-averse"}})
    for w in (16, 17, 20):
        m = cache.get("default", 11, w, SHORT_S)
        prob = B.run_iteration(BEST, m, CFG).kpis
        ra = B.run_iteration(BEST, m, ra_cfg).kpis
        assert ra["pnl_quote"] <= prob["pnl_quote"] + 1e-9, (w, ra["pnl_quote"], prob["pnl_quote"])
        assert ra["fills"]["count"] <= prob["fills"]["count"], w


def test_cancel_in_flight_can_still_fill(cache):
    bad = load_profile("bad", registry(CFG))
    n = sum(B.run_iteration(bad, cache.get("default", s, 20, SHORT_S), CFG).extra["fills_with_cancel_in_flight"]
            for s in (3, 4))
    assert n > 0


@njit
def _join_touch(bt, out):
    """A bid joining the best bid after 1 s; out[0] = seconds until it fills (1e9: never)."""
    bt.elapse(1_000_000_000)
    t0 = bt.current_timestamp
    d = bt.depth(0)
    bt.submit_buy_order(0, 1, d.best_bid_tick * d.tick_size, 0.01, GTX, LIMIT, False)
    while bt.elapse(10_000_000) == 0:
        o = bt.orders(0).get(1)
        if o is None:
            break
        if o.status == FILLED:
            out[0] = (bt.current_timestamp - t0) / 1e9
            return
        if o.status != 1 and o.req == 0:  # no longer NEW and nothing pending: expired or rejected
            break
    out[0] = 1e9


def test_deep_queue_fills_later_than_thin(tmp_path):
    """Behind a deep touch queue the same bid fills later (or never) than behind a thin one."""
    ra_cfg = load_config(overrides={"hbt": {"queue_model": "risk-averse"}})
    times = {}
    for name, depth in (("thin", 0.05), ("deep", 20.0)):
        f = tmp_path / f"{name}.toml"
        f.write_text(f'name = "{name}"\n[regimes.calm]\ndepth_qty = {depth}\nvol_bps_per_sqrt_s = 0.05\n'
                     f'jump_rate_per_h = 0.0\nsweep_share = 0.0\n[[segments]]\nduration_s = 120\nregimes = ["calm"]\n')
        ts = []
        for seed in range(4):
            # hold the market: hftbacktest keeps raw pointers to its arrays, no reference (a temporary
            # here was freed and reused mid-run, and the replay spun forever on garbage: CI's hang)
            m = generate(f, seed, 0, 120.0)
            bt = B.make_backtest(m, ra_cfg)
            out = np.zeros(1)
            _join_touch(bt, out)
            bt.close()
            del m
            ts.append(out[0])
        times[name] = ts
    assert np.median(times["deep"]) > np.median(times["thin"]), times


def test_reject_storm_rejects_and_finishes():
    m = generate("reject-storm", 2, 0, 120.0)
    assert m.meta["reject_rows"] > 0
    assert B.run_iteration({}, m, CFG).kpis["orders"]["rejects"] > 0


# -- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ('[market]\ntick = 0.0\n', "market.tick"),
    ('[market]\ntick = -0.001\n', "market.tick"),
    ('[market]\nlevels = 0\n', "market.levels"),
    ('[market]\nmid0 = nan\n', "market.mid0"),
    ('[regimes.calm]\ntrade_rate_per_s = -1.0\n', "regimes.calm.trade_rate_per_s"),
    ('[regimes.calm]\ndepth_updates_per_s = -5\n', "regimes.calm.depth_updates_per_s"),
    ('[regimes.calm]\nspeed = 1\n', "regimes.calm.speed"),
])
def test_bad_scenario_names_file_and_field(tmp_path, body, field):
    f = tmp_path / "bad.toml"
    f.write_text(body + '[[segments]]\nduration_s = 60\nregimes = ["calm"]\n')
    with pytest.raises(ConfigError) as e:
        load_scenario(f)
    assert e.value.field == field and e.value.path == str(f)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and field in msg


def test_unknown_scenario_lists_the_shipped_ones():
    with pytest.raises(ConfigError) as e:
        load_scenario("nope")
    assert e.value.field == "scenario" and "flash-crash" in str(e.value) and "reject-storm" in str(e.value)


@pytest.mark.parametrize("kw,field", [
    ({"params": {"min_interval_ms": 5}}, "min_interval_ms"),
    ({"params": {"nope": 1}}, "nope"),
    ({"seed": -1}, "seed"),
    ({"duration_s": 0.0}, "duration_s"),
    ({"start_s": float("nan")}, "start_s"),
])
def test_bad_simulate_input_names_the_field(kw, field):
    args = {"params": {}, "seed": 0, "duration_s": 30.0, "start_s": 0.0} | kw
    with pytest.raises(ConfigError) as e:
        hbt.simulate(args["params"], "calm", args["seed"], args["duration_s"], start_s=args["start_s"])
    assert e.value.field == field


def test_unordered_latency_series_refused():
    lat = generate("calm", 1, 0, 10.0).latency.copy()
    lat[[3, 4]] = lat[[4, 3]]
    with pytest.raises(ConfigError) as e:
        validate_latency(lat, "lat.npz")
    assert e.value.field == "req_ts" and e.value.path == "lat.npz" and "\n" not in str(e.value)


def test_bad_hbt_config_refused_naming_the_field(tmp_path):
    assert_config_refused(tmp_path, '[hbt]\nqueue_model = "fifo"\n', "hbt.queue_model")


# -- the market cache -------------------------------------------------------------------------

def test_cache_reuse_is_byte_identical_and_compressed(tmp_path):
    c = MarketCache(tmp_path)
    a = c.get("calm", 5, 2, 30.0)
    b = c.get("calm", 5, 2, 30.0)
    assert (c.misses, c.hits) == (1, 1)
    assert a.events.dtype == b.events.dtype and _sha(a.events) == _sha(b.events) and _sha(a.latency) == _sha(b.latency)
    assert np.array_equal(a.grid_ts, b.grid_ts) and np.array_equal(a.grid_mid, b.grid_mid) and a.meta == b.meta
    assert B.run_iteration(BEST, a, CFG).kpis == B.run_iteration(BEST, b, CFG).kpis
    assert market_key("calm", 5, 2, 30.0) != market_key("calm", 5, 3, 30.0)
    assert market_key("calm", 5, 2, 30.0) != market_key("volatile", 5, 2, 30.0)
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1 and not list(tmp_path.rglob("*.tmp"))
    raw = a.events.nbytes + a.latency.nbytes + a.grid_ts.nbytes + a.grid_mid.nbytes
    assert files[0].stat().st_size < raw / 4  # compact columns, compressed


def test_cache_dir_from_config_else_env(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "env"))
    hbt.simulate({}, "calm", 1, 20.0)
    assert len(list((tmp_path / "env").rglob("*.npz"))) == 1
    cfg = load_config(overrides={"hbt": {"market_cache_dir": str(tmp_path / "cfg")}})
    hbt.simulate({}, "calm", 1, 20.0, config=cfg)
    assert len(list((tmp_path / "cfg").rglob("*.npz"))) == 1
    off = load_config(overrides={"hbt": {"market_cache": False, "market_cache_dir": str(tmp_path / "off")}})
    hbt.simulate({}, "calm", 2, 20.0, config=off)
    assert not (tmp_path / "off").exists()


# -- the runner and the CLI -------------------------------------------------------------------

def test_make_runner_hbt_checks_the_scenario_up_front():
    r = make_runner("hbt", scenario="calm", duration_s=30.0, config=CFG)
    assert isinstance(r, HbtRunner) and r.name == "hbt"
    with pytest.raises(ConfigError):
        make_runner("hbt", scenario="nope", duration_s=30.0, config=CFG)


def test_soak_run_runner_hbt_end_to_end(tmp_path, capsys):
    """3 tuning iterations, 2 confirmation iterations and the baseline arm, all on hbt markets:
    the arm meets exactly the confirmation windows' markets (common random numbers)."""
    from soaklib.core.records import validate_record
    from soaklib.store.loader import open_run

    runs = tmp_path / "runs"
    code, out, err = run_cli(["run", "--runner", "hbt", "--iterations", "3", "--auto-tune", "--confirm-iterations", "2",
                              "--duration-s", "120", "--scenario", "default", "--seed", "5", "--runs-dir", runs], capsys)
    assert code == 0, err
    run_dir = next(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["runner"] == "hbt" and manifest["status"] == "completed"
    recs = [json.loads((run_dir / f"ITER_SUMMARY_{n}.json").read_text()) for n in range(1, 6)]
    for n, rec in enumerate(recs, 1):
        validate_record(rec, f"ITER_SUMMARY_{n}.json")
        assert rec["runner"] == "hbt" and rec["status"] == "ok"
        assert rec["summary"]["fills"]["count"] > 0 and rec["market"]["window"] == n - 1
    assert [r["phase"] for r in recs] == ["tune"] * 3 + ["confirm"] * 2
    assert len(open_run(run_dir).records) == 5
    arm = open_run(run_dir / "baseline").records
    assert [r["market"] for r in arm] == [r["market"] for r in recs[3:]]
    code, _, err = run_cli(["verify", run_dir], capsys)
    assert code == 0, err
    code, out, err = run_cli(["gate", run_dir], capsys)
    assert code in (0, 1) and "verdict:" in out, out + err  # 2 pairs < min_pairs: INCONCLUSIVE is fine


def test_soak_run_runner_hbt_bad_scenario_is_one_line(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text('[market]\nlevels = 0\n[[segments]]\nduration_s = 60\nregimes = ["calm"]\n')
    code, out, err = run_cli(["run", "--runner", "hbt", "--iterations", "1", "--scenario", f,
                              "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 2 and not (tmp_path / "runs").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(f) in lines[0] and "market.levels" in lines[0], err


def test_backtest_is_deterministic_across_repeats(cache):
    """hftbacktest's order map iterates in a random hash order (new per map); the strategy must not
    depend on it (it once did: p95 latency and fills varied between identical runs on this window)."""
    m = cache.get("default", 3, 0, 3600.0)
    dump = (lambda r: json.dumps([r.kpis, r.runtime_guards, r.extra["fills_with_cancel_in_flight"]],
                                 sort_keys=True, default=str))
    assert len({dump(B.run_iteration({}, m, CFG)) for _ in range(5)}) == 1
