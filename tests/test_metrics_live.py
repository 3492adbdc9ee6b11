"""Integration with the real servers: Prometheus scrapes `soak metrics --serve` and the live
`soak run --metrics-port`; the pushgateway receives, shows and deletes a run's group."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, require_tool
from helpers import stop_process as _stop
from helpers import wait_http as _wait_http
from prometheus_client.parser import text_string_to_metric_families

from soaklib.core import io as _io
from soaklib.store.synthetic import write_synthetic_run

pytestmark = pytest.mark.system


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()




def _drain(proc: subprocess.Popen) -> str:
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        return "<still running>"
    return (err or b"").decode(errors="replace")[-2000:] if isinstance(err, bytes) else str(err)[-2000:]




class Prom:
    """A real Prometheus on 127.0.0.1 with a temp config and storage, scraping ``targets`` every 1 s."""

    def __init__(self, tmp: Path, targets: list[str]):
        exe = require_tool("prometheus")
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "soak", "scrape_interval": "1s", "scrape_timeout": "1s",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.proc = subprocess.Popen(
            [exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_http(f"http://127.0.0.1:{self.port}/-/ready", self.proc)
        except BaseException:
            self.close()
            raise

    def query(self, expr: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(_get(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def query_at(self, expr: str, t: float) -> tuple[float, dict]:
        """(value, labels without __name__/job/instance) of a single-series query at time t."""
        res = self.query_at_all(expr, t)
        assert len(res) == 1, (expr, res)
        lb = {k: v for k, v in res[0]["metric"].items() if k not in ("__name__", "job", "instance")}
        return float(res[0]["value"][1]), lb

    def query_at_all(self, expr: str, t: float) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": t})
        body = json.loads(_get(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_value(self, expr: str, pred=lambda v: True, deadline_s: float = 30.0) -> float:
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            res = self.query(expr)
            if res:
                last = float(res[0]["value"][1])
                if pred(last):
                    return last
            time.sleep(0.25)
        raise AssertionError(f"{expr}: no acceptable value within {deadline_s}s (last {last})")

    def close(self) -> None:
        _stop(self.proc)


def _soak_popen(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "soaklib", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _records(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.glob("ITER_SUMMARY_*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [_io.read_json(f) for f in files]


def test_prometheus_scrapes_soak_metrics_serve(tmp_path):
    require_tool("prometheus")
    run = write_synthetic_run(tmp_path / "runs", 10, failed=[4],
                              kpis=lambda i: {"net_bps": 2.0 + 0.1 * i, "p95_latency_ms": 200.0 + i})
    port = free_port()
    srv = _soak_popen("metrics", run, "--serve", f"127.0.0.1:{port}", "--serve-seconds", "120")
    prom = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/metrics", srv)
        prom = Prom(tmp_path, [f"127.0.0.1:{port}"])
        recs = _records(run)
        last = [r for r in recs if r["status"] == "ok"][-1]["summary"]
        assert prom.wait_value('up{job="soak"}', lambda v: v == 1) == 1
        assert prom.wait_value("soak_net_bps") == pytest.approx(last["net_bps"])
        assert prom.wait_value("soak_p95_latency_seconds") == pytest.approx(last["p95_latency_ms"] / 1000)
        assert prom.wait_value("soak_iterations_total") == 10
        assert prom.wait_value("soak_failed_iterations_total") == 1
        want = sum(r["summary"]["fills"]["buy_maker_count"] for r in recs if r["status"] == "ok")
        assert prom.wait_value('soak_fills_total{side="buy",liquidity="maker"}') == want
        res = prom.query("maker_taker_ratio_hmean")
        assert res and res[0]["metric"]["window"] == "8"
        from soaklib.judge.gate import evaluate
        from soaklib.store.loader import open_run
        loaded = open_run(run)
        verdict = evaluate(loaded, loaded.manifest["config"]).verdict.lower()
        assert verdict == "warn"  # net_bps mean 2.59 over the last 8 ok: above hard 2.5, below soft 2.7
        assert prom.wait_value(f'soak_gate_verdict{{verdict="{verdict}"}}') == 1
        assert prom.wait_value('sum(soak_gate_verdict)') == 1
    finally:
        if prom:
            prom.close()
        _stop(srv)
    assert srv.returncode == 0, srv.stderr.read()


BOT = """\
import json, os, pathlib, time
i = int(os.environ["SOAK_ITERATION"])
time.sleep(0.2)
if i == int(os.environ["BOT_HOLD_AT"]):  # hold the run mid-way until the test has scraped it
    release = pathlib.Path(os.environ["BOT_RELEASE"])
    end = time.monotonic() + 120
    while not release.exists() and time.monotonic() < end:
        time.sleep(0.05)
ov = json.load(open(os.environ["SOAK_OVERRIDES"]))
json.dump({"totals": {"net_bps": 2.0 + 0.1 * i, "latency": {"p50": 100.0, "p95": 200.0 + i, "p99": 300.0 + i},
                      "risk_ratio": 0.2 + 0.005 * i, "maker_ratio": 0.85},
           "applied_overrides": ov}, open(os.environ["SOAK_OUTPUT"], "w"))
