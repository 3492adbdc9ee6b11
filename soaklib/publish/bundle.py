"""Release bundle (DESIGN §11): reports, the tuned profile, CHANGELOG, rollback plan, canary checklist,
Prometheus alert rules for the canary's rollback triggers, and a MANIFEST of sha256 hashes.

The bundle is assembled in a temporary directory beside ``--out`` and renamed into place, so a
failure leaves nothing behind. ``verify_bundle`` re-hashes every file against the manifest.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from soaklib.core import io as _io
from soaklib.core.errors import CheckFailed, ConfigError, InputError, RecordError
from soaklib.core.numbers import duration_seconds, finite
from soaklib.core.params import registry
from soaklib.core.records import version_string
from soaklib.core.run import Run
from soaklib.core.text import fmt_num
from soaklib.execute import supervisor
from soaklib.judge.gate import evaluate
from soaklib.publish import markdown
from soaklib.store import rundir
from soaklib.store.loader import open_run
from soaklib.store.rundir import (
    AUDIT,
    DELTA_VERIFY,
    FAILURES,
    GATE,
    OVERRIDES,
    RECOMMENDATIONS,
    REPORTS_DIR,
    SNAPSHOT,
    write_errors,
)

MANIFEST = "MANIFEST.json"
PROFILE = "soak_profile.runtime_overrides.json"
PREVIOUS_PROFILE = "previous_profile.runtime_overrides.json"
RULES = "canary_alerts.rules.yml"
CHANGELOG = "CHANGELOG.md"
ROLLBACK_PLAN = "rollback_plan.md"
CANARY_CHECKLIST = "CANARY_CHECKLIST.md"
# copied from RUN/reports/analysis; value = the command that produces the file
REPORT_FILES = {
    SNAPSHOT: "soak report",
    f"{AUDIT}.html": "soak report",
    f"{AUDIT}.md": "soak report",
    f"{RECOMMENDATIONS}.md": "soak report",
    FAILURES: "soak report",
    f"{DELTA_VERIFY}.json": "soak verify",
    f"{DELTA_VERIFY}.md": "soak verify",
}
OPTIONAL_REPORT_FILES = (f"{RECOMMENDATIONS}.html", Path(FAILURES).with_suffix(".html").name, f"{AUDIT}.ipynb")
OPTIONAL_REPORT_DIRS = (f"{AUDIT}_files", f"{RECOMMENDATIONS}_files")  # nbconvert --to markdown images
GENERATED = (GATE, PROFILE, PREVIOUS_PROFILE, CHANGELOG, ROLLBACK_PLAN, CANARY_CHECKLIST, RULES)
REQUIRED = tuple(REPORT_FILES) + GENERATED
MANIFEST_SCHEMA = "1.0"

# Canary rollback triggers (seed tag_and_canary) -> Prometheus rules over the soak_* families (DESIGN §14).
# kpi, metric (base units), fires when metric <op> threshold, [canary] value key, [canary] for key,
# scale from the KPI unit to the metric's base unit, alert name, rollback action (seed rollback plan)
TRIGGERS = (
    ("maker_taker_ratio", "soak_maker_taker_ratio", "<", "maker_taker_min", "maker_taker_for", 1.0,
     "SoakCanaryMakerTakerLow", "quick rollback"),
    ("p95_latency_ms", "soak_p95_latency_seconds", ">", "p95_latency_max_ms", "p95_latency_for", 1e-3,
     "SoakCanaryP95LatencyHigh", "quick rollback"),
    ("risk_ratio", "soak_risk_ratio", ">", "risk_max", "risk_for", 1.0, "SoakCanaryRiskHigh", "full rollback"),
    ("net_bps", "soak_net_bps", "<", "net_bps_min", "net_bps_for", 1.0, "SoakCanaryNetEdgeNegative",
     "quick rollback"),
)
RULE_GROUP = "soak_canary_rollback"


# ------------------------------------------------------------------------------------------ helpers

def _num(v: Any) -> str:
    """A threshold or profile value as the bundle shows it: up to 10 significant digits."""
    return fmt_num(v, ".10g")


def _duration(v: Any, fld: str) -> str:
    if duration_seconds(v) is None:
        raise ConfigError(f"expected a Prometheus duration such as '5m', got {v!r}", field=fld)
    return v


def flat_profile(data: Any, reg, *, src: object) -> dict[str, Any]:
    """A runtime_overrides object as flat keys (nested registry paths accepted); unknown keys kept."""
    if not isinstance(data, dict):
        raise RecordError("expected a JSON object of parameters", path=src)
    out: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if key.startswith("_"):
                continue
            if not prefix and key in reg:
                out[key] = v
            elif reg.by_path(key) is not None:
                out[reg.by_path(key).name] = v
            elif isinstance(v, Mapping):
                walk(v, key + ".")
            else:
                out[key] = v  # not in our registry (e.g. a bot-specific knob): still diffed

    walk(data, "")
    return out


def profile_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list]:
    """{"changed": [(k, old, new)], "added": [(k, new)], "removed": [(k, old)], "unchanged": [k]}."""
    out: dict[str, list] = {"changed": [], "added": [], "removed": [], "unchanged": []}
    for k in sorted(set(old) | set(new)):
        if k not in old:
            out["added"].append((k, new[k]))
        elif k not in new:
            out["removed"].append((k, old[k]))
        elif _same(old[k], new[k]):
            out["unchanged"].append(k)
        else:
            out["changed"].append((k, old[k], new[k]))
    return out


def _same(a: Any, b: Any) -> bool:
    fa, fb = finite(a), finite(b)
    if fa is not None and fb is not None:
        return math.isclose(fa, fb, rel_tol=0.0, abs_tol=1e-12)
    return a == b


def _delta(a: Any, b: Any) -> float | int | None:
    """new - old of two profile values (an int for two ints); None unless both are numbers."""
    fa, fb = finite(a), finite(b)
    if fa is None or fb is None:
        return None
    d = round(fb - fa, 10)
    return int(d) if isinstance(a, int) and isinstance(b, int) else d


# ------------------------------------------------------------------------------------------ canary

def canary_triggers(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rollback triggers of ``[canary]`` with units resolved (KPI unit and metric base unit)."""
    c = cfg.get("canary")
    if not isinstance(c, Mapping):
        raise ConfigError("missing [canary] table", field="canary")
    out = []
    for kpi, metric, op, vkey, fkey, scale, alert, action in TRIGGERS:
        v = finite(c.get(vkey))
        if v is None:
            raise ConfigError(f"expected a number, got {c.get(vkey)!r}", field=f"canary.{vkey}")
        out.append({"kpi": kpi, "metric": metric, "op": op, "threshold": v,
                    "threshold_base": round(v * scale, 12), "for": _duration(c.get(fkey), f"canary.{fkey}"),
                    "alert": alert, "action": action})
    return out


