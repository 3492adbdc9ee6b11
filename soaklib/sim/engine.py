"""The compiled event loop of the embedded simulator and its Python wrapper.

One market event = one market order arrival (Poisson, total rate 2·A per regime) with the mid
diffusing in between. Each event draws exactly four numbers: the gap (exponential), the diffusion
shock (normal), the order side (uniform) and the depth the order reaches (exponential / κ), so a
quote at δ bps from mid is hit with intensity A·e^(−κδ) (Avellaneda–Stoikov). Everything the KPIs
report is accumulated from what happened in the loop (fills, sends, blocks, latency samples).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.core.params import registry
from soaklib.core.sections import validate_sim_config
from soaklib.sim import kernels as K
from soaklib.sim import layout, numba_cache
from soaklib.sim.layout import (  # noqa: F401 (the compiled loop reads them as globals)
    BROKEN_MID,
    BROKEN_TAKER_PRICE,
    C_ADD_BPS,
    C_BASE_HS,
    C_BURST_S,
    C_CLOSE_MS,
    C_GUARD_TICK,
    C_GUARDS_ON,
    C_HARD,
    C_LAT_BASE,
    C_LAT_INFLIGHT,
    C_LAT_RATE,
    C_LAT_SIGMA,
    C_MARKOUT_MS,
    C_MID0,
    C_MIN_FREEZE,
    C_MO_SIZE,
    C_OPEN_MS,
    C_P95_WIN,
    C_QLIM,
    C_RATE_TAU,
    C_REBATE_BPS,
    C_REBID_BPS,
    C_RESCUE_HARD,
    C_RESCUE_HOLD,
    C_RESCUE_TARGET,
    C_RISK_SOFT,
    C_SKEW_GAIN,
    C_SLIP_BPS,
    C_SOFT,
    C_TAKER_FEE_BPS,
    C_TICK,
    F_LIQ,
    F_MARKOUT,
    F_MID,
    F_PRICE,
    F_QTY,
    F_SIDE,
    F_SLIP,
    F_T,
    N_CONST,
    N_FCOL,
    N_RCOL,
    N_SCOL,
    N_STATS,
    P_CONCURRENCY,
    P_IMPACT_CAP,
    P_MAX_DELTA,
    P_MIN_INTERVAL,
    P_REPLACE_RATE,
    P_SPREAD_DELTA,
    P_TAIL_AGE,
    PARAM_ORDER,
    R_DRIFT,
    R_INF_BPS,
    R_INF_SHARE,
    R_JUMP_BPS,
    R_JUMP_RATE,
    R_KAPPA,
    R_LAT_MULT,
    R_MKT_HS,
    R_RATE,
    R_VOL,
    S_CRASH_AT,
    S_CRASH_BPS,
    S_CRASH_REC,
    S_CRASH_REC_MS,
    S_END,
    S_INIT,
    S_MASK,
    S_REJECT,
    S_SPIKE_DUR,
    S_SPIKE_MULT,
    S_SPIKE_RATE,
    S_START,
    S_SWITCH,
    ST_ADD_INTEGRAL,
    ST_ALLOWED,
    ST_B_CONC,
    ST_B_MI,
    ST_B_OTHER,
    ST_B_RISK,
    ST_B_THR,
    ST_BROKEN,
    ST_BROKEN_AT,
    ST_BUF_ACTIVE_END,
    ST_BUF_TIME,
    ST_CANCEL,
    ST_CASH,
    ST_CRASHES,
    ST_DD,
    ST_EVENTS,
    ST_FEES,
    ST_FREEZE_ACTIVE,
    ST_FREEZE_BLOCKED,
    ST_FREEZE_COUNT,
    ST_FREEZE_TIME,
    ST_GROSS,
    ST_INV_TIME,
    ST_JUMPS,
    ST_MID_END,
    ST_NAGE,
    ST_NFILL,
    ST_NLAT,
    ST_NREG,
    ST_OVERFLOW,
    ST_P95_MAX_ROLL,
    ST_PEAK,
    ST_PLACE,
    ST_Q,
    ST_REJECTS,
    ST_REPLACE,
    ST_RESCUES,
    ST_SLIP,
    ST_SPIKES,
    ST_SUMR2,
    ST_SXM,
    ST_T_END,
    ST_TURNOVER,
)
from soaklib.sim.result import SimResult
from soaklib.sim.scenario import load_scenario

numba_cache.follow(__file__, K.__file__, layout.__file__)  # the cached loop embeds their code and constants

_INFL = 64  # in-flight slots (== core.sections.MAX_IN_FLIGHT, the bound on params.concurrency_limit.max)
_RING = 1024  # latency samples kept for the rolling p95
_BLOCK_ST = (ST_B_OTHER, ST_FREEZE_BLOCKED, ST_B_MI, ST_B_THR, ST_B_CONC)  # kernels.blocked's order


@njit(cache=True, inline="always")
def _regime(R, reg):
    """The market constants of regime ``reg``; ``lam`` counts both sides' market orders."""
    return (R[reg, R_VOL], R[reg, R_DRIFT], R[reg, R_KAPPA], R[reg, R_INF_SHARE], R[reg, R_INF_BPS],
            2.0 * R[reg, R_RATE])


