"""The market-making strategy as numba code against hftbacktest's API (DESIGN §6, issue 12).

``mm_strategy(bt, P, C, lat_rows, fills_i, fills_f, lats, ages, stats)`` runs a whole window on the
backtest clock and fills the output arrays (``bt``: the backtest's address,
``HashMapMarketDepthBacktest(...).ptr``; it calls hftbacktest through ``binding``, so numba caches
its machine code and a fresh process does not recompile it); it draws no random numbers (nothing to share with the
market stream). ``run_iteration`` (backtest.py) is a thin wrapper around exactly this function, so
a direct hftbacktest run of it on a stored window reproduces an iteration's fills and position.

Per wake (every ``decision_step_ms``, earlier when the send queue can release a message):
1. client-side send queue (gateway): messages (new orders, cancels) leave FIFO through a token bucket
   of ``gateway_rate_per_s`` (burst ``gateway_burst``); sending faster than that waits in the queue,
   and the wait is part of the measured round trip (p95_latency_ms keeps its meaning);
2. order scan: fills (maker flag, exec price) and acknowledgements (round trip = queue wait + entry
   + response latency, the response part interpolated from the same series hftbacktest uses);
3. runtime guards every ``guard_tick_ms``: rolling p95 of landed round trips -> latency spread add in
   the soft band; hard band debounced (open/close/min duration) into a partial freeze of ``rebid``;
4. taker hedge on a hard inventory breach (IOC through the touch);
5. per side: risk cancel/block at the soft inventory limit, else place / replace (target moved
   >= rebid_threshold_bps) / refresh (older than tail_age_ms), checked in order: freeze (other),
   min_interval_ms (min_interval), replace token bucket (throttle), orders in flight >=
   concurrency_limit (concurrency). A replace/refresh = cancel + new order (two messages).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from soaklib.sim import kernels as K
from soaklib.sim import numba_cache
from soaklib.sim.hbt import binding as HB

numba_cache.follow(__file__, K.__file__, HB.__file__)  # the cached strategy embeds their compiled code

# params vector (registry order)
P_MIN_INTERVAL, P_REPLACE_RATE, P_SPREAD_DELTA, P_TAIL_AGE, P_IMPACT_CAP, P_MAX_DELTA, P_CONCURRENCY = range(7)
PARAM_ORDER = ("min_interval_ms", "replace_rate_per_min", "base_spread_bps_delta", "tail_age_ms",
               "impact_cap_ratio", "max_delta_ratio", "concurrency_limit")
# constants vector (C_P95_WIN..C_MIN_FREEZE: the guard block of sim.kernels, in its order)
(C_STEP_MS, C_QLIM, C_RISK_SOFT, C_REBID_BPS, C_SKEW_GAIN, C_RESCUE_HARD, C_RESCUE_HOLD, C_RESCUE_TARGET,
 C_BASE_HS, C_ADD_BPS, C_P95_WIN, C_SOFT, C_HARD, C_OPEN_MS, C_CLOSE_MS, C_MIN_FREEZE, C_GUARD_TICK,
 C_GUARDS_ON, C_BURST_S, C_GW_RATE, C_GW_BURST, C_T_END, C_RESCUE_CROSS_BPS) = range(23)
N_CONST = 23
# fills: int columns / float columns
FI_EXCH_TS, FI_LOCAL_TS, FI_ORDER_ID = range(3)
FF_SIDE, FF_MAKER, FF_PRICE, FF_QTY, FF_TOUCH = range(5)
# stats
(ST_NFILL, ST_NLAT, ST_NAGE, ST_B_MI, ST_B_CONC, ST_B_RISK, ST_B_THR, ST_B_OTHER, ST_ALLOWED, ST_PLACE,
 ST_REPLACE, ST_CANCEL, ST_REJECTS, ST_RESCUES, ST_BUF_TIME, ST_ADD_INTEGRAL, ST_FREEZE_COUNT, ST_FREEZE_TIME,
 ST_FREEZE_ACTIVE, ST_FREEZE_BLOCKED, ST_P95_MAX_ROLL, ST_OVERFLOW, ST_BUF_ACTIVE_END, ST_WAKES, ST_MSGS,
 ST_QUEUE_WAIT_MAX, ST_POSITION, ST_T_END, ST_EXPIRED, ST_FILL_CXL) = range(30)
N_STATS = 30

_SLOTS = 1024   # order table (order_id modulo); in-flight + live orders are far fewer
_QCAP = 4096    # send-queue ring
_RING = 1024    # round trips kept for the rolling p95
_BLOCK_ST = (ST_B_OTHER, ST_FREEZE_BLOCKED, ST_B_MI, ST_B_THR, ST_B_CONC)  # kernels.blocked's order
NONE_, NEW_, EXPIRED_, FILLED_, CANCELED_, PARTIAL_, REJECTED_ = 0, 1, 2, 3, 4, 5, 6
GTX_, IOC_, LIMIT_ = 1, 3, 0


@njit(cache=True)
def _resp_latency(lat_rows, t, rn):
    """hftbacktest IntpOrderLatency.response(t) on the same rows (same scan, same rounding)."""
    first_ex = lat_rows[0, 1]
    if t < first_ex:
        return lat_rows[0, 2] - first_ex, rn
    n = lat_rows.shape[0]
    while True:
        if rn + 1 >= n:
            return lat_rows[n - 1, 2] - lat_rows[n - 1, 1], rn
        e1 = lat_rows[rn, 1]
        e2 = lat_rows[rn + 1, 1]
        if e1 <= t and t < e2:
            y1 = lat_rows[rn, 2] - e1
            y2 = lat_rows[rn + 1, 2] - e2
            return np.int64(float(y2 - y1) / float(e2 - e1) * float(t - e1)) + y1, rn
        rn += 1


@njit(cache=True, inline="always")
def _withdraw(oid, sl_sub, sl_drop, sl_cxl, sl_cxl_rel, q_kind, q_id, q_tail):
    """Withdraw order ``oid``: still in the send queue -> dropped without a message; else its cancel
    is queued (once). Returns (q_tail, whether this call withdrew it)."""
    s = int(oid % _SLOTS)
    if sl_sub[s] == 0:
        sl_drop[s] = True
        return q_tail, True
    if not sl_cxl[s]:
        sl_cxl[s] = True
        sl_cxl_rel[s] = False
        j = q_tail % _QCAP
        q_kind[j] = 3
        q_id[j] = oid
        return q_tail + 1, True
    return q_tail, False


@njit(cache=True, inline="always")
def _open_slot(oid, side, now, sub, taker, sl_id, sl_side, sl_enq, sl_sub, sl_acked, sl_filled, sl_taker, sl_cxl,
               sl_cxl_rel, sl_drop, sl_csent, sl_touch):
    """A fresh order-table slot for ``oid`` (side -1: the taker hedge; ``sub`` its send time, 0 while
    queued); returns the slot."""
    s = int(oid % _SLOTS)
    sl_id[s] = oid
    sl_side[s] = side
    sl_enq[s] = now
    sl_sub[s] = sub
    sl_taker[s] = taker
    sl_filled[s] = 0.0
    sl_touch[s] = 0.0
    for flag in (sl_acked, sl_cxl, sl_cxl_rel, sl_drop, sl_csent):
        flag[s] = False
    return s


@njit(cache=True)
def mm_strategy(bt, P, C, lat_rows, fills_i, fills_f, lats, ages, stats):
    tick = HB.depth_tick_size(HB.depth(bt, 0))
    lot = HB.depth_lot_size(HB.depth(bt, 0))
    step = int(C[C_STEP_MS] * 1e6)
    qlim = C[C_QLIM]
    size = max(lot, math.floor(P[P_IMPACT_CAP] * qlim / lot + 0.5) * lot)
    mi_ns = P[P_MIN_INTERVAL] * 1e6
    tok_rate = P[P_REPLACE_RATE] / 60.0 / 1e9          # replace tokens per ns
    tok_cap = max(1.0, P[P_REPLACE_RATE] / 60.0 * C[C_BURST_S])
    tokens = tok_cap
    tail_ns = P[P_TAIL_AGE] * 1e6
    conc = int(P[P_CONCURRENCY])
    md = P[P_MAX_DELTA]
    hs_base = C[C_BASE_HS] + P[P_SPREAD_DELTA]
    rebid = C[C_REBID_BPS] * 1e-4
    soft_lim = C[C_RISK_SOFT] * qlim - 1e-12
    hard_lim = C[C_RESCUE_HARD] * qlim - 1e-12
    add_bps = C[C_ADD_BPS]
    gw_rate = C[C_GW_RATE] / 1e9                        # gateway messages per ns
    gw_cap = C[C_GW_BURST]
    gw_tok = gw_cap
    t_end = np.int64(C[C_T_END])

    # per side (0 bid, 1 ask): current order id (0 none), its price tick, ack time, last send time
    cur = np.zeros(2, np.uint64)
    cur_px = np.zeros(2, np.int64)
    cur_live = np.zeros(2, np.bool_)
    cur_born = np.zeros(2, np.int64)
    last_send = np.full(2, -(1 << 60), np.int64)
    # order table
    sl_id = np.zeros(_SLOTS, np.uint64)
    sl_side = np.zeros(_SLOTS, np.int64)
    sl_enq = np.zeros(_SLOTS, np.int64)
    sl_sub = np.zeros(_SLOTS, np.int64)
    sl_acked = np.zeros(_SLOTS, np.bool_)
    sl_filled = np.zeros(_SLOTS)
    sl_touch = np.zeros(_SLOTS)
    sl_born = np.zeros(_SLOTS, np.int64)
    sl_taker = np.zeros(_SLOTS, np.bool_)
    sl_cxl = np.zeros(_SLOTS, np.bool_)     # a cancel is wanted (queued or waiting to be sendable)
    sl_cxl_rel = np.zeros(_SLOTS, np.bool_) # ... and the gateway has let it out (retried on the ack)
    sl_drop = np.zeros(_SLOTS, np.bool_)    # cancelled while still in the send queue: never sent
    sl_csent = np.zeros(_SLOTS, np.bool_)   # a cancel request has been handed to the exchange
    # send queue: kind 1 new buy, 2 new sell, 3 cancel
    q_kind = np.zeros(_QCAP, np.int64)
    q_id = np.zeros(_QCAP, np.uint64)
    q_px = np.zeros(_QCAP, np.int64)
    q_qty = np.zeros(_QCAP)
    q_head = 0
    q_tail = 0
    n_queued_new = 0
    n_sent_unacked = 0
    next_id = np.uint64(1)
    # latency ring for the guards
    ring_t = np.full(_RING, -1e300)
    ring_v = np.zeros(_RING)
    ring_i = 0
    rn = 0
    scan_ids = np.zeros(4 * _SLOTS, np.uint64)
    buf_on = False
    frozen = False
    gs = K.guard_state()
    G = C[C_P95_WIN:C_P95_WIN + K.N_GC]
    next_guard = 0.0
    breach_since = np.int64(-1)
    rescue_id = np.uint64(0)
    nf = 0
    nl = 0
    na = 0
    cap_f = fills_i.shape[0]
    cap_l = lats.shape[0]
    cap_a = ages.shape[0]
    now = np.int64(0)
    last_t = np.int64(0)
    wait = step
    while True:
        if HB.elapse(bt, wait) != 0:
            break
        now = HB.current_timestamp(bt)
        if now >= t_end:
            break
        dt = now - last_t if last_t > 0 else np.int64(0)  # before the first elapse the clock is a sentinel
        last_t = now
        stats[ST_WAKES] += 1
        if buf_on:
            stats[ST_BUF_TIME] += dt
            stats[ST_ADD_INTEGRAL] += add_bps * dt
        if frozen:
            stats[ST_FREEZE_TIME] += dt
        tokens = min(tok_cap, tokens + tok_rate * dt)
        gw_tok = min(gw_cap, gw_tok + gw_rate * dt)
        # ---- 1. the gateway releases queued messages ----
        while q_head < q_tail and gw_tok >= 1.0:
            j = q_head % _QCAP
            q_head += 1
            k = q_kind[j]
            oid = q_id[j]
            s = int(oid % _SLOTS)
            if k != 3 and sl_drop[s]:
                n_queued_new -= 1
                sl_drop[s] = False
                sl_id[s] = np.uint64(0)
                continue
            gw_tok -= 1.0
            stats[ST_MSGS] += 1
            if k == 3:
                a = HB.orders_get(HB.orders(bt, 0), oid)
                if a != 0 and HB.cancellable(HB.order(a)):
                    HB.cancel(bt, 0, oid, False)
                    sl_cxl[s] = False
                    sl_csent[s] = True
                else:
                    sl_cxl_rel[s] = True
                # not cancellable yet (its own request still in flight): retried at the next wake
            else:
                n_queued_new -= 1
                w = now - sl_enq[s]
                if w > stats[ST_QUEUE_WAIT_MAX]:
                    stats[ST_QUEUE_WAIT_MAX] = w
                tif = IOC_ if sl_taker[s] else GTX_
                if k == 1:
                    HB.submit_buy_order(bt, 0, oid, q_px[j] * tick, q_qty[j], tif, LIMIT_, False)
                else:
                    HB.submit_sell_order(bt, 0, oid, q_px[j] * tick, q_qty[j], tif, LIMIT_, False)
                sl_sub[s] = now
                n_sent_unacked += 1
        # ---- 2. order scan: acknowledgements and fills ----
        # hftbacktest's order map iterates in hash order, which varies between runs: scan by order
        # id so the fills log, the latency ring and the response-latency cursor are deterministic
        n_ids = 0
        values = HB.orders_values(HB.orders(bt, 0))
        while True:
            a = HB.orders_values_next(values)
            if a == 0:
                break
            if n_ids < scan_ids.size:
                scan_ids[n_ids] = HB.order(a)[0].order_id
                n_ids += 1
            else:
                stats[ST_OVERFLOW] = 1.0
        scan_ids[:n_ids].sort()
        od = HB.orders(bt, 0)
        for j_id in range(n_ids):
            a = HB.orders_get(od, scan_ids[j_id])
            if a == 0:
                continue
            o = HB.order(a)[0]  # a view: fields are read from hftbacktest's memory when used
            oid = o.order_id
            s = int(oid % _SLOTS)
            if sl_id[s] != oid:
                continue
            side = sl_side[s]
            if not sl_acked[s] and o.req == NONE_ and sl_sub[s] > 0:
                sl_acked[s] = True
                n_sent_unacked -= 1
                if o.status == REJECTED_ or (o.status == EXPIRED_ and o.exch_timestamp <= 0):
                    # hftbacktest reports an exchange reject (negative entry latency) as EXPIRED
                    # with no exchange timestamp; round trip = the notice, seen on this wake
                    rt = now - sl_enq[s]
                    stats[ST_REJECTS] += 1
                else:
                    ex = o.exch_timestamp
                    resp, rn = _resp_latency(lat_rows, ex, rn)
                    rt = ex + resp - sl_enq[s]
                land = sl_enq[s] + rt
                if nl < cap_l:
                    lats[nl] = rt / 1e6
                    nl += 1
                ring_t[ring_i % _RING] = land / 1e6
                ring_v[ring_i % _RING] = rt / 1e6
                ring_i += 1
                sl_born[s] = now
                if side >= 0 and cur[side] == oid and (o.status == NEW_ or o.status == PARTIAL_):
                    cur_live[side] = True
                    cur_born[side] = now
            if o.status == FILLED_ or o.status == PARTIAL_:
                done_qty = o.qty if o.status == FILLED_ else o.qty - o.leaves_qty
                x = done_qty - sl_filled[s]
                if x > 1e-12:
                    sl_filled[s] = done_qty
                    if sl_csent[s]:
                        stats[ST_FILL_CXL] += 1  # filled while its cancel was in flight
                    if nf < cap_f:
                        fills_i[nf, FI_EXCH_TS] = o.exch_timestamp
                        fills_i[nf, FI_LOCAL_TS] = now
                        fills_i[nf, FI_ORDER_ID] = np.int64(oid)
                        fills_f[nf, FF_SIDE] = 1.0 if o.side == 1 else -1.0
                        fills_f[nf, FF_MAKER] = 1.0 if o.maker else 0.0
                        fills_f[nf, FF_PRICE] = o.exec_price_tick * tick
                        fills_f[nf, FF_QTY] = x
                        fills_f[nf, FF_TOUCH] = sl_touch[s]
                        nf += 1
                    else:
                        stats[ST_OVERFLOW] = 1.0
            if o.status == FILLED_ or o.status == CANCELED_ or o.status == EXPIRED_ or o.status == REJECTED_:
                # terminal: filled, cancelled, expired (a GTX that would cross) or rejected
                if o.status == EXPIRED_ and o.exch_timestamp > 0:
                    stats[ST_EXPIRED] += 1  # a post-only order that would have crossed
                if sl_acked[s] and o.status != REJECTED_ and o.status != EXPIRED_ and not sl_taker[s] and na < cap_a:
                    ages[na] = (now - sl_born[s]) / 1e6
                    na += 1
                if side >= 0 and cur[side] == oid:
                    cur[side] = np.uint64(0)
                    cur_live[side] = False
                if oid == rescue_id:
                    rescue_id = np.uint64(0)
                sl_id[s] = np.uint64(0)
            elif sl_cxl[s] and sl_cxl_rel[s] and HB.cancellable(HB.order(a)):
                # a cancel that found its order busy: send it now (it already paid its queue slot)
                HB.cancel(bt, 0, oid, False)
                sl_cxl[s] = False
                sl_csent[s] = True
        HB.clear_inactive_orders(bt, 0)
        q = HB.position(bt, 0)
        depth = HB.depth(bt, 0)
        bb = HB.depth_best_bid_tick(depth)
        ba = HB.depth_best_ask_tick(depth)
        if bb <= -(1 << 62) or ba >= (1 << 62) or ba <= bb:
            wait = step
            continue
        mid = (bb + ba) * 0.5 * tick
        # ---- 3. runtime guards on the backtest clock ----
        tms = now / 1e6
        if tms >= next_guard:
            next_guard = tms + C[C_GUARD_TICK]
            if C[C_GUARDS_ON] > 0:
                buf_on = K.guard_tick(gs, G, ring_t, ring_v, min(ring_i, _RING), tms)
                frozen = gs[K.GS_FROZEN] > 0
        # ---- 4. taker hedge on a hard breach ----
        aq = abs(q)
        if aq >= hard_lim:
            if breach_since < 0:
                breach_since = now
            if rescue_id == 0 and (now - breach_since >= C[C_RESCUE_HOLD] * 1e6 or aq > qlim + 1e-12):
                x = math.floor((aq - C[C_RESCUE_TARGET] * qlim) / lot + 0.5) * lot
                if x >= lot:
                    oid = next_id
                    next_id += np.uint64(1)
                    s = _open_slot(oid, -1, now, now, True, sl_id, sl_side, sl_enq, sl_sub, sl_acked, sl_filled,
                                   sl_taker, sl_cxl, sl_cxl_rel, sl_drop, sl_csent, sl_touch)
                    cross = C[C_RESCUE_CROSS_BPS] * 1e-4 * mid / tick
                    if q > 0:
                        sl_touch[s] = bb * tick
                        HB.submit_sell_order(bt, 0, oid, (bb - cross) * tick, x, IOC_, LIMIT_, False)
                    else:
                        sl_touch[s] = ba * tick
                        HB.submit_buy_order(bt, 0, oid, (ba + cross) * tick, x, IOC_, LIMIT_, False)
                    n_sent_unacked += 1
                    gw_tok -= 1.0  # the hedge jumps the queue but still uses the gateway's budget
                    stats[ST_MSGS] += 1
                    stats[ST_RESCUES] += 1
                    rescue_id = oid
                    breach_since = -1
        else:
            breach_since = -1
        # ---- 5. quoting ----
        hs = hs_base + (add_bps if buf_on else 0.0)
        center = K.quote_center(mid, q, qlim, C[C_SKEW_GAIN], md, hs)
        for side in range(2):
            if side == 0:
                tgt = int(math.floor(center * (1.0 - hs * 1e-4) / tick))
                if tgt >= ba:
                    tgt = ba - 1
                over = q >= soft_lim
            else:
                tgt = int(math.ceil(center * (1.0 + hs * 1e-4) / tick))
                if tgt <= bb:
                    tgt = bb + 1
                over = q <= -soft_lim
            oid = cur[side]
            if over:
                if oid != 0:
                    q_tail, withdrawn = _withdraw(oid, sl_sub, sl_drop, sl_cxl, sl_cxl_rel, q_kind, q_id, q_tail)
                    if withdrawn:
                        stats[ST_CANCEL] += 1
                    cur[side] = np.uint64(0)
                    cur_live[side] = False
                stats[ST_B_RISK] += 1
                continue
            kind = 0
            if oid == 0:
                kind = 1
            elif abs(cur_px[side] - tgt) * tick >= rebid * mid:
                kind = 2  # also while the current order is in flight: it is cancelled on its ack
            elif cur_live[side] and now - cur_born[side] >= tail_ns:
                kind = 3
            if kind == 0:
                continue  # nothing wanted (or the current order is still in flight)
            if K.blocked(stats, _BLOCK_ST, kind, frozen, now - last_send[side], mi_ns, tokens,
                       n_queued_new + n_sent_unacked >= conc):
                continue
            if q_tail - q_head >= _QCAP - 2:
                stats[ST_B_OTHER] += 1
                continue
            stats[ST_ALLOWED] += 1
            if kind != 1:
                tokens -= 1.0
                q_tail, _ = _withdraw(oid, sl_sub, sl_drop, sl_cxl, sl_cxl_rel, q_kind, q_id, q_tail)
                stats[ST_CANCEL] += 1
                if kind == 2:
                    stats[ST_REPLACE] += 1
                else:
                    stats[ST_PLACE] += 1
            else:
                stats[ST_PLACE] += 1
            oid = next_id
            next_id += np.uint64(1)
            s = _open_slot(oid, side, now, 0, False, sl_id, sl_side, sl_enq, sl_sub, sl_acked, sl_filled,
                           sl_taker, sl_cxl, sl_cxl_rel, sl_drop, sl_csent, sl_touch)
            j = q_tail % _QCAP
            q_kind[j] = 1 if side == 0 else 2
            q_id[j] = oid
            q_px[j] = tgt
            q_qty[j] = size
            q_tail += 1
            n_queued_new += 1
            cur[side] = oid
            cur_px[side] = tgt
            cur_live[side] = False
            last_send[side] = now
        # next wake: the decision step, or earlier when the gateway can release the queue head
        wait = step
        if q_head < q_tail:
            need = (1.0 - gw_tok) / gw_rate if gw_tok < 1.0 else 0.0
            w = np.int64(need) + 1
            if w < wait:
                wait = w
        if now + wait > t_end:
            wait = max(np.int64(1), t_end - now)
    stats[ST_NFILL] = nf
    stats[ST_NLAT] = nl
    stats[ST_NAGE] = na
    stats[ST_P95_MAX_ROLL] = gs[K.GS_P95_MAX]
    stats[ST_FREEZE_COUNT] = gs[K.GS_COUNT]
    stats[ST_FREEZE_ACTIVE] = 1.0 if frozen else 0.0
    stats[ST_BUF_ACTIVE_END] = 1.0 if buf_on else 0.0
    stats[ST_POSITION] = HB.position(bt, 0)
    stats[ST_T_END] = now
    return nf