def alert_rules_yaml(cfg: Mapping[str, Any], *, version: str, selector: str = "") -> str:
    """``canary_alerts.rules.yml``: one alerting rule per rollback trigger, plus an absent-data rule.

    The rules are a Python structure written by ``yaml.safe_dump``, so no string (untrusted or not)
    can break the document. ``selector`` is a PromQL label matcher such as ``{deployment="canary"}``.
    """
    version = _check_version(version)  # it also lands in label values, which Prometheus templates
    trig = canary_triggers(cfg)
    b = cfg.get("bundle", {})
    severity = str(b.get("alert_severity", "critical"))
    absent_for = _duration(b.get("absent_for", "10m"), "bundle.absent_for")

    def rule(alert: str, expr: str, for_: str, action: str, summary: str, description: str) -> dict[str, Any]:
        return {"alert": alert, "expr": expr, "for": for_,
                "labels": {"severity": severity, "action": action, "release": version},
                "annotations": {"summary": summary, "description": description}}

    rules = []
    for t in trig:
        word = "below" if t["op"] == "<" else "above"
        unit = " ms" if t["kpi"] == "p95_latency_ms" else ""
        rules.append(rule(t["alert"], f"{t['metric']}{selector} {t['op']} {_num(t['threshold_base'])}", t["for"],
                          t["action"].replace(" ", "_"),
                          f"{t['kpi']} {word} {_num(t['threshold'])}{unit} for {t['for']}", _describe(t, version)))
    # one family is enough: the exporter emits them together
    rules.append(rule("SoakCanaryMetricsAbsent", f"absent({trig[0]['metric']}{selector})", absent_for, "investigate",
                      "no soak_* canary metrics: the canary cannot be judged",
                      "No data is not a pass: check the exporter before continuing the rollout."))
    header = [f"Canary rollback triggers for release {version}",
              "Generated by soaklib (soak bundle); thresholds from [canary] in the soaklib config.",
              "Metric families are the soak_* gauges of `soak metrics` (base units: seconds, ratios 0-1)."]
    doc = {"groups": [{"name": RULE_GROUP, "rules": rules}]}
    # comments are not part of YAML's data model: the header goes in front of the dumped document
    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 16)


