"""Test helpers: write valid run directories from KPI values the caller chooses.

``write_synthetic_run`` is a fixture factory for tests of the analysis, gate, verify, metrics and
bundle code. It writes exactly what it is told (no KPI is computed here), through the same record
builder and store as a real run, and validates every record against the shipped schema.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.params import load_profile, registry
from soaklib.core.records import (
    build_record,
    next_params,
    plain,
    tuning_off_block,
    tuning_report,
    validate_record,
)
from soaklib.execute.base import RunnerOutput
from soaklib.store.rundir import new_manifest, new_run_id, set_latest, write_run

# A healthy iteration's KPIs (meets the default goals). Only the fallback when the caller gives none.
DEFAULT_KPIS: dict[str, Any] = {
    "net_bps": 3.0, "gross_bps": 4.4, "fees_eff_bps": 0.6, "slippage_bps": -0.4, "inventory_bps": -1.6,
    "adverse_bps": -1.1, "adverse_bps_p95": 3.0, "slippage_bps_p95": 1.8,
    "order_age_p95_ms": 520.0, "cancel_ratio": 0.3,
    "p50_latency_ms": 120.0, "p95_latency_ms": 250.0, "p99_latency_ms": 300.0,
    "risk_ratio": 0.25, "min_interval_ratio": 0.45, "concurrency_ratio": 0.2, "throttle_ratio": 0.1,
    "maker_taker_ratio": 0.88, "maker_taker_source": "fills_volume",
    "pnl_quote": 12.0, "drawdown_quote": 4.0, "inventory_utilisation": 0.4,
    "fills": {"maker_count": 880, "taker_count": 120, "maker_volume": 88.0, "taker_volume": 12.0,
              "buy_maker_count": 440, "sell_maker_count": 440, "buy_taker_count": 60, "sell_taker_count": 60,
              "buy_maker_volume": 44.0, "sell_maker_volume": 44.0, "buy_taker_volume": 6.0,
              "sell_taker_volume": 6.0, "count": 1000, "volume": 100.0},
    "blocks": {"counts": {"min_interval": 45, "concurrency": 20, "risk": 25, "throttle": 10, "allowed": 900,
                          "other": 0},
               "total": 1000,
               "ratios": {"min_interval": 4.5, "concurrency": 2.0, "risk": 2.5, "throttle": 1.0, "allowed": 90.0,
                          "other": 0.0}},
}

KpiSpec = Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None
ParamSpec = Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None


def _at(spec: Any, i: int) -> dict:
    if spec is None:
        return {}
    return dict(spec(i) if callable(spec) else spec)


def _applied_block(cur: Mapping[str, Any], nxt: Mapping[str, Any], summary: Mapping[str, Any]) -> dict:
    """A tuning block whose applied decisions move ``cur`` to ``nxt`` exactly."""
    block = tuning_off_block(cur, summary=summary)
    changed = [k for k in sorted(nxt) if not math.isclose(nxt[k], cur.get(k, nxt[k]), rel_tol=0, abs_tol=1e-12)]
    if not changed:
        block["skip_reason"] = {"reason": "no_change"}
        return block
    deltas = {k: round(nxt[k] - cur[k], 10) for k in changed}
    if all(isinstance(cur[k], int) and isinstance(nxt[k], int) for k in changed):
        deltas = {k: int(v) if isinstance(cur[k], int) else v for k, v in deltas.items()}
    new_hash = _io.state_hash(plain(dict(nxt)))
    block.update(
        deltas=deltas, proposed_deltas=dict(deltas), applied=True, skip_reason="", changed_keys=changed,
        state_hash=new_hash, signature=new_hash, rationale="SYNTHETIC",
        decisions=[{"param": k, "current": cur[k], "proposed_delta": deltas[k], "verdict": "applied",
                    "guard": None, "clamped_delta": deltas[k], "new": nxt[k], "reason": "SYNTHETIC"}
                   for k in changed])
    return block


def write_synthetic_run(root: str | Path, n: int = 10, *, kpis: KpiSpec = None, params: ParamSpec = None,
                        seed: int = 0, status: str = "completed", failed: Iterable[int] = (),
                        profile_name: str = "best_cell", scenario: str = "default", duration_s: float = 3600.0,
                        iterations_planned: int | None = None, config: Mapping[str, Any] | None = None,
                        latest: bool | None = None, runner: str = "sim") -> Path:
    """Write a valid soaklib run dir under ``root`` (a runs directory) and return its path.

    - ``kpis``: a dict (every iteration) or ``callable(i) -> dict`` merged over ``DEFAULT_KPIS``
      (give ``None`` values to leave a KPI unmeasured; fills/blocks are replaced whole).
    - ``params``: a dict or ``callable(i) -> dict`` merged over the profile ``profile_name``; when
      they change between iterations, the tuning block of i records applied decisions to the params
      of i+1 (so verification sees full applies); constant params give auto-tune-off blocks.
    - ``failed``: iteration numbers written as failed (null KPIs, no params, a failure reason, an
      ``iteration_failed`` tuning block). The real loop changes nothing after a failed iteration, so
      give the iteration after it the same params if the run should verify cleanly.
    - ``status``: run.json status; ``latest`` (default: status == "completed") moves ``root/latest``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    cfg = dict(config) if config is not None else load_config()
    reg = registry(cfg)
    base = load_profile(profile_name, reg)
    failed = set(failed)
    per_iter = [{**base, **_at(params, i)} for i in range(1, n + 2)]
    auto_tune = any(per_iter[i] != per_iter[0] for i in range(n))
    root = Path(root)
    run_id = new_run_id()
    records = []
    for i in range(1, n + 1):
        cur, nxt = per_iter[i - 1], per_iter[i] if i < n else per_iter[i - 1]
        utc = f"2027-01-15T{(i // 60) % 24:02d}:{i % 60:02d}:00.000000Z"
        failure = {"reason": "synthetic failure", "stderr_tail": "exit status 3"} if i in failed else None
        merged = {**DEFAULT_KPIS, **_at(kpis, i)}
        rec = build_record(iteration=i, seed=(seed * 1_000_003 + i) % (2**63), runner=runner, scenario=scenario,
                           start_s=(i - 1) * duration_s, duration_s=duration_s, kpis=merged,
                           params={} if failure else cur, market={"regimes": ["calm"], "faults": []},
                           runtime_guards={"partial_freeze_active": False}, events=1000 * i, failure=failure,
                           started_utc=utc, finished_utc=utc, elapsed_s=0.01, cfg=cfg)
        if failure:
            rec["tuning"] = tuning_off_block(cur, reason="iteration_failed", summary=rec["summary"])
        elif auto_tune:
            rec["tuning"] = _applied_block(cur, nxt, rec["summary"])
        else:
            rec["tuning"] = tuning_off_block(cur, summary=rec["summary"])
        validate_record(rec, f"<synthetic ITER_SUMMARY_{i}>")
        records.append(rec)
    last_params = next_params(per_iter[n - 1], records[-1]["tuning"]) if records else base
    manifest = new_manifest(config=cfg, seed=seed, runner=runner, scenario=scenario, profile_name=profile_name,
                            profile_values=per_iter[0], iterations_planned=iterations_planned or n,
                            auto_tune=auto_tune, duration_s=duration_s, created_utc="2027-01-15T00:00:00.000000Z")
    manifest.update(run_id=run_id, status=status, iterations_done=n,
                    finished_utc=None if status == "running" else "2027-01-15T23:59:00.000000Z")
    path = root / run_id
    write_run(path, manifest, records, last_params, tuning_report(records))
    if latest if latest is not None else status == "completed":
        set_latest(root, run_id)
    return path




