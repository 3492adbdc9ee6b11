"""Reading the seed toolkit's artifacts (issue 8 item 3): every layout and dialect, written here.

The fixture writers reproduce the seed's formats as reference/seed-toolkit.md §1.7–§1.9, §6.1–§6.2
describe them (iter_watcher's sorted indent-2 JSON without a trailing newline, the CI-download
nesting, the analyzer's zero-padded window files, run_shadow's schema, TUNING_REPORT as a list).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from soaklib import open_run
from soaklib.cli import main
from soaklib.core.errors import RecordError
from soaklib.store import legacy as seed

GOALS_OK = {"net_bps": 3.0, "risk_ratio": 0.30, "p95_latency_ms": 250.0, "maker_taker_ratio": 0.88}


def soak(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    out, err = capsys.readouterr()
    return int(ei.value.code or 0), out, err


def seed_write(path: Path, obj) -> None:
    """iter_watcher's jsonx.write_json: indent 2, sorted keys, ASCII, no trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True))


def soak_record(n: int, *, net: float | None = None, risk: float | None = None) -> dict:
    """A soak-dialect ITER_SUMMARY (§1.8): KPIs vary with n so ordering mistakes show."""
    net = 2.0 + 0.01 * n if net is None else net
    risk = 0.30 if risk is None else risk
    maker_v, taker_v = 80.0 + n, 12.0
    return {
        "iteration": n,
        "summary": {
            "runtime_utc": f"2025-10-31T{n // 60:02d}:{n % 60:02d}:00Z", "version": "0.1.0",
            "net_bps": net, "gross_bps": net + 1.5, "fees_eff_bps": 0.5, "slippage_bps": 0.4,
            "adverse_bps": 1.1, "inventory_bps": 0.2,
            "adverse_bps_p95": 3.0, "slippage_bps_p95": 1.8, "order_age_p95_ms": 300,
            "p95_latency_ms": 200.0 + n, "risk_ratio": risk, "min_interval_ratio": 0.4, "concurrency_ratio": 0.2,
            "fills": {"maker_volume": maker_v, "taker_volume": taker_v, "maker_count": 800, "taker_count": 120},
            "neg_edge_drivers": [],
            "blocks": {"counts": {"min_interval": 4, "concurrency": 2, "risk": 3, "throttle": 1, "allowed": 90,
                                  "other": 0}, "total": 100,
                       "ratios": {"min_interval": 4.0, "concurrency": 2.0, "risk": 3.0, "throttle": 1.0,
                                  "allowed": 90.0, "other": 0.0}},
            "kpi_verdict": "PASS", "kpi_reasons": [],
            "maker_taker_ratio": maker_v / (maker_v + taker_v), "maker_taker_source": "fills_volume",
        },
        "tuning": {
            "deltas": {"min_interval_ms": 5} if n % 3 == 1 else {},
            "proposed_deltas": {"min_interval_ms": 5} if n % 3 == 1 else {},
            "rationale": "RISK_MODERATE risk=30.00%" if n % 3 == 1 else "",
            "applied": n % 3 == 1,
            "conditions": {"net_bps": net, "risk_ratio": risk},
            "skip_reason": "" if n % 3 == 1 else {"cooldown": False, "velocity": n % 3 == 2, "oscillation": False,
                                                     "freeze": False, "no_op": n % 3 == 0, "note": "x"},
            "changed_keys": ["min_interval_ms"] if n % 3 == 1 else [],
            "state_hash": "ab" * 32 if n % 3 == 1 else None,
            "old_hash": "cd" * 32,
        },
    }


def write_soak(d: Path, numbers, **kw) -> Path:
    for n in numbers:
        seed_write(d / f"ITER_SUMMARY_{n}.json", soak_record(n, **kw))
    return d


def write_tuning_report(d: Path, numbers, *, bare: bool = False) -> None:
    entries = [{"iteration": n, "runtime_utc": "2025-10-31T00:00:00Z", "net_bps": 3.0, "kpi_verdict": "PASS",
                "neg_edge_drivers": [], "proposed_deltas": {}, "suggested_deltas": {}, "rationale": "",
                "applied": False, "signature": "na", "state_hash": None, "skip_reason": "", "changed_keys": [],
                "oscillation_detected": False, "velocity_violation": False, "cooldown_active": False}
               for n in numbers]
    obj = entries[::-1] if bare else {"iterations": entries, "summary": {"count": len(entries), "applied": 0,
                                                                          "blocked_oscillation": 0,
                                                                          "blocked_velocity": 0,
                                                                          "cooldown_skips": 0}}
    seed_write(d / "TUNING_REPORT.json", obj)