def _describe(t: Mapping[str, Any], version: str) -> str:
    return (f"{t['metric']} is {{{{ $value }}}} ({t['op']} {_num(t['threshold_base'])}) for {t['for']}: "
            f"{t['action']} of release {version} (see {ROLLBACK_PLAN}).")


def _soak_value(snapshot: Mapping[str, Any], kpi: str, agg: str) -> float | None:
    stats = snapshot.get("kpi_last_n") or snapshot.get("kpi_last8") or {}
    st = stats.get(kpi) if isinstance(stats, Mapping) else None
    return finite(st.get(agg)) if isinstance(st, Mapping) else None


def canary_phases(cfg: Mapping[str, Any], snapshot: Mapping[str, Any]) -> tuple[list[dict], list[str]]:
    """Phase thresholds: from the rollback trigger (fraction 0) toward this soak's value (fraction 1).

    The soak value uses the goal's aggregate (mean maker/taker, max p95, median risk, mean net). A soak
    value already on the wrong side of the trigger leaves the trigger as the threshold (noted).
    """
    b = cfg.get("bundle", {})
    traffic, durs, fracs = b.get("phase_traffic_pct"), b.get("phase_duration"), b.get("phase_fraction")
    if not (isinstance(traffic, list) and isinstance(durs, list) and isinstance(fracs, list)
            and len(traffic) == len(durs) == len(fracs) and traffic):
        raise ConfigError("phase_traffic_pct, phase_duration and phase_fraction must be lists of one length",
                          field="bundle")
    for i, f in enumerate(fracs):
        if finite(f) is None or not 0.0 <= f <= 1.0:
            raise ConfigError(f"expected a number in [0, 1], got {f!r}", field=f"bundle.phase_fraction[{i}]")
    goals = cfg.get("goals", {})
    notes: list[str] = []
    per_kpi = []
    for t in canary_triggers(cfg):
        agg = (goals.get(t["kpi"]) or {}).get("agg", "mean")
        s = _soak_value(snapshot, t["kpi"], agg)
        better_up = t["op"] == "<"  # fires when low -> higher is better
        if s is None:
            notes.append(f"{t['kpi']}: no {agg} in the snapshot; phases use the rollback trigger")
            s = t["threshold"]
        elif (better_up and s < t["threshold"]) or (not better_up and s > t["threshold"]):
            notes.append(f"{t['kpi']}: the soak's {agg} {_num(s)} is already past the rollback trigger "
                         f"{_num(t['threshold'])}")
            s = t["threshold"]
        per_kpi.append((t, agg, s))
    phases = []
    for i, (pct, dur, f) in enumerate(zip(traffic, durs, fracs)):
        th = {}
        for t, agg, s in per_kpi:
            v = t["threshold"] + float(f) * (s - t["threshold"])
            th[t["kpi"]] = round(v, 1 if t["kpi"] == "p95_latency_ms" else 4)
        phases.append({"phase": i + 1, "traffic_pct": pct, "duration": _duration(dur, f"bundle.phase_duration[{i}]"),
                       "fraction": float(f), "thresholds": th})
    return phases, notes


# ------------------------------------------------------------------------------------------ documents