@njit(cache=True, inline="always")
def _accrue(dt, q, buf_on, add_bps, frozen, inv_time, buf_time, add_int, freeze_time):
    """Time-weighted state over a gap of ``dt`` ms (inventory, latency buffer, partial freeze)."""
    inv_time += abs(q) * dt
    if buf_on:
        buf_time += dt
        add_int += add_bps * dt
    if frozen:
        freeze_time += dt
    return inv_time, buf_time, add_int, freeze_time


@njit(cache=True, inline="always")
def _record_fill(fills, nf, stats, now, side, liq, price, qty, mid, slip_bps):
    """Append one fill (mark-out filled in later); flag overflow instead of growing the buffer."""
    if nf >= fills.shape[0]:
        stats[ST_OVERFLOW] = 1.0
        return nf
    fills[nf, F_T] = now
    fills[nf, F_SIDE] = side
    fills[nf, F_LIQ] = liq
    fills[nf, F_PRICE] = price
    fills[nf, F_QTY] = qty
    fills[nf, F_MID] = mid
    fills[nf, F_MARKOUT] = np.nan
    fills[nf, F_SLIP] = slip_bps
    return nf + 1


@njit(cache=True)
def _loop(seed, dur_ms, P, C, R, SEG, fills, lats, ages, regs, stats):
    np.random.seed(seed)
    n_seg = SEG.shape[0]
    mid = C[C_MID0]
    tick = C[C_TICK]
    inv_tick = 1.0 / tick
    qlim = C[C_QLIM]
    size = P[P_IMPACT_CAP] * qlim
    mi = P[P_MIN_INTERVAL]
    tok_rate = P[P_REPLACE_RATE] / 60000.0  # tokens per ms
    tok_cap = max(1.0, P[P_REPLACE_RATE] / 60.0 * C[C_BURST_S])
    tokens = tok_cap
    tail = P[P_TAIL_AGE]
    conc = P[P_CONCURRENCY]
    md = P[P_MAX_DELTA]
    hs_base = C[C_BASE_HS] + P[P_SPREAD_DELTA]
    rebid = C[C_REBID_BPS] * 1e-4
    gain = C[C_SKEW_GAIN]
    soft_lim = C[C_RISK_SOFT] * qlim
    cap_l = lats.shape[0]
    cap_a = ages.shape[0]
    cap_r = regs.shape[0]

    # quote state per side (0 bid, 1 ask)
    live = np.zeros(2, np.bool_)
    lprice = np.zeros(2)
    lsize = np.zeros(2)
    lborn = np.zeros(2)
    lseq = np.zeros(2, np.int64)
    sent_price = np.zeros(2)
    npend = np.zeros(2, np.int64)
    last_send = np.full(2, -1e18)
    epoch = np.zeros(2, np.int64)
    seq = 0
    # in-flight requests
    a_t = np.zeros(_INFL)
    a_side = np.zeros(_INFL, np.int64)
    a_price = np.zeros(_INFL)
    a_size = np.zeros(_INFL)
    a_epoch = np.zeros(_INFL, np.int64)
    a_seq = np.zeros(_INFL, np.int64)
    a_rej = np.zeros(_INFL, np.bool_)
    a_kind = np.zeros(_INFL, np.int64)
    n_if = 0
    next_ack = 1e300
    rate_est = 0.0
    last_rate_t = 0.0
    # latency ring for the rolling p95 (runtime guard)
    ring_t = np.full(_RING, -1e300)
    ring_v = np.zeros(_RING)
    ring_i = 0
    next_guard = C[C_GUARD_TICK]
    buf_on = False
    frozen = False
    gs = K.guard_state()
    G = C[C_P95_WIN:C_P95_WIN + K.N_GC]

    # accounting
    q = 0.0
    cash = 0.0
    peak = 0.0
    nf = 0
    nl = 0
    na = 0
    nr = 0
    mo_head = 0
    breach_since = -1.0

    # market state
    si = 0
    reg = int(SEG[0, S_INIT])
    r_vol, r_drift, r_kappa, r_inf, r_infbps, lam = _regime(R, reg)
    drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
    now = 0.0
    next_switch = 1e300
    next_jump = 1e300
    spike_start = 1e300
    spike_end = -1.0
    regs[0, 0] = 0.0
    regs[0, 1] = reg
    nr = 1
    seg_init = True
    events = 0
    crash_done = False
    ended = False
    inv_time = 0.0
    buf_time = 0.0
    add_int = 0.0
    freeze_time = 0.0
    sumr2 = 0.0
    add_bps = C[C_ADD_BPS]
    mo_size = C[C_MO_SIZE] * qlim
    rebate = C[C_REBATE_BPS] * 1e-4
    markout_ms = C[C_MARKOUT_MS]
    hard_lim = C[C_RESCUE_HARD] * qlim - 1e-12

    while True:
        if seg_init:
            seg_init = False
            sw = SEG[si, S_SWITCH]
            next_switch = now + np.random.exponential(3.6e6 / sw) if sw > 0 else 1e300
            jr = R[reg, R_JUMP_RATE]
            next_jump = now + np.random.exponential(3.6e6 / jr) if jr > 0 else 1e300
            sr = SEG[si, S_SPIKE_RATE]
            spike_start = now + np.random.exponential(3.6e6 / sr) if sr > 0 else 1e300
            crash_done = SEG[si, S_CRASH_AT] < 0
        dt = np.random.exponential(1.0) * 1000.0 / lam
        z = np.random.standard_normal()
        u = np.random.random()
        depth = np.random.exponential(1.0) / r_kappa
        tn = now + dt
        # ---- scheduled market changes falling inside this gap (rare branches) ----
        if tn >= SEG[si, S_END]:
            if si + 1 >= n_seg or tn >= dur_ms:
                ended = True  # the tail [now, dur_ms) is accounted after the loop
                break
        inv_time, buf_time, add_int, freeze_time = _accrue(dt, q, buf_on, add_bps, frozen,
                                                               inv_time, buf_time, add_int, freeze_time)
        dts = dt * 1e-3
        r = (r_vol * math.sqrt(dts) * z + r_drift * drift_sign * dts) * 1e-4
        if not crash_done:
            ca = SEG[si, S_CRASH_AT]
            if tn >= ca:
                if ca + SEG[si, S_CRASH_REC_MS] <= now or SEG[si, S_CRASH_REC_MS] <= 0:
                    crash_done = True
                if now < ca:  # the crash itself
                    r -= SEG[si, S_CRASH_BPS] * 1e-4
                    stats[ST_CRASHES] += 1
                else:  # partial recovery, linear in time
                    r += SEG[si, S_CRASH_BPS] * SEG[si, S_CRASH_REC] * 1e-4 * dt / SEG[si, S_CRASH_REC_MS]
        if tn >= next_jump:
            js = R[reg, R_JUMP_BPS] * np.random.exponential(1.0)
            r += (js if np.random.random() < 0.5 else -js) * 1e-4
            stats[ST_JUMPS] += 1
            jr = R[reg, R_JUMP_RATE]
            next_jump = tn + np.random.exponential(3.6e6 / jr)
        sumr2 += r * r
        mid *= 1.0 + r
        now = tn
        events += 1
        if now >= SEG[si, S_END]:
            si += 1
            reg = int(SEG[si, S_INIT])
            r_vol, r_drift, r_kappa, r_inf, r_infbps, lam = _regime(R, reg)
            drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
            seg_init = True
            if nr < cap_r:
                regs[nr, 0] = now
                regs[nr, 1] = reg
                nr += 1
        elif now >= next_switch:
            k = K.other_regime(int(SEG[si, S_MASK]), reg, R.shape[0])
            if k >= 0:
                reg = k
                r_vol, r_drift, r_kappa, r_inf, r_infbps, lam = _regime(R, reg)
                drift_sign = 1.0 if np.random.random() < 0.5 else -1.0
                if nr < cap_r:
                    regs[nr, 0] = now
                    regs[nr, 1] = reg
                    nr += 1
            next_switch = now + np.random.exponential(3.6e6 / SEG[si, S_SWITCH])
            jr = R[reg, R_JUMP_RATE]
            next_jump = now + np.random.exponential(3.6e6 / jr) if jr > 0 else 1e300
        if now >= spike_start:
            spike_end = now + SEG[si, S_SPIKE_DUR]
            spike_start = now + SEG[si, S_SPIKE_DUR] + np.random.exponential(3.6e6 / SEG[si, S_SPIKE_RATE])
            stats[ST_SPIKES] += 1

        # ---- acknowledgements landing ----
        if now >= next_ack:
            k = 0
            next_ack = 1e300
            while k < n_if:
                if a_t[k] <= now:
                    j = a_side[k]
                    npend[j] -= 1
                    if a_epoch[k] == epoch[j] and a_seq[k] > lseq[j]:
                        if a_rej[k]:
                            stats[ST_REJECTS] += 1
                        elif a_kind[k] == 2 and live[j]:  # an amend keeps the order (and its age)
                            lprice[j] = a_price[k]
                            lseq[j] = a_seq[k]
                        else:
                            if live[j] and na < cap_a:
                                ages[na] = now - lborn[j]
                                na += 1
                            live[j] = True
                            lprice[j] = a_price[k]
                            lsize[j] = a_size[k]
                            lborn[j] = now
                            lseq[j] = a_seq[k]
                    n_if -= 1
                    a_t[k] = a_t[n_if]
                    a_side[k] = a_side[n_if]
                    a_price[k] = a_price[n_if]
                    a_size[k] = a_size[n_if]
                    a_epoch[k] = a_epoch[n_if]
                    a_seq[k] = a_seq[n_if]
                    a_rej[k] = a_rej[n_if]
                    a_kind[k] = a_kind[n_if]
                else:
                    if a_t[k] < next_ack:
                        next_ack = a_t[k]
                    k += 1

        # ---- the market order: side from u, depth vs our quote distance ----
        buy = u < 0.5
        j = 1 if buy else 0  # a market buy lifts our ask
        if live[j]:
            dist = (lprice[j] - mid) / mid * 1e4 if buy else (mid - lprice[j]) / mid * 1e4
            if depth >= dist:
                # the order's size grows with the depth it reaches; our quote may fill partially
                x = min(lsize[j], mo_size * depth * r_kappa)
                p = lprice[j]
                s = -1.0 if buy else 1.0  # our side
                q += s * x
                cash -= s * p * x
                fee = rebate * p * x
                cash += fee
                stats[ST_FEES] += fee
                stats[ST_GROSS] += s * (mid - p) * x
                stats[ST_SXM] += s * x * mid
                stats[ST_TURNOVER] += p * x
                nf = _record_fill(fills, nf, stats, now, s, 0.0, p, x, mid, 0.0)
                lsize[j] -= x
                if lsize[j] <= 1e-12:
                    if na < cap_a:
                        ages[na] = now - lborn[j]
                        na += 1
                    live[j] = False
        # informed flow moves the price after it trades (permanent impact)
        u2 = u * 2.0  # the same uniform, re-used for the informed draw
        if u2 >= 1.0:
            u2 -= 1.0
        if u2 < r_inf:
            mid *= 1.0 + (r_infbps if buy else -r_infbps) * 1e-4
        if not mid > tick:  # the mid fell to one tick or below (or is NaN): no price can be quoted
            stats[ST_BROKEN] = BROKEN_MID
            stats[ST_BROKEN_AT] = now
            break

        # ---- mark-outs maturing ----
        while mo_head < nf and fills[mo_head, F_T] + markout_ms <= now:
            fm = fills[mo_head, F_MID]
            fills[mo_head, F_MARKOUT] = fills[mo_head, F_SIDE] * (mid - fm) / fm * 1e4
            mo_head += 1

        # ---- taker rescue on a hard inventory breach ----
        aq = abs(q)
        if aq >= hard_lim:
            if breach_since < 0:
                breach_since = now
            if now - breach_since >= C[C_RESCUE_HOLD] or aq > qlim + 1e-12:
                x = aq - C[C_RESCUE_TARGET] * qlim
                s = -1.0 if q > 0 else 1.0
                touch = mid * (1.0 + s * R[reg, R_MKT_HS] * 1e-4)
                slip_bps = C[C_SLIP_BPS] * (x / qlim) * (1.0 + 0.5 * abs(np.random.standard_normal()))
                p = touch * (1.0 + s * slip_bps * 1e-4)
                if not p > 0.0:  # a hedge at a price <= 0 would break the accounting
                    stats[ST_BROKEN] = BROKEN_TAKER_PRICE
                    stats[ST_BROKEN_AT] = now
                    break
                q += s * x
                cash -= s * p * x
                fee = C[C_TAKER_FEE_BPS] * 1e-4 * p * x
                cash -= fee
                stats[ST_FEES] -= fee
                stats[ST_GROSS] += s * (mid - touch) * x
                stats[ST_SLIP] += -s * (p - touch) * x
                stats[ST_SXM] += s * x * mid
                stats[ST_TURNOVER] += p * x
                stats[ST_RESCUES] += 1
                nf = _record_fill(fills, nf, stats, now, s, 1.0, p, x, mid, slip_bps)
                breach_since = -1.0
        else:
            breach_since = -1.0

        eq = cash + q * mid
        if eq > peak:
            peak = eq
        if peak - eq > stats[ST_DD]:
            stats[ST_DD] = peak - eq

        # ---- runtime guards on the simulated clock ----
        if now >= next_guard:
            next_guard = now + C[C_GUARD_TICK]
            if C[C_GUARDS_ON] > 0:
                buf_on = K.guard_tick(gs, G, ring_t, ring_v, min(ring_i, _RING), now)
                frozen = gs[K.GS_FROZEN] > 0

        # ---- the strategy: one decision per side per market event ----
        tokens = min(tok_cap, tokens + tok_rate * dt)
        hs = hs_base + (add_bps if buf_on else 0.0)
        center = K.quote_center(mid, q, qlim, gain, md, hs)
        for j in range(2):
            if j == 0:
                tgt = math.floor(center * (1.0 - hs * 1e-4) * inv_tick) * tick
                over = q >= soft_lim - 1e-12
            else:
                tgt = math.ceil(center * (1.0 + hs * 1e-4) * inv_tick) * tick
                over = q <= -soft_lim + 1e-12
            if over:
                if live[j]:
                    if na < cap_a:
                        ages[na] = now - lborn[j]
                        na += 1
                    live[j] = False
                    stats[ST_CANCEL] += 1
                if npend[j] > 0:
                    epoch[j] += 1  # in-flight orders of this side are cancelled on arrival
                stats[ST_B_RISK] += 1
                continue
            kind = 0
            if not live[j] and npend[j] == 0:
                kind = 1  # place
            else:
                ref = sent_price[j] if npend[j] > 0 else lprice[j]
                if abs(ref - tgt) >= rebid * mid:
                    kind = 2  # replace
                elif live[j] and npend[j] == 0 and now - lborn[j] >= tail:
                    kind = 3  # refresh = cancel + place
            if kind == 0:
                continue
            if K.blocked(stats, _BLOCK_ST, kind, frozen, now - last_send[j], mi, tokens, n_if >= conc or n_if >= _INFL):
                continue
            # send
            if kind != 1:
                tokens -= 1.0
            if kind == 3:
                if na < cap_a:
                    ages[na] = now - lborn[j]
                    na += 1
                live[j] = False
                stats[ST_CANCEL] += 1
                stats[ST_PLACE] += 1
            elif kind == 2:
                stats[ST_REPLACE] += 1
            else:
                stats[ST_PLACE] += 1
            stats[ST_ALLOWED] += 1
            rate_est = rate_est * math.exp(-(now - last_rate_t) / C[C_RATE_TAU]) + 1000.0 / C[C_RATE_TAU]
            last_rate_t = now
            lm = R[reg, R_LAT_MULT] * (SEG[si, S_SPIKE_MULT] if now < spike_end else 1.0)
            lat = (C[C_LAT_BASE] * lm * math.exp(C[C_LAT_SIGMA] * np.random.standard_normal())
                   + C[C_LAT_INFLIGHT] * n_if + C[C_LAT_RATE] * rate_est)
            rej = False
            if SEG[si, S_REJECT] > 0:
                rej = np.random.random() < SEG[si, S_REJECT]
            if nl < cap_l:
                lats[nl] = lat
                nl += 1
            ring_t[ring_i % _RING] = now + lat
            ring_v[ring_i % _RING] = lat
            ring_i += 1
            seq += 1
            a_t[n_if] = now + lat
            a_side[n_if] = j
            a_price[n_if] = tgt
            a_size[n_if] = size
            a_epoch[n_if] = epoch[j]
            a_seq[n_if] = seq
            a_rej[n_if] = rej
            a_kind[n_if] = kind
            n_if += 1
            if now + lat < next_ack:
                next_ack = now + lat
            npend[j] += 1
            sent_price[j] = tgt
            last_send[j] = now

    if ended:
        inv_time, buf_time, add_int, freeze_time = _accrue(dur_ms - now, q, buf_on, add_bps, frozen,
                                                               inv_time, buf_time, add_int, freeze_time)
    # mark-outs of fills younger than the horizon use the final mid
    while mo_head < nf:
        fm = fills[mo_head, F_MID]
        fills[mo_head, F_MARKOUT] = fills[mo_head, F_SIDE] * (mid - fm) / fm * 1e4
        mo_head += 1
    stats[ST_EVENTS] = events
    stats[ST_INV_TIME] = inv_time
    stats[ST_BUF_TIME] = buf_time
    stats[ST_ADD_INTEGRAL] = add_int
    stats[ST_FREEZE_TIME] = freeze_time
    stats[ST_SUMR2] = sumr2
    stats[ST_NFILL] = nf
    stats[ST_NLAT] = nl
    stats[ST_NAGE] = na
    stats[ST_NREG] = nr
    stats[ST_CASH] = cash
    stats[ST_Q] = q
    stats[ST_MID_END] = mid
    stats[ST_PEAK] = peak
    stats[ST_FREEZE_ACTIVE] = 1.0 if frozen else 0.0
    stats[ST_BUF_ACTIVE_END] = 1.0 if buf_on else 0.0
    stats[ST_T_END] = dur_ms if ended else now
    stats[ST_P95_MAX_ROLL] = gs[K.GS_P95_MAX]
    stats[ST_FREEZE_COUNT] = gs[K.GS_COUNT]
    return events


