"""Readers for the seed toolkit's artifacts (reference/seed-toolkit.md §1.7–§1.10, §2.1, §6.6).

Layouts: ``artifacts/soak/latest/``, the CI-download nesting ``<dir>/soak/latest/``, ``<dir>/latest/``,
paths with spaces. ITER_SUMMARY dialects: ``soak`` (iter_watcher: ``iteration``/``summary``/``tuning``),
``shadow`` (run_shadow: ``timestamp``/``exchange``/``symbols``/``mode``/``summary``), ``window``
(analyzer V2: flat ``{symbol, net_bps|edge_bps, ...}`` or ``{summary: {symbol, ...}}``, zero-padded
names). TUNING_REPORT as an object or a bare list, snapshots with ``*_last8`` or ``*_last_n`` keys,
EDGE_REPORT files. Everything is normalised into soaklib's record shape (docs/ARCHITECTURE.md) so
the loader, gate, reports and metrics work unchanged.

Reading is strict about what it cannot interpret (numbers as strings, ratios out of [0, 1],
iteration < 1, duplicates, symlinks leaving the folder: RecordError naming the file and field) and
honest about what is missing: absent KPIs stay None, gaps are listed, nothing is invented (no
seed-style ``order_age_p95_ms = 300`` or ``maker_taker_ratio = 0.6`` defaults).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.edge import check_field, parse_fills, parse_number, summary_from_edge
from soaklib.core.errors import RecordError
from soaklib.core.kpis import (
    NUMERIC_FIELDS,
    RATIO_FIELDS,
    SUMMARY_KPI_KEYS,
    maker_taker,
)
from soaklib.core.params import registry
from soaklib.core.records import tuning_report as tuning_report_of
from soaklib.core.records import validate_record
from soaklib.core.run import Run
from soaklib.store.rundir import (
    ARTIFACTS,
    EDGE_REPORT,
    LATEST,
    MANIFEST,
    OVERRIDES,
    RECORD_GLOB,
    RECORD_RE,
    REPORTS_DIR,
    SEED_PARENT,
    SEED_RECORD_DIRS,
    SNAPSHOT,
    TUNING_REPORT,
    record_name,
)

DIALECTS = ("soak", "shadow", "window", "soaklib")

_SNAPSHOT_ALIASES = {"kpi_last8": "kpi_last_n", "pass_count_last8": "pass_count_last_n",
                     "guards_last8": "guards_last_n"}
_SHADOW_KEYS = ("timestamp", "duration_seconds", "exchange", "symbols", "mode")
_WINDOW_META = ("symbol", "commit", "profile", "source", "notes")


# ---------------------------------------------------------------------------------------------
# small validators


def _inside(root: Path, p: Path) -> None:
    """Refuse a file that is (or resolves through) a symlink leaving the run folder."""
    if p.parent == root and not p.is_symlink():
        return  # a plain file directly in the folder: nothing to resolve (fast path for big runs)
    try:
        target = p.resolve()
    except OSError as exc:
        raise RecordError(f"cannot resolve: {exc}", path=p) from None
    base = root.resolve()
    if target != base and base not in target.parents:
        raise RecordError(f"is a symlink pointing outside the run folder (to {target})", path=p)


def read_inside(root: Path, p: Path) -> Any:
    """``_io.read_json`` of a file that must stay within ``root``."""
    _inside(root, p)
    return _io.read_json(p)


def read_edge_report(path: str | Path, *, root: Path | None = None) -> dict:
    """An EDGE_REPORT file: ``{summary, symbols, runtime, path}`` with the summary normalised."""
    p = Path(path)
    data = read_inside(root, p) if root is not None else _io.read_json(p)
    summary = summary_from_edge(data, path=p)
    rt = data.get("runtime") if isinstance(data.get("runtime"), Mapping) else {}
    symbols = data.get("symbols") if isinstance(data.get("symbols"), Mapping) else {}
    return {"path": str(p), "summary": summary, "symbols": dict(symbols),
            "runtime": {"utc": rt.get("utc"), "version": rt.get("version")}}


# ---------------------------------------------------------------------------------------------
# ITER_SUMMARY dialects


def detect_dialect(obj: Any, path: object) -> str:
    """``soak``, ``shadow``, ``window`` or ``soaklib`` (our own record in a seed-like folder)."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    if "schema_version" in obj and "status" in obj and "runner" in obj:
        return "soaklib"
    if any(k in obj for k in _SHADOW_KEYS):
        return "shadow"
    inner = obj.get("summary")
    if "symbol" in obj or "edge_bps" in obj or (isinstance(inner, Mapping) and "symbol" in inner):
        return "window"
    if isinstance(inner, Mapping):
        return "soak"
    if "net_bps" in obj:
        return "window"
    raise RecordError("not an ITER_SUMMARY of any known dialect (expected 'summary', or the analyzer's "
                      "flat 'symbol'/'net_bps' keys)", path=path)


