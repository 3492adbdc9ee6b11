"""``python -m soaklib.bench hbt [--windows N] [--duration-s S] [--seed K] [--scenario NAME] [--no-fresh] [--json]``
``python -m soaklib.bench hbt --paired [--seeds 10] [--first-seed 3000] [--windows 24] [--duration-s 3600] [--json]``

Figures of the hftbacktest engine (issue 12), all on the same (scenario, seed, windows):
- simulated seconds per wall second of ``soaklib.sim.hbt.simulate`` with the market uncached
  (generated, compressed, stored) and cached (loaded), median over the windows;
- the same numba strategy run bare in hftbacktest on the same arrays (no KPI derivation, no cache)
  and the overhead ratio cached/bare - 1;
- generation rate (book events per wall second) and events per simulated second;
- the on-disk cache size per simulated hour;
- the cost a fresh process pays: a subprocess importing the engine and running one short window,
  with an empty numba cache (``*_cold_numba``: everything compiled, once per machine and code
  change) and then with that cache filled (the usual case).
Markets go to a temporary cache directory removed at exit; the seeds used are printed.

``--paired``: the common-random-numbers figure of issue 12. For each run seed, iterations 1..windows
as a soak meets them (seed ``iteration_seed(run_seed, n)``, window n-1), the hbt ``best_cell``
(soaklib/sim/hbt/profiles) and the same with ``base_spread_bps_delta`` + 0.1 on the same markets:
the correlation of per-iteration net_bps across the two arms (goal >= 0.8), the sd of the paired
differences, their mean and the sd of one arm. Markets come from the configured market cache
(``$SOAK_MARKET_CACHE``), so a rerun only backtests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from soaklib.bench._common import child_floats, emit
from soaklib.bench.calibration import HBT_PROFILE_DIR
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.core.seeding import iteration_seed
from soaklib.sim import hbt
from soaklib.sim.hbt import backtest as B
from soaklib.sim.hbt import strategy as ST
from soaklib.sim.hbt.cache import ENV, MarketCache
from soaklib.sim.hbt.generator import generate

# the hbt engine's proposed best cell (stronger skew, smaller quotes than the sim's best_cell)
PROFILE = load_profile(HBT_PROFILE_DIR / "best_cell.json", registry(load_config()))
PAIRED_SPREAD_STEP = 0.1  # bps added to base_spread_bps_delta in the second arm (issue 12)

_FRESH = r"""
import time
t0 = time.perf_counter()
from soaklib.sim import hbt
t1 = time.perf_counter()
hbt.simulate({}, "calm", 0, 60.0)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _fresh_process(cache_dir: str) -> dict:
    """Import + first 60 s window (market generated) in a new interpreter: with an empty numba cache,
    then with the machine code it left."""
    env = dict(os.environ, **{ENV: cache_dir, "NUMBA_CACHE_DIR": cache_dir + "-numba"})
    imp0, first0 = child_floats(_FRESH, env)
    imp, first = child_floats(_FRESH, dict(env, **{ENV: cache_dir + "-2"}))
    return {"fresh_process_import_cold_numba_s": round(imp0, 3), "fresh_process_first_window_cold_numba_s":
            round(first0, 3), "fresh_process_import_s": round(imp, 3), "fresh_process_first_window_s": round(first, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench hbt")
    ap.add_argument("--windows", type=int, default=None, help="windows measured (0..N-1; default 3, --paired 24)")
    ap.add_argument("--duration-s", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process compile measurement")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--paired", action="store_true", help="the paired (common random numbers) figure instead")
    ap.add_argument("--seeds", type=int, default=10, help="--paired: run seeds")
    ap.add_argument("--first-seed", type=int, default=3000, help="--paired: first run seed")
    a = ap.parse_args(argv)
    if a.paired:
        emit(paired(a.scenario, range(a.first_seed, a.first_seed + a.seeds), a.windows or 24, a.duration_s),
             a.json, indent=1, width=28)
        return 0
    a.windows = a.windows or 3
    tmp = tempfile.mkdtemp(prefix="soak-bench-hbt-")
    try:
        res = _run(a, Path(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit(res, a.json, indent=1, width=40)
    return 0


def _run(a: argparse.Namespace, tmp: Path) -> dict:
    res: dict = {"scenario": a.scenario, "seed": a.seed, "windows": list(range(a.windows)), "duration_s": a.duration_s}
    if not a.no_fresh:
        res.update(_fresh_process(str(tmp / "fresh")))
    cfg_unc = load_config(overrides={"hbt": {"market_cache_dir": str(tmp / "unc")}})
    cfg = load_config(overrides={"hbt": {"market_cache_dir": str(tmp / "cached")}})
    t = time.perf_counter()
    hbt.simulate(PROFILE, a.scenario, a.seed, 60.0, config=load_config(
        overrides={"hbt": {"market_cache": False}}))  # JIT warm-up in this process
    res["compile_in_process_s"] = round(time.perf_counter() - t, 3)
    gen, unc, cac, bare = [], [], [], []
    for w in range(a.windows):
        start = w * a.duration_s
        t = time.perf_counter()
        m = generate(a.scenario, a.seed, w, a.duration_s)
        gen.append((time.perf_counter() - t, len(m.events)))
        shutil.rmtree(tmp / "unc", ignore_errors=True)
        t = time.perf_counter()
        hbt.simulate(PROFILE, a.scenario, a.seed, a.duration_s, start_s=start, config=cfg_unc)
        unc.append(time.perf_counter() - t)
        hbt.simulate(PROFILE, a.scenario, a.seed, a.duration_s, start_s=start, config=cfg)  # store
        t = time.perf_counter()
        hbt.simulate(PROFILE, a.scenario, a.seed, a.duration_s, start_s=start, config=cfg)
        cac.append(time.perf_counter() - t)
        mk = MarketCache(tmp / "cached").get(a.scenario, a.seed, w, a.duration_s)
        _, P, C, lat_rows, fi, ff, lats, ages, st = B.strategy_inputs(PROFILE, mk, cfg)
        bt = B.make_backtest(mk, cfg)
        t = time.perf_counter()
        ST.mm_strategy(bt.ptr, P, C, lat_rows, fi, ff, lats, ages, st)
        bare.append(time.perf_counter() - t)
        bt.close()
    md = statistics.median
    size = sum(p.stat().st_size for p in (tmp / "cached").rglob("*.npz"))
    hours = a.windows * a.duration_s / 3600.0
    res.update({
        "book_events_per_sim_s": round(md([n for _, n in gen]) / a.duration_s, 1),
        "generation_events_per_wall_s": round(md([n / s for s, n in gen])),
        "generation_s_per_window": round(md([s for s, _ in gen]), 3),
        "sim_s_per_wall_s_uncached": round(a.duration_s / md(unc)),
        "sim_s_per_wall_s_cached": round(a.duration_s / md(cac)),
        "sim_s_per_wall_s_bare_hftbacktest": round(a.duration_s / md(bare)),
        "overhead_cached_vs_bare": round(md(cac) / md(bare) - 1.0, 4),
        "cache_mb_per_sim_hour": round(size / 1e6 / hours, 2),
        "raw_mb_per_sim_hour_uncompressed": round(
            (mk.events.nbytes + mk.latency.nbytes + mk.grid_ts.nbytes + mk.grid_mid.nbytes + mk.grid_regime.nbytes)
            / 1e6 / (a.duration_s / 3600.0), 2),
    })
    return res


def paired(scenario: str, run_seeds: range, windows: int, duration_s: float) -> dict:
    """Per-iteration net_bps of best_cell and best_cell + 0.1 bps spread on the same markets."""
    cfg = load_config()
    b = dict(PROFILE, base_spread_bps_delta=round(PROFILE["base_spread_bps_delta"] + PAIRED_SPREAD_STEP, 6))
    xa, xb = [], []
    t0 = time.perf_counter()
    for s in run_seeds:
        for n in range(1, windows + 1):
            args = (scenario, iteration_seed(s, n), duration_s)
            xa.append(hbt.simulate(PROFILE, *args, start_s=(n - 1) * duration_s, config=cfg).kpis["net_bps"])
            xb.append(hbt.simulate(b, *args, start_s=(n - 1) * duration_s, config=cfg).kpis["net_bps"])
    a, bb = np.array(xa, dtype=float), np.array(xb, dtype=float)
    d = bb - a
    return {"scenario": scenario, "run_seeds": f"{run_seeds.start}-{run_seeds.stop - 1}",
            "windows": f"0-{windows - 1}", "duration_s": duration_s, "pairs": int(d.size),
            "spread_step_bps": PAIRED_SPREAD_STEP,
            "corr_net_bps": round(float(np.corrcoef(a, bb)[0, 1]), 4),
            "sd_paired_diff_bps": round(float(d.std(ddof=1)), 4), "mean_paired_diff_bps": round(float(d.mean()), 4),
            "sd_arm_net_bps": round(float(a.std(ddof=1)), 4), "mean_arm_net_bps": round(float(a.mean()), 4),
            "wall_s": round(time.perf_counter() - t0, 1)}
