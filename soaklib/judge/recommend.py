"""Computed recommendations for goals a run misses.

Simulator runs (manifest runner "sim"): for each failing (or soft-missed) goal, candidate deltas on
the goal's configured levers are applied to the parameters the next iteration would run with and
re-simulated on the same seeds and windows as the last-N iterations; candidates are ranked by
their effect on the goals, evaluated by the gate. Other runners: the same levers, rule-based,
each shown with its evidence from the run (value vs target, trend, how the KPI moved with the
parameter across iterations). Nothing here is canned text: every line comes from a number.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soaklib import sim
from soaklib.core.errors import ConfigError
from soaklib.core.params import registry
from soaklib.core.records import next_params
from soaklib.core.run import Run
from soaklib.core.text import fmt_num
from soaklib.judge import analysis, gate

TARGET_STATUSES = ("FAIL", "WARN")


@dataclass
class Candidate:
    label: str
    deltas: dict[str, float]
    params: dict[str, float]
    goals: dict[str, dict[str, Any]] = field(default_factory=dict)   # kpi -> value/status
    met: int = 0
    score: float = 0.0
    verdict: str = ""


@dataclass
class Recommendations:
    """Result of :func:`recommend`: a table here; Markdown in ``publish.markdown``, a chart in ``publish.plots``."""

    mode: str                                   # "simulated" | "rule-based" | "none"
    targets: list[str]
    goals: dict[str, dict[str, Any]]            # the run's goal results (snapshot)
    baseline: Candidate | None = None
    candidates: list[Candidate] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> Candidate | None:
        if not self.candidates or self.baseline is None:
            return None
        top = self.candidates[0]
        return top if top.score > self.baseline.score else None

    def to_dict(self) -> dict[str, Any]:
        def c(x: Candidate | None):
            return None if x is None else {"label": x.label, "deltas": x.deltas, "params": x.params,
                                           "goals": x.goals, "met": x.met, "score": x.score, "verdict": x.verdict}
        return {"mode": self.mode, "targets": self.targets, "baseline": c(self.baseline),
                "candidates": [c(x) for x in self.candidates], "rules": self.rules, "windows": self.windows,
                "notes": self.notes, "best": c(self.best)}

    @property
    def inconclusive(self) -> list[str]:
        """Goals with no value over the window (nothing can be recommended for them)."""
        return [k for k, g in self.goals.items() if g.get("status") == "INCONCLUSIVE"]

    def table(self) -> pd.DataFrame | None:
        if self.mode == "simulated":
            rows = []
            for x in ([self.baseline] if self.baseline else []) + self.candidates:
                r = {"candidate": x.label, "goals met": x.met, "score": round(x.score, 4), "verdict": x.verdict}
                for k, g in x.goals.items():
                    r[k] = g.get("value")
                rows.append(r)
            return pd.DataFrame(rows).set_index("candidate") if rows else None
        if self.mode == "rule-based":
            return pd.DataFrame(self.rules).set_index(["goal", "change"]) if self.rules else None
        return None


def better(d: float, op: str) -> bool:
    return bool(d == d and ((d > 0) if op in (">=", ">") else (d < 0)))


def levers(cfg: Mapping[str, Any], goal: str) -> list[tuple[str, int]]:
    """The configured levers of a goal as (param, +1/-1); ConfigError on a malformed entry."""
    reg = registry(cfg)
    out = []
    for item in (cfg.get("recommend") or {}).get(goal, []) or []:
        s = str(item).strip()
        if len(s) < 2 or s[0] not in "+-" or s[1:] not in reg:
            raise ConfigError(f"lever {item!r}: expected '+param' or '-param' with a registry parameter",
                              field=f"recommend.{goal}")
        out.append((s[1:], 1 if s[0] == "+" else -1))
    return out


def _step(cfg, name: str) -> float:
    p = registry(cfg)[name]
    raw = float(cfg["recommend"]["delta_rel"]) * (p.max - p.min)
    return max(p.step, abs(p.round(raw)))


def recommend(run: Run, cfg: Mapping[str, Any], last_n: int, *, snapshot: Mapping[str, Any] | None = None,
              simulate: bool = True) -> Recommendations:
    """Recommendations for the goals the run fails or only softly meets over the last N iterations."""
    snap = snapshot or analysis.snapshot(run, cfg, last_n)
    goals = snap["goals"]
    missed = [k for k, g in goals.items() if g.get("status") in TARGET_STATUSES]
    # the KPI goals have levers; the non-inferiority goals against the baseline (judge.gate) do not
    targets = [k for k in missed if k in cfg["goals"]]
    rec = Recommendations(mode="none", targets=targets, goals=dict(goals))
    if len(targets) < len(missed):
        rec.notes.append("not inferior to the baseline is not met (" + ", ".join(k for k in missed if k not in targets)
                         + "): no lever moves it directly; see the comparison report")
    if rec.inconclusive:
        rec.notes.append("not enough data for " + ", ".join(rec.inconclusive) + ": no change computed for them")
    if not targets:
        rec.notes.append("no goal fails or misses its soft target")
        return rec
    runner = str((run.manifest or {}).get("runner", ""))
    if runner == "sim" and simulate:
        return _simulated(run, cfg, snap, rec)
    if runner == "sim":
        rec.notes.append("simulation disabled: rule-based")
    return _rule_based(run, cfg, snap, rec)


def _base_params(run: Run) -> dict:
    oks = [r for r in run.records if r.get("status") == "ok" and r.get("params")]
    if not oks:
        return {}
    last = oks[-1]
    return next_params(last["params"], last.get("tuning"))


def _candidates(cfg, targets, base: Mapping[str, Any]) -> list[tuple[str, dict]]:
    reg = registry(cfg)
    per_goal = []
    for goal in targets:
        lst = []
        for name, sign in levers(cfg, goal):
            if name not in base:
                continue
            new = reg[name].normalise(base[name] + sign * _step(cfg, name))
            if new != base[name]:
                lst.append((f"{name} {'+' if new > base[name] else ''}{fmt_num(float(new - base[name]))}", {name: new}))
        per_goal.append(lst)
    out, seen = [], set()
    limit = int(cfg["recommend"]["max_candidates"])
    # round-robin over goals so each failing goal gets its best levers tried
    for k in range(max((len(x) for x in per_goal), default=0)):
        for lst in per_goal:
            if k < len(lst) and len(out) < limit:
                key = tuple(sorted(lst[k][1].items()))
                if key not in seen:
                    seen.add(key)
                    out.append(lst[k])
    return out


def _evaluate(params: dict, windows, cfg, n: int, scenario_fallback: str) -> tuple[dict, int, str, float]:
    rows = {}
    for w in windows:
        r = sim.simulate(params, w["scenario"] or scenario_fallback, int(w["seed"]), float(w["duration_s"]),
                     start_s=float(w["start_s"]), config=cfg)
        rows[w["iteration"]] = {k: v for k, v in r.kpis.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    frame["status"] = "ok"
    res = gate.evaluate(frame, cfg, n)
    goals = {g.kpi: {"value": g.value, "status": g.status} for g in res.goals}
    met = sum(1 for g in res.goals if g.status in ("PASS", "WARN"))
    return goals, met, res.verdict, 0.0


def _score(goals: Mapping[str, Mapping], spec: Mapping[str, Mapping], targets) -> float:
    """Goals met, then the summed margin to the hard target (relative, sign-safe) on target goals."""
    met = sum(1 for g in goals.values() if g.get("status") in ("PASS", "WARN"))
    margin = 0.0
    for k in targets:
        v, s = goals.get(k, {}).get("value"), spec[k]
        if v is None:
            continue
        hard = float(s["hard"])
        m = (v - hard) if s["op"] in (">=", ">") else (hard - v)
        margin += m / max(abs(hard), 1e-9)
    return met + float(np.tanh(margin))  # tanh keeps margin below one whole goal


def _simulated(run, cfg, snap, rec: Recommendations) -> Recommendations:
    t0 = time.perf_counter()
    rec.mode = "simulated"
    its = snap["iterations_analyzed"][-int(cfg["recommend"]["max_windows"]):]
    by_it = {r["iteration"]: r for r in run.records}
    for i in its:
        r = by_it.get(i) or {}
        w = r.get("window") or {}
        if r.get("seed") is None or w.get("duration_s") is None:
            continue
        rec.windows.append({"iteration": i, "seed": r["seed"], "scenario": r.get("scenario"),
                            "start_s": w.get("start_s", 0.0), "duration_s": w["duration_s"]})
    base = _base_params(run)
    if not rec.windows or not base:
        rec.mode = "rule-based"
        rec.notes.append("the last-N records carry no seed/window/params to re-simulate: rule-based")
        return _rule_based(run, cfg, snap, rec)
    scen = str((run.manifest or {}).get("scenario") or "default")
    n = len(rec.windows)
    spec = cfg["goals"]
    goals, met, verdict, _ = _evaluate(base, rec.windows, cfg, n, scen)
    rec.baseline = Candidate("baseline (next params)", {}, dict(base), goals, met,
                             _score(goals, spec, rec.targets), verdict)
    budget = float(cfg["recommend"]["budget_s"])
    cands = _candidates(cfg, rec.targets, base)
    for k, (label, deltas) in enumerate(cands):
        if time.perf_counter() - t0 > budget:
            rec.notes.append(f"re-simulation budget of {budget:g} s spent after {k} of {len(cands)} candidates "
                             "([recommend] budget_s): the rest were not tried")
            break
        params = {**base, **deltas}
        goals, met, verdict, _ = _evaluate(params, rec.windows, cfg, n, scen)
        rec.candidates.append(Candidate(label, deltas, params, goals, met, _score(goals, spec, rec.targets), verdict))
    rec.candidates.sort(key=lambda c: -c.score)
    if not rec.candidates:
        rec.notes.append("every lever of the failing goals is at its bound: nothing to try")
    rec.seconds = time.perf_counter() - t0
    return rec


def _rule_based(run, cfg, snap, rec: Recommendations) -> Recommendations:
    rec.mode = "rule-based"
    reg = registry(cfg)
    it = run.iterations
    prm = run.params
    base = _base_params(run)
    for goal in rec.targets:
        op = cfg["goals"][goal]["op"]
        better_up = op in (">=", ">")
        trend = (snap["kpi_last_n"].get(goal) or {}).get("trend", "n/a")
        for name, sign in levers(cfg, goal):
            p = reg[name]
            cur = base.get(name)
            room = None if cur is None else (p.max - cur if sign > 0 else cur - p.min)
            corr_txt, agree = "parameter did not vary", None
            if name in prm.columns and goal in it.columns:
                j = pd.concat([pd.to_numeric(prm[name], errors="coerce"), pd.to_numeric(it[goal], errors="coerce")],
                              axis=1, join="inner").dropna()
                if len(j) >= 3 and j.iloc[:, 0].nunique() > 1 and j.iloc[:, 1].nunique() > 1:
                    rho = float(j.rank().corr().iloc[0, 1])
                    corr_txt = f"Spearman ρ = {fmt_num(rho, '+.2f')} over {len(j)} iterations"
                    expect = sign * (1 if better_up else -1)
                    agree = (rho * expect) > 0
            step = _step(cfg, name)
            evidence = (f"{goal} {snap['goals'][goal].get('agg')} {fmt_num(snap['goals'][goal].get('value'))} vs "
                        f"{op} {fmt_num(cfg['goals'][goal]['hard'])}, trend {trend}; "
                        + ("run data agrees" if agree else "run data contradicts: test first" if agree is False
                           else "no in-run variation to confirm"))
            if room is not None and room <= 0:
                evidence += f"; {name} is at its bound"
            rec.rules.append({"goal": goal, "change": f"{name} {'+' if sign > 0 else '-'}{fmt_num(float(step))}",
                              "current": cur, "room": room, "correlation": corr_txt, "evidence": evidence,
                              "supported": agree})
    return rec