def _summary_common(src: Mapping[str, Any], *, path: object, prefix: str) -> dict:
    s: dict[str, Any] = {k: None for k in SUMMARY_KPI_KEYS}
    for k, v in src.items():
        if k in NUMERIC_FIELDS:
            s[k] = check_field(src, k, path=path, prefix=prefix)
        elif k not in s:
            s[k] = v
    return s


def _soak_summary(obj: Mapping[str, Any], *, path: object) -> dict:
    src = obj.get("summary")
    if not isinstance(src, Mapping):
        raise RecordError(f"expected an object, got {type(src).__name__}", path=path, field="summary")
    s = _summary_common(src, path=path, prefix="summary.")
    s["fills"] = parse_fills(src.get("fills"), path=path, field="summary.fills")
    blocks = src.get("blocks")
    if blocks is not None and not isinstance(blocks, Mapping):
        raise RecordError(f"expected an object, got {type(blocks).__name__}", path=path, field="summary.blocks")
    if isinstance(blocks, Mapping):
        counts = blocks.get("counts") or {}
        if not isinstance(counts, Mapping):
            raise RecordError("expected an object of counts", path=path, field="summary.blocks.counts")
        for k, v in counts.items():
            parse_number(v, path=path, field=f"summary.blocks.counts.{k}", nonneg=True)
        for k, v in (blocks.get("ratios") or {}).items():
            r = parse_number(v, path=path, field=f"summary.blocks.ratios.{k}", nonneg=True)
            if r is not None and r > 100:
                raise RecordError(f"percentage {r} out of range, expected 0..100", path=path,
                                  field=f"summary.blocks.ratios.{k}")
    s["blocks"] = dict(blocks) if isinstance(blocks, Mapping) else None
    s["maker_taker_ratio"], s["maker_taker_source"] = maker_taker(s, s["fills"])
    for key in ("runtime_utc", "version"):
        v = src.get(key)
        s[key] = v if isinstance(v, str) else None
    return s


def _shadow_summary(obj: Mapping[str, Any], *, path: object) -> dict:
    src = obj.get("summary")
    if not isinstance(src, Mapping):
        raise RecordError(f"expected an object, got {type(src).__name__}", path=path, field="summary")
    s = _summary_common({k: v for k, v in src.items() if k not in ("maker_count", "taker_count")},
                        path=path, prefix="summary.")
    fills = {k: src[k] for k in ("maker_count", "taker_count") if k in src}
    s["fills"] = parse_fills(fills, path=path, field="summary") if fills else None
    s["maker_taker_ratio"], s["maker_taker_source"] = maker_taker(s, s["fills"])
    ts = obj.get("timestamp")
    s["runtime_utc"] = ts if isinstance(ts, str) else None
    s["version"] = None
    return s


def _window_summary(obj: Mapping[str, Any], *, path: object) -> tuple[dict, dict]:
    inner = obj.get("summary")
    src = inner if isinstance(inner, Mapping) and "symbol" in inner else obj
    prefix = "summary." if src is not obj else ""
    flat = {k: v for k, v in src.items() if k not in _WINDOW_META and k != "edge_bps"}
    s = _summary_common(flat, path=path, prefix=prefix)
    if s.get("net_bps") is None and src.get("edge_bps") is not None:
        s["net_bps"] = parse_number(src["edge_bps"], path=path, field=prefix + "edge_bps")
    s["fills"] = parse_fills(src.get("fills"), path=path, field=prefix + "fills")
    s["maker_taker_ratio"], s["maker_taker_source"] = maker_taker(s, s["fills"])
    s.setdefault("runtime_utc", None)
    s.setdefault("version", None)
    if not isinstance(s.get("runtime_utc"), str):
        s["runtime_utc"] = None
    meta = {k: src.get(k) for k in _WINDOW_META if src.get(k) is not None}
    return s, meta


_SKIP_FLAG_GUARD = (("oscillation", "oscillation"), ("velocity", "velocity"), ("cooldown", "cooldown"),
                    ("freeze", "frozen"))