class ToyRunner:
    """A cheap stand-in for the simulator in tests of the soak loop (never used by ``soak run``).

    Its KPIs are draws from ``numpy.random.default_rng(seed)`` shifted by the parameters (wider
    spread → higher net and lower risk, faster requoting → more risk), so a run is reproducible from
    its seed and tuning visibly changes what the next iteration reports. ``fail_on``: iterations
    that report a failure; ``delay_s``: sleep per iteration (to kill a run mid-way in tests).
    """

    name = "toy"

    def __init__(self, *, delay_s: float = 0.0, fail_on: Iterable[int] = (), drop_param: str | None = None):
        self.delay_s = float(delay_s)
        self.fail_on = set(fail_on)
        self.drop_param = drop_param
        self.calls: list[dict] = []

    def run(self, params: Mapping[str, Any], *, iteration: int, seed: int, run_dir: Any = None,
            start_s: float = 0.0):

        self.calls.append({"iteration": iteration, "seed": seed, "params": dict(params), "start_s": start_s})
        if self.delay_s:
            time.sleep(self.delay_s)
        if iteration in self.fail_on:
            return RunnerOutput.failed("toy failure", f"iteration {iteration} told to fail")
        rng = np.random.default_rng(seed)
        spread = float(params.get("base_spread_bps_delta", 0.05))
        mi = float(params.get("min_interval_ms", 60))
        gross = 4.0 + 8.0 * spread + rng.normal(0, 0.8)
        fees, slip, inv = 0.6, -abs(rng.normal(0.3, 0.1)), -abs(rng.normal(1.2, 0.4))
        blocks = {"min_interval": int(rng.integers(10, 60)), "concurrency": int(rng.integers(5, 30)),
                  "risk": int(max(0, rng.normal(40, 15) - 0.2 * (mi - 60) - 40 * spread)),
                  "throttle": int(rng.integers(0, 10)), "allowed": int(rng.integers(500, 900)), "other": 0}
        mv, tv = float(rng.uniform(60, 95)), float(rng.uniform(5, 20))
        kpis = {
            "net_bps": gross + fees + slip + inv, "gross_bps": gross, "fees_eff_bps": fees, "slippage_bps": slip,
            "inventory_bps": inv, "adverse_bps": -abs(rng.normal(1.0, 0.3)),
            "adverse_bps_p95": abs(rng.normal(3.0, 0.5)), "slippage_bps_p95": abs(rng.normal(1.8, 0.4)),
            "order_age_p95_ms": float(rng.uniform(300, 700)), "cancel_ratio": float(rng.uniform(0.1, 0.5)),
            "p50_latency_ms": float(rng.uniform(80, 150)), "p95_latency_ms": float(rng.uniform(200, 360)),
            "p99_latency_ms": float(rng.uniform(360, 450)),
            "fills": {"maker_count": int(mv * 10), "taker_count": int(tv * 10), "maker_volume": mv, "taker_volume": tv},
            "blocks": {"counts": blocks},
            "pnl_quote": float(rng.normal(10, 3)), "drawdown_quote": float(rng.uniform(0, 5)),
            "inventory_utilisation": float(rng.uniform(0, 1)),
        }
        reported = {k: v for k, v in params.items() if k != self.drop_param}
        return RunnerOutput(ok=True, kpis=kpis, params=reported, runtime_guards={"partial_freeze_active": False},
                            market={"regimes": ["toy"], "faults": []}, events=int(rng.integers(1000, 2000)),
                            params_missing=[self.drop_param] if self.drop_param in params else [])


__all__ = ["write_synthetic_run", "DEFAULT_KPIS", "ToyRunner"]
