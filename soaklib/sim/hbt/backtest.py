"""One iteration = one hftbacktest backtest of ``strategy.mm_strategy`` over a window's market.

``run_iteration(params, market, config=None) -> SimResult`` (the embedded simulator's result type,
same KPI keys). Everything is computed from the fills hftbacktest produced (maker flag, exec price),
the strategy's counters and the market's book-mid path.
The wrapper is thin on purpose: ``make_asset`` + ``strategy_inputs`` + ``mm_strategy`` is all a
direct hftbacktest run needs to reproduce an iteration (tests/test_hbt.py, golden test). Nothing here
compiles per process: the strategy and ``binding`` are numba-cached, and the backtest is built and
closed without hftbacktest's jitclass.

Constants: ``[hbt]`` (venue, queue, gateway, wake step) and, shared with the embedded simulator
because it is the same strategy, ``[sim]`` (inventory limit, rescue, skew, rebid, fees, mark-out,
token burst, guard tick) and ``[runtime_guards]``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from hftbacktest import BacktestAsset, HashMapMarketDepthBacktest, build_hashmap_backtest

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.params import registry
from soaklib.core.sections import check_section, validate_sim_config
from soaklib.sim.hbt import binding as HB
from soaklib.sim.hbt import strategy as ST
from soaklib.sim.hbt.generator import Market
from soaklib.sim.kernels import strategy_constants
from soaklib.sim.result import SimResult


def settings(config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The effective config (defaults if None), its ``[hbt]``, ``[sim]`` and ``[runtime_guards]``
    checked (ConfigError naming the field)."""
    cfg = config if config is not None else load_config()
    check_section(cfg, "hbt")
    validate_sim_config(cfg)
    return cfg  # type: ignore[return-value]


def effective_params(params: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, float | int]:
    """Registry defaults + ``params`` (checked against the registry bounds, naming the field)."""
    if not isinstance(params, Mapping):
        raise ConfigError("expected a mapping of parameters", field="params")
    reg = registry(cfg)
    flat = reg.defaults()
    flat.update(reg.validate_values({k: v for k, v in params.items() if not str(k).startswith("_")},
                                    src="<params>"))
    for name in ST.PARAM_ORDER:
        if name not in flat:
            raise ConfigError("the hbt strategy needs this parameter; it is missing from the registry", field=name)
    return flat


def make_asset(market: Market, cfg: Mapping[str, Any]) -> BacktestAsset:
    """The hftbacktest asset for this market: data, latency series, queue/exchange/fee models."""
    h, s = cfg["hbt"], cfg["sim"]
    a = BacktestAsset().data(market.events).linear_asset(1.0).intp_order_latency(market.latency)
    if h["queue_model"] == "prob":
        a = a.power_prob_queue_model(float(h["prob_queue_power"]))
    else:
        a = a.risk_adverse_queue_model()
    a = a.partial_fill_exchange() if h["exchange"] == "partial" else a.no_partial_fill_exchange()
    return (a.trading_value_fee_model(-s["maker_rebate_bps"] * 1e-4, s["taker_fee_bps"] * 1e-4)
            .tick_size(market.meta["tick"]).lot_size(market.meta["lot"]))


def make_backtest(market: Market, cfg: Mapping[str, Any]) -> HashMapMarketDepthBacktest:
    """hftbacktest's jitclass (``.ptr`` is what ``mm_strategy`` takes).

    hftbacktest keeps raw pointers to ``market``'s arrays, not references: the caller must keep
    ``market`` alive until the backtest is closed (a freed array is replayed as garbage)."""
    return HashMapMarketDepthBacktest([make_asset(market, cfg)])


def new_backtest(market: Market, cfg: Mapping[str, Any]) -> int:
    """The same backtest as ``make_backtest``, as its address only: the builder that
    ``HashMapMarketDepthBacktest`` wraps, without constructing the jitclass (a compile of 1-2 s in
    every fresh process). Close it with ``binding.close``."""
    return build_hashmap_backtest([make_asset(market, cfg)])


# indices of kernels.STRATEGY_CONFIG in the strategy's constants vector
_STRATEGY_AT = (ST.C_QLIM, ST.C_RISK_SOFT, ST.C_REBID_BPS, ST.C_SKEW_GAIN, ST.C_RESCUE_HARD, ST.C_RESCUE_HOLD,
                ST.C_RESCUE_TARGET, ST.C_BURST_S, ST.C_GUARD_TICK, ST.C_GUARDS_ON, ST.C_ADD_BPS, ST.C_P95_WIN,
                ST.C_SOFT, ST.C_HARD, ST.C_OPEN_MS, ST.C_CLOSE_MS, ST.C_MIN_FREEZE)