def _deltas(v: Any, *, path: object, field: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise RecordError(f"expected an object of deltas, got {type(v).__name__}", path=path, field=field)
    out = {}
    for k, x in v.items():
        out[str(k)] = parse_number(x, path=path, field=f"{field}.{k}")
        if out[str(k)] is None:
            raise RecordError("expected a number, got null", path=path, field=f"{field}.{k}")
    return out


def _tuning(obj: Mapping[str, Any], summary: Mapping[str, Any], *, path: object) -> dict:
    """The record's tuning block from a seed ``tuning`` (or a neutral one when the dialect has none).

    Per-parameter decisions are reconstructed from what the seed recorded: proposed delta, applied
    flag and skip_reason guard flags; ``current``/``new`` are unknown (None) because seed records do
    not carry the parameters an iteration ran with."""
    t = obj.get("tuning")
    if t is None:  # shadow/window files carry no tuning at all: say so instead of an empty reason
        t = {"skip_reason": {"reason": "not_in_source", "note": "this ITER_SUMMARY has no tuning block"}}
    if not isinstance(t, Mapping):
        raise RecordError(f"expected an object, got {type(t).__name__}", path=path, field="tuning")
    deltas = _deltas(t.get("deltas"), path=path, field="tuning.deltas")
    proposed = _deltas(t.get("proposed_deltas"), path=path, field="tuning.proposed_deltas") if "proposed_deltas" in t \
        else dict(deltas)
    applied = t.get("applied", False)
    if not isinstance(applied, bool):
        raise RecordError(f"expected true or false, got {applied!r}", path=path, field="tuning.applied")
    skip = t.get("skip_reason", "" if applied else {})
    if not isinstance(skip, (str, Mapping)):
        raise RecordError("expected \"\" or an object", path=path, field="tuning.skip_reason")
    if isinstance(skip, str) and skip:
        skip = {"reason": skip}
    guard = None
    if isinstance(skip, Mapping):
        for flag, g in _SKIP_FLAG_GUARD:
            if skip.get(flag) is True:
                guard = g
                break
    guard_flags = {"oscillation_detected": bool(t.get("oscillation_detected") or guard == "oscillation"),
                   "velocity_violation": bool(t.get("velocity_violation") or guard == "velocity"),
                   "cooldown_active": bool(t.get("cooldown_active") or guard == "cooldown")}
    freeze_ready = bool(t.get("freeze_ready") or t.get("freeze_triggered") or summary.get("freeze_ready"))
    rationale = t.get("rationale") if isinstance(t.get("rationale"), str) else ""
    decisions = []
    for k, dv in sorted(proposed.items()):
        done = applied and k in deltas
        decisions.append({"param": k, "current": None, "proposed_delta": dv,
                          "verdict": "applied" if done else "blocked",
                          "guard": None if done else guard,
                          "clamped_delta": deltas.get(k, dv) if done else 0, "new": None,
                          "reason": rationale})
    changed = t.get("changed_keys")
    changed = [str(x) for x in changed] if isinstance(changed, list) else (sorted(deltas) if applied else [])
    hashes = {}
    for h in ("state_hash", "old_hash"):
        v = t.get(h)
        hashes[h] = v if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) else None
    signature = t.get("signature") if isinstance(t.get("signature"), str) and t.get("signature") else None
    cond = t.get("conditions") if isinstance(t.get("conditions"), Mapping) else {}
    return {
        "deltas": deltas, "proposed_deltas": proposed, "rationale": rationale, "applied": applied,
        "conditions": dict(cond), "skip_reason": skip if isinstance(skip, str) else dict(skip),
        "changed_keys": changed, **hashes,
        "signature": signature or hashes["state_hash"] or "na",
        "decisions": decisions,
        "guards": {**guard_flags, "frozen_params": [], "freeze_ready": freeze_ready, "last_iteration": False},
        "freeze_ready": freeze_ready,
    }


def _content_iteration(obj: Mapping[str, Any], n: int, *, path: object) -> None:
    if "iteration" not in obj:
        return
    it = obj["iteration"]
    if isinstance(it, bool) or not isinstance(it, int):
        raise RecordError(f"expected an integer >= 1, got {it!r}", path=path, field="iteration")
    if it < 1:
        raise RecordError(f"iteration {it}, expected an integer >= 1 (iterations are 1-based)",
                          path=path, field="iteration")
    if it != n:
        raise RecordError(f"iteration {it} does not match the file name's number {n}", path=path, field="iteration")


