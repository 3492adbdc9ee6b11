"""The iteration record (``ITER_SUMMARY_<n>.json``): construction, schema validation, derived views.

The record shape is pinned in docs/ARCHITECTURE.md; the JSON Schema ships as
``soaklib/schemas/iter_summary.schema.json``. Everything here is pure (no file writes): the store
writes, the loader reads, both go through these functions.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from soaklib.core import io as _io
from soaklib.core import schema as _schema
from soaklib.core.errors import RecordError
from soaklib.core.goals import FAIL, INCONCLUSIVE, WARN, goal_status
from soaklib.core.kpis import BLOCK_KEYS, BLOCK_REASONS, SUMMARY_KPI_KEYS, maker_taker
from soaklib.core.numbers import finite
from soaklib.core.version import __version__

SCHEMA_VERSION = "1.0"


# -- the record's shape (docs/ARCHITECTURE.md; pinned by schemas/iter_summary.schema.json) ----------
# TypedDicts: plain dicts at run time (the JSON written is unchanged), a declared shape for readers.

class Decision(TypedDict):
    """One parameter's tuning decision after an iteration."""

    param: str
    current: float | None
    proposed_delta: float
    verdict: Literal["applied", "clamped", "blocked"]
    guard: str | None                 # one of GUARDS, None when applied as proposed
    clamped_delta: float
    new: float | None
    reason: str


class TuningGuards(TypedDict):
    oscillation_detected: bool
    velocity_violation: bool
    cooldown_active: bool
    frozen_params: list[str]
    freeze_ready: bool
    last_iteration: bool


class Tuning(TypedDict):
    """The record's ``tuning`` block: seed fields plus ``decisions``/``guards``/``freeze_ready``."""

    deltas: dict[str, float]
    proposed_deltas: dict[str, float]
    rationale: str
    applied: bool
    conditions: dict[str, float | None]
    skip_reason: str | dict[str, str]  # "" when applied, else {"reason": ..., "note": ...}
    changed_keys: list[str]
    state_hash: str | None
    old_hash: str | None
    signature: str
    decisions: list[Decision]
    guards: TuningGuards
    freeze_ready: bool


class Summary(TypedDict, total=False):
    """The record's ``summary``: every key of ``kpis.SUMMARY_KPI_KEYS`` (float or None), plus these
    (and any further KPI a runner reports)."""

    runtime_utc: str | None
    version: str | None
    blocks: dict[str, Any] | None      # {counts, total, ratios}
    fills: dict[str, float] | None
    maker_taker_source: str
    neg_edge_drivers: list[str]
    kpi_verdict: Literal["PASS", "WARN", "FAIL"] | None
    kpi_reasons: list[str]


class IterationRecord(TypedDict, total=False):
    """``ITER_SUMMARY_<n>.json`` (seed records read by ``store.legacy`` also carry ``source``)."""

    schema_version: str
    iteration: int
    status: Literal["ok", "failed"]
    failure: dict[str, str] | None
    seed: int | None
    runner: str
    scenario: str | None
    window: dict[str, float | None] | None
    summary: Summary
    params: dict[str, float] | None
    params_missing: list[str]
    params_out_of_bounds: list[str]     # runner-reported values outside the registry bounds (flagged, never sent back)
    market: dict[str, Any] | None
    runtime_guards: dict[str, Any] | None
    events: int | None
    tuning: Tuning | None
    wall: dict[str, Any] | None
    source: dict[str, Any]

# Fields that hold wall-clock values; comparisons of two runs ignore them (dotted paths).
WALL_CLOCK_FIELDS: tuple[str, ...] = ("summary.runtime_utc", "wall")

# guards between iterations, as a decision's ``guard`` names them
GUARDS: tuple[str, ...] = ("bounds", "velocity", "cooldown", "oscillation", "frozen", "steady_state",
                           "last_iteration")
# seed TUNING_REPORT guard flags, keyed by the decision guard that sets them
_GUARD_FLAGS = {"oscillation": "oscillation_detected", "velocity": "velocity_violation",
                "cooldown": "cooldown_active"}


