"""Release bundle: contents, manifest integrity, atomic build, CHANGELOG diff, bad input."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import run_cli

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import InputError
from soaklib.judge import analysis
from soaklib.judge.verify import verify_run
from soaklib.publish import bundle
from soaklib.publish.markdown import verify_markdown
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run

# report files `soak report` renders from notebooks: plain fixtures here (the bundle copies them as is)
RENDERED = ("POST_SOAK_AUDIT.html", "POST_SOAK_AUDIT.md", "RECOMMENDATIONS.md", "FAILURES.md")


def make_reported_run(root: Path, n: int = 10, *, params=None, kpis=None, cfg=None) -> Path:
    """A synthetic run plus the reports/analysis files a bundle needs.

    The snapshot and the delta report are computed by soaklib.judge.analysis and soaklib.judge.verify from the
    run; the notebook renderings are small fixtures.
    """
    cfg = cfg or load_config()
    p = write_synthetic_run(root, n, params=params, kpis=kpis)
    run = open_run(p)
    rd = p / "reports" / "analysis"
    rd.mkdir(parents=True)
    _io.write_json(rd / "POST_SOAK_SNAPSHOT.json", analysis.snapshot(run, cfg, 8))
    rep = verify_run(run, cfg)
    _io.write_json(rd / "DELTA_VERIFY_REPORT.json", rep.to_json())
    _io.write_text(rd / "DELTA_VERIFY_REPORT.md", verify_markdown(rep))
    for name in RENDERED:
        _io.write_text(rd / name, f"<!-- fixture -->\n# {name}\n")
    return p



def ramp(i: int) -> dict:
    """Tuner-like trajectory: min_interval rises, impact cap falls, then both settle."""
    k = min(i, 4)
    return {"min_interval_ms": 60 + 5 * k, "impact_cap_ratio": round(0.10 - 0.005 * k, 3)}


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture()
def reported(tmp_path):
    return make_reported_run(tmp_path / "runs", params=ramp)


def test_build_contents_and_verify(reported, tmp_path, capsys):
    out = tmp_path / "release" / "v1.4.0"
    code, stdout, err = run_cli(["bundle", reported, "--out", out], capsys)
    assert code == 0, err
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(bundle.REQUIRED) | {"MANIFEST.json"} <= names
    man = _io.read_json(out / "MANIFEST.json")
    assert man["version"] == "v1.4.0" and "verdict" not in man  # the verdict lives in the hashed GATE.json only
    assert set(man["files"]) == names - {"MANIFEST.json"}
    for rel, meta in man["files"].items():
        assert meta["sha256"] == _io.sha256_file(out / rel)
    # the shipped profile is the run's final runtime_overrides, byte for byte
    assert (out / bundle.PROFILE).read_bytes() == (reported / "runtime_overrides.json").read_bytes()
    assert _io.read_json(out / bundle.PROFILE)["min_interval_ms"] == 80
    # release facts from the records: 2 params changed after each of iterations 1..4 (clamped by nothing)
    rel = _io.read_json(out / bundle.RELEASE)
    assert rel["readiness"] == {"state": "READY", "reasons": []} and rel["previous"] is None
    assert rel["applied_iterations"] == [1, 2, 3] and rel["applied_deltas"] == 6
    assert _io.read_json(out / "GATE.json")["verdict"] == "PASS"
    code, stdout, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 0 and "bundle OK" in stdout and "gate verdict PASS" in stdout
    # no temp dirs left beside the bundle
    assert [p.name for p in out.parent.iterdir()] == ["v1.4.0"]


@pytest.mark.parametrize("victim", ["CHANGELOG.md", "soak_profile.runtime_overrides.json", "POST_SOAK_SNAPSHOT.json"])
def test_one_changed_byte_fails_verify_naming_file(reported, tmp_path, capsys, victim):
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, load_config())
    f = out / victim
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    code, stdout, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 1
    assert err.count("\n") == 1 and f"{victim}: content changed" in err
    assert sum(victim in p for p in bundle.verify_bundle(out, raise_on_fail=False).problems) == 1


def test_verify_catches_missing_extra_and_manifest_edits(reported, tmp_path, capsys):
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, load_config())
    (out / "FAILURES.md").unlink()
    (out / "extra.txt").write_text("smuggled\n")
    res = bundle.verify_bundle(out, raise_on_fail=False)
    assert "FAILURES.md: missing" in res.problems and "extra.txt: not in the manifest" in res.problems
    # dropping a required file from the manifest is caught too
    man = _io.read_json(out / "MANIFEST.json")
    del man["files"]["rollback_plan.md"]
    man.pop("manifest_sha256")
    man["manifest_sha256"] = _io.state_hash(man)  # even with the self-hash redone
    _io.write_json(out / "MANIFEST.json", man)
    res = bundle.verify_bundle(out, raise_on_fail=False)
    assert "rollback_plan.md: required file not listed in the manifest" in res.problems
    (out / "MANIFEST.json").write_text("{not json")
    code, _o, err = run_cli(["bundle", "verify", out], capsys)
    assert code == 2 and "MANIFEST.json" in err  # not a manifest at all: bad input (issue 19)
    code, _o, err = run_cli(["bundle", "verify", tmp_path / "nope"], capsys)
    assert code == 2 and err.count("\n") == 1


def test_failure_while_building_leaves_nothing(reported, tmp_path, monkeypatch):
    calls = []
    real = bundle._write_doc

    def flaky(path, text):
        calls.append(path.name)
        if len(calls) == 4:  # some files are already in the temp dir
            raise OSError(28, "No space left on device")
        real(path, text)

    monkeypatch.setattr(bundle, "_write_doc", flaky)
    parent = tmp_path / "new" / "nested"
    out = parent / "v2.0.0"
    with pytest.raises(InputError, match="cannot write the bundle: No space left on device"):  # one line
        bundle.build_bundle(reported, out, load_config())
    assert len(calls) == 4
    assert not out.exists()
    assert not (tmp_path / "new").exists()  # parents it created are gone too, no temp dir left


def test_failed_force_rebuild_keeps_old_bundle(reported, tmp_path, monkeypatch):
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, load_config())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(bundle, "_write_doc", lambda path, text: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(InputError, match="boom"):
        bundle.build_bundle(reported, out, load_config(), force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "v1.0.0"]


def _changelog_changes(text: str, version: str) -> dict[str, tuple[str, str]]:
    """Parse '- name: old -> new (delta)' lines of one version's '### Changed' section."""
    sec = text.split(f"## [{version}]", 1)[1].split("\n## [", 1)[0]
    if "### Changed" not in sec:
        return {}
    body = sec.split("### Changed", 1)[1].split("\n### ", 1)[0]
    out = {}
    for m in re.finditer(r"^- (.+?): (\S+) -> (\S+)", body, flags=re.M):
        out[m.group(1).replace("\\_", "_")] = (m.group(2), m.group(3))
    return out


