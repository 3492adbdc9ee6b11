"""Reading runs: ``open_run(path) -> Run``, the one loader every command and notebook uses.

Layouts: a soaklib run dir (``run.json`` + ``ITER_SUMMARY_<n>.json``) or ``runs/latest``; the
seed-toolkit layouts are handled by ``soaklib.seed`` (hooked in ``_open_seed`` below). Records are
validated against the shipped schema when read; iterations are ordered numerically with no cap,
and missing iteration numbers are reported in ``Run.gaps`` and ``Run.warnings``.

The frame builders (``iterations_frame``, ``params_frame``, ``decisions_frame``, ``blocks_frame``)
take a list of normalised records and are public so analysis code can reuse them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import _io
from .errors import RecordError
from .records import BLOCK_REASONS, SUMMARY_KPI_KEYS, derived_tuning_report, validate_record

MANIFEST = "run.json"
TUNING_REPORT = "TUNING_REPORT.json"
SNAPSHOT = Path("reports") / "analysis" / "POST_SOAK_SNAPSHOT.json"
_BLOCK_COLUMNS = BLOCK_REASONS + ("allowed", "other")
DECISION_COLUMNS = ("iteration", "param", "current", "proposed_delta", "verdict", "guard", "clamped_delta",
                    "new", "reason")


@dataclass
class Run:
    """An opened run. Frames are built on first access from ``records``."""

    path: Path
    layout: str                      # "soaklib" | "seed"
    dialect: str                     # "soaklib" | "soak" | "shadow" | "window"
    manifest: dict
    records: list[dict]
    gaps: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tuning_report: dict | None = None
    snapshot: dict | None = None

    @property
    def ok_iterations(self) -> list[dict]:
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


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return math.nan
    return float(v)


def iterations_frame(records: Iterable[Mapping[str, Any]]):
    """One row per record (index ``iteration``): numeric summary KPIs (NaN when failed or not
    measured), then ``status`` and ``kpi_verdict``."""
    import pandas as pd

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
        row = {k: (math.nan if failed else _num(s.get(k))) for k in cols}
        row["status"] = r.get("status", "ok")
        row["kpi_verdict"] = s.get("kpi_verdict")
        rows.append(row)
    df = pd.DataFrame(rows, columns=cols + ["status", "kpi_verdict"],
                      index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"))
    df[cols] = df[cols].astype(float)
    return df


def params_frame(records: Iterable[Mapping[str, Any]]):
    """Iteration x parameter (float), from each record's ``params``; failed iterations are NaN."""
    import pandas as pd

    recs = list(records)
    names: list[str] = []
    for r in recs:
        for k in (r.get("params") or {}):
            if k not in names:
                names.append(k)
    rows = [{k: _num((r.get("params") or {}).get(k)) for k in names} for r in recs]
    return pd.DataFrame(rows, columns=names, index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"),
                        dtype=float)


def decisions_frame(records: Iterable[Mapping[str, Any]]):
    """Long form: one row per tuning decision, columns ``DECISION_COLUMNS``."""
    import pandas as pd

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
    import pandas as pd

    recs = list(records)
    rows = []
    for r in recs:
        b = (r.get("summary") or {}).get("blocks")
        counts = b.get("counts", {}) if isinstance(b, Mapping) else None
        row = {k: (_num(counts.get(k, 0)) if counts is not None else math.nan) for k in _BLOCK_COLUMNS}
        row["total"] = _num(b.get("total")) if isinstance(b, Mapping) else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=list(_BLOCK_COLUMNS) + ["total"],
                        index=pd.Index([int(r["iteration"]) for r in recs], name="iteration"), dtype=float)


# ---------------------------------------------------------------------------------------------
# opening


def find_gaps(numbers: Iterable[int], upto: int = 0) -> list[int]:
    """Iteration numbers missing from 1..max(numbers, upto)."""
    have = set(numbers)
    top = max(list(have) + [upto, 0])
    return [i for i in range(1, top + 1) if i not in have]


def record_files(d: Path) -> dict[int, Path]:
    """``{n: path}`` of ITER_SUMMARY files in ``d`` (numeric order; padded names are accepted).

    File names are parsed by the one reader of them (``seed.iter_files``: 1 <= n <= the configured
    maximum, no two files for one iteration); a record that is a directory or a symlink leaving the
    run directory is refused.
    """
    from .config import defaults
    from .seed import iter_files

    root = d.resolve()
    found = iter_files(d, int(defaults()["seed"]["max_iteration_number"]))
    for f in found.values():
        if f.is_symlink() and not f.resolve().is_relative_to(root):
            raise RecordError(f"symlink points outside the run directory (to {f.resolve()}); refusing to read it",
                              path=f)
        if f.is_dir():
            raise RecordError("is a directory, expected an ITER_SUMMARY JSON file", path=f)
    return found


