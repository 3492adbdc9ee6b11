"""Market generator: (scenario, seed, window) -> hftbacktest event array + order-latency series.

The market never sees the strategy: it is a function of (scenario content, seed, window index,
duration) only, drawn from numpy ``SeedSequence([seed, window])`` children (one stream for the
price/book/trades, one for the latency series), so two parameter sets meet byte-identical markets
(common random numbers).

Model (units as in the scenario TOML):
- latent log-mid x (bps) on a ``mid_step_ms`` grid: diffusion with regime vol x stochastic-vol
  factor exp(h - vov^2) (h an OU with sd ``vol_of_vol``: E[sigma^2] = vol^2, volatility clusters),
  drift (trending; sign drawn on entry), Poisson jumps (exponential size, random sign), flash
  crashes (instant drop, linear partial recovery); regimes switch as a Markov chain within a segment.
- L2 book: ``levels`` price levels per side on a grid of ``level_gap_ticks``; best bid level
  B = floor(y - s/2), ask = B + s (y = mid in level units, s = regime spread in levels); every grid
  step the book is diffed against the previous one (deletions, then additions), so it never crosses
  and always shows ``levels`` levels. Level quantities: lognormal around depth_qty*(1+slope*i),
  re-drawn by Poisson depth updates (touch-heavy), depleted at the touch by trades.
- trades at the touch (Poisson, ``trade_rate_per_s``); a share ``sweep_share`` prints beyond the
  touch (exponential depth ``sweep_depth_bps``); a share ``informed_share`` takes the side of the
  latent mid's move over the next ``informed_horizon_s`` (trade imbalance that precedes moves).
- feed latency: local_ts = exch_ts + feed_latency + exponential jitter (kept monotone).
- order latency (hftbacktest IntpOrderLatency rows req_ts/exch_ts/resp_ts): lognormal round trip
  (AR(1) in log space) x regime mult x storm mult; reject rows carry exch_ts = 0 (hftbacktest's
  reject encoding), drawn so that a share ``reject_prob`` of request time is rejected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hftbacktest.data.validation import validate_event_order
from numba import njit

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.sim import kernels as K
from soaklib.sim import layout as L
from soaklib.sim import numba_cache
from soaklib.sim.hbt import scenario as S
from soaklib.sim.kernels import other_regime

numba_cache.follow(__file__, L.__file__, S.__file__, K.__file__)  # constants and kernels compiled in

GENERATOR_VERSION = "hbt-gen-2"
T_EPOCH_NS = 1_700_000_000_000_000_000  # absolute time of window 0's start (any fixed epoch)
EXCH_EVENT = 1 << 31
LOCAL_EVENT = 1 << 30
BUY_EVENT = 1 << 29
SELL_EVENT = 1 << 28
DEPTH_EVENT = 1
TRADE_EVENT = 2

event_dtype = np.dtype([("ev", "u8"), ("exch_ts", "i8"), ("local_ts", "i8"), ("px", "f8"), ("qty", "f8"),
                        ("order_id", "u8"), ("ival", "i8"), ("fval", "f8")], align=True)
order_latency_dtype = np.dtype([("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")],
                               align=True)

# constants vector for the compiled loops
(M_MID0, M_TICK, M_LOT, M_GAP, M_LEVELS, M_SLOPE, M_DSIG, M_STEP_MS, M_HORIZON_S) = range(9)
N_M = 9
# stats
ST_ROWS, ST_OVERFLOW, ST_JUMPS, ST_CRASHES, ST_NREG, ST_TRADES, ST_SWEEPS, ST_INFORMED, ST_DEPTH = range(9)
N_ST = 9
_RING = 1 << 14  # level-qty slots (level index modulo this); a book spans far fewer levels


@dataclass
class Market:
    """One window's market: what hftbacktest replays plus what the KPIs need to read the path."""

    events: np.ndarray          # event_dtype, validated
    latency: np.ndarray         # order_latency_dtype (IntpOrderLatency rows)
    grid_ts: np.ndarray         # int64 exch ns of the book-mid grid
    grid_mid: np.ndarray        # book mid (best bid + best ask)/2 at each grid step
    grid_regime: np.ndarray     # int8 regime index per grid step
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def t0_ns(self) -> int:
        return int(self.meta["t0_ns"])

    @property
    def t_end_ns(self) -> int:
        return int(self.meta["t_end_ns"])


