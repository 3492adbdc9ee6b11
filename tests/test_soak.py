"""The soak loop and `soak run`: smoke fields (seed §9.2), determinism, tuning wiring, failure policy,
observers, isolation of concurrent runs, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soaklib.cli import main as cli_main
from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import InputError, RunnerError
from soaklib.core.params import load_profile, registry
from soaklib.core.records import strip_wall_clock
from soaklib.core.seeding import iteration_seed
from soaklib.execute.base import RunnerOutput
from soaklib.execute.runners import SimRunner
from soaklib.store.loader import open_run
from soaklib.store.synthetic import ToyRunner
from soaklib.tune.loop import run_soak

CFG = load_config()
BEST = load_profile("best_cell", registry(CFG))
VALID_SOURCES = {"fills_volume", "fills_count", "weekly_rollup", "mock_default", "internal_fills", "existing",
                 "fallback"}


def soak(tmp_path, n=3, *, runner=None, seed=7, auto_tune=True, cfg=CFG, **kw):
    # the loop's mechanics; the confirmation phase has its own tests (test_confirm.py)
    kw.setdefault("confirm_iterations", 0)
    return run_soak(runs_dir=tmp_path, iterations=n, cfg=cfg, profile_name="best_cell", profile_values=BEST,
                    seed=seed, auto_tune=auto_tune, duration_s=60.0, runner=runner or ToyRunner(), **kw)


def assert_seed_smoke_fields(run_dir: Path, n: int) -> None:
    """Everything the seed's tests/smoke/test_soak_smoke.py requires (reference §9.2)."""
    for i in range(1, n + 1):
        rec = _io.read_json(run_dir / f"ITER_SUMMARY_{i}.json")
        assert "summary" in rec and rec["iteration"] == i
        t = rec["tuning"]
        assert isinstance(t["proposed_deltas"], dict) and isinstance(t["applied"], bool)
        assert isinstance(t["skip_reason"], (str, dict)) and isinstance(t["changed_keys"], list)
        assert "state_hash" in t and (t["state_hash"] is not None or not t["applied"])
        s = rec["summary"]
        assert s["p95_latency_ms"] > 0
        assert 0 <= s["maker_taker_ratio"] <= 1
        assert s["maker_taker_source"] in VALID_SOURCES
    last = _io.read_json(run_dir / f"ITER_SUMMARY_{n}.json")["summary"]
    assert last["risk_ratio"] <= 0.8 and last["net_bps"] > -10 and last["maker_taker_ratio"] >= 0.5
    rep = _io.read_json(run_dir / "TUNING_REPORT.json")
    assert len(rep["iterations"]) == n
    for e in rep["iterations"]:
        assert isinstance(e["proposed_deltas"], dict) and isinstance(e["applied"], bool)
        assert isinstance(e["skip_reason"], (str, dict)) and isinstance(e["changed_keys"], list)
        assert "state_hash" in e and e["signature"] is not None
    assert rep["summary"]["count"] == n


def test_smoke_three_iterations_toy(tmp_path):
    res = soak(tmp_path, 3)
    assert res.status == "completed" and len(res.records) == 3
    assert_seed_smoke_fields(res.path, 3)
    m = _io.read_json(res.path / "run.json")
    assert m["status"] == "completed" and m["iterations_done"] == 3 and m["finished_utc"]
    assert os.readlink(tmp_path / "latest") == res.path.name


def test_smoke_three_iterations_simulator(tmp_path):
    """The real simulator end to end (short windows keep it cheap)."""
    cfg = load_config(overrides={"run": {"duration_s": 120.0}})
    res = run_soak(runs_dir=tmp_path, iterations=3, cfg=cfg, profile_name="best_cell", profile_values=BEST, seed=11,
                   auto_tune=True, scenario="default", confirm_iterations=0)
    assert res.status == "completed"
    assert_seed_smoke_fields(res.path, 3)
    run = open_run(tmp_path / "latest")
    assert run.records[0]["runner"] == "sim" and run.records[0]["events"] > 0
    assert run.iterations["net_bps"].notna().all()