@njit(cache=True)
def _bare_loop(seed, dur_ms, lam, kappa):
    """The same four draws per market event as ``_loop``, with no strategy logic (benchmark)."""
    np.random.seed(seed)
    t = 0.0
    acc = 0.0
    n = 0
    while True:
        dt = np.random.exponential(1.0) * 1000.0 / lam
        z = np.random.standard_normal()
        u = np.random.random()
        depth = np.random.exponential(1.0) / kappa
        t += dt
        if t >= dur_ms:
            break
        acc += z * math.sqrt(dt * 1e-3) + (depth if u < 0.5 else -depth)
        n += 1
    return n, acc


# ---- Python wrapper ------------------------------------------------------------------------
def _pct(a: np.ndarray, q: float, nd: int = 6) -> float | None:
    """The ``q``-th percentile of ``a`` rounded to ``nd`` digits; None (not measured) when empty."""
    return _r(np.percentile(a, q), nd) if a.size else None


# indices of kernels.STRATEGY_CONFIG in this engine's constants vector
_STRATEGY_AT = (C_QLIM, C_RISK_SOFT, C_REBID_BPS, C_SKEW_GAIN, C_RESCUE_HARD, C_RESCUE_HOLD, C_RESCUE_TARGET,
                C_BURST_S, C_GUARD_TICK, C_GUARDS_ON, C_ADD_BPS, C_P95_WIN, C_SOFT, C_HARD, C_OPEN_MS, C_CLOSE_MS,
                C_MIN_FREEZE)


