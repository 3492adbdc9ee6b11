"""Issue 19 (hardening), items 6, 7, 10, 11, 12, 13: write errors, interrupted bundles/reports/runs,
bots that outlive soak, out-of-bounds echoes, over-full runs, a full disk during `soak run`.

The crash trials (kill -9 at random moments of run, report and bundle, then resume/re-run) are the
slow test at the end."""
from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import require_tool, run_cli
from test_bundle import make_reported_run, ramp

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import InputError
from soaklib.core.params import registry
from soaklib.core.records import strip_wall_clock
from soaklib.execute import supervisor
from soaklib.publish import bundle, reports
from soaklib.store import rundir
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run
from soaklib.tune import loop

REG = registry(load_config())
GOOD_TOTALS = {"net_bps": 3.0, "adverse_bps_p95": 2.0, "slippage_bps_p95": 1.0, "p95_latency_ms": 250.0,
               "fills": {"maker_volume": 9.0, "taker_volume": 1.0}}


def _enospc_after(monkeypatch, predicate):
    """core.io.atomic_write_bytes raises ENOSPC for paths where ``predicate(path)`` is true."""
    real = _io.atomic_write_bytes

    def fake(path, data, *, exclusive=False):
        if predicate(Path(path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data, exclusive=exclusive)

    monkeypatch.setattr(_io, "atomic_write_bytes", fake)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("soak: error: ") and "Traceback" not in err, err
    return lines[0]


def _sim_run(tmp_path: Path, capsys, n: int = 3) -> Path:
    code, _o, err = run_cli(["run", "--iterations", n, "--seed", 5, "--auto-tune", "--duration-s", 300,
                             "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    return (tmp_path / "runs" / "latest").resolve()


# --- 6: write errors are one line --------------------------------------------------------------

def test_verify_disk_full_is_one_line(tmp_path, capsys, monkeypatch):
    run = _sim_run(tmp_path, capsys)
    _enospc_after(monkeypatch, lambda p: p.name.startswith("DELTA_VERIFY"))
    code, _o, err = run_cli(["verify", run], capsys)
    line = _one_error_line(err)
    assert code == 2 and "No space left on device" in line and str(run / rundir.REPORTS_DIR) in line


def test_bundle_disk_full_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    _enospc_after(monkeypatch, lambda p: p.name == bundle.CHANGELOG)
    out = tmp_path / "rel" / "v1.0.0"
    code, _o, err = run_cli(["bundle", run, "--out", out], capsys)
    line = _one_error_line(err)
    assert code == 2 and "No space left on device" in line and str(out) in line
    assert not (tmp_path / "rel").exists()


def test_bundle_parent_is_a_file_is_one_line(tmp_path, capsys):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    (tmp_path / "afile").write_text("x")
    code, _o, err = run_cli(["bundle", run, "--out", tmp_path / "afile" / "v1.0.0"], capsys)
    assert code == 2 and "afile" in _one_error_line(err)


def test_report_unwritable_output_is_one_line(tmp_path, capsys):
    p = write_synthetic_run(tmp_path / "runs", 4)
    (tmp_path / "afile").write_text("x")
    code, _o, err = run_cli(["report", p, "--out", tmp_path / "afile" / "out"], capsys)
    line = _one_error_line(err)
    assert code == 2 and "cannot write the report" in line and "afile" in line


def test_report_disk_full_while_rendering_is_one_line(tmp_path, capsys, monkeypatch):
    p = write_synthetic_run(tmp_path / "runs", 4)
    _enospc_after(monkeypatch, lambda p: p.suffix == ".html")
    code, _o, err = run_cli(["report", p, "--no-simulate"], capsys)
    assert code == 2 and "No space left on device" in _one_error_line(err)


# --- 7: interrupted bundle / report / run creation -----------------------------------------------

def test_bundle_force_swaps_in_one_step(tmp_path, monkeypatch):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    out = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(run, out, load_config())
    seen = []
    real = bundle._exchange

    def watch(a, b):  # at the moment of the swap, --out is a whole bundle
        seen.append(bundle.verify_bundle(b, raise_on_fail=False).ok)
        return real(a, b)

    monkeypatch.setattr(bundle, "_exchange", watch)
    bundle.build_bundle(run, out, load_config(), force=True)
    assert seen == [True] and bundle.verify_bundle(out).ok
    assert [p.name for p in out.parent.iterdir()] == ["v1.0.0"]  # the old one is gone, nothing hides


def test_bundle_leftovers_of_a_killed_run_are_cleaned_or_restored(tmp_path):
    run = make_reported_run(tmp_path / "runs", params=ramp)
    out = tmp_path / "rel" / "v1.0.0"
    bundle.build_bundle(run, out, load_config())
    dead = _dead_pid()
    # a --force killed between its two renames (no exchange available): old bundle aside, nothing at out
    old = out.parent / f".v1.0.0.old-{dead}-abc"
    os.rename(out, old)
    tmp = out.parent / f".v1.0.0.tmp-{dead}-def"
    tmp.mkdir()
    (tmp / "half").write_text("x")
    live = out.parent / f".v1.0.0.tmp-{os.getpid()}-ghi"  # one of a process still running: not touched
    live.mkdir()
    with pytest.raises(InputError, match="already exists"):  # restored first, so --force is needed
        bundle.build_bundle(run, out, load_config())
    assert bundle.verify_bundle(out).ok and not old.exists() and not tmp.exists() and live.exists()


def test_report_kernel_files_are_private_and_removed(tmp_path, monkeypatch):
    p = write_synthetic_run(tmp_path / "runs", 4)
    stale = Path(reports.tempfile.gettempdir()) / f"{reports._KERNEL_DIR_PREFIX}{_dead_pid()}-zz"
    stale.mkdir(exist_ok=True)
    (stale / "kernel-audit.json").write_text("{}")
    seen = []
    real = reports._start_kernel

    def spy(kernel_name, name=None, kdir=None):
        km = real(kernel_name, name, kdir)
        seen.append(Path(km.connection_file))
        return km

    monkeypatch.setattr(reports, "_start_kernel", spy)
    reports.render(p, simulate=False)
    assert not stale.exists()
    assert len(seen) == 2 and all(f.parent.name.startswith(reports._KERNEL_DIR_PREFIX) for f in seen)
    assert not any(f.parent.exists() for f in seen)


def test_lock_only_run_dir_is_recognised_and_cleaned(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    _enospc_after(monkeypatch, lambda p: p.name == rundir.MANIFEST)
    code, _o, err = run_cli(["run", "--iterations", 1, "--runs-dir", runs], capsys)
    assert code == 2 and "No space left on device" in _one_error_line(err)
    assert list(runs.iterdir()) == []  # no directory holding only .lock
    monkeypatch.undo()
    # one left by a process killed at that moment
    d = runs / "20250101T000000Z-0000abcd"
    d.mkdir()
    (d / rundir.LOCK).touch()
    empty = runs / "20250101T000000Z-0000abce"  # killed right after its mkdir
    empty.mkdir()
    for x in (d, empty):
        os.utime(x, (time.time() - 3600,) * 2)
    code, _o, err = run_cli(["run", "--resume", d], capsys)
    assert code == 2 and "only .lock" in _one_error_line(err)
    _sim_run(tmp_path, capsys, n=1)  # a new run does not trip on them, and removes them
    assert not d.exists() and not empty.exists()


# --- 10: the bot does not outlive soak ------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _escaping_bot(tmp_path: Path) -> tuple[str, Path]:
    """A bot that starts a setsid grandchild (sleeping, pid written to a file) and reports normally."""
    pids = tmp_path / "escaped.pid"
    bot = tmp_path / "bot.py"
    bot.write_text(textwrap.dedent(f"""
        import json, os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        open({str(pids)!r}, "a").write(f"{{child.pid}}\\n")
        json.dump({{"totals": {json.dumps(GOOD_TOTALS)}}}, open(os.environ["SOAK_OUTPUT"], "w"))
        if os.environ.get("BOT_HANG"):
            import time; time.sleep(120)
    """))
    return f"{sys.executable} {bot}", pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pids, timeout=10.0) -> bool:
    t = time.time() + timeout
    while time.time() < t:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_setsid_child_of_a_finished_bot_is_killed(tmp_path, capsys):
    cmd, pids = _escaping_bot(tmp_path)
    code, _o, err = run_cli(["run", "--runner", cmd, "--iterations", 2, "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    escaped = [int(x) for x in pids.read_text().split()]
    assert len(escaped) == 2 and _wait_dead(escaped)


def test_kill_9_of_soak_then_resume_reaps_the_bot(tmp_path):
    cmd, pids = _escaping_bot(tmp_path)
    runs = tmp_path / "runs"
    env = dict(os.environ, BOT_HANG="1")
    proc = subprocess.Popen([sys.executable, "-m", "soaklib", "run", "--runner", cmd, "--iterations", "2",
                             "--iteration-timeout", "100", "--runs-dir", str(runs)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (pids.exists() and pids.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    run = next(d for d in runs.iterdir() if rundir.RUN_ID_RE.match(d.name))
    info = json.loads(supervisor.pidfile(run).read_text())
    proc.kill()
    proc.wait()
    bot, child = info["pid"], int(pids.read_text().split()[0])
    assert _alive(bot) and _alive(child)  # what a kill -9 leaves behind
    killed = supervisor.reap(run)  # what --resume does first
    assert bot in killed and child in killed and _wait_dead([bot, child])
    assert not supervisor.pidfile(run).exists()


def test_reap_spares_a_recycled_pid(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        supervisor.pidfile(tmp_path).parent.mkdir(parents=True)
        _io.write_json(supervisor.pidfile(tmp_path), {"pid": other.pid, "start_time": 1, "token": "nobody"})
        assert supervisor.reap(tmp_path) == [] and other.poll() is None
    finally:
        other.kill()
        other.wait()


def _detaching_bot(tmp_path: Path) -> tuple[str, Path]:
    """A bot whose child clears its environment (``env -i``: no token), leaves the session (``setsid``:
    no process group) and double-forks (no parent to find it by): the grandchild sleeps, its pid
    appended to a file. The bot waits for that pid, then reports (or, with BOT_HANG, hangs)."""
    env_tool, setsid = require_tool("env"), require_tool("setsid")
    pids = tmp_path / "detached.pid"
    detach = tmp_path / "detach.py"
    detach.write_text(textwrap.dedent("""
        import os, sys, time
        if os.fork():
            os._exit(0)
        if os.fork():
            os._exit(0)
        with open(sys.argv[1], "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(300)
    """))
    bot = tmp_path / "detaching_bot.py"
    bot.write_text(textwrap.dedent(f"""
        import json, os, subprocess, sys, time
        pids = {str(pids)!r}
        before = open(pids).read().count("\\n") if os.path.exists(pids) else 0
        subprocess.run([{env_tool!r}, "-i", {setsid!r}, sys.executable, {str(detach)!r}, pids], check=True)
        while not os.path.exists(pids) or open(pids).read().count("\\n") == before:
            time.sleep(0.01)
        if os.environ.get("BOT_HANG"):
            time.sleep(120)
        json.dump({{"totals": {json.dumps(GOOD_TOTALS)}}}, open(os.environ["SOAK_OUTPUT"], "w"))
    """))
    return f"{sys.executable} {bot}", pids


def test_detached_env_cleared_grandchild_dies_with_its_iteration(tmp_path, capsys):
    """The normal end of each iteration leaves nothing the bot started alive (soak is the subreaper)."""
    cmd, pids = _detaching_bot(tmp_path)
    code, _o, err = run_cli(["run", "--runner", cmd, "--iterations", 2, "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    detached = [int(x) for x in pids.read_text().split()]
    assert len(detached) == 2 and not any(_alive(p) for p in detached)  # killed and reaped, not left dying
    assert not list((tmp_path / "runs").glob(f"*/{supervisor.WORK_DIR}/{supervisor.PIDFILE}"))


def test_kill_9_of_soak_then_resume_kills_the_detached_grandchild(tmp_path):
    """kill -9 of soak mid-iteration: the env -i / setsid / double-forked grandchild carries no token and
    has init as parent; its pid and start time recorded in the run dir let --resume kill it."""
    cmd, pids = _detaching_bot(tmp_path)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "soaklib", "run", "--runner", cmd, "--iterations", "2",
                             "--iteration-timeout", "100", "--runs-dir", str(runs)],
                            env=dict(os.environ, BOT_HANG="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        child, run = None, None
        while time.time() < deadline:  # until the grandchild is in the run dir's record
            if child is None and pids.exists() and pids.read_text().strip():
                child = int(pids.read_text().split()[0])
            if child is not None and run is None:
                run = next((d for d in runs.iterdir() if rundir.RUN_ID_RE.match(d.name)), None)
            try:
                recorded = json.loads(supervisor.pidfile(run).read_text())["procs"] if run else []
            except (OSError, ValueError):
                recorded = []
            if child is not None and child in [p for p, _st in recorded]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the detached grandchild was never recorded")
    finally:
        proc.kill()
        proc.wait()
    assert _alive(child)  # what a kill -9 of soak leaves behind: no token, not below any bot process
    res = subprocess.run([sys.executable, "-m", "soaklib", "run", "--resume", str(run)], capture_output=True,
                         text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "BOT_HANG"})
    assert res.returncode == 0, res.stderr
    assert _wait_dead([child], timeout=5)
    detached = [int(x) for x in pids.read_text().split()]
    assert len(detached) == 3 and not any(_alive(p) for p in detached)  # the resume's own, too
    assert _io.read_json(run / rundir.MANIFEST)["status"] == "completed"
    assert len(open_run(run).records) == 2


# --- 11: out-of-bounds echoes are flagged, never sent back ----------------------------------------

def test_out_of_bounds_echo_is_flagged_and_not_sent_back(tmp_path, capsys):
    log = tmp_path / "requests.jsonl"
    bot = tmp_path / "bot.py"
    bot.write_text(textwrap.dedent(f"""
        import json, os
        req = json.load(open(os.environ["SOAK_OVERRIDES"]))
        open({str(log)!r}, "a").write(json.dumps(req) + "\\n")
        applied = dict(req, min_interval_ms=999999, concurrency_limit=-7)
        json.dump({{"totals": {json.dumps(GOOD_TOTALS)}, "applied_overrides": applied}},
                  open(os.environ["SOAK_OUTPUT"], "w"))
    """))
    code, _o, err = run_cli(["run", "--runner", f"{sys.executable} {bot}", "--iterations", 3, "--auto-tune",
                             "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    run = open_run(tmp_path / "runs" / "latest")
    for rec in run.records:  # recorded as reported, and flagged
        assert rec["params"]["min_interval_ms"] == 999999 and rec["params"]["concurrency_limit"] == -7
        assert rec["params_out_of_bounds"] == ["concurrency_limit", "min_interval_ms"]
    for req in [json.loads(x) for x in log.read_text().splitlines()][1:]:  # never sent back
        for k in ("min_interval_ms", "concurrency_limit"):
            assert REG[k].min <= req[k] <= REG[k].max, (k, req[k])
    # resume derives the same requests from disk
    assert loop.replay_params(run.manifest, run.records) == _io.read_json(run.path / rundir.OVERRIDES)


# --- 12: a run holding more records than planned is refused ----------------------------------------

def test_resume_refuses_more_records_than_planned(tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _o, err = run_cli(["run", "--iterations", 3, "--seed", 1, "--runs-dir", runs], capsys)
    assert code == 0, err
    src = (runs / "latest").resolve()
    code, _o, err = run_cli(["run", "--iterations", 7, "--seed", 1, "--runs-dir", tmp_path / "big"], capsys)
    big = (tmp_path / "big" / "latest").resolve()
    m = _io.read_json(big / rundir.MANIFEST)
    m.update(iterations_planned=3, iterations_done=3, status="interrupted")
    _io.write_json(big / rundir.MANIFEST, m)
    before = {p.name: p.read_bytes() for p in big.iterdir() if p.is_file()}
    code, _o, err = run_cli(["run", "--resume", big], capsys)
    assert code == 2 and "more than the 3 iterations planned" in _one_error_line(err)
    assert {p.name: p.read_bytes() for p in big.iterdir() if p.is_file()} == before
    assert (tmp_path / "big" / "latest").resolve() == big and src.exists()


# --- 13: a full disk during `soak run` ------------------------------------------------------------

def test_disk_full_during_run_is_one_line_with_the_true_count(tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    _enospc_after(monkeypatch, lambda p: (p.name == rundir.OVERRIDES and (p.parent / "ITER_SUMMARY_4.json").exists())
                  or (p.name == rundir.MANIFEST and (p.parent / "ITER_SUMMARY_4.json").exists()))
    code, _o, err = run_cli(["run", "--iterations", 6, "--duration-s", 300, "--runs-dir", runs], capsys)
    # the progress bar aside (its own \r-redrawn line), one message
    msgs = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("soak: ")]
    assert len(msgs) == 1 and msgs[0].startswith("soak: error: "), err
    line = msgs[0]
    run = next(d for d in runs.iterdir() if rundir.RUN_ID_RE.match(d.name))
    on_disk = len(list(run.glob(rundir.RECORD_GLOB)))
    assert code == 2 and on_disk == 4
    assert f"after {on_disk} iterations" in line and "No space left on device" in line and "--resume" in line
    assert "Traceback" not in err and "could not mark" not in err


# --- crash figures ------------------------------------------------------------------------------

def _soak(*args, env=None, timeout=300):
    return subprocess.Popen([sys.executable, "-m", "soaklib", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def _records(run: Path) -> dict:
    return {p.name: strip_wall_clock(_io.read_json(p)) for p in sorted(run.glob(rundir.RECORD_GLOB))}


@pytest.mark.slow
def test_crash_trials_kill_9_and_resume(tmp_path):
    """>= 50 kill -9 trials across run, report and bundle: each ends identical to an uninterrupted run
    or is cleanly refused (exit 2, one line). Counts are printed (pytest -s)."""
    rnd = random.Random(19)
    n_it = 4
    ref_runs = tmp_path / "ref"
    assert subprocess.run([sys.executable, "-m", "soaklib", "run", "--iterations", str(n_it), "--seed", "3",
                           "--auto-tune", "--duration-s", "600", "--runs-dir", str(ref_runs)],
                          capture_output=True).returncode == 0
    ref = _records((ref_runs / "latest").resolve())
    counts = {"run": [0, 0, 0], "report": [0, 0, 0], "bundle": [0, 0, 0]}  # identical, refused, other

    for i in range(30):  # run: kill at a random moment, resume until completed
        runs = tmp_path / f"run{i}"
        p = _soak("run", "--iterations", n_it, "--seed", 3, "--auto-tune", "--duration-s", 600, "--runs-dir", runs)
        time.sleep(rnd.uniform(1.0, 4.0))  # startup is ~1 s; 4 iterations take ~2 s more
        p.kill()
        p.wait()
        dirs = [d for d in runs.iterdir() if rundir.RUN_ID_RE.match(d.name)] if runs.exists() else []
        if not dirs:
            counts["run"][1] += 1  # killed before the run dir existed: nothing to resume
            continue
        r = subprocess.run([sys.executable, "-m", "soaklib", "run", "--resume", str(dirs[0])], capture_output=True,
                           text=True)
        if r.returncode == 0:
            counts["run"][0 if _records(dirs[0]) == ref else 2] += 1
        elif r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1:
            counts["run"][0 if _records(dirs[0]) == ref and "completed" in r.stderr else 1] += 1
        else:
            counts["run"][2] += 1

    reported = make_reported_run(tmp_path / "rep", params=ramp)
    good = tmp_path / "good" / "v1.0.0"  # same name as the trials' bundle: the documents name it
    bundle.build_bundle(reported, good, load_config(), version="v1.0.0")
    ref_manifest = {k: v for k, v in _io.read_json(good / bundle.MANIFEST)["files"].items()}
    for _ in range(12):  # bundle --force: kill at a random moment; --out always holds a whole bundle
        out = tmp_path / "rel" / "v1.0.0"
        if not out.exists():
            bundle.build_bundle(reported, out, load_config())
        p = _soak("bundle", reported, "--out", out, "--force")
        time.sleep(rnd.uniform(0.2, 2.0))
        p.kill()
        p.wait()
        r = subprocess.run([sys.executable, "-m", "soaklib", "bundle", reported, "--out", str(out), "--force"],
                           capture_output=True, text=True)
        ok = (r.returncode == 0 and bundle.verify_bundle(out, raise_on_fail=False).ok
              and _io.read_json(out / bundle.MANIFEST)["files"] == ref_manifest
              and [d.name for d in out.parent.iterdir()] == ["v1.0.0"])
        counts["bundle"][0 if ok else 2] += 1

    sim = (ref_runs / "latest").resolve()
    subprocess.run([sys.executable, "-m", "soaklib", "report", str(sim), "--no-simulate", "--out",
                    str(tmp_path / "refrep")], capture_output=True, check=True)
    ref_snap = _io.read_json(tmp_path / "refrep" / rundir.SNAPSHOT)
    for i in range(10):  # report: kill at a random moment, report again
        out = tmp_path / f"rep{i}"
        p = _soak("report", sim, "--no-simulate", "--out", out)
        time.sleep(rnd.uniform(0.5, 4.0))
        p.kill()
        p.wait()
        r = subprocess.run([sys.executable, "-m", "soaklib", "report", str(sim), "--no-simulate", "--out", str(out)],
                           capture_output=True, text=True)
        snap = _io.read_json(out / rundir.SNAPSHOT) if r.returncode == 0 else None
        same = snap is not None and {k: v for k, v in snap.items() if k != "timestamp"} == \
            {k: v for k, v in ref_snap.items() if k != "timestamp"}
        counts["report"][0 if same and (out / f"{rundir.AUDIT}.html").is_file() else 2] += 1
    # the kernels' connection files of the killed reports went with the re-runs
    assert not [d for d in Path(reports.tempfile.gettempdir()).glob(f"{reports._KERNEL_DIR_PREFIX}*")
                if not supervisor.alive(int(d.name[len(reports._KERNEL_DIR_PREFIX):].split("-")[0]))]
    print(f"\ncrash trials (identical, cleanly refused, other): {counts}")
    assert sum(sum(v) for v in counts.values()) >= 50
    assert all(v[2] == 0 for v in counts.values()), counts
