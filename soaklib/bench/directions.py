"""Parameter -> KPI directions of the simulators: the tables the docs render and the tests check.

Each row: raising ``param`` from ``low`` to ``high`` (others from the profile ``base``) moves ``kpi``
in ``sign`` (+1 up, -1 down). ``primary`` rows are the levers a tuner should pull for that KPI; the
others are side effects worth knowing. ``DIRECTIONS`` is the embedded engine's table
(tests/test_sim_directions.py: sign of an 8-seed mean); ``HBT_DIRECTIONS`` the same rows on the
hftbacktest engine, each measured with a paired test:

``python -m soaklib.bench directions [--engine hbt|sim] [--seeds 16] [--first-seed 5000]
[--duration-s 900] [--alpha 0.01] [--json]`` runs both arms of every row on window 0 of the row's
scenario for each seed (the same market for both arms), tests the per-seed differences with a
two-sided Wilcoxon signed-rank test and prints the Markdown table docs/SIMULATOR.md embeds
(tests/test_hbt_directions.py: a reduced version). On hbt it refuses seeds the hbt profiles were
calibrated on.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import wilcoxon

from soaklib.bench import calibration
from soaklib.core.config import load_config
from soaklib.core.params import registry
from soaklib.sim import hbt, simulate


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

# The same rows on the hftbacktest engine, others from its proposed profiles (soaklib/sim/hbt/profiles,
# ``bad`` = the shipped one). Where the embedded engine's point does not bind on hbt the row is measured
# where the limit binds: risk blocks only happen from ``bad`` (best_cell's inventory never reaches the
# soft limit) and in `volatile` every window reaches it; order-entry latency only grows when sends
# exceed the client-side gateway (11 msg/s), i.e. in `volatile` (many reprices) with fast pacing; best_cell's maker share is 1.0 in `trending`
# whatever max_delta does, so that row is measured from `bad` (bench directions --engine hbt).
HBT_DIRECTIONS: tuple[Direction, ...] = (
    Direction("min_interval_ms", "p95_latency_ms", -1, 25, 250,
              "fewer sends per second -> a shorter client-side gateway queue (binds with `bad`'s fast pacing "
              "in volatile markets)", base="bad", scenario="volatile"),
    Direction("min_interval_ms", "min_interval_ratio", +1, 40, 150,
              "more wanted updates wait out the pacing interval"),
    Direction("min_interval_ms", "risk_ratio", -1, 40, 150,
              "more pacing blocks dilute the risk share of all blocks (binds where risk blocks happen: `bad`; "
              "volatile markets reach the soft limit in every window)", base="bad", scenario="volatile"),
    Direction("replace_rate_per_min", "throttle_ratio", -1, 120, 480,
              "a larger token bucket throttles fewer replacements"),
    Direction("replace_rate_per_min", "p95_latency_ms", +1, 120, 560,
              "more replacements (each a cancel + new order) -> a longer gateway queue (binds in volatile "
              "markets with `bad`'s pacing)", base="bad", scenario="volatile"),
    *(d for d in DIRECTIONS if d.param in ("base_spread_bps_delta", "tail_age_ms")),
    Direction("impact_cap_ratio", "risk_ratio", +1, 0.06, 0.20,
              "bigger quotes reach the inventory limit in fewer fills (volatile: calm windows often never "
              "reach it)", scenario="volatile"),
    Direction("impact_cap_ratio", "maker_taker_ratio", -1, 0.06, 0.20,
              "more hard breaches -> more taker hedge volume", scenario="trending"),
    Direction("max_delta_ratio", "inventory_utilisation", -1, 0.06, 0.35,
              "a stronger inventory skew pulls inventory back to flat"),
    Direction("max_delta_ratio", "maker_taker_ratio", +1, 0.06, 0.35,
              "fewer hard breaches -> less taker hedge volume (binds with `bad`'s big quotes)",
              base="bad", scenario="trending"),
    Direction("concurrency_limit", "concurrency_ratio", -1, 1, 10,
              "fewer sends wait for an in-flight slot (best_cell rarely has 3 in flight: measured from 1)"),
    Direction("concurrency_limit", "p95_latency_ms", +1, 1, 10,
              "more orders in flight -> a longer gateway queue (binds in volatile markets)", scenario="volatile"),
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


# --- measured on an engine, with a paired test --------------------------------------------------------

ENGINES = ("sim", "hbt")


@dataclass(frozen=True)
class Measured:
    """One row measured on ``seeds``: per-seed paired differences (high - low) and the Wilcoxon
    signed-rank test of them (two-sided; ``holds`` = p < alpha and the median difference has the row's sign)."""
    row: Direction
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    p: float
    holds: bool

    @property
    def diffs(self) -> np.ndarray:
        return np.array(self.hi) - np.array(self.lo)

    @property
    def agree(self) -> int:
        """Seeds whose difference has the row's sign."""
        return int(np.sum(np.sign(self.diffs) == self.row.sign))


def paired_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences (zeros dropped; all zero -> 1.0)."""
    d = diffs[np.isfinite(diffs)]
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def measure(rows: tuple[Direction, ...], *, engine: str, seeds, duration_s: float, profiles: dict[str, dict],
            cfg: dict, alpha: float) -> list[Measured]:
    """Run both arms of every row on every seed (window 0 of the row's scenario; arms shared by
    rows with the same parameter change are run once) and test each row."""
    sim_fn = simulate if engine == "sim" else hbt.simulate
    done: dict[tuple, dict] = {}

    def kpis(values: dict, scenario: str, seed: int) -> dict:
        key = (tuple(sorted(values.items())), scenario, seed)
        if key not in done:
            done[key] = sim_fn(values, scenario, seed, duration_s, config=cfg).kpis
        return done[key]

    out = []
    for d in rows:
        base = profiles[d.base]
        arms = [[kpi_value_or_nan(kpis({**base, d.param: v}, d.scenario, s), d.kpi) for s in seeds]
                for v in (d.low, d.high)]
        diffs = np.array(arms[1]) - np.array(arms[0])
        p = paired_p(diffs)
        med = float(np.nanmedian(diffs)) if np.any(np.isfinite(diffs)) else float("nan")
        out.append(Measured(d, tuple(arms[0]), tuple(arms[1]), p, bool(p < alpha and np.sign(med) == d.sign)))
    return out


def kpi_value_or_nan(kpis: dict, dotted: str) -> float:
    """``kpi_value``, with a KPI that was not measured (null) as NaN (that seed's pair is dropped)."""
    v = kpis
    for part in dotted.split("."):
        v = v[part]
    return float("nan") if v is None else float(v)


def render_measured(ms: list[Measured], *, seeds, duration_s: float, engine: str, alpha: float) -> str:
    """The measured table as Markdown (docs/SIMULATOR.md embeds the hbt one)."""
    lines = [f"Engine `{engine}`; seeds {seeds[0]}–{seeds[-1]} ({len(seeds)}), window 0 of "
             f"{duration_s:g} s per arm; paired by seed (same market); two-sided Wilcoxon signed-rank "
             f"on high − low; holds = p < {alpha:g} and the median difference has the row's sign.", "",
             "| parameter | raise it from → to | KPI | moves | others from | scenario | mean low → high "
             "| median Δ | seeds agreeing | p | holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in ms:
        d = m.row
        arrow = ("↑" if d.sign > 0 else "↓") + ("" if d.primary else " (side effect)")
        n = int(np.sum(np.isfinite(m.diffs)))
        lines.append(f"| `{d.param}` | {d.low:g} → {d.high:g} | `{d.kpi}` | {arrow} | {d.base} | {d.scenario} | "
                     f"{_g(np.nanmean(m.lo))} → {_g(np.nanmean(m.hi))} | {_g(np.nanmedian(m.diffs))} | "
                     f"{m.agree}/{n} | {m.p:.2g} | {'yes' if m.holds else '**no**'} |")
    return "\n".join(lines)


def _g(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench directions")
    ap.add_argument("--engine", choices=ENGINES, default="hbt")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=5000)
    ap.add_argument("--duration-s", type=float, default=900.0)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--json", action="store_true", help="per-row figures as JSON instead of Markdown")
    a = ap.parse_args(argv)
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    if a.engine == "hbt" and set(seeds) & calibration.market_seeds(calibration.HBT_CALIBRATION_RUN_SEEDS):
        print("directions: error: --first-seed/--seeds overlap the seeds the hbt profiles were calibrated on",
              file=sys.stderr)
        return 2
    cfg = load_config()
    reg = registry(cfg)
    rows = HBT_DIRECTIONS if a.engine == "hbt" else DIRECTIONS
    pdir = calibration.HBT_PROFILE_DIR if a.engine == "hbt" else None
    profiles = {n: calibration.resolve_profile(n, reg, str(pdir) if pdir else None) for n in {d.base for d in rows}}
    t0 = time.perf_counter()
    ms = measure(rows, engine=a.engine, seeds=seeds, duration_s=a.duration_s, profiles=profiles, cfg=cfg,
                 alpha=a.alpha)
    if a.json:
        print(json.dumps([{"param": m.row.param, "kpi": m.row.kpi, "sign": m.row.sign, "low": m.row.low,
                           "high": m.row.high, "base": m.row.base, "scenario": m.row.scenario, "lo": m.lo,
                           "hi": m.hi, "p": m.p, "holds": m.holds} for m in ms], indent=1))
    else:
        print(render_measured(ms, seeds=seeds, duration_s=a.duration_s, engine=a.engine, alpha=a.alpha))
    print(f"\n{sum(m.holds for m in ms)}/{len(ms)} rows hold ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0