def normalise_record(obj: Any, n: int, *, path: object) -> tuple[dict, str]:
    """One seed ITER_SUMMARY (any dialect) → soaklib record shape; returns ``(record, dialect)``.

    Parts a seed record does not carry are None (``seed``, ``window``, ``params``, ``market``,
    ``runtime_guards``, ``events``, ``wall``); ``source`` names the file, the dialect and any
    symbol/profile metadata it had."""
    dialect = detect_dialect(obj, path)
    if dialect == "soaklib":
        validate_record(obj, path)
        _content_iteration(obj, n, path=path)
        rec = dict(obj)
        rec["source"] = {"dialect": "soaklib", "file": Path(str(path)).name}
        return rec, dialect
    _content_iteration(obj, n, path=path)
    meta: dict[str, Any] = {}
    window = None
    if dialect == "soak":
        summary = _soak_summary(obj, path=path)
    elif dialect == "shadow":
        summary = _shadow_summary(obj, path=path)
        for k in ("exchange", "symbols", "profile", "mode", "notes"):
            if obj.get(k) is not None:
                meta[k] = obj[k]
        dur = obj.get("duration_seconds")
        if dur is not None:
            dur = parse_number(dur, path=path, field="duration_seconds", nonneg=True)
            window = {"start_s": None, "duration_s": float(dur)}
    else:
        summary, meta = _window_summary(obj, path=path)
    rec = {
        "schema_version": "1.0",
        "iteration": n,
        "status": "ok",
        "failure": None,
        "seed": None,
        "runner": f"seed:{dialect}",
        "scenario": None,
        "window": window,
        "summary": summary,
        "params": None,          # seed records do not say what an iteration ran with
        "market": None,
        "runtime_guards": None,
        "events": None,
        "tuning": _tuning(obj, summary, path=path),
        "wall": None,
        "source": {"dialect": dialect, "file": Path(str(path)).name, **meta},
    }
    return rec, dialect


# ---------------------------------------------------------------------------------------------
# TUNING_REPORT, snapshot, runtime_overrides


def normalise_tuning_report(obj: Any, *, path: object) -> dict:
    """Seed TUNING_REPORT: ``{"iterations": [...], "summary": {...}}`` or a bare list → the object
    form, entries sorted by iteration; a missing summary is computed (count, applied)."""
    if isinstance(obj, list):
        entries, summary = obj, None
    elif isinstance(obj, Mapping) and isinstance(obj.get("iterations"), list):
        entries, summary = obj["iterations"], obj.get("summary")
    elif isinstance(obj, Mapping) and "candidates" in obj:
        raise RecordError("not a soak tuning report (this is a parameter-sweep report with 'candidates')",
                          path=path)
    else:
        raise RecordError("expected a list of iteration entries or an object with an 'iterations' list", path=path)
    seen: set[int] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise RecordError(f"expected an object, got {type(e).__name__}", path=path, field=f"iterations[{i}]")
        it = e.get("iteration")
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise RecordError(f"expected an integer >= 1, got {it!r}", path=path, field=f"iterations[{i}].iteration")
        if it in seen:
            raise RecordError(f"iteration {it} appears twice", path=path, field=f"iterations[{i}].iteration")
        seen.add(it)
        if "net_bps" in e:
            parse_number(e.get("net_bps"), path=path, field=f"iterations[{i}].net_bps")
    entries = sorted((dict(e) for e in entries), key=lambda e: e["iteration"])
    if not isinstance(summary, Mapping):
        summary = {"count": len(entries), "applied": sum(1 for e in entries if e.get("applied") is True)}
    return {"iterations": entries, "summary": dict(summary)}