def test_same_seed_same_records_and_different_seed_differs(tmp_path):
    a = soak(tmp_path / "a", 5, seed=3)
    b = soak(tmp_path / "b", 5, seed=3)
    c = soak(tmp_path / "c", 5, seed=4)
    sa = [strip_wall_clock(r) for r in open_run(a.path).records]
    assert sa == [strip_wall_clock(r) for r in open_run(b.path).records]
    assert sa != [strip_wall_clock(r) for r in open_run(c.path).records]
    # byte-identical once the wall-clock fields are removed
    assert _io.dumps(sa) == _io.dumps([strip_wall_clock(r) for r in b.records])


def test_seed_and_window_derive_from_run_seed_and_iteration_only(tmp_path):
    toy = ToyRunner()
    soak(tmp_path, 4, runner=toy, seed=9)
    assert [c["seed"] for c in toy.calls] == [iteration_seed(9, n) for n in range(1, 5)]
    assert [c["start_s"] for c in toy.calls] == [0.0, 60.0, 120.0, 180.0]
    assert len({c["seed"] for c in toy.calls}) == 4
    assert iteration_seed(9, 3) == iteration_seed(9, 3) != iteration_seed(10, 3)


def test_tuned_params_land_in_the_next_iteration(tmp_path):
    toy = ToyRunner()
    res = soak(tmp_path, 6, runner=toy)
    recs = res.records
    assert any(r["tuning"]["applied"] for r in recs[:-1]), "toy KPIs should trigger at least one change"
    for n in range(1, 6):
        t = recs[n - 1]["tuning"]
        expected = dict(recs[n - 1]["params"])
        for d in t["decisions"]:
            if d["verdict"] != "blocked":
                expected[d["param"]] = d["new"]
        for k, dv in t["deltas"].items():
            assert expected[k] == pytest.approx(recs[n - 1]["params"][k] + dv)
        assert toy.calls[n]["params"] == pytest.approx(expected)      # what n+1 was asked to run with
        assert recs[n]["params"] == pytest.approx(expected)           # what it reported back
    assert _io.read_json(res.path / "runtime_overrides.json") == pytest.approx(
        {**recs[-1]["params"], **{k: recs[-1]["params"][k] + v for k, v in recs[-1]["tuning"]["deltas"].items()}})


def test_without_auto_tune_params_stay_fixed(tmp_path):
    toy = ToyRunner()
    res = soak(tmp_path, 4, runner=toy, auto_tune=False)
    assert all(c["params"] == BEST for c in toy.calls)
    for r in res.records:
        t = r["tuning"]
        assert t["applied"] is False and t["deltas"] == {} and t["skip_reason"] == {"reason": "auto_tune_off"}
        assert t["state_hash"] == t["old_hash"]
    assert _io.read_json(res.path / "runtime_overrides.json") == BEST


def test_failed_iteration_is_recorded_and_the_run_continues(tmp_path):
    toy = ToyRunner(fail_on=[2])
    res = soak(tmp_path, 4, runner=toy)
    r2 = res.records[1]
    assert res.status == "completed" and r2["status"] == "failed"
    assert r2["failure"] == {"reason": "toy failure", "stderr_tail": "iteration 2 told to fail"}
    assert r2["tuning"]["applied"] is False and r2["tuning"]["skip_reason"]["reason"] == "iteration_failed"
    assert toy.calls[2]["params"] == toy.calls[1]["params"]  # nothing tuned from a failed iteration
    run = open_run(res.path)
    assert run.iterations.loc[2, "status"] == "failed" and run.iterations["net_bps"].isna().sum() == 1


