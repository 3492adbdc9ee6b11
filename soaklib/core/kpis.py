"""KPI vocabulary: the names a record's summary carries, which are ratios or non-negative, the block
reasons, and the one maker/taker rule. Everything that names a KPI takes the names from here."""
from __future__ import annotations

from typing import Any, Mapping

from soaklib.core.numbers import finite

# numeric summary fields we know; anything else numeric in an EDGE_REPORT passes through as is
NUMERIC_FIELDS = (
    "net_bps", "gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps",
    "adverse_bps_p95", "slippage_bps_p95", "order_age_p95_ms", "ws_lag_p95_ms", "cancel_ratio",
    "replace_ratio", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "risk_ratio",
    "min_interval_ratio", "concurrency_ratio", "throttle_ratio", "maker_taker_ratio", "pnl_quote",
    "drawdown_quote", "inventory_utilisation", "turnover_quote", "turnover_usd", "freeze_time_s",
    "clock_drift_ms",
)
RATIO_FIELDS = ("cancel_ratio", "replace_ratio", "risk_ratio", "min_interval_ratio", "concurrency_ratio",
                "throttle_ratio", "maker_taker_ratio")
NONNEG_FIELDS = ("order_age_p95_ms", "ws_lag_p95_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
                 "drawdown_quote", "inventory_utilisation", "turnover_quote", "turnover_usd", "freeze_time_s")
# KPI keys every normalised summary carries (None when the source did not measure them)
SUMMARY_KPI_KEYS: tuple[str, ...] = (
    "net_bps", "gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps",
    "adverse_bps_p95", "slippage_bps_p95", "order_age_p95_ms", "cancel_ratio",
    "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "risk_ratio", "min_interval_ratio",
    "concurrency_ratio", "throttle_ratio", "maker_taker_ratio", "pnl_quote", "drawdown_quote",
    "inventory_utilisation",
)
BLOCK_REASONS: tuple[str, ...] = ("min_interval", "concurrency", "risk", "throttle")
_FILL_COUNTS = ("maker_count", "taker_count", "count", "maker_fills", "taker_fills") + tuple(
    f"{s}_{liq}_count" for s in ("buy", "sell") for liq in ("maker", "taker"))
_FILL_VOLUMES = ("maker_volume", "taker_volume", "volume") + tuple(
    f"{s}_{liq}_volume" for s in ("buy", "sell") for liq in ("maker", "taker"))
BLOCK_KEYS = BLOCK_REASONS + ("allowed", "other")


def _is_num(v: Any) -> bool:
    return finite(v) is not None


def maker_taker(summary: Mapping[str, Any], fills: Mapping[str, Any] | None,
                extra: Mapping[str, Any] | None = None) -> tuple[float | None, str]:
    """Maker share and its source, in the seed's order (§2.1): existing (0.05 < x <= 1), fills_volume,
    fills_count, weekly_rollup, internal_fills. No mock default, no 0.6 fallback: ``(None, "none")``."""
    x = summary.get("maker_taker_ratio")
    if _is_num(x) and 0.05 < x <= 1.0:
        return float(x), "existing"
    f = fills or {}
    mv, tv = f.get("maker_volume"), f.get("taker_volume")
    if _is_num(mv) and _is_num(tv) and mv + tv > 0:
        return mv / (mv + tv), "fills_volume"
    for mk, tk in (("maker_count", "taker_count"), ("maker_fills", "taker_fills")):
        mc, tc = f.get(mk), f.get(tk)
        if _is_num(mc) and _is_num(tc) and mc + tc > 0:
            return mc / (mc + tc), "fills_count"
    ex = extra or {}
    tsp = ex.get("taker_share_pct")
    med = tsp.get("median") if isinstance(tsp, Mapping) else None
    if _is_num(med):
        return min(1.0, max(0.0, 1.0 - med / 100.0)), "weekly_rollup"
    mf, tf = summary.get("maker_fills"), summary.get("taker_fills")
    if _is_num(mf) and _is_num(tf) and mf + tf > 0:
        return mf / (mf + tf), "internal_fills"
    if _is_num(x) and 0.0 <= x <= 1.0:  # a measured but very low share is still a measurement
        return float(x), "existing"
    return None, "none"
