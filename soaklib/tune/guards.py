"""Between-iteration guards (DESIGN §7, issue 4): pure functions of (proposal, history, params, config).

Every guard reads the history only: parameter values come from each record's ``params`` (what the
iteration ran with), earlier oscillation freezes from earlier records' ``tuning.decisions``. Constants
live in ``[guards]`` of defaults.toml. Order per parameter: last_iteration, steady_state, frozen,
cooldown, bounds, velocity, oscillation; the first that blocks wins, clamps accumulate.

(The seed's in-run guards -- latency buffer, partial freeze with debounce -- run inside the simulated
strategy, see soaklib/sim; they are not this module.)
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from soaklib.core.config import Config
from soaklib.core.goals import goals_pass
from soaklib.core.params import Param, Registry, registry
from soaklib.core.records import Decision, IterationRecord

_EPS = 1e-9


def _ok(rec: Mapping[str, Any]) -> bool:
    return rec.get("status", "ok") == "ok"


def _same(a: float, b: float, p: Param) -> bool:
    return abs(a - b) <= p.tolerance * 0.5 + _EPS


def series(history: list[Mapping[str, Any]], name: str, last: int | None = None,
           upto: int | None = None) -> list[float]:
    """Values ``name`` ran with, one per record of ``history[:upto+1]`` that reports it (in order);
    only the final ``last`` of them when given (read backwards, so long runs stay cheap)."""
    out: list[float] = []
    end = len(history) if upto is None else upto + 1
    for i in range(end - 1, -1, -1):
        if last is not None and len(out) >= last:
            break
        ps = history[i].get("params")
        v = ps.get(name) if isinstance(ps, Mapping) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    out.reverse()
    return out


def velocity_limit(p: Param, cfg: Mapping[str, Any]) -> float:
    """Largest allowed |change| of ``p`` in one iteration: a share of its range, whole steps, >= 1 step."""
    raw = cfg["guards"]["velocity_max_frac_per_iter"] * (p.max - p.min)
    return max(math.floor(raw / p.step + _EPS), 1) * p.step


def window_limit(p: Param, cfg: Mapping[str, Any]) -> float:
    """Largest allowed sum of |changes| of ``p`` over ``velocity_window`` consecutive transitions."""
    raw = cfg["guards"]["velocity_max_frac_per_window"] * (p.max - p.min)
    return max(math.floor(raw / p.step + _EPS), 1) * p.step


def steady_state(history: list[Mapping[str, Any]], cfg: Mapping[str, Any]) -> bool:
    """All goals pass (hard, per-iteration values) on each of the last K records, all of them ok."""
    k = int(cfg["guards"]["steady_state_iters"])
    tail = history[-k:]
    return k > 0 and len(tail) == k and all(_ok(r) and goals_pass(r.get("summary") or {}, cfg) for r in tail)


def _aba(vals: list[float], p: Param) -> bool:
    """The last value returns to a value seen earlier in ``vals`` with a different value in between."""
    if len(vals) < 3:
        return False
    last = vals[-1]
    if _same(vals[-2], last, p):
        return False
    return any(_same(v, last, p) for v in vals[:-2])


def oscillation_in_history(history: list[Mapping[str, Any]], name: str, p: Param, cfg: Mapping[str, Any],
                           upto: int | None = None) -> bool:
    """A→B→A in the observed values of ``name`` within the window, ending at record index ``upto``."""
    w = int(cfg["guards"]["oscillation_window"])
    return _aba(series(history, name, last=w + 1, upto=upto), p) if w >= 2 else False


def frozen_params(history: list[Mapping[str, Any]], reg: Registry, cfg: Mapping[str, Any],
                  iteration: int) -> dict[str, str]:
    """Parameters frozen for the decision taken after ``iteration`` → why.

    Frozen for ``oscillation_freeze_iters`` decisions after an oscillation: either an earlier decision
    blocked a return to an old value, or the observed values went A→B→A.
    """
    k = int(cfg["guards"]["oscillation_freeze_iters"])
    out: dict[str, str] = {}
    if k <= 0:
        return out
    for idx, r in enumerate(history):
        it = r.get("iteration")
        if not isinstance(it, int) or not (iteration - k <= it <= iteration):
            continue
        t = r.get("tuning") if isinstance(r.get("tuning"), dict) else {}
        if it < iteration:
            for d in t.get("decisions") or []:
                if d.get("guard") == "oscillation" and d.get("param") in reg:
                    out.setdefault(d["param"], f"oscillation blocked at iteration {it}, frozen until {it + k}")
        for name, p in reg.items():
            if name not in out and oscillation_in_history(history, name, p, cfg, upto=idx):
                out[name] = f"values went A->B->A by iteration {it}, frozen until {it + k}"
    return out


def _last_change(vals: list[float], p: Param) -> tuple[int, float] | None:
    """(index of the record that first ran with the new value, |change|) of the latest change."""
    for j in range(len(vals) - 1, 0, -1):
        if not _same(vals[j], vals[j - 1], p):
            return j, abs(vals[j] - vals[j - 1])
    return None


def cooldown_active(history: list[Mapping[str, Any]], name: str, p: Param, cfg: Mapping[str, Any]) -> str | None:
    """Why ``name`` is cooling down after a large change, or None."""
    g = cfg["guards"]
    c = int(g["cooldown_iters"])
    if c <= 0:
        return None
    vals = series(history, name, last=c + 2)  # a change older than that cannot be cooling down
    lc = _last_change(vals, p)
    if lc is None:
        return None
    j, mag = lc
    # decisions since the change (the one that produced it excluded): len(vals)-1-j ... must exceed c
    since = len(vals) - 1 - j
    if mag >= g["cooldown_large_frac"] * (p.max - p.min) - _EPS and since < c:
        return f"large change {mag:g} {p.unit} {since + 1} iteration(s) ago; cooldown {c}"
    return None


def _toward(cur: float, target: float, limit: float, p: Param) -> float:
    """``target`` moved toward ``cur`` so |target-cur| <= limit, on the step grid and within bounds."""
    if abs(target - cur) <= limit + _EPS:
        return target
    nsteps = math.floor(limit / p.step + _EPS)
    cand = p.normalise(cur + math.copysign(nsteps * p.step, target - cur))
    while abs(cand - cur) > limit + _EPS and nsteps > 0:  # off-grid current: one more step back
        nsteps -= 1
        cand = p.normalise(cur + math.copysign(nsteps * p.step, target - cur))
    return cand if nsteps > 0 else cur


def apply_guards(proposal: Any, history: list[IterationRecord], params: Mapping[str, Any],
                 cfg: Config, iteration: int, total: int) -> list[Decision]:
    """One decision per proposed parameter: verdict applied|clamped|blocked, guard, reason, new value."""
    reg = registry(cfg)
    g = cfg["guards"]
    last = iteration >= total
    steady = steady_state(history, cfg)
    frozen = frozen_params(history, reg, cfg, iteration)
    decisions = []
    for name, delta in proposal.deltas.items():
        p = reg[name]
        cur = params.get(name, p.default)
        why = proposal.reasons.get(name, "")
        dec = {"param": name, "current": cur, "proposed_delta": delta, "verdict": "applied", "guard": None,
               "clamped_delta": 0, "new": cur, "reason": why}

        def block(guard: str, note: str, dec: dict = dec, why: str = why) -> None:
            dec.update(verdict="blocked", guard=guard, reason=f"{why}; {guard}: {note}" if why else f"{guard}: {note}")

        cd = cooldown_active(history, name, p, cfg)
        if last:
            block("last_iteration", f"iteration {iteration} of {total}: no change after the last iteration")
        elif steady:
            block("steady_state", f"all goals passed {g['steady_state_iters']} iterations in a row")
        elif name in frozen:
            block("frozen", frozen[name])
        elif cd:
            block("cooldown", cd)
        else:
            guard, notes = None, []
            target = p.normalise(cur + delta)
            if not _same(target, p.round(cur + delta), p) or _same(target, cur, p):
                guard = "bounds"
                notes.append(f"clamped to [{p.min}, {p.max}]")
            lim = velocity_limit(p, cfg)
            t2 = _toward(cur, target, lim, p)
            if not _same(t2, target, p):
                guard = "velocity"
                notes.append(f"|change| <= {lim:g} per iteration")
                target = t2
            w = int(g["velocity_window"])
            vals = series(history, name, last=w)
            used = sum(abs(b - a) for a, b in zip(vals, vals[1:]))
            room = max(window_limit(p, cfg) - used, 0.0)
            t3 = _toward(cur, target, room, p) if room >= p.step - _EPS else cur
            if not _same(t3, target, p):
                guard = "velocity"
                notes.append(f"window budget {room:g} of {window_limit(p, cfg):g} over {w} iterations")
                target = t3
            if not _same(target, cur, p):
                window = series(history, name, last=int(g["oscillation_window"]))
                if _aba(window + [float(target)], p):
                    block("oscillation", f"{cur:g} -> {target:g} returns to an earlier value within "
                                         f"{g['oscillation_window']} iterations; frozen {g['oscillation_freeze_iters']}")
                    decisions.append(dec)
                    continue
            if _same(target, cur, p):
                block(guard or "bounds", "; ".join(notes) or "no effective change")
            else:
                dec["new"] = target
                dec["clamped_delta"] = _delta(target, cur, p)
                if guard:
                    dec.update(verdict="clamped", guard=guard, reason=f"{why}; {guard}: " + "; ".join(notes))
        decisions.append(dec)
    return decisions


def _delta(new: float, cur: float, p: Param) -> float | int:
    d = new - cur
    return int(round(d)) if p.kind == "int" else round(d, 10)


def guard_flags(decisions: list[Mapping[str, Any]], history: list[Mapping[str, Any]], params: Mapping[str, Any],
                cfg: Mapping[str, Any], iteration: int, total: int) -> dict[str, Any]:
    """The record's ``tuning.guards`` block: true flags for this decision."""
    reg = registry(cfg)
    frozen = frozen_params(history, reg, cfg, iteration)
    steady = steady_state(history, cfg)
    osc_now = any(oscillation_in_history(history, n, p, cfg) for n, p in reg.items())
    return {
        "oscillation_detected": osc_now or any(d.get("guard") == "oscillation" for d in decisions),
        "velocity_violation": any(d.get("guard") == "velocity" for d in decisions),
        "cooldown_active": any(cooldown_active(history, n, p, cfg) for n, p in reg.items()),
        "frozen_params": sorted(frozen),
        "freeze_ready": steady,
        "last_iteration": iteration >= total,
    }
