"""Analysis of a soak run: frames, last-N statistics, a sign-safe robust trend, the snapshot.

Frames come from the loader (``Run.iterations``, ``Run.params``, ``Run.decisions``,
``Run.blocks``); nothing here re-reads files. Everything is vectorised with numpy/pandas so the
snapshot of a 100,000-iteration run takes well under the 2 s budget and scales linearly.
The verdict and goal results come from ``soaklib.judge.gate.evaluate`` (the one gate).
"""
from __future__ import annotations

import datetime as _dt
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from soaklib.core.errors import InputError
from soaklib.core.kpis import KPIS
from soaklib.core.numbers import finite_or
from soaklib.core.run import Run
from soaklib.judge import gate

SNAPSHOT_SCHEMA = "1.2"

# seed snapshot 1.2 spells goals this way (reference §6.1)
SEED_GOAL_KEYS = {k.name: k.seed_goal_key for k in KPIS if k.seed_goal_key}

# decision guard name -> snapshot guard key (seed names first)
GUARD_KEYS = {
    "oscillation": "oscillation",
    "velocity": "velocity",
    "cooldown": "cooldown",
    "frozen": "freeze",
    "bounds": "bounds",
    "steady_state": "steady_state",
    "last_iteration": "last_iteration",
}
SEED_GUARDS = ("latency_soft", "latency_hard", "oscillation", "velocity", "cooldown", "freeze")


# --------------------------------------------------------------------------- frames

def frames(run: Run) -> dict[str, pd.DataFrame]:
    """The loader's four frames of a run: iterations, params, decisions, blocks."""
    return {"iterations": run.iterations, "params": run.params, "decisions": run.decisions, "blocks": run.blocks}


def ok_mask(iterations: pd.DataFrame) -> pd.Series:
    """True for iterations whose status is ok (all of them when there is no status column)."""
    if "status" in iterations.columns:
        return iterations["status"].fillna("ok").astype(str).eq("ok")
    return pd.Series(True, index=iterations.index)


def window(iterations: pd.DataFrame, last_n: int) -> tuple[list[int], list[str]]:
    """The last ``last_n`` ok iteration numbers (the gate's window), plus notes for the reader.

    Failed iterations have no KPIs and are skipped, as the gate skips them. A ``last_n`` larger
    than the run analyses all ok iterations and says so; less than 1 is an error.
    """
    if isinstance(last_n, bool) or not isinstance(last_n, (int, np.integer)) or last_n < 1:
        raise InputError(f"last_n must be a whole number >= 1, got {last_n!r}", field="last_n")
    ok = ok_mask(iterations)
    idx = iterations.index[ok.to_numpy()]
    if not idx.is_monotonic_increasing:
        idx = idx.sort_values()
    notes = []
    if last_n > len(idx):
        notes.append(f"last_n={last_n} is larger than the run's {len(idx)} ok iteration(s): analysing all of them")
    return [int(i) for i in idx[-last_n:]], notes


# --------------------------------------------------------------------------- trend