def read_records(d: Path) -> list[dict]:
    """Read and validate every ITER_SUMMARY of a soaklib run dir, in iteration order."""
    out = []
    for n, f in record_files(d).items():
        rec = validate_record(_io.read_json(f), f)
        if rec["iteration"] != n:
            raise RecordError(f"expected {n} (from the file name), got {rec['iteration']}", path=f, field="iteration")
        out.append(rec)
    return out


def _open_soaklib(p: Path) -> Run:
    manifest = _io.read_json(p / MANIFEST)
    if not isinstance(manifest, dict) or "run_id" not in manifest:
        raise RecordError("not a soaklib run manifest, expected an object with run_id", path=p / MANIFEST)
    records = read_records(p)
    warnings: list[str] = []
    done = manifest.get("iterations_done") if isinstance(manifest.get("iterations_done"), int) else 0
    planned = manifest.get("iterations_planned") if isinstance(manifest.get("iterations_planned"), int) else 0
    if done > max(planned, 0):
        raise RecordError(f"iterations_done {done} exceeds iterations_planned {planned}", path=p / MANIFEST,
                          field="iterations_done")
    gaps = find_gaps((r["iteration"] for r in records), done)
    if gaps:
        warnings.append(f"missing iterations: {', '.join(map(str, gaps))}")
    status = manifest.get("status")
    if status != "completed":
        warnings.append(f"run status is {status!r} ({len(records)} of {manifest.get('iterations_planned')} "
                        "planned iterations recorded)")
    failed = [r["iteration"] for r in records if r["status"] == "failed"]
    if failed:
        warnings.append(f"failed iterations: {', '.join(map(str, failed))}")
    tr = None
    if (p / TUNING_REPORT).is_file():
        try:
            tr = _io.read_json(p / TUNING_REPORT)
        except RecordError as exc:
            warnings.append(f"{exc}; recomputed from the records")
    if not isinstance(tr, dict) or len(tr.get("iterations") or []) != len(records):
        if tr is not None and isinstance(tr, dict):
            warnings.append("TUNING_REPORT.json does not match the records; recomputed from the records")
        tr = derived_tuning_report(records)
    snapshot = None
    if (p / SNAPSHOT).is_file():
        # a derived file: a broken one must not lock out `soak report`, which rewrites it
        try:
            snapshot = _io.read_json(p / SNAPSHOT)
        except RecordError as exc:
            warnings.append(f"{exc}; ignored (run `soak report` to rewrite it)")
        if snapshot is not None and not isinstance(snapshot, dict):
            warnings.append(f"{p / SNAPSHOT}: expected a JSON object; ignored (run `soak report` to rewrite it)")
            snapshot = None
    return Run(path=p, layout="soaklib", dialect="soaklib", manifest=manifest, records=records, gaps=gaps,
               warnings=warnings, tuning_report=tr, snapshot=snapshot)


def _open_seed(p: Path) -> Run | None:
    """Seed-toolkit layouts: delegated to ``soaklib.seed`` when present (another module's job).

    Contract assumed: ``soaklib.seed.open_seed_run(path) -> Run | None`` (None: not a seed layout).
    """
    try:
        from . import seed  # type: ignore[attr-defined]
    except ModuleNotFoundError as exc:
        if exc.name == "soaklib.seed":
            return None
        raise
    opener = getattr(seed, "open_seed_run", None)
    return opener(p) if opener is not None else None


def open_run(path: str | Path) -> Run:
    """Open a run: a soaklib run dir, ``runs/latest``, or a seed layout (via ``soaklib.seed``).

    Raises RecordError naming the path when it is not a run, or when a record is invalid.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise RecordError("no such run directory", path=p)
    if p.is_file():
        if p.name == MANIFEST:
            p = p.parent
        else:
            raise RecordError("expected a run directory, got a file", path=p)
    p = p.resolve()
    if (p / MANIFEST).is_file():
        return _open_soaklib(p)
    run = _open_seed(p)
    if run is not None:
        return run
    raise RecordError("not a run directory: no run.json and no recognised ITER_SUMMARY layout", path=p)
