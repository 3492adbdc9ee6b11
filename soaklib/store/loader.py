"""Reading runs: ``open_run(path) -> Run``, the one loader every command and notebook uses.

Layouts: a soaklib run dir (``run.json`` + ``ITER_SUMMARY_<n>.json``) or ``runs/latest``; the
seed-toolkit layouts are handled by ``soaklib.store.legacy`` (``legacy.open_seed_run``). Records are
validated against the shipped schema when read; iterations are ordered numerically with no cap,
and missing iteration numbers are reported in ``Run.gaps`` and ``Run.warnings``.

The frame builders (``iterations_frame``, ``params_frame``, ``decisions_frame``, ``blocks_frame``)
take a list of normalised records and are public so analysis code can reuse them.
"""
from __future__ import annotations

from pathlib import Path

from soaklib.core import io as _io
from soaklib.core.config import defaults
from soaklib.core.errors import RecordError
from soaklib.core.records import tuning_report, validate_record
from soaklib.core.run import Run
from soaklib.store import legacy
from soaklib.store.rundir import COMPARE, MANIFEST, REPORTS_DIR, SNAPSHOT, TUNING_REPORT

_SNAPSHOT = REPORTS_DIR / SNAPSHOT
# ---------------------------------------------------------------------------------------------
# opening


def record_files(d: Path) -> dict[int, Path]:
    """``{n: path}`` of ITER_SUMMARY files in ``d`` (numeric order; padded names are accepted).

    File names are parsed by the one reader of them (``seed.iter_files``: 1 <= n <= the configured
    maximum, no two files for one iteration); a record that is a directory or a symlink leaving the
    run directory is refused.
    """
    root = d.resolve()
    found = legacy.iter_files(d, int(defaults()["seed"]["max_iteration_number"]))
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
    gaps = legacy.gaps_of([r["iteration"] for r in records], done)
    if gaps:
        warnings.append(f"missing iterations: {', '.join(map(str, gaps))}")
    status = manifest.get("status")
    if status != "completed":
        warnings.append(f"run status is {status!r} ({len(records)} of {manifest.get('iterations_planned')} "
                        "planned iterations recorded)")
    failed = [r["iteration"] for r in records if r["status"] == "failed"]
    if failed:
        warnings.append(f"failed iterations: {', '.join(map(str, failed))}")
    tr = _read_derived(p / TUNING_REPORT, warnings, "recomputed from the records")
    if tr is not None and len(tr.get("iterations") or []) != len(records):
        warnings.append(f"{TUNING_REPORT} does not match the records; recomputed from the records")
        tr = None
    if tr is None:
        tr = tuning_report(records)
    snapshot = _read_derived(p / _SNAPSHOT, warnings, "ignored (run `soak report` to rewrite it)")
    comparison = _read_derived(p / REPORTS_DIR / f"{COMPARE}.json", warnings,
                               "ignored (run `soak compare` to rewrite it)")
    return Run(path=p, layout="soaklib", dialect="soaklib", manifest=manifest, records=records, gaps=gaps,
               warnings=warnings, tuning_report=tr, snapshot=snapshot, comparison=comparison,
               manifest_path=p / MANIFEST)


def _read_derived(f: Path, warnings: list[str], remedy: str) -> dict | None:
    """A derived JSON object (TUNING_REPORT, snapshot), or None: a missing one silently, a broken one
    with a warning saying what happens instead -- it must not lock out the commands that rewrite it."""
    if not f.is_file():
        return None
    try:
        obj = _io.read_json(f)
    except RecordError as exc:
        warnings.append(f"{exc}; {remedy}")
        return None
    if not isinstance(obj, dict):
        warnings.append(f"{f}: expected a JSON object; {remedy}")
        return None
    return obj


def open_run(path: str | Path) -> Run:
    """Open a run: a soaklib run dir, ``runs/latest``, or a seed layout (via ``soaklib.store.legacy``).

    The one loader every command and notebook uses. Raises RecordError naming the path when it is not
    a run, when a record is invalid, or when the file system refuses a read.
    """
    try:
        return _open(Path(path).expanduser())
    except OSError as exc:
        raise RecordError(f"cannot read run: {exc.strerror or exc}", path=path) from None


def _open(p: Path) -> Run:
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
    run = legacy.open_seed_run(p)
    if run is not None:
        return run
    raise RecordError("not a run directory: no run.json and no recognised ITER_SUMMARY layout", path=p)