def _kpi_rows(snapshot: Mapping[str, Any], gate_d: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CHANGELOG's KPI rows: the gate's goals first, then every other KPI of the snapshot."""
    stats = snapshot.get("kpi_last_n") or snapshot.get("kpi_last8") or {}
    stats = stats if isinstance(stats, Mapping) else {}
    goals = {g["kpi"]: g for g in gate_d.get("goals", [])}
    rows = []
    for k in list(goals) + [k for k in stats if k not in goals]:
        st = stats.get(k)
        rows.append({"kpi": k, "goal": goals.get(k), "stats": st if isinstance(st, Mapping) else {}})
    return rows


def changelog_md(*, version: str, date: str, gate_d: Mapping[str, Any], snapshot: Mapping[str, Any],
                 release: Mapping[str, Any], diff: Mapping[str, list], previous: Mapping[str, Any] | None,
                 previous_changelog: str | None) -> str:
    """Keep a Changelog 1.1.0 entry for this release, followed by the previous bundle's entries."""
    history = ""
    if previous_changelog:
        # keep the history: the previous bundle's version sections follow ours (latest first)
        m = re.search(r"^## \[", previous_changelog, flags=re.M)
        if m:
            history = previous_changelog[m.start():].rstrip("\n")
    return markdown.render("changelog.md.j2", version=version, date=date, gate=gate_d, release=release,
                           kpi_rows=_kpi_rows(snapshot, gate_d), diff=diff, previous=previous, delta=_delta,
                           history=history)


def rollback_plan_md(*, version: str, gate_d: Mapping[str, Any], prev_profile: Mapping[str, Any],
                     new_profile: Mapping[str, Any], prev_label: str, cfg: Mapping[str, Any], reg) -> str:
    keys = sorted(set(prev_profile) | set(new_profile))
    return markdown.render("rollback_plan.md.j2", version=version, gate=gate_d, prev=prev_profile, new=new_profile,
                           keys=keys, prev_label=prev_label, cold=[k for k in keys if k in reg and not reg[k].hot],
                           triggers=canary_triggers(cfg), PROFILE=PROFILE, PREVIOUS_PROFILE=PREVIOUS_PROFILE,
                           RULES=RULES, RULE_GROUP=RULE_GROUP)


def canary_checklist_md(*, version: str, gate_d: Mapping[str, Any], snapshot: Mapping[str, Any],
                        verify_d: Any, cfg: Mapping[str, Any]) -> str:
    phases, notes = canary_phases(cfg, snapshot)
    far = verify_d.get("full_apply_ratio") if isinstance(verify_d, Mapping) else None
    return markdown.render("canary_checklist.md.j2", version=version, gate=gate_d, phases=phases, notes=notes,
                           triggers=canary_triggers(cfg), threshold=(cfg.get("verify") or {}).get("threshold", 0.95),
                           far=finite(far), absent_for=(cfg.get("bundle") or {}).get("absent_for", "10m"),
                           PREVIOUS_PROFILE=PREVIOUS_PROFILE, RULES=RULES)


# ------------------------------------------------------------------------------------------ release facts

def release_facts(run: Run) -> dict[str, Any]:
    """What the tag message needs, from the run's records: applied changes and guards active at the end."""
    applied = 0
    applied_iters = []
    for rec in run.records:
        t = rec.get("tuning") if isinstance(rec, Mapping) else None
        if not isinstance(t, Mapping):
            continue
        n = 0
        for d in t.get("decisions") or []:
            if isinstance(d, Mapping) and d.get("verdict") in ("applied", "clamped") and finite(d.get("clamped_delta")):
                n += 1 if d.get("clamped_delta") != 0 else 0
        if not t.get("decisions") and t.get("applied") and isinstance(t.get("deltas"), Mapping):
            n = sum(1 for x in t["deltas"].values() if finite(x))  # seed records carry deltas only
        if n:
            applied += n
            applied_iters.append(int(rec.get("iteration", 0)))
    active: list[str] = []
    last = run.records[-1] if run.records else {}
    g = ((last.get("tuning") or {}).get("guards") or {}) if isinstance(last, Mapping) else {}
    if isinstance(g, Mapping):
        for k, val in sorted(g.items()):
            if k == "frozen_params" and val:
                active.append("frozen: " + ", ".join(str(x) for x in val))
            elif val is True:
                active.append(k)
    rg = (last.get("runtime_guards") or {}) if isinstance(last, Mapping) else {}
    if isinstance(rg, Mapping) and rg.get("partial_freeze_active"):
        active.append("partial_freeze_active")
    return {"run_id": (run.manifest or {}).get("run_id"), "applied_deltas": applied, "applied_iterations": applied_iters,
            "active_guards": active, "iterations": len(run.records)}


# ------------------------------------------------------------------------------------------ build

@dataclass
class BundleResult:
    path: Path
    version: str
    verdict: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _reports_dir(run: Run) -> Path:
    p = Path(run.path)
    cands = [p / REPORTS_DIR, p.parent.parent / REPORTS_DIR, p.parent / REPORTS_DIR]
    for c in cands:
        if (c / SNAPSHOT).is_file():
            return c
    return cands[0]


def _overrides_path(run: Run) -> Path:
    p = Path(run.path)
    for c in (p / OVERRIDES, p.parent / OVERRIDES):
        if c.is_file():
            return c
    raise InputError(f"missing {OVERRIDES} (the run's final parameters)", path=p / OVERRIDES)


_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def _check_version(version: str) -> str:
    # the version lands in Markdown, YAML and Prometheus label templates: keep it to a safe alphabet
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version):
        raise InputError(f"version {version!r} must be 1-128 characters of A-Z a-z 0-9 . _ + - "
                         "(starting with a letter or digit)", field="--version")
    return version


