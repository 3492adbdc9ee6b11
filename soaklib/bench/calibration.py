"""Goal sweeps over the default scenario: how the docs' calibration figures are produced.

``python -m soaklib.bench calibration PROFILE_OR_JSON [PROFILE ...] [--engine sim|hbt] [--profile-dir DIR]
[--seeds N] [--first-seed K] [--iterations 24] [--last 8]`` runs, for each run seed K..K+N-1, the last
``last`` of ``iterations`` hour-long iterations of the default scenario (iteration n at
start_s = (n-1)*3600, seed ``soaklib.core.seeding.iteration_seed(run_seed, n)``: what a soak with that
run seed meets; on the hbt engine iteration n is window n-1) with fixed parameters (no tuning) and
reports, per profile, each of the four seed goals (config ``[goals.*]``, aggregated over those
iterations like the gate does) and per seed whether all four pass / at least two fail.

``--profile-dir DIR`` reads profile names from DIR/NAME.json (e.g. the hbt engine's proposed
profiles, ``soaklib/sim/hbt/profiles``); a JSON object of overrides applies to that directory's
``best_cell`` (else the shipped one). The hbt engine's markets are cached (``$SOAK_MARKET_CACHE``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError, SoakError
from soaklib.core.goals import goal_met
from soaklib.core.params import load_profile, registry
from soaklib.core.seeding import iteration_seed
from soaklib.sim import hbt, simulate

_AGG = {"mean": np.mean, "median": np.median, "max": np.max, "min": np.min, "last": lambda a: a[-1]}
ENGINES = ("sim", "hbt")
# run seeds the hbt profiles were calibrated on (soaklib/sim/hbt/profiles/*.json say so); the
# direction test (bench directions --engine hbt) refuses them
HBT_CALIBRATION_RUN_SEEDS = range(1000, 1040)
HBT_PROFILE_DIR = Path(__file__).resolve().parents[1] / "sim" / "hbt" / "profiles"


def _iteration_seed(run_seed: int, n: int) -> int:
    return iteration_seed(run_seed, n)


def market_seeds(run_seeds, *, iterations: int = 24, last: int = 8) -> set[int]:
    """The iteration seeds a calibration over ``run_seeds`` uses."""
    return {_iteration_seed(s, n) for s in run_seeds for n in range(iterations - last + 1, iterations + 1)}


def evaluate_goals(params: dict, run_seed: int, *, iterations: int = 24, last: int = 8, scenario: str = "default",
                   duration_s: float = 3600.0, cfg: dict | None = None, engine: str = "sim") -> dict[str, Any]:
    """Aggregate each goal KPI over the last ``last`` iterations; returns values and pass flags."""
    cfg = cfg or load_config()
    sim_fn = simulate if engine == "sim" else hbt.simulate  # looked up per call (tests patch ``simulate``)
    ks = [sim_fn(params, scenario, _iteration_seed(run_seed, n), duration_s, start_s=(n - 1) * duration_s,
                 config=cfg).kpis for n in range(iterations - last + 1, iterations + 1)]
    out: dict[str, Any] = {}
    for name, g in cfg["goals"].items():
        # a KPI not measured (null) is a goal not met, as in the gate
        v = float(_AGG[g["agg"]](np.array([np.nan if k[name] is None else k[name] for k in ks], dtype=float)))
        out[name] = {"value": v, "pass": goal_met(v, g)}
    out["all_pass"] = all(x["pass"] for x in out.values() if isinstance(x, dict))
    return out


def resolve_profile(name: str, reg, profile_dir: str | None) -> dict:
    """A profile name (from ``profile_dir`` when given), a JSON file, or a JSON object of overrides
    on that directory's ``best_cell``."""
    def by_name(n: str):
        return load_profile(Path(profile_dir) / f"{n}.json" if profile_dir and not n.endswith(".json") else n, reg)

    if name.lstrip().startswith("{"):
        try:
            overrides = json.loads(name)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not a JSON object ({exc.msg})", field="profile") from None
        return {**by_name("best_cell"), **reg.validate_values(overrides)}
    return by_name(name)


def summarize(rows: list[dict]) -> dict[str, Any]:
    """Per goal: pass share, mean/min/max of the aggregated value; all-four / fails-two counts."""
    goals = [k for k in rows[0] if k != "all_pass"]
    out: dict[str, Any] = {}
    for g in goals:
        vals = [r[g]["value"] for r in rows]
        out[g] = {"pass": float(np.mean([r[g]["pass"] for r in rows])), "mean": float(np.mean(vals)),
                  "min": float(np.min(vals)), "max": float(np.max(vals))}
    out["all_pass"] = sum(r["all_pass"] for r in rows)
    out["fails_two"] = sum(sum(not r[g]["pass"] for g in goals) >= 2 for r in rows)
    out["seeds"] = len(rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench calibration")
    ap.add_argument("profile", nargs="+", help="profile name/file, or a JSON object of parameter overrides on best_cell")
    ap.add_argument("--engine", choices=ENGINES, default="sim")
    ap.add_argument("--profile-dir", default=None, help="read profile names from DIR/NAME.json")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--last", type=int, default=8)
    a = ap.parse_args(argv)
    cfg = load_config()
    reg = registry(cfg)
    seeds = range(a.first_seed, a.first_seed + a.seeds)
    try:
        profiles = [(p, resolve_profile(p, reg, a.profile_dir)) for p in a.profile]
    except SoakError as exc:
        print(f"calibration: error: {exc}", file=sys.stderr)
        return 2
    print(f"engine {a.engine}, run seeds {seeds.start}-{seeds.stop - 1}, iterations "
          f"{a.iterations - a.last + 1}-{a.iterations} of {a.iterations} (hour-long)")
    for name, params in profiles:
        t0 = time.perf_counter()
        rows = [evaluate_goals(params, s, iterations=a.iterations, last=a.last, cfg=cfg, engine=a.engine)
                for s in seeds]
        s = summarize(rows)
        print(f"{name} ({time.perf_counter() - t0:.0f} s)")
        for g, v in s.items():
            if isinstance(v, dict):
                print(f"  {g:20s} pass {v['pass']:.2f}  mean {v['mean']:.3f}  min {v['min']:.3f}  max {v['max']:.3f}")
        print(f"  {'all four':20s} pass {s['all_pass'] / s['seeds']:.2f}  ({s['all_pass']}/{s['seeds']} seeds)")
        print(f"  {'fails >= 2 goals':20s} {s['fails_two']}/{s['seeds']} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
