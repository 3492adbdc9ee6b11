"""``python -m soaklib.bench sim [--hours N] [--repeat K] [--no-cold] [--json]``

Figures (issue 2): simulator events/s (compiled loop only and end-to-end ``simulate``); a bare
compiled loop drawing the same four random numbers per event with no strategy logic, its events/s and
the ratio (goal >= 0.4); simulated seconds per wall second at the default event density (goal
>= 30 000 with >= 100 market events per simulated second); JIT cost: loading the cached machine code
in a fresh process, and (unless --no-cold) compiling from scratch into an empty cache.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from soaklib.bench._common import child_floats, emit
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.sim import engine as E
from soaklib.sim import simulate
from soaklib.sim.scenario import load_scenario

_COLD = r"""
import time
t = time.perf_counter()
from soaklib.sim import simulate
t1 = time.perf_counter()
simulate({}, "calm", 0, 1.0)
t2 = time.perf_counter()
print(t1 - t, t2 - t1)
"""


def _jit_cost(cold: bool) -> dict:
    out = {}
    env = dict(os.environ)
    imp, first = child_floats(_COLD, env)
    out["import_s"] = round(imp, 3)
    out["first_call_cached_s"] = round(first, 3)
    if cold:
        with tempfile.TemporaryDirectory() as d:
            env["NUMBA_CACHE_DIR"] = d
            out["first_call_cold_compile_s"] = round(child_floats(_COLD, env)[1], 3)
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench sim")
    ap.add_argument("--hours", type=float, default=1.0, help="simulated hours per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs (best is reported)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-compile measurement")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    jit = _jit_cost(not a.no_cold)
    cfg = load_config()
    params = load_profile("best_cell", registry(cfg))
    sc = load_scenario("default")
    dur_s = a.hours * 3600.0
    simulate(params, "default", 0, 1.0)  # warm (cached code)
    E._bare_loop(0, 1000.0, 120.0, 1.0)

    # Sim and bare runs are interleaved and timed both by wall clock and by this process's CPU time
    # (robust when other processes share the cores); the best of each is reported.
    P = np.array([float(params[n]) for n in E.PARAM_ORDER])
    C = E._constants(cfg, sc.market)
    best = {"loop_wall": 1e9, "loop_cpu": 1e9, "bare_wall": 1e9, "bare_cpu": 1e9, "e2e_wall": 1e9}
    events = bare_events = 0
    density = None
    for i in range(a.repeat):
        start = i * dur_s
        SEG, _ = sc.window(start, dur_s)
        n_est = int(2 * sc.regimes[:, E.R_RATE].max() * dur_s * 1.3) + 1000
        bufs = (np.empty((n_est // 4 + 2000, E.N_FCOL)), np.empty(n_est // 2 + 2000), np.empty(n_est // 2 + 2000),
                np.empty((100000, 2)), np.zeros(E.N_STATS))
        w, c = time.perf_counter(), time.process_time()
        ev = E._loop(i, dur_s * 1000.0, P, C, sc.regimes, SEG, *bufs)
        best["loop_wall"] = min(best["loop_wall"], time.perf_counter() - w)
        best["loop_cpu"] = min(best["loop_cpu"], time.process_time() - c)
        events = ev
        if density is None:
            density = ev / dur_s  # the bare loop runs at the same event density
        w, c = time.perf_counter(), time.process_time()
        n, _ = E._bare_loop(i, dur_s * 1000.0, density, 1.0)
        best["bare_wall"] = min(best["bare_wall"], time.perf_counter() - w)
        best["bare_cpu"] = min(best["bare_cpu"], time.process_time() - c)
        bare_events = n
        w = time.perf_counter()
        simulate(params, "default", i, dur_s, start_s=start, config=cfg)
        best["e2e_wall"] = min(best["e2e_wall"], time.perf_counter() - w)
    sim_cpu = events / best["loop_cpu"]
    bare_cpu = bare_events / best["bare_cpu"]
    fig = {
        "scenario": "default", "profile": "best_cell", "simulated_s_per_run": dur_s, "repeat": a.repeat,
        "market_events_per_sim_s": round(density, 1),
        "sim_loop_events_per_cpu_s": round(sim_cpu), "bare_loop_events_per_cpu_s": round(bare_cpu),
        "ratio_sim_to_bare_cpu": round(sim_cpu / bare_cpu, 3),
        "sim_s_per_cpu_s_loop": round(dur_s / best["loop_cpu"]),
        "sim_loop_events_per_wall_s": round(events / best["loop_wall"]),
        "bare_loop_events_per_wall_s": round(bare_events / best["bare_wall"]),
        "ratio_sim_to_bare_wall": round((events / best["loop_wall"]) / (bare_events / best["bare_wall"]), 3),
        "sim_s_per_wall_s_loop": round(dur_s / best["loop_wall"]),
        "sim_s_per_wall_s_end_to_end": round(dur_s / best["e2e_wall"]),
        "goals": {"ratio": ">= 0.4", "sim_s_per_wall_s": ">= 30000 at >= 100 events/sim s"},
        "jit": jit, "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    emit(fig, a.json, indent=2, width=32)
    return 0