def _seeds(seed: int, window: int) -> tuple[int, int, int]:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFF, int(window)])
    mk, lat, strat = ss.spawn(3)
    return (int(mk.generate_state(1, np.uint32)[0]), int(lat.generate_state(1, np.uint32)[0]),
            int(strat.generate_state(1, np.uint32)[0]))


@njit(cache=True)
def _mid_path(seed, n_grid, dt_ms, SEG, R, x, reg_out, regs, stats):
    """Latent log-mid (bps) and regime on the grid; regs logs (grid index, regime) switches."""
    np.random.seed(seed)
    dts = dt_ms * 1e-3
    si = 0
    reg = int(SEG[0, 12])  # S_INIT: the segment's first regime
    drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
    h = np.random.standard_normal() * R[reg, 4]
    next_switch = np.inf
    sw = SEG[0, 3]
    if sw > 0:
        next_switch = np.random.exponential(3.6e6 / sw)
    crash_at = SEG[0, 8]
    crash_done = crash_at < 0
    nr = 0
    regs[0, 0] = 0
    regs[0, 1] = reg
    nr = 1
    x[0] = 0.0
    for k in range(n_grid - 1):
        t = k * dt_ms
        tn = t + dt_ms
        # segment boundary
        while si + 1 < SEG.shape[0] and tn > SEG[si, 1]:
            si += 1
            reg = int(SEG[si, 12])
            drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
            sw = SEG[si, 3]
            next_switch = tn + np.random.exponential(3.6e6 / sw) if sw > 0 else np.inf
            crash_at = SEG[si, 8]
            crash_done = crash_at < 0
            if nr < regs.shape[0]:
                regs[nr, 0] = k + 1
                regs[nr, 1] = reg
                nr += 1
        if tn >= next_switch:
            j = other_regime(int(SEG[si, L.S_MASK]), reg, R.shape[0])
            if j >= 0:
                reg = j
                drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
                if nr < regs.shape[0]:
                    regs[nr, 0] = k + 1
                    regs[nr, 1] = reg
                    nr += 1
            next_switch = tn + np.random.exponential(3.6e6 / SEG[si, 3])
        vov = R[reg, 4]
        a = math.exp(-math.log(2.0) * dts / R[reg, 5])
        h = a * h + math.sqrt(1.0 - a * a) * vov * np.random.standard_normal()
        sig = R[reg, 0] * math.exp(h - vov * vov)
        r = sig * math.sqrt(dts) * np.random.standard_normal() + R[reg, 1] * drift_sign * dts
        jr = R[reg, 2]
        if jr > 0 and np.random.random() < jr / 3.6e6 * dt_ms:
            js = R[reg, 3] * np.random.exponential(1.0)
            r += js if np.random.random() < 0.5 else -js
            stats[ST_JUMPS] += 1
        if not crash_done and tn > crash_at:
            rec_ms = SEG[si, 11]
            if t <= crash_at:  # the drop itself
                r -= SEG[si, 9]
                stats[ST_CRASHES] += 1
                if rec_ms <= 0:
                    crash_done = True
            else:  # linear partial recovery
                r += SEG[si, 9] * SEG[si, 10] * dt_ms / rec_ms
                if tn >= crash_at + rec_ms:
                    crash_done = True
        x[k + 1] = x[k] + r
        reg_out[k] = reg
    reg_out[n_grid - 1] = reg
    stats[ST_NREG] = nr


@njit(cache=True, inline="always")
def _lvl_qty(off, depth, M):
    q = depth * (1.0 + M[M_SLOPE] * off) * math.exp(M[M_DSIG] * np.random.standard_normal()
                                                    - 0.5 * M[M_DSIG] * M[M_DSIG])
    lots = math.floor(q / M[M_LOT] + 0.5)
    if lots < 1.0:
        lots = 1.0
    return lots * M[M_LOT]


@njit(cache=True, inline="always")
def _row(ev, ts, px, qty, n, e, t, p, q):
    if n < ev.shape[0]:
        ev[n] = e
        ts[n] = t
        px[n] = p
        qty[n] = q
    return n + 1