def load_previous(prev: str | os.PathLike, reg) -> dict[str, Any]:
    """A previous bundle's manifest, profile and changelog; InputError (exit 2) when it is not intact."""
    p = Path(prev)
    if not p.is_dir():
        raise InputError("previous bundle not found (expected a directory)", path=p)
    res = verify_bundle(p, raise_on_fail=False)
    if res.problems:
        raise InputError("previous bundle is not intact: " + "; ".join(res.problems), path=p)
    man = res.manifest
    prof = flat_profile(_io.read_json(p / PROFILE), reg, src=p / PROFILE)
    ch = (p / CHANGELOG).read_text("utf-8")
    return {"path": p, "version": man.get("version"), "profile": prof, "changelog": ch}


def build_bundle(run_path: str | os.PathLike | Run, out: str | os.PathLike, cfg: Mapping[str, Any], *,
                 version: str | None = None, previous: str | os.PathLike | None = None, force: bool = False,
                 now: _dt.datetime | None = None) -> BundleResult:
    """Assemble the release bundle of ``run_path`` at ``out`` (atomically: all or nothing).

    ``run_path`` may also be a Run already opened with ``open_run`` (the CLI has one; no second load)."""
    out = Path(out)
    with write_errors(out, "clean up an interrupted bundle"):
        _recover(out)
    if out.exists() or out.is_symlink():
        if not force:
            raise InputError("output already exists; pass --force to replace it", path=out)
        if not out.is_dir() or out.is_symlink() or not (out / MANIFEST).is_file():
            # --force replaces a bundle, never an arbitrary directory
            raise InputError("--force only replaces an existing bundle (a directory with MANIFEST.json)", path=out)
    version = _check_version(version if version is not None else out.resolve().name)
    reg = registry(cfg)
    prev = load_previous(previous, reg) if previous is not None else None

    if isinstance(run_path, Run):
        run, run_path = run_path, run_path.path  # the path for messages
    else:
        run = open_run(run_path)
    rdir = _reports_dir(run)
    missing = [f"{name} (written by `{cmd}`)" for name, cmd in REPORT_FILES.items() if not (rdir / name).is_file()]
    if not (rdir / SNAPSHOT).is_file():
        raise InputError(f"missing {SNAPSHOT}; run `soak report {run_path}` first", path=rdir / SNAPSHOT)
    snapshot = _io.read_json(rdir / SNAPSHOT)
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("kpi_last_n", snapshot.get("kpi_last8")), dict):
        raise RecordError("not a post-soak snapshot: expected an object with kpi_last_n", path=rdir / SNAPSHOT)
    if missing:
        raise InputError("report files missing: " + ", ".join(missing), path=rdir)
    total = snapshot.get("iterations_total")
    if isinstance(total, int) and not isinstance(total, bool) and total != len(run.records):
        # e.g. the run was resumed after `soak report`: the reports describe another run state
        raise InputError(f"stale snapshot: it covers {total} iterations, the run has {len(run.records)}; "
                         f"run `soak report {run_path}` again", path=rdir / SNAPSHOT)
    verify_d = _io.read_json(rdir / f"{DELTA_VERIFY}.json")
    ov_path = _overrides_path(run)
    new_profile = flat_profile(_io.read_json(ov_path), reg, src=ov_path)

    last_n = snapshot.get("last_n") if isinstance(snapshot.get("last_n"), int) and snapshot["last_n"] >= 1 else None
    gate_res = evaluate(run.iterations, cfg, last_n)
    gate_d = gate_res.to_dict()
    notes = [f"run: {w}" for w in run.warnings]
    if snapshot.get("verdict") and snapshot.get("verdict") != gate_res.verdict:
        notes.append(f"snapshot verdict {snapshot.get('verdict')} differs from the gate's {gate_res.verdict} "
                     "(config changed since `soak report`?); the bundle uses the gate's")
        gate_d["notes"].append(notes[-1])
    facts = release_facts(run)
    if prev is not None:
        prev_profile, prev_label = prev["profile"], f"release {prev['version']} from {prev['path']}"
    else:
        start = (run.manifest.get("profile") or {}) if isinstance(run.manifest, Mapping) else {}
        vals = start.get("values") if isinstance(start, Mapping) else None
        if not isinstance(vals, Mapping):
            raise InputError("no --previous bundle and the run manifest has no starting profile values",
                             path=Path(run.path) / rundir.MANIFEST, field="profile.values")
        prev_profile = flat_profile(dict(vals), reg, src=Path(run.path) / rundir.MANIFEST)
        prev_label = f"the soak's starting profile {start.get('name', '')}".rstrip()
    diff = profile_diff(prev_profile, new_profile)
    now = now or _dt.datetime.now(_dt.timezone.utc)

    docs: dict[str, str] = {
        GATE: _io.dumps(gate_d) + "\n",
        PREVIOUS_PROFILE: _io.dumps(prev_profile) + "\n",
        CHANGELOG: changelog_md(version=version, date=now.date().isoformat(), gate_d=gate_d, snapshot=snapshot,
                                     release=facts, diff=diff, previous=prev,
                                     previous_changelog=prev["changelog"] if prev else None),
        ROLLBACK_PLAN: rollback_plan_md(version=version, gate_d=gate_d, prev_profile=prev_profile,
                                             new_profile=new_profile, prev_label=prev_label, cfg=cfg, reg=reg),
        CANARY_CHECKLIST: canary_checklist_md(version=version, gate_d=gate_d, snapshot=snapshot,
                                                   verify_d=verify_d, cfg=cfg),
        RULES: alert_rules_yaml(cfg, version=version),
    }

    parent = out.parent if str(out.parent) else Path(".")
    created = []
    for d in reversed([parent, *parent.parents]):
        if not d.exists():
            created.append(d)
    with write_errors(parent, "create the output's parent"):
        parent.mkdir(parents=True, exist_ok=True)
    with write_errors(parent, "create the bundle's temporary directory"):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=parent))
    # disk full, read-only: one line naming the bundle; the temp dir goes either way
    with write_errors(out, "write the bundle"):
        try:
            for name in REPORT_FILES:
                shutil.copyfile(rdir / name, tmp / name)
            for name in OPTIONAL_REPORT_FILES:
                if (rdir / name).is_file():
                    shutil.copyfile(rdir / name, tmp / name)
            for name in OPTIONAL_REPORT_DIRS:
                if (rdir / name).is_dir():
                    shutil.copytree(rdir / name, tmp / name, symlinks=False)
            shutil.copyfile(ov_path, tmp / PROFILE)
            for name, text in docs.items():
                _write_doc(tmp / name, text)
            files = {rel: {"sha256": _io.sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
                     for rel in _list_files(tmp) if rel != MANIFEST}
            manifest = {
                "schema_version": MANIFEST_SCHEMA,
                "generator": version_string(),
                "version": version,
                "created_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "verdict": gate_res.verdict,
                "release": {**facts, "gate": {"verdict": gate_res.verdict, "window": gate_d["window"],
                                              "last_n": gate_d["last_n"],
                                              "goals": [{k: g[k] for k in ("kpi", "agg", "op", "hard", "soft", "value",
                                                                           "status")} for g in gate_d["goals"]]},
                            "previous_version": prev["version"] if prev else None,
                            "changed_params": [k for k, _a, _b in diff["changed"]]},
                "files": files,
            }
            _io.write_json(tmp / MANIFEST, manifest)
            os.chmod(tmp, 0o755)
            _install(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(created):
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
    return BundleResult(path=out, version=version, verdict=gate_res.verdict, files=files, notes=notes)


def _write_doc(path: Path, text: str) -> None:
    _io.write_text(path, text)


def _install(tmp: Path, out: Path) -> None:
    """Put the finished temp dir at ``out``. An existing bundle is exchanged with it in one step
    (renameat2 RENAME_EXCHANGE), so ``out`` is always a whole bundle, old or new; the old one, now
    at ``tmp``, is removed (by the next run if we are killed first). Where the file system cannot
    exchange, the old bundle is renamed aside first and the next run restores it if we die between."""
    if out.exists():
        if _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
            old.rmdir()
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)
    _io._fsync_dir(out.parent)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2); False where that is not available."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # no such libc function (not Linux, or glibc < 2.28)
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


