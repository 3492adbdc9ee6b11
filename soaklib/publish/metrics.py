"""Prometheus export of a soak run (DESIGN §14).

Everything goes through prometheus_client: a custom Collector on a dedicated CollectorRegistry
(never the process-wide default), no hand-built exposition text. Three ways out:

- ``write_textfile(run, path)``   atomic textfile for node_exporter (``RUN/metrics/soak.prom``)
- ``serve(registry, host, port)`` HTTP ``/metrics`` (binds 127.0.0.1 unless told otherwise)
- ``push(registry, url, job, run_id)`` / ``delete(url, job, run_id)`` pushgateway, pushadd semantics,
  grouping key ``job`` + ``run``

and ``LiveExporter``, a soak-loop observer that serves live values while a run goes on.

All numbers come from the run's records. ``RunState`` folds records one at a time (totals, last
values, the harmonic-mean window), so a 10,000-iteration run is folded once at load time and a
scrape only turns a few dozen precomputed numbers into families.

Naming: ``soak_*`` in base units (seconds, ratios 0-1), counters end in ``_total``, no label whose
values grow with the run (the iteration number is a value, never a label). The seed's five keep their
seed names for compatibility: ``maker_taker_ratio_hmean{window}``, ``latency_spread_add_bps``,
``partial_freeze_active``, ``delta_nested_miss_paths_total``, ``maker_share_pct``; each has a soak_-prefixed
twin in base units: ``soak_maker_taker_ratio_hmean{window}``, ``soak_latency_spread_add_ratio``,
``soak_partial_freeze_active``, ``soak_delta_nested_miss_paths_total``, ``soak_maker_share_ratio``.
One iterations counter: ``soak_iterations_total`` (done iterations, including those before a resume).
"""
from __future__ import annotations

import errno
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

