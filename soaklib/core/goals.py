"""Goals: the one home for parsing, checking and combining KPI goals (``[goals.<kpi>]`` tables).

Used by the config (validation), records (``kpi_verdict``), the tuner and guards (steady state),
the gate and calibration. Statuses: PASS, WARN (meets ``hard``, misses ``soft``), FAIL (misses
``hard``), INCONCLUSIVE (missing value). Overall: FAIL > INCONCLUSIVE > WARN > PASS.
"""
from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.core.schema import check as check_schema

PASS, WARN, FAIL, INCONCLUSIVE = "PASS", "WARN", "FAIL", "INCONCLUSIVE"
VERDICTS = (PASS, WARN, INCONCLUSIVE, FAIL)  # worst last
AGGS = ("mean", "median", "min", "max", "last")
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
DEFAULT_LAST_N = 8


@dataclass(frozen=True)
class Goal:
    """One configured KPI goal: ``agg(kpi over window) op hard`` (and ``op soft`` for no WARN)."""

    kpi: str
    agg: str
    op: str
    hard: float
    soft: float | None = None

    def meets(self, value: float, threshold: float) -> bool:
        return bool(OPS[self.op](value, threshold))

    def to_dict(self) -> dict[str, Any]:
        return {"kpi": self.kpi, "agg": self.agg, "op": self.op, "hard": self.hard, "soft": self.soft}


def goals_from_config(cfg: Mapping[str, Any], *, src: object = "<config>") -> list[Goal]:
    """Parse and check ``cfg["goals"]`` (the config schema's goal tables, then soft vs hard);
    ConfigError naming the field on a bad goal."""
    table = cfg.get("goals")
    if not isinstance(table, Mapping) or not table:
        raise ConfigError("no goals configured, expected [goals.<kpi>] tables", path=src, field="goals")
    check_schema("config", table, path=src, error=ConfigError, section="goals", finite=True)
    goals = []
    for kpi, spec in table.items():
        op, hard = spec["op"], float(spec["hard"])
        soft = float(spec["soft"]) if spec.get("soft") is not None else None
        # soft must be at least as strict as hard, or WARN could never happen / FAIL would pass soft
        if soft is not None and ((op in (">=", ">") and soft < hard) or (op in ("<=", "<") and soft > hard)):
            raise ConfigError(f"soft {soft} is looser than hard {hard} for op {op}", path=src, field=f"goals.{kpi}.soft")
        goals.append(Goal(kpi=str(kpi), agg=spec["agg"], op=op, hard=hard, soft=soft))
    return goals


def goal_status(value: Any, goal: Goal | Mapping[str, Any]) -> str:
    """The one per-value goal check: PASS, WARN (meets ``hard``, misses ``soft``), FAIL (misses
    ``hard``), or INCONCLUSIVE when ``value`` is missing (None, NaN/inf, not a number).

    ``goal``: a :class:`Goal` or a ``[goals.<kpi>]`` config table (``op``, ``hard``, optional ``soft``).
    Used by :func:`evaluate` on the window aggregate and, on one iteration's value, by the record's
    ``kpi_verdict``, the tuner's steady-state check and the simulator calibration sweep.
    """
    if isinstance(goal, Goal):
        op, hard, soft = goal.op, goal.hard, goal.soft
    else:
        op, hard, soft = goal.get("op"), goal.get("hard"), goal.get("soft")
    cmp = OPS.get(op)  # type: ignore[arg-type]
    if cmp is None:
        raise ConfigError(f"op {op!r}, expected one of {', '.join(OPS)}", field="goals")
    if finite(value) is None:
        return INCONCLUSIVE
    if not cmp(value, hard):
        return FAIL
    if soft is not None and not cmp(value, soft):
        return WARN
    return PASS

def goal_met(value: Any, goal: Goal | Mapping[str, Any]) -> bool:
    """True when ``value`` meets the goal's HARD threshold (PASS or WARN); a missing value never does."""
    return goal_status(value, goal) in (PASS, WARN)

def overall(statuses) -> str:
    """FAIL if any FAIL, else INCONCLUSIVE if any, else WARN if any, else PASS (no goals: INCONCLUSIVE)."""
    s = list(statuses)
    if not s:
        return INCONCLUSIVE
    for v in (FAIL, INCONCLUSIVE, WARN):
        if v in s:
            return v
    return PASS

def aggregate(values, agg: str) -> float:
    arr = np.asarray(values, dtype=float)
    if agg == "mean":
        return float(arr.mean())
    if agg == "median":
        return float(np.median(arr))
    if agg == "min":
        return float(arr.min())
    if agg == "max":
        return float(arr.max())
    return float(arr[-1])  # last


def goals_pass(summary: Mapping[str, Any], cfg: Mapping[str, Any]) -> bool:
    """True when every goal of cfg["goals"] passes its HARD threshold on this one iteration's values
    (``gate.goal_met``: a missing KPI never passes)."""
    return all(goal_met(summary.get(name), g) for name, g in cfg.get("goals", {}).items())


def failing_goals(summary: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """Goals of cfg["goals"] this one iteration misses (hard threshold, or KPI missing), in config order."""
    return [name for name, g in cfg.get("goals", {}).items() if not goal_met(summary.get(name), g)]