def shadow_record(n: int) -> dict:
    """run_shadow dialect (schema/iter_summary.schema.json, draft-07) plus its extra ``notes``."""
    return {"iteration": n, "timestamp": f"2025-10-30T10:{n:02d}:00Z", "duration_seconds": 60,
            "exchange": "bybit", "symbols": ["BTCUSDT", "ETHUSDT"], "profile": "moderate", "mode": "shadow",
            "notes": "shadow run", "summary": {"maker_count": 90 + n, "taker_count": 10, "maker_taker_ratio": 0.9,
                                                "net_bps": 3.1, "p95_latency_ms": 240.0, "risk_ratio": 0.3,
                                                "slippage_bps_p95": 1.2, "adverse_bps_p95": 2.2,
                                                "clock_drift_ms": 3.0}}


def window_record(n: int, *, nested: bool = False, symbol: str = "BTCUSDT") -> dict:
    """Analyzer-V2 window dialect: flat {symbol, edge_bps|net_bps, ...} or {summary: {...}}."""
    flat = {"symbol": symbol, "edge_bps": 2.8 + 0.1 * n, "maker_taker_ratio": 0.86, "p95_latency_ms": 300.0,
            "risk_ratio": 0.35, "commit": "abc123", "profile": "moderate", "source": "soak", "notes": ""}
    return {"summary": flat} if nested else flat


# --- layouts ------------------------------------------------------------------------------------


def test_soak_dialect_artifacts_layout(tmp_path, capsys):
    latest = write_soak(tmp_path / "artifacts" / "soak" / "latest", range(1, 13), net=3.0)
    write_tuning_report(latest, range(1, 13))
    for where in (tmp_path, tmp_path / "artifacts" / "soak" / "latest"):
        run = open_run(where)
        assert run.layout == "seed" and run.dialect == "soak"
        assert list(run.iterations.index) == list(range(1, 13)) and run.gaps == [] and run.warnings == []
    it = run.iterations
    assert it.loc[7, "p95_latency_ms"] == 207.0 and it.loc[12, "net_bps"] == 3.0
    assert it.loc[1, "maker_taker_ratio"] == pytest.approx(81 / 93)
    assert (it["status"] == "ok").all()
    assert run.blocks.loc[1, "risk"] == 3
    # tuning reconstructed: applied at 1, 4, 7, 10; a velocity skip shows as the blocked decision's guard
    assert sorted(run.decisions["iteration"]) == [1, 4, 7, 10]
    assert (run.decisions["verdict"] == "applied").all()
    assert run.records[1]["tuning"]["guards"]["velocity_violation"] is True
    assert run.tuning_report["summary"]["count"] == 12
    assert run.manifest["layout"] == "seed" and run.manifest["iterations_done"] == 12
    rc, out, _ = soak(capsys, "gate", str(tmp_path))
    assert "net_bps" in out and "iterations 5..12" in out
    gate = json.loads((latest / "reports" / "analysis" / "GATE.json").read_text())
    assert gate["window"] == [5, 12]


def test_ci_download_nesting_with_space(tmp_path, capsys):
    outer = tmp_path / "ci artifacts" / "artifacts" / "soak" / "latest 1"
    latest = write_soak(outer / "soak" / "latest", range(1, 11), net=3.0)
    run = open_run(outer)
    assert run.path == latest.resolve() and len(run.records) == 10
    assert run.manifest["run_id"] == "latest 1"
    rc, out, err = soak(capsys, "gate", str(outer))
    assert rc == 0, out + err
    assert "verdict: PASS" in out


def test_latest_probe_and_runtime_overrides(tmp_path):
    soak_dir = tmp_path / "artifacts" / "soak"
    write_soak(soak_dir / "latest", range(1, 4))
    # §1.10: flat keys plus nested sections holding delta values; the nested ones are not parameters
    seed_write(soak_dir / "runtime_overrides.json",
               {"min_interval_ms": 60, "tail_age_ms": 600, "engine": {"min_interval_ms": 5},
                "risk": {"impact_cap_ratio": -0.01}})
    run = open_run(soak_dir)
    assert len(run.records) == 3
    assert run.runtime_overrides == {"min_interval_ms": 60, "tail_age_ms": 600}
    assert run.manifest["profile"]["values"] == {"min_interval_ms": 60, "tail_age_ms": 600}
    assert any("engine, risk" in w for w in run.warnings)


