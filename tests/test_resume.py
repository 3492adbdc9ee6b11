"""Resume after SIGKILL at random moments: the finished run equals an uninterrupted one with the same seed
(records compared without the wall-clock fields); `latest` never names an incomplete run."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import InputError
from soaklib.core.params import load_profile, registry
from soaklib.core.records import strip_wall_clock
from soaklib.store.loader import open_run
from soaklib.store.rundir import RunDir
from soaklib.store.synthetic import ToyRunner
from soaklib.tune.loop import resume, run_soak

CFG = load_config()
BEST = load_profile("best_cell", registry(CFG))
N, SEED, DELAY = 6, 21, 0.03

# The child runs a toy soak and announces its run dir from the on_start observer, so the parent
# can kill it at a random moment after the directory exists.
_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from soaklib.core.config import load_config
    from soaklib.core.params import load_profile, registry
    from soaklib.tune.loop import run_soak
    from soaklib.store.synthetic import ToyRunner

    class Announce:
        def on_start(self, m):
            print(Path(sys.argv[1]) / m["run_id"], flush=True)

    cfg = load_config()
    run_soak(runs_dir=sys.argv[1], iterations=int(sys.argv[2]), cfg=cfg, profile_name="best_cell",
             profile_values=load_profile("best_cell", registry(cfg)), seed=int(sys.argv[3]), auto_tune=True,
             duration_s=60.0, runner=ToyRunner(delay_s=float(sys.argv[4])), observers=[Announce()])
""")


def stripped(records):
    return [strip_wall_clock(r) for r in records]