def test_changelog_diff_matches_the_two_profiles(tmp_path, capsys):
    cfg = load_config()
    run1 = make_reported_run(tmp_path / "r1", params=ramp)
    b1 = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(run1, b1, cfg)

    def ramp2(i):  # the next soak tunes differently: spread widens, impact cap recovers
        k = min(i, 3)
        return {"min_interval_ms": 80, "impact_cap_ratio": 0.08 + 0.005 * k, "base_spread_bps_delta": 0.05 + 0.01 * k}

    run2 = make_reported_run(tmp_path / "r2", params=ramp2)
    b2 = tmp_path / "rel" / "v1.1.0"
    code, _o, err = run_cli(["bundle", run2, "--out", b2, "--previous", b1], capsys)
    assert code == 0, err
    p1 = _io.read_json(b1 / bundle.PROFILE)
    p2 = _io.read_json(b2 / bundle.PROFILE)
    expected = {k: (p1[k], p2[k]) for k in p2 if p1[k] != p2[k]}
    assert set(expected) == {"impact_cap_ratio", "base_spread_bps_delta"}
    text = (b2 / "CHANGELOG.md").read_text()
    got = _changelog_changes(text, "1.1.0")
    assert set(got) == set(expected)
    for k, (a, b) in expected.items():
        assert float(got[k][0]) == pytest.approx(a) and float(got[k][1]) == pytest.approx(b)
    # Keep a Changelog: newest first, the previous release's entry kept below
    assert text.index("## [Unreleased]") < text.index("## [1.1.0]") < text.index("## [1.0.0]")
    assert re.search(r"^## \[1\.1\.0\] - \d{4}-\d{2}-\d{2}$", text, flags=re.M)
    assert "### Against release v1.0.0" in text  # the previous release's run, KPI by KPI
    # the rollback target is the previous release's profile
    assert _io.read_json(b2 / bundle.PREVIOUS_PROFILE) == p1
    plan = (b2 / "rollback_plan.md").read_text()
    assert "release v1.0.0" in plan and bundle.PREVIOUS_PROFILE in plan and "git checkout v1.0.0" in plan
    assert _io.read_json(b2 / bundle.RELEASE)["previous"]["version"] == "v1.0.0"


