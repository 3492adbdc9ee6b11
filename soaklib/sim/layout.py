"""Column layouts shared by the compiled loop (``engine``) and the scenario tables (``scenario``).

Kept apart so the scenario loader does not import the numba engine (and the two never import each
other).
"""
from __future__ import annotations

# params vector
P_MIN_INTERVAL, P_REPLACE_RATE, P_SPREAD_DELTA, P_TAIL_AGE, P_IMPACT_CAP, P_MAX_DELTA, P_CONCURRENCY = range(7)
PARAM_ORDER = ("min_interval_ms", "replace_rate_per_min", "base_spread_bps_delta", "tail_age_ms",
               "impact_cap_ratio", "max_delta_ratio", "concurrency_limit")
# constants vector (C_P95_WIN..C_MIN_FREEZE: the guard block of sim.kernels, in its order)
(C_MID0, C_TICK, C_QLIM, C_REBID_BPS, C_SKEW_GAIN, C_RESCUE_HARD, C_RESCUE_HOLD, C_RESCUE_TARGET,
 C_REBATE_BPS, C_TAKER_FEE_BPS, C_SLIP_BPS, C_MARKOUT_MS, C_LAT_BASE, C_LAT_SIGMA, C_LAT_INFLIGHT,
 C_LAT_RATE, C_RATE_TAU, C_BURST_S, C_GUARD_TICK, C_P95_WIN, C_SOFT, C_HARD, C_OPEN_MS,
 C_CLOSE_MS, C_MIN_FREEZE, C_ADD_BPS, C_BASE_HS, C_GUARDS_ON, C_RISK_SOFT, C_MO_SIZE) = range(30)
N_CONST = 30
# regime table columns
(R_VOL, R_DRIFT, R_JUMP_RATE, R_JUMP_BPS, R_INF_SHARE, R_INF_BPS, R_RATE, R_KAPPA, R_LAT_MULT,
 R_MKT_HS) = range(10)
N_RCOL = 10
# segment table columns (times in ms relative to the window start)
(S_START, S_END, S_MASK, S_SWITCH, S_SPIKE_RATE, S_SPIKE_DUR, S_SPIKE_MULT, S_REJECT, S_CRASH_AT,
 S_CRASH_BPS, S_CRASH_REC, S_CRASH_REC_MS, S_INIT) = range(13)
N_SCOL = 13
# fill record columns
F_T, F_SIDE, F_LIQ, F_PRICE, F_QTY, F_MID, F_MARKOUT, F_SLIP = range(8)
N_FCOL = 8
# stats vector
(ST_EVENTS, ST_NFILL, ST_NLAT, ST_NAGE, ST_NREG, ST_CASH, ST_Q, ST_GROSS, ST_SLIP, ST_FEES, ST_SXM,
 ST_TURNOVER, ST_MID_END, ST_PEAK, ST_DD, ST_INV_TIME, ST_B_MI, ST_B_CONC, ST_B_RISK, ST_B_THR,
 ST_B_OTHER, ST_ALLOWED, ST_PLACE, ST_REPLACE, ST_CANCEL, ST_REJECTS, ST_RESCUES, ST_BUF_TIME,
 ST_ADD_INTEGRAL, ST_FREEZE_COUNT, ST_FREEZE_TIME, ST_FREEZE_ACTIVE, ST_FREEZE_BLOCKED, ST_SUMR2,
 ST_SPIKES, ST_JUMPS, ST_T_END, ST_P95_MAX_ROLL, ST_OVERFLOW, ST_BUF_ACTIVE_END, ST_CRASHES, ST_BROKEN,
 ST_BROKEN_AT) = range(43)
N_STATS = 43
# ST_BROKEN: why the loop stopped early (the wrapper raises; no KPI is derived from a broken market)
BROKEN_MID, BROKEN_TAKER_PRICE = 1.0, 2.0