def normalise_snapshot(obj: Any, *, path: object) -> dict:
    """POST_SOAK_SNAPSHOT of schema 1.1/1.2 with ``*_last8`` or ``*_last_n`` keys → ``*_last_n`` keys
    (the original spelling is kept in ``key_spelling``)."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    out = dict(obj)
    spelling = "last_n"
    for old, new in _SNAPSHOT_ALIASES.items():
        if old in out:
            spelling = "last8"
            val = out.pop(old)
            out.setdefault(new, val)
    kpi = out.get("kpi_last_n")
    if kpi is not None:
        if not isinstance(kpi, Mapping):
            raise RecordError("expected an object of KPI statistics", path=path, field="kpi_last_n")
        for metric, stats in kpi.items():
            if not isinstance(stats, Mapping):
                raise RecordError("expected an object {mean, median, ...}", path=path, field=f"kpi_last_n.{metric}")
            for stat, v in stats.items():
                if stat != "trend":
                    parse_number(v, path=path, field=f"kpi_last_n.{metric}.{stat}",
                            ratio=metric in RATIO_FIELDS and stat in ("mean", "median", "min", "max"))
    out["key_spelling"] = spelling
    return out


def read_runtime_overrides(p: Path, reg, *, root: Path) -> tuple[dict, list[str]]:
    """Flat registry values from a seed runtime_overrides.json; the nested sections the seed filled
    with delta values (§1.10) and unknown keys are ignored with a warning."""
    data = read_inside(root, p)
    if not isinstance(data, Mapping):
        raise RecordError("expected a JSON object of parameters", path=p)
    values, ignored = {}, []
    for k, v in data.items():
        if k in reg:
            values[k] = parse_number(v, path=p, field=k)
        else:
            ignored.append(k)
    warn = [f"{p.name}: ignored keys not in the parameter registry (seed nested sections hold delta "
            f"values, not parameters): {', '.join(sorted(ignored))}"] if ignored else []
    return values, warn


# ---------------------------------------------------------------------------------------------
# layout and the whole run


def _has_iter_files(d: Path) -> bool:
    try:
        return d.is_dir() and any(True for _ in d.glob(RECORD_GLOB))
    except OSError:
        return False


def find_root(path: str | Path) -> Path | None:
    """The folder holding the ITER_SUMMARY files for a seed path, probing like the seed's consumers:
    ``P/soak/latest``, ``P/latest``, ``P/artifacts/soak/latest``, ``P``. None if none has any."""
    p = Path(path)
    for parts in SEED_RECORD_DIRS:
        cand = p.joinpath(*parts)
        if _has_iter_files(cand):
            return cand
    return None


def is_seed_layout(path: str | Path) -> bool:
    """True for a folder that is not a soaklib run dir (no run.json) but holds seed ITER_SUMMARY files."""
    p = Path(path)
    return not (p / MANIFEST).exists() and find_root(p) is not None


def iter_files(root: Path, max_n: int = 1_000_000) -> dict[int, Path]:
    """Iteration number → file, ordered numerically. Refuses iteration < 1 or > ``max_n``, two files of
    one iteration (``ITER_SUMMARY_5.json`` and ``ITER_SUMMARY_005.json``)."""
    found: dict[int, Path] = {}
    try:
        names = sorted(root.glob(RECORD_GLOB))
    except OSError as exc:
        raise RecordError(f"cannot list: {exc.strerror or exc}", path=root) from None
    for f in names:
        m = RECORD_RE.match(f.name)
        if not m:
            raise RecordError("file name not understood, expected ITER_SUMMARY_<n>.json with n >= 1", path=f)
        n = int(m.group(1))
        if n < 1:
            raise RecordError(f"iteration {n} in the file name, expected an integer >= 1 (iterations are 1-based)",
                              path=f)
        if n > max_n:
            raise RecordError(f"iteration {n} in the file name, larger than seed.max_iteration_number={max_n}",
                              path=f)
        if n in found:
            a, b = sorted((found[n].name, f.name))
            raise RecordError(f"two files for iteration {n}: {a} and {b}", path=root)
        found[n] = f
    return dict(sorted(found.items()))


def gaps_of(numbers: list[int], upto: int = 0) -> list[int]:
    """Missing iteration numbers between 1 and max(the largest present, ``upto``)."""
    have = set(numbers)
    top = max(list(have) + [upto, 0])
    return [i for i in range(1, top + 1) if i not in have]


def _run_id(root: Path) -> str:
    # artifacts/soak/latest → "latest" says nothing; name the folder the user downloaded
    parts = [x for x in root.parts if x not in ("/",)]
    if root.name == LATEST and len(parts) >= 3 and parts[-2] == SEED_PARENT:
        return parts[-3]
    return root.name


def load(path: str | Path, cfg: Mapping[str, Any] | None = None) -> Run:
    """Read a seed layout into a ``Run``: records, gaps, warnings, manifest, tuning report, snapshot,
    EDGE_REPORT and runtime_overrides (None when absent).

    ``path`` may be the folder with the files or any of the seed's parent layouts. Raises
    RecordError (exit 2) naming the file and the problem for anything unreadable."""
    src = Path(path)
    if not src.exists():
        raise RecordError("no such file or directory", path=src)
    root = find_root(src)
    if root is None:
        raise RecordError("no ITER_SUMMARY_<n>.json files here or in soak/latest, latest, artifacts/soak/latest",
                          path=src)
    if cfg is None:
        cfg = load_config()
    reg = registry(cfg)
    warnings: list[str] = []
    files = iter_files(root, int(cfg.get("seed", {}).get("max_iteration_number", 1_000_000)))
    records, dialects = [], Counter()
    for n, f in files.items():
        obj = read_inside(root, f)
        rec, d = normalise_record(obj, n, path=f)
        records.append(rec)
        dialects[d] += 1
    gaps = gaps_of(list(files))
    if gaps:
        shown = ", ".join(map(str, gaps[:20])) + (f" (+{len(gaps) - 20} more)" if len(gaps) > 20 else "")
        warnings.append(f"{root}: {len(gaps)} iteration(s) missing: {shown}")
    dialect = dialects.most_common(1)[0][0] if dialects else "soak"
    if len(dialects) > 1:
        warnings.append(f"{root}: mixed ITER_SUMMARY dialects: "
                        + ", ".join(f"{d}={c}" for d, c in sorted(dialects.items())))
    padded = [f.name for n, f in files.items() if f.name != record_name(n)]  # zero-padded (or signed)
    if padded and dialect != "window":
        warnings.append(f"{root}: zero-padded file names read numerically ({padded[0]}, ...)")

    tuning_report = None
    tr = root / TUNING_REPORT
    if tr.exists() or tr.is_symlink():
        tuning_report = normalise_tuning_report(read_inside(root, tr), path=tr)

    snapshot = None
    for sp in (root / REPORTS_DIR / SNAPSHOT, root / SNAPSHOT):
        if sp.exists() or sp.is_symlink():
            snapshot = normalise_snapshot(read_inside(root, sp), path=sp)
            break

    edge = None
    for ep in (root / ARTIFACTS / EDGE_REPORT, root / EDGE_REPORT):
        if ep.exists() or ep.is_symlink():
            edge = read_edge_report(ep, root=root)
            break

    overrides = None
    ov_candidates = [root / OVERRIDES]
    if root.name == LATEST and root.parent.name == SEED_PARENT:
        ov_candidates.append(root.parent / OVERRIDES)
    for op in ov_candidates:
        if op.exists() or op.is_symlink():
            overrides, w = read_runtime_overrides(op, reg, root=op.parent)
            warnings.extend(w)
            break

    times = sorted(r["summary"].get("runtime_utc") for r in records if r["summary"].get("runtime_utc"))
    symbols: set[str] = set()
    for r in records:
        src_meta = r["source"]
        if src_meta.get("symbol"):
            symbols.add(str(src_meta["symbol"]))
        syms = src_meta.get("symbols")
        symbols.update(map(str, syms) if isinstance(syms, list) else ([str(syms)] if syms else []))
    profiles = sorted({str(r["source"]["profile"]) for r in records if r["source"].get("profile")})
    manifest = {
        "schema_version": "1.0",
        "run_id": _run_id(root),
        "status": "completed",
        "layout": "seed",
        "dialect": dialect,
        "source": str(root),
        "created_utc": times[0] if times else None,
        "finished_utc": times[-1] if times else None,
        "soaklib_version": None,
        "config": None,
        "seed": None,
        "runner": "seed",
        "scenario": None,
        "profile": {"name": profiles[0] if len(profiles) == 1 else (", ".join(profiles) or None),
                    "values": overrides},
        "symbols": sorted(symbols),
        "iterations_planned": None,
        "iterations_done": len(records),
        "auto_tune": any(r["tuning"]["applied"] for r in records) or any(r["tuning"]["proposed_deltas"]
                                                                          for r in records),
        "duration_s": None,
    }
    if tuning_report is None:
        tuning_report = tuning_report_of(records)
    elif len(tuning_report["iterations"]) != len(records):
        warnings.append(f"{TUNING_REPORT} has {len(tuning_report['iterations'])} entries for {len(records)} "
                        "ITER_SUMMARY files")
    return Run(path=root.resolve(), layout="seed", dialect=dialect, manifest=manifest, records=records, gaps=gaps,
               warnings=warnings, tuning_report=tuning_report, snapshot=snapshot, edge_report=edge,
               runtime_overrides=overrides)


def open_seed_run(path: str | Path, cfg: Mapping[str, Any] | None = None) -> Run | None:
    """``soaklib.store.loader`` hook: a seed layout as a ``Run``, or None when ``path`` is not one."""
    p = Path(path)
    if (p / MANIFEST).exists() or find_root(p) is None:
        return None
    return load(p, cfg)