def test_without_previous_diff_is_against_starting_profile(reported, tmp_path):
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, load_config())
    start = _io.read_json(reported / "run.json")["profile"]["values"]
    assert _io.read_json(out / bundle.PREVIOUS_PROFILE) == start
    got = _changelog_changes((out / "CHANGELOG.md").read_text(), "1.0.0")
    final = _io.read_json(out / bundle.PROFILE)
    assert set(got) == {k for k in final if final[k] != start[k]} == {"min_interval_ms", "impact_cap_ratio"}


def test_canary_checklist_phases_are_the_gate_goals(reported, tmp_path, cfg):
    """Every phase: FAIL (roll back) past the hard goal, WARN (hold) past the soft one; the seed's four
    rollback triggers stay; never this soak's own values."""
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, cfg)
    phases, notes = bundle.canary_phases(cfg, {"maker_taker_ratio": 0.1})
    assert not notes and len(phases) == 4
    for p in phases:
        for kpi, g in cfg["goals"].items():
            assert (p["thresholds"][kpi]["hard"], p["thresholds"][kpi]["soft"]) == (g["hard"], g["soft"])
    text = (out / "CANARY_CHECKLIST.md").read_text()
    for t in ("< 0.7 | 5m", "> 500 ms | 3m", "> 0.6 | 2m", "< 0 | 10m"):
        assert t in text
    assert "| 4 | 100% | 24h | maker_taker_ratio | mean over the phase | < 0.830 | < 0.850 |" in text
    assert "| risk_ratio | median over the phase | > 0.40 | > 0.36 |" in text
    snap = _io.read_json(out / "POST_SOAK_SNAPSHOT.json")  # the soak's own 0.88 is nowhere a threshold
    assert f"{snap['kpi_last_n']['maker_taker_ratio']['mean']:.3f} |" not in text.split("## Phases")[1]


def test_phase_spread_widening_where_configured():
    cfg = load_config(overrides={"bundle": {"phase_spread_widen": [2.0, 1.0, 0.0, 0.0]}})
    phases, _n = bundle.canary_phases(cfg, {"maker_taker_ratio": 0.01, "p95_latency_ms": 5.0})
    mt = [p["thresholds"]["maker_taker_ratio"] for p in phases]
    assert [m["hard"] for m in mt] == [pytest.approx(0.81), pytest.approx(0.82), 0.83, 0.83]
    assert [p["thresholds"]["p95_latency_ms"]["soft"] for p in phases] == [340.0, 335.0, 330.0, 330.0]
    assert phases[0]["thresholds"]["net_bps"]["hard"] == 2.5  # no spread known: the goal


def test_untrusted_strings_escaped(tmp_path):
    p = make_reported_run(tmp_path / "runs")
    # a hostile profile name in the run manifest (it reaches rollback_plan.md)
    man = _io.read_json(p / "run.json")
    man["profile"]["name"] = "<img src=x onerror=alert(1)>"
    _io.write_json(p / "run.json", man)
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(p, out, load_config())
    plan = (out / "rollback_plan.md").read_text()
    assert "<img" not in plan and "&lt;img" in plan


# ------------------------------------------------------------------------------------ bad input

