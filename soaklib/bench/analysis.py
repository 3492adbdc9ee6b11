"""``python -m soaklib.bench analysis [--n 100000] [--repeat 3]``: analysis + snapshot time of a
synthetic run of n iterations and of 10·n (frames built in memory, loader-shaped), and the ratio.
Goals (issue 5): n=100,000 in <= 2 s; 10·n <= 11x the n time."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from soaklib.core.config import load_config
from soaklib.core.run import Run
from soaklib.judge import analysis


def synthetic_run(n: int, seed: int = 0) -> Run:
    """A Run whose frames (iterations, decisions) are built in memory in the loader's shapes, without
    records (building n records would time the record builder, not the analysis)."""
    rng = np.random.default_rng(seed)
    metrics = load_config()["snapshot"]["metrics"]
    it = pd.DataFrame({m: rng.normal(1.0, 0.1, n) for m in metrics},
                      index=pd.Index(np.arange(1, n + 1), name="iteration"))
    it["status"] = np.where(rng.random(n) < 0.001, "failed", "ok")
    k = np.repeat(np.arange(1, n + 1), 2)
    dec = pd.DataFrame({"iteration": k, "param": np.tile(["min_interval_ms", "tail_age_ms"], n),
                        "verdict": np.tile(["applied", "blocked"], n), "guard": np.tile([None, "velocity"], n),
                        "proposed_delta": 1.0, "clamped_delta": np.tile([1.0, 0.0], n)})
    run = Run(path=Path("<synthetic>"), layout="soaklib", dialect="soaklib", manifest={"auto_tune": True}, records=[])
    # the frames are cached properties: setting them stands in for building them from records
    run.iterations, run.decisions, run.params, run.blocks = it, dec, pd.DataFrame(), pd.DataFrame()
    return run


def _time(run, cfg, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        analysis.snapshot(run, cfg, 8)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench analysis")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    cfg = load_config()
    small, big = synthetic_run(a.n), synthetic_run(10 * a.n, seed=1)
    t1 = _time(small, cfg, a.repeat)
    t10 = _time(big, cfg, a.repeat)
    print(f"analysis+snapshot n={a.n:,}: {t1:.3f} s (goal <= 2 s) {'OK' if t1 <= 2 else 'MISSED'}")
    print(f"analysis+snapshot n={10 * a.n:,}: {t10:.3f} s")
    print(f"ratio 10n/n: {t10 / t1:.2f}x (goal <= 11x) {'OK' if t10 / t1 <= 11 else 'MISSED'}")
    return 0