# --- dialects -----------------------------------------------------------------------------------


def test_zero_padded_window_dialect(tmp_path, capsys):
    d = tmp_path / "windows"
    for n in range(1, 12):
        seed_write(d / f"ITER_SUMMARY_{n:03d}.json", window_record(n, nested=n % 2 == 0))
    run = open_run(d)
    assert run.dialect == "window"
    assert list(run.iterations.index) == list(range(1, 12))        # numeric, 010 after 009
    assert run.iterations.loc[10, "net_bps"] == pytest.approx(3.8)  # edge_bps → net_bps
    assert run.iterations.loc[2, "maker_taker_ratio"] == 0.86
    assert run.records[0]["source"]["symbol"] == "BTCUSDT"
    assert run.manifest["symbols"] == ["BTCUSDT"] and run.manifest["profile"]["name"] == "moderate"
    rc, out, _ = soak(capsys, "gate", str(d))
    assert rc == 0 and "verdict: PASS" in out


def test_shadow_dialect(tmp_path, capsys):
    d = tmp_path / "shadow"
    for n in range(1, 9):
        seed_write(d / f"ITER_SUMMARY_{n}.json", shadow_record(n))
    run = open_run(d)
    assert run.dialect == "shadow" and len(run.records) == 8
    r = run.records[0]
    assert r["summary"]["fills"] == {"maker_count": 91, "taker_count": 10}
    assert r["summary"]["maker_taker_ratio"] == 0.9 and r["summary"]["maker_taker_source"] == "existing"
    assert r["window"]["duration_s"] == 60.0 and r["source"]["exchange"] == "bybit"
    assert run.iterations.loc[3, "clock_drift_ms"] == 3.0
    assert run.manifest["symbols"] == ["BTCUSDT", "ETHUSDT"]
    rc, out, _ = soak(capsys, "gate", str(d))
    assert rc == 0 and "verdict: PASS" in out


def test_maker_taker_source_order():
    fills = {"maker_volume": 0.0, "taker_volume": 0.0, "maker_count": 3, "taker_count": 1}
    assert seed.maker_taker({}, fills) == (0.75, "fills_count")
    assert seed.maker_taker({"maker_taker_ratio": 0.5}, fills) == (0.5, "existing")
    assert seed.maker_taker({"maker_taker_ratio": 0.01}, fills) == (0.75, "fills_count")  # seed: existing needs > 0.05
    assert seed.maker_taker({}, {"maker_fills": 1, "taker_fills": 3}) == (0.25, "fills_count")
    assert seed.maker_taker({}, None, {"taker_share_pct": {"median": 12.0}}) == (pytest.approx(0.88), "weekly_rollup")
    assert seed.maker_taker({"maker_fills": 9, "taker_fills": 1}, None) == (0.9, "internal_fills")
    assert seed.maker_taker({}, None) == (None, "none")  # never the seed's invented 0.6


