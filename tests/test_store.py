"""Run directory store: exclusive creation, write-once records, atomic derived files, `latest`."""
from __future__ import annotations

import json
import os
import threading

import pytest

from soaklib.core import io as _io
from soaklib.core.errors import InputError, RecordError
from soaklib.store.rundir import (
    RUN_ID_RE,
    RunDir,
    list_runs,
    new_manifest,
    record_name,
    set_latest,
)
from soaklib.store.synthetic import write_synthetic_run


def _manifest():
    return new_manifest(config={"run": {}}, seed=1, runner="sim", scenario="default", profile_name="best_cell",
                        profile_values={"min_interval_ms": 60}, iterations_planned=3, auto_tune=False,
                        duration_s=60.0)


def test_create_makes_a_fresh_locked_dir_with_manifest(tmp_path):
    with RunDir.create(tmp_path / "runs", _manifest()) as rd:
        assert RUN_ID_RE.match(rd.path.name)
        m = json.loads((rd.path / "run.json").read_text())
        for k in ("schema_version", "run_id", "status", "created_utc", "finished_utc", "soaklib_version", "config",
                  "seed", "runner", "scenario", "profile", "iterations_planned", "iterations_done", "auto_tune",
                  "duration_s"):
            assert k in m, k
        assert m["status"] == "running" and m["run_id"] == rd.path.name
        assert m["profile"] == {"name": "best_cell", "values": {"min_interval_ms": 60}}
        # a second writer is refused while the first holds the lock
        with pytest.raises(InputError, match="in progress"):
            RunDir.open_for_resume(rd.path)
    rd2 = RunDir.open_for_resume(rd.path)  # lock released on close
    rd2.close()


def test_many_concurrent_creations_never_share_a_dir(tmp_path):
    paths, errors = [], []

    def make():
        try:
            with RunDir.create(tmp_path, _manifest()) as rd:
                paths.append(rd.path)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(paths)) == 16 and len(list_runs(tmp_path)) == 16


def test_records_are_write_once(tmp_path):
    with RunDir.create(tmp_path, _manifest()) as rd:
        rd.write_record({"iteration": 1, "x": 1})
        before = (rd.path / record_name(1)).read_bytes()
        with pytest.raises(RecordError, match="write-once"):
            rd.write_record({"iteration": 1, "x": 2})
        assert (rd.path / record_name(1)).read_bytes() == before
        assert not list(rd.path.glob(".*.tmp"))  # no temp file left behind


def test_derived_files_are_rewritten(tmp_path):
    with RunDir.create(tmp_path, _manifest()) as rd:
        rd.write_overrides({"a": 1})
        rd.write_overrides({"a": 2})
        assert _io.read_json(rd.path / "runtime_overrides.json") == {"a": 2}
        rd.write_tuning_report({"iterations": [], "summary": {"count": 0}})
        assert _io.read_json(rd.path / "TUNING_REPORT.json")["summary"]["count"] == 0


def test_latest_is_a_relative_symlink_replaced_atomically(tmp_path):
    a = write_synthetic_run(tmp_path, 2)
    assert os.readlink(tmp_path / "latest") == a.name
    b = write_synthetic_run(tmp_path, 2)
    assert os.readlink(tmp_path / "latest") == b.name
    assert not list(tmp_path.glob(".latest.*"))
    # a real directory called latest is never replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "latest").mkdir()
    with pytest.raises(InputError, match="not a symlink"):
        set_latest(other, "x")


def test_resume_refuses_completed_foreign_and_missing(tmp_path):
    done = write_synthetic_run(tmp_path, 2)
    with pytest.raises(InputError, match="already completed"):
        RunDir.open_for_resume(done)
    with pytest.raises(InputError, match="'latest' names a completed run"):
        RunDir.open_for_resume(tmp_path / "latest")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "ITER_SUMMARY_1.json").write_text("{}")
    with pytest.raises(InputError, match="no run.json"):
        RunDir.open_for_resume(foreign)
    (foreign / "run.json").write_text('{"hello": 1}')
    with pytest.raises(InputError, match="not a soaklib run manifest"):
        RunDir.open_for_resume(foreign)
    with pytest.raises(InputError, match="not a directory"):
        RunDir.open_for_resume(tmp_path / "missing")


def test_unwritable_runs_dir(tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")  # root ignores permissions; a file in the way fails for everyone
        with pytest.raises(InputError) as ei:
            RunDir.create(blocker / "runs", _manifest())
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(InputError) as ei:
                RunDir.create(ro, _manifest())
        finally:
            ro.chmod(0o755)
    assert "\n" not in str(ei.value)


def test_write_failure_is_an_input_error_and_leaves_files_intact(tmp_path, monkeypatch):
    with RunDir.create(tmp_path, _manifest()) as rd:
        rd.write_overrides({"a": 1})

        def full(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(_io.os, "fsync", full)
        with pytest.raises(InputError, match="No space left on device"):
            rd.write_overrides({"a": 2})
        monkeypatch.undo()
        assert _io.read_json(rd.path / "runtime_overrides.json") == {"a": 1}
        assert not list(rd.path.glob(".*.tmp"))


def test_a_latest_that_is_not_a_symlink_is_refused_before_the_run(tmp_path):
    import subprocess
    import sys

    runs = tmp_path / "runs"
    (runs / "latest").mkdir(parents=True)
    p = subprocess.run([sys.executable, "-m", "soaklib", "run", "--iterations", "2", "--duration-s", "60",
                        "--runs-dir", str(runs)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "latest" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert sorted(x.name for x in runs.iterdir()) == ["latest"]
