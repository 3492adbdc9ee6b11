"""Parameter -> KPI directions of the simulator: the one table the docs render and the tests check.

Each row: raising ``param`` from ``low`` to ``high`` (others at the best cell) moves ``kpi`` in
``sign`` (+1 up, -1 down), averaged over seeds. ``primary`` rows are the levers a tuner should pull
for that KPI; the others are side effects worth knowing. tests/test_sim_directions.py runs every row.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Direction:
    param: str
    kpi: str
    sign: int
    low: float
    high: float
    why: str
    primary: bool = True
    scenario: str = "calm"
    base: str = "best_cell"  # profile the other parameters come from


DIRECTIONS: tuple[Direction, ...] = (
    Direction("min_interval_ms", "p95_latency_ms", -1, 25, 100,
              "fewer sends per second -> less gateway load (binds when sends are fast, e.g. from `bad`)",
              base="bad"),
    Direction("min_interval_ms", "min_interval_ratio", +1, 40, 150,
              "more wanted updates wait out the pacing interval"),
    Direction("min_interval_ms", "risk_ratio", -1, 40, 150,
              "more pacing blocks dilute the risk share of all blocks (seed definition)"),
    Direction("replace_rate_per_min", "throttle_ratio", -1, 120, 480,
              "a larger token bucket throttles fewer replacements"),
    Direction("replace_rate_per_min", "p95_latency_ms", +1, 120, 480,
              "more replacements per second -> more gateway load"),
    Direction("base_spread_bps_delta", "net_bps", +1, 0.0, 0.8,
              "each maker fill earns more spread; fewer fills are picked off"),
    Direction("base_spread_bps_delta", "gross_bps", +1, 0.0, 0.8,
              "quotes further from mid capture more per fill"),
    Direction("base_spread_bps_delta", "fills.volume", -1, 0.0, 0.8,
              "fill intensity A*exp(-kappa*delta) falls with delta", primary=False),
    Direction("tail_age_ms", "cancel_ratio", -1, 300, 1500,
              "fewer age refreshes (each is a cancel + place)"),
    Direction("tail_age_ms", "order_age_p95_ms", +1, 300, 1500,
              "quotes may rest longer before they are refreshed"),
    Direction("impact_cap_ratio", "risk_ratio", +1, 0.06, 0.20,
              "bigger quotes reach the inventory limit in fewer fills"),
    Direction("impact_cap_ratio", "maker_taker_ratio", -1, 0.06, 0.20,
              "more hard breaches -> more taker rescue volume", scenario="trending"),
    Direction("max_delta_ratio", "inventory_utilisation", -1, 0.06, 0.35,
              "a stronger inventory skew pulls inventory back to flat"),
    Direction("max_delta_ratio", "maker_taker_ratio", +1, 0.06, 0.35,
              "fewer hard breaches -> less taker rescue volume", scenario="trending"),
    Direction("concurrency_limit", "concurrency_ratio", -1, 3, 20,
              "fewer sends wait for an in-flight slot"),
    Direction("concurrency_limit", "p95_latency_ms", +1, 3, 20,
              "more orders in flight -> a longer gateway queue"),
)


def kpi_value(kpis: dict, dotted: str) -> float:
    """A KPI by dotted name (``fills.volume``)."""
    v = kpis
    for part in dotted.split("."):
        v = v[part]
    return float(v)


def render_markdown() -> str:
    """The direction table as Markdown (docs/SIMULATOR.md embeds this output)."""
    lines = ["| parameter | raise it from → to | KPI | moves | why | scenario | others from |",
             "|---|---|---|---|---|---|---|"]
    for d in DIRECTIONS:
        arrow = "↑" if d.sign > 0 else "↓"
        kind = "" if d.primary else " (side effect)"
        lines.append(f"| `{d.param}` | {d.low:g} → {d.high:g} | `{d.kpi}` | {arrow}{kind} | {d.why} | {d.scenario} | {d.base} |")
    return "\n".join(lines)