@njit(cache=True)
def _book(seed, n_grid, dt_ms, n_window_grid, x, reg_g, R, M, ev, ts, px, qty, grid_mid, stats):
    """Depth diffs, depth updates and trades in exch time order (rows written in order)."""
    np.random.seed(seed)
    tick = M[M_TICK]
    gap = int(M[M_GAP])
    K = int(M[M_LEVELS])
    lot = M[M_LOT]
    mid0_ticks = M[M_MID0] / tick
    hz = int(M[M_HORIZON_S] * 1000.0 / dt_ms + 0.5)
    ring = np.zeros(_RING)
    dns = int(dt_ms * 1e6)
    D = np.uint64(DEPTH_EVENT | EXCH_EVENT | LOCAL_EVENT)
    T = np.uint64(TRADE_EVENT | EXCH_EVENT | LOCAL_EVENT)
    Bf = np.uint64(BUY_EVENT)
    Sf = np.uint64(SELL_EVENT)
    n = 0
    B_old = 0
    A_old = 0
    tmp_t = np.empty(4096)
    tmp_k = np.empty(4096, np.int64)
    for k in range(n_window_grid):
        reg = reg_g[k]
        t_ns = k * dns
        y = mid0_ticks * math.exp(x[k] * 1e-4) / gap
        s = int(R[reg, 13])
        B = int(math.floor(y - s / 2.0))
        A = B + s
        depth = R[reg, 11]
        if k == 0:
            for i in range(K):
                q = _lvl_qty(i, depth, M)
                ring[(B - i) & (_RING - 1)] = q
                n = _row(ev, ts, px, qty, n, D | Bf, 0, (B - i) * gap * tick, q)
                q = _lvl_qty(i, depth, M)
                ring[(A + i) & (_RING - 1)] = q
                n = _row(ev, ts, px, qty, n, D | Sf, 0, (A + i) * gap * tick, q)
        elif B != B_old or A != A_old:
            # deletions first (so the book never crosses), then the new levels
            for lv in range(B_old - K + 1, B_old + 1):
                if lv < B - K + 1 or lv > B:
                    ring[lv & (_RING - 1)] = 0.0
                    n = _row(ev, ts, px, qty, n, D | Bf, t_ns, lv * gap * tick, 0.0)
            for lv in range(A_old, A_old + K):
                if lv < A or lv > A + K - 1:
                    ring[lv & (_RING - 1)] = 0.0
                    n = _row(ev, ts, px, qty, n, D | Sf, t_ns, lv * gap * tick, 0.0)
            for lv in range(B - K + 1, B + 1):
                if lv < B_old - K + 1 or lv > B_old:
                    q = _lvl_qty(B - lv, depth, M)
                    ring[lv & (_RING - 1)] = q
                    n = _row(ev, ts, px, qty, n, D | Bf, t_ns, lv * gap * tick, q)
            for lv in range(A, A + K):
                if lv < A_old or lv > A_old + K - 1:
                    q = _lvl_qty(lv - A, depth, M)
                    ring[lv & (_RING - 1)] = q
                    n = _row(ev, ts, px, qty, n, D | Sf, t_ns, lv * gap * tick, q)
        B_old = B
        A_old = A
        grid_mid[k] = (B + A) * 0.5 * gap * tick
        # Poisson depth updates and trades inside (t_k, t_k+1)
        nd = np.random.poisson(R[reg, 12] * dt_ms * 1e-3)
        nt = np.random.poisson(R[reg, 6] * dt_ms * 1e-3)
        m = min(nd + nt, 4096)
        for i in range(m):
            tmp_t[i] = np.random.random()
            tmp_k[i] = 1 if i < nt else 0
        order = np.argsort(tmp_t[:m])
        for jj in range(m):
            i = order[jj]
            te = t_ns + 1 + int(tmp_t[i] * (dns - 2))
            if tmp_k[i] == 0:  # depth update: a level re-drawn, touch-heavy
                off = min(np.random.geometric(0.3) - 1, K - 1)
                if np.random.random() < 0.5:
                    lv = B - off
                    q = _lvl_qty(off, depth, M)
                    ring[lv & (_RING - 1)] = q
                    n = _row(ev, ts, px, qty, n, D | Bf, te, lv * gap * tick, q)
                else:
                    lv = A + off
                    q = _lvl_qty(off, depth, M)
                    ring[lv & (_RING - 1)] = q
                    n = _row(ev, ts, px, qty, n, D | Sf, te, lv * gap * tick, q)
                stats[ST_DEPTH] += 1
            else:  # trade
                if np.random.random() < R[reg, 8]:
                    kk = min(k + hz, n_grid - 1)
                    dx = x[kk] - x[k]
                    buy = dx > 0 if dx != 0 else np.random.random() < 0.5
                    stats[ST_INFORMED] += 1
                else:
                    buy = np.random.random() < 0.5
                size = max(lot, math.floor(np.random.exponential(R[reg, 7]) / lot + 0.5) * lot)
                sweep = np.random.random() < R[reg, 9]
                extra = 0
                if sweep:
                    extra = int(np.random.exponential(R[reg, 10]) * 1e-4 * M[M_MID0] / tick)
                    stats[ST_SWEEPS] += 1
                if buy:
                    p_t = A * gap + extra
                    n = _row(ev, ts, px, qty, n, T | Bf, te, p_t * tick, size)
                    slot = A & (_RING - 1)
                    q = max(ring[slot] - size, lot)
                    ring[slot] = q
                    n = _row(ev, ts, px, qty, n, D | Sf, te, A * gap * tick, q)
                else:
                    p_t = B * gap - extra
                    n = _row(ev, ts, px, qty, n, T | Sf, te, p_t * tick, size)
                    slot = B & (_RING - 1)
                    q = max(ring[slot] - size, lot)
                    ring[slot] = q
                    n = _row(ev, ts, px, qty, n, D | Bf, te, B * gap * tick, q)
                stats[ST_TRADES] += 1
    stats[ST_ROWS] = n
    stats[ST_OVERFLOW] = 1.0 if n > ev.shape[0] else 0.0


