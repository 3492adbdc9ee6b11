"""Delta verification (issue 4): expected = params(n) + deltas(n) vs observed params(n+1)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soaklib.core import records
from soaklib.core.config import load_config
from soaklib.core.params import registry
from soaklib.core.records import build_record, next_params
from soaklib.core.run import Run
from soaklib.judge.verify import verify_records, verify_run
from soaklib.publish.markdown import verify_markdown
from soaklib.store import rundir as store
from soaklib.tune import tuner

CFG = load_config()
REG = registry(CFG)


def toy_kpis(p: dict) -> dict:
    """A deterministic stand-in for the simulator: KPIs move with the parameters in the documented
    directions (slower quoting / smaller size -> less risk; wider spread -> more net, fewer takers)."""
    risk = max(0.0, 0.80 - 0.006 * (p["min_interval_ms"] - 60) - 3.0 * (0.10 - p["impact_cap_ratio"]))
    net = 1.2 + 8.0 * p["base_spread_bps_delta"] - 2.0 * max(risk - 0.4, 0)
    return {"net_bps": net, "risk_ratio": risk, "maker_taker_ratio": 0.80 + 0.2 * p["base_spread_bps_delta"],
            "maker_taker_source": "fills_volume", "p95_latency_ms": 280.0 + 2.0 * p["concurrency_limit"],
            "adverse_bps_p95": 2.0, "slippage_bps_p95": 1.0, "cancel_ratio": 0.3}


def drive(n_iter: int, *, auto_tune: bool = True, ignore: str | None = None, start: dict | None = None):
    """Run the tuning loop in-process over ``toy_kpis``. ``ignore``: the runner silently keeps that
    parameter at its start value and reports the value it really used."""
    asked = dict(start or REG.defaults())
    first = dict(asked)
    history = []
    for n in range(1, n_iter + 1):
        ran = dict(asked)
        if ignore:
            ran[ignore] = first[ignore]
        rec = build_record(iteration=n, seed=n, runner="toy", scenario="default", start_s=(n - 1) * 3600.0,
                           duration_s=3600.0, kpis=toy_kpis(ran), params=ran, market={}, runtime_guards={},
                           events=1, cfg=CFG)
        history.append(rec)
        rec["tuning"] = tuner.decide(history, ran, CFG, iteration=n, total=n_iter, auto_tune=auto_tune)
        asked = next_params(asked, rec["tuning"])
    return history


def test_normal_run_verifies_full():
    recs = drive(12)
    rep = verify_records(recs, CFG)
    assert rep.counts["proposed"] > 0 and rep.counts["full_apply"] > 0
    assert rep.counts["mismatch"] == 0 and rep.counts["missing"] == 0
    assert rep.full_apply_ratio == 1.0 and rep.passed
    # every (pair, key) that was proposed is either full_apply or guard_skipped, with its guard named
    for p in rep.pairs:
        for k in p["keys"]:
            if k["outcome"] == "guard_skipped":
                assert k["guard"]
    assert rep.denominator == rep.counts["proposed"] - rep.counts["guard_skipped"]


def test_ignored_parameter_is_exactly_the_mismatch():
    recs = drive(10, ignore="min_interval_ms")
    rep = verify_records(recs, CFG)
    bad = {k["param"] for p in rep.pairs for k in p["keys"] if k["outcome"] == "mismatch"}
    assert bad == {"min_interval_ms"}
    assert rep.full_apply_ratio < 0.95 and not rep.passed
    md = verify_markdown(rep)
    assert "runner ignored it" in md


def test_auto_tune_off_ratio_is_one_with_note():
    recs = drive(5, auto_tune=False)
    rep = verify_records(recs, CFG)
    assert rep.counts["proposed"] == 0 and rep.full_apply_ratio == 1.0
    assert "ratio reported as 1.0" in rep.ratio_note
    assert rep.counts["unchanged"] == 4 * len(REG)


def test_unexpected_change_and_missing_key():
    recs = drive(4, auto_tune=False)
    recs[2]["params"]["tail_age_ms"] = 900                     # changed without a delta
    del recs[3]["params"]["max_delta_ratio"]                    # not reported
    rep = verify_records(recs, CFG)
    assert rep.counts["unexpected_changes"] == 2                # 2->3 (600->900) and 3->4 (900 vs 600... back)
    assert rep.counts["missing"] == 1
    assert rep.to_json()["delta_nested_miss_paths_total"] == 1
    assert not rep.passed


def test_markdown_and_json_from_one_object():
    recs = drive(10, ignore="impact_cap_ratio")
    rep = verify_records(recs, CFG)
    js, md = rep.to_json(), verify_markdown(rep)
    m = re.search(r"Full applications:\s*(\d+)/\s*(\d+)\s*\(([\d.]+)%\)", md)  # the seed CI regex
    assert m, md
    assert int(m.group(1)) == js["full_apply_count"]
    assert int(m.group(2)) == js["proposed_count"] - js["partial_ok_count"]
    assert float(m.group(3)) == pytest.approx(100 * js["full_apply_ratio"], abs=0.05)
    assert ("PASS" in md.split("## Verdict")[1]) == (js["verdict"] == "PASS")


def test_guard_skipped_excluded_from_denominator():
    recs = drive(3)
    # forge: iteration 1 proposed a change that a guard blocked
    assert "max_delta_ratio" not in recs[0]["tuning"]["proposed_deltas"]
    recs[0]["tuning"]["proposed_deltas"]["max_delta_ratio"] = -0.01
    recs[0]["tuning"]["decisions"].append({"param": "max_delta_ratio", "current": 0.15, "proposed_delta": -0.01,
                                           "verdict": "blocked", "guard": "cooldown", "clamped_delta": 0,
                                           "new": 0.15, "reason": "cooldown"})
    rep = verify_records(recs, CFG)
    k = [k for k in rep.pairs[0]["keys"] if k["param"] == "max_delta_ratio"][0]
    assert k["outcome"] == "guard_skipped" and k["guard"] == "cooldown"


def _write(tmp_path, recs, name="run"):
    p = tmp_path / name
    m = store.new_manifest(config=CFG, seed=0, runner="toy", scenario="default", profile_name="best_cell",
                           profile_values=REG.defaults(), iterations_planned=len(recs), auto_tune=True,
                           duration_s=3600.0)
    m.update(run_id=name, status="completed", iterations_done=len(recs))
    store.write_run(p, m, recs, {}, records.tuning_report(recs))
    return p


def _soak(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "soaklib", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli_verify_writes_reports_and_strict(tmp_path):
    good = _write(tmp_path, drive(8), "good")
    r = _soak("verify", str(good), "--strict")
    assert r.returncode == 0, r.stderr
    assert "Full applications:" in r.stdout
    out = good / "reports" / "analysis"
    js = json.loads((out / "DELTA_VERIFY_REPORT.json").read_text())
    assert js["full_apply_ratio"] == 1.0
    assert (out / "DELTA_VERIFY_REPORT.md").read_text().strip() == r.stdout.strip()

    bad = _write(tmp_path, drive(8, ignore="min_interval_ms"), "bad")
    r = _soak("verify", str(bad), "--strict", "--json")
    assert r.returncode == 1
    assert r.stderr.startswith("soak: error: delta verification failed") and r.stderr.count("\n") == 1
    js = json.loads(r.stdout)
    assert {k["param"] for p in js["pairs"] for k in p["keys"] if k["outcome"] == "mismatch"} == {"min_interval_ms"}
    # without --strict the same run exits 0 (report only); a low threshold passes strict
    assert _soak("verify", str(bad)).returncode == 0
    assert _soak("verify", str(bad), "--strict", "--threshold", "0.0").returncode == 0


def test_cli_verify_bad_input(tmp_path):
    r = _soak("verify", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.startswith("soak: error:") and "Traceback" not in r.stderr
    d = tmp_path / "run"
    d.mkdir()
    (d / "ITER_SUMMARY_1.json").write_text("{not json")
    r = _soak("verify", str(d))
    assert r.returncode == 2 and "ITER_SUMMARY_1.json" in r.stderr and "Traceback" not in r.stderr


def test_verify_run_uses_run_object():
    run = Run(path=Path("/x"), layout="soaklib", dialect="soaklib", manifest={}, records=drive(4), gaps=[7])
    rep = verify_run(run, CFG)
    assert rep.run_path == "x" and any("7" in w for w in rep.warnings)  # no absolute path outside the cwd


def test_verify_synthetic_run_through_loader(tmp_path):
    from soaklib.store.loader import open_run
    from soaklib.store.synthetic import write_synthetic_run

    p = write_synthetic_run(tmp_path, 6, params=lambda i: {"min_interval_ms": 60 + 5 * (i // 2)})
    rep = verify_run(open_run(p), CFG)
    assert rep.counts["full_apply"] == 3 and rep.counts["mismatch"] == 0 and rep.full_apply_ratio == 1.0


@pytest.mark.slow
def test_simulator_run_verifies_at_full_ratio(tmp_path):
    """A real `soak run --auto-tune` on the simulator verifies at 1.0 with --strict."""
    runs = tmp_path / "runs"
    r = _soak("run", "--auto-tune", "--iterations", "4", "--duration-s", "120", "--runs-dir", str(runs))
    assert r.returncode == 0, r.stderr
    r = _soak("verify", str(runs / "latest"), "--strict", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    js = json.loads(r.stdout)
    assert js["full_apply_ratio"] == 1.0 and js["counts"]["mismatch"] == 0 and js["counts"]["missing"] == 0
    # not the 1.0 of an empty denominator: something was proposed and applied
    assert js["counts"]["full_apply"] > 0


def test_failed_next_iteration_is_skipped_not_missing_and_no_pairs_is_inconclusive():
    from soaklib.core.config import load_config
    from soaklib.judge.verify import verify_records

    cfg = load_config()
    params = {"min_interval_ms": 60}
    ok = {"iteration": 1, "status": "ok", "params": params,
          "tuning": {"deltas": {}, "proposed_deltas": {}, "decisions": []}}
    failed = {"iteration": 2, "status": "failed", "params": {}, "tuning": {"deltas": {}}}
    rep = verify_records([ok, failed], cfg)
    assert rep.counts["missing"] == 0
    assert rep.counts["pairs_skipped"] == 1
    assert rep.verdict == "INCONCLUSIVE" and not rep.passed
    assert any("iteration 2 failed" in w for w in rep.warnings)
    # one checkable pair makes it a real verdict again
    rep = verify_records([ok, {**ok, "iteration": 2}], cfg)
    assert rep.verdict == "PASS" and rep.passed