def test_on_failure_stop_exits_4_and_keeps_what_was_recorded(tmp_path):
    cfg = load_config(overrides={"run": {"on_failure": "stop"}})
    with pytest.raises(RunnerError) as ei:
        soak(tmp_path, 5, runner=ToyRunner(fail_on=[3]), cfg=cfg)
    assert ei.value.exit_code == 4 and "iteration 3 failed" in str(ei.value)
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(p.name for p in d.glob("ITER_SUMMARY_*")) == [f"ITER_SUMMARY_{i}.json" for i in (1, 2, 3)]
    assert _io.read_json(d / "run.json")["status"] == "failed"
    assert not (tmp_path / "latest").exists()  # latest only names completed runs


def test_max_failed_iterations(tmp_path):
    cfg = load_config(overrides={"run": {"max_failed_iterations": 1}})
    with pytest.raises(RunnerError, match="2 failed iterations, more than run.max_failed_iterations=1"):
        soak(tmp_path, 6, runner=ToyRunner(fail_on=[2, 4]), cfg=cfg)


def test_invalid_runner_output_becomes_a_failed_iteration(tmp_path):
    class Bad(ToyRunner):
        def run(self, params, **kw):
            out = super().run(params, **kw)
            if kw["iteration"] == 2:
                out.kpis["risk_ratio"] = 7.0
            return out

    res = soak(tmp_path, 3, runner=Bad())
    r2 = res.records[1]
    assert r2["status"] == "failed"
    assert "runner output invalid" in r2["failure"]["reason"] and "summary.risk_ratio" in r2["failure"]["reason"]


def test_simulator_crash_is_a_failed_iteration(monkeypatch):
    import soaklib.sim

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(soaklib.sim, "simulate", boom)
    out = SimRunner("default", 60.0, CFG).run(BEST, iteration=1, seed=1, run_dir=None, start_s=0.0)
    assert isinstance(out, RunnerOutput) and not out.ok
    assert out.failure["reason"] == "simulator raised ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in out.failure["stderr_tail"]


class Recorder:
    def __init__(self):
        self.events = []

    def on_start(self, manifest):
        self.events.append(("start", manifest["iterations_done"]))

    def on_iteration(self, record, manifest):
        self.events.append(("iteration", record["iteration"], manifest["iterations_done"]))

    def on_finish(self, manifest):
        self.events.append(("finish", manifest["status"]))


def test_observers_are_called_and_cannot_kill_the_run(tmp_path):
    class Broken:
        def on_iteration(self, record, manifest):
            raise RuntimeError("exporter down")

    rec = Recorder()
    res = soak(tmp_path, 3, observers=[Broken(), rec, object()])
    assert res.status == "completed"
    assert rec.events == [("start", 0), ("iteration", 1, 1), ("iteration", 2, 2), ("iteration", 3, 3),
                          ("finish", "completed")]


def test_invalid_arguments(tmp_path):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="iterations"):
            soak(tmp_path, bad)
    with pytest.raises(InputError, match="seed"):
        soak(tmp_path, 2, seed=-3)
    assert not any(tmp_path.iterdir())  # nothing was created


_CHILD = textwrap.dedent("""
    import sys
    from soaklib.core.config import load_config
    from soaklib.core.params import load_profile, registry
    from soaklib.tune.loop import run_soak
    from soaklib.store.synthetic import ToyRunner
    cfg = load_config()
    res = run_soak(runs_dir=sys.argv[1], iterations=int(sys.argv[2]), cfg=cfg, profile_name="best_cell",
                   profile_values=load_profile("best_cell", registry(cfg)), seed=int(sys.argv[3]), auto_tune=True,
                   duration_s=60.0, runner=ToyRunner(delay_s=float(sys.argv[4])))
    print(res.path)
""")