@njit(cache=True)
def _ar1(z, b, a):
    """y[n] = b*z[n] + a*y[n-1] (y[-1] = 0): the log-latency noise (scipy's lfilter([b], [1, -a]))."""
    y = np.empty_like(z)
    prev = 0.0
    for i in range(z.shape[0]):
        prev = b * z[i] + a * prev
        y[i] = prev
    return y


def _latency_series(sc: S.Scenario, SEG: np.ndarray, seed: int, dur_ms: float, grid_regime: np.ndarray,
                    dt_ms: float, t0_ns: int) -> tuple[np.ndarray, dict[str, int]]:
    """IntpOrderLatency rows every latency_sample_ms (and 60 s past the window's end)."""
    mk = sc.market
    rng = np.random.Generator(np.random.PCG64(seed))
    step = mk["latency_sample_ms"]
    t = np.arange(0.0, dur_ms + 60_000.0 + step, step)
    n = len(t)
    a = math.exp(-math.log(2.0) * step / 1000.0 / mk["latency_halflife_s"])
    z = rng.standard_normal(n)
    log_noise = _ar1(z, math.sqrt(1 - a * a) * mk["latency_sigma"], a)
    gi = np.minimum((t / dt_ms).astype(np.int64), len(grid_regime) - 1)
    mult = sc.regimes[grid_regime[gi], S.R_LAT_MULT]
    # storms: Poisson windows per segment; rejects: per-row draws (a request between two rows is
    # rejected when either row is a reject row, so q = 1 - sqrt(1 - p) per row gives share p)
    spike = np.ones(n)
    rej = np.zeros(n, bool)
    n_spikes = 0
    for row in SEG:
        s0, s1 = row[L.S_START], row[L.S_END]
        if row[L.S_SPIKE_RATE] > 0:
            tt = s0 + rng.exponential(3.6e6 / row[L.S_SPIKE_RATE])
            while tt < s1:
                m = (t >= tt) & (t < tt + row[L.S_SPIKE_DUR])
                spike[m] = row[L.S_SPIKE_MULT]
                n_spikes += 1
                tt += row[L.S_SPIKE_DUR] + rng.exponential(3.6e6 / row[L.S_SPIKE_RATE])
        if row[L.S_REJECT] > 0:
            m = (t >= s0) & (t < s1)
            q = 1.0 - math.sqrt(1.0 - row[L.S_REJECT])
            rej[m] = rng.random(int(m.sum())) < q
    rt = mk["latency_base_ms"] * mult * spike * np.exp(log_noise)
    rt_ns = np.maximum((rt * 1e6).astype(np.int64), 2)
    entry = np.maximum((rt_ns * mk["latency_entry_share"]).astype(np.int64), 1)
    out = np.zeros(n, order_latency_dtype)
    out["req_ts"] = t0_ns + (t * 1e6).astype(np.int64)
    # the exchange processes requests in order: accepted rows' exch_ts never go backwards (a storm's
    # end would otherwise let a later request overtake an earlier one; IntpOrderLatency needs order)
    ex = out["req_ts"] + entry
    acc = np.flatnonzero(~rej)
    ex_acc = np.maximum.accumulate(ex[acc] - np.arange(acc.size)) + np.arange(acc.size)  # strictly increasing
    ex[acc] = ex_acc
    out["exch_ts"] = np.where(rej, 0, ex)
    out["resp_ts"] = np.maximum(out["req_ts"] + rt_ns, np.where(rej, 0, ex + 1))
    return out, {"latency_spikes": n_spikes, "reject_rows": int(rej.sum())}