def no_clock(report):
    """TUNING_REPORT entries carry the iteration's runtime_utc (wall clock): drop it to compare."""
    return {**report, "iterations": [{k: v for k, v in e.items() if k != "runtime_utc"} for e in report["iterations"]]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    res = run_soak(runs_dir=tmp_path_factory.mktemp("ref"), iterations=N, cfg=CFG, profile_name="best_cell",
                   profile_values=BEST, seed=SEED, auto_tune=True, duration_s=60.0, runner=ToyRunner())
    assert any(r["tuning"]["applied"] for r in res.records), "reference must exercise tuning"
    return res


def kill_at_random(runs: Path, rng: random.Random, *, n=N, seed=SEED, delay=DELAY) -> Path:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(runs), str(n), str(seed), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line, proc.stderr.read()
        # anywhere from right after the dir exists to a little past the expected end
        time.sleep(rng.uniform(0.0, n * delay * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    return Path(line)


def check_latest(runs: Path) -> None:
    link = runs / "latest"
    if link.is_symlink():
        assert _io.read_json(link.resolve() / "run.json")["status"] == "completed"


def finish(run_dir: Path) -> None:
    try:
        res = resume(run_dir, runner=ToyRunner())
        assert res.status == "completed"
    except InputError as exc:  # the kill landed after completion
        assert "already completed" in str(exc)


def test_sigkill_then_resume_equals_uninterrupted(tmp_path, reference):
    rng = random.Random(1234)
    interrupted = 0
    for trial in range(12):
        runs = tmp_path / f"t{trial}"
        run_dir = kill_at_random(runs, rng)
        check_latest(runs)
        if _io.read_json(run_dir / "run.json")["status"] != "completed":
            interrupted += 1
        finish(run_dir)
        check_latest(runs)
        assert os.readlink(runs / "latest") == run_dir.name
        got = open_run(run_dir)
        assert stripped(got.records) == stripped(reference.records), f"trial {trial}"
        assert _io.read_json(run_dir / "runtime_overrides.json") == _io.read_json(reference.path / "runtime_overrides.json")
        assert no_clock(got.tuning_report) == no_clock(_io.read_json(reference.path / "TUNING_REPORT.json"))
        assert not list(run_dir.glob(".*.tmp"))
    assert interrupted >= 6, f"only {interrupted} of 12 kills landed mid-run; the trial timing is off"


def test_resume_rebuilds_stale_derived_files_from_records(tmp_path, reference):
    """Killed between writing a record and rewriting the derived files: resume derives them again."""
    for k in (0, 1, 3, N - 1, N):
        d = tmp_path / f"k{k}" / reference.path.name
        d.mkdir(parents=True)
        for i in range(1, k + 1):
            shutil.copy(reference.path / f"ITER_SUMMARY_{i}.json", d)
        m = _io.read_json(reference.path / "run.json")
        m.update(status="running", iterations_done=max(0, k - 1), finished_utc=None)
        _io.write_json(d / "run.json", m)
        _io.write_json(d / "runtime_overrides.json", {"min_interval_ms": 999})  # stale
        (d / f".ITER_SUMMARY_{k + 1}.json.abc.tmp").write_text("{half")   # a cut-short temp file
        res = resume(d, runner=ToyRunner())
        # N tuning iterations, then the confirmation phase (and its baseline arm, resumed too)
        assert res.status == "completed" and res.iterations_run == len(reference.records) - k
        assert stripped(open_run(d).records) == stripped(reference.records)
        assert _io.read_json(d / "runtime_overrides.json") == _io.read_json(reference.path / "runtime_overrides.json")
        assert not list(d.glob(".*.tmp"))


def test_resume_refuses_a_run_in_progress(tmp_path, reference):
    with RunDir.create(tmp_path, {"profile": {"name": "x", "values": {}}}) as rd:
        with pytest.raises(InputError, match="in progress"):
            resume(rd.path, runner=ToyRunner())


@pytest.mark.slow
def test_sigkill_resume_many_trials_simulator(tmp_path):
    """Longer variant on the real simulator, resumed through the CLI in a fresh process."""
    cfg = load_config(overrides={"run": {"duration_s": 300.0}})
    ref = run_soak(runs_dir=tmp_path / "ref", iterations=5, cfg=cfg, profile_name="best_cell", profile_values=BEST,
                   seed=5, auto_tune=True)
    rng = random.Random(99)
    interrupted = 0
    for trial in range(8):
        runs = tmp_path / f"t{trial}"
        cmd = [sys.executable, "-m", "soaklib", "run", "--iterations", "5", "--auto-tune", "--seed", "5",
               "--duration-s", "300", "--runs-dir", str(runs)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while not any(runs.glob("*/run.json")) and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.2 * ref.wall_s))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
        check_latest(runs)
        if _io.read_json(run_dir / "run.json")["status"] != "completed":
            interrupted += 1
            out = subprocess.run([sys.executable, "-m", "soaklib", "run", "--resume", str(run_dir)],
                                 capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
        assert stripped(open_run(run_dir).records) == stripped(ref.records), f"trial {trial}"
    assert interrupted >= 3, f"only {interrupted} of 8 kills landed mid-run"


def test_sigterm_marks_the_run_interrupted_and_it_resumes(tmp_path):
    """A polite stop (SIGTERM, as CI sends) leaves status interrupted, a hint, exit 130; resume finishes."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "soaklib", "run", "--iterations", "12", "--seed", "3", "--duration-s", "60",
           "--runs-dir", str(runs)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(runs.glob("*/ITER_SUMMARY_2.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    m = _io.read_json(run_dir / "run.json")
    if m["status"] == "completed":  # pragma: no cover - the run beat the signal
        pytest.skip("run finished before SIGTERM arrived")
    assert proc.returncode == 130 and m["status"] == "interrupted"
    assert f"soak run --resume {run_dir}" in err and "Traceback" not in err
    assert not (runs / "latest").exists()
    done = subprocess.run([sys.executable, "-m", "soaklib", "run", "--resume", str(run_dir)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _io.read_json(run_dir / "run.json")["status"] == "completed"
    assert len(open_run(runs / "latest").records) == 12


def test_resume_with_a_damaged_manifest_is_one_line_exit_2(tmp_path, reference):
    d = tmp_path / reference.path.name
    shutil.copytree(reference.path, d)
    m = _io.read_json(d / "run.json")
    m["status"] = "interrupted"
    del m["config"]["run"]
    _io.write_json(d / "run.json", m)
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"}
    with pytest.raises(InputError) as ei:
        resume(d, runner=ToyRunner())
    assert "run.json" in str(ei.value) and ei.value.exit_code == 2
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file() and p.name != ".lock"} == before