def strategy_inputs(params: Mapping[str, Any], market: Market, cfg: Mapping[str, Any], scale: int = 1):
    """(flat, P, C, lat_rows, fills_i, fills_f, lats, ages, stats) for ``mm_strategy``; ``scale``
    multiplies the output buffers."""
    flat = effective_params(params, cfg)
    P = np.array([float(flat[n]) for n in ST.PARAM_ORDER])
    h = cfg["hbt"]
    C = strategy_constants(ST.N_CONST, _STRATEGY_AT, cfg, {
        ST.C_STEP_MS: h["decision_step_ms"], ST.C_RESCUE_CROSS_BPS: h["rescue_cross_bps"],
        ST.C_GW_RATE: h["gateway_rate_per_s"], ST.C_GW_BURST: h["gateway_burst"],
        ST.C_BASE_HS: market.meta["base_half_spread_bps"], ST.C_T_END: float(market.t_end_ns)})
    lat = market.latency
    lat_rows = np.stack([lat["req_ts"], lat["exch_ts"], lat["resp_ts"]], axis=1).astype(np.int64)
    dur = market.meta["duration_s"]
    n = (int(dur * 60) + 5000) * scale  # a fill per ~17 ms of simulated time; a full buffer is rerun bigger
    bufs = (np.zeros((n, 3), np.int64), np.zeros((n, 5)), np.zeros(4 * n), np.zeros(4 * n), np.zeros(ST.N_STATS))
    return (flat, P, C, lat_rows) + bufs


def run_raw(params: Mapping[str, Any], market: Market, cfg: Mapping[str, Any]):
    """The backtest itself: (flat params, C, fills_i, fills_f, lats, ages, stats, end state).
    A full fill buffer means fills were dropped, so the (deterministic) run is repeated bigger."""
    scale = 1
    while True:
        flat, P, C, lat_rows, fi, ff, lats, ages, stats = strategy_inputs(params, market, cfg, scale)
        bt = new_backtest(market, cfg)
        try:
            ST.mm_strategy(bt, P, C, lat_rows, fi, ff, lats, ages, stats)
            sv = HB.state_values(bt, 0)[0]
            end = {"position": float(sv["position"]), "balance": float(sv["balance"]), "fee": float(sv["fee"]),
                   "num_trades": int(sv["num_trades"]), "trading_value": float(sv["trading_value"])}
        finally:
            HB.close(bt)
        full = stats[ST.ST_OVERFLOW] or stats[ST.ST_NLAT] >= len(lats) or stats[ST.ST_NAGE] >= len(ages)
        if not full or scale >= 64:
            return flat, C, fi, ff, lats, ages, stats, end
        scale *= 4


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def _pct(a: np.ndarray, q: float, nd: int = 6):
    return _r(np.percentile(a, q), nd) if a.size else None


def _mid_at(market: Market, ts: np.ndarray) -> np.ndarray:
    i = np.searchsorted(market.grid_ts, ts, side="right") - 1
    return market.grid_mid[np.clip(i, 0, len(market.grid_mid) - 1)]


def realized_vol(market: Market, sample_s: float) -> tuple[float, float]:
    """(total bps over the window, bps per sqrt(s)) from book-mid log returns every sample_s."""
    step = max(1, int(round(sample_s * 1000.0 / (market.meta["duration_s"] * 1000.0 / (len(market.grid_mid) - 1)))))
    m = market.grid_mid[::step]
    r = np.diff(np.log(m))
    tot = math.sqrt(float(np.sum(r * r))) * 1e4
    return tot, tot / math.sqrt(market.meta["duration_s"])


def run_iteration(params: Mapping[str, Any], market: Market, config: Mapping[str, Any] | None = None) -> SimResult:
    """One window's backtest and every KPI derived from its fills (``config``: the effective soaklib
    config, defaults if None)."""
    return derive(params, market, settings(config))