def validate_latency(lat: np.ndarray, path: object = "<latency>") -> None:
    """The series hftbacktest's IntpOrderLatency can interpolate: ordered, non-negative latencies."""
    if lat.dtype != order_latency_dtype:
        raise ConfigError(f"expected dtype {order_latency_dtype}, got {lat.dtype}", path=path, field="latency")
    if len(lat) < 2:
        raise ConfigError("expected at least 2 rows", path=path, field="latency")
    req = lat["req_ts"]
    bad = np.flatnonzero(np.diff(req) <= 0)
    if bad.size:
        raise ConfigError(f"req_ts not strictly increasing at row {int(bad[0]) + 1}", path=path, field="req_ts")
    ok = lat["exch_ts"] > 0
    if np.any(lat["exch_ts"][ok] < req[ok]):
        raise ConfigError("exch_ts before req_ts (negative entry latency)", path=path, field="exch_ts")
    ex = lat["exch_ts"][ok]
    bad = np.flatnonzero(np.diff(ex) <= 0)
    if bad.size:
        raise ConfigError("exch_ts not increasing over accepted rows", path=path, field="exch_ts")
    if np.any(lat["resp_ts"] < np.where(ok, lat["exch_ts"], req)):
        raise ConfigError("resp_ts before exch_ts (negative response latency)", path=path, field="resp_ts")