def test_missing_snapshot_exit_2(reported, tmp_path, capsys):
    (reported / "reports/analysis/POST_SOAK_SNAPSHOT.json").unlink()
    out = tmp_path / "v1.0.0"
    code, _o, err = run_cli(["bundle", reported, "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "POST_SOAK_SNAPSHOT.json" in err and "soak report" in err
    assert not out.exists()


@pytest.mark.parametrize("content", [b"{\"verdict\": \"PASS\",", b"[1, 2]", b"", b"{\"kpi_last_n\": NaN}"])
def test_corrupt_snapshot_exit_2(reported, tmp_path, capsys, content):
    (reported / "reports/analysis/POST_SOAK_SNAPSHOT.json").write_bytes(content)
    out = tmp_path / "v1.0.0"
    code, _o, err = run_cli(["bundle", reported, "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "POST_SOAK_SNAPSHOT.json" in err and "Traceback" not in err
    assert not out.exists()


def test_stale_snapshot_exit_2(reported, tmp_path, capsys):
    snap = _io.read_json(reported / "reports/analysis/POST_SOAK_SNAPSHOT.json")
    snap["iterations_total"] = 8  # written before the run grew to 10 iterations
    _io.write_json(reported / "reports/analysis/POST_SOAK_SNAPSHOT.json", snap)
    code, _o, err = run_cli(["bundle", reported, "--out", tmp_path / "v1.0.0"], capsys)
    assert code == 2 and "stale snapshot" in err and not (tmp_path / "v1.0.0").exists()


def test_missing_report_file_exit_2(reported, tmp_path, capsys):
    (reported / "reports/analysis/DELTA_VERIFY_REPORT.json").unlink()
    code, _o, err = run_cli(["bundle", reported, "--out", tmp_path / "v1.0.0"], capsys)
    assert code == 2 and "DELTA_VERIFY_REPORT.json (written by `soak verify`)" in err


def test_existing_out_without_force_exit_2(reported, tmp_path, capsys):
    out = tmp_path / "v1.0.0"
    bundle.build_bundle(reported, out, load_config())
    man = (out / "MANIFEST.json").read_bytes()
    code, _o, err = run_cli(["bundle", reported, "--out", out], capsys)
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert (out / "MANIFEST.json").read_bytes() == man
    code, _o, err = run_cli(["bundle", reported, "--out", out, "--force", "--version", "v9.0.0"], capsys)
    assert code == 0 and _io.read_json(out / "MANIFEST.json")["version"] == "v9.0.0"
    # --force never deletes a directory that is not a bundle
    plain = tmp_path / "docs"
    plain.mkdir()
    (plain / "keep.txt").write_text("precious")
    code, _o, err = run_cli(["bundle", reported, "--out", plain, "--force", "--version", "v1.0.0"], capsys)
    assert code == 2 and (plain / "keep.txt").read_text() == "precious"


def test_previous_missing_files_exit_2(reported, tmp_path, capsys):
    prev = tmp_path / "v0.9.0"
    bundle.build_bundle(reported, prev, load_config())
    (prev / "soak_profile.runtime_overrides.json").unlink()
    out = tmp_path / "v1.0.0"
    code, _o, err = run_cli(["bundle", reported, "--out", out, "--previous", prev], capsys)
    assert code == 2 and err.count("\n") == 1 and "soak_profile.runtime_overrides.json: missing" in err
    assert not out.exists()
    code, _o, err = run_cli(["bundle", reported, "--out", out, "--previous", tmp_path / "none"], capsys)
    assert code == 2 and "--previous is not a release bundle" in err


@pytest.mark.parametrize("version", ["v1 beta", "../x", "-v1", "v1\n", "{{ $value }}", "", "1.5", "v1.5", "v1.4",
                                     "v01.4.0", "v1.4.0.0", "V1.4.0", "v1.4.0+local", "vx.y.z"])
def test_bad_version_exit_2(reported, tmp_path, capsys, version):
    code, _o, err = run_cli(["bundle", reported, "--out", tmp_path / "v1.0.0", "--version", version], capsys)
    assert code == 2 and "--version" in err and not (tmp_path / "v1.0.0").exists()
