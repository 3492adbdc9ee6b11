"""External bot runner (issue 8, DESIGN §13) driven by examples/bot.py and tiny bots written here."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from soaklib import open_run
from soaklib.cli import main
from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.core.params import registry
from soaklib.core.records import strip_wall_clock
from soaklib.execute.external import CommandRunner, applied_params
from soaklib.judge.verify import verify_run

ROOT = Path(__file__).resolve().parents[1]
BOT = f"{sys.executable} {ROOT / 'examples' / 'bot.py'}"
CFG = load_config()
REG = registry(CFG)
PARAMS = REG.defaults()


@pytest.fixture(autouse=True)
def _clean_bot_env(monkeypatch):
    for k in ("EXAMPLE_BOT_MODE", "EXAMPLE_BOT_MODE_AT", "EXAMPLE_BOT_NESTED", "EXAMPLE_BOT_EVENTS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("EXAMPLE_BOT_EVENTS", "1500")  # keep each bot call ~0.1 s


def soak(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    out, err = capsys.readouterr()
    return int(ei.value.code or 0), out, err


def only_run(runs: Path) -> Path:
    dirs = [d for d in runs.iterdir() if d.is_dir() and not d.is_symlink()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def write_bot(tmp_path: Path, body: str) -> str:
    """A throwaway bot: ``body`` is Python with ``out`` (SOAK_OUTPUT path) and ``json`` in scope."""
    p = tmp_path / "tinybot.py"
    p.write_text("import json, os, sys\nout = os.environ['SOAK_OUTPUT']\n" + textwrap.dedent(body))
    return f"{sys.executable} {p}"


GOOD_TOTALS = {"net_bps": 3.0, "adverse_bps_p95": 2.0, "slippage_bps_p95": 1.0, "p95_latency_ms": 250.0,
               "fills": {"maker_volume": 9.0, "taker_volume": 1.0},
               "block_reasons": {"risk": {"count": 1, "ratio": 10.0}, "min_interval": {"count": 9, "ratio": 90.0},
                                 "concurrency": {"count": 0, "ratio": 0.0}, "throttle": {"count": 0, "ratio": 0.0}}}


# --- the runner on its own ----------------------------------------------------------------------


def test_bot_contract_ok_deterministic_and_params_matter(tmp_path):
    r = CommandRunner(BOT, 30, CFG)
    a = r.run(PARAMS, iteration=1, seed=7, run_dir=tmp_path, start_s=0.0)
    b = r.run(PARAMS, iteration=1, seed=7, run_dir=tmp_path, start_s=0.0)
    assert a.ok and a.failure is None
    assert a.kpis == b.kpis                       # seeded model
    assert a.params == PARAMS and a.params_missing == []
    k = a.kpis
    assert 0 <= k["maker_taker_ratio"] <= 1 and k["maker_taker_source"] == "fills_volume"
    f = k["fills"]
    assert k["maker_taker_ratio"] == pytest.approx(f["maker_volume"] / (f["maker_volume"] + f["taker_volume"]))
    # block_reasons percentages → shares of blocked actions from the counts
    counts = k["blocks"]["counts"]
    blocked = sum(counts[x] for x in ("min_interval", "concurrency", "risk", "throttle"))
    assert k["risk_ratio"] == pytest.approx(counts["risk"] / blocked)
    wider = dict(PARAMS, base_spread_bps_delta=0.6)
    c = r.run(wider, iteration=1, seed=7, run_dir=tmp_path, start_s=0.0)
    assert c.kpis["gross_bps"] > k["gross_bps"] + 1.0  # the overrides reach the bot's model
    other_seed = r.run(PARAMS, iteration=1, seed=8, run_dir=tmp_path, start_s=0.0)
    assert other_seed.kpis["net_bps"] != k["net_bps"]


def test_environment_and_files_stay_inside_run_dir(tmp_path):
    bot = write_bot(tmp_path, """
        env = {k: v for k, v in os.environ.items() if k.startswith('SOAK_')}
        env['overrides'] = json.load(open(env['SOAK_OVERRIDES']))
        json.dump({'totals': {'net_bps': 1.0}, 'env': env}, open(out, 'w'))
    """)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    o = CommandRunner(bot, 30, CFG).run(PARAMS, iteration=3, seed=11, run_dir=run_dir, start_s=7200.0)
    assert o.ok
    env = json.loads((run_dir / ".runner" / "iter_3" / "output.json").read_text())["env"]
    assert env["SOAK_ITERATION"] == "3" and env["SOAK_SEED"] == "11"
    assert Path(env["SOAK_RUN_DIR"]) == run_dir.resolve()
    for k in ("SOAK_OVERRIDES", "SOAK_OUTPUT"):
        assert run_dir.resolve() in Path(env[k]).parents
    assert env["overrides"] == PARAMS
    assert float(env["SOAK_START_S"]) == 7200.0
    # no applied_overrides echoed: nothing is claimed as "ran with"; all requested keys missing
    assert o.params == {} and o.params_missing == sorted(PARAMS)


def test_nested_applied_overrides_resolve_through_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("EXAMPLE_BOT_NESTED", "1")
    o = CommandRunner(BOT, 30, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    assert o.ok and o.params == PARAMS and o.params_missing == []
    # flat wins over the seed's nested delta sections; unknown keys are the bot's own; partial → missing
    got = applied_params({"min_interval_ms": 70, "engine": {"min_interval_ms": 5, "tail_age_ms": 650},
                          "bot_private": {"x": 1}}, REG, path="x")
    assert got == {"min_interval_ms": 70, "tail_age_ms": 650}


@pytest.mark.parametrize("mode, reason", [
    ("crash", "exit code 3"),
    ("garbage", "invalid output: SOAK_OUTPUT: invalid JSON"),
    ("nothing", "wrote no output file"),
])
def test_bot_failures_become_failed_outputs(tmp_path, monkeypatch, mode, reason):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", mode)
    o = CommandRunner(BOT, 30, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    assert not o.ok and reason in o.failure["reason"]
    assert f"mode {mode}" in o.failure["stderr_tail"]
    if mode == "crash":
        assert "venue connection lost" in o.failure["stderr_tail"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_hang_times_out_and_kills_the_process_group(tmp_path, monkeypatch):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "hang")
    t0 = time.monotonic()
    o = CommandRunner(BOT, 1.0, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    took = time.monotonic() - t0
    assert not o.ok and o.failure["reason"].startswith("timed out after 1 s")
    assert "hanging" in o.failure["stderr_tail"]
    assert took < 1.0 + CFG["external"]["term_grace_s"] + 1.5
    pids = [int(x) for x in (tmp_path / ".runner" / "iter_1" / "hang.pid").read_text().split()]
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "bot or its child survived the timeout"


@pytest.mark.parametrize("doc, needle", [
    ({"total": {**GOOD_TOTALS, "p95_latency_ms": "250"}},
     "total.p95_latency_ms': expected a number, got the string"),
    ({"total": {**GOOD_TOTALS, "risk_ratio": 1.7}}, "total.risk_ratio': ratio 1.7 out of range"),
    ({"totals": {**GOOD_TOTALS, "block_reasons": {"risk": {"ratio": 170.0}}}}, "totals.block_reasons.risk.ratio"),
    ({"totals": {**GOOD_TOTALS, "fills": {"maker_volume": -1.0, "taker_volume": 1.0}}}, "totals.fills.maker_volume"),
    ('{"totals": {"net_bps": NaN}}', "non-finite number literal NaN"),
    ('{"totals": {"net_bps": 1.0', "invalid JSON"),
    ([1, 2], "expected a JSON object, got list"),
    ({"symbols": {}}, "no 'totals' or 'total'"),
])
def test_invalid_output_is_a_failed_iteration(tmp_path, doc, needle):
    text = doc if isinstance(doc, str) else json.dumps(doc)
    bot = write_bot(tmp_path, f"open(out, 'w').write({text!r})\n")
    o = CommandRunner(bot, 30, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    assert not o.ok
    assert needle in o.failure["reason"], o.failure["reason"]


def test_total_spelling_and_applied_non_number(tmp_path):
    ok = write_bot(tmp_path, f"json.dump({{'total': {GOOD_TOTALS!r}}}, open(out, 'w'))\n")
    o = CommandRunner(ok, 30, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    assert o.ok and o.kpis["risk_ratio"] == pytest.approx(0.1) and o.kpis["maker_taker_ratio"] == pytest.approx(0.9)
    bad = write_bot(tmp_path, f"json.dump({{'totals': {GOOD_TOTALS!r}, 'applied_overrides': "
                              "{'engine': {'min_interval_ms': '60'}}}, open(out, 'w'))\n")
    o = CommandRunner(bad, 30, CFG).run(PARAMS, iteration=1, seed=1, run_dir=tmp_path, start_s=0.0)
    assert not o.ok and "applied_overrides.engine.min_interval_ms" in o.failure["reason"]


def test_bad_command_lines_are_config_errors():
    with pytest.raises(ConfigError, match="command not found"):
        CommandRunner("definitely-not-a-bot-xyz --flag", 10, CFG)
    with pytest.raises(ConfigError, match="cannot parse"):
        CommandRunner("python 'unbalanced", 10, CFG)
    with pytest.raises(ConfigError, match="timeout"):
        CommandRunner(BOT, 0, CFG)


# --- through `soak run --runner` ----------------------------------------------------------------


def test_cli_runner_not_found_exit_2(tmp_path, capsys):
    rc, _, err = soak(capsys, "run", "--runner", "no-such-bot-xyz", "--iterations", "2",
                      "--runs-dir", str(tmp_path / "runs"))
    assert rc == 2 and "command not found" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_crash_continue_keeps_earlier_records(tmp_path, capsys, monkeypatch):
    args = ["run", "--runner", BOT, "--iterations", "4", "--seed", "5", "--no-auto-tune"]
    rc, _, _ = soak(capsys, *args, "--runs-dir", str(tmp_path / "clean"))
    assert rc == 0
    clean = open_run(only_run(tmp_path / "clean"))
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "crash")
    monkeypatch.setenv("EXAMPLE_BOT_MODE_AT", "2")
    rc, _, err = soak(capsys, *args, "--on-failure", "continue", "--runs-dir", str(tmp_path / "crash"))
    assert rc == 0, err
    run = open_run(only_run(tmp_path / "crash"))
    assert [r["status"] for r in run.records] == ["ok", "failed", "ok", "ok"]
    failed = run.records[1]
    assert failed["failure"]["reason"] == "exit code 3"
    assert "venue connection lost" in failed["failure"]["stderr_tail"]
    assert run.iterations.loc[2, ["net_bps", "risk_ratio"]].isna().all()
    # the iteration before the failure is exactly what the clean run recorded
    assert strip_wall_clock(run.records[0]) == strip_wall_clock(clean.records[0])
    # the one after the failure ran on its own seed and params: same as the clean run's iteration 3
    assert run.records[2]["summary"]["net_bps"] == clean.records[2]["summary"]["net_bps"]
    assert any("failed iterations: 2" in w for w in run.warnings)


def test_hang_with_stop_policy_exit_4_and_records_intact(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "hang")
    monkeypatch.setenv("EXAMPLE_BOT_MODE_AT", "3")
    runs = tmp_path / "runs"
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", "5", "--iteration-timeout", "1",
                      "--on-failure", "stop", "--runs-dir", str(runs))
    assert rc == 4 and "stopping (on_failure=stop)" in err and "Traceback" not in err
    rd = only_run(runs)
    assert sorted(p.name for p in rd.glob("ITER_SUMMARY_*.json")) == [f"ITER_SUMMARY_{i}.json" for i in (1, 2, 3)]
    m = json.loads((rd / "run.json").read_text())
    assert m["status"] == "failed" and m["iterations_done"] == 3
    rec3 = json.loads((rd / "ITER_SUMMARY_3.json").read_text())
    assert rec3["status"] == "failed" and rec3["failure"]["reason"].startswith("timed out after 1 s")
    assert not (runs / "latest").exists()  # latest only names completed runs
    # nothing outside the run dir: the runs dir holds just the run (and no temp files)
    assert [p.name for p in runs.iterdir()] == [rd.name]


def test_garbage_and_nothing_continue(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "garbage")
    monkeypatch.setenv("EXAMPLE_BOT_MODE_AT", "1")
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", "2", "--runs-dir", str(runs))
    assert rc == 0, err
    run = open_run(runs / "latest")
    assert run.records[0]["status"] == "failed" and "invalid JSON" in run.records[0]["failure"]["reason"]
    assert run.records[1]["status"] == "ok"
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "nothing")
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", "2", "--runs-dir", str(tmp_path / "r2"))
    assert rc == 0, err
    run = open_run(tmp_path / "r2" / "latest")
    assert run.records[0]["failure"]["reason"].startswith("exited 0 but wrote no output")


def test_too_many_failures_exit_4(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "crash")
    max_failed = CFG["run"]["max_failed_iterations"]
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", str(max_failed + 3),
                      "--runs-dir", str(tmp_path / "runs"))
    assert rc == 4 and "more than run.max_failed_iterations" in err
    rd = only_run(tmp_path / "runs")
    assert len(list(rd.glob("ITER_SUMMARY_*.json"))) == max_failed + 1


@pytest.mark.parametrize("auto_tune", ["--no-auto-tune", "--auto-tune"])
def test_ignored_parameter_is_flagged_by_verify(tmp_path, capsys, monkeypatch, auto_tune):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "ignore:tail_age_ms")
    runs = tmp_path / "runs"
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", "5", auto_tune, "--runs-dir", str(runs))
    assert rc == 0, err
    run = open_run(runs / "latest")
    # the records hold what the bot says it ran with, not what it was asked
    assert run.params["tail_age_ms"].iloc[0] == PARAMS["tail_age_ms"] * 1.2
    rep = verify_run(run, CFG)
    flagged = {k["param"] for p in rep.pairs for k in p["keys"] if k["outcome"] in ("mismatch", "missing")}
    assert flagged == {"tail_age_ms"}
    # and through the CLI: --strict fails on it, naming the parameter
    rc, out, err = soak(capsys, "verify", str(runs / "latest"), "--strict")
    assert rc == 1 and "tail_age_ms" in (out + err).replace("\\", "")


def test_stop_then_resume_keeps_records_byte_identical(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EXAMPLE_BOT_MODE", "crash")
    monkeypatch.setenv("EXAMPLE_BOT_MODE_AT", "3")
    runs = tmp_path / "runs"
    rc, _, err = soak(capsys, "run", "--runner", BOT, "--iterations", "5", "--on-failure", "stop",
                      "--iteration-timeout", "20", "--runs-dir", str(runs))
    assert rc == 4, err
    rd = only_run(runs)
    before = {p.name: p.read_bytes() for p in rd.glob("ITER_SUMMARY_*.json")}
    assert sorted(before) == ["ITER_SUMMARY_1.json", "ITER_SUMMARY_2.json", "ITER_SUMMARY_3.json"]
    monkeypatch.delenv("EXAMPLE_BOT_MODE")  # the bot is fixed; resume with the run's own settings
    rc, out, err = soak(capsys, "run", "--resume", str(rd))
    assert rc == 0, out + err
    assert {n: (rd / n).read_bytes() for n in before} == before
    run = open_run(rd)
    assert [r["status"] for r in run.records] == ["ok", "ok", "failed", "ok", "ok"]
    assert run.manifest["config"]["run"]["iteration_timeout_s"] == 20.0


def test_sigterm_of_soak_kills_the_bot_and_run_resumes(tmp_path):
    """The bot runs in its own session: when soak itself is stopped, soak must take the bot down."""
    import signal
    import subprocess

    runs = tmp_path / "runs"
    env = dict(os.environ, EXAMPLE_BOT_MODE="hang", EXAMPLE_BOT_MODE_AT="2")
    proc = subprocess.Popen([sys.executable, "-m", "soaklib", "run", "--runner", BOT, "--iterations", "3",
                             "--iteration-timeout", "60", "--runs-dir", str(runs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        pid_files = []
        while not pid_files and time.monotonic() < deadline:
            pid_files = list(runs.glob("*/.runner/iter_2/hang.pid")) if runs.exists() else []
            time.sleep(0.05)
        assert pid_files, "the bot never started hanging"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and b"Traceback" not in err
    pids = [int(x) for x in pid_files[0].read_text().split()]
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "bot outlived soak"
    rd = only_run(runs)
    m = json.loads((rd / "run.json").read_text())
    assert m["status"] == "interrupted" and m["iterations_done"] == 1
    r = subprocess.run([sys.executable, "-m", "soaklib", "run", "--resume", str(rd)], cwd=tmp_path,
                       capture_output=True, env={k: v for k, v in os.environ.items() if not k.startswith("EXAMPLE_")})
    assert r.returncode == 0, r.stderr
    assert [json.loads((rd / f"ITER_SUMMARY_{i}.json").read_text())["status"] for i in (1, 2, 3)] == ["ok"] * 3
