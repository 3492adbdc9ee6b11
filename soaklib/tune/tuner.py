"""The auto-tuner (DESIGN §7, issue 4): a pure function of the iteration history and the config.

``propose`` applies the seed's live rules (reference §3.4, plus fallback and multi-fail calming from
§3.2) with the seed's bugs removed: the maker boost reads the real ``maker_taker_ratio``, deltas are
relative to the CURRENT values, keys are the registry's names. ``decide`` runs the guards
(``soaklib.tune.guards``) and builds the record's ``tuning`` block; ``tuning_report`` builds
TUNING_REPORT.json with true counts. Rule constants live in ``[tuner]`` of defaults.toml.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soaklib.core import io as _io
from soaklib.core.config import Config
from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.core.params import Registry, registry
from soaklib.core.records import IterationRecord, Tuning
from soaklib.core.sections import validate_tuning_config
from soaklib.core.text import fmt_num
from soaklib.tune.guards import apply_guards, guard_flags

# summary KPIs copied into tuning.conditions (seed field names)
_CONDITIONS = {
    "net_bps": "net_bps", "risk_ratio": "risk_ratio", "adverse_p95": "adverse_bps_p95",
    "slippage_p95": "slippage_bps_p95", "order_age_p95_ms": "order_age_p95_ms",
    "min_interval_ratio": "min_interval_ratio", "concurrency_ratio": "concurrency_ratio",
    "maker_taker_ratio": "maker_taker_ratio", "p95_latency_ms": "p95_latency_ms",
    "cancel_ratio": "cancel_ratio",
}


@dataclass
class Proposal:
    """What the rules want after one iteration: deltas (step-rounded) with one reason per key."""

    deltas: dict[str, float | int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)     # rule tags that fired, in order
    conditions: dict[str, Any] = field(default_factory=dict)
    mode: str = "normal"                                # normal | fallback | multi_fail | no_data | failed | healthy
    note: str = ""

    @property
    def rationale(self) -> str:
        parts = [f"{k}{fmt_num(float(self.deltas[k]), '+g')}" for k in self.deltas]
        head = " | ".join(self.rules) if self.rules else self.mode.upper()
        text = head + (": " + "; ".join(parts) if parts else "")
        return text + (f" -- {self.note}" if self.note else "")


def _summary(rec: Mapping[str, Any]) -> dict[str, Any]:
    s = rec.get("summary")
    return s if isinstance(s, dict) else {}


def _ok(rec: Mapping[str, Any]) -> bool:
    return rec.get("status", "ok") == "ok"


class _Builder:
    """Accumulates rule deltas; a key is set by the first rule that touches it (seed: "only if not set")."""

    def __init__(self, reg: Registry, params: Mapping[str, Any], src: str):
        self.reg, self.params, self.src = reg, params, src
        self.deltas: dict[str, float] = {}
        self.reasons: dict[str, str] = {}
        self.rules: list[str] = []

    def add(self, tag: str, deltas: Mapping[str, Any], why: str, *, overwrite: bool = False) -> None:
        fired = False
        for k, d in deltas.items():
            if k not in self.reg:
                raise ConfigError("unknown parameter in rule deltas, expected one of: " + ", ".join(self.reg),
                                  path=self.src, field=f"tuner.{tag}.{k}")
            if k in self.deltas and not overwrite:
                continue
            self.deltas[k] = float(d)
            self.reasons[k] = f"{tag} {why}"
            fired = True
        if fired:
            self.rules.append(f"{tag.upper()} {why}")


def propose(history: list[IterationRecord], params: Mapping[str, Any], cfg: Config) -> Proposal:
    """Deltas the rules propose after the last record of ``history`` (pure; no guards applied).

    ``params``: flat values the last iteration ran with. Deltas are step-rounded; a zero delta is dropped.
    """
    reg = registry(cfg)
    t = cfg["tuner"]
    if not history:
        return Proposal(mode="no_data", note="empty history")
    last = history[-1]
    if not _ok(last):
        return Proposal(mode="failed", note=f"iteration {last.get('iteration')} failed: no proposal from a failed iteration")
    s = _summary(last)
    cond = {k: finite(s.get(v)) for k, v in _CONDITIONS.items()}
    net, risk = cond["net_bps"], cond["risk_ratio"]
    if net is None or risk is None:
        return Proposal(conditions=cond, mode="no_data", note="No net_bps/risk_ratio data available")

    b = _Builder(reg, params, "<config>")
    mode = "normal"
    ok_hist = [r for r in history if _ok(r)]

    # --- FALLBACK: consecutive negative-net iterations (seed §3.2), rate-limited via earlier decisions
    n_neg = int(t["fallback_neg_iterations"])
    tail = ok_hist[-n_neg:]
    gap = int(t["fallback_min_gap"])
    # at most one fallback per `gap` iterations: look at the decisions of the previous gap-1 records
    recent_fallback = gap > 1 and any(
        isinstance(r.get("tuning"), dict) and "FALLBACK" in str(r["tuning"].get("rationale", ""))
        for r in history[-gap:-1])
    if len(tail) == n_neg and all((finite(_summary(r).get("net_bps")) or 0.0) < 0 for r in tail) and not recent_fallback:
        b.add("fallback_conservative", t["fallback_deltas"], f"net<0 for {n_neg} iterations")
        mode = "fallback"
    else:
        # --- multi-fail calming: too many failing conditions at once -> only the calming steps
        fails = []
        if (cond["cancel_ratio"] or 0.0) > t["cancel_ratio_max"]:
            fails.append("cancel_ratio")
        if (cond["adverse_p95"] or 0.0) > t["adverse_fail_p95"] or (cond["slippage_p95"] or 0.0) > t["slippage_fail_p95"]:
            fails.append("edge_p95")
        if (cond["p95_latency_ms"] or 0.0) > t["latency_hard_ms"]:
            fails.append("latency_hard")
        if net < 0:
            fails.append("net_negative")
        if len(fails) >= int(t["multi_fail_min"]):
            b.add("multi_fail_guard", t["calming_deltas"], "fails=" + ",".join(fails))
            mode = "multi_fail"

    if mode == "normal":
        # --- risk zones (at most one)
        if risk >= t["risk_aggressive"]:
            b.add("risk_aggressive", t["aggressive_deltas"], f"risk={risk:.2f}")
        elif risk >= t["risk_moderate"]:
            b.add("risk_moderate", t["moderate_deltas"], f"risk={risk:.2f}")
        # --- latency buffer
        p95 = cond["p95_latency_ms"]
        if p95 is not None and p95 > t["latency_hard_ms"]:
            b.add("latency_hard", t["latency_hard_deltas"], f"p95={p95:.0f}ms")
        elif p95 is not None and p95 >= t["latency_soft_ms"]:
            b.add("latency_buffer", t["latency_soft_deltas"], f"p95={p95:.0f}ms")
        # --- net below its goal: widen the spread (before the drivers, whose spread step is smaller)
        net_goal = cfg.get("goals", {}).get("net_bps", {}).get("hard")
        if net_goal is not None and net < net_goal:
            b.add("low_net", t["low_net_deltas"], f"net={net:.2f}<{net_goal}")
        # --- drivers
        adv, slip = cond["adverse_p95"], cond["slippage_p95"]
        if adv is not None and adv > t["adverse_p95_max"]:
            b.add("driver_adverse", t["adverse_deltas"], f"adverse_p95={adv:.2f}")
        if slip is not None and slip > t["slippage_p95_max"]:
            b.add("driver_slippage", t["slippage_deltas"], f"slippage_p95={slip:.2f}")
        # --- maker boost: reads the REAL ratio (seed defaulted it to 0.6)
        mt = cond["maker_taker_ratio"]
        if mt is not None and mt < t["maker_boost_target"] and risk < t["maker_boost_risk_max"] \
                and net >= t["maker_boost_net_min"]:
            b.add("maker_boost", t["maker_boost_deltas"], f"ratio={mt:.3f}<{t['maker_boost_target']}")
        # --- normalise when healthy (seed: cleared by its own should_apply; here it survives)
        if not b.deltas and risk < t["risk_normalize"] and net >= t["normalize_net_min"]:
            b.add("normalize", t["normalize_deltas"], f"risk={risk:.2f} net={net:.2f}")
            mode = "healthy"

    # --- conflict guard: widening the spread while speeding up under risk -> prefer risk
    if b.deltas.get("base_spread_bps_delta", 0) > 0 and b.deltas.get("min_interval_ms", 0) < 0 \
            and risk >= t["conflict_risk_min"]:
        del b.deltas["min_interval_ms"], b.reasons["min_interval_ms"]
        b.rules.append("GUARD: conflict=spread_widen_vs_speedup resolved=prefer_risk")
    # --- total spread increase per iteration is capped
    sp = b.deltas.get("base_spread_bps_delta")
    if sp is not None and sp > t["spread_cap_per_iter"]:
        b.deltas["base_spread_bps_delta"] = float(t["spread_cap_per_iter"])
        b.reasons["base_spread_bps_delta"] += f" (capped at {t['spread_cap_per_iter']})"

    deltas: dict[str, float | int] = {}
    reasons: dict[str, str] = {}
    for k in reg:  # registry order: deterministic
        if k in b.deltas:
            d = reg[k].round(b.deltas[k])
            if d != 0:
                deltas[k] = d
                reasons[k] = b.reasons[k]
    return Proposal(deltas=deltas, reasons=reasons, rules=b.rules, conditions=cond, mode=mode)


def _flat_params(params: Mapping[str, Any], reg: Registry) -> dict[str, Any]:
    return {k: params[k] for k in reg if k in params}


def decide(history: list[IterationRecord], params: dict, cfg: Config, *, iteration: int, total: int,
           auto_tune: bool) -> Tuning:
    """The record's ``tuning`` block for iteration ``iteration`` (docs/ARCHITECTURE.md).

    ``history``: records 1..iteration (current last); ``params``: flat values iteration ``iteration``
    ran with. The decisions' ``new`` values are what iteration+1 runs with; ``deltas`` = new - current.
    """
    reg = registry(cfg)
    validate_tuning_config(cfg)
    flat = _flat_params(params, reg)
    old_hash = _io.state_hash(flat)
    block: dict[str, Any] = {
        "deltas": {}, "proposed_deltas": {}, "rationale": "", "applied": False, "conditions": {},
        "skip_reason": "", "changed_keys": [], "state_hash": old_hash, "old_hash": old_hash,
        "signature": old_hash, "decisions": [],
        "guards": {"oscillation_detected": False, "velocity_violation": False, "cooldown_active": False,
                   "frozen_params": [], "freeze_ready": False, "last_iteration": iteration >= total},
        "freeze_ready": False,
    }
    if not auto_tune:
        block["rationale"] = "auto-tune off"
        block["skip_reason"] = {"reason": "auto_tune_off", "note": "run without --auto-tune"}
        return block

    prop = propose(history, flat, cfg)
    cond = {k: v for k, v in prop.conditions.items()}
    block["conditions"] = cond
    block["proposed_deltas"] = dict(prop.deltas)
    block["rationale"] = prop.rationale
    if prop.mode in ("failed", "no_data"):
        reason = "iteration_failed" if prop.mode == "failed" else "no_data"
        block["skip_reason"] = {"reason": reason, "note": prop.note}
        block["rationale"] = f"SKIP {reason}: {prop.note}"
        # guard flags (freeze_ready, frozen) still reported for the record
        flags = guard_flags([], history, flat, cfg, iteration, total)
        block["guards"].update(flags)
        block["freeze_ready"] = flags["freeze_ready"]
        return block

    decisions = apply_guards(prop, history, flat, cfg, iteration, total)
    flags = guard_flags(decisions, history, flat, cfg, iteration, total)
    new = dict(flat)
    deltas: dict[str, float | int] = {}
    for d in decisions:
        if d["new"] != d["current"]:
            new[d["param"]] = d["new"]
            deltas[d["param"]] = reg[d["param"]].round(d["new"] - d["current"]) if reg[d["param"]].kind == "int" \
                else round(d["new"] - d["current"], 10)
    block["decisions"] = decisions
    block["deltas"] = deltas
    block["changed_keys"] = sorted(deltas)
    block["applied"] = bool(deltas)
    block["guards"].update(flags)
    block["freeze_ready"] = flags["freeze_ready"]
    block["state_hash"] = block["signature"] = _io.state_hash(new)
    if not deltas:
        if flags["freeze_ready"]:
            block["skip_reason"] = {"reason": "steady_state", "note": "all goals passed "
                                    f"{cfg['guards']['steady_state_iters']} iterations in a row: tuning frozen"}
        elif not prop.deltas:
            block["skip_reason"] = {"reason": "no_proposal", "note": "rules proposed no change"}
        else:
            guards = sorted({d["guard"] for d in decisions if d["guard"]})
            block["skip_reason"] = {"reason": "all_blocked", "note": "blocked by " + ",".join(guards),
                                    "guards": guards}
    return block


# ---------------------------------------------------------------- TUNING_REPORT
