"""``python -m soaklib.bench judge [--runs 21] [--pairs 24] [--duration-s 600] [--quick] [--json]``

How well the paired judge (``soaklib.judge.compare``, the gate's ``baseline_goals``) tells a real
change from noise, on the hftbacktest engine (issue 13's benchmark). One pool of data, then three
figures computed from it:

- the pool: ``--runs`` soaks of ``--pairs`` iterations each (run seeds ``--seed`` ..), every
  iteration's window run twice on the same market (common random numbers): the profile (``--profile``)
  and the same profile with ``base_spread_bps_delta`` raised by ``--delta``. Records are built as
  the soak loop builds them (HbtRunner, iteration seed from (run seed, n), window (n-1)·duration,
  ``build_record``); nothing is written but the market cache.
- **effect**: the change's effect on net_bps measured on every pair of the pool (mean, Hodges–Lehmann
  estimate and interval) — the "known" effect the power figures try to detect.
- **null (A/A)**: every two runs of the unchanged profile (independent markets: different seeds)
  compared paired by window index (arm B's records relabelled with arm A's (seed, window) so the
  judge pairs them): the share of comparisons whose net_bps class is WORSE, whose overall compare
  verdict is FAIL, and whose gate non-inferiority goals (PnL per hour, risk-adjusted PnL) FAIL —
  false FAILs, goal <= 2 %. Also at ``[confirm] iterations`` pairs (what the gate judges by default).
- **power**: detecting the change with ``--pairs`` paired iterations (``compare_records``; detected =
  p < 0.05 with the estimate in the right direction; the BETTER class, which needs the whole interval
  above the practical margin, is reported beside it): once per run of the pool, and over
  ``--reps`` random draws of ``--pairs`` pairs from the pool (goal >= 80 %).
- **unpaired**: the Mann–Whitney judge (``unpaired=True``) on the same data: the smallest number of
  iterations per arm (draws from the pool) that reaches the paired power; goal: paired needs <= 1/3.

Markets are cached in ``--cache-dir`` (default: ``$SOAK_MARKET_CACHE`` if set and kept, else a
temporary directory removed at exit). The seeds used are printed.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.bench._common import emit
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.core.records import build_record
from soaklib.core.seeding import iteration_seed
from soaklib.execute.runners import make_runner
from soaklib.judge.compare import FAIL, WORSE, compare_records, hodges_lehmann_paired, kpi_value
from soaklib.judge.gate import PNL_VS_BASELINE, RISK_ADJ_VS_BASELINE, baseline_goals
from soaklib.sim.hbt.cache import ENV

KPI = "net_bps"
PARAM = "base_spread_bps_delta"


def _record(runner: Any, params: Mapping[str, Any], *, n: int, seed: int, start_s: float, duration_s: float,
            scenario: str, cfg: Mapping[str, Any]) -> dict:
    out = runner.run(dict(params), iteration=n, seed=seed, start_s=start_s)
    common = dict(iteration=n, seed=seed, runner="hbt", scenario=scenario, start_s=start_s, duration_s=duration_s,
                  cfg=cfg)
    if out.ok:
        return dict(build_record(kpis=out.kpis, params=out.params, market=out.market,
                                 runtime_guards=out.runtime_guards, events=out.events, **common))
    return dict(build_record(kpis=None, params={}, market=out.market, runtime_guards={}, events=None,
                             failure=out.failure, **common))


def pool(run_seeds: Sequence[int], pairs: int, *, base: Mapping[str, Any], cand: Mapping[str, Any],
         scenario: str, duration_s: float, cfg: Mapping[str, Any]) -> list[tuple[list[dict], list[dict]]]:
    """Per run seed: (records of the base profile, records of the candidate), same windows."""
    runner = make_runner("hbt", scenario=scenario, duration_s=duration_s, config=dict(cfg))
    out = []
    for s in run_seeds:
        b, c = [], []
        for n in range(1, pairs + 1):
            kw = dict(n=n, seed=iteration_seed(s, n), start_s=(n - 1) * duration_s, duration_s=duration_s,
                      scenario=scenario, cfg=cfg)
            b.append(_record(runner, base, **kw))
            c.append(_record(runner, cand, **kw))
        out.append((b, c))
    return out


def relabel(like: Sequence[Mapping[str, Any]], recs: Sequence[Mapping[str, Any]]) -> list[dict]:
    """``recs`` with the (seed, window) of ``like`` by position: two independent runs paired by window
    index (the judge pairs by (seed, window), which independent markets never share)."""
    return [{**r, "seed": a["seed"], "window": dict(a["window"])} for a, r in zip(like, recs)]


def _detected(cmp: Any, sign: int) -> tuple[bool, bool]:
    """(p < 0.05 with the estimate in the right direction, class BETTER) for the net_bps verdict."""
    v = cmp.kpi(KPI)
    sig = v.p_value is not None and v.p_value < 0.05 and v.estimate is not None and np.sign(v.estimate) == sign
    return bool(sig), v.verdict == ("BETTER" if sign > 0 else "WORSE")


def _pnl_upper_below_margin(base: Sequence[dict], cand: Sequence[dict], cfg: Mapping[str, Any]) -> bool:
    """The gate's PnL-per-hour rule with FAIL only when the whole interval lies below −margin (shown
    worse), instead of when the estimate does: what a significance-based FAIL would give."""
    b = np.array([kpi_value(r, "pnl_per_hour") for r in base], dtype=float)
    c = np.array([kpi_value(r, "pnl_per_hour") for r in cand], dtype=float)
    margin = float(cfg["confirm"]["pnl_per_hour_margin_rel"]) * abs(float(np.median(b)))
    _est, _lo, hi = hodges_lehmann_paired(c - b, float(cfg["compare"]["confidence"]))
    return hi < -margin


def null_rates(runs: Sequence[Sequence[dict]], cfg: Mapping[str, Any], k: int) -> dict[str, Any]:
    """A/A on every two runs (independent markets), the first ``k`` windows of each, paired by index."""
    counts = dict.fromkeys(("worse", "sig", "verdict_fail", "pnl_fail", "riskadj_fail", "any_ni_fail",
                            "pnl_inconclusive", "pnl_fail_if_interval_below_margin"), 0)
    by_kpi: dict[str, int] = {}
    total = 0
    for a, b in itertools.combinations(range(len(runs)), 2):
        base, cand = list(runs[a][:k]), relabel(runs[a][:k], runs[b][:k])
        cmp = compare_records(base, cand, cfg)
        v = cmp.kpi(KPI)
        counts["worse"] += v.verdict == WORSE
        counts["sig"] += v.p_value is not None and v.p_value < 0.05
        counts["verdict_fail"] += cmp.verdict == FAIL
        for kv in cmp.kpis:
            if kv.verdict == WORSE:
                why = "dispersion" if kv.reason.startswith("dispersion") else (
                    "upper quantile" if kv.reason.startswith("upper quantile") else "interval")
                by_kpi[f"{kv.kpi} ({why})"] = by_kpi.get(f"{kv.kpi} ({why})", 0) + 1
        goals = {g.kpi: g.status for g in baseline_goals(cand, base, cfg)}
        counts["pnl_fail"] += goals[PNL_VS_BASELINE] == FAIL
        counts["riskadj_fail"] += goals[RISK_ADJ_VS_BASELINE] == FAIL
        counts["any_ni_fail"] += FAIL in goals.values()
        counts["pnl_inconclusive"] += goals[PNL_VS_BASELINE] == "INCONCLUSIVE"
        counts["pnl_fail_if_interval_below_margin"] += _pnl_upper_below_margin(base, cand, cfg)
        total += 1
    rate = {key: round(v / total, 4) if total else None for key, v in counts.items()}
    worse = {key: round(v / total, 4) for key, v in sorted(by_kpi.items())} if total else {}
    return {"comparisons": total, "pairs": k, **rate, "worse_by_kpi": worse}


def _power(b: Sequence[dict], c: Sequence[dict], n: int, reps: int, cfg: Mapping[str, Any], rng: np.random.Generator,
           *, unpaired: bool) -> tuple[float, float]:
    """(share detected, share BETTER) over ``reps`` draws of ``n`` windows (without replacement) of the pool."""
    sig = better = 0
    for _ in range(reps):
        idx = rng.choice(len(b), size=n, replace=False)
        s, bt = _detected(compare_records([b[i] for i in idx], [c[i] for i in idx], cfg, unpaired=unpaired), +1)
        sig += s
        better += bt
    return sig / reps, better / reps


def unpaired_needed(b: Sequence[dict], c: Sequence[dict], target: float, start: int, reps: int,
                    cfg: Mapping[str, Any], rng: np.random.Generator) -> tuple[int | None, list[tuple[int, float]]]:
    """Smallest n (a multiple of ``start``, at most the pool) whose unpaired power reaches ``target``
    (doubling, then bisection on the multiples); None when the whole pool does not reach it."""
    tried: dict[int, float] = {}

    def pw(n: int) -> float:
        if n not in tried:
            tried[n] = _power(b, c, n, reps, cfg, rng, unpaired=True)[0]
        return tried[n]

    top = len(b) // start * start
    lo, hi = 0, start
    while pw(hi) < target:
        if hi >= top:
            return None, sorted(tried.items())
        lo, hi = hi, min(hi * 2, top)
    while hi - lo > start:  # pw(lo) < target <= pw(hi)
        mid = (lo + hi) // 2 // start * start
        if mid in (lo, hi):
            break
        lo, hi = (lo, mid) if pw(mid) >= target else (mid, hi)
    return hi, sorted(tried.items())


def measure(a: argparse.Namespace, cache_dir: str) -> dict[str, Any]:
    cfg = load_config(a.config, overrides={"hbt": {"market_cache_dir": cache_dir}})
    net_only = {**cfg, "compare": {**cfg["compare"], "kpis": {KPI: cfg["compare"]["kpis"][KPI]}}}
    base = load_profile(a.profile, registry(cfg))
    cand = {**base, PARAM: float(base[PARAM]) + a.delta}
    seeds = list(range(a.seed, a.seed + a.runs))
    t0 = time.perf_counter()
    data = pool(seeds, a.pairs, base=base, cand=cand, scenario=a.scenario, duration_s=a.duration_s, cfg=cfg)
    sim_s = time.perf_counter() - t0
    b_all = [r for b, _ in data for r in b]
    c_all = [r for _, c in data for r in c]
    ok = [(x, y) for x, y in zip(b_all, c_all) if x["status"] == "ok" and y["status"] == "ok"]
    bv = np.array([kpi_value(x, KPI) for x, _ in ok], dtype=float)
    cv = np.array([kpi_value(y, KPI) for _, y in ok], dtype=float)
    d = cv - bv
    est, lo, hi = hodges_lehmann_paired(d, float(cfg["compare"]["confidence"]))
    pb = np.array([kpi_value(x, "pnl_per_hour") for x, _ in ok], dtype=float)
    pc = np.array([kpi_value(y, "pnl_per_hour") for _, y in ok], dtype=float)
    res: dict[str, Any] = {
        "engine": "hbt", "scenario": a.scenario, "profile": a.profile, "change": f"{PARAM} +{a.delta:g}",
        "duration_s": a.duration_s, "run_seeds": f"{seeds[0]}..{seeds[-1]}", "pairs_per_run": a.pairs,
        "pool_windows": len(b_all), "pool_windows_ok_both": len(ok), "reps": a.reps, "rng_seed": a.seed,
        "pool_wall_s": round(sim_s, 1),
        # the change's effect, on the whole pool
        "effect_net_bps_mean": round(float(d.mean()), 4),
        "effect_net_bps_hl": round(est, 4), "effect_net_bps_hl_ci95": [round(lo, 4), round(hi, 4)],
        "effect_net_bps_sd_of_pair_diffs": round(float(d.std(ddof=1)), 4),
        "net_bps_sd_across_windows": round(float(bv.std(ddof=1)), 4),
        "net_bps_corr_between_arms": round(float(np.corrcoef(bv, cv)[0, 1]), 4),
        "effect_pnl_per_hour_mean": round(float((pc - pb).mean()), 4),
        "pnl_per_hour_base_median": round(float(np.median(pb)), 4),
    }
    # A/A on independent markets: the base arm of every two runs
    t = time.perf_counter()
    runs = [b for b, _ in data]
    for k, tag in ((a.pairs, "null"), (min(int(cfg["confirm"]["iterations"]), a.pairs), "null_confirm")):
        if tag == "null_confirm" and k == a.pairs:
            continue
        res.update({f"{tag}_{key}": v for key, v in null_rates(runs, cfg, k).items()})
    # power with --pairs paired iterations: once per run, then over random draws from the pool
    per_run = [_detected(compare_records(b, c, net_only), +1) for b, c in data]
    res["power_per_run_detected"] = f"{sum(s for s, _ in per_run)}/{len(per_run)}"
    res["power_per_run_better"] = f"{sum(bt for _, bt in per_run)}/{len(per_run)}"
    rng = np.random.default_rng(a.seed)
    okb, okc = [x for x, _ in ok], [y for _, y in ok]
    p_sig, p_better = _power(okb, okc, a.pairs, a.reps, net_only, rng, unpaired=False)
    res["power_paired"] = round(p_sig, 4)
    res["power_paired_better_class"] = round(p_better, 4)
    # the unpaired Mann–Whitney on the same windows: the n reaching the paired power
    p_un, _ = _power(okb, okc, a.pairs, a.reps, net_only, rng, unpaired=True)
    res["power_unpaired_same_n"] = round(p_un, 4)
    # the n for the goal's power (or the paired power if lower), and for the paired power itself
    target = min(p_sig, a.target)
    need, curve = unpaired_needed(okb, okc, target, a.pairs, a.reps, net_only, rng)
    res["unpaired_target_power"] = round(target, 4)
    res["unpaired_needed_iterations"] = need if need is not None else f"> {len(okb)} (the pool)"
    res["paired_over_unpaired"] = round(a.pairs / need, 4) if need else None
    need_same, curve2 = unpaired_needed(okb, okc, p_sig, a.pairs, a.reps, net_only, rng)
    res["unpaired_needed_for_paired_power"] = need_same if need_same is not None else f"> {len(okb)} (the pool)"
    res["unpaired_power_curve"] = [[n, round(p, 4)] for n, p in sorted(dict(curve + curve2).items())]
    res["judge_wall_s"] = round(time.perf_counter() - t, 1)
    res["goals"] = {"null_false_fail_net_bps_le_2pct": bool(res["null_worse"] <= 0.02),
                    "null_false_fail_gate_non_inferiority_le_2pct": bool(res["null_any_ni_fail"] <= 0.02),
                    "power_ge_80pct": bool(p_sig >= 0.8),
                    "paired_le_third_of_unpaired": bool(need is None or a.pairs * 3 <= need)}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench judge", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="run seeds in the pool (A/A comparisons: runs·(runs-1)/2)")
    ap.add_argument("--pairs", type=int, default=24, help="iterations per run = paired iterations per comparison")
    ap.add_argument("--duration-s", type=float, default=600.0, help="simulated seconds per iteration")
    ap.add_argument("--seed", type=int, default=1, help="first run seed (also seeds the resampling)")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--profile", default="best_cell")
    ap.add_argument("--delta", type=float, default=0.1, help=f"the candidate's change of {PARAM}")
    ap.add_argument("--reps", type=int, default=400, help="random draws per power figure")
    ap.add_argument("--target", type=float, default=0.8, help="power the unpaired judge must reach (at most the paired; "
                    "the n for the paired power itself is reported too)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--cache-dir", default=None, help="market cache (default $SOAK_MARKET_CACHE, else a temp dir)")
    ap.add_argument("--quick", action="store_true", help="smoke version: 4 runs of 8 pairs of 120 s, 30 draws")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.runs, a.pairs, a.duration_s, a.reps = 4, 8, 120.0, 30
    keep = a.cache_dir or os.environ.get(ENV)
    tmp = None if keep else tempfile.mkdtemp(prefix="soak-bench-judge-")
    try:
        res = measure(a, str(Path(keep or tmp)))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(res, a.json, indent=1, width=36)
    return 0
