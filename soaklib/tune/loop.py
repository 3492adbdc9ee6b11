"""The soak loop (DESIGN §3) and resume.

Per iteration n: seed_n from (run seed, n) only; window start (n-1)·duration_s; the runner runs
with the current parameters; the record is built, the tuner decides from the history 1..n
(``soaklib.tune.tuner.decide``, a pure function), the record is written once, then the derived
TUNING_REPORT.json and runtime_overrides.json are rewritten. Everything a resumed run needs is
derived from run.json and the records on disk, never from process state, so a run killed at any
moment and resumed equals an uninterrupted one (records compared without wall-clock fields).

An auto-tuned run with ``confirm_iterations`` K ends with a confirmation phase (DESIGN §7): K more
iterations (records ``phase: confirm``) on windows after every tuning window, parameters frozen at the
tuner's final values, then the baseline arm (``RUN/baseline``, a run dir of its own whose manifest
shifts its windows by ``window_offset``) on exactly those (seed, window) pairs. The run is completed
only when both are on disk; a resume finishes whichever is missing.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soaklib.core import io as _io
from soaklib.core.config import validate_config
from soaklib.core.errors import InputError, RecordError, RunnerError, SoakError
from soaklib.core.params import Registry, registry
from soaklib.core.records import (
    IterationRecord,
    build_record,
    effective_params,
    next_params,
    plain,
    tuning_off_block,
    tuning_report,
    utc_now,
    validate_record,
)
from soaklib.core.seeding import iteration_seed
from soaklib.execute import runners as _runners
from soaklib.execute import supervisor
from soaklib.execute.base import Runner, RunnerOutput
from soaklib.store.loader import read_records
from soaklib.store.rundir import BASELINE_DIR, MANIFEST, RunDir, new_manifest
from soaklib.tune.tuner import decide

log = logging.getLogger("soaklib.tune.loop")


@dataclass
class SoakResult:
    """What a finished (or stopped) soak produced, plus timing for the benchmark."""

    path: Path
    status: str
    manifest: dict
    records: list[IterationRecord]
    runner_s: float = 0.0   # wall time spent inside runner.run (this process)
    wall_s: float = 0.0     # wall time of the loop (this process)
    iterations_run: int = 0  # iterations executed by this process (resume: the remainder)
    timings: list[dict] = field(default_factory=list)


def _roundtrip(obj: Any) -> Any:
    # what a resumed process reads back from disk; the live loop uses the same values
    return json.loads(_io.dumps(plain(obj), indent=None))


def decide_tuning(history: list[dict], params: Mapping[str, Any], cfg: Mapping[str, Any], *, iteration: int,
                  total: int, auto_tune: bool, off_reason: str = "auto_tune_off") -> dict:
    """The record's tuning block: ``soaklib.tune.tuner.decide`` (pure); off-block when tuning is off."""
    if not auto_tune:
        return tuning_off_block(params, reason=off_reason, summary=history[-1].get("summary") if history else None)

    return plain(decide(history, dict(params), dict(cfg), iteration=iteration, total=total, auto_tune=True))


def out_of_bounds(params: Mapping[str, Any], reg: Registry) -> list[str]:
    """Registry parameters a runner reported outside their [min, max] (e.g. a bot echoing garbage)."""
    return sorted(k for k, v in params.items() if k in reg and not reg[k].min <= v <= reg[k].max)


def current_params(requested: Mapping[str, Any], rec: Mapping[str, Any], reg: Registry) -> dict:
    """What the tuner starts from after an iteration (``effective_params``), with each value reported
    out of bounds normalised through the registry: it stays in the record as reported, and is never
    sent back as the next request."""
    cur = effective_params(requested, rec)
    for k in rec.get("params_out_of_bounds") or ():
        cur[k] = reg[k].normalise(cur[k])
    return cur