def utc_now() -> str:
    """Current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def version_string() -> str:
    return f"soaklib {__version__}"


# ---------------------------------------------------------------------------------------------
# plain JSON values


def plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays to Python, tuples to lists, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if finite(obj) is not None else None
    tolist = getattr(obj, "tolist", None)  # numpy scalar or array
    if tolist is not None:
        return plain(tolist())
    if hasattr(obj, "item"):
        return plain(obj.item())
    return obj


# ---------------------------------------------------------------------------------------------
# summary


def _fill_blocks(s: dict) -> None:
    blocks = s.get("blocks")
    if not isinstance(blocks, Mapping) or not isinstance(blocks.get("counts"), Mapping):
        return
    counts = {k: int(blocks["counts"].get(k, 0) or 0) for k in BLOCK_KEYS}
    counts.update({k: int(v) for k, v in blocks["counts"].items() if k not in counts})
    total = int(blocks.get("total", sum(counts.values())))
    ratios = blocks.get("ratios")
    if not isinstance(ratios, Mapping):
        # seed: percent of all audited actions, one decimal
        ratios = {k: (round(100.0 * c / total, 1) if total else 0.0) for k, c in counts.items()}
    s["blocks"] = {"counts": counts, "total": total, "ratios": dict(ratios)}
    blocked = sum(counts[k] for k in BLOCK_REASONS)
    for k in BLOCK_REASONS:
        # seed definition: share of *blocked* actions blocked for this reason
        if finite(s.get(f"{k}_ratio")) is None:
            s[f"{k}_ratio"] = counts[k] / blocked if blocked else 0.0


def _fill_maker_taker(s: dict) -> None:
    """A runner's measured share stands; otherwise the one rule (``kpis.maker_taker``) derives it."""
    if finite(s.get("maker_taker_ratio")) is not None:
        s.setdefault("maker_taker_source", "existing")
        return
    fills = s.get("fills") if isinstance(s.get("fills"), Mapping) else {}
    s["maker_taker_ratio"], s["maker_taker_source"] = maker_taker(s, fills)


def neg_edge_drivers(s: Mapping[str, Any]) -> list[str]:
    """Seed rule: only when net < 0, the (up to) two largest negative components by magnitude."""
    net = finite(s.get("net_bps"))
    if net is None or net >= 0:
        return []
    comps = []
    for k in ("fees_eff_bps", "slippage_bps", "adverse_bps", "inventory_bps"):
        v = finite(s.get(k))
        if v is not None and v < 0:
            comps.append((abs(v), k))
    return [k for _, k in sorted(comps, key=lambda t: (-t[0], t[1]))[:2]]


_MISSES = {">=": "<", ">": "<=", "<=": ">", "<": ">="}


def kpi_verdict(summary: Mapping[str, Any], cfg: Mapping[str, Any] | None) -> tuple[str | None, list[str]]:
    """Per-iteration verdict against the configured goals: hard miss FAIL, soft miss WARN.

    A goal whose KPI is missing counts as a FAIL reason (never a silent pass). Returns
    ``(None, [])`` when there is no config to judge against.
    """
    goals = (cfg or {}).get("goals")
    if not goals:
        return None, []
    verdict, reasons = "PASS", []
    for name, g in goals.items():
        v = summary.get(name)
        st = goal_status(v, g)
        miss = _MISSES.get(g["op"], "misses")  # how the value misses the threshold
        if st == INCONCLUSIVE:
            verdict = "FAIL"
            reasons.append(f"{name} missing")
        elif st == FAIL:
            verdict = "FAIL"
            reasons.append(f"{name}={v:.4g} {miss} {g['hard']:g}")
        elif st == WARN:
            verdict = "WARN" if verdict == "PASS" else verdict
            reasons.append(f"{name}={v:.4g} {miss} soft {g['soft']:g}")
    return verdict, reasons


