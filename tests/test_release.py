"""Issue 18 acceptance: release artifacts a release manager and an on-call engineer can act on.

Phases = the configured goals; integrity of every field read (MANIFEST.json, GATE.json, RELEASE.json);
no absolute path in any artifact or tag message (the rendered notebooks included); first release;
--previous found beside --out; readiness gates bundle and tag (--allow-not-ready); the CHANGELOG and the
tag message carry the comparison against the run's baseline arm and the previous release's run (issue
13 item 5, issue 18 item 4); bad input is one line, exit 2."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import require_tool, run_cli
from test_bundle import make_reported_run, ramp

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.judge.gate import evaluate
from soaklib.judge.readiness import NOT_READY, READY, READY_WITH_WARNINGS, readiness
from soaklib.publish import bundle, reports
from soaklib.store.loader import open_run
from soaklib.store.rundir import BASELINE_DIR, COMPARE_REPORT
from soaklib.store.synthetic import write_synthetic_run

FAILING = {"maker_taker_ratio": 0.5}  # below the 0.83 goal: gate FAIL


@pytest.fixture()
def git_repo(tmp_path, monkeypatch):
    require_tool("git")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for k, v in {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "T",
                 "GIT_COMMITTER_EMAIL": "t@example.invalid"}.items():
        monkeypatch.setenv(k, v)
    r = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    (r / "f").write_text("x")
    subprocess.run(["git", "-C", str(r), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(r), "commit", "-q", "-m", "i"], check=True)
    return r


def tags(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "tag", "-l"], capture_output=True, text=True, check=True).stdout


# ------------------------------------------------------------------ phases = the goals, for different soaks

@pytest.mark.parametrize("kpis, goals", [
    ({"maker_taker_ratio": 1.0, "risk_ratio": 0.0017, "net_bps": 3.58}, {}),  # the issue's own numbers
    ({"maker_taker_ratio": 0.86, "risk_ratio": 0.35, "net_bps": 2.6}, {"net_bps": {"hard": 2.0, "soft": 2.2}}),
    ({"maker_taker_ratio": 0.95, "p95_latency_ms": 120.0}, {"p95_latency_ms": {"hard": 300.0, "soft": 250.0},
                                                             "risk_ratio": {"hard": 0.3, "soft": 0.28}}),
])
def test_phase_thresholds_equal_the_configured_goals(tmp_path, kpis, goals):
    cfg = load_config(overrides={"goals": goals} if goals else None)
    run = make_reported_run(tmp_path / "runs", params=ramp, kpis=kpis, cfg=cfg)
    out = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(run, out, cfg, allow_not_ready=True)
    text = (out / "CANARY_CHECKLIST.md").read_text()
    phases = text.split("## Phases", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in phases.splitlines() if r.startswith("| ") and "over the phase" in r]
    assert len(rows) == 4 * len(cfg["goals"])
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        g = cfg["goals"][cells[3]]
        fmt = bundle._kpi_fmt(cells[3])
        unit = " ms" if cells[3] == "p95_latency_ms" else ""
        assert cells[5] == f"{bundle.NEGATE[g['op']]} {format(g['hard'], fmt)}{unit}", r
        assert cells[6] == f"{bundle.NEGATE[g['op']]} {format(g['soft'], fmt)}{unit}", r
    # the seed's four rollback triggers stay
    for t in ("< 0.7 | 5m", "> 500 ms | 3m", "> 0.6 | 2m", "< 0 | 10m"):
        assert t in text


# ------------------------------------------------------------------ integrity of every field that is read

@pytest.fixture()
def built(tmp_path):
    out = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(make_reported_run(tmp_path / "runs", params=ramp), out, load_config())
    return out


def _edits(doc, prefix=()):
    """Every leaf path of a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _edits(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _edits(v, prefix + (i,))
    else:
        yield prefix


def _set(doc, path, value):
    for k in path[:-1]:
        doc = doc[k]
    doc[path[-1]] = value


def _tampered(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if v is None:
        return "x"
    return "PASS" if v != "PASS" else "FAIL"


@pytest.mark.parametrize("name", [bundle.MANIFEST, bundle.GATE, bundle.RELEASE])
def test_tampering_any_field_fails_verify(built, name):
    orig = (built / name).read_bytes()
    doc = json.loads(orig)
    paths = list(_edits(doc))
    assert len(paths) > 5
    for path in paths:
        d = json.loads(orig)
        cur = d
        for k in path:
            cur = cur[k]
        _set(d, path, _tampered(cur))
        _io.write_json(built / name, d)
        assert not bundle.verify_bundle(built, raise_on_fail=False).ok, (name, path)
    (built / name).write_bytes(orig)
    assert bundle.verify_bundle(built).ok


def test_verdict_edited_to_pass_is_not_tagged(tmp_path, git_repo, capsys):
    """The issue's trap: a FAIL run's manifest verdict edited to PASS passed verify and tagged PASS."""
    run = make_reported_run(tmp_path / "runs", params=ramp, kpis=FAILING)
    out = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(run, out, load_config(), allow_not_ready=True)
    assert "verdict" not in _io.read_json(out / bundle.MANIFEST)
    gate = _io.read_json(out / bundle.GATE)
    assert gate["verdict"] == "FAIL"
    gate["verdict"] = "PASS"
    _io.write_json(out / bundle.GATE, gate)
    code, _o, err = run_cli(["tag", out, "--repo", git_repo, "--allow-not-ready"], capsys)
    assert code == 1 and "GATE.json: content changed" in err and tags(git_repo) == ""
    code, _o, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 1 and err.count("\n") == 1


# ------------------------------------------------------------------ paths, first release, previous

def test_no_artifact_or_tag_message_holds_the_working_directory(tmp_path, git_repo, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = make_reported_run(Path("runs"), params=ramp)
    for v in ("v1.0.0", "v1.1.0"):
        code, _o, err = run_cli(["bundle", run, "--out", f"release/{v}", "--version", v], capsys)
        assert code == 0, err
    code, out, err = run_cli(["tag", "release/v1.1.0", "--repo", git_repo, "--dry-run"], capsys)
    assert code == 0, err
    cwd = str(tmp_path.resolve())
    assert cwd not in out.split("message:", 1)[1]  # the tag message (the dry-run echo names --repo as given)
    # every file of the bundle: the generated ones, the dashboard and the copied reports (the delta
    # verification report names its run relative to the working directory)
    files = [f for f in (tmp_path / "release").rglob("*") if f.is_file()]
    assert {bundle.DASHBOARD, "DELTA_VERIFY_REPORT.json", "DELTA_VERIFY_REPORT.md"} <= {f.name for f in files}
    for f in files:
        assert cwd not in f.read_text(errors="replace"), f
    assert "Run: `runs/" in (tmp_path / "release/v1.1.0/DELTA_VERIFY_REPORT.md").read_text()
    plan = (tmp_path / "release/v1.1.0/rollback_plan.md").read_text()
    assert "soak bundle verify release/v1.1.0" in plan and "git checkout v1.0.0" in plan
    assert "<" + "this bundle>" not in plan and "<bot dir>" not in plan and "<previous tag>" not in plan
    # an absolute --out still writes no absolute path
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "release" / "v1.2.0"], capsys)
    assert code == 0, err
    for f in (tmp_path / "release" / "v1.2.0").rglob("*"):
        if f.is_file():
            assert cwd not in f.read_text(errors="replace"), f


def _base_kpis(i: int) -> dict:
    return {"net_bps": 2.6 + 0.2 * (i % 3), "p95_latency_ms": 300.0 + i, "pnl_quote": 9.0 + (i % 4)}


def with_baseline_arm(run: Path, *, seed: int = 0) -> Path:
    """Give ``run`` (a make_reported_run run) a baseline arm on its (seed, window) pairs whose KPIs are
    ``_base_kpis``: the run's net edge is ``ramp_kpis`` − ``_base_kpis`` away from it."""
    write_synthetic_run(run, 10, kpis=_base_kpis, seed=seed, latest=False).rename(run / BASELINE_DIR)
    return run


def ramp_kpis(i: int) -> dict:
    return {**_base_kpis(i), "net_bps": _base_kpis(i)["net_bps"] + 0.5}


def test_no_absolute_path_in_a_bundle_with_the_rendered_notebooks(tmp_path, git_repo, capsys, monkeypatch):
    """`soak report` executes the notebooks in the cwd with the run named relative to it: the bundled
    POST_SOAK_AUDIT.ipynb and COMPARE_REPORT.ipynb (papermill's parameters and paths) hold no absolute path."""
    monkeypatch.chdir(tmp_path)
    run = with_baseline_arm(make_reported_run(Path("runs"), params=ramp, kpis=ramp_kpis))
    reports.render(run)
    code, _o, err = run_cli(["bundle", run, "--out", "release/v1.0.0", "--version", "v1.0.0"], capsys)
    assert code == 0, err
    names = {f.name for f in (tmp_path / "release/v1.0.0").rglob("*")}
    assert {"POST_SOAK_AUDIT.ipynb", f"{COMPARE_REPORT}.ipynb", f"{COMPARE_REPORT}.html"} <= names
    nb = json.loads((tmp_path / "release/v1.0.0/POST_SOAK_AUDIT.ipynb").read_text())
    pm = nb["metadata"]["papermill"]
    assert pm["parameters"]["src"] == str(run) and not Path(pm["input_path"]).is_absolute()
    assert not Path(pm["output_path"]).is_absolute()
    code, out, err = run_cli(["tag", "release/v1.0.0", "--repo", git_repo, "--dry-run"], capsys)
    assert code == 0, err
    cwd = str(tmp_path.resolve())
    assert cwd not in out.split("message:", 1)[1]
    for f in (tmp_path / "release").rglob("*"):
        if f.is_file():
            assert cwd not in f.read_text(errors="replace"), f


def test_changelog_and_tag_carry_the_comparison_with_the_baseline_arm(tmp_path, git_repo, capsys):
    run = with_baseline_arm(make_reported_run(tmp_path / "runs", params=ramp, kpis=ramp_kpis))
    out = tmp_path / "release" / "v2.0.0"
    code, _o, err = run_cli(["bundle", run, "--out", out], capsys)
    assert code == 0, err
    rel = _io.read_json(out / bundle.RELEASE)
    (c,) = rel["comparisons"]
    assert c["against"] == "baseline" and c["method"] == "paired-wilcoxon" and c["n_pairs"] == 10
    net = next(k for k in c["kpis"] if k["kpi"] == "net_bps")
    assert net["verdict"] == "BETTER" and net["estimate"] == pytest.approx(0.5)
    ch = (out / "CHANGELOG.md").read_text()
    section = ch.split("### Compared with the baseline arm (profile best_cell)", 1)[1].split("\n## ", 1)[0]
    assert "Paired by (seed, window)" in section and "10 pairs" in section and "**PASS**" in section
    assert "| net_bps | 10 | 0.500 | [0.500, 0.500] | " in section and "| BETTER |" in section
    code, msg, err = run_cli(["tag", out, "--repo", git_repo, "--dry-run"], capsys)
    assert code == 0, err
    msg = msg.split("message:", 1)[1]
    assert "Compared with the baseline arm (profile best_cell) (paired-wilcoxon, 10 pairs): PASS" in msg
    assert "  net_bps: 0.500 [0.500, 0.500] BETTER" in msg
    # tampering with the comparison is caught: it is in the hashed RELEASE.json
    rel["comparisons"][0]["verdict"] = "FAIL"
    _io.write_json(out / bundle.RELEASE, rel)
    code, _o, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 1 and "RELEASE.json: content changed" in err


def test_a_run_without_a_baseline_keeps_its_release_files(tmp_path):
    """No baseline arm, no previous run: no comparison section, RELEASE.json without the key."""
    run = make_reported_run(tmp_path / "runs", params=ramp)
    bundle.build_bundle(run, tmp_path / "rel" / "v1.0.0", load_config())
    assert "comparisons" not in _io.read_json(tmp_path / "rel/v1.0.0" / bundle.RELEASE)
    assert "Compared with" not in (tmp_path / "rel/v1.0.0/CHANGELOG.md").read_text()


@pytest.mark.parametrize("seed, method", [(0, "paired-wilcoxon"), (5, "unpaired-mann-whitney")])
def test_changelog_compares_with_the_previous_release_s_run(tmp_path, git_repo, capsys, seed, method):
    """The previous RELEASE.json names its run; found beside this run it is compared: paired when the
    two share (seed, window) pairs, else Mann–Whitney, said."""
    cfg = load_config()
    old = make_reported_run(tmp_path / "runs", params=ramp, kpis=_base_kpis)
    bundle.build_bundle(old, tmp_path / "rel" / "v1.0.0", cfg)
    new = write_synthetic_run(tmp_path / "runs", 10, params=ramp, kpis=ramp_kpis, seed=seed)
    rd = new / "reports" / "analysis"
    for f in (tmp_path / "runs").glob("*/reports/analysis/*"):
        if f.parent != rd:
            rd.mkdir(parents=True, exist_ok=True)
            (rd / f.name).write_bytes(f.read_bytes())
    res = bundle.build_bundle(new, tmp_path / "rel" / "v1.1.0", cfg)
    assert res.previous == "v1.0.0"
    (c,) = _io.read_json(tmp_path / "rel/v1.1.0" / bundle.RELEASE)["comparisons"]
    assert c["against"] == "previous" and c["method"] == method and c["run_id"] == open_run(old).manifest["run_id"]
    ch = (tmp_path / "rel/v1.1.0/CHANGELOG.md").read_text()
    assert "### Compared with release v1.0.0 (its run)" in ch
    assert ("Paired by (seed, window)" if seed == 0 else "Unpaired (Mann–Whitney") in ch
    code, msg, err = run_cli(["tag", tmp_path / "rel/v1.1.0", "--repo", git_repo, "--dry-run"], capsys)
    assert code == 0, err
    assert f"Compared with release v1.0.0 (its run) ({method}, " in msg and "  net_bps: " in msg
    # the older entry in the carried history has no comparison of its own
    assert ch.count("### Compared with") == 1


def test_first_release_and_previous_found_beside_out(tmp_path, capsys):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "release" / "v1.3.0"], capsys)
    assert code == 0 and "first release" in err
    rel = _io.read_json(tmp_path / "release/v1.3.0" / bundle.RELEASE)
    assert rel["previous"] is None
    assert "first release" in (tmp_path / "release/v1.3.0/rollback_plan.md").read_text()
    # without --previous, the newest older bundle beside --out is the previous release (said on stderr)
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "release" / "v1.4.0"], capsys)
    assert code == 0 and "previous release: " in err and "v1.3.0" in err
    b = tmp_path / "release" / "v1.4.0"
    assert _io.read_json(b / bundle.RELEASE)["previous"]["version"] == "v1.3.0"
    assert _io.read_json(b / bundle.PREVIOUS_PROFILE) == _io.read_json(tmp_path / "release/v1.3.0" / bundle.PROFILE)
    ch = (b / "CHANGELOG.md").read_text()
    assert ch.index("## [Unreleased]") < ch.index("## [1.4.0] - ") < ch.index("## [1.3.0] - ")
    # a hotfix of an older line picks the newest bundle below it, not v1.4.0
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "release" / "v1.3.1"], capsys)
    assert code == 0 and "v1.3.0" in err
    # a version not newer than --previous is refused
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "x" / "v1.2.0", "--previous", b], capsys)
    assert code == 2 and err.count("\n") == 1 and "not newer" in err