# a temp or swapped-out dir of `soak bundle` process <pid> for the bundle <name>
_LEFTOVER_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[^/]+$")


def _recover(out: Path) -> None:
    """Clean up after a `soak bundle` of ``out`` that was killed: its temp dirs are removed; an old
    bundle it had renamed aside comes back when nothing is at ``out``. Only dirs of dead processes."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return
    for p in sorted(parent.iterdir()):
        m = _LEFTOVER_RE.match(p.name)
        if not m or m["name"] != out.name or not p.is_dir() or p.is_symlink() or supervisor.alive(int(m["pid"])):
            continue
        if m["kind"] == "old" and not (out.exists() or out.is_symlink()) and (p / MANIFEST).is_file():
            os.rename(p, out)
        else:
            shutil.rmtree(p)


def _list_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            out.append((Path(dirpath) / f).relative_to(root).as_posix())
    return sorted(out)


# ------------------------------------------------------------------------------------------ verify

@dataclass
class VerifyResult:
    path: Path
    ok: bool
    problems: list[str]
    checked: int
    manifest: dict


def verify_bundle(path: str | os.PathLike, *, raise_on_fail: bool = True) -> VerifyResult:
    """Re-hash every file against MANIFEST.json and check the required files are listed.

    Problems name the file: changed (hash or size), missing, not in the manifest, required but
    unlisted. With ``raise_on_fail`` a problem raises CheckFailed (exit 1); a missing directory
    raises InputError (exit 2).
    """
    p = Path(path)
    if not p.is_dir():
        raise InputError("bundle directory not found", path=p)
    problems: list[str] = []
    manifest: dict = {}
    try:
        manifest = _io.read_json(p / MANIFEST)
    except RecordError as exc:
        problems.append(f"{MANIFEST}: {str(exc).split(': ', 1)[-1]}")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not problems and not isinstance(files, dict):
        problems.append(f"{MANIFEST}: no 'files' object")
    checked = 0
    if not problems:
        for rel, meta in sorted(files.items()):
            rp = Path(rel)
            if rp.is_absolute() or ".." in rp.parts or not rel:
                problems.append(f"{rel}: unsafe path in the manifest")
                continue
            f = p / rp
            if not f.is_file() or f.is_symlink():
                problems.append(f"{rel}: missing")
                continue
            want = meta.get("sha256") if isinstance(meta, dict) else None
            checked += 1
            if _io.sha256_file(f) != want:
                problems.append(f"{rel}: content changed (sha256 does not match the manifest)")
        for rel in REQUIRED:
            if rel not in files:
                problems.append(f"{rel}: required file not listed in the manifest")
        for rel in _list_files(p):
            if rel != MANIFEST and rel not in files:
                problems.append(f"{rel}: not in the manifest")
    res = VerifyResult(path=p, ok=not problems, problems=problems, checked=checked,
                       manifest=manifest if isinstance(manifest, dict) else {})
    if problems and raise_on_fail:
        raise CheckFailed("bundle verification failed: " + "; ".join(problems), path=p)
    return res
