"""The ``Run``: what every reader returns (soaklib run dirs and the earlier toolkit's layouts alike),
and the frames built from its records (``iterations``, ``params``, ``decisions``, ``blocks``).

The frame builders take a list of normalised records and are public so analysis code can reuse them.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from soaklib.core.kpis import BLOCK_KEYS, SUMMARY_KPI_KEYS
from soaklib.core.numbers import finite_or
from soaklib.core.records import IterationRecord

DECISION_COLUMNS = ("iteration", "param", "current", "proposed_delta", "verdict", "guard", "clamped_delta",
                    "new", "reason")


@dataclass
class Run:
    """An opened run. Frames are built on first access from ``records``."""

    path: Path
    layout: str                      # "soaklib" | "seed"
    dialect: str                     # "soaklib" | "soak" | "shadow" | "window"
    manifest: dict
    records: list[IterationRecord]
    gaps: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tuning_report: dict | None = None
    snapshot: dict | None = None
    comparison: dict | None = None         # COMPARE.json (``soak compare``) against a baseline, when made
    edge_report: dict | None = None        # the earlier toolkit's EDGE_REPORT (seed layouts only)
    runtime_overrides: dict | None = None  # its runtime_overrides.json as registry values (seed layouts only)
    manifest_path: Path | None = None      # the file ``manifest`` was read from (None when synthesised)

    @property
    def ok_iterations(self) -> list[IterationRecord]:
        """The records with status ok."""
        return [r for r in self.records if r.get("status", "ok") == "ok"]

    @cached_property
    def iterations(self):
        """DataFrame indexed by iteration: one column per numeric summary KPI, plus status, kpi_verdict."""
        return iterations_frame(self.records)

    @cached_property
    def params(self):
        """DataFrame iteration x parameter: what each iteration ran with (runner-reported)."""
        return params_frame(self.records)

    @cached_property
    def decisions(self):
        """Long DataFrame: one row per (iteration, parameter) tuning decision."""
        return decisions_frame(self.records)

    @cached_property
    def blocks(self):
        """DataFrame iteration x block reason counts (plus total)."""
        return blocks_frame(self.records)

    def __repr__(self) -> str:
        return (f"Run(path={str(self.path)!r}, layout={self.layout!r}, records={len(self.records)}, "
                f"gaps={self.gaps}, status={self.manifest.get('status')!r})")


# ---------------------------------------------------------------------------------------------
# frames


def iterations_frame(records: Iterable[Mapping[str, Any]]):
    """One row per record (index ``iteration``): numeric summary KPIs (NaN when failed or not
    measured), then ``status``, ``kpi_verdict`` and (runs with a confirmation phase) ``phase``."""
    recs = list(records)
    extra: set[str] = set()
    for r in recs:
        for k, v in (r.get("summary") or {}).items():
            if k not in SUMMARY_KPI_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                extra.add(k)
    cols = list(SUMMARY_KPI_KEYS) + sorted(extra)
    rows = []
    for r in recs:
        s = r.get("summary") or {}
        failed = r.get("status") == "failed"
        row = {k: (math.nan if failed else finite_or(s.get(k), math.nan)) for k in cols}
        row["status"] = r.get("status", "ok")
        row["kpi_verdict"] = s.get("kpi_verdict")
        row["phase"] = r.get("phase")
        rows.append(row)
    # a run with a confirmation phase has a phase column (tune / confirm); other runs' frames are unchanged
    tail = ["status", "kpi_verdict"] + (["phase"] if any(r.get("phase") for r in recs) else [])
    df = pd.DataFrame(rows, columns=cols + tail,
                      index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"))
    df[cols] = df[cols].astype(float)
    return df


def params_frame(records: Iterable[Mapping[str, Any]]):
    """Iteration x parameter (float), from each record's ``params``; failed iterations are NaN."""
    recs = list(records)
    names: list[str] = []
    for r in recs:
        for k in (r.get("params") or {}):
            if k not in names:
                names.append(k)
    rows = [{k: finite_or((r.get("params") or {}).get(k), math.nan) for k in names} for r in recs]
    return pd.DataFrame(rows, columns=names, index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"),
                        dtype=float)


def decisions_frame(records: Iterable[Mapping[str, Any]]):
    """Long form: one row per tuning decision, columns ``DECISION_COLUMNS``."""
    rows = []
    for r in records:
        for d in ((r.get("tuning") or {}).get("decisions") or []):
            row = {c: d.get(c) for c in DECISION_COLUMNS}
            row["iteration"] = int(r["iteration"])
            rows.append(row)
    df = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
    for c in ("current", "proposed_delta", "clamped_delta", "new"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["iteration"] = df["iteration"].astype("int64")
    return df


def blocks_frame(records: Iterable[Mapping[str, Any]]):
    """Iteration x block reason counts (``min_interval``, ``concurrency``, ``risk``, ``throttle``,
    ``allowed``, ``other``, ``total``); NaN where a record has no block counts."""
    recs = list(records)
    rows = []
    for r in recs:
        b = (r.get("summary") or {}).get("blocks")
        counts = b.get("counts", {}) if isinstance(b, Mapping) else None
        row = {k: (finite_or(counts.get(k, 0), math.nan) if counts is not None else math.nan) for k in BLOCK_KEYS}
        row["total"] = finite_or(b.get("total"), math.nan) if isinstance(b, Mapping) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(BLOCK_KEYS) + ["total"],
                        index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"), dtype=float)