def test_two_concurrent_runs_never_share_a_file(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path), "6", "5", "0.01"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    dirs = [Path(o[0].strip()) for o in outs]
    assert dirs[0] != dirs[1] and all(d.parent == tmp_path for d in dirs)
    files = [{f.name for f in d.iterdir()} for d in dirs]
    assert all("ITER_SUMMARY_6.json" in f for f in files)
    inodes = [{(f.stat().st_dev, f.stat().st_ino) for f in d.iterdir()} for d in dirs]
    assert not inodes[0] & inodes[1]
    latest = (tmp_path / "latest").resolve()
    assert latest in [d.resolve() for d in dirs]
    assert _io.read_json(latest / "run.json")["status"] == "completed"
    # same seed: the two isolated runs recorded the same thing
    ra, rb = (open_run(d).records for d in dirs)
    assert [strip_wall_clock(r) for r in ra] == [strip_wall_clock(r) for r in rb]


# ------------------------------------------------------------------------------------------ CLI


def cli(args, capsys):
    with pytest.raises(SystemExit) as ei:
        cli_main(args)
    out = capsys.readouterr()
    return ei.value.code, out.out, out.err


@pytest.fixture
def toy_cli(monkeypatch):
    """`soak run` with the toy runner in place of the simulator (the CLI's runner factory is the seam)."""
    import soaklib.execute.runners

    monkeypatch.setattr(soaklib.execute.runners, "make_runner", lambda spec, **kw: ToyRunner())


def test_cli_run_prints_table_and_run_dir(tmp_path, capsys, toy_cli):
    code, out, err = cli(["run", "--iterations", "3", "--auto-tune", "--confirm-iterations", "0", "--runs-dir",
                          str(tmp_path), "--seed", "2", "--duration-s", "30"], capsys)
    assert code == 0, err
    assert "iter status" in out and out.count("\n") >= 5
    run_dir = Path(out.strip().splitlines()[-1].split()[1])
    assert run_dir.parent == tmp_path and "(completed, 3 iterations" in out
    m = _io.read_json(run_dir / "run.json")
    assert m["seed"] == 2 and m["duration_s"] == 30.0 and m["auto_tune"] is True and m["iterations_planned"] == 3
    assert_seed_smoke_fields(run_dir, 3)


@pytest.mark.parametrize("args, needle", [
    (["--iterations", "0"], "--iterations"),
    (["--iterations", "-2"], "--iterations"),
    (["--profile", "nosuch"], "unknown profile 'nosuch'"),
    (["--seed", "-1"], "--seed"),
    (["--duration-s", "0"], "--duration-s"),
    (["--scenario", "missing/file.toml"], "scenario file not found"),
    (["--scenario", "nosuch"], "unknown scenario 'nosuch'"),
    (["--on-failure", "explode"], "expected 'continue' or 'stop'"),
    (["--iterations", "many"], "field '--iterations': expected an integer >= 1, got \"many\""),
    (["--duration-s", "nan"], "--duration-s"),
])
def test_cli_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, toy_cli, args, needle):
    runs = tmp_path / "runs"
    code, out, err = cli(["run", "--runs-dir", str(runs), *args], capsys)
    assert code == 2
    assert err.startswith("soak: error: ") and needle in err and err.count("\n") == 1
    assert not runs.exists() or not any(runs.iterdir())


def test_cli_unwritable_runs_dir(tmp_path, capsys, toy_cli):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, out, err = cli(["run", "--iterations", "2", "--runs-dir", str(blocker / "runs")], capsys)
    assert code == 2 and err.startswith("soak: error: ") and err.count("\n") == 1
    assert blocker.read_text() == "keep me"


def test_cli_resume_refuses_completed_and_foreign(tmp_path, capsys, toy_cli):
    code, out, _ = cli(["run", "--iterations", "2", "--runs-dir", str(tmp_path)], capsys)
    assert code == 0
    run_dir = (tmp_path / "latest").resolve()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, out, err = cli(["run", "--resume", str(run_dir)], capsys)
    assert code == 2 and "already completed" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    code, out, err = cli(["run", "--resume", str(foreign)], capsys)
    assert code == 2 and "not a soaklib run directory" in err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    code, out, err = cli(["run", "--resume", str(run_dir), "--iterations", "5"], capsys)
    assert code == 2 and "cannot be combined with --resume" in err


