"""Cross-field checks of config sections: ``[sim]``, ``[runtime_guards]`` (and the registry bounds
the compiled loop depends on), ``[tuner]`` and ``[guards]``.

Called at the end of ``soaklib.core.config.validate_config`` (so ``soak config validate`` and every
command refuse a bad value up front, naming the field) and by ``simulate`` / ``decide`` for a config
passed in directly. Deliberately imports neither numba nor the engine: loading a config must stay cheap.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.core.params import registry_from_config

# Orders in flight the compiled loop has slots for (soaklib/sim/engine.py ``_INFL``; a test keeps
# the two equal). The registry must not let the tuner ask for more.
MAX_IN_FLIGHT = 64
# Bps constants above 10 % make no sense for a market maker and can push prices to <= 0.
MAX_BPS = 1000.0

# field -> (lower bound, lower bound strict, upper bound, upper bound strict); None = unbounded
_SIM: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "mid0": (0.0, True, None, False),
    "tick": (0.0, True, None, False),             # and < mid0, checked below
    "inventory_limit": (0.0, True, None, False),
    "risk_soft_ratio": (0.0, True, 1.0, False),
    "market_order_size_ratio": (0.0, True, None, False),
    "rebid_threshold_bps": (0.0, False, MAX_BPS, False),
    "skew_gain": (0.0, False, None, False),
    "rescue_hard_ratio": (0.0, True, 1.0, False),
    "rescue_hold_ms": (0.0, False, None, False),
    "rescue_target_ratio": (0.0, False, 1.0, True),  # and < rescue_hard_ratio, checked below
    "maker_rebate_bps": (0.0, False, MAX_BPS, False),
    "taker_fee_bps": (0.0, False, MAX_BPS, False),
    "rescue_slippage_bps": (0.0, False, MAX_BPS, False),
    "markout_ms": (0.0, False, None, False),
    "latency_sigma": (0.0, False, 3.0, False),    # lognormal sigma: beyond 3 latencies overflow to inf
    "latency_inflight_ms": (0.0, False, None, False),
    "latency_rate_ms": (0.0, False, None, False),
    "rate_tau_ms": (0.0, True, None, False),      # divides
    "token_burst_s": (0.0, False, None, False),
    "guard_tick_ms": (0.0, True, None, False),
}
_GUARDS: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "latency_soft_ms": (0.0, True, None, False),
    "latency_hard_ms": (0.0, True, None, False),  # and > latency_soft_ms, checked below
    "latency_spread_add_bps": (0.0, False, MAX_BPS, False),
    "freeze_open_after_ms": (0.0, False, None, False),
    "freeze_close_after_ms": (0.0, False, None, False),
    "freeze_min_duration_ms": (0.0, False, None, False),
    "p95_window_ms": (0.0, True, None, False),
}


def _number(v: Any, where: object, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"expected a finite number, got {v!r}", path=where, field=field)
    return float(v)


def _check_table(cfg: Mapping[str, Any], section: str, spec: dict, where: object) -> dict[str, float]:
    table = cfg.get(section)
    if not isinstance(table, Mapping):
        raise ConfigError("expected a table", path=where, field=section)
    out = {}
    for key, (lo, lo_strict, hi, hi_strict) in spec.items():
        field = f"{section}.{key}"
        if key not in table:
            raise ConfigError("missing", path=where, field=field)
        v = _number(table[key], where, field)
        if lo is not None and (v <= lo if lo_strict else v < lo):
            raise ConfigError(f"expected a number {'>' if lo_strict else '>='} {lo:g}, got {v:g}", path=where,
                              field=field)
        if hi is not None and (v >= hi if hi_strict else v > hi):
            raise ConfigError(f"expected a number {'<' if hi_strict else '<='} {hi:g}, got {v:g}", path=where,
                              field=field)
        out[key] = v
    return out


def validate_sim_config(cfg: Mapping[str, Any], src: object = "<config>") -> None:
    """Raise ``ConfigError`` naming the field (``sim.tick``...) for a value the simulator cannot use."""
    where = src if src is not None else "<config>"
    s = _check_table(cfg, "sim", _SIM, where)
    if not isinstance(cfg["sim"].get("runtime_guards"), bool):
        raise ConfigError(f"expected true or false, got {cfg['sim'].get('runtime_guards')!r}", path=where,
                          field="sim.runtime_guards")
    if s["tick"] >= s["mid0"]:
        raise ConfigError(f"expected a tick < sim.mid0 ({s['mid0']:g}), got {s['tick']:g}", path=where,
                          field="sim.tick")
    if s["rescue_target_ratio"] >= s["rescue_hard_ratio"]:
        raise ConfigError(f"expected a hedge target below sim.rescue_hard_ratio ({s['rescue_hard_ratio']:g}), "
                          f"got {s['rescue_target_ratio']:g}", path=where, field="sim.rescue_target_ratio")
    g = _check_table(cfg, "runtime_guards", _GUARDS, where)
    if g["latency_soft_ms"] >= g["latency_hard_ms"]:
        raise ConfigError(f"expected latency_soft_ms < latency_hard_ms ({g['latency_hard_ms']:g}), got "
                          f"{g['latency_soft_ms']:g}", path=where, field="runtime_guards.latency_soft_ms")
    # the compiled loop has MAX_IN_FLIGHT in-flight slots: the registry must not allow more
    reg = registry_from_config(cfg, src=where)
    if "concurrency_limit" in reg and reg["concurrency_limit"].max > MAX_IN_FLIGHT:
        raise ConfigError(f"the simulator holds at most {MAX_IN_FLIGHT} orders in flight, got max "
                          f"{reg['concurrency_limit'].max:g}", path=where, field="params.concurrency_limit.max")


_GUARD_INTS = ("velocity_window", "cooldown_iters", "oscillation_window", "oscillation_freeze_iters",
               "steady_state_iters")
_GUARD_FRACS = ("velocity_max_frac_per_iter", "velocity_max_frac_per_window", "cooldown_large_frac")


def validate_tuning_config(cfg: Mapping[str, Any], src: object = "<config>") -> None:
    """Check ``[tuner]`` and ``[guards]``: rule deltas name registry parameters with numbers; guard
    windows are whole numbers >= 0; fractions are > 0. ConfigError names the field."""
    reg = registry_from_config(cfg, src=src)
    for key, val in cfg["tuner"].items():
        if key.endswith("_deltas"):
            if not isinstance(val, Mapping):
                raise ConfigError("expected a table of parameter = delta", path=src, field=f"tuner.{key}")
            for k, d in val.items():
                if k not in reg:
                    raise ConfigError("unknown parameter, expected one of: " + ", ".join(reg), path=src,
                                      field=f"tuner.{key}.{k}")
                if finite(d) is None:
                    raise ConfigError(f"expected a number, got {d!r}", path=src, field=f"tuner.{key}.{k}")
        elif finite(val) is None:
            raise ConfigError(f"expected a number, got {val!r}", path=src, field=f"tuner.{key}")
    g = cfg["guards"]
    for k in _GUARD_INTS:
        if isinstance(g[k], bool) or not isinstance(g[k], int) or g[k] < 0:
            raise ConfigError(f"expected a whole number >= 0, got {g[k]!r}", path=src, field=f"guards.{k}")
    for k in _GUARD_FRACS:
        if finite(g[k]) is None or g[k] <= 0:
            raise ConfigError(f"expected a number > 0, got {g[k]!r}", path=src, field=f"guards.{k}")
