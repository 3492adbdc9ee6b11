"""KPI vocabulary: the one table of the KPIs a record's summary carries (name, unit, direction, goal
aggregation, Prometheus name and scale, display format), the block reasons, and the one maker/taker
rule. Everything that names a KPI takes the names from here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from soaklib.core.numbers import finite


@dataclass(frozen=True)
class Kpi:
    """One summary KPI. ``direction``: which way is better (None: a signed component, no "better").
    ``bounded``: a ratio in [0, 1]; ``nonneg``: never negative. ``summary``: every normalised summary
    carries it (None when not measured); the others pass through when a source reports them.
    ``prom_name``/``prom_scale``/``prom_help``: the Prometheus gauge of the last ok iteration's value
    in base units (``value * prom_scale``). ``goal_agg``/``seed_goal_key``: for the seed's four goal
    KPIs, how the gate aggregates the window by default and the snapshot's ``goals_met`` key."""

    name: str
    unit: str
    direction: Literal["higher", "lower"] | None
    fmt: str = ".4g"
    bounded: bool = False
    nonneg: bool = False
    summary: bool = True
    prom_name: str | None = None
    prom_scale: float = 1.0
    prom_help: str = ""
    goal_agg: str | None = None
    seed_goal_key: str | None = None


_LAST = "of the last ok iteration"
# order = the order of every summary, frame column and exported gauge
KPIS: tuple[Kpi, ...] = (
    Kpi("net_bps", "bps", "higher", ".2f", prom_name="soak_net_bps",
        prom_help=f"net edge {_LAST}, basis points", goal_agg="mean", seed_goal_key="net_bps_ok"),
    Kpi("gross_bps", "bps", "higher", ".2f", prom_name="soak_gross_bps", prom_help=f"gross edge {_LAST}, basis points"),
    Kpi("fees_eff_bps", "bps", None, ".2f", prom_name="soak_fees_eff_bps",
        prom_help=f"effective fees {_LAST}, basis points"),
    Kpi("slippage_bps", "bps", None, ".2f", prom_name="soak_slippage_bps", prom_help=f"slippage {_LAST}, basis points"),
    Kpi("inventory_bps", "bps", None, ".2f", prom_name="soak_inventory_bps",
        prom_help=f"inventory PnL {_LAST}, basis points"),
    Kpi("adverse_bps", "bps", None, ".2f", prom_name="soak_adverse_bps",
        prom_help=f"adverse selection {_LAST}, basis points"),
    Kpi("adverse_bps_p95", "bps", "lower", ".2f", prom_name="soak_adverse_p95_bps",
        prom_help=f"p95 adverse selection {_LAST}, bps"),
    Kpi("slippage_bps_p95", "bps", "lower", ".2f", prom_name="soak_slippage_p95_bps",
        prom_help=f"p95 slippage {_LAST}, bps"),
    Kpi("order_age_p95_ms", "ms", "lower", ".0f", nonneg=True, prom_name="soak_order_age_p95_seconds",
        prom_scale=1e-3, prom_help=f"p95 order age {_LAST}"),
    Kpi("ws_lag_p95_ms", "ms", "lower", ".0f", nonneg=True, summary=False),
    Kpi("cancel_ratio", "ratio", "lower", ".2f", bounded=True, prom_name="soak_cancel_ratio",
        prom_help=f"cancels per order {_LAST} (0-1)"),
    Kpi("replace_ratio", "ratio", "lower", ".2f", bounded=True, summary=False),
    Kpi("p50_latency_ms", "ms", "lower", ".0f", nonneg=True, prom_name="soak_p50_latency_seconds", prom_scale=1e-3,
        prom_help=f"p50 order latency {_LAST}"),
    Kpi("p95_latency_ms", "ms", "lower", ".0f", nonneg=True, prom_name="soak_p95_latency_seconds", prom_scale=1e-3,
        prom_help=f"p95 order latency {_LAST}", goal_agg="max", seed_goal_key="p95_latency_ok"),
    Kpi("p99_latency_ms", "ms", "lower", ".0f", nonneg=True, prom_name="soak_p99_latency_seconds", prom_scale=1e-3,
        prom_help=f"p99 order latency {_LAST}"),
    Kpi("risk_ratio", "ratio", "lower", ".2f", bounded=True, prom_name="soak_risk_ratio",
        prom_help=f"risk usage {_LAST} (0-1)", goal_agg="median", seed_goal_key="risk_ok"),
    Kpi("min_interval_ratio", "ratio", "lower", ".2f", bounded=True, prom_name="soak_min_interval_ratio",
        prom_help="min-interval blocks share, last ok iteration"),
    Kpi("concurrency_ratio", "ratio", "lower", ".2f", bounded=True, prom_name="soak_concurrency_ratio",
        prom_help="concurrency blocks share, last ok iteration"),
    Kpi("throttle_ratio", "ratio", "lower", ".2f", bounded=True, prom_name="soak_throttle_ratio",
        prom_help="throttle blocks share, last ok iteration"),
    Kpi("maker_taker_ratio", "ratio", "higher", ".3f", bounded=True, prom_name="soak_maker_taker_ratio",
        prom_help=f"maker share of fills {_LAST} (0-1)", goal_agg="mean", seed_goal_key="maker_taker_ok"),
    Kpi("pnl_quote", "quote", "higher", ".2f", prom_name="soak_pnl_quote", prom_help=f"PnL {_LAST}, quote currency"),
    Kpi("drawdown_quote", "quote", "lower", ".2f", nonneg=True, prom_name="soak_drawdown_quote",
        prom_help=f"drawdown {_LAST}, quote currency"),
    Kpi("inventory_utilisation", "ratio", "lower", ".2f", nonneg=True, prom_name="soak_inventory_utilisation_ratio",
        prom_help=f"inventory limit usage {_LAST} (0-1)"),
    Kpi("turnover_quote", "quote", None, ".2f", nonneg=True, summary=False),
    Kpi("turnover_usd", "usd", None, ".2f", nonneg=True, summary=False),
    Kpi("freeze_time_s", "s", "lower", ".1f", nonneg=True, summary=False),
    Kpi("clock_drift_ms", "ms", None, ".0f", summary=False),
)
KPI: dict[str, Kpi] = {k.name: k for k in KPIS}