def test_edge_report_forms(tmp_path):
    # extended report: block_reasons percentages, p95 fallbacks to means, fills split by side
    full = {"runtime": {"utc": "2025-10-31T00:00:00Z", "version": "x"}, "symbols": {"BTCUSDT": {}},
            "totals": {"net_bps": 2.9, "adverse_bps": 1.5, "slippage_bps": 0.7, "p95_latency_ms": 280,
                       "block_reasons": {"risk": {"count": 2, "ratio": 20.0}, "min_interval": {"count": 8,
                                                                                               "ratio": 80.0}},
                       "fills": {"buy_maker_volume": 4.0, "sell_maker_volume": 4.0, "buy_taker_volume": 1.0,
                                 "sell_taker_volume": 1.0}}}
    seed_write(tmp_path / "EDGE_REPORT.json", full)
    e = seed.read_edge_report(tmp_path / "EDGE_REPORT.json")
    s = e["summary"]
    assert s["risk_ratio"] == 0.2 and s["min_interval_ratio"] == 0.8 and s["concurrency_ratio"] == 0.0
    assert s["adverse_bps_p95"] == 1.5 and s["slippage_bps_p95"] == 0.7
    assert s["maker_taker_ratio"] == 0.8 and s["maker_taker_source"] == "fills_volume"
    assert s["order_age_p95_ms"] is None  # not invented (the seed defaulted it to 300)
    assert e["symbols"] == {"BTCUSDT": {}} and e["runtime"]["version"] == "x"
    # ratios without counts: the seed's percent rule (> 1 → /100)
    s = seed.summary_from_edge({"total": {"net_bps": 1, "block_reasons": {"risk": {"ratio": 35.0}}}})
    assert s["risk_ratio"] == 0.35
    # basic edge_audit report (fills is a count) and the minimal golden form
    s = seed.summary_from_edge({"symbols": {}, "total": {"net_bps": 1.0, "fills": 12, "turnover_usd": 5.0}})
    assert s["fills"] == {"count": 12} and s["turnover_usd"] == 5.0 and s["maker_taker_ratio"] is None
    s = seed.summary_from_edge({"totals": {"component_breakdown": {"net_bps": 2.5, "gross_bps": 4.0}}})
    assert s["net_bps"] == 2.5 and s["gross_bps"] == 4.0
    s = seed.summary_from_edge({"latency": {"p50": 10, "p95": 20, "p99": 30}, "net_bps": 2.0, "taker_ratio": 0.1})
    assert s["p95_latency_ms"] == 20 and s["maker_taker_ratio"] == pytest.approx(0.9)
    # an EDGE_REPORT copy inside a seed layout is exposed on the run
    latest = write_soak(tmp_path / "soak" / "latest", [1])
    seed_write(latest / "artifacts" / "EDGE_REPORT.json", full)
    assert open_run(tmp_path).edge_report["summary"]["risk_ratio"] == 0.2


# --- scale, gaps, tuning report, snapshot --------------------------------------------------------


def test_120_iterations_numeric_order_no_cap(tmp_path, capsys):
    d = write_soak(tmp_path / "soak" / "latest", range(1, 121))
    write_tuning_report(d, range(1, 121))
    run = open_run(tmp_path)
    assert len(run.records) == 120 and run.gaps == []
    assert list(run.iterations.index) == list(range(1, 121))
    assert run.iterations.loc[120, "net_bps"] == pytest.approx(3.2)  # beyond the seed's 99-file probe
    rc, out, _ = soak(capsys, "gate", str(tmp_path))
    assert "iterations 113..120" in out


def test_gap_at_5_of_10_is_reported_not_truncated(tmp_path, capsys):
    d = write_soak(tmp_path / "run", [1, 2, 3, 4, 6, 7, 8, 9, 10], net=3.0)
    run = open_run(d)
    assert run.gaps == [5]
    assert list(run.iterations.index) == [1, 2, 3, 4, 6, 7, 8, 9, 10]  # the seed's probe stopped at 4
    assert any("missing: 5" in w for w in run.warnings)
    rc, out, err = soak(capsys, "gate", str(d))
    assert "missing: 5" in out + err


def test_tuning_report_bare_list(tmp_path, capsys):
    d = write_soak(tmp_path / "run", range(1, 6))
    write_tuning_report(d, range(1, 6), bare=True)
    run = open_run(d)
    tr = run.tuning_report
    assert [e["iteration"] for e in tr["iterations"]] == [1, 2, 3, 4, 5]  # sorted from a reversed list
    assert tr["summary"] == {"count": 5, "applied": 0}
    rc, out, err = soak(capsys, "gate", str(d))
    assert "iterations 1..5" in out and "Traceback" not in err
    # the sweep report of the same name is refused by name, not misread
    seed_write(d / "TUNING_REPORT.json", {"candidates": [{"params": {}, "verdict": "x"}], "runtime": {}})
    with pytest.raises(RecordError, match="parameter-sweep report"):
        open_run(d)


