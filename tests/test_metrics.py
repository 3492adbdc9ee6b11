"""soaklib.publish.metrics and `soak metrics`: values from the run's records, names, promtool, bad input."""
from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, require_tool
from prometheus_client.parser import text_string_to_metric_families

from soaklib.core import io as _io
from soaklib.core.errors import InputError
from soaklib.publish import metrics
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run

SEED_FIVE = {"maker_taker_ratio_hmean", "latency_spread_add_bps", "partial_freeze_active",
             "delta_nested_miss_paths_total", "maker_share_pct"}


def samples(text: str) -> dict:
    """{(sample name, ((label, value), ...)): value} of an exposition."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(smp: dict, name: str, **labels) -> float:
    return smp[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]


def kpis_for(i: int) -> dict:
    """KPIs that differ per iteration so 'the last one' and 'the sum' are distinguishable."""
    mv, tv = 80.0 + i, 10.0 + 2 * i
    return {
        "net_bps": 2.0 + 0.1 * i, "p95_latency_ms": 200.0 + 5 * i, "risk_ratio": 0.2 + 0.01 * i,
        "maker_taker_ratio": 0.80 + 0.01 * i, "order_age_p95_ms": 500.0 + i,
        "fills": {"maker_count": 100 + i, "taker_count": 20, "maker_volume": mv, "taker_volume": tv,
                  "buy_maker_count": 60, "sell_maker_count": 40 + i, "buy_taker_count": 15, "sell_taker_count": 5,
                  "buy_maker_volume": mv / 2, "sell_maker_volume": mv / 2, "buy_taker_volume": tv / 2,
                  "sell_taker_volume": tv / 2, "count": 120 + i, "volume": mv + tv},
        "blocks": {"counts": {"min_interval": i, "concurrency": 2, "risk": 3, "throttle": 0, "allowed": 50,
                              "other": 0}, "total": 55 + i,
                   "ratios": {"min_interval": 1.0, "concurrency": 1.0, "risk": 1.0, "throttle": 0.0,
                              "allowed": 97.0, "other": 0.0}},
    }


def records_of(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.glob("ITER_SUMMARY_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [_io.read_json(f) for f in files]


@pytest.fixture(scope="module")
def run12(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    return write_synthetic_run(root, 12, kpis=kpis_for, failed=[12, 5],
                               params=lambda i: {"min_interval_ms": 60 + min(i, 6)})


@pytest.fixture(scope="module")
def text12(run12) -> str:
    return metrics.exposition(metrics.run_registry(open_run(run12))).decode()


def test_values_come_from_the_records(run12, text12):
    smp = samples(text12)
    recs = records_of(run12)
    ok = [r for r in recs if r["status"] == "ok"]
    last = ok[-1]["summary"]  # iteration 11: 12 failed
    assert ok[-1]["iteration"] == 11
    assert value(smp, "soak_net_bps") == pytest.approx(last["net_bps"])
    assert value(smp, "soak_p95_latency_seconds") == pytest.approx(last["p95_latency_ms"] / 1000)
    assert value(smp, "soak_order_age_p95_seconds") == pytest.approx(last["order_age_p95_ms"] / 1000)
    assert value(smp, "soak_risk_ratio") == pytest.approx(last["risk_ratio"])
    assert value(smp, "soak_maker_taker_ratio") == pytest.approx(last["maker_taker_ratio"])
    assert value(smp, "soak_iterations_total") == 12
    assert value(smp, "soak_failed_iterations_total") == 2
    assert value(smp, "soak_iterations_planned") == 12
    assert value(smp, "soak_current_iteration") == 12
    assert ("soak_run_active", ()) not in smp  # only the live exporter knows whether the loop runs
    for side in ("buy", "sell"):
        for liq in ("maker", "taker"):
            want = sum(r["summary"]["fills"][f"{side}_{liq}_count"] for r in ok)
            assert value(smp, "soak_fills_total", side=side, liquidity=liq) == want
    assert value(smp, "soak_blocks_total", reason="min_interval") == sum(r["iteration"] for r in ok)
    assert ("soak_blocks_total", (("reason", "allowed"),)) not in smp
    # parameters: what the last iteration that ran reported
    for k, v in ok[-1]["params"].items():
        assert value(smp, "soak_param_value", param=k) == pytest.approx(v)
    applied = sum(1 for r in recs if r["tuning"]["applied"])
    assert value(smp, "soak_tuning_applied_total") == applied > 0


def test_seed_five_computed_from_data(run12, text12):
    smp = samples(text12)
    ok = [r for r in records_of(run12) if r["status"] == "ok"]
    window = [r["summary"]["maker_taker_ratio"] for r in ok[-8:]]
    assert value(smp, "maker_taker_ratio_hmean", window=8) == pytest.approx(statistics.harmonic_mean(window))
    f = ok[-1]["summary"]["fills"]
    assert value(smp, "maker_share_pct") == pytest.approx(100 * f["maker_volume"] / (f["maker_volume"] +
                                                                                       f["taker_volume"]))
    assert value(smp, "partial_freeze_active") == 0.0
    from soaklib.judge.verify import verify_run
    run = open_run(run12)
    want = verify_run(run, run.manifest["config"]).counts["missing"]
    assert value(smp, "delta_nested_miss_paths_total") == want


def test_hmean_window_label_is_the_real_window(tmp_path):
    p = write_synthetic_run(tmp_path, 5, kpis=lambda i: {"maker_taker_ratio": 0.5 + 0.1 * i})
    smp = samples(metrics.exposition(metrics.run_registry(open_run(p))).decode())
    assert value(smp, "maker_taker_ratio_hmean", window=5) == pytest.approx(
        statistics.harmonic_mean([0.6, 0.7, 0.8, 0.9, 1.0]))
    assert not any(n == "maker_taker_ratio_hmean" and lb != (("window", "5"),) for n, lb in smp)


def test_maker_share_falls_back_to_counts(tmp_path):
    fills = {"maker_count": 3, "taker_count": 1, "maker_volume": 0.0, "taker_volume": 0.0}
    p = write_synthetic_run(tmp_path, 2, kpis={"fills": fills})
    smp = samples(metrics.exposition(metrics.run_registry(open_run(p))).decode())
    assert value(smp, "maker_share_pct") == pytest.approx(75.0)


def test_runtime_guards_from_last_iteration():
    st = metrics.RunState({"iterations_planned": 2})
    st.add({"iteration": 1, "status": "ok", "summary": {"net_bps": 1.0},
            "runtime_guards": {"latency_spread_add_bps": 0.5, "partial_freeze_active": True,
                               "partial_freeze_count": 2, "partial_freeze_time_s": 30.0}})
    st.add({"iteration": 2, "status": "ok", "summary": {"net_bps": 2.0},
            "runtime_guards": {"latency_spread_add_bps": 0.0, "partial_freeze_active": False,
                               "partial_freeze_count": 1, "partial_freeze_time_s": 12.5}})
    reg, _ = metrics.build_registry(st)
    smp = samples(metrics.exposition(reg).decode())
    assert value(smp, "latency_spread_add_bps") == 0.0
    assert value(smp, "partial_freeze_active") == 0.0
    assert value(smp, "soak_partial_freezes_total") == 3
    assert value(smp, "soak_partial_freeze_seconds_total") == 42.5
    assert value(smp, "soak_net_bps") == 2.0


def test_names_units_and_bounded_labels(text12):
    fams = list(text_string_to_metric_families(text12))
    for fam in fams:
        assert fam.name.startswith("soak_") or fam.name in SEED_FIVE or \
            fam.name + "_total" in SEED_FIVE, fam.name
        assert not fam.name.endswith(("_ms", "_percent")) or fam.name == "maker_share_pct"
        for s in fam.samples:
            assert "iteration" not in s.labels, s  # never a label that grows with the run
            if fam.type == "counter":
                assert s.name.endswith("_total"), s.name
    names = {f.name for f in fams}
    # the canary alert rules (bundle) are written over these names
    assert {"soak_maker_taker_ratio", "soak_p95_latency_seconds", "soak_risk_ratio", "soak_net_bps",
            "soak_build_info", "soak_last_success_timestamp_seconds"} <= names


def test_gate_verdict_one_hot(tmp_path):
    good = write_synthetic_run(tmp_path, 8)
    bad = write_synthetic_run(tmp_path, 8, kpis={"net_bps": -1.0})
    for p, want in ((good, "pass"), (bad, "fail")):
        smp = samples(metrics.exposition(metrics.run_registry(open_run(p))).decode())
        got = {dict(lb)["verdict"]: v for (n, lb), v in smp.items() if n == "soak_gate_verdict"}
        assert got[want] == 1.0 and sum(got.values()) == 1.0


def test_delta_misses_count_a_parameter_that_did_not_land(tmp_path):
    p = write_synthetic_run(tmp_path, 4, params=lambda i: {"min_interval_ms": 60 + i})
    clean = samples(metrics.exposition(metrics.run_registry(open_run(p))).decode())
    assert value(clean, "delta_nested_miss_paths_total") == 0
    # the runner of iteration 3 did not report min_interval_ms: the applied delta of 2 did not land
    f = p / "ITER_SUMMARY_3.json"
    rec = _io.read_json(f)
    del rec["params"]["min_interval_ms"]
    f.unlink()
    _io.write_json(f, rec)
    smp = samples(metrics.exposition(metrics.run_registry(open_run(p))).decode())
    assert value(smp, "delta_nested_miss_paths_total") >= 1


def soak(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_cli_textfile_default_path_and_promtool(run12):
    promtool = require_tool("promtool")
    r = soak("metrics", run12)
    assert r.returncode == 0, r.stderr
    out = run12 / "metrics" / "soak.prom"
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["soak.prom"]  # no temp file left behind
    chk = subprocess.run([promtool, "check", "metrics"], stdin=out.open("rb"), capture_output=True)
    assert chk.returncode == 0 and not chk.stdout.strip() and not chk.stderr.strip(), chk
    assert samples(out.read_text()) == samples(metrics.exposition(metrics.run_registry(open_run(run12)))
                                               .decode())


def test_served_output_is_promtool_clean(run12):
    promtool = require_tool("promtool")
    srv = metrics.MetricsServer(metrics.run_registry(open_run(run12)), "127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(srv.url, timeout=10).read()
    finally:
        srv.close()
    chk = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True)
    assert chk.returncode == 0 and not chk.stdout.strip() and not chk.stderr.strip(), chk
    assert value(samples(body.decode()), "soak_iterations_total") == 12


def test_textfile_must_end_in_prom(run12, tmp_path):
    with pytest.raises(InputError, match=r"\.prom"):
        metrics.write_textfile(metrics.run_registry(open_run(run12)), tmp_path / "soak.txt")


def _one_line_exit2(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soak: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_input(run12, tmp_path):
    _one_line_exit2(soak("metrics", tmp_path / "nope"), "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in run12.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "ITER_SUMMARY_2.json").write_text("{not json")
    _one_line_exit2(soak("metrics", broken), "ITER_SUMMARY_2.json")
    # unreachable pushgateway: a closed port on 127.0.0.1
    _one_line_exit2(soak("metrics", run12, "--push", f"http://127.0.0.1:{free_port()}"), "pushgateway")
    _one_line_exit2(soak("metrics", run12, "--delete"), "--push")
    _one_line_exit2(soak("metrics", run12, "--serve", "127.0.0.1:notaport"), "HOST:PORT")


def test_cli_serve_port_in_use(run12):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        _one_line_exit2(soak("metrics", run12, "--serve", f"127.0.0.1:{port}", "--serve-seconds", "5"),
                        "address already in use")


def test_parse_hostport_defaults_to_loopback():
    assert metrics.parse_hostport("9100") == ("127.0.0.1", 9100)
    assert metrics.parse_hostport(":9100") == ("127.0.0.1", 9100)
    assert metrics.parse_hostport("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert metrics.parse_hostport("[::1]:9100") == ("::1", 9100)
    with pytest.raises(InputError):
        metrics.parse_hostport("127.0.0.1:70000")


def test_live_exporter_tracks_the_run(run12):
    recs = records_of(run12)
    manifest = {**_io.read_json(run12 / "run.json"), "status": "running", "iterations_done": 0}
    live = metrics.LiveExporter(0)
    try:
        assert live.host == "127.0.0.1"
        live.on_start(manifest)
        smp = samples(urllib.request.urlopen(live.url, timeout=10).read().decode())
        assert value(smp, "soak_run_active") == 1 and value(smp, "soak_current_iteration") == 1
        assert value(smp, "soak_iterations_total") == 0
        for rec in recs[:4]:
            live.on_iteration(rec, manifest)
        smp = samples(urllib.request.urlopen(live.url, timeout=10).read().decode())
        assert value(smp, "soak_iterations_total") == 4
        assert value(smp, "soak_current_iteration") == 5
        assert value(smp, "soak_progress_ratio") == pytest.approx(4 / 12)
        assert value(smp, "soak_net_bps") == pytest.approx(recs[3]["summary"]["net_bps"])
        assert value(smp, "soak_param_value", param="min_interval_ms") == recs[3]["params"]["min_interval_ms"]
        assert ("soak_tuning_guard_active", (("guard", "cooldown_active"),)) in smp
        assert value(smp, "maker_taker_ratio_hmean", window=4) > 0
        # port in use while the exporter holds it
        with pytest.raises(InputError, match="already in use"):
            metrics.LiveExporter(live.port)
        live.on_finish({**manifest, "status": "completed"})
        smp = samples(urllib.request.urlopen(live.url, timeout=10).read().decode())
        assert value(smp, "soak_run_active") == 0 and value(smp, "soak_current_iteration") == 4
        assert value(smp, "soak_run_status", status="completed") == 1
    finally:
        live.close()
    # closed: nothing listens any more
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", live.port), timeout=5).close()


def test_soak_run_metrics_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = soak("run", "--runs-dir", tmp_path / "runs", "--iterations", 1, "--metrics-port", port)
    _one_line_exit2(r, "address already in use")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # failed before starting


def test_seed_layout_exports_what_it_has(tmp_path):
    """A seed-toolkit artifacts/soak/latest dir (no wall block, no side split of fills) exports real
    values; what the seed never recorded is absent rather than a made-up 0."""
    d = tmp_path / "artifacts" / "soak" / "latest"
    d.mkdir(parents=True)
    for i in (1, 2, 3):
        _io.write_json(d / f"ITER_SUMMARY_{i}.json", {
            "iteration": i,
            "summary": {"runtime_utc": f"2025-10-01T10:0{i}:00Z", "net_bps": 2.0 + i / 10, "p95_latency_ms": 250 + i,
                        "risk_ratio": 0.3, "maker_taker_ratio": 0.8 + i / 100,
                        "fills": {"maker_count": 10 * i, "taker_count": 2, "maker_volume": 5.0, "taker_volume": 1.0}},
            "tuning": {"deltas": {}, "applied": False, "skip_reason": {"no_op": True, "note": "no effective change"}}})
    smp = samples(metrics.exposition(metrics.run_registry(open_run(d))).decode())
    assert value(smp, "soak_net_bps") == pytest.approx(2.3)
    assert value(smp, "soak_p95_latency_seconds") == pytest.approx(0.253)
    assert value(smp, "soak_fills_total", side="unknown", liquidity="maker") == 60
    assert value(smp, "maker_share_pct") == pytest.approx(100 * 5 / 6)
    assert value(smp, "maker_taker_ratio_hmean", window=3) == pytest.approx(statistics.harmonic_mean([.81, .82, .83]))
    assert value(smp, "soak_last_success_timestamp_seconds") == 1759312980.0  # 2025-10-01T10:03:00Z
    assert not [k for k in smp if k[0] in ("soak_sim_events_total", "soak_iteration_wall_seconds_total",
                                           "latency_spread_add_bps", "partial_freeze_active")]


def test_canary_rule_metrics_are_exported(text12):
    """Every metric the bundle's canary alert rules watch is a family this exporter emits."""
    from soaklib.publish import bundle

    names = {f.name for f in text_string_to_metric_families(text12)}
    watched = {t[1] for t in bundle.TRIGGERS}
    assert watched and watched <= names


