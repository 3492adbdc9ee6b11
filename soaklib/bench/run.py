"""``python -m soaklib.bench run [--iterations 24] [--seed S] [--no-auto-tune] [--no-cli]``

Wall time of a soak on the default scenario and the share spent in the simulator versus
bookkeeping (record building, tuner, schema validation, atomic writes, TUNING_REPORT). Goal:
bookkeeping < 20 %. Also times the real ``soak run --iterations N`` command end to end in a
fresh process (imports and the numba cache load included).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.sim import simulate
from soaklib.tune.loop import run_soak


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench run")
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--no-auto-tune", action="store_true")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end `soak run` subprocess timing")
    a = ap.parse_args(argv)

    cfg = load_config()
    prof = load_profile(cfg["run"]["profile"], registry(cfg))
    t0 = time.perf_counter()
    simulate(prof, a.scenario, 0, 60.0, config=cfg)  # loads (or compiles) the numba cache once
    warm = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="soak-bench-") as tmp:
        res = run_soak(runs_dir=tmp, iterations=a.iterations, cfg=cfg, profile_name=cfg["run"]["profile"],
                       profile_values=prof, seed=a.seed, scenario=a.scenario, auto_tune=not a.no_auto_tune)
        book = res.wall_s - res.runner_s
        per_book = [t["total_s"] - t["runner_s"] for t in res.timings]
        print(f"in-process soak: {a.iterations} iterations x {cfg['run']['duration_s']:.0f} simulated s, "
              f"scenario {a.scenario}, auto-tune {'off' if a.no_auto_tune else 'on'}")
        print(f"  simulator warm-up (cache load/compile, once per process): {warm:.2f} s")
        print(f"  wall time          {res.wall_s:8.2f} s")
        print(f"  in simulator       {res.runner_s:8.2f} s  ({100 * res.runner_s / res.wall_s:5.1f} %)")
        print(f"  bookkeeping        {book:8.2f} s  ({100 * book / res.wall_s:5.1f} %)   goal < 20 %")
        print(f"  bookkeeping per iteration: median {1000 * statistics.median(per_book):.1f} ms, "
              f"max {1000 * max(per_book):.1f} ms")
        events = sum(r["events"] or 0 for r in res.records)
        print(f"  events simulated   {events}  ({events / res.runner_s:,.0f} events/s in the simulator)")

        if not a.no_cli:
            runs = Path(tmp) / "cli"
            cmd = [sys.executable, "-m", "soaklib", "run", "--iterations", str(a.iterations), "--seed", str(a.seed),
                   "--scenario", a.scenario, "--runs-dir", str(runs)]
            if not a.no_auto_tune:
                cmd.append("--auto-tune")
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if out.returncode != 0:
                print(f"`soak run` failed (exit {out.returncode}): {out.stderr.strip()[-500:]}", file=sys.stderr)
                return 1
            print(f"end-to-end `soak run --iterations {a.iterations}` (fresh process): {wall:.2f} s wall")
    return 0