def test_snapshot_last8_keys(tmp_path, capsys):
    d = write_soak(tmp_path / "run", range(1, 37))
    snap = {"schema_version": "1.2", "timestamp": "2025-10-31T00:00:00Z", "verdict": "PASS",
            "pass_count_last8": 4, "freeze_ready": True,
            "kpi_last8": {"maker_taker_ratio": {"mean": 0.87, "median": 0.88},
                          "net_bps": {"mean": 3.1, "median": 3.0, "min": 2.8, "max": 3.3, "trend": "flat"}},
            "guards_last8": {"oscillation_count": 0, "velocity_count": 3, "cooldown_count": 0, "freeze_events": 0}}
    seed_write(d / "reports" / "analysis" / "POST_SOAK_SNAPSHOT.json", snap)
    run = open_run(d)
    s = run.snapshot
    assert s["kpi_last_n"]["net_bps"]["mean"] == 3.1 and s["pass_count_last_n"] == 4
    assert s["guards_last_n"]["velocity_count"] == 3 and s["key_spelling"] == "last8"
    assert "kpi_last8" not in s
    rc, out, err = soak(capsys, "gate", str(d))
    assert "iterations 29..36" in out and "Traceback" not in err
    # schema 1.1 lives beside the ITER files
    (d / "reports" / "analysis" / "POST_SOAK_SNAPSHOT.json").unlink()
    seed_write(d / "POST_SOAK_SNAPSHOT.json", {"schema_version": "1.1", "verdict": "WARN", "freeze_seen": False,
                                               "kpi_last8": {"risk_ratio": {"mean": 0.3, "median": 0.3}}})
    assert open_run(d).snapshot["kpi_last_n"]["risk_ratio"]["median"] == 0.3


# --- soak report over seed layouts (papermill: ~15 s each) --------------------------------------


def _report_case(tmp_path: Path, kind: str) -> Path:
    if kind == "ci-space":
        outer = tmp_path / "dl" / "latest 1"
        write_soak(outer / "soak" / "latest", range(1, 11), net=3.0)
        return outer
    if kind == "window":
        d = tmp_path / "w"
        for n in range(1, 10):
            seed_write(d / f"ITER_SUMMARY_{n:03d}.json", window_record(n, symbol="<script>alert(1)</script>"))
        return d
    if kind == "shadow":
        d = tmp_path / "s"
        for n in range(1, 9):
            seed_write(d / f"ITER_SUMMARY_{n}.json", shadow_record(n))
        return d
    if kind == "gap":
        return write_soak(tmp_path / "g", [1, 2, 3, 4, 6, 7, 8, 9, 10], net=3.0)
    if kind == "bare-list":
        d = write_soak(tmp_path / "b", range(1, 6))
        write_tuning_report(d, range(1, 6), bare=True)
        return d
    if kind == "120":
        return write_soak(tmp_path / "big", range(1, 121))
    raise AssertionError(kind)


def _check_report(capsys, src: Path) -> None:
    rc, out, err = soak(capsys, "report", str(src))
    assert rc == 0, out + err
    root = seed.find_root(src)
    analysis = root / "reports" / "analysis"
    for name in ("POST_SOAK_SNAPSHOT.json", "POST_SOAK_AUDIT.html", "POST_SOAK_AUDIT.md", "RECOMMENDATIONS.md",
                 "FAILURES.md"):
        assert (analysis / name).is_file(), name
    snap = json.loads((analysis / "POST_SOAK_SNAPSHOT.json").read_text())
    assert snap["iterations_total"] == len(open_run(src).records)
    for name in ("POST_SOAK_AUDIT.html", "POST_SOAK_AUDIT.md", "RECOMMENDATIONS.md", "FAILURES.md"):
        assert "<script>alert(1)</script>" not in (analysis / name).read_text(), name


def test_soak_report_reads_ci_nesting_with_space(tmp_path, capsys):
    _check_report(capsys, _report_case(tmp_path, "ci-space"))


# the window dialect goes through `soak report` + `soak bundle` in test_bad_input (escaping test)
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["window", "shadow", "gap", "bare-list", "120"])
def test_soak_report_reads_seed_layouts_slow(tmp_path, capsys, kind):
    _check_report(capsys, _report_case(tmp_path, kind))


def test_latest_as_symlink_inside_the_tree(tmp_path):
    soak_dir = tmp_path / "artifacts" / "soak"
    write_soak(soak_dir / "run_20251031", range(1, 4))
    (soak_dir / "latest").symlink_to("run_20251031")
    run = open_run(tmp_path / "artifacts" / "soak")
    assert len(run.records) == 3 and run.path == (soak_dir / "run_20251031").resolve()
