"""The package's public surface: what ``import soaklib`` offers and what ``soaklib.sim`` returns."""
from __future__ import annotations

import dataclasses

import soaklib
from soaklib.core.run import Run
from soaklib.store.synthetic import write_synthetic_run


def test_all_is_pinned():
    assert sorted(soaklib.__all__) == ["SoakError", "__version__", "load_config", "open_run"]
    assert isinstance(soaklib.__version__, str) and soaklib.__version__
    assert issubclass(soaklib.SoakError, Exception)
    assert "goals" in soaklib.load_config()


def test_open_run_returns_the_one_run_type(tmp_path):
    run = soaklib.open_run(write_synthetic_run(tmp_path, 3))
    assert type(run) is Run
    assert [r["iteration"] for r in run.records] == [1, 2, 3] and run.gaps == [] and run.layout == "soaklib"
    assert list(run.iterations.index) == [1, 2, 3] and "net_bps" in run.iterations.columns
    assert run.manifest["run_id"] and run.manifest_path == run.path / "run.json"


def test_simulate_returns_simresult_with_the_documented_fields():
    from soaklib.sim import SimResult, simulate

    assert [f.name for f in dataclasses.fields(SimResult)] == ["kpis", "params", "runtime_guards", "market",
                                                               "events", "extra"]
    cfg = soaklib.load_config()
    res = simulate({}, "calm", seed=1, duration_s=60.0, config=cfg)
    assert isinstance(res, SimResult)
    assert isinstance(res.kpis["net_bps"], float) and 0.0 <= res.kpis["risk_ratio"] <= 1.0
    assert set(res.params) >= {"min_interval_ms", "tail_age_ms"} and res.events > 0