def test_textfile_in_a_missing_directory_is_an_error_not_a_new_tree(tmp_path):
    import subprocess
    import sys

    run = write_synthetic_run(tmp_path / "runs", 3)
    target = tmp_path / "typo" / "deeper" / "x.prom"
    p = subprocess.run([sys.executable, "-m", "soaklib", "metrics", str(run), "--textfile", str(target)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "directory does not exist" in p.stderr
    assert not (tmp_path / "typo").exists()


def test_kpi_gauges_come_from_the_kpi_table():
    from soaklib.core.kpis import KPI, KPIS, PROM_KPIS

    assert sorted(k.name for k in PROM_KPIS) == sorted(k.name for k in KPIS if k.prom_name)
    # the names canary rules rely on, in base units
    assert KPI["maker_taker_ratio"].prom_name == "soak_maker_taker_ratio"
    assert (KPI["p95_latency_ms"].prom_name, KPI["p95_latency_ms"].prom_scale) == ("soak_p95_latency_seconds", 1e-3)
    assert KPI["risk_ratio"].prom_name == "soak_risk_ratio" and KPI["net_bps"].prom_name == "soak_net_bps"


def test_seed_five_have_soak_prefixed_base_unit_twins(run12, text12):
    """Item 7 of issue 18: each seed name stays and has a soak_ twin in base units carrying the same data."""
    smp = samples(text12)
    assert value(smp, "soak_maker_taker_ratio_hmean", window=8) == value(smp, "maker_taker_ratio_hmean", window=8)
    assert value(smp, "soak_maker_share_ratio") == pytest.approx(value(smp, "maker_share_pct") / 100)
    assert value(smp, "soak_partial_freeze_active") == value(smp, "partial_freeze_active")
    assert value(smp, "soak_delta_nested_miss_paths_total") == value(smp, "delta_nested_miss_paths_total")
    st = metrics.RunState({})
    st.add({"iteration": 1, "status": "ok", "summary": {"net_bps": 1.0},
            "runtime_guards": {"latency_spread_add_bps": 0.5, "partial_freeze_active": True}})
    one = samples(metrics.exposition(metrics.build_registry(st)[0]).decode())
    assert value(one, "latency_spread_add_bps") == 0.5
    assert value(one, "soak_latency_spread_add_ratio") == pytest.approx(0.5e-4)
    assert value(one, "soak_partial_freeze_active") == 1.0
    seed_unit = [n for n, _lb in smp if n in ("soak_latency_spread_add_bps", "soak_maker_share_pct")]
    assert not seed_unit  # the twins are in base units, not a soak_ copy of the seed unit


def test_one_iterations_counter_counts_iterations_before_a_resume():
    st = metrics.RunState({"iterations_done": 5, "iterations_planned": 10})  # 5 done before this exporter started
    st.add({"iteration": 6, "status": "ok", "summary": {"net_bps": 1.0}})
    smp = samples(metrics.exposition(metrics.build_registry(st)[0]).decode())
    assert value(smp, "soak_iterations_total") == 5  # max(run.json's 5, 1 seen): run.json not yet rewritten
    assert not any(n.startswith("soak_iterations_done") for n, _lb in smp)