def build_summary(kpis: Mapping[str, Any] | None, *, cfg: Mapping[str, Any] | None = None,
                  runtime_utc: str | None = None, version: str | None = None,
                  failure: Mapping[str, Any] | None = None) -> Summary:
    """The record's ``summary`` from a runner's KPIs (seed field names), completed where derivable.

    Derived only from the KPIs themselves: block ratios from block counts, maker share from fills,
    ``neg_edge_drivers``, the per-iteration ``kpi_verdict``. A failed iteration gets null KPIs.
    """
    s: dict[str, Any] = {k: None for k in SUMMARY_KPI_KEYS}
    if failure is None and kpis:
        s.update(plain(kpis))
    s["runtime_utc"] = runtime_utc or utc_now()
    s["version"] = version or version_string()
    if failure is not None:
        s.update(maker_taker_source="none", blocks=None, fills=None, neg_edge_drivers=[],
                 kpi_verdict="FAIL", kpi_reasons=[f"iteration failed: {failure.get('reason', '')}"])
        return s
    _fill_blocks(s)
    _fill_maker_taker(s)
    if s.get("neg_edge_drivers") is None:
        s["neg_edge_drivers"] = neg_edge_drivers(s)
    if s.get("kpi_verdict") is None:
        s["kpi_verdict"], s["kpi_reasons"] = kpi_verdict(s, cfg)
    s.setdefault("kpi_reasons", [])
    return s


# ---------------------------------------------------------------------------------------------
# tuning block


def conditions(summary: Mapping[str, Any] | None) -> dict:
    """The seed's ``tuning.conditions``: the KPIs the tuning decision looked at."""
    s = summary or {}
    return {"net_bps": s.get("net_bps"), "risk_ratio": s.get("risk_ratio"),
            "adverse_p95": s.get("adverse_bps_p95"), "slippage_p95": s.get("slippage_bps_p95"),
            "order_age_p95_ms": s.get("order_age_p95_ms"), "min_interval_ratio": s.get("min_interval_ratio"),
            "concurrency_ratio": s.get("concurrency_ratio")}


def tuning_off_block(params: Mapping[str, Any], *, reason: str = "auto_tune_off", note: str | None = None,
                     summary: Mapping[str, Any] | None = None) -> Tuning:
    """A tuning block that changes nothing: applied false, empty deltas, state_hash == old_hash.

    ``reason`` is ``auto_tune_off`` without auto-tune; the loop also uses it with
    ``iteration_failed`` (the tuner skips failed iterations).
    """
    h = _io.state_hash(plain(dict(params)))
    skip: dict[str, Any] = {"reason": reason}
    if note:
        skip["note"] = note
    return {
        "deltas": {}, "proposed_deltas": {}, "rationale": "", "applied": False,
        "conditions": conditions(summary), "skip_reason": skip, "changed_keys": [],
        "state_hash": h, "old_hash": h, "signature": h, "decisions": [],
        "guards": {"oscillation_detected": False, "velocity_violation": False, "cooldown_active": False,
                   "frozen_params": [], "freeze_ready": False, "last_iteration": False},
        "freeze_ready": False,
    }


def next_params(current: Mapping[str, Any], tuning: Tuning | None) -> dict:
    """Parameters for the next iteration: ``current`` with each non-blocked decision's ``new``
    (or, for a tuner that reports no decisions, ``current + deltas``)."""
    out = dict(current)
    if not tuning:
        return out
    decided = set()
    for d in tuning.get("decisions") or []:
        decided.add(d["param"])
        if d.get("verdict") != "blocked" and d.get("new") is not None:
            out[d["param"]] = d["new"]
    for k, dv in (tuning.get("deltas") or {}).items():
        if k not in decided:
            out[k] = out.get(k, 0) + dv
    return out


def effective_params(requested: Mapping[str, Any], record: IterationRecord) -> dict:
    """What the tuner treats as the current values after iteration n: what the runner reported it
    ran with, falling back to what it was asked to run with for keys it did not report."""
    out = dict(requested)
    if record.get("status") == "ok":
        out.update(record.get("params") or {})
    return out


# ---------------------------------------------------------------------------------------------
# the record


