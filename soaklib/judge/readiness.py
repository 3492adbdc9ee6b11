"""Release readiness of a run: one state with its reasons, computed once and used by bundle and tag.

States, worst first: NOT READY (gate FAIL, failed-iteration share above ``[readiness]
max_failed_share``, or a delta verification below its threshold), INCONCLUSIVE (gate INCONCLUSIVE),
READY WITH WARNINGS (gate WARN, failed iterations inside the gate window, verification that could
not check anything), READY.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soaklib.core.goals import FAIL, INCONCLUSIVE, WARN
from soaklib.core.run import Run
from soaklib.judge.gate import GateResult
from soaklib.judge.verify import VerifyReport

READY = "READY"
READY_WITH_WARNINGS = "READY WITH WARNINGS"
NOT_READY = "NOT READY"
STATES = (READY, READY_WITH_WARNINGS, INCONCLUSIVE, NOT_READY)  # worst last
SHIPPABLE = (READY, READY_WITH_WARNINGS)


@dataclass
class Readiness:
    state: str
    reasons: list[str] = field(default_factory=list)

    @property
    def shippable(self) -> bool:
        return self.state in SHIPPABLE

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reasons": list(self.reasons)}


def readiness(gate_result: GateResult, verify_report: VerifyReport | None, run: Run, *,
              cfg: Mapping[str, Any]) -> Readiness:
    """Readiness of ``run`` from its gate result and (optionally) its delta verification."""
    limit = float(cfg["readiness"]["max_failed_share"])
    worst: dict[str, list[str]] = {s: [] for s in STATES}

    v = gate_result.verdict
    if v == FAIL:
        failing = [g.kpi for g in gate_result.goals if g.status == FAIL]
        worst[NOT_READY].append(f"gate FAIL ({', '.join(failing) or 'see GATE.json'})")
    elif v == INCONCLUSIVE:
        missing = [g.kpi for g in gate_result.goals if g.status == INCONCLUSIVE]
        worst[INCONCLUSIVE].append(f"gate INCONCLUSIVE ({', '.join(missing) or 'see GATE.json'})")
    elif v == WARN:
        soft = [g.kpi for g in gate_result.goals if g.status == WARN]
        worst[READY_WITH_WARNINGS].append(f"gate WARN: soft goal missed ({', '.join(soft)})")

    total = len(run.records)
    failed = [int(r["iteration"]) for r in run.records if r.get("status") != "ok"]
    if total and len(failed) / total > limit:
        worst[NOT_READY].append(f"{len(failed)} of {total} iterations failed "
                                f"(more than readiness.max_failed_share {limit:g})")
    elif gate_result.window is not None:
        lo, hi = gate_result.window
        inside = [i for i in failed if lo <= i <= hi]
        if inside:
            worst[READY_WITH_WARNINGS].append(f"{len(inside)} failed iteration(s) inside the gate window "
                                              f"{lo}-{hi}: {', '.join(map(str, inside))}")

    if verify_report is not None:
        if verify_report.verdict == INCONCLUSIVE:
            worst[READY_WITH_WARNINGS].append("delta verification inconclusive: no iteration pair could be checked")
        elif not verify_report.passed:
            worst[NOT_READY].append(f"delta verification failed: full_apply_ratio {verify_report.full_apply_ratio:.3f} "
                                    f"< threshold {verify_report.threshold:.3f} or unexpected changes "
                                    f"({verify_report.counts.get('unexpected_changes', 0)})")

    for state in reversed(STATES):
        if worst[state]:
            # the reasons of every state, worst first, so a NOT READY still lists its warnings
            return Readiness(state, [r for s in reversed(STATES) for r in worst[s]])
    return Readiness(READY, [])
