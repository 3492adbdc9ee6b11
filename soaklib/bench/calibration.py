"""Goal sweeps over the default scenario: how the docs' calibration figures are produced.

``python -m soaklib.bench.calibration PROFILE_OR_JSON [--seeds N] [--iterations 24] [--last 8]`` runs,
for each run seed 0..N-1, the last ``last`` of ``iterations`` hour-long iterations of the default
scenario (iteration n at start_s = (n-1)*3600, seed ``soaklib.tune.loop.iteration_seed(run_seed, n)``)
with fixed parameters (no tuning) and reports the four seed goals (config ``[goals.*]``).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from soaklib.core.config import load_config
from soaklib.core.goals import goal_met
from soaklib.core.params import load_profile, registry
from soaklib.core.seeding import iteration_seed
from soaklib.sim import simulate

_AGG = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min, "last": lambda a: a[-1]}


def _iteration_seed(run_seed: int, n: int) -> int:
    return iteration_seed(run_seed, n)


def evaluate_goals(params: dict, run_seed: int, *, iterations: int = 24, last: int = 8, scenario: str = "default",
                   duration_s: float = 3600.0, cfg: dict | None = None) -> dict[str, Any]:
    """Aggregate each goal KPI over the last ``last`` iterations; returns values and pass flags."""
    cfg = cfg or load_config()
    ks = [simulate(params, scenario, _iteration_seed(run_seed, n), duration_s, start_s=(n - 1) * duration_s,
                   config=cfg).kpis for n in range(iterations - last + 1, iterations + 1)]
    out: dict[str, Any] = {}
    for name, g in cfg["goals"].items():
        v = float(_AGG[g["agg"]](np.array([k[name] for k in ks], dtype=float)))
        out[name] = {"value": v, "pass": goal_met(v, g)}
    out["all_pass"] = all(x["pass"] for x in out.values() if isinstance(x, dict))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench.calibration")
    ap.add_argument("profile", help="profile name/file, or a JSON object of parameter overrides on best_cell")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--last", type=int, default=8)
    a = ap.parse_args(argv)
    reg = registry(load_config())
    if a.profile.lstrip().startswith("{"):
        params = {**load_profile("best_cell", reg), **reg.validate_values(json.loads(a.profile))}
    else:
        params = load_profile(a.profile, reg)
    rows = [evaluate_goals(params, s, iterations=a.iterations, last=a.last) for s in range(a.seeds)]
    goals = [k for k in rows[0] if k != "all_pass"]
    for g in goals:
        vals = [r[g]["value"] for r in rows]
        print(f"{g:20s} pass {np.mean([r[g]['pass'] for r in rows]):.2f}  mean {np.mean(vals):.3f}  "
              f"min {np.min(vals):.3f}  max {np.max(vals):.3f}")
    print(f"{'all four':20s} pass {np.mean([r['all_pass'] for r in rows]):.2f}  (seeds: {a.seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