def derive(params: Mapping[str, Any], market: Market, cfg: Mapping[str, Any]) -> SimResult:
    """``run_iteration`` for a config already checked by ``settings``."""
    flat, C, fi, ff, lats, ages, st, end = run_raw(params, market, cfg)
    nf = int(st[ST.ST_NFILL])
    F_i, F = fi[:nf], ff[:nf]
    side, maker, touch = F[:, ST.FF_SIDE], F[:, ST.FF_MAKER] > 0, F[:, ST.FF_TOUCH]
    p, x = F[:, ST.FF_PRICE], F[:, ST.FF_QTY]
    t = F_i[:, ST.FI_EXCH_TS]
    m = _mid_at(market, t)
    M = float(market.grid_mid[-1])
    h, sim = cfg["hbt"], cfg["sim"]
    fee_rate = np.where(maker, -sim["maker_rebate_bps"], sim["taker_fee_bps"]) * 1e-4
    ref = np.where(maker, p, touch)  # taker: the touch the strategy saw when it decided
    gross_q = float(np.sum(side * (m - ref) * x))
    slip_q = float(np.sum(np.where(maker, 0.0, -side * (p - touch) * x)))
    fees_q = float(-np.sum(fee_rate * p * x))
    inv_q = float(np.sum(side * x * (M - m)))
    turnover = float(np.sum(p * x))
    q_end = float(np.sum(side * x))
    cash = float(-np.sum(side * p * x)) + fees_q
    pnl = cash + q_end * M
    if nf and turnover > 0:
        k = 1e4 / turnover
        gross_bps, fees_bps, slip_bps, inv_bps = (_r(gross_q * k, 9), _r(fees_q * k, 9), _r(slip_q * k, 9),
                                                  _r(inv_q * k, 9))
        net_bps = gross_bps + fees_bps + slip_bps + inv_bps
    else:
        gross_bps = fees_bps = slip_bps = inv_bps = net_bps = None
    fl: dict[str, Any] = {}
    for sname, sv in (("buy", 1.0), ("sell", -1.0)):
        for lname, lv in (("maker", True), ("taker", False)):
            mm = (side == sv) & (maker == lv)
            fl[f"{sname}_{lname}_count"] = int(mm.sum())
            fl[f"{sname}_{lname}_volume"] = _r(x[mm].sum())
    fl["maker_count"], fl["taker_count"] = int(maker.sum()), int((~maker).sum())
    mv, tv = float(x[maker].sum()), float(x[~maker].sum())
    fl["maker_volume"], fl["taker_volume"] = _r(mv), _r(tv)
    fl["count"], fl["volume"] = nf, _r(x.sum())
    mtr, mt_source = (_r(mv / (mv + tv)), "fills_volume") if mv + tv > 0 else (None, "none")
    m1 = _mid_at(market, t + int(sim["markout_ms"] * 1e6))
    markout = side * (m1 - m) / m * 1e4 if nf else np.zeros(0)
    adverse_bps = _r(np.sum(markout * x) / x.sum()) if nf else None
    slip_fill = -side * (p - touch) / np.where(touch > 0, touch, 1.0) * 1e4
    slip_p95 = _pct(slip_fill[~maker], 95) if (~maker).any() else (0.0 if nf else None)
    lat = lats[: int(st[ST.ST_NLAT])]
    age = ages[: int(st[ST.ST_NAGE])]
    b = {"min_interval": int(st[ST.ST_B_MI]), "concurrency": int(st[ST.ST_B_CONC]), "risk": int(st[ST.ST_B_RISK]),
         "throttle": int(st[ST.ST_B_THR]), "allowed": int(st[ST.ST_ALLOWED]), "other": int(st[ST.ST_B_OTHER])}
    blocked4 = b["min_interval"] + b["concurrency"] + b["risk"] + b["throttle"]
    total = sum(b.values())

    def ratio4(k):
        return b[k] / blocked4 if blocked4 else 0.0

    acts = st[ST.ST_PLACE] + st[ST.ST_REPLACE] + st[ST.ST_CANCEL]
    # equity / inventory on the book-mid grid (fills applied at their exchange time)
    idx = np.searchsorted(market.grid_ts, t, side="right") - 1
    dq = np.zeros(len(market.grid_ts))
    dc = np.zeros(len(market.grid_ts))
    np.add.at(dq, np.clip(idx, 0, None), side * x)
    np.add.at(dc, np.clip(idx, 0, None), -side * p * x - fee_rate * p * x)
    qg, cg = np.cumsum(dq), np.cumsum(dc)
    eq = cg + qg * market.grid_mid
    dd = float(np.max(np.maximum.accumulate(np.maximum(eq, 0.0)) - eq)) if eq.size else 0.0
    dur_s = market.meta["duration_s"]
    qlim = C[ST.C_QLIM]
    rv_tot, rv_s = realized_vol(market, h["rv_sample_s"])
    summary = {
        "net_bps": net_bps, "gross_bps": gross_bps, "fees_eff_bps": fees_bps, "slippage_bps": slip_bps,
        "inventory_bps": inv_bps, "adverse_bps": adverse_bps,
        "adverse_bps_p95": _pct(-markout, 95), "slippage_bps_p95": slip_p95,
        "order_age_p95_ms": _pct(age, 95, 3), "cancel_ratio": _r(st[ST.ST_CANCEL] / acts) if acts else None,
        "p50_latency_ms": _pct(lat, 50, 3), "p95_latency_ms": _pct(lat, 95, 3), "p99_latency_ms": _pct(lat, 99, 3),
        "risk_ratio": _r(ratio4("risk")), "min_interval_ratio": _r(ratio4("min_interval")),
        "concurrency_ratio": _r(ratio4("concurrency")), "throttle_ratio": _r(ratio4("throttle")),
        "blocks": {"counts": b, "total": total,
                   "ratios": {k: round(100.0 * v / total, 1) if total else 0.0 for k, v in b.items()}},
        "fills": fl, "maker_taker_ratio": mtr, "maker_taker_source": mt_source,
        "pnl_quote": _r(pnl, 9), "drawdown_quote": _r(dd, 9),
        "inventory_utilisation": _r(float(np.mean(np.abs(qg))) / qlim),
        "neg_edge_drivers": None, "freeze_time_s": _r(st[ST.ST_FREEZE_TIME] / 1e9, 3),
        "turnover_quote": _r(turnover, 6), "inventory_end": _r(q_end, 9),
        "orders": {"place": int(st[ST.ST_PLACE]), "replace": int(st[ST.ST_REPLACE]), "cancel": int(st[ST.ST_CANCEL]),
                   "rejects": int(st[ST.ST_REJECTS]), "rescues": int(st[ST.ST_RESCUES]),
                   "expired": int(st[ST.ST_EXPIRED]), "messages": int(st[ST.ST_MSGS])},
        "latency_samples": int(lat.size),
    }
    dur_ns = dur_s * 1e9
    guards = {
        "enabled": bool(C[ST.C_GUARDS_ON] > 0),
        "latency_buffer_active_s": _r(st[ST.ST_BUF_TIME] / 1e9, 3),
        "latency_buffer_active": bool(st[ST.ST_BUF_ACTIVE_END]),
        "latency_spread_add_bps": _r(st[ST.ST_ADD_INTEGRAL] / dur_ns),
        "latency_spread_add_bps_config": float(C[ST.C_ADD_BPS]),
        "partial_freeze_count": int(st[ST.ST_FREEZE_COUNT]),
        "partial_freeze_time_s": _r(st[ST.ST_FREEZE_TIME] / 1e9, 3),
        "partial_freeze_active": bool(st[ST.ST_FREEZE_ACTIVE]),
        "partial_freeze_subsystems": ["rebid"],
        "freeze_blocked_actions": int(st[ST.ST_FREEZE_BLOCKED]),
        "rolling_p95_max_ms": _r(st[ST.ST_P95_MAX_ROLL], 3),
    }
    mm = market.meta
    mk = {"scenario": mm["scenario"], "regimes": mm["regimes"], "faults": mm["faults"],
          "realized_vol_bps": _r(rv_tot, 4), "realized_vol_bps_per_sqrt_s": _r(rv_s, 4),
          "mid_start": _r(market.grid_mid[0], 9), "mid_end": _r(M, 9), "jumps": mm["jumps"],
          "latency_spikes": mm["latency_spikes"], "flash_crashes": mm["flash_crashes"],
          "events_per_s": mm["book_events_per_s"], "trades": mm["trades"], "window": mm["window"],
          "generator": mm["generator"], "market_key": mm.get("key")}  # no key: generated, not cached
    extra = {"scenario": mm["scenario"], "seed": mm["seed"], "start_s": mm["start_s"], "duration_s": dur_s,
             "cash_quote": _r(cash, 9), "inventory": _r(q_end, 9), "mid_end": _r(M, 9),
             "pnl_quote_per_h": _r(pnl * 3600.0 / dur_s, 9), "hbt_state": end,
             "queue_model": h["queue_model"], "exchange": h["exchange"], "wakes": int(st[ST.ST_WAKES]),
             "queue_wait_max_ms": _r(st[ST.ST_QUEUE_WAIT_MAX] / 1e6, 3),
             "fills_with_cancel_in_flight": int(st[ST.ST_FILL_CXL])}
    return SimResult(kpis=summary, params=dict(flat), runtime_guards=guards, market=mk, events=int(mm["rows"]),
                     extra=extra)
