"""`soak tag`: annotated tags in temporary git repos, never prompting, dry-run writing nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_tool, run_cli
from test_bundle import make_reported_run, ramp

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.publish import bundle

pytestmark = pytest.mark.system


@pytest.fixture(autouse=True)
def git_env(tmp_path, monkeypatch):
    """Isolated git: no user/global config, a fixed identity."""
    require_tool("git")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for k, v in {"GIT_AUTHOR_NAME": "Soak Test", "GIT_AUTHOR_EMAIL": "soak@example.invalid",
                 "GIT_COMMITTER_NAME": "Soak Test", "GIT_COMMITTER_EMAIL": "soak@example.invalid"}.items():
        monkeypatch.setenv(k, v)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path):
    r = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    (r / "README").write_text("strategy\n")
    git(r, "add", "README")
    git(r, "commit", "-q", "-m", "initial")
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tagbundle")
    out = tmp / "release" / "v1.4.0"
    bundle.build_bundle(make_reported_run(tmp / "runs", params=ramp), out, load_config())
    return out



def tree_state(*roots: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under roots (including .git) with size, mtime and content."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns, p.read_bytes())
    return out


def test_annotated_tag_carries_kpis(repo, built, capsys):
    code, out, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", repo], capsys)
    assert code == 0, err
    assert git(repo, "cat-file", "-t", "v1.4.0").strip() == "tag"
    assert git(repo, "rev-parse", "v1.4.0^{commit}") == git(repo, "rev-parse", "HEAD")
    msg = git(repo, "tag", "-l", "--format=%(contents)", "v1.4.0")
    gate, rel = _io.read_json(built / "GATE.json"), _io.read_json(built / bundle.RELEASE)
    assert msg.splitlines()[0] == "soak-validated release v1.4.0 (READY)"
    assert "Verdict: PASS" in msg and "Readiness: READY" in msg
    for g in gate["goals"]:
        assert f"{g['kpi']}: {g['agg']}={g['value']:.4g} (goal {g['op']} {g['hard']:.4g}) {g['status']}" in msg
    assert f"Applied deltas: {rel['applied_deltas']} parameter change(s) in 3 iteration(s)" in msg
    assert str(built) not in msg and "Bundle: " in msg  # no absolute path
    assert "Active guards: none" in msg
    assert _io.sha256_file(built / "MANIFEST.json") in msg
    assert "created annotated tag v1.4.0" in out


def test_active_guards_in_message(repo, tmp_path, capsys):
    # a run whose last tuning block reports an oscillation freeze
    p = make_reported_run(tmp_path / "runs", params=ramp)
    last = max(int(f.stem.rsplit("_", 1)[1]) for f in p.glob("ITER_SUMMARY_*.json"))
    f = p / f"ITER_SUMMARY_{last}.json"
    rec = _io.read_json(f)
    rec["tuning"]["guards"] = {"oscillation_detected": True, "velocity_violation": False,
                               "frozen_params": ["min_interval_ms"], "cooldown_active": False}
    f.unlink()
    _io.write_json(f, rec)
    out = tmp_path / "v2.0.0"
    bundle.build_bundle(p, out, load_config())
    assert run_cli(["tag", out, "--repo", repo], capsys)[0] == 0  # --tag defaults to the bundle's version
    msg = git(repo, "tag", "-l", "--format=%(contents)", "v2.0.0")
    assert "Active guards: frozen: min_interval_ms; oscillation_detected" in msg


def test_existing_tag_refused_unless_force(repo, built, capsys):
    git(repo, "tag", "-a", "-m", "hand made", "v1.4.0")
    before = git(repo, "rev-parse", "refs/tags/v1.4.0")
    code, out, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", repo], capsys)
    assert code == 2 and err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert git(repo, "rev-parse", "refs/tags/v1.4.0") == before
    code, out, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", repo, "--force"], capsys)
    assert code == 0, err
    assert git(repo, "rev-parse", "refs/tags/v1.4.0") != before
    assert "Verdict: PASS" in git(repo, "tag", "-l", "--format=%(contents)", "v1.4.0")


def test_dry_run_writes_nothing(repo, built, capsys, tmp_path):
    (repo / "untracked.txt").write_text("x")
    status = git(repo, "status", "--porcelain")
    tags = git(repo, "tag", "-l")
    state = tree_state(repo, built)
    code, out, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", repo, "--dry-run"], capsys)
    after = tree_state(repo, built)  # before any further git call (`git status` refreshes the index)
    assert code == 0, err
    assert after == state  # not one file under .git or the bundle touched
    assert "[dry-run] would run: git" in out and "Verdict: PASS" in out and "maker_taker_ratio: mean=" in out
    assert git(repo, "status", "--porcelain") == status
    assert git(repo, "tag", "-l") == tags == ""


def test_tag_other_than_the_bundles_version_exit_2(repo, built, capsys):
    code, _o, err = run_cli(["tag", built, "--tag", "v1.5.0", "--repo", repo], capsys)
    assert code == 2 and err.count("\n") == 1 and "v1.4.0" in err
    assert git(repo, "tag", "-l") == ""


@pytest.mark.parametrize("name", ["bad..name", "has space", "-leading", "ends.lock", "a~1", "x^y", "q?", "a:b",
                                  "trailing/", "@{u}", ""])
def test_rejected_tag_name_exit_2(repo, built, capsys, name):
    code, out, err = run_cli(["tag", built, "--tag", name, "--repo", repo], capsys)
    assert code == 2 and err.count("\n") == 1 and "--tag" in err and "Traceback" not in err
    assert git(repo, "tag", "-l") == ""


def test_tampered_bundle_not_tagged(repo, built, tmp_path, capsys):
    import shutil

    b = tmp_path / "copy"
    shutil.copytree(built, b)
    with open(b / "GATE.json", "a") as f:
        f.write(" ")
    code, out, err = run_cli(["tag", b, "--tag", "v1.4.0", "--repo", repo], capsys)
    assert code == 1 and "GATE.json: content changed" in err
    assert git(repo, "tag", "-l") == ""


def test_not_a_repo_or_empty_repo_exit_2(built, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    code, _o, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", plain], capsys)
    assert code == 2 and "not a git repository" in err
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    code, _o, err = run_cli(["tag", built, "--tag", "v1.4.0", "--repo", empty], capsys)
    assert code == 2 and "no commit" in err


def test_never_prompts_even_with_editor_and_signing_configured(repo, built):
    """A repo configured to open an editor and sign tags: soak tag still completes without a terminal."""
    git(repo, "config", "core.editor", "sleep 300")
    git(repo, "config", "tag.gpgSign", "true")
    git(repo, "config", "gpg.program", "false")
    r = subprocess.run([sys.executable, "-m", "soaklib", "tag", str(built), "--repo", str(repo)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "1"})
    assert r.returncode == 0, r.stderr
    assert git(repo, "cat-file", "-t", "v1.4.0").strip() == "tag"


@pytest.mark.slow
def test_release_pipeline_end_to_end(repo, tmp_path):
    """verify --strict -> report (real papermill + nbconvert) -> gate -> bundle -> bundle verify -> tag,
    each through the `soak` command line, on a synthetic tuned run."""
    from soaklib.store.synthetic import write_synthetic_run

    promtool = require_tool("promtool")
    run = write_synthetic_run(tmp_path / "runs", 10, params=ramp)

    def soak(*args, ok=(0,)):
        r = subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True,
                           timeout=600, stdin=subprocess.DEVNULL)
        assert r.returncode in ok, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r

    soak("verify", run, "--strict")
    soak("report", run)
    soak("gate", run)
    out = tmp_path / "release" / "v2.0.0"
    soak("bundle", run, "--out", out)
    assert "bundle OK" in soak("bundle", "verify", out).stdout
    assert (out / "POST_SOAK_AUDIT.html").stat().st_size > 10_000  # the real rendered report
    # the audit's images travel with the Markdown
    md = (out / "POST_SOAK_AUDIT.md").read_text()
    for img in (out / "POST_SOAK_AUDIT_files").glob("*.png") if (out / "POST_SOAK_AUDIT_files").is_dir() else []:
        assert img.name in md
    r = subprocess.run([promtool, "check", "rules", str(out / bundle.RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    soak("tag", out, "--tag", "v2.0.0", "--repo", repo)
    assert git(repo, "cat-file", "-t", "v2.0.0").strip() == "tag"
    assert "Verdict: PASS" in git(repo, "tag", "-l", "--format=%(contents)", "v2.0.0")