# numeric summary fields we know; anything else numeric in an EDGE_REPORT passes through as is
NUMERIC_FIELDS: tuple[str, ...] = tuple(k.name for k in KPIS)
RATIO_FIELDS: tuple[str, ...] = tuple(k.name for k in KPIS if k.bounded)
NONNEG_FIELDS: tuple[str, ...] = tuple(k.name for k in KPIS if k.nonneg)
# KPI keys every normalised summary carries (None when the source did not measure them)
SUMMARY_KPI_KEYS: tuple[str, ...] = tuple(k.name for k in KPIS if k.summary)
# the Prometheus gauges of the last ok iteration's KPIs, in exposition order (as first published:
# a reorder would churn every textfile diff); every KPI with a prom_name, once
PROM_KPIS: tuple[Kpi, ...] = tuple(KPI[n] for n in (
    "net_bps", "gross_bps", "fees_eff_bps", "slippage_bps", "inventory_bps", "adverse_bps", "adverse_bps_p95",
    "slippage_bps_p95", "order_age_p95_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms", "cancel_ratio",
    "risk_ratio", "min_interval_ratio", "concurrency_ratio", "throttle_ratio", "maker_taker_ratio", "pnl_quote",
    "drawdown_quote", "inventory_utilisation"))

BLOCK_REASONS: tuple[str, ...] = ("min_interval", "concurrency", "risk", "throttle")
BLOCK_KEYS: tuple[str, ...] = BLOCK_REASONS + ("allowed", "other")
FILL_COUNTS: tuple[str, ...] = ("maker_count", "taker_count", "count", "maker_fills", "taker_fills") + tuple(
    f"{s}_{liq}_count" for s in ("buy", "sell") for liq in ("maker", "taker"))
FILL_VOLUMES: tuple[str, ...] = ("maker_volume", "taker_volume", "volume") + tuple(
    f"{s}_{liq}_volume" for s in ("buy", "sell") for liq in ("maker", "taker"))


def maker_taker(summary: Mapping[str, Any], fills: Mapping[str, Any] | None,
                extra: Mapping[str, Any] | None = None) -> tuple[float | None, str]:
    """Maker share and its source, in the seed's order (§2.1): existing (0.05 < x <= 1), fills_volume,
    fills_count, weekly_rollup, internal_fills. No mock default, no 0.6 fallback: ``(None, "none")``."""
    x = finite(summary.get("maker_taker_ratio"))
    if x is not None and 0.05 < x <= 1.0:
        return x, "existing"
    f = fills or {}
    mv, tv = finite(f.get("maker_volume")), finite(f.get("taker_volume"))
    if mv is not None and tv is not None and mv + tv > 0:
        return mv / (mv + tv), "fills_volume"
    for mk, tk in (("maker_count", "taker_count"), ("maker_fills", "taker_fills")):
        mc, tc = finite(f.get(mk)), finite(f.get(tk))
        if mc is not None and tc is not None and mc + tc > 0:
            return mc / (mc + tc), "fills_count"
    ex = extra or {}
    tsp = ex.get("taker_share_pct")
    med = finite(tsp.get("median")) if isinstance(tsp, Mapping) else None
    if med is not None:
        return min(1.0, max(0.0, 1.0 - med / 100.0)), "weekly_rollup"
    mf, tf = finite(summary.get("maker_fills")), finite(summary.get("taker_fills"))
    if mf is not None and tf is not None and mf + tf > 0:
        return mf / (mf + tf), "internal_fills"
    if x is not None and 0.0 <= x <= 1.0:  # a measured but very low share is still a measurement
        return x, "existing"
    return None, "none"
