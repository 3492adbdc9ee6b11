"""What one simulated window returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SimResult:
    kpis: dict[str, Any]            # summary KPIs, seed names (see docs/ARCHITECTURE.md)
    params: dict[str, float | int]  # effective flat parameters the strategy ran with
    runtime_guards: dict[str, Any]  # in-run guard activity
    market: dict[str, Any]          # regime path, realized vol, faults injected
    events: int                     # market events processed
    extra: dict[str, Any] = field(default_factory=dict)