def build_record(*, iteration: int, seed: int, runner: str, scenario: str, start_s: float, duration_s: float,
                 kpis: Mapping[str, Any] | None, params: Mapping[str, Any], market: Mapping[str, Any] | None,
                 runtime_guards: Mapping[str, Any] | None, events: int | None,
                 failure: Mapping[str, Any] | None = None, tuning: Mapping[str, Any] | None = None,
                 started_utc: str | None = None, finished_utc: str | None = None, elapsed_s: float = 0.0,
                 params_missing: Iterable[str] | None = None, cfg: Mapping[str, Any] | None = None,
                 version: str | None = None) -> IterationRecord:
    """Assemble one ITER_SUMMARY record (docs/ARCHITECTURE.md). ``tuning`` may be filled in later
    (the tuner decides from a history that includes this record); ``failure`` makes it failed."""
    finished = finished_utc or utc_now()
    rec: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "iteration": int(iteration),
        "status": "failed" if failure is not None else "ok",
        "failure": None if failure is None else {"reason": str(failure.get("reason") or "unknown"),
                                                 "stderr_tail": str(failure.get("stderr_tail") or "")},
        "seed": int(seed),
        "runner": str(runner),
        "scenario": str(scenario),
        "window": {"start_s": float(start_s), "duration_s": float(duration_s)},
        "summary": build_summary(kpis, cfg=cfg, runtime_utc=finished, version=version, failure=failure),
        "params": plain(dict(params or {})),
        "market": plain(dict(market or {})),
        "runtime_guards": plain(dict(runtime_guards or {})),
        "events": None if events is None else int(events),
        "tuning": plain(dict(tuning)) if tuning is not None else None,
        "wall": {"started_utc": started_utc or finished, "finished_utc": finished,
                 "elapsed_s": max(0.0, float(elapsed_s))},
    }
    if params_missing:
        rec["params_missing"] = sorted(params_missing)
    return rec


def strip_wall_clock(record: Mapping[str, Any]) -> dict:
    """A deep copy of ``record`` without the WALL_CLOCK_FIELDS (for run-to-run comparisons)."""
    out = copy.deepcopy(dict(record))
    for dotted in WALL_CLOCK_FIELDS:
        *parents, leaf = dotted.split(".")
        d: Any = out
        for p in parents:
            d = d.get(p) if isinstance(d, dict) else None
        if isinstance(d, dict):
            d.pop(leaf, None)
    return out


# ---------------------------------------------------------------------------------------------
# validation


def schema() -> dict:
    """The shipped JSON Schema of ITER_SUMMARY."""
    return _schema.load("iter_summary")


def validate_record(obj: Any, path: object = "<record>") -> Any:
    """Validate one record against the shipped schema; return it unchanged.

    Raises RecordError naming ``path`` and the dotted field, e.g.
    ``ITER_SUMMARY_3.json: field 'summary.risk_ratio': expected a number in [0, 1], got 1.7``.
    """
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    return _schema.check("iter_summary", obj, path=path, error=RecordError, what="the ITER_SUMMARY schema")


# ---------------------------------------------------------------------------------------------
# TUNING_REPORT (derived from the records only)


def tuning_entry(rec: IterationRecord) -> dict:
    """One seed-format TUNING_REPORT entry for a record."""
    t = rec.get("tuning") or {}
    s = rec.get("summary") or {}
    decisions = t.get("decisions") or []
    guards = t.get("guards") or {}
    flags = {flag: bool(guards.get(flag)) or any(d.get("guard") == g for d in decisions)
             for g, flag in _GUARD_FLAGS.items()}
    proposed = t.get("proposed_deltas") or {}
    return {
        "iteration": rec.get("iteration"), "status": rec.get("status", "ok"),
        "runtime_utc": s.get("runtime_utc"), "net_bps": s.get("net_bps"),
        "kpi_verdict": s.get("kpi_verdict"), "neg_edge_drivers": s.get("neg_edge_drivers") or [],
        "proposed_deltas": dict(proposed), "suggested_deltas": dict(proposed),
        "deltas": dict(t.get("deltas") or {}), "rationale": t.get("rationale", ""),
        "applied": bool(t.get("applied")),
        "signature": t.get("signature") or t.get("state_hash") or "na",
        "state_hash": t.get("state_hash"), "old_hash": t.get("old_hash"),
        "skip_reason": t.get("skip_reason", ""), "changed_keys": list(t.get("changed_keys") or []),
        "freeze_ready": bool(t.get("freeze_ready")),
        **flags,
    }