def test_compare_links_when_the_repository_is_known(tmp_path):
    cfg = load_config(overrides={"bundle": {"repository_url": "https://github.com/org/bot"}})
    run = make_reported_run(tmp_path / "runs", params=ramp)
    bundle.build_bundle(run, tmp_path / "rel" / "v1.0.0", cfg)
    bundle.build_bundle(run, tmp_path / "rel" / "v1.1.0", cfg)
    ch = (tmp_path / "rel" / "v1.1.0" / "CHANGELOG.md").read_text()
    assert ch.rstrip().endswith("[1.0.0]: https://github.com/org/bot/releases/tag/v1.0.0")
    assert "[Unreleased]: https://github.com/org/bot/compare/v1.1.0...HEAD\n" in ch
    assert "[1.1.0]: https://github.com/org/bot/compare/v1.0.0...v1.1.0\n" in ch
    assert ch.count("[1.0.0]: ") == 1


# ------------------------------------------------------------------ readiness gates bundle and tag

def test_readiness_states(tmp_path):
    cfg = load_config()
    ok = open_run(write_synthetic_run(tmp_path / "a", 10))
    assert readiness(evaluate(ok, cfg), None, ok, cfg=cfg).state == READY
    bad = open_run(write_synthetic_run(tmp_path / "b", 10, kpis=FAILING))
    r = readiness(evaluate(bad, cfg), None, bad, cfg=cfg)
    assert r.state == NOT_READY and "gate FAIL (maker_taker_ratio)" in r.reasons[0]
    one_failed = open_run(write_synthetic_run(tmp_path / "c", 12, failed={10}))
    r = readiness(evaluate(one_failed, cfg), None, one_failed, cfg=cfg)
    assert r.state == READY_WITH_WARNINGS and "inside the gate window" in r.reasons[0]
    many = open_run(write_synthetic_run(tmp_path / "d", 12, failed={1, 2}))
    assert readiness(evaluate(many, cfg), None, many, cfg=cfg).state == NOT_READY  # 2/12 > 0.10
    short = open_run(write_synthetic_run(tmp_path / "e", 3))
    assert readiness(evaluate(short, cfg), None, short, cfg=cfg).state == "INCONCLUSIVE"