def replay_params(manifest: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> dict:
    """Parameters the next iteration runs with, derived from the profile and the records alone."""
    reg = registry(manifest["config"])
    requested = dict(manifest["profile"]["values"])
    for rec in records:
        requested = next_params(current_params(requested, rec, reg), rec.get("tuning"))
    return requested


def _notify(observers: Iterable[Any], hook: str, *args: Any) -> None:
    for obs in observers:
        fn = getattr(obs, hook, None)
        if fn is None:
            continue
        try:
            fn(*args)
        except Exception as exc:  # an observer (exporter, progress bar) must not kill a soak
            log.warning("observer %s.%s failed: %s", type(obs).__name__, hook, exc)


def tune_iterations(manifest: Mapping[str, Any]) -> int:
    """Iterations of the tuning phase (all of them when the run has no confirmation phase)."""
    return int(manifest["iterations_planned"]) - int(manifest.get("confirm_iterations", 0))


def phase(manifest: Mapping[str, Any], n: int) -> str | None:
    """``tune`` / ``confirm`` for a run with a confirmation phase (its baseline arm: ``confirm``);
    None for runs without one (their records carry no phase)."""
    if manifest.get("arm") == "baseline":
        return "confirm"
    if not int(manifest.get("confirm_iterations", 0)):
        return None
    return "tune" if n <= tune_iterations(manifest) else "confirm"


def _one_iteration(n: int, *, run_dir: Path, runner: Runner, runner_label: str, requested: dict, manifest: Mapping[str, Any],
                   cfg: Mapping[str, Any], history: list[dict]) -> tuple[dict, RunnerOutput]:
    # the baseline arm's iteration k runs on its parent's window window_offset + k
    n_win = n + int(manifest.get("window_offset", 0))
    seed_n = iteration_seed(manifest["seed"], n_win)
    duration_s = float(manifest["duration_s"])
    started = utc_now()
    t0 = time.perf_counter()
    out = runner.run(dict(requested), iteration=n, seed=seed_n, run_dir=run_dir, start_s=(n_win - 1) * duration_s)
    out.elapsed_s = time.perf_counter() - t0  # measured here, whatever the runner reports
    common = dict(iteration=n, seed=seed_n, runner=runner_label, scenario=manifest["scenario"],
                  start_s=(n_win - 1) * duration_s, duration_s=duration_s, cfg=cfg, started_utc=started)
    ph = phase(manifest, n)
    rec = build_record(kpis=out.kpis, params=out.params if out.ok else {}, market=out.market,
                       runtime_guards=out.runtime_guards, events=out.events,
                       failure=None if out.ok else (out.failure or {"reason": "runner reported failure"}),
                       params_missing=out.params_missing, **common)
    if out.ok:
        rec["tuning"] = tuning_off_block(requested)  # placeholder so the record validates
        try:
            validate_record(rec, f"iteration {n} runner output")
        except RecordError as exc:
            # garbage from the strategy is a failed iteration, recorded with the reason
            out = RunnerOutput.failed(f"runner output invalid: {exc}", stderr_tail=out.stderr_tail,
                                      elapsed_s=out.elapsed_s)
            rec = build_record(kpis=None, params={}, market=out.market, runtime_guards={}, events=None,
                               failure=out.failure, **common)
    oob = out_of_bounds(rec["params"], registry(cfg)) if rec["status"] == "ok" else []
    if oob:  # flagged; the values stay as the runner reported them
        rec["params_out_of_bounds"] = oob
    if ph is not None:
        rec["phase"] = ph
    rec = _roundtrip(rec)
    current = current_params(requested, rec, registry(cfg))
    # frozen in the confirmation phase; the tuner's "last iteration" is the tuning phase's last
    rec["tuning"] = _roundtrip(decide_tuning(history + [rec], current, cfg, iteration=n,
                                             total=tune_iterations(manifest),
                                             auto_tune=bool(manifest["auto_tune"]) and ph != "confirm",
                                             off_reason="confirmation_phase" if ph == "confirm" else "auto_tune_off"))
    finished = utc_now()
    rec["summary"]["runtime_utc"] = finished
    rec["wall"] = {"started_utc": started, "finished_utc": finished,
                   "elapsed_s": round(time.perf_counter() - t0, 6)}
    validate_record(rec, f"iteration {n}")
    return rec, out


def _baseline_arm(rd: RunDir, runner: Runner, runner_label: str) -> None:
    """Run (or finish) the baseline on the confirmation windows: ``RUN/baseline``."""
    m = rd.manifest
    k = int(m.get("confirm_iterations", 0))
    base = m.get("baseline")
    if not k or not isinstance(base, Mapping):
        return
    p = rd.path / BASELINE_DIR
    if (p / MANIFEST).is_file():
        if _io.read_json(p / MANIFEST).get("status") == "completed":
            return
        brd = RunDir.open_for_resume(p)
        records = read_records(p)
        brd.clean_temp()
    else:
        bm = new_manifest(config=m["config"], seed=m["seed"], runner=m["runner"], scenario=m["scenario"],
                          profile_name=base["name"], profile_values=base["values"], iterations_planned=k,
                          auto_tune=False, duration_s=float(m["duration_s"]),
                          extra={"arm": "baseline", "parent_run_id": m["run_id"], "window_offset": tune_iterations(m)})
        brd = RunDir.create_at(p, f"{m['run_id']}-baseline", _roundtrip(bm))
        records = []
    _loop(brd, runner, runner_label, records, (), arm=True)


def _loop(rd: RunDir, runner: Runner, runner_label: str, records: list[dict], observers: Sequence[Any],
          arm: bool = False) -> SoakResult:
    m = rd.manifest
    cfg = m["config"]
    total = int(m["iterations_planned"])
    on_failure = cfg["run"]["on_failure"]
    max_failed = int(cfg["run"]["max_failed_iterations"])
    requested = replay_params(m, records)
    reg = registry(cfg)
    res = SoakResult(path=rd.path, status="running", manifest=m, records=records)
    t_loop = time.perf_counter()
    status = "interrupted"
    marked = False  # the stop status is in run.json (or could not be written)
    try:
        # derived files may be stale if the previous process died between writes
        rd.write_overrides(requested)
        rd.write_tuning_report(tuning_report(records))
        m["iterations_done"] = len(records)
        rd.set_status("running")
        _notify(observers, "on_start", m)
        for n in range(len(records) + 1, total + 1):
            t_it = time.perf_counter()
            rec, out = _one_iteration(n, run_dir=rd.path, runner=runner, runner_label=runner_label, requested=requested,
                                      manifest=m, cfg=cfg, history=records)
            rd.write_record(rec)
            records.append(rec)
            # counted as soon as its record is on disk (on disk in run.json at the next status change;
            # resume counts the records)
            m["iterations_done"] = n
            requested = next_params(current_params(requested, rec, reg), rec["tuning"])
            rd.write_overrides(requested)
            rd.write_tuning_report(tuning_report(records))
            res.runner_s += out.elapsed_s
            res.iterations_run += 1
            res.timings.append({"iteration": n, "runner_s": out.elapsed_s, "total_s": time.perf_counter() - t_it})
            _notify(observers, "on_iteration", rec, m)
            if rec["status"] == "failed":
                nfail = sum(1 for r in records if r["status"] == "failed")
                why = rec["failure"]["reason"]
                if on_failure == "stop":
                    status = "failed"
                    raise RunnerError(f"iteration {n} failed ({why}); stopping (on_failure=stop)", path=rd.path)
                if nfail > max_failed:
                    status = "failed"
                    raise RunnerError(f"{nfail} failed iterations, more than run.max_failed_iterations="
                                      f"{max_failed} (last: iteration {n}: {why})", path=rd.path)
        if not arm:
            _baseline_arm(rd, runner, runner_label)
        status = "completed"
        rd.set_status("completed", finished_utc=utc_now())
        if not arm:
            rd.mark_latest()
    except SoakError as exc:
        if status == "completed" or arm:  # completed: only `latest` could not be updated; an arm: the run says
            raise
        # one line for the user: what stopped the run, how far it got (the records on disk), how to go on
        unmarked, marked = _mark_stopped(rd, status), True
        exc.args = (f"{exc.args[0]}; run {status} after {len(records)} iterations{unmarked}; "
                    f"continue with: soak run --resume {rd.path}",)
        raise
    finally:
        res.wall_s = time.perf_counter() - t_loop
        if status != "completed" and not marked:
            unmarked = _mark_stopped(rd, status)
            if unmarked:
                log.warning("run %s%s", status, unmarked)
        res.status = status
        m["status"] = status
        _notify(observers, "on_finish", m)
        rd.close()
    return res


def _mark_stopped(rd: RunDir, status: str) -> str:
    """Write the stop status to run.json (best effort: the disk may be why we stopped); "" or what failed."""
    try:
        rd.set_status(status, finished_utc=utc_now())
    except SoakError as exc:
        return f" (run.json not updated: {exc})"
    return ""


def run_soak(*, runs_dir: str | Path, iterations: int, cfg: Mapping[str, Any], profile_name: str,
             profile_values: Mapping[str, Any], seed: int = 0, scenario: str = "default", auto_tune: bool = False,
             duration_s: float | None = None, runner: Runner | None = None, runner_label: str | None = None,
             observers: Sequence[Any] = (), confirm_iterations: int | None = None,
             baseline: tuple[str, Mapping[str, Any]] | None = None) -> SoakResult:
    """Run a new soak of ``iterations`` iterations in a fresh ``runs_dir/<id>/``.

    Auto-tuned: ``iterations`` tuning iterations, then ``confirm_iterations`` (default ``[confirm]
    iterations``) frozen ones on fresh windows and the ``baseline`` (name, values; default the
    starting profile) on the same windows. ``runner`` defaults to the simulator on ``scenario``.
    Raises InputError (exit 2) for bad arguments or an unusable runs dir, RunnerError (exit 4) when
    failures exceed the policy.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InputError(f"expected an integer >= 1, got {iterations!r}", field="iterations")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"expected an integer >= 0, got {seed!r}", field="seed")
    cfg = _roundtrip(dict(cfg))
    dur = float(duration_s if duration_s is not None else cfg["run"]["duration_s"])
    if not dur > 0:
        raise InputError(f"expected a number > 0, got {dur!r}", field="duration_s")
    if runner is None:
        runner = _runners.make_runner("sim", scenario=scenario, duration_s=dur, config=cfg)
    label = runner_label or runner.name
    k = int(cfg.get("confirm", {}).get("iterations", 0)) if confirm_iterations is None else confirm_iterations
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InputError(f"expected an integer >= 0, got {k!r}", field="confirm_iterations")
    extra: dict[str, Any] = {}
    if auto_tune and k:
        name, values = baseline if baseline is not None else (profile_name, profile_values)
        extra = {"confirm_iterations": k, "baseline": {"name": str(name), "values": dict(values)}}
    else:
        k = 0
    manifest = new_manifest(config=cfg, seed=seed, runner=label, scenario=str(scenario), profile_name=profile_name,
                            profile_values=profile_values, iterations_planned=iterations + k, auto_tune=auto_tune,
                            duration_s=dur, extra=extra)
    rd = RunDir.create(runs_dir, _roundtrip(manifest))
    return _loop(rd, runner, label, [], observers)


def resume(run_dir: str | Path, *, runner: Runner | None = None, observers: Sequence[Any] = ()) -> SoakResult:
    """Continue an interrupted run from its last complete iteration (everything from disk).

    Refuses completed, foreign or in-progress (locked) directories with InputError (exit 2).
    """
    rd = RunDir.open_for_resume(run_dir)
    try:
        m = rd.manifest
        for key in ("config", "seed", "runner", "scenario", "iterations_planned", "auto_tune", "duration_s"):
            if key not in m:
                raise RecordError("missing in the run manifest; cannot resume", path=rd.path / MANIFEST, field=key)
        mpath = rd.path / MANIFEST
        try:
            validate_config(m["config"], mpath)
            m["config"]["run"]["max_failed_iterations"] + 0
            dict(m["profile"]["values"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise RecordError(f"run manifest is incomplete ({type(exc).__name__}: {exc}); cannot resume",
                              path=mpath) from None
        records = read_records(rd.path)
        nums = [r["iteration"] for r in records]
        if nums != list(range(1, len(nums) + 1)):
            raise RecordError(f"records are not contiguous from 1 ({nums[:10]}...); cannot resume", path=rd.path)
        planned = m["iterations_planned"]
        if isinstance(planned, bool) or not isinstance(planned, int) or planned < 1:
            raise RecordError(f"expected an integer >= 1, got {planned!r}; cannot resume", path=mpath,
                              field="iterations_planned")
        if len(records) > planned:
            # not a run this loop wrote: completing it would make a record set nothing else accepts 'latest'
            raise RecordError(f"{len(records)} records, more than the {planned} iterations planned; refusing to "
                              "resume (nothing changed)", path=mpath, field="iterations_planned")
        # checks passed: now clean up what a killed process left (temp files, a bot still running)
        rd.clean_temp()
        supervisor.reap(rd.path)
        if runner is None:
            runner = _runners.make_runner(m["runner"], scenario=m["scenario"], duration_s=float(m["duration_s"]),
                                 config=m["config"])
    except BaseException:
        rd.close()
        raise
    return _loop(rd, runner, m["runner"], records, observers)