def theil_sen(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Theil–Sen slopes of each column of ``y`` (n × k) against ``x`` (n): median pairwise slope.

    NaNs are ignored; a column with fewer than two finite points gives NaN. O(n²) pairs, so call
    it on at most a few hundred points (``trend`` buckets longer series first).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    n = len(x)
    if n < 2:
        return np.full(y.shape[1], np.nan)
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    keep = dx != 0
    i, j, dx = i[keep], j[keep], dx[keep]
    slopes = (y[j] - y[i]) / dx[:, None]
    out = np.full(y.shape[1], np.nan)
    finite = np.isfinite(slopes)
    has = finite.any(axis=0)
    if has.any():
        with np.errstate(all="ignore"):
            out[has] = np.nanmedian(slopes[:, has], axis=0)
    return out


def _bucketed(x: np.ndarray, y: pd.DataFrame, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-count bucket medians so Theil–Sen stays O(max_points²) on long series (O(n) overall)."""
    n = len(x)
    if n <= max_points:
        return x, y.to_numpy(dtype=float)
    width = -(-n // max_points)            # ceil: every bucket holds `width` points, the last padded
    pad = width * max_points - n
    vals = np.vstack([y.to_numpy(dtype=float), np.full((pad, y.shape[1]), np.nan)])
    xs = np.concatenate([x.astype(float), np.full(pad, np.nan)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bucket (a failed stretch)
        yb = np.nanmedian(vals.reshape(max_points, width, -1), axis=1)
        xb = np.nanmedian(xs.reshape(max_points, width), axis=1)
    keep = np.isfinite(xb)
    return xb[keep], yb[keep]


def trend(df: pd.DataFrame, cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Per column: robust slope (per iteration), fitted change over the span, and a label.

    The label compares the fitted change with ``trend_flat_rel`` × max(|median|, floor), so it
    is right for negative series: a falling series is ``down`` whatever its sign (the seed's
    ``q4 > 1.05·q1`` test inverted for negative values).
    """
    sc = cfg["snapshot"]
    x = np.asarray(df.index, dtype=float)
    xb, yb = _bucketed(x, df, int(sc["trend_max_points"]))
    slope = theil_sen(xb, yb) if len(df.columns) else np.array([])
    span = (x.max() - x.min()) if len(x) else 0.0
    change = slope * span
    median = df.median().to_numpy(dtype=float) if len(df.columns) else np.array([])
    scale = np.maximum(np.abs(np.nan_to_num(median)), float(sc["trend_abs_floor"]))
    label = np.where(~np.isfinite(change), "n/a",
                     np.where(np.abs(np.nan_to_num(change)) <= float(sc["trend_flat_rel"]) * scale, "flat",
                              np.where(change > 0, "up", "down")))
    return pd.DataFrame({"slope": slope, "change": change, "trend": label}, index=df.columns)


def direction(label: str, op: str | None) -> str:
    """'improving' / 'worsening' / 'flat' for a trend label under a goal's operator."""
    if label not in ("up", "down") or op not in (">=", "<=", ">", "<"):
        return "flat" if label == "flat" else "n/a"
    better_up = op in (">=", ">")
    return "improving" if (label == "up") == better_up else "worsening"


def stats(iterations: pd.DataFrame, iters: Sequence[int], metrics: Sequence[str],
          cfg: Mapping[str, Any]) -> pd.DataFrame:
    """mean/median/min/max/count/slope/change/trend of each metric over the given iterations.

    Failed iterations are in the window but have NaN KPIs, so they do not enter the statistics;
    ``count`` says how many values did.
    """
    cols = [m for m in metrics]
    sub = iterations.reindex(index=list(iters), columns=cols).apply(pd.to_numeric, errors="coerce")
    agg = pd.DataFrame({
        "mean": sub.mean(), "median": sub.median(), "min": sub.min(), "max": sub.max(),
        "count": sub.count(),
    })
    return agg.join(trend(sub, cfg))


# --------------------------------------------------------------------------- goals / gate

def gate_result(run: Run, cfg: Mapping[str, Any], last_n: int) -> gate.GateResult:
    """The gate's result for the run's last-N window (soaklib.judge.gate is the one gate)."""
    return gate.evaluate_run(run, cfg, last_n)


def goal_rows(result: gate.GateResult) -> list[dict[str, Any]]:
    """A GateResult's goals as plain dicts (name, agg, op, hard, soft, value, status)."""
    return [dict(g.to_dict()) for g in result.goals]


# --------------------------------------------------------------------------- guards / tuning

def _records_by_iter(run: Run, iters: Sequence[int]) -> list[dict]:
    want = set(int(i) for i in iters)
    return [r for r in run.records if r.get("iteration") in want]


def guards_in_window(run: Run, iters: Sequence[int]) -> dict[str, Any]:
    """Guard activity inside the window: per guard, the iterations where it fired.

    Tuning guards come from the decisions frame (a decision clamped or blocked by the guard);
    the in-run latency guards from each record's ``runtime_guards`` (buffer active → soft,
    partial freeze → hard).
    """
    fired: dict[str, set[int]] = {k: set() for k in SEED_GUARDS}
    dec = run.decisions
    if len(dec) and "guard" in dec.columns:
        d = dec[dec["iteration"].isin(list(iters)) & dec["guard"].notna()]
        if "verdict" in d.columns:
            d = d[d["verdict"].isin(["clamped", "blocked"])]
        for guard, its in d.groupby("guard")["iteration"]:
            fired.setdefault(GUARD_KEYS.get(str(guard), str(guard)), set()).update(int(i) for i in its)
    for rec in _records_by_iter(run, iters):
        rg = rec.get("runtime_guards") or {}
        it = int(rec["iteration"])
        if finite_or(rg.get("latency_buffer_active_s"), 0.0) > 0:
            fired["latency_soft"].add(it)
        if finite_or(rg.get("partial_freeze_count"), 0.0) > 0 or finite_or(rg.get("partial_freeze_time_s"), 0.0) > 0 \
                or bool(rg.get("latency_hard_active")):
            fired["latency_hard"].add(it)
    counts = {k: len(v) for k, v in fired.items()}
    return {"counts": counts, "iterations": {k: sorted(v) for k, v in fired.items() if v}}


def tuning_summary(run: Run) -> dict[str, Any]:
    """True tuning activity over all iterations, from the decisions frame and the records.

    ``applied_count`` counts iterations after which at least one parameter really changed
    (decision applied or clamped with a non-zero delta); ``decisions`` counts verdicts and
    ``blocked_by_guard`` the guards that clamped or blocked a proposal.
    """
    dec = run.decisions
    out: dict[str, Any] = {"applied_count": 0, "applied_iterations": [], "changed_keys": [],
                           "skip_reasons": {}, "decisions": {}, "blocked_by_guard": {}, "proposals": 0}
    if len(dec):
        delta = pd.to_numeric(dec.get("clamped_delta"), errors="coerce").fillna(0.0) \
            if "clamped_delta" in dec.columns else pd.Series(0.0, index=dec.index)
        proposed = pd.to_numeric(dec.get("proposed_delta"), errors="coerce").fillna(0.0) \
            if "proposed_delta" in dec.columns else pd.Series(0.0, index=dec.index)
        verdict = dec["verdict"].astype(str) if "verdict" in dec.columns else pd.Series("applied", index=dec.index)
        landed = verdict.isin(["applied", "clamped"]) & (delta != 0)
        its = _unique_ints(dec.loc[landed, "iteration"].to_numpy())
        out["applied_count"] = int(len(its))
        out["applied_iterations"] = its.tolist()
        out["changed_keys"] = sorted(str(p) for p in dec.loc[landed, "param"].unique())
        out["proposals"] = int((proposed != 0).sum())
        out["decisions"] = {str(k): int(v) for k, v in verdict[proposed != 0].value_counts().sort_index().items()}
        if "guard" in dec.columns:
            g = dec.loc[verdict.isin(["clamped", "blocked"]) & dec["guard"].notna(), "guard"]
            out["blocked_by_guard"] = {str(k): int(v) for k, v in g.value_counts().sort_index().items()}
    reasons: Counter = Counter()
    for rec in run.records:
        t = rec.get("tuning")
        if not isinstance(t, Mapping):
            continue
        sr = t.get("skip_reason")
        if isinstance(sr, Mapping):
            sr = sr.get("reason") or sr.get("note") or ""
        if sr:
            reasons[str(sr)] += 1
    out["skip_reasons"] = dict(sorted(reasons.items()))
    return out


def _unique_ints(a: np.ndarray) -> np.ndarray:
    """Sorted unique non-negative ints in O(n + max) (np.unique sorts or hashes: slower, superlinear)."""
    a = np.asarray(a, dtype=np.int64)
    if not len(a):
        return a
    if a.min() < 0:
        return np.unique(a)
    seen = np.zeros(int(a.max()) + 1, dtype=bool)
    seen[a] = True
    return np.flatnonzero(seen)


def _last_record(run: Run) -> Mapping | None:
    return run.records[-1] if run.records else None


# --------------------------------------------------------------------------- snapshot

def _clean(v, digits: int):
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return round(f, digits) + 0.0 if np.isfinite(f) else None  # + 0.0: no "-0.0" in JSON
    return v


def snapshot(run: Run, cfg: Mapping[str, Any], last_n: int, *, now: _dt.datetime | None = None) -> dict[str, Any]:
    """POST_SOAK_SNAPSHOT (schema 1.2-compatible keys with ``*_last_n``) of a run's last N iterations.

    Values: last-N and all-iteration stats of the configured metrics, the gate's goals and
    verdict, guard counts inside the window, the true tuning summary and ``freeze_ready``
    (verdict PASS and the tuner itself reported freeze-ready, or auto-tune was off).
    """
    it = run.iterations
    if it.empty:
        raise InputError("the run has no iterations to analyse", path=run.path)
    sc = cfg["snapshot"]
    digits = int(sc["round_digits"])
    metrics = list(sc["metrics"])
    iters, notes = window(it, last_n)
    ok = ok_mask(it)
    present = [m for m in metrics if m in it.columns]
    missing = [m for m in metrics if m not in it.columns]
    if missing:
        notes.append("metrics missing from the run: " + ", ".join(missing))
    last = stats(it, iters, present, cfg)
    allst = stats(it, list(it.index), present, cfg)

    result = gate_result(run, cfg, last_n)
    verdict = str(result.verdict)
    goals = goal_rows(result)
    goals_met = {}
    goals_detail = {}
    for g in goals:
        name = str(g.get("kpi"))
        met = str(g.get("status", "")).upper() in ("PASS", "WARN")  # INCONCLUSIVE is not met
        goals_met[SEED_GOAL_KEYS.get(name, f"{name}_ok")] = met
        goals_detail[name] = {k: _clean(v, digits) for k, v in g.items() if not isinstance(v, (list, dict))}
    guards = guards_in_window(run, iters)
    lastrec = _last_record(run)
    tuner_freeze = bool(((lastrec or {}).get("tuning") or {}).get("freeze_ready"))
    auto_tune = bool(run.manifest.get("auto_tune", True))
    freeze_ready = verdict == "PASS" and (tuner_freeze or not auto_tune)

    def block(df: pd.DataFrame) -> dict:
        return {m: {"mean": _clean(r["mean"], digits), "median": _clean(r["median"], digits),
                    "min": _clean(r["min"], digits), "max": _clean(r["max"], digits),
                    "trend": str(r["trend"]), "slope": _clean(r["slope"], 6), "count": int(r["count"])}
                for m, r in df.iterrows()}

    ts = (now or _dt.datetime.now(_dt.UTC)).isoformat()
    manifest = run.manifest
    snap = {
        "schema_version": SNAPSHOT_SCHEMA,
        "timestamp": ts,
        "run_id": manifest.get("run_id"),
        "runner": manifest.get("runner"),
        "verdict": verdict,
        "iterations_total": int(len(it)),
        "iterations_ok": int(ok.sum()),
        "iterations_failed": [int(i) for i in it.index[~ok.to_numpy()]],
        "gaps": [int(g) for g in run.gaps],
        "last_n": int(last_n),
        "iterations_analyzed": [int(i) for i in iters],
        "pass_count_last_n": int(sum(bool(v) for v in goals_met.values())),
        "kpi_last_n": block(last),
        "kpi_all": block(allst),
        "goals_met": goals_met,
        "goals": goals_detail,
        "guards_last_n": guards,
        "tuning_summary": tuning_summary(run),
        "freeze_ready": bool(freeze_ready),
        "anomalies_count": int(sum(1 for c in guards["counts"].values() if c > int(sc["anomaly_guard_count"]))),
        "notes": notes + [str(n) for n in result.notes],
    }
    return snap


def peaks(iterations: pd.DataFrame, metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Peak (max) value and the iteration it happened in, per metric present."""
    out = {}
    for m in metrics:
        if m in iterations.columns:
            s = pd.to_numeric(iterations[m], errors="coerce")
            if s.notna().any():
                out[m] = {"value": float(s.max()), "iteration": int(s.idxmax())}
    return out