def test_fail_run_refused_by_bundle_and_tag_unless_allowed(tmp_path, git_repo, capsys):
    run = make_reported_run(tmp_path / "runs", params=ramp, kpis=FAILING)
    out = tmp_path / "rel" / "v1.0.0"
    code, stdout, err = run_cli(["bundle", run, "--out", out], capsys)
    assert code == 1 and err.count("\n") == 1 and "NOT READY" in err and "--allow-not-ready" in err
    assert not (tmp_path / "rel").exists()
    code, stdout, err = run_cli(["bundle", run, "--out", out, "--allow-not-ready"], capsys)
    assert code == 0, err
    assert "readiness NOT READY -- shipped with --allow-not-ready" in stdout
    entry = (out / "CHANGELOG.md").read_text().split("## [1.0.0]", 1)[1]
    assert entry.splitlines()[0].endswith("[NOT READY]")
    code, _o, err = run_cli(["tag", out, "--repo", git_repo], capsys)
    assert code == 1 and err.count("\n") == 1 and "NOT READY" in err and tags(git_repo) == ""
    code, _o, err = run_cli(["tag", out, "--repo", git_repo, "--allow-not-ready"], capsys)
    assert code == 0, err
    msg = subprocess.run(["git", "-C", str(git_repo), "tag", "-l", "--format=%(contents)", "v1.0.0"],
                         capture_output=True, text=True, check=True).stdout
    assert msg.splitlines()[0].startswith("NOT READY release v1.0.0, shipped with --allow-not-ready: gate FAIL")
    assert "Verdict: FAIL" in msg


# ------------------------------------------------------------------ bad input: one line, exit 2

@pytest.mark.parametrize("args, word", [
    (["--version", "1.5"], "--version"),
    (["--version", "v1.4"], "--version"),
    (["--version", "banana"], "--version"),
    (["--previous", "NOTABUNDLE"], "not a release bundle"),
    (["--selector", "job=mm-bot"], "--selector"),
    (["--selector", 'job="a" instance="b"'], "--selector"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, word):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    (tmp_path / "NOTABUNDLE").mkdir()
    args = [a.replace("NOTABUNDLE", str(tmp_path / "NOTABUNDLE")) for a in args]
    out = tmp_path / "rel" / "v1.0.0"
    code, _o, err = run_cli(["bundle", run, "--out", out, *args], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("soak: error: ") and word in err, err
    assert not (tmp_path / "rel").exists()
