"""The KPI gate (DESIGN §9): goals from config, evaluated over the last N ok iterations.

Statuses per goal: PASS, WARN (meets ``hard``, misses ``soft``), FAIL (misses ``hard``),
INCONCLUSIVE (KPI missing or all-NaN, or fewer than ``last_n`` ok iterations). Missing data is never
a pass. A window shorter than ``last_n`` is still evaluated on what exists and says so: if that
partial data already misses ``hard`` the goal FAILs (a bad run is bad however short), otherwise it is
INCONCLUSIVE. Overall verdict: FAIL > INCONCLUSIVE > WARN > PASS.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
from soaklib.core.text import fmt_num


@dataclass
class GoalResult:
    kpi: str
    agg: str
    op: str
    hard: float
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
