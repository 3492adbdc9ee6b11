"""open_run on our run layout: frames, numeric order, gaps, validation on read, bad paths."""
from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

import soaklib
from soaklib.core.errors import RecordError
from soaklib.core.run import Run
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run


@pytest.fixture
def run12(tmp_path):
    path = write_synthetic_run(tmp_path, 12, kpis=lambda i: {"net_bps": 1.0 + i / 10, "risk_ratio": i / 100},
                               params=lambda i: {"min_interval_ms": 60 + i}, failed=[4])
    return tmp_path, path


def test_open_latest_and_frames(run12):
    root, path = run12
    run = soaklib.open_run(root / "latest")
    assert isinstance(run, Run)
    assert run.path == path.resolve() and run.layout == "soaklib" and run.dialect == "soaklib"
    assert run.manifest["run_id"] == path.name and run.manifest["status"] == "completed"
    assert [r["iteration"] for r in run.records] == list(range(1, 13))
    assert len(run.ok_iterations) == 11 and run.gaps == []
    assert "failed iterations: 4" in run.warnings

    it = run.iterations
    assert it.index.name == "iteration" and list(it.index) == list(range(1, 13))
    assert it.loc[10, "net_bps"] == pytest.approx(2.0) and it.loc[10, "risk_ratio"] == pytest.approx(0.10)
    assert math.isnan(it.loc[4, "net_bps"]) and it.loc[4, "status"] == "failed"
    for col in ("net_bps", "maker_taker_ratio", "p95_latency_ms", "risk_ratio"):
        assert it[col].dtype == float
    assert it.loc[1, "kpi_verdict"] == "FAIL"  # net 1.1 < 2.5

    p = run.params
    assert p.loc[1, "min_interval_ms"] == 61 and p.loc[12, "min_interval_ms"] == 72
    assert p.loc[4].isna().all()  # a failed iteration reports no params

    d = run.decisions
    assert list(d.columns[:3]) == ["iteration", "param", "current"]
    assert set(d["param"]) == {"min_interval_ms"}
    row = d[d["iteration"] == 2].iloc[0]
    assert row["current"] == 62 and row["new"] == 63 and row["verdict"] == "applied"

    b = run.blocks
    assert list(b.columns) == ["min_interval", "concurrency", "risk", "throttle", "allowed", "other", "total"]
    assert b.loc[1, "total"] == 1000 and math.isnan(b.loc[4, "risk"])
    assert run.tuning_report["summary"]["count"] == 12 and run.snapshot is None


def test_numeric_order_no_cap(tmp_path):
    path = write_synthetic_run(tmp_path, 150, kpis=lambda i: {"net_bps": float(i)})
    run = open_run(path)
    assert list(run.iterations.index) == list(range(1, 151))
    assert run.iterations["net_bps"].tolist() == [float(i) for i in range(1, 151)]


def test_gaps_are_reported_not_truncated(tmp_path):
    path = write_synthetic_run(tmp_path, 8)
    (path / "ITER_SUMMARY_5.json").unlink()
    (path / "ITER_SUMMARY_8.json").unlink()
    run = open_run(path)
    assert run.gaps == [5, 8]  # 8 is missing too: the manifest says 8 were done
    assert any("missing iterations: 5, 8" in w for w in run.warnings)
    assert list(run.iterations.index) == [1, 2, 3, 4, 6, 7]


def test_invalid_record_named_on_read(tmp_path):
    path = write_synthetic_run(tmp_path, 3)
    f = path / "ITER_SUMMARY_2.json"
    rec = json.loads(f.read_text())
    rec["summary"]["risk_ratio"] = 1.7
    f.write_text(json.dumps(rec))
    with pytest.raises(RecordError) as ei:
        open_run(path)
    assert str(ei.value).startswith(f"{f}: field 'summary.risk_ratio': expected a number in [0, 1]")

    rec["summary"]["risk_ratio"] = 0.2
    rec["iteration"] = 3
    f.write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="field 'iteration': expected 2"):
        open_run(path)
    f.write_text("{not json")
    with pytest.raises(RecordError, match="ITER_SUMMARY_2.json: invalid JSON"):
        open_run(path)


def test_not_a_run(tmp_path):
    with pytest.raises(RecordError, match="no such run directory"):
        open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError) as ei:
        open_run(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(ei.value) and "not a run directory" in str(ei.value)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(RecordError, match="expected a run directory, got a file"):
        open_run(tmp_path / "f.txt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match="not a soaklib run manifest"):
        open_run(tmp_path / "bad")


def test_running_run_and_missing_tuning_report(tmp_path):
    path = write_synthetic_run(tmp_path, 3, status="interrupted", iterations_planned=10)
    assert not (tmp_path / "latest").exists()  # latest only names completed runs
    (path / "TUNING_REPORT.json").unlink()
    run = open_run(path / "run.json")
    assert run.manifest["status"] == "interrupted"
    assert any("3 of 10" in w for w in run.warnings)
    assert run.tuning_report["summary"]["count"] == 3  # recomputed from the records


def test_zero_iterations_and_frames_are_empty(tmp_path):
    path = write_synthetic_run(tmp_path, 0, status="interrupted", iterations_planned=5)
    run = open_run(path)
    assert run.records == [] and run.gaps == []
    assert isinstance(run.iterations, pd.DataFrame) and run.iterations.empty
    assert run.decisions.empty and run.params.empty and run.blocks.empty


def test_symlinked_latest_resolves_to_the_run(run12):
    root, path = run12
    assert os.readlink(root / "latest") == path.name  # relative link
    assert open_run(root / "latest").path == path.resolve()


def test_record_names_that_are_directories_or_escaping_symlinks_are_refused(tmp_path):
    path = write_synthetic_run(tmp_path / "runs", 3)
    rec = path / "ITER_SUMMARY_2.json"
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(rec.read_bytes())
    rec.unlink()
    rec.symlink_to(outside)
    with pytest.raises(RecordError, match="ITER_SUMMARY_2.json: symlink points outside the run directory"):
        open_run(path)
    rec.unlink()
    rec.mkdir()
    with pytest.raises(RecordError, match="ITER_SUMMARY_2.json: is a directory"):
        open_run(path)


@pytest.mark.parametrize("name, expect", [
    ("ITER_SUMMARY_99999999999.json", "larger than"),
    ("ITER_SUMMARY_-1.json", "expected an integer >= 1"),
    ("ITER_SUMMARY_0.json", "expected an integer >= 1"),
])
def test_iteration_numbers_in_file_names_are_checked(tmp_path, name, expect):
    d = write_synthetic_run(tmp_path / "runs", 3)
    (d / name).write_bytes((d / "ITER_SUMMARY_1.json").read_bytes())
    with pytest.raises(RecordError) as ei:
        open_run(d)
    assert name in str(ei.value) and expect in str(ei.value)


def test_a_broken_snapshot_is_a_warning_not_a_lockout(tmp_path):
    d = write_synthetic_run(tmp_path / "runs", 3)
    snap = d / "reports" / "analysis" / "POST_SOAK_SNAPSHOT.json"
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.write_text('{"verdict": "PA')
    run = open_run(d)
    assert run.snapshot is None and any("POST_SOAK_SNAPSHOT.json" in w for w in run.warnings)
    snap.write_text("[1]")
    run = open_run(d)
    assert run.snapshot is None and any("expected a JSON object" in w for w in run.warnings)