def generate(scenario, seed: int, window_index: int, duration_s: float = 3600.0) -> Market:
    """The market of window ``window_index`` (start = window_index*duration_s into the schedule)."""
    sc = S.load_scenario(scenario)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"expected an integer seed >= 0, got {seed!r}", field="seed")
    if isinstance(window_index, bool) or not isinstance(window_index, (int, np.integer)) or window_index < 0:
        raise ConfigError(f"expected an integer window >= 0, got {window_index!r}", field="window")
    if finite(duration_s) is None or duration_s <= 0:
        raise ConfigError(f"expected a duration > 0 s, got {duration_s!r}", field="duration_s")
    mk = sc.market
    start_s = float(window_index) * float(duration_s)
    SEG, faults = sc.window(start_s, float(duration_s))
    s_mkt, s_lat, _ = _seeds(int(seed), int(window_index))
    dt_ms = mk["mid_step_ms"]
    dur_ms = float(duration_s) * 1000.0
    n_window = int(math.ceil(dur_ms / dt_ms)) + 1
    hz = int(mk["informed_horizon_s"] * 1000.0 / dt_ms + 0.5)
    n_grid = n_window + hz  # the latent path runs ahead of the window so late trades can "know" it
    x = np.zeros(n_grid)
    reg_g = np.zeros(n_grid, np.int8)
    regs = np.zeros((4096, 2), np.int64)
    st = np.zeros(N_ST)
    _mid_path(s_mkt, n_grid, dt_ms, SEG, sc.regimes, x, reg_g, regs, st)
    if not np.all(np.isfinite(x)):
        raise ConfigError("the mid path is not finite; lower the regimes' vol/jumps", path=sc.path, field="regimes")
    low = mk["mid0"] * np.exp(x.min() * 1e-4)
    if low <= mk["tick"] * mk["level_gap_ticks"] * (mk["levels"] + 10):
        raise ConfigError(f"the mid fell to {low:.6g}, too close to 0 for the book; lower the moves",
                          path=sc.path, field="regimes")
    M = np.zeros(N_M)
    M[M_MID0], M[M_TICK], M[M_LOT] = mk["mid0"], mk["tick"], mk["lot"]
    M[M_GAP], M[M_LEVELS], M[M_SLOPE], M[M_DSIG] = (mk["level_gap_ticks"], mk["levels"], mk["depth_slope"],
                                                    mk["depth_sigma"])
    M[M_STEP_MS], M[M_HORIZON_S] = dt_ms, mk["informed_horizon_s"]
    rate = float((sc.regimes[:, S.R_DEPTH_RATE] + 2 * sc.regimes[:, S.R_TRADE_RATE]).max())
    cap = int(rate * duration_s * 1.3 + n_window * 2 + 4 * mk["levels"] * 200 + 10_000)
    grid_mid = np.zeros(n_window)
    while True:
        ev = np.empty(cap, np.uint64)
        ts = np.empty(cap, np.int64)
        px = np.empty(cap)
        qty = np.empty(cap)
        st2 = st.copy()
        _book(s_mkt ^ 0x5BD1E995, n_grid, dt_ms, n_window, x, reg_g, sc.regimes, M, ev, ts, px, qty,
              grid_mid, st2)
        if not st2[ST_OVERFLOW]:
            break
        cap = int(st2[ST_ROWS]) + 1000
    st = st2
    nrow = int(st[ST_ROWS])
    t0_ns = T_EPOCH_NS + int(round(start_s * 1e9))
    out = np.zeros(nrow, event_dtype)
    out["ev"] = ev[:nrow]
    out["exch_ts"] = t0_ns + ts[:nrow]
    out["px"] = px[:nrow]
    out["qty"] = qty[:nrow]
    # feed latency, from the market stream's own child (a different draw count must not shift the book)
    frng = np.random.Generator(np.random.PCG64(s_mkt + 1))
    lat = int(mk["feed_latency_ms"] * 1e6) + (frng.exponential(mk["feed_jitter_ms"] * 1e6, nrow)
                                              if mk["feed_jitter_ms"] > 0 else np.zeros(nrow)).astype(np.int64)
    out["local_ts"] = np.maximum.accumulate(out["exch_ts"] + lat)
    validate_event_order(out)
    latency, lstats = _latency_series(sc, SEG, s_lat, dur_ms, reg_g, dt_ms, t0_ns)
    validate_latency(latency, sc.path)
    grid_ts = t0_ns + (np.arange(n_window) * int(dt_ms * 1e6)).astype(np.int64)
    nr = int(st[ST_NREG])
    path = []
    for i in range(nr):
        g0 = int(regs[i, 0])
        g1 = int(regs[i + 1, 0]) if i + 1 < nr else n_window
        if g0 >= n_window:
            break
        name = sc.regime_names[int(regs[i, 1])]
        a, b = round(start_s + g0 * dt_ms / 1000.0, 3), round(start_s + min(g1, n_window) * dt_ms / 1000.0, 3)
        if path and path[-1]["regime"] == name:
            path[-1]["end_s"] = b
        else:
            path.append({"regime": name, "start_s": a, "end_s": min(b, start_s + duration_s)})
    kind = out["ev"] & np.uint64(0xFF)
    meta = {
        "generator": GENERATOR_VERSION, "scenario": sc.name, "scenario_hash": sc.content_hash,
        "seed": int(seed), "window": int(window_index), "start_s": start_s, "duration_s": float(duration_s),
        "t0_ns": t0_ns, "t_end_ns": t0_ns + int(round(dur_ms * 1e6)),
        "tick": mk["tick"], "lot": mk["lot"], "mid0": mk["mid0"], "base_half_spread_bps": mk["base_half_spread_bps"],
        "regimes": path, "faults": faults, "jumps": int(st[ST_JUMPS]), "flash_crashes": int(st[ST_CRASHES]),
        "trades": int(st[ST_TRADES]), "sweeps": int(st[ST_SWEEPS]), "informed_trades": int(st[ST_INFORMED]),
        "depth_rows": int((kind == DEPTH_EVENT).sum()), "trade_rows": int((kind == TRADE_EVENT).sum()),
        "rows": int(nrow), "book_events_per_s": round(nrow / float(duration_s), 3),
        "latency_rows": int(len(latency)), **lstats,
    }
    return Market(events=out, latency=latency, grid_ts=grid_ts, grid_mid=grid_mid,
                  grid_regime=reg_g[:n_window].copy(), meta=meta)