def test_cli_runner_failure_beyond_policy_exits_4(tmp_path, capsys, monkeypatch):
    import soaklib.execute.runners

    monkeypatch.setattr(soaklib.execute.runners, "make_runner", lambda spec, **kw: ToyRunner(fail_on=[1]))
    code, out, err = cli(["run", "--iterations", "3", "--runs-dir", str(tmp_path), "--on-failure", "stop"], capsys)
    assert code == 4 and "iteration 1 failed" in err and "--resume" in err


def test_cli_write_failure_mid_run_exit_2_then_resume(tmp_path, capsys, monkeypatch, toy_cli):
    """Disk full while writing iteration 3: one line, exit 2, iterations 1-2 intact, resumable."""
    import soaklib.store.rundir

    real = soaklib.store.rundir._io.write_json

    def flaky(path, obj, **kw):
        if Path(path).name == "ITER_SUMMARY_3.json":
            raise OSError(28, "No space left on device")
        return real(path, obj, **kw)

    monkeypatch.setattr(soaklib.store.rundir._io, "write_json", flaky)
    code, out, err = cli(["run", "--iterations", "4", "--runs-dir", str(tmp_path), "--seed", "4", "--duration-s", "60"],
                         capsys)
    assert code == 2 and "No space left on device" in err and "ITER_SUMMARY_3.json" in err
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(p.name for p in run_dir.glob("ITER_SUMMARY_*")) == ["ITER_SUMMARY_1.json", "ITER_SUMMARY_2.json"]
    assert _io.read_json(run_dir / "run.json")["status"] == "interrupted"
    assert not list(run_dir.glob(".*.tmp")) and not (tmp_path / "latest").exists()
    monkeypatch.setattr(soaklib.store.rundir._io, "write_json", real)
    code, out, err = cli(["run", "--resume", str(run_dir)], capsys)
    assert code == 0, err
    ref = soak(tmp_path / "ref", 4, seed=4, auto_tune=False, runner_label="sim")
    assert [strip_wall_clock(r) for r in open_run(run_dir).records] == [strip_wall_clock(r) for r in ref.records]


def test_cli_metrics_port_serves_live_and_is_released(tmp_path, capsys, monkeypatch):
    """--metrics-port plugs the live exporter in as an observer; scraped mid-run, closed after."""
    import socket
    import urllib.request

    from helpers import free_port

    import soaklib.execute.runners

    port = free_port()
    scraped = []

    class Scraping(ToyRunner):
        def run(self, params, **kw):
            if kw["iteration"] == 3:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                    scraped.append(resp.read().decode())
            return super().run(params, **kw)

    monkeypatch.setattr(soaklib.execute.runners, "make_runner", lambda spec, **kw: Scraping())
    code, out, err = cli(["run", "--iterations", "3", "--runs-dir", str(tmp_path), "--metrics-port", str(port)],
                         capsys)
    assert code == 0, err
    assert scraped and "soak_" in scraped[0]
    with socket.socket() as s:  # the exporter was closed with the run (REUSEADDR: TIME_WAIT is fine)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


def test_cli_external_runner_is_wired(tmp_path, capsys):
    bot = Path(__file__).resolve().parents[1] / "examples" / "bot.py"
    if not bot.is_file():
        pytest.skip("examples/bot.py not present")
    cmd = f"{sys.executable} {bot}"
    code, out, err = cli(["run", "--runner", cmd, "--iterations", "2", "--runs-dir", str(tmp_path), "--duration-s", "60"],
                         capsys)
    assert code == 0, err
    run = open_run(tmp_path / "latest")
    assert [r["runner"] for r in run.records] == [cmd, cmd] and run.manifest["runner"] == cmd
