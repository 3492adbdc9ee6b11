"""Realized market statistics vs what the scenarios claim (``python -m soaklib.sim.hbt.realism``).

Per regime: configured vol (diffusion and with jumps: sqrt(vol^2 + jump_rate*2*jump_bps^2)) vs
realized vol of the book mid from 10 s log returns inside single-regime stretches; in `default`
the lag-1..5 autocorrelation of |1-minute returns| (volatility clustering); excess kurtosis of
1-minute returns per scenario; flash crash range vs a normal hour's range (high-low, bps).
Prints the Markdown docs/SIMULATOR.md embeds (section "Realized statistics"); markets come from the
market cache (``--cache-dir``, else ``$SOAK_MARKET_CACHE``).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from soaklib.sim.hbt.cache import MarketCache
from soaklib.sim.hbt.scenario import load_scenario


def _rets(mid: np.ndarray, step: int) -> np.ndarray:
    m = mid[::step]
    return np.diff(np.log(m)) * 1e4


def _acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


def realism_table(seeds=range(2000, 2006), cache: MarketCache | None = None, hours: int = 24) -> dict:
    cache = cache or MarketCache()
    out: dict = {"regimes": {}, "scenarios": {}}
    sc = load_scenario("default")
    per_reg: dict[str, list[np.ndarray]] = {n: [] for n in sc.regime_names}
    abs_min = []
    for s in seeds:
        for w in range(hours):
            m = cache.get("default", s, w, 3600.0)
            dt_ms = m.meta["duration_s"] * 1000.0 / (len(m.grid_mid) - 1)
            k10 = int(round(10_000 / dt_ms))
            r10 = _rets(m.grid_mid, k10)
            reg10 = m.grid_regime[::k10][:-1]
            same = m.grid_regime[::k10][1:] == reg10
            no_crash = not any(f["kind"] == "flash_crash" for f in m.meta["faults"])
            for i, n in enumerate(sc.regime_names):
                if no_crash:
                    per_reg[n].append(r10[same & (reg10 == i)])
            r60 = _rets(m.grid_mid, int(round(60_000 / dt_ms)))
            abs_min.append(np.abs(r60))
    for n in sc.regime_names:
        r = np.concatenate(per_reg[n]) if per_reg[n] else np.zeros(0)
        d = sc.regime_dict(n)
        cfg_tot = math.sqrt(d["vol_bps_per_sqrt_s"] ** 2 + d["jump_rate_per_h"] / 3600.0 * 2 * d["jump_bps"] ** 2)
        real = float(np.sqrt(np.mean(r ** 2) / 10.0)) if r.size else float("nan")
        out["regimes"][n] = {"configured_vol": d["vol_bps_per_sqrt_s"], "configured_vol_with_jumps": round(cfg_tot, 4),
                             "realized_vol": round(real, 4), "rel_err": round(real / cfg_tot - 1, 4),
                             "n_10s_returns": int(r.size)}
    out["default_abs_1min_acf"] = {f"lag{lag}": round(float(np.mean([_acf(x, lag) for x in abs_min])), 4)
                                   for lag in (1, 2, 5)}
    for name in ("default", "calm", "volatile", "flash-crash"):
        rs, ranges = [], []
        for s in seeds:
            for w in range(8 if name != "default" else hours):
                m = cache.get(name, s, w, 3600.0)
                dt_ms = m.meta["duration_s"] * 1000.0 / (len(m.grid_mid) - 1)
                rs.append(_rets(m.grid_mid, int(round(60_000 / dt_ms))))
                lm = np.log(m.grid_mid) * 1e4
                ranges.append(float(lm.max() - lm.min()))
        r = np.concatenate(rs)
        kurt = float(np.mean((r - r.mean()) ** 4) / np.var(r) ** 2 - 3.0)
        out["scenarios"][name] = {"excess_kurtosis_1min": round(kurt, 3),
                                  "hour_range_bps_median": round(float(np.median(ranges)), 2),
                                  "hour_range_bps_min": round(float(np.min(ranges)), 2)}
    return out


def _num(x: float, nd: int) -> str:
    """A figure as the docs print it: ``nd`` decimals, a true minus sign."""
    return f"{x:.{nd}f}".replace("-", "−")


def render(t: dict) -> str:
    """The Markdown docs/SIMULATOR.md embeds (between its realism markers), as printed by ``main``."""
    lines = ["| regime | configured vol (bps/√s) | with jumps | realized (10 s returns) | rel. error |",
             "|---|---|---|---|---|"]
    for n, r in t["regimes"].items():
        rel = _num(100 * r["rel_err"], 1)
        lines.append(f"| {n} | {r['configured_vol']:g} | {r['configured_vol_with_jumps']:.4f} | "
                     f"{r['realized_vol']:.4f} | {'+' if not rel.startswith('−') else ''}{rel} % |")
    acf = t["default_abs_1min_acf"]
    lines += ["", "`default`: autocorrelation of |1-min returns| lag 1/2/5 = "
              + " / ".join(_num(acf[f"lag{k}"], 3) for k in (1, 2, 5)) + ".", "",
              "| scenario | excess kurtosis (1-min returns) | hour range median (bps) | hour range min (bps) |",
              "|---|---|---|---|"]
    for n, r in t["scenarios"].items():
        lines.append(f"| {n} | {_num(r['excess_kurtosis_1min'], 1)} | {_num(r['hour_range_bps_median'], 1)} | "
                     f"{_num(r['hour_range_bps_min'], 1)} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m soaklib.sim.hbt.realism")
    ap.add_argument("--seeds", type=int, default=2, help="seeds 2000.. (24 hour-long windows each; docs: 2)")
    ap.add_argument("--cache-dir", default=None, help="market cache (default: $SOAK_MARKET_CACHE or ~/.cache)")
    a = ap.parse_args(argv)
    cache = MarketCache(a.cache_dir) if a.cache_dir else None
    print(render(realism_table(seeds=range(2000, 2000 + a.seeds), cache=cache)))


if __name__ == "__main__":
    main()
