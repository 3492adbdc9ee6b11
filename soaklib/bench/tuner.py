"""Tuning-quality benchmark: ``python -m soaklib.bench tuner [--seeds 20] [--iterations 24] ...``.

For each seed: ``--iterations`` iterations from the ``bad`` profile on the scenario, once with and
once without auto-tune, driven in-process exactly like the soak loop (SimRunner, iteration seed from
(seed, n), window start (n-1)·duration, build_record, tuner.decide, next_params). Prints the share
of seeds whose last ``last_n`` iterations meet all goals (gate verdict PASS or WARN), the mean
iteration of the first passing window, and guard event counts. Nothing is written to disk.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.core.records import build_record, effective_params, next_params
from soaklib.core.run import iterations_frame
from soaklib.core.seeding import iteration_seed
from soaklib.execute.runners import SimRunner
from soaklib.judge.gate import evaluate
from soaklib.tune.loop import decide_tuning

PASSING = ("PASS", "WARN")  # WARN = hard thresholds met, a soft one missed


def run_one(seed: int, *, iterations: int, auto_tune: bool, cfg: dict, profile: dict, scenario: str,
            duration_s: float) -> list[dict]:
    """One soak in memory; returns the records (with tuning blocks)."""
    runner = SimRunner(scenario, duration_s, cfg)
    requested = dict(profile)
    recs: list[dict] = []
    for n in range(1, iterations + 1):
        sn = iteration_seed(seed, n)
        out = runner.run(dict(requested), iteration=n, seed=sn, start_s=(n - 1) * duration_s)
        common = dict(iteration=n, seed=sn, runner="sim", scenario=scenario, start_s=(n - 1) * duration_s,
                      duration_s=duration_s, cfg=cfg)
        if out.ok:
            rec = build_record(kpis=out.kpis, params=out.params, market=out.market, runtime_guards=out.runtime_guards,
                               events=out.events, **common)
        else:
            rec = build_record(kpis=None, params={}, market=out.market, runtime_guards={}, events=None,
                               failure=out.failure, **common)
        current = effective_params(requested, rec)
        rec["tuning"] = decide_tuning(recs + [rec], current, cfg, iteration=n, total=iterations, auto_tune=auto_tune)
        recs.append(rec)
        requested = next_params(current, rec["tuning"])
    return recs


def window_verdicts(recs: list[dict], cfg: dict, last_n: int) -> list[tuple[int, str]]:
    """(n, gate verdict over the last_n iterations ending at n) for n = last_n..len(recs)."""
    df = iterations_frame(recs)
    out = []
    for n in range(last_n, len(recs) + 1):
        out.append((n, evaluate(df.loc[:n], cfg, last_n=last_n).verdict))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench tuner", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--profile", default="bad")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--duration", type=float, default=None, help="simulated seconds per iteration (config default)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--verbose", "-v", action="store_true", help="print each seed's trajectory")
    a = ap.parse_args(argv)

    cfg = load_config(a.config)
    profile = load_profile(a.profile, registry(cfg))
    duration = float(a.duration or cfg["run"]["duration_s"])
    last_n = int(cfg["report"]["last_n"])
    seeds = list(range(a.first_seed, a.first_seed + a.seeds))
    res: dict[bool, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for tuned in (True, False):
        passed, first, never, guards, final_kpis = 0, [], 0, Counter(), []
        for s in seeds:
            recs = run_one(s, iterations=a.iterations, auto_tune=tuned, cfg=cfg, profile=profile,
                           scenario=a.scenario, duration_s=duration)
            wv = window_verdicts(recs, cfg, last_n)
            ok_last = bool(wv) and wv[-1][1] in PASSING
            passed += ok_last
            f = next((n for n, v in wv if v in PASSING), None)
            if f is None:
                never += 1
            else:
                first.append(f)
            for r in recs:
                for d in (r.get("tuning") or {}).get("decisions") or []:
                    if d.get("guard"):
                        guards[f"{d['verdict']}:{d['guard']}"] += 1
                if (r.get("tuning") or {}).get("guards", {}).get("oscillation_detected"):
                    guards["oscillation_detected_iterations"] += 1
            if a.verbose:
                print(f"seed {s} tuned={tuned} last-window={wv[-1][1] if wv else None} first-pass={f} "
                      f"final params={ {k: recs[-1]['params'].get(k) for k in sorted(recs[-1]['params'])} }")
                for r in recs:
                    sm = r["summary"] or {}
                    t = r.get("tuning") or {}
                    print(f"  {r['iteration']:2d} net={_f(sm.get('net_bps'))} risk={_f(sm.get('risk_ratio'))} "
                          f"mt={_f(sm.get('maker_taker_ratio'))} p95={_f(sm.get('p95_latency_ms'))} "
                          f"adv95={_f(sm.get('adverse_bps_p95'))} sl95={_f(sm.get('slippage_bps_p95'))} "
                          f"| {t.get('rationale', '')[:110]}")
            final_kpis.append(recs[-1]["summary"] or {})
        res[tuned] = {"passed": passed, "first": first, "never": never, "guards": guards}
    el = time.perf_counter() - t0

    n = len(seeds)
    print(f"tuning benchmark: profile={a.profile} scenario={a.scenario} seeds={n} iterations={a.iterations} "
          f"duration_s={duration:g} last_n={last_n} ({el:.1f}s wall)")
    print(f"{'mode':<12}{'last-window pass':>18}{'share':>8}{'mean first pass':>17}{'never':>7}")
    for tuned in (True, False):
        r = res[tuned]
        mean_first = f"{sum(r['first']) / len(r['first']):.1f}" if r["first"] else "-"
        print(f"{'auto-tune' if tuned else 'no tuning':<12}{r['passed']:>14}/{n:<3}{100 * r['passed'] / n:>7.0f}%"
              f"{mean_first:>17}{r['never']:>7}")
    print("guard events (auto-tune, all seeds): " +
          (", ".join(f"{k}={v}" for k, v in sorted(res[True]["guards"].items())) or "none"))
    return 0


def _f(v: Any) -> str:
    return f"{v:7.3f}" if isinstance(v, (int, float)) else "   None"