def _constants(cfg: dict, market: dict) -> np.ndarray:
    s = cfg["sim"]
    return K.strategy_constants(N_CONST, _STRATEGY_AT, cfg, {
        C_MID0: s["mid0"], C_TICK: s["tick"], C_REBATE_BPS: s["maker_rebate_bps"], C_TAKER_FEE_BPS: s["taker_fee_bps"],
        C_SLIP_BPS: s["rescue_slippage_bps"], C_MARKOUT_MS: s["markout_ms"], C_LAT_SIGMA: s["latency_sigma"],
        C_LAT_INFLIGHT: s["latency_inflight_ms"], C_LAT_RATE: s["latency_rate_ms"], C_RATE_TAU: s["rate_tau_ms"],
        C_MO_SIZE: s["market_order_size_ratio"], C_LAT_BASE: market["latency_base_ms"],
        C_BASE_HS: market["base_half_spread_bps"]})


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def run_simulation(params: dict, scenario="default", seed: int = 0, duration_s: float = 3600.0, *,
                   start_s: float = 0.0, config: dict | None = None):
    """Validate inputs, run the compiled loop over the scenario window and derive every KPI."""
    if config is not None:  # load_config() validates; a config handed in directly is checked here
        validate_sim_config(config)
    cfg = config if config is not None else load_config()
    reg = registry(cfg)
    if not isinstance(params, dict):
        raise ConfigError("expected a mapping of parameters", field="params")
    flat = reg.defaults()
    flat.update(reg.validate_values(params, src="<params>"))
    for name in PARAM_ORDER:
        if name not in flat:
            raise ConfigError("the simulator needs this parameter; it is missing from the registry", field=name)
    for k, v in (("duration_s", duration_s), ("start_s", start_s)):
        if finite(v) is None or v < 0:
            raise ConfigError(f"expected a number >= 0, got {v!r}", field=k)
    if duration_s <= 0:
        raise ConfigError(f"expected a duration > 0 s, got {duration_s!r}", field="duration_s")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"expected an integer seed, got {seed!r}", field="seed")
    sc = load_scenario(scenario)
    SEG, faults = sc.window(float(start_s), float(duration_s))
    P = np.array([float(flat[n]) for n in PARAM_ORDER])
    C = _constants(cfg, sc.market)
    lam_max = 2.0 * float(sc.regimes[:, R_RATE].max())
    n_est = int(lam_max * duration_s * 1.3) + 1000
    dur_ms = float(duration_s) * 1000.0
    seed32 = int(seed) % (2**32)
    # Record buffers sized from the expected event count; a full buffer means records were dropped,
    # so the (deterministic) run is repeated with larger buffers.
    scale = 1
    while True:
        fills = np.empty((scale * (n_est // 16) + 2000, N_FCOL))
        lats = np.empty(scale * (n_est // 4) + 2000)
        ages = np.empty(scale * (n_est // 4) + 2000)
        regs = np.empty((scale * 1000 + 1000, 2))
        stats = np.zeros(N_STATS)
        _loop(seed32, dur_ms, P, C, sc.regimes, SEG, fills, lats, ages, regs, stats)
        full = (stats[ST_NFILL] >= fills.shape[0] or stats[ST_NLAT] >= lats.shape[0]
                or stats[ST_NAGE] >= ages.shape[0] or stats[ST_NREG] >= regs.shape[0])
        if not full or scale >= 64:
            break
        scale *= 4
    if stats[ST_BROKEN]:
        _broken(stats, sc, float(start_s))
    kpis, guards, market = _derive(stats, fills, lats, ages, regs, sc, C, P, float(start_s), float(duration_s))
    market["faults"] = faults
    return SimResult(kpis=kpis, params=dict(flat), runtime_guards=guards, market=market,
                     events=int(stats[ST_EVENTS]),
                     extra={"scenario": sc.name, "seed": int(seed), "start_s": float(start_s),
                            "cash_quote": float(stats[ST_CASH]), "inventory": float(stats[ST_Q]),
                            "mid_end": float(stats[ST_MID_END]),
                            "duration_s": float(duration_s), "fills_truncated": bool(stats[ST_OVERFLOW])})


def _broken(stats, sc, start_s: float) -> None:
    """The market left the price grid: refuse to report accounting from it (a scenario problem)."""
    at = start_s + stats[ST_BROKEN_AT] / 1000.0
    if stats[ST_BROKEN] == BROKEN_TAKER_PRICE:
        what = "a taker hedge was priced at or below 0"
        fix = "lower [sim].rescue_slippage_bps or the regimes' market_half_spread_bps"
    else:
        what = f"the mid price fell to {stats[ST_MID_END]:.6g}, at or below one tick"
        fix = ("lower the moves that drive it down: regimes' vol_bps_per_sqrt_s, drift_bps_per_s, jump_bps, "
               "informed_impact_bps or the segments' flash_crash_bps")
    raise ConfigError(f"simulated market broke at t={at:.3f} s: {what}; {fix}", path=sc.path, field="scenario")


def _derive(st, fills, lats, ages, regs, sc, C, P, start_s, duration_s):
    nf = int(st[ST_NFILL])
    F = fills[:nf]
    lat = lats[: int(st[ST_NLAT])]
    age = ages[: int(st[ST_NAGE])]
    mid_end = st[ST_MID_END]
    turnover = st[ST_TURNOVER]
    q = st[ST_Q]
    inv_quote = mid_end * q - st[ST_SXM]  # sum s*x*(mid_end - mid_at_fill)
    pnl = st[ST_CASH] + q * mid_end
    if nf > 0 and turnover > 0:
        to_bps = 1e4 / turnover
        # components rounded first so that the reported net is exactly their sum
        gross_bps = _r(st[ST_GROSS] * to_bps, 9)
        fees_bps = _r(st[ST_FEES] * to_bps, 9)
        slip_bps = _r(st[ST_SLIP] * to_bps, 9)
        inv_bps = _r(inv_quote * to_bps, 9)
        net_bps = gross_bps + fees_bps + slip_bps + inv_bps
    else:  # no turnover: edge per unit traded was not measured (null, never an invented 0)
        gross_bps = fees_bps = slip_bps = inv_bps = net_bps = None
    side, liq, qty = F[:, F_SIDE], F[:, F_LIQ], F[:, F_QTY]
    fl = {}
    for sname, sv in (("buy", 1.0), ("sell", -1.0)):
        for lname, lv in (("maker", 0.0), ("taker", 1.0)):
            m = (side == sv) & (liq == lv)
            fl[f"{sname}_{lname}_count"] = int(m.sum())
            fl[f"{sname}_{lname}_volume"] = _r(qty[m].sum())
    mk, tk = liq == 0.0, liq == 1.0
    fl["maker_count"], fl["taker_count"] = int(mk.sum()), int(tk.sum())
    fl["maker_volume"], fl["taker_volume"] = _r(qty[mk].sum()), _r(qty[tk].sum())
    fl["count"], fl["volume"] = nf, _r(qty.sum())
    mv, tv = float(qty[mk].sum()), float(qty[tk].sum())
    # not measured without fills: null ratio, source "none" (the records.py rule)
    mtr, mt_source = (_r(mv / (mv + tv)), "fills_volume") if mv + tv > 0 else (None, "none")
    markout = F[:, F_MARKOUT]
    vol = float(qty.sum())
    adverse_bps = _r(np.sum(markout * qty) / vol) if nf and vol > 0 else None
    adverse_p95 = _pct(-markout, 95)
    # p95 over taker fills; with maker fills only no fill paid slippage (a measured 0); no fills: null
    slip_p95 = _pct(F[tk, F_SLIP], 95) if tk.any() else (0.0 if nf else None)
    b = {"min_interval": int(st[ST_B_MI]), "concurrency": int(st[ST_B_CONC]), "risk": int(st[ST_B_RISK]),
         "throttle": int(st[ST_B_THR]), "allowed": int(st[ST_ALLOWED]), "other": int(st[ST_B_OTHER])}
    blocked4 = b["min_interval"] + b["concurrency"] + b["risk"] + b["throttle"]
    total = sum(b.values())

    def ratio4(k):
        return b[k] / blocked4 if blocked4 else 0.0

    ratios = {k: round(100.0 * v / total, 1) if total else 0.0 for k, v in b.items()}
    acts = st[ST_PLACE] + st[ST_REPLACE] + st[ST_CANCEL]
    dur_ms = duration_s * 1000.0
    qlim = C[C_QLIM]
    freeze_time_s = st[ST_FREEZE_TIME] / 1000.0
    kpis = {
        "net_bps": net_bps, "gross_bps": gross_bps, "fees_eff_bps": fees_bps,
        "slippage_bps": slip_bps, "inventory_bps": inv_bps, "adverse_bps": adverse_bps,
        "adverse_bps_p95": adverse_p95, "slippage_bps_p95": slip_p95,
        "order_age_p95_ms": _pct(age, 95, 3), "cancel_ratio": _r(st[ST_CANCEL] / acts) if acts else None,
        "p50_latency_ms": _pct(lat, 50, 3), "p95_latency_ms": _pct(lat, 95, 3),
        "p99_latency_ms": _pct(lat, 99, 3),
        "risk_ratio": _r(ratio4("risk")), "min_interval_ratio": _r(ratio4("min_interval")),
        "concurrency_ratio": _r(ratio4("concurrency")), "throttle_ratio": _r(ratio4("throttle")),
        "blocks": {"counts": b, "total": total, "ratios": ratios},
        "fills": fl, "maker_taker_ratio": mtr, "maker_taker_source": mt_source,
        "pnl_quote": _r(pnl, 9), "drawdown_quote": _r(st[ST_DD], 9),
        "inventory_utilisation": _r(st[ST_INV_TIME] / dur_ms / qlim if dur_ms else 0.0),
        # left to soaklib.core.records.neg_edge_drivers (one rule: negative components only)
        "neg_edge_drivers": None, "freeze_time_s": _r(freeze_time_s, 3),
        "turnover_quote": _r(turnover, 6), "inventory_end": _r(q, 9),
        "orders": {"place": int(st[ST_PLACE]), "replace": int(st[ST_REPLACE]), "cancel": int(st[ST_CANCEL]),
                   "rejects": int(st[ST_REJECTS]), "rescues": int(st[ST_RESCUES])},
        "latency_samples": int(lat.size),
    }
    guards = {
        "enabled": bool(C[C_GUARDS_ON] > 0),
        "latency_buffer_active_s": _r(st[ST_BUF_TIME] / 1000.0, 3),
        "latency_buffer_active": bool(st[ST_BUF_ACTIVE_END]),
        "latency_spread_add_bps": _r(st[ST_ADD_INTEGRAL] / dur_ms if dur_ms else 0.0),
        "latency_spread_add_bps_config": float(C[C_ADD_BPS]),
        "partial_freeze_count": int(st[ST_FREEZE_COUNT]),
        "partial_freeze_time_s": _r(freeze_time_s, 3),
        "partial_freeze_active": bool(st[ST_FREEZE_ACTIVE]),
        "partial_freeze_subsystems": ["rebid"],
        "freeze_blocked_actions": int(st[ST_FREEZE_BLOCKED]),
        "rolling_p95_max_ms": _r(st[ST_P95_MAX_ROLL], 3),
    }
    nr = int(st[ST_NREG])
    path = []
    for i in range(nr):
        t0 = regs[i, 0] / 1000.0
        t1 = regs[i + 1, 0] / 1000.0 if i + 1 < nr else duration_s
        name = sc.regime_names[int(regs[i, 1])]
        if path and path[-1]["regime"] == name:
            path[-1]["end_s"] = _r(start_s + t1, 3)
        else:
            path.append({"regime": name, "start_s": _r(start_s + t0, 3), "end_s": _r(start_s + t1, 3)})
    rv = math.sqrt(st[ST_SUMR2]) * 1e4
    market = {"scenario": sc.name, "regimes": path, "realized_vol_bps": _r(rv, 4),
              "realized_vol_bps_per_sqrt_s": _r(rv / math.sqrt(duration_s), 4),
              "mid_start": float(C[C_MID0]), "mid_end": _r(mid_end, 9),
              "jumps": int(st[ST_JUMPS]), "latency_spikes": int(st[ST_SPIKES]),
              "flash_crashes": int(st[ST_CRASHES]),
              "events_per_s": _r(st[ST_EVENTS] / duration_s, 3)}
    return kpis, guards, market