from prometheus_client import (
    CollectorRegistry,
    delete_from_gateway,
    generate_latest,
    pushadd_to_gateway,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from soaklib.core import io as _io
from soaklib.core import options
from soaklib.core.config import Config, defaults, run_config
from soaklib.core.errors import InputError
from soaklib.core.kpis import PROM_KPIS
from soaklib.core.numbers import finite
from soaklib.core.records import IterationRecord
from soaklib.core.run import Run
from soaklib.core.version import __version__
from soaklib.judge.gate import evaluate_run
from soaklib.judge.verify import verify_run

SIDES = ("buy", "sell")
LIQUIDITY = ("maker", "taker")
# runtime_guards key summed over the run -> (counter name, help)
GUARD_COUNTERS = {
    "partial_freeze_count": ("soak_partial_freezes", "partial freezes over the run"),
    "partial_freeze_time_s": ("soak_partial_freeze_seconds", "simulated time spent partially frozen"),
    "freeze_blocked_actions": ("soak_freeze_blocked_actions", "strategy actions blocked by a partial freeze"),
}
COMPARE_VERDICTS = ("pass", "inconclusive", "fail")  # soaklib.judge.compare verdicts, lower case
GATE_VERDICTS = ("pass", "warn", "inconclusive", "fail")  # soaklib.judge.gate.VERDICTS, lower case


def metrics_config(cfg: dict | None) -> dict:
    """The ``[metrics]`` table of ``cfg``, falling back to the built-in defaults for missing keys
    (a run's snapshotted config may predate the section)."""
    out = dict(defaults()["metrics"])
    if isinstance(cfg, dict) and isinstance(cfg.get("metrics"), dict):
        out.update(cfg["metrics"])
    return out


def _epoch(s: Any) -> float | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None  # a naive wall clock cannot be placed in time; better absent than wrong
    return dt.timestamp()


def harmonic_mean(values: Iterable[float]) -> float:
    """n / Σ(1/x). A zero ratio makes the harmonic mean 0 (no zero dropping as the seed did)."""
    vals = list(values)
    if any(v <= 0 for v in vals):
        return 0.0
    return len(vals) / sum(1.0 / v for v in vals)


class RunState:
    """Everything a scrape needs, folded from records one at a time (``add``).

    Totals are sums over all iterations, "last" values come from the last ok iteration
    (failed iterations have no KPIs), guard states from the last record that carries them.
    """

    def __init__(self, manifest: dict | None = None, cfg: dict | None = None):
        self.manifest: dict = dict(manifest or {})
        mcfg = metrics_config(cfg)
        self.window = int(mcfg["hmean_window"])
        if self.window < 1:
            raise InputError("must be >= 1", field="metrics.hmean_window")
        self.mt_window: deque[float] = deque(maxlen=self.window)
        self.iterations = 0
        self.failed = 0
        self.last_iteration: int | None = None
        self.fills: Counter = Counter()
        self.fill_volume: Counter = Counter()
        self.blocks: Counter = Counter()
        self.allowed = 0.0
        self.decisions: Counter = Counter()
        self.guard_blocks: Counter = Counter()
        self.param_changes: Counter = Counter()
        self.tuning_applied = 0
        self.events: float | None = None  # None: no record reported it (absent, not a fake 0)
        self.wall_seconds: float | None = None
        # runtime-guard sums: key -> total over the run, only for keys some record reported
        self.guard_sums: dict[str, float] = {}
        self.last_ok: dict | None = None
        self.last_runtime_guards: dict | None = None
        self.last_tuning: dict | None = None
        self.last_params: dict | None = None
        self.last_wall_elapsed: float | None = None
        self.last_success_ts: float | None = None
        self.gaps = 0
        self.live = False
        self.running = False
        self.current_iteration: int | None = None
        self.gate_verdict: str | None = None
        self.comparison: dict | None = None  # COMPARE.json of the run, when `soak compare` made one
        self.delta_miss_paths: int | None = None

    # -- folding -----------------------------------------------------------------------------
    def add(self, rec: IterationRecord) -> None:
        """Fold one iteration record (normalised record dict, ARCHITECTURE.md)."""
        if not isinstance(rec, dict):
            return
        it = rec.get("iteration")
        if isinstance(it, int) and not isinstance(it, bool):
            self.last_iteration = it if self.last_iteration is None else max(self.last_iteration, it)
        self.iterations += 1
        ok = rec.get("status", "ok") == "ok"
        summary = rec.get("summary") if isinstance(rec.get("summary"), dict) else None
        wall = rec.get("wall") if isinstance(rec.get("wall"), dict) else {}
        el = finite(wall.get("elapsed_s"))
        if el is not None:
            self.wall_seconds = (self.wall_seconds or 0.0) + el
            self.last_wall_elapsed = el
        ev = finite(rec.get("events"))
        if ev is not None:
            self.events = (self.events or 0.0) + ev
        if isinstance(rec.get("params"), dict) and rec["params"]:  # a failed iteration may report none
            self.last_params = rec["params"]
        if isinstance(rec.get("tuning"), dict):
            self._add_tuning(rec["tuning"])
        if not ok:
            self.failed += 1
            return
        if summary is not None:
            self.last_ok = summary
            self._add_summary(summary)
        rg = rec.get("runtime_guards")
        if isinstance(rg, dict):
            self.last_runtime_guards = rg
            for key in GUARD_COUNTERS:
                v = finite(rg.get(key))
                if v is not None:
                    self.guard_sums[key] = self.guard_sums.get(key, 0.0) + v
        # seed records have no wall block; their summary.runtime_utc is the wall clock at the end
        ts = _epoch(wall.get("finished_utc")) or _epoch((summary or {}).get("runtime_utc"))
        if ts is not None:
            self.last_success_ts = ts

    def _add_summary(self, s: dict) -> None:
        mt = finite(s.get("maker_taker_ratio"))
        if mt is not None:
            self.mt_window.append(mt)
        fills = s.get("fills")
        if isinstance(fills, dict):
            for liq in LIQUIDITY:
                for unit, acc in (("count", self.fills), ("volume", self.fill_volume)):
                    split = {side: finite(fills.get(f"{side}_{liq}_{unit}")) for side in SIDES}
                    if any(v is not None for v in split.values()):
                        for side, v in split.items():
                            acc[(side, liq)] += v or 0.0
                    else:  # no side split (seed dialect): keep the total, side unknown, so sums stay right
                        v = finite(fills.get(f"{liq}_{unit}"))
                        if v is not None:
                            acc[("unknown", liq)] += v
        blocks = s.get("blocks")
        counts = blocks.get("counts") if isinstance(blocks, dict) else None
        if isinstance(counts, dict):
            for reason, c in counts.items():
                c = finite(c)
                if c is None:
                    continue
                if reason == "allowed":  # not a block: summing soak_blocks_total must mean "blocked"
                    self.allowed += c
                else:
                    self.blocks[str(reason)] += c

    def _add_tuning(self, t: dict) -> None:
        self.last_tuning = t
        if t.get("applied") is True:
            self.tuning_applied += 1
        for d in t.get("decisions") or ():
            if not isinstance(d, dict):
                continue
            self.decisions[str(d.get("verdict"))] += 1
            if d.get("verdict") == "blocked" and d.get("guard"):
                self.guard_blocks[str(d["guard"])] += 1
        deltas = t.get("deltas")
        if isinstance(deltas, dict):
            for k, v in deltas.items():
                if finite(v):  # a zero delta changed nothing
                    self.param_changes[str(k)] += 1

    # -- derived -----------------------------------------------------------------------------
    def maker_share_pct(self) -> float | None:
        """maker/(maker+taker)·100 from the last ok iteration's fills, volume first, else count."""
        f = (self.last_ok or {}).get("fills")
        if not isinstance(f, dict):
            return None
        for unit in ("volume", "count"):
            m, t = finite(f.get(f"maker_{unit}")), finite(f.get(f"taker_{unit}"))
            if m is not None and t is not None and m + t > 0:
                return 100.0 * m / (m + t)
        return None

    # -- exposition ----------------------------------------------------------------------------
    def families(self) -> list:
        """Build the metric families (called once per state change, not per scrape)."""
        out: list = []
        m = self.manifest

        def gauge(name: str, doc: str, value: float | None, unit: str = "") -> None:
            if value is not None:
                g = GaugeMetricFamily(name, doc, unit=unit)
                g.add_metric([], float(value))
                out.append(g)

        def counter(name: str, doc: str, value: float) -> None:
            c = CounterMetricFamily(name, doc)
            c.add_metric([], float(value))
            out.append(c)

        def labelled(cls, name: str, doc: str, label: str, values: dict) -> None:
            fam = cls(name, doc, labels=[label])
            for k in sorted(values):
                fam.add_metric([str(k)], float(values[k]))
            out.append(fam)

        out.append(InfoMetricFamily("soak_build", "soaklib build that produced the run and exported it",
                                    value={"version": str(m.get("soaklib_version") or __version__),
                                           "exporter_version": __version__}))
        run_info = {k: str(m.get(k)) for k in ("run_id", "scenario", "runner") if m.get(k) is not None}
        prof = m.get("profile")
        if isinstance(prof, dict) and prof.get("name") is not None:
            run_info["profile"] = str(prof["name"])
        elif isinstance(prof, str):
            run_info["profile"] = prof
        if run_info:
            out.append(InfoMetricFamily("soak_run", "identity of the run (one series per run)", value=run_info))
        status = m.get("status")
        if isinstance(status, str) and status:
            labelled(GaugeMetricFamily, "soak_run_status", "status of the run from run.json (1 = current)",
                     "status", {status: 1.0})
        if self.live:  # only the loop's own exporter knows; run.json may say "running" after a crash
            gauge("soak_run_active", "1 while the soak loop is running, 0 once it finished", 1.0 if self.running else 0.0)
        planned = finite(m.get("iterations_planned"))
        gauge("soak_iterations_planned", "iterations the run was started for", planned)
        done = finite(m.get("iterations_done"))  # includes iterations before a resume, which a live exporter never saw
        done = max(done or 0.0, float(self.iterations))
        # one counter (soak_iterations_done, a gauge of the same count, is gone): a counter may start above 0
        counter("soak_iterations", "iterations completed (ok and failed), including those before a resume", done)
        counter("soak_failed_iterations", "iterations that failed", self.failed)
        if planned:
            gauge("soak_progress_ratio", "done / planned iterations (0-1)", min(1.0, done / planned))
        cur = self.current_iteration if self.current_iteration is not None else self.last_iteration
        gauge("soak_current_iteration", "iteration in progress during a run; the last iteration once it ended", cur)
        gauge("soak_last_iteration", "number of the last completed iteration", self.last_iteration)
        gauge("soak_iteration_gaps", "missing iteration numbers in the run directory", self.gaps)
        gauge("soak_last_success_timestamp_seconds",
              "unix time the last ok iteration finished (wall clock)", self.last_success_ts)
        gauge("soak_last_iteration_duration_seconds", "wall time of the last iteration", self.last_wall_elapsed)
        if self.wall_seconds is not None:
            counter("soak_iteration_wall_seconds", "wall time spent in iterations", self.wall_seconds)
        if self.events is not None:
            counter("soak_sim_events", "simulator events processed", self.events)

        last = self.last_ok or {}
        for k in PROM_KPIS:
            v = finite(last.get(k.name))
            gauge(k.prom_name, k.prom_help, None if v is None else v * k.prom_scale)
        verdict = last.get("kpi_verdict")
        if isinstance(verdict, str) and verdict:
            labelled(GaugeMetricFamily, "soak_iteration_kpi_verdict", "KPI verdict of the last ok iteration "
                     "(one-hot)", "verdict", {v: float(v == verdict.lower()) for v in GATE_VERDICTS})

        if self.fills:
            fam = CounterMetricFamily("soak_fills", "fills over the run", labels=["side", "liquidity"])
            for (side, liq) in sorted(self.fills):
                fam.add_metric([side, liq], self.fills[(side, liq)])
            out.append(fam)
        if self.fill_volume:
            fam = CounterMetricFamily("soak_fill_volume", "filled volume over the run, base currency",
                                      labels=["side", "liquidity"])
            for (side, liq) in sorted(self.fill_volume):
                fam.add_metric([side, liq], self.fill_volume[(side, liq)])
            out.append(fam)
        if self.blocks:
            labelled(CounterMetricFamily, "soak_blocks", "orders blocked by the strategy's limits", "reason",
                     self.blocks)
            counter("soak_orders_allowed", "orders that passed the strategy's limits", self.allowed)

        # runtime guards (strategy side) of the last ok iteration
        rg = self.last_runtime_guards
        if rg is not None:
            lsa = finite(rg.get("latency_spread_add_bps"))
            gauge("latency_spread_add_bps", "spread added by the latency guard in the last iteration, bps", lsa)
            gauge("soak_latency_spread_add_ratio", "spread added by the latency guard in the last iteration, "
                  "ratio of price (bps / 10000)", None if lsa is None else lsa / 1e4)
            pfa = rg.get("partial_freeze_active")
            if isinstance(pfa, bool) or finite(pfa) is not None:
                for name in ("partial_freeze_active", "soak_partial_freeze_active"):
                    gauge(name, "1 if the partial freeze was active at the end of the last iteration",
                          1.0 if pfa else 0.0)
            gauge("soak_latency_buffer_active_seconds", "time the latency buffer was active in the last iteration",
                  finite(rg.get("latency_buffer_active_s")))
            bools = {k: 1.0 if v else 0.0 for k, v in rg.items() if isinstance(v, bool)}
            if bools:
                labelled(GaugeMetricFamily, "soak_runtime_guard_active",
                         "runtime guard flags at the end of the last iteration", "guard", bools)
            for key, (name, doc) in GUARD_COUNTERS.items():
                if key in self.guard_sums:
                    counter(name, doc, self.guard_sums[key])
            p95max = finite(rg.get("rolling_p95_max_ms"))
            gauge("soak_rolling_p95_latency_max_seconds", "highest rolling p95 latency seen by the latency guard "
                  "in the last iteration", None if p95max is None else p95max / 1000)

        # tuning (between iterations)
        counter("soak_tuning_applied", "iterations after which tuning applied a change", self.tuning_applied)
        if self.decisions:
            labelled(CounterMetricFamily, "soak_tuning_decisions", "tuner decisions by verdict", "verdict",
                     self.decisions)
        if self.guard_blocks:
            labelled(CounterMetricFamily, "soak_tuning_guard_blocks", "tuner proposals blocked, by guard", "guard",
                     self.guard_blocks)
        if self.param_changes:
            labelled(CounterMetricFamily, "soak_param_changes", "applied non-zero parameter deltas", "param",
                     self.param_changes)
        t = self.last_tuning or {}
        guards = t.get("guards") if isinstance(t.get("guards"), dict) else {}
        flags = {k: 1.0 if v else 0.0 for k, v in guards.items() if isinstance(v, bool)}
        if flags:
            labelled(GaugeMetricFamily, "soak_tuning_guard_active", "tuning guard states after the last iteration",
                     "guard", flags)
        if isinstance(t.get("freeze_ready"), bool):
            gauge("soak_freeze_ready", "1 if the tuner considers the parameters ready to freeze",
                  1.0 if t["freeze_ready"] else 0.0)
        if self.last_params:
            vals = {k: v for k, v in self.last_params.items() if finite(v) is not None}
            if vals:
                labelled(GaugeMetricFamily, "soak_param_value", "parameter values the last iteration ran with",
                         "param", vals)
            frozen = set(guards.get("frozen_params") or ())
            labelled(GaugeMetricFamily, "soak_param_frozen", "1 if the tuner froze the parameter", "param",
                     {k: 1.0 if k in frozen else 0.0 for k in vals})

        if self.mt_window:
            for name in ("maker_taker_ratio_hmean", "soak_maker_taker_ratio_hmean"):
                fam = GaugeMetricFamily(name, "harmonic mean of maker_taker_ratio over the last ok iterations "
                                        "(window = iterations used)", labels=["window"])
                fam.add_metric([str(len(self.mt_window))], harmonic_mean(self.mt_window))
                out.append(fam)
        share = self.maker_share_pct()
        gauge("maker_share_pct", "maker share of the last ok iteration's fills in percent (volume first, else count)",
              share)
        gauge("soak_maker_share_ratio", "maker share of the last ok iteration's fills, 0-1 (volume first, else count)",
              None if share is None else share / 100)
        if self.delta_miss_paths is not None:
            for name in ("delta_nested_miss_paths", "soak_delta_nested_miss_paths"):
                counter(name, "applied parameter deltas that did not land in the next iteration "
                        "(delta verification)", self.delta_miss_paths)
        if self.gate_verdict is not None:
            labelled(GaugeMetricFamily, "soak_gate_verdict", "gate verdict over the last N ok iterations (one-hot)",
                     "verdict", {v: float(v == self.gate_verdict) for v in GATE_VERDICTS})
        out += self._compare_families()
        return out

    def _compare_families(self) -> list:
        """``soak compare`` against a baseline: verdict (one-hot), and per KPI the Hodges-Lehmann estimate
        of candidate - baseline (the KPI's own units) and the test's p-value; KPIs without one are absent."""
        c = self.comparison
        if not c:
            return []
        verdict = GaugeMetricFamily("soak_compare_verdict", "paired comparison against the baseline (one-hot)",
                                    labels=["verdict"])
        for v in COMPARE_VERDICTS:
            verdict.add_metric([v], float(v == str(c.get("verdict", "")).lower()))
        effect = GaugeMetricFamily("soak_compare_effect", "Hodges-Lehmann estimate of candidate - baseline per "
                                   "KPI, in the KPI's units", labels=["kpi"])
        pval = GaugeMetricFamily("soak_compare_p_value", "p-value of the paired test per KPI", labels=["kpi"])
        for k in c.get("kpis") or []:
            if (e := finite(k.get("estimate"))) is not None:
                effect.add_metric([str(k.get("kpi"))], e)
            if (p := finite(k.get("p_value"))) is not None:
                pval.add_metric([str(k.get("kpi"))], p)
        return [verdict, effect, pval]


class SoakCollector(Collector):
    """Collector serving families built from a RunState. ``refresh()`` rebuilds them after the state
    changed; ``collect()`` (every scrape) only hands out the prebuilt list."""

    def __init__(self, state: RunState):
        self.state = state
        self._lock = threading.Lock()
        self._families: list = []
        self.refresh()

    def refresh(self) -> None:
        fams = self.state.families()
        with self._lock:
            self._families = fams

    def update(self, fn) -> None:
        """Apply ``fn(state)`` and rebuild, so a scrape never sees a half-updated state."""
        with self._lock:
            fn(self.state)
            self._families = self.state.families()

    def collect(self) -> Iterator:
        with self._lock:
            fams = self._families
        return iter(fams)

    def describe(self) -> list:
        return []  # families depend on data; no describe-time registration conflicts to check


# -- a loaded run (``soaklib.store.loader.open_run``) -----------------------------------------------

def _gate_verdict(run: Run, cfg: Config) -> str | None:
    """The run's gate verdict over the configured window ([report] last_n), evaluated now by the one
    gate -- the same verdict the snapshot and the bundle carry (a GATE.json written with another
    --last-n is not what a dashboard should show)."""
    v = evaluate_run(run, cfg, int(cfg["report"]["last_n"])).verdict.lower()
    return v if v in GATE_VERDICTS else None


def _delta_misses(run: Run, cfg: Config) -> int | None:
    """``missing`` outcomes of ``soaklib.judge.verify.verify_run``; None when the verification has no
    such count -- absent, never a placeholder 0."""
    v = verify_run(run, cfg).counts.get("missing")
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def state_from_run(run: Run, cfg: Config | None = None) -> RunState:
    """Fold a loaded Run (``open_run``) into a RunState, plus its gate verdict and delta misses."""
    cfg = cfg if cfg is not None else run_config(run)
    st = RunState(run.manifest, cfg)
    for rec in run.records:
        st.add(rec)
    st.gaps = len(run.gaps)
    st.gate_verdict = _gate_verdict(run, cfg)
    st.comparison = run.comparison
    st.delta_miss_paths = _delta_misses(run, cfg)
    return st


def build_registry(state: RunState) -> tuple[CollectorRegistry, SoakCollector]:
    """A fresh dedicated registry holding one SoakCollector (never the default REGISTRY)."""
    reg = CollectorRegistry(auto_describe=False)
    col = SoakCollector(state)
    reg.register(col)
    return reg, col


def run_registry(run: Run, cfg: Config | None = None) -> CollectorRegistry:
    """Registry for a loaded run."""
    return build_registry(state_from_run(run, cfg))[0]


def exposition(registry: CollectorRegistry) -> bytes:
    """Prometheus text format of the registry."""
    return generate_latest(registry)


# -- outputs ------------------------------------------------------------------------------------

def write_textfile(registry: CollectorRegistry, path: str | Path, *, make_parent: bool = False) -> Path:
    """Write the textfile atomically (temp file in the same directory, fsync, rename).

    Only the run's own ``metrics/`` folder is created; a user-given path's folder must exist, so a
    typo is an error rather than a new directory tree."""
    p = Path(path)
    if p.suffix != ".prom":
        raise InputError("a textfile must end in .prom (node_exporter reads only *.prom)", path=p)
    if not make_parent and not p.parent.is_dir():
        raise InputError("directory does not exist", path=p.parent)
    try:
        if make_parent:
            p.parent.mkdir(exist_ok=True)
        _io.atomic_write_bytes(p, generate_latest(registry))
    except OSError as exc:
        raise InputError(f"cannot write textfile: {exc.strerror or exc}", path=p) from None
    return p


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``:PORT`` or ``PORT``; host defaults to 127.0.0.1."""
    s = text.strip()
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        n = int(port)
    except ValueError:
        raise InputError(f"expected HOST:PORT or PORT, got {text!r}", field="--serve") from None
    n = options.parse("--serve", n)  # the port's bounds are core.options'
    return host, n


class MetricsServer:
    """A running /metrics HTTP server (daemon thread); ``close()`` stops it and frees the port."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0):
        try:
            self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            why = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise InputError(f"cannot listen on {host}:{port}: {why}", field="port") from None
        self.host = host
        self.port = int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}/metrics"

    def close(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._thread.join(timeout=5)


def _gateway_error(url: str, exc: Exception) -> InputError:
    if isinstance(exc, HTTPError):
        what = f"HTTP {exc.code}"
    elif isinstance(exc, URLError):
        what = str(exc.reason)
    else:
        what = str(exc)
    return InputError(f"pushgateway {url} unreachable or refused: {what}", field="--push")


def push(registry: CollectorRegistry, url: str, job: str, run_id: str, *, timeout: float) -> None:
    """pushadd (POST): replaces only same-named metrics in the group {job, run}."""
    try:
        pushadd_to_gateway(url, job=job, registry=registry, grouping_key={"run": run_id}, timeout=timeout)
    except (OSError, ValueError) as exc:  # URLError/HTTPError are OSErrors
        raise _gateway_error(url, exc) from None


def delete(url: str, job: str, run_id: str, *, timeout: float) -> None:
    """Delete the group {job, run} from the pushgateway."""
    try:
        delete_from_gateway(url, job=job, grouping_key={"run": run_id}, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise _gateway_error(url, exc) from None


# -- live ---------------------------------------------------------------------------------------

class LiveExporter:
    """Soak-loop observer serving live metrics on ``host:port`` while the run goes on.

    Binds in the constructor so a busy port fails before the run starts (InputError, exit 2).
    ``on_start(manifest)``, ``on_iteration(record, manifest)``, ``on_finish(manifest)`` update the
    state; each update rebuilds the families once, scrapes only read them. ``close()`` stops serving.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", cfg: dict | None = None):
        self._cfg = cfg
        st = RunState({}, cfg)
        st.live = True
        self._collector = SoakCollector(st)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self._collector)
        self._server = MetricsServer(self.registry, host, port)
        self.host, self.port, self.url = host, self._server.port, self._server.url

    @property
    def state(self) -> RunState:
        return self._collector.state

    def on_start(self, manifest: dict) -> None:
        def f(st: RunState) -> None:
            st.manifest = dict(manifest or {})
            st.running = True
            done = finite((manifest or {}).get("iterations_done")) or 0
            st.current_iteration = int(done) + 1
        self._collector.update(f)

    def on_iteration(self, record: IterationRecord, manifest: dict | None = None) -> None:
        def f(st: RunState) -> None:
            if manifest:
                st.manifest = dict(manifest)
            st.add(record)
            planned = finite(st.manifest.get("iterations_planned"))
            nxt = (st.last_iteration or 0) + 1
            st.current_iteration = nxt if planned is None or nxt <= planned else st.last_iteration
        self._collector.update(f)

    def on_finish(self, manifest: dict | None = None) -> None:
        def f(st: RunState) -> None:
            if manifest:
                st.manifest = dict(manifest)
            st.running = False
            st.current_iteration = st.last_iteration
        self._collector.update(f)

    def close(self) -> None:
        self._server.close()

    def __enter__(self) -> LiveExporter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