def tuning_report(records: Iterable[IterationRecord]) -> dict:
    """``TUNING_REPORT.json`` content (the one tuning summary): seed entries plus true counts.

    ``guard_counts`` counts decisions each guard touched (``cooldown_skips`` is its cooldown count);
    ``blocked_<guard>`` / ``clamped_<guard>`` split them by verdict, for every guard;
    ``skip_reasons`` counts the reasons of iterations that applied nothing;
    ``decisions``, ``changes`` (decisions that moved a value), ``proposed`` (iterations with a
    proposal), ``failed_skipped``, ``freeze_ready_iterations``, ``first_freeze_ready``. Each entry
    also carries its ``decisions`` and ``frozen_params``.
    """
    recs = sorted(records, key=lambda r: r.get("iteration") or 0)
    entries = [tuning_entry(r) for r in recs]
    guard_counts: dict[str, int] = {}
    skip_reasons: dict[str, int] = {}
    changed: dict[str, int] = {}
    for r in recs:
        t = r.get("tuning") or {}
        for d in t.get("decisions") or []:
            if d.get("guard"):
                guard_counts[d["guard"]] = guard_counts.get(d["guard"], 0) + 1
        for k in t.get("changed_keys") or []:
            changed[k] = changed.get(k, 0) + 1
        sr = t.get("skip_reason")
        if not t.get("applied") and isinstance(sr, Mapping):
            key = str(sr.get("reason") or "other")
            skip_reasons[key] = skip_reasons.get(key, 0) + 1
    summary = {
        "count": len(entries),
        "applied": sum(1 for e in entries if e["applied"]),
        # seed key order; blocked_<guard> is set from the per-verdict counts below
        "blocked_oscillation": 0,
        "blocked_velocity": 0,
        "cooldown_skips": guard_counts.get("cooldown", 0),
        "failed_iterations": sum(1 for e in entries if e["status"] == "failed"),
        "guard_counts": dict(sorted(guard_counts.items())),
        "skip_reasons": dict(sorted(skip_reasons.items())),
        "changed_keys": dict(sorted(changed.items())),
        "freeze_ready": bool(entries and entries[-1]["freeze_ready"]),
    }
    counts = {f"{v}_{g}": 0 for v in ("blocked", "clamped") for g in GUARDS}
    extra = {"proposed": 0, "decisions": 0, "changes": 0, "failed_skipped": 0,
             "freeze_ready_iterations": 0, "first_freeze_ready": None}
    for rec, entry in zip(recs, entries):
        t = rec.get("tuning") if isinstance(rec.get("tuning"), dict) else {}
        decs = t.get("decisions") or []
        entry["decisions"] = decs
        entry["frozen_params"] = list((t.get("guards") or {}).get("frozen_params") or [])
        extra["proposed"] += bool(t.get("proposed_deltas"))
        sr = t.get("skip_reason")
        if isinstance(sr, dict) and sr.get("reason") == "iteration_failed":
            extra["failed_skipped"] += 1
        if t.get("freeze_ready"):
            extra["freeze_ready_iterations"] += 1
            if extra["first_freeze_ready"] is None:
                extra["first_freeze_ready"] = rec.get("iteration")
        for d in decs:
            extra["decisions"] += 1
            extra["changes"] += d.get("new") != d.get("current")
            key = f"{d.get('verdict')}_{d.get('guard')}"
            if key in counts:
                counts[key] += 1
    summary.update(extra)
    summary.update(counts)
    return {"iterations": entries, "summary": summary}