"""


def test_prometheus_scrapes_a_running_soak(tmp_path, monkeypatch):
    """`soak run --metrics-port` with an external bot (DESIGN §13). The bot holds iteration 6 until the
    test releases it, so a real Prometheus scraping every second sees the run in progress
    deterministically; the scraped values are then checked against the records the run wrote."""
    require_tool("prometheus")
    bot = tmp_path / "bot.py"
    bot.write_text(BOT)
    release = tmp_path / "release"
    hold_at, iterations = 6, 10
    monkeypatch.setenv("BOT_HOLD_AT", str(hold_at))
    monkeypatch.setenv("BOT_RELEASE", str(release))
    port = free_port()
    runs = tmp_path / "runs"
    proc = _soak_popen("run", "--runs-dir", runs, "--iterations", iterations, "--auto-tune", "--confirm-iterations", 0,
                       "--runner", f"{sys.executable} {bot}", "--metrics-port", port)
    prom = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/metrics", proc, deadline_s=60)
        prom = Prom(tmp_path, [f"127.0.0.1:{port}"])
        assert prom.wait_value("soak_run_active", lambda v: v == 1, deadline_s=30) == 1
        assert prom.wait_value("soak_iterations_planned") == iterations
        # the run is held in iteration 6: five done, live values of iteration 5
        assert prom.wait_value("soak_iterations_total", lambda v: v == hold_at - 1, deadline_s=60) == hold_at - 1
        names = ("soak_last_iteration", "soak_net_bps", "soak_p95_latency_seconds", "soak_risk_ratio",
                 "soak_current_iteration", "soak_progress_ratio", "maker_taker_ratio_hmean", "soak_run_active")
        t = time.time()
        snap = {n: prom.query_at(n, t) for n in names}  # one instant: all from the same scrape
        params = {r["metric"]["param"]: float(r["value"][1]) for r in prom.query_at_all("soak_param_value", t)}
        assert proc.poll() is None  # still running while scraped
        release.touch()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    finally:
        release.touch()
        if prom:
            prom.close()
        _stop(proc)
    recs = {r["iteration"]: r for r in _records((runs / "latest").resolve())}
    assert len(recs) == iterations
    n = hold_at - 1
    s = recs[n]["summary"]
    assert snap["soak_last_iteration"][0] == n and snap["soak_run_active"][0] == 1
    assert snap["soak_current_iteration"][0] == hold_at
    assert snap["soak_progress_ratio"][0] == pytest.approx(n / iterations)
    assert snap["soak_net_bps"][0] == pytest.approx(s["net_bps"])
    assert snap["soak_p95_latency_seconds"][0] == pytest.approx(s["p95_latency_ms"] / 1000)
    assert snap["soak_risk_ratio"][0] == pytest.approx(s["risk_ratio"])
    assert snap["maker_taker_ratio_hmean"][1] == {"window": str(n)}  # 5 ok iterations so far, not "8"
    assert snap["maker_taker_ratio_hmean"][0] == pytest.approx(
        statistics.harmonic_mean([recs[i]["summary"]["maker_taker_ratio"] for i in range(1, n + 1)]))
    assert params == {k: pytest.approx(float(v)) for k, v in recs[n]["params"].items()}


class Pushgateway:
    def __init__(self, tmp: Path):
        exe = require_tool("prometheus-pushgateway")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file=",
                                      "--log.level=warn"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_http(f"{self.url}/-/ready", self.proc)
        except BaseException:
            self.close()
            raise

    def samples(self) -> dict:
        out = {}
        for fam in text_string_to_metric_families(_get(f"{self.url}/metrics").decode()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def close(self) -> None:
        _stop(self.proc)


def _soak_ok(*args) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def test_pushgateway_push_read_back_delete(tmp_path):
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    pg = Pushgateway(tmp_path)
    try:
        run = write_synthetic_run(tmp_path / "runs", 6, kpis=lambda i: {"net_bps": 1.0 + i})
        other = write_synthetic_run(tmp_path / "runs", 3, kpis={"net_bps": 4.5})
        run_id = _io.read_json(run / "run.json")["run_id"]
        other_id = _io.read_json(other / "run.json")["run_id"]
        key = (("instance", ""), ("job", "ci"), ("run", run_id))
        # a metric some other step already pushed into the same group
        foreign = CollectorRegistry()
        Gauge("ci_step_duration_seconds", "pushed by another CI step", registry=foreign).set(12.5)
        push_to_gateway(pg.url, job="ci", registry=foreign, grouping_key={"run": run_id})

        _soak_ok("metrics", run, "--push", pg.url, "--job", "ci")
        _soak_ok("metrics", other, "--push", pg.url, "--job", "ci")
        smp = pg.samples()
        assert smp[("soak_net_bps", key)] == pytest.approx(7.0)
        assert smp[("soak_iterations_total", key)] == 6
        assert smp[("soak_net_bps", (("instance", ""), ("job", "ci"), ("run", other_id)))] == pytest.approx(4.5)
        # pushadd (POST): the other step's metric in the same group survives (a PUT would have dropped it)
        assert smp[("ci_step_duration_seconds", key)] == 12.5
        assert smp[("push_time_seconds", key)] > 0

        _soak_ok("metrics", run, "--push", pg.url, "--job", "ci", "--delete")
        smp = pg.samples()
        assert not [k for k in smp if dict(k[1]).get("run") == run_id]  # the whole group is gone
        assert smp[("soak_net_bps", (("instance", ""), ("job", "ci"), ("run", other_id)))] == pytest.approx(4.5)
    finally:
        pg.close()
