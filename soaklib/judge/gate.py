"""The KPI gate (DESIGN §9): goals from config, evaluated over the last N ok iterations.

Statuses per goal: PASS, WARN (meets ``hard``, misses ``soft``), FAIL (misses ``hard``),
INCONCLUSIVE (KPI missing or all-NaN, or fewer than ``last_n`` ok iterations). Missing data is never
a pass. A run with a confirmation phase is judged on that phase (all of it, whatever ``last_n``), and
``evaluate_run`` adds non-inferiority against the baseline arm (PnL per hour, risk-adjusted PnL):
no run passes by trading less. A window shorter than ``last_n`` is still evaluated on what exists and says so: if that
partial data already misses ``hard`` the goal FAILs (a bad run is bad however short), otherwise it is
INCONCLUSIVE. Overall verdict: FAIL > INCONCLUSIVE > WARN > PASS.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soaklib.core.errors import ConfigError, RecordError
from soaklib.core.goals import (
    DEFAULT_LAST_N,
    FAIL,
    INCONCLUSIVE,
    PASS,
    VERDICTS,
    WARN,
    aggregate,
    goal_status,
    goals_from_config,
    overall,
)
from soaklib.core.run import Run
from soaklib.core.text import fmt_num
from soaklib.judge.compare import hodges_lehmann_paired, kpi_value, pairs
from soaklib.store.loader import open_run
from soaklib.store.rundir import BASELINE_DIR, MANIFEST


@dataclass
class GoalResult:
    kpi: str
    agg: str
    op: str
    hard: float | None
    soft: float | None
    value: float | None
    status: str
    n: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        # "name" duplicates "kpi" for readers that key goals by name (analysis.goal_rows)
        return {"kpi": self.kpi, "name": self.kpi, "agg": self.agg, "op": self.op, "hard": self.hard,
                "soft": self.soft, "value": self.value, "status": self.status, "n": self.n, "note": self.note}


@dataclass
class GateResult:
    """Outcome of one gate evaluation; carries the thresholds it used. Its Markdown (the CI step
    summary) is ``soaklib.publish.markdown.gate_markdown``."""

    verdict: str
    goals: list[GoalResult]
    last_n: int
    window: tuple[int, int] | None  # first..last iteration evaluated (None: no ok iteration)
    notes: list[str] = field(default_factory=list)
    iterations_evaluated: list[int] = field(default_factory=list)
    source: str = "iterations"  # "iterations" | "snapshot"

    @property
    def thresholds(self) -> dict[str, dict[str, Any]]:
        return {g.kpi: {"agg": g.agg, "op": g.op, "hard": g.hard, "soft": g.soft} for g in self.goals}

    @property
    def passed(self) -> bool:
        return self.verdict in (PASS, WARN)

    def goal(self, kpi: str) -> GoalResult:
        for g in self.goals:
            if g.kpi == kpi:
                return g
        raise KeyError(kpi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "1.0",
            "verdict": self.verdict,
            "last_n": self.last_n,
            "window": list(self.window) if self.window else None,
            "iterations_evaluated": list(self.iterations_evaluated),
            "source": self.source,
            "goals": [g.to_dict() for g in self.goals],
            "thresholds": self.thresholds,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: object = "<gate>") -> GateResult:
        """Rebuild from ``to_dict()`` output (GATE.json); RecordError naming the field otherwise."""
        try:
            goals = [GoalResult(kpi=g["kpi"], agg=g["agg"], op=g["op"], hard=g["hard"], soft=g.get("soft"),
                                value=g.get("value"), status=g["status"], n=int(g.get("n", 0)),
                                note=g.get("note", "")) for g in d["goals"]]
            verdict = d["verdict"]
            if verdict not in VERDICTS:
                raise RecordError(f"unknown verdict {verdict!r}, expected one of {', '.join(VERDICTS)}",
                                  path=path, field="verdict")
            w = d.get("window")
            return cls(verdict=verdict, goals=goals, last_n=int(d["last_n"]),
                       window=(int(w[0]), int(w[1])) if w else None, notes=list(d.get("notes", [])),
                       iterations_evaluated=[int(i) for i in d.get("iterations_evaluated", [])],
                       source=d.get("source", "iterations"))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecordError(f"not a gate result ({type(exc).__name__}: {exc})", path=path) from None

    def table_rows(self) -> list[list[str]]:
        """kpi, agg, target, value, n, status per goal as shown (terminal table and CI summary)."""
        def num(v: Any) -> str:
            return fmt_num(v, big=1e4)

        return [[g.kpi, g.agg, f"{g.op} {num(g.hard)}" + (f" (soft {num(g.soft)})" if g.soft is not None else ""),
                 num(g.value), str(g.n), g.status] for g in self.goals]

    def to_text(self) -> str:
        """Plain table for the terminal."""
        head = ["kpi", "agg", "target", "value", "n", "status"]
        rows = self.table_rows()
        widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(6)]
        win = f"iterations {self.window[0]}..{self.window[1]}" if self.window else "no ok iterations"
        return "\n".join(["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head, *rows]]
                         + [f"verdict: {self.verdict}  (last_n={self.last_n}, {win})"]
                         + [f"note: {n}" for n in self.notes])


def _last_n(cfg: Mapping[str, Any], last_n: int | None) -> int:
    if last_n is None:
        last_n = cfg.get("report", {}).get("last_n", DEFAULT_LAST_N)
    if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
        raise ConfigError(f"last_n must be a whole number >= 1, got {last_n!r}", field="last_n")
    return last_n


def evaluate(frame: Any, cfg: Mapping[str, Any], last_n: int | None = None) -> GateResult:
    """Evaluate the configured goals.

    ``frame``: the iterations DataFrame (index = iteration, one column per KPI, ``status``), or a
    loaded Run (its ``.iterations`` is used), or a snapshot dict (delegates to
    :func:`evaluate_snapshot`). ``last_n`` defaults to ``cfg["report"]["last_n"]``.
    """
    if isinstance(frame, Mapping):
        return evaluate_snapshot(frame, cfg, last_n=last_n)
    if hasattr(frame, "iterations") and not hasattr(frame, "columns"):
        frame = frame.iterations

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"evaluate() expects a DataFrame, Run or snapshot dict, got {type(frame).__name__}")
    n_wanted = _last_n(cfg, last_n)
    goals = goals_from_config(cfg)
    notes: list[str] = []

    df = frame.sort_index()
    if "phase" in df.columns and (df["phase"] == "confirm").any():
        # what ships is what was validated: the frozen parameters on fresh windows, nothing earlier
        df = df[df["phase"] == "confirm"]
        if last_n is not None and last_n != len(df):
            notes.append(f"last_n={last_n} ignored: the run has a confirmation phase")
        n_wanted = len(df)
        notes.append(f"judged on the confirmation phase ({len(df)} iterations, parameters frozen, fresh windows)")
    if "status" in df.columns:
        ok_mask = df["status"].astype(str) == "ok"
        failed = [int(i) for i in df.index[~ok_mask]]
        if failed:
            notes.append(f"{len(failed)} failed iteration(s) excluded: {_ranges(failed)}")
        ok = df[ok_mask]
    else:
        notes.append("no 'status' column: every iteration treated as ok")
        ok = df
    window_df = ok.tail(n_wanted)
    its = [int(i) for i in window_df.index]
    window = (its[0], its[-1]) if its else None
    if not its:
        notes.append("no ok iterations: every goal is INCONCLUSIVE")
    elif len(its) < n_wanted:
        notes.append(f"only {len(its)} ok iteration(s), fewer than last_n={n_wanted}: evaluated on what exists; "
                     "goals that are not already failing are INCONCLUSIVE")

    results = []
    for g in goals:
        if g.kpi not in window_df.columns:
            results.append(GoalResult(g.kpi, g.agg, g.op, g.hard, g.soft, None, INCONCLUSIVE, 0,
                                      "KPI missing from the run"))
            continue
        col = pd.to_numeric(window_df[g.kpi], errors="coerce")
        vals = col.dropna()
        note = ""
        if len(vals) < len(col):
            miss = [int(i) for i in col.index[col.isna()]]
            note = f"no value in iteration(s) {_ranges(miss)}"
        if len(vals) == 0:
            results.append(GoalResult(g.kpi, g.agg, g.op, g.hard, g.soft, None, INCONCLUSIVE, 0,
                                      note or "no data"))
            continue
        value = aggregate(vals.to_numpy(), g.agg)
        st = goal_status(value, g)
        if len(vals) < n_wanted and st != FAIL:
            st = INCONCLUSIVE
            note = "; ".join(x for x in (note, f"only {len(vals)} of {n_wanted} values") if x)
        results.append(GoalResult(g.kpi, g.agg, g.op, g.hard, g.soft, round(value, 10), st, int(len(vals)), note))

    return GateResult(verdict=overall(r.status for r in results), goals=results, last_n=n_wanted,
                      window=window, notes=notes, iterations_evaluated=its)


def evaluate_snapshot(snapshot: Mapping[str, Any], cfg: Mapping[str, Any], last_n: int | None = None) -> GateResult:
    """Evaluate the goals on a POST_SOAK_SNAPSHOT dict (``kpi_last_n`` or seed ``kpi_last8`` stats).

    The aggregates come from the snapshot; ``last`` (not in a snapshot) is INCONCLUSIVE.
    """
    goals = goals_from_config(cfg)
    stats = snapshot.get("kpi_last_n")
    if stats is None:
        stats = snapshot.get("kpi_last8")
    its = snapshot.get("iterations_analyzed") or []
    try:
        its = [int(i) for i in its]
    except (TypeError, ValueError):
        raise RecordError("expected a list of iteration numbers", field="iterations_analyzed") from None
    n_snap = snapshot.get("last_n")
    n_wanted = _last_n(cfg, last_n if last_n is not None else (n_snap if isinstance(n_snap, int) else None))
    notes = ["evaluated from the snapshot's last-N statistics"]
    if not isinstance(stats, Mapping):
        notes.append("snapshot has no kpi_last_n statistics: every goal is INCONCLUSIVE")
        stats = {}
    n = len(its)
    if n < n_wanted:
        notes.append(f"snapshot covers {n} ok iteration(s), fewer than last_n={n_wanted}")
    results = []
    for g in goals:
        st_ = stats.get(g.kpi)
        v = st_.get(g.agg) if isinstance(st_, Mapping) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            why = "KPI missing from the snapshot" if st_ is None else f"no '{g.agg}' statistic in the snapshot"
            results.append(GoalResult(g.kpi, g.agg, g.op, g.hard, g.soft, None, INCONCLUSIVE, 0, why))
            continue
        st = goal_status(float(v), g)
        note = ""
        if n < n_wanted and st != FAIL:
            st, note = INCONCLUSIVE, f"only {n} of {n_wanted} iterations"
        results.append(GoalResult(g.kpi, g.agg, g.op, g.hard, g.soft, float(v), st, n, note))
    return GateResult(verdict=overall(r.status for r in results), goals=results, last_n=n_wanted,
                      window=(min(its), max(its)) if its else None, notes=notes,
                      iterations_evaluated=sorted(its), source="snapshot")


def _ranges(nums: list[int]) -> str:
    """[1,2,3,7] -> '1-3, 7'."""
    out, nums = [], sorted(nums)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)


# ---------------------------------------------------------------------------------------------
# non-inferiority against the baseline arm (same seeds and windows)

PNL_VS_BASELINE = "pnl_per_hour_vs_baseline"
RISK_ADJ_VS_BASELINE = "risk_adjusted_pnl_vs_baseline"


def _ni_status(lo: float, hi: float, margin: float) -> str:
    """PASS: the interval rules out worse-by-the-margin; FAIL: all of it is worse than the margin;
    INCONCLUSIVE (not a pass either) otherwise. FAILing on the estimate alone failed 25-31 % of A/A
    comparisons on independent markets (bench judge); on the whole interval, 0-1 %."""
    if lo >= -margin:
        return PASS
    if hi < -margin:
        return FAIL
    return INCONCLUSIVE


def baseline_goals(candidate: Sequence[Mapping[str, Any]], baseline: Sequence[Mapping[str, Any]] | None,
                   cfg: Mapping[str, Any]) -> list[GoalResult]:
    """Non-inferiority of the candidate's windows against the baseline's on the same (seed, window).

    PnL per hour: the paired Hodges–Lehmann interval of candidate − baseline at ``[compare]
    confidence`` must not reach below −margin (margin = ``pnl_per_hour_margin_rel`` × |baseline
    median|): PASS when it does not, FAIL when all of it lies below −margin, INCONCLUSIVE otherwise. Risk-adjusted
    PnL (mean/sd of the hourly PnL over the windows): the same rule on a paired bootstrap interval.
    Fewer pairs than ``[compare] min_pairs`` or no baseline: INCONCLUSIVE, never PASS.
    """
    sec, conf = cfg["confirm"], float(cfg["compare"]["confidence"])
    if baseline is None:
        why = "no baseline: run an auto-tuned soak (it runs one) or give --baseline"
        return [GoalResult(k, "interval", ">=", None, None, None, INCONCLUSIVE, 0, why)
                for k in (PNL_VS_BASELINE, RISK_ADJ_VS_BASELINE)]
    both = [(kpi_value(b, "pnl_per_hour"), kpi_value(c, "pnl_per_hour")) for b, c in pairs(baseline, candidate)]
    both = [(b, c) for b, c in both if b is not None and c is not None]
    n = len(both)
    need = int(cfg["compare"]["min_pairs"])
    if n < need:
        why = f"{n} paired window(s) with PnL in both arms, fewer than [compare] min_pairs={need}"
        return [GoalResult(k, "interval", ">=", None, None, None, INCONCLUSIVE, n, why)
                for k in (PNL_VS_BASELINE, RISK_ADJ_VS_BASELINE)]
    b = np.array([x[0] for x in both])
    c = np.array([x[1] for x in both])
    out = []
    d = c - b
    margin = float(sec["pnl_per_hour_margin_rel"]) * abs(float(np.median(b)))
    est, lo, hi = (0.0, 0.0, 0.0) if np.all(d == 0) else hodges_lehmann_paired(d, conf)
    out.append(GoalResult(PNL_VS_BASELINE, "hl_lower", ">=", round(-margin, 10), None, round(lo, 10),
                          _ni_status(lo, hi, margin), n,
                          f"candidate − baseline {est:+.4g}/h [{lo:.4g}, {hi:.4g}] at {conf:.0%}, "
                          f"margin {margin:.4g}/h"))

    def ratio(x: np.ndarray) -> float:
        sd = float(np.std(x, ddof=1))
        return float(np.mean(x)) / sd if sd > 0 else math.nan

    rb, rc = ratio(b), ratio(c)
    if not (math.isfinite(rb) and math.isfinite(rc)):
        out.append(GoalResult(RISK_ADJ_VS_BASELINE, "bootstrap_lower", ">=", None, None, None, INCONCLUSIVE, n,
                              "hourly PnL without spread in an arm: no risk-adjusted figure"))
        return out
    rng = np.random.default_rng(int(sec["bootstrap_seed"]))
    idx = rng.integers(0, n, size=(int(sec["bootstrap_resamples"]), n))
    bs, cs = b[idx], c[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = cs.mean(1) / cs.std(1, ddof=1) - bs.mean(1) / bs.std(1, ddof=1)
    diff = diff[np.isfinite(diff)]
    a = (1.0 - conf) / 2.0
    lo_r, hi_r = float(np.quantile(diff, a)), float(np.quantile(diff, 1.0 - a))
    margin_r = float(sec["risk_adjusted_margin_rel"]) * abs(rb)
    out.append(GoalResult(RISK_ADJ_VS_BASELINE, "bootstrap_lower", ">=", round(-margin_r, 10), None, round(lo_r, 10),
                          _ni_status(lo_r, hi_r, margin_r), n,
                          f"mean/sd of hourly PnL {rc:.4g} vs baseline {rb:.4g}; difference [{lo_r:.4g}, {hi_r:.4g}] "
                          f"at {conf:.0%}, margin {margin_r:.4g}"))
    return out


def confirm_records(run: Run) -> list[Mapping[str, Any]]:
    """The run's confirmation-phase records (all records when it has none)."""
    recs = [r for r in run.records if r.get("phase") == "confirm"]
    return recs or list(run.records)


def evaluate_run(run: Run, cfg: Mapping[str, Any], last_n: int | None = None, *,
                 baseline: Run | None = None) -> GateResult:
    """The gate of a loaded run (the one every command shows): the goals (on the confirmation phase
    when there is one) plus non-inferiority against ``baseline``, by default the run's own baseline
    arm (``RUN/baseline``) when it has one, on the same windows."""
    arm = Path(run.path) / BASELINE_DIR
    if baseline is None and (arm / MANIFEST).is_file():
        baseline = open_run(arm)
    res = evaluate(run.iterations, cfg, last_n)
    has_phase = any(r.get("phase") == "confirm" for r in run.records)
    if baseline is None and not has_phase:
        res.notes.append("no baseline: non-inferiority (PnL per hour, risk-adjusted PnL) not judged; "
                         "give --baseline RUN")
        return res
    extra = baseline_goals(confirm_records(run), confirm_records(baseline) if baseline is not None else None, cfg)
    res.goals.extend(extra)
    res.verdict = overall(g.status for g in res.goals)
    return res
