"""Compiled pieces of the strategy shared by both engines (``sim.engine`` and ``sim.hbt.strategy``).

The two engines run the same market-making strategy on different clocks (ms of the embedded event
loop, ns of hftbacktest); what they compute alike lives here once: the rolling p95 of round trips,
the runtime guards' state machine (latency buffer, debounced partial freeze), the skewed quote
centre, the per-action block checks (counted), and the draw of the next regime of a segment's set (embedded
loop and hbt generator). Each keeps the float operations in the order the engines had them, so
results are unchanged.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# runtime-guard constants: a contiguous block of each engine's constants vector, in this order
GC_P95_WIN, GC_SOFT, GC_HARD, GC_OPEN_MS, GC_CLOSE_MS, GC_MIN_FREEZE = range(6)
N_GC = 6
# runtime-guard state (times on the caller's clock, ms)
GS_SIG, GS_CLEAR, GS_FSTART, GS_P95_MAX, GS_FROZEN, GS_COUNT = range(6)
N_GS = 6


@njit(cache=True)
def rolling_p95(ring_t, ring_v, n_ring, t, win):
    """p95 of the round trips that landed in (t - win, t]; -1 with fewer than 5."""
    tmp = np.empty(n_ring)
    k = 0
    for i in range(n_ring):
        if ring_t[i] <= t and ring_t[i] > t - win:
            tmp[k] = ring_v[i]
            k += 1
    if k < 5:
        return -1.0
    s = np.sort(tmp[:k])
    idx = 0.95 * (k - 1)
    lo = int(idx)
    hi = min(lo + 1, k - 1)
    return s[lo] + (s[hi] - s[lo]) * (idx - lo)


@njit(cache=True)
def guard_state():
    """The guards' state before the first tick (no signal, not frozen)."""
    gs = np.zeros(N_GS)
    gs[GS_SIG] = -1.0
    gs[GS_CLEAR] = -1.0
    return gs


@njit(cache=True)
def guard_tick(gs, G, ring_t, ring_v, n_ring, t):
    """One guard tick at ``t`` (ms): rolling p95 -> latency buffer in the soft band; the hard band,
    debounced (open after / close after / minimum duration), opens or closes the partial freeze.
    Updates ``gs`` (state) and returns ``buf_on`` (``G``: the guard constants block)."""
    p95 = rolling_p95(ring_t, ring_v, n_ring, t, G[GC_P95_WIN])
    if p95 > gs[GS_P95_MAX]:
        gs[GS_P95_MAX] = p95
    buf_on = p95 >= G[GC_SOFT] and p95 < G[GC_HARD]
    hard = p95 >= G[GC_HARD]
    if gs[GS_FROZEN] == 0.0:
        if hard:
            if gs[GS_SIG] < 0:
                gs[GS_SIG] = t
            if t - gs[GS_SIG] >= G[GC_OPEN_MS]:
                gs[GS_FROZEN] = 1.0
                gs[GS_FSTART] = t
                gs[GS_CLEAR] = -1.0
                gs[GS_COUNT] += 1
        else:
            gs[GS_SIG] = -1.0
    else:
        if not hard:
            if gs[GS_CLEAR] < 0:
                gs[GS_CLEAR] = t
            if t - gs[GS_CLEAR] >= G[GC_CLOSE_MS] and t - gs[GS_FSTART] >= G[GC_MIN_FREEZE]:
                gs[GS_FROZEN] = 0.0
                gs[GS_SIG] = -1.0
        else:
            gs[GS_CLEAR] = -1.0
    return buf_on


@njit(cache=True, inline="always")
def quote_center(mid, q, qlim, gain, max_delta, hs):
    """The quote centre: mid skewed against inventory by ``gain * q / qlim`` half-spreads, the skew
    clamped to ``max_delta``."""
    sk = gain * q / qlim
    if sk > max_delta:
        sk = max_delta
    elif sk < -max_delta:
        sk = -max_delta
    return mid * (1.0 - sk * hs * 1e-4)


@njit(cache=True, inline="always")
def blocked(stats, st, kind, frozen, since_send, min_interval, tokens, conc_full):
    """Whether an action (1 place, 2 replace, 3 refresh) is held back now, checked in order: the
    partial freeze (non-place actions), min_interval, the replace token bucket, the concurrency
    limit; the block is counted in ``stats`` at ``st`` = (other, freeze_blocked, min_interval,
    throttle, concurrency) indices."""
    if kind != 1 and frozen:
        stats[st[0]] += 1
        stats[st[1]] += 1
        return True
    if since_send < min_interval:
        stats[st[2]] += 1
        return True
    if kind != 1 and tokens < 1.0:
        stats[st[3]] += 1
        return True
    if conc_full:
        stats[st[4]] += 1
        return True
    return False


@njit(cache=True)
def other_regime(mask, reg, n_regimes):
    """A regime of the set ``mask`` other than ``reg``, drawn uniformly (one uniform draw), or -1
    (no draw) when the set has no other regime."""
    cnt = 0
    for k in range(n_regimes):
        if (mask >> k) & 1 and k != reg:
            cnt += 1
    if cnt == 0:
        return -1
    pick = int(np.random.random() * cnt)
    for k in range(n_regimes):
        if (mask >> k) & 1 and k != reg:
            if pick == 0:
                return k
            pick -= 1
    return -1


# (section, key) of the strategy constants both engines take from the config, in this order; each
# engine lists the indices of its constants vector for them (``strategy_constants``)
STRATEGY_CONFIG = (
    ("sim", "inventory_limit"), ("sim", "risk_soft_ratio"), ("sim", "rebid_threshold_bps"), ("sim", "skew_gain"),
    ("sim", "rescue_hard_ratio"), ("sim", "rescue_hold_ms"), ("sim", "rescue_target_ratio"),
    ("sim", "token_burst_s"), ("sim", "guard_tick_ms"), ("sim", "runtime_guards"),
    ("runtime_guards", "latency_spread_add_bps"), ("runtime_guards", "p95_window_ms"),
    ("runtime_guards", "latency_soft_ms"), ("runtime_guards", "latency_hard_ms"),
    ("runtime_guards", "freeze_open_after_ms"), ("runtime_guards", "freeze_close_after_ms"),
    ("runtime_guards", "freeze_min_duration_ms"),
)


def strategy_constants(n: int, at: tuple[int, ...], cfg, own: dict[int, float]) -> np.ndarray:
    """An engine's constants vector (length ``n``): the ``STRATEGY_CONFIG`` values at indices ``at``
    (a flag as 1.0/0.0) and the engine's own constants ``own`` (index -> value)."""
    C = np.zeros(n)
    for i, (section, key) in zip(at, STRATEGY_CONFIG, strict=True):
        v = cfg[section][key]
        C[i] = (1.0 if v else 0.0) if isinstance(v, bool) else v
    for i, v in own.items():
        C[i] = v
    return C
