"""``python -m soaklib.bench scrape [--iterations N] [--run DIR] [--repeat K]``

One scrape = ``collect`` + ``generate_latest`` on the run's dedicated registry (what an HTTP scrape
or a textfile write does), for a run of N iterations (default 10,000; goal <= 20 ms). Folding the
records into a RunState happens once at load time and is reported separately, as are the HTTP round
trip and the live exporter's per-iteration update.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest

from soaklib.publish import metrics
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run

GOAL_MS = 20.0


def _ms(samples: list[float]) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return f"median {1000 * statistics.median(s):.3f} ms, p95 {1000 * p95:.3f} ms, max {1000 * s[-1]:.3f} ms"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m soaklib.bench scrape")
    ap.add_argument("--iterations", type=int, default=10_000)
    ap.add_argument("--run", type=Path, help="an existing run dir instead of a synthetic one")
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="soak-bench-scrape-") as tmp:
        if a.run is None:
            t0 = time.perf_counter()
            # params change every 7th iteration so tuning counters and verification have real work
            run_dir = write_synthetic_run(Path(tmp), a.iterations, failed=range(97, a.iterations + 1, 97),
                                          kpis=lambda i: {"net_bps": 2.0 + (i % 13) / 10,
                                                          "maker_taker_ratio": 0.8 + (i % 11) / 100},
                                          params=lambda i: {"min_interval_ms": 60 + (i // 7) % 5})
            print(f"synthetic run: {a.iterations} iterations written in {time.perf_counter() - t0:.1f} s")
        else:
            run_dir = a.run
        t0 = time.perf_counter()
        run = open_run(run_dir)
        t1 = time.perf_counter()
        state = metrics.state_from_run(run)
        t2 = time.perf_counter()
        registry, collector = metrics.build_registry(state)
        t3 = time.perf_counter()
        n = len(run.records)
        print(f"load: open_run {t1 - t0:.2f} s; fold {n} records + gate + delta verification {t2 - t1:.2f} s; "
              f"build families {1000 * (t3 - t2):.2f} ms")

        body = generate_latest(registry)
        times = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            body = generate_latest(registry)
            times.append(time.perf_counter() - t)
        med = 1000 * statistics.median(times)
        print(f"scrape (collect + generate_latest), {n} iterations, {len(body)} bytes, "
              f"{sum(1 for ln in body.splitlines() if ln and not ln.startswith(b'#'))} samples: {_ms(times)}")
        print(f"goal <= {GOAL_MS:.0f} ms: {'met' if med <= GOAL_MS else 'MISSED'} (median {med:.3f} ms)")

        srv = metrics.MetricsServer(registry, "127.0.0.1", 0)
        try:
            urllib.request.urlopen(srv.url, timeout=10).read()
            http = []
            for _ in range(min(a.repeat, 100)):
                t = time.perf_counter()
                urllib.request.urlopen(srv.url, timeout=10).read()
                http.append(time.perf_counter() - t)
        finally:
            srv.close()
        print(f"HTTP GET /metrics round trip: {_ms(http)}")

        upd = []
        rec = run.records[-1]
        for _ in range(min(a.repeat, 100)):
            t = time.perf_counter()
            collector.update(lambda st: st.add(rec))
            upd.append(time.perf_counter() - t)
        print(f"live update per iteration (fold one record + rebuild families): {_ms(upd)}")
    return 0 if med <= GOAL_MS else 1
