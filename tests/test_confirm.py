"""The confirmation phase and the baseline arm (issue 13): what ships is what was validated — the
frozen parameters on fresh windows, against a baseline on the same windows — and no run passes the
gate by trading less."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.sim import hbt
from soaklib.store.loader import open_run
from soaklib.store.rundir import BASELINE_DIR, MANIFEST
from soaklib.tune import loop

WALL = ("wall", "runtime_utc")


def _strip(rec: dict) -> dict:
    rec = json.loads(json.dumps(rec))
    rec.pop("wall", None)
    rec["summary"].pop("runtime_utc", None)
    return rec


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """bad, auto-tuned for 6 iterations, then 3 confirmation iterations and the baseline."""
    cfg = load_config(overrides={"confirm": {"iterations": 3}})
    root = tmp_path_factory.mktemp("runs")
    res = loop.run_soak(runs_dir=root, iterations=6, cfg=cfg, profile_name="bad",
                        profile_values=load_profile("bad", registry(cfg)), seed=5, auto_tune=True,
                        duration_s=900.0)
    return res


def test_phases_windows_and_frozen_parameters(tuned):
    recs = tuned.records
    assert [r["phase"] for r in recs] == ["tune"] * 6 + ["confirm"] * 3
    assert tuned.manifest["iterations_planned"] == 9 and tuned.manifest["confirm_iterations"] == 3
    win = lambda r: (r["seed"], r["window"]["start_s"])  # noqa: E731
    tune_w = {win(r) for r in recs if r["phase"] == "tune"}
    conf_w = [win(r) for r in recs if r["phase"] == "confirm"]
    assert not tune_w & set(conf_w)  # fresh: never seen while tuning
    assert min(s for _, s in conf_w) > max(s for _, s in tune_w)
    # the tuner moved parameters while tuning; nothing moves in the confirmation phase
    assert any(r["tuning"]["changed_keys"] for r in recs[:5])
    conf_params = [r["params"] for r in recs if r["phase"] == "confirm"]
    assert all(p == conf_params[0] for p in conf_params)
    assert all(not r["tuning"]["changed_keys"] for r in recs[5:])
    assert all(r["tuning"]["skip_reason"]["reason"] == "confirmation_phase" for r in recs[6:])
    assert conf_params[0] == _io.read_json(tuned.path / "runtime_overrides.json")


def test_baseline_arm_runs_the_starting_profile_on_the_confirmation_windows(tuned):
    b = open_run(tuned.path / BASELINE_DIR)
    assert b.manifest["status"] == "completed" and b.manifest["arm"] == "baseline"
    cfg = load_config()
    start = load_profile("bad", registry(cfg))
    conf = [r for r in tuned.records if r["phase"] == "confirm"]
    assert [(r["seed"], r["window"]) for r in b.records] == [(r["seed"], r["window"]) for r in conf]
    assert all(r["params"] == start for r in b.records)
    assert all(r["phase"] == "confirm" for r in b.records)
    # `latest` names the run, never its arm
    assert (tuned.path.parent / "latest").resolve() == tuned.path.resolve()


def test_resume_finishes_a_baseline_arm_cut_short(tuned, tmp_path):
    """Killed during the baseline arm: the resumed run is identical to the uninterrupted one."""
    import shutil

    run = tmp_path / tuned.path.name
    shutil.copytree(tuned.path, run)
    arm = run / BASELINE_DIR
    (arm / "ITER_SUMMARY_3.json").unlink()
    (arm / "ITER_SUMMARY_2.json").unlink()
    for p in (arm / MANIFEST, run / MANIFEST):
        m = _io.read_json(p)
        m["status"] = "interrupted"
        _io.write_json(p, m)
    res = loop.resume(run)
    assert res.status == "completed" and res.iterations_run == 0
    for k in (2, 3):
        a = _io.read_json(tuned.path / BASELINE_DIR / f"ITER_SUMMARY_{k}.json")
        b = _io.read_json(arm / f"ITER_SUMMARY_{k}.json")
        assert _strip(a) == _strip(b)
    assert _io.read_json(arm / MANIFEST)["status"] == "completed"


def test_gate_judges_the_confirmation_phase_and_the_baseline(tuned, capsys):
    code, out, _ = run_cli(["gate", tuned.path, "--last-n", "2"], capsys)
    g = _io.read_json(tuned.path / "reports" / "analysis" / "GATE.json")
    assert g["iterations_evaluated"] == [7, 8, 9]
    kpis = [x["kpi"] for x in g["goals"]]
    assert "pnl_per_hour_vs_baseline" in kpis and "risk_adjusted_pnl_vs_baseline" in kpis
    # 3 pairs < [compare] min_pairs: the baseline goals cannot pass
    ni = [x for x in g["goals"] if x["kpi"].endswith("_vs_baseline")]
    assert all(x["status"] == "INCONCLUSIVE" for x in ni) and code == 1
    assert "confirmation phase" in out and "last_n=2 ignored" in out


def _fixed(tmp_path, capsys, profile, seed, n=12):
    code, out, err = run_cli(["run", "--iterations", n, "--profile", profile, "--seed", seed,
                              "--runs-dir", tmp_path / f"{seed}-{abs(hash(str(profile)))}"], capsys)
    assert code == 0, err
    return tmp_path / f"{seed}-{abs(hash(str(profile)))}" / "latest"


@pytest.mark.parametrize("seed", [31, 32])
def test_trading_less_never_passes_the_gate(tmp_path, capsys, seed):
    """Slowest pacing and widest spread against best_cell on the same windows: the four seed goals
    pass, the run trades less and earns less per hour, and the gate does not pass."""
    cfg = load_config()
    reg = registry(cfg)
    slow = load_profile("best_cell", reg)
    slow["min_interval_ms"] = reg["min_interval_ms"].max
    slow["base_spread_bps_delta"] = reg["base_spread_bps_delta"].max
    f = tmp_path / "slow.json"
    f.write_text(json.dumps(slow))
    base = _fixed(tmp_path, capsys, "best_cell", seed)
    cand = _fixed(tmp_path, capsys, f, seed)
    code, out, err = run_cli(["gate", cand, "--baseline", base, "--last-n", "12"], capsys)
    g = _io.read_json(cand.resolve() / "reports" / "analysis" / "GATE.json")
    st = {x["kpi"]: x["status"] for x in g["goals"]}
    assert all(st[k] in ("PASS", "WARN") for k in ("maker_taker_ratio", "p95_latency_ms", "risk_ratio", "net_bps"))
    assert st["pnl_per_hour_vs_baseline"] in ("FAIL", "INCONCLUSIVE")
    assert g["verdict"] != "PASS" and code == 1
    t_c = sum(r["summary"]["turnover_quote"] for r in open_run(cand).records)
    t_b = sum(r["summary"]["turnover_quote"] for r in open_run(base).records)
    assert t_c < t_b


def test_a_over_a_passes_non_inferiority(tmp_path, capsys):
    base = _fixed(tmp_path, capsys, "best_cell", 33, n=8)
    run_cli(["gate", base, "--baseline", base], capsys)
    g = _io.read_json(base.resolve() / "reports" / "analysis" / "GATE.json")
    ni = {x["kpi"]: x for x in g["goals"] if x["kpi"].endswith("_vs_baseline")}
    assert {x["status"] for x in ni.values()} == {"PASS"}
    assert ni["pnl_per_hour_vs_baseline"]["value"] == 0


def test_no_baseline_is_said_not_passed_silently(tmp_path, capsys):
    base = _fixed(tmp_path, capsys, "best_cell", 34, n=8)
    _, out, _ = run_cli(["gate", base], capsys)
    assert "no baseline: non-inferiority" in out


@pytest.mark.parametrize("value", ["-1", "2.5", "1e9", "x"])
def test_bad_confirm_iterations_is_one_line(tmp_path, capsys, value):
    code, out, err = run_cli(["run", "--iterations", 2, "--auto-tune", "--confirm-iterations", value,
                              "--runs-dir", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--confirm-iterations" in err
    assert not any(tmp_path.iterdir())


def test_trading_less_fails_on_pnl_per_hour_with_common_random_numbers(tmp_path, capsys, monkeypatch):
    """On the hftbacktest engine both arms meet the same markets, so the paired judge is decisive:
    the trading-less candidate FAILs on PnL per hour while the four seed goals pass (seed 51 was
    not looked at before this test was written)."""
    monkeypatch.setenv("SOAK_MARKET_CACHE", str(tmp_path / "markets"))
    src = json.loads((Path(hbt.__file__).parent / "profiles" / "best_cell.json").read_text())
    src.pop("_doc", None)
    reg = registry(load_config())
    slow = dict(src, min_interval_ms=reg["min_interval_ms"].max, base_spread_bps_delta=reg["base_spread_bps_delta"].max)
    arms = {}
    for name, prof in (("base", src), ("slow", slow)):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(prof))
        code, _, err = run_cli(["run", "--runner", "hbt", "--iterations", 12, "--duration-s", 900, "--profile", f,
                                "--seed", 51, "--runs-dir", tmp_path / name], capsys)
        assert code == 0, err
        arms[name] = tmp_path / name / "latest"
    code, out, _ = run_cli(["gate", arms["slow"], "--baseline", arms["base"], "--last-n", 12], capsys)
    g = _io.read_json(arms["slow"].resolve() / "reports" / "analysis" / "GATE.json")
    st = {x["kpi"]: x["status"] for x in g["goals"]}
    assert all(st[k] in ("PASS", "WARN") for k in ("maker_taker_ratio", "p95_latency_ms", "risk_ratio", "net_bps"))
    assert st["pnl_per_hour_vs_baseline"] == "FAIL" and g["verdict"] == "FAIL" and code == 1, out


def test_recommendations_skip_the_baseline_goals_they_have_no_lever_for(tuned):
    """A FAIL on non-inferiority once crashed the recommendations notebook (KeyError: it looked the
    goal up among the KPI goals to find levers)."""
    from soaklib.judge import analysis, recommend

    run = open_run(tuned.path)
    cfg = load_config(overrides={"confirm": {"iterations": 3}})
    snap = analysis.snapshot(run, cfg, 3)
    assert "pnl_per_hour_vs_baseline" in snap["goals"]
    snap["goals"]["pnl_per_hour_vs_baseline"]["status"] = "FAIL"
    rec = recommend.recommend(run, cfg, 3, snapshot=snap, simulate=False)
    assert "pnl_per_hour_vs_baseline" not in rec.targets
    assert any("not inferior to the baseline is not met (pnl_per_hour_vs_baseline)" in n for n in rec.notes)
