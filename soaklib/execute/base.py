"""What a runner is and what it reports for one iteration (``RunnerOutput``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class RunnerOutput:
    """One iteration's outcome as the runner reports it."""

    ok: bool
    kpis: dict[str, Any] = field(default_factory=dict)       # summary KPIs, seed field names
    params: dict[str, Any] = field(default_factory=dict)     # what the strategy really ran with
    runtime_guards: dict[str, Any] = field(default_factory=dict)
    market: dict[str, Any] = field(default_factory=dict)
    events: int | None = None
    failure: dict[str, str] | None = None                    # {"reason", "stderr_tail"} when not ok
    params_missing: list[str] = field(default_factory=list)  # requested keys the runner did not report
    elapsed_s: float = 0.0                                    # wall time inside the runner
    stderr_tail: str = ""                                     # kept so a later validation failure can show it

    @classmethod
    def failed(cls, reason: str, stderr_tail: str = "", **kw: Any) -> RunnerOutput:
        return cls(ok=False, failure={"reason": reason, "stderr_tail": stderr_tail}, **kw)


class Runner(Protocol):
    name: str

    def run(self, params: Mapping[str, Any], *, iteration: int, seed: int, run_dir: Path,
            start_s: float) -> RunnerOutput: ...
