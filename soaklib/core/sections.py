"""Config sections a component checks on its own (``[sim]``, ``[runtime_guards]``, ``[tuner]``,
``[guards]``): the section against the config schema (types, ranges, known keys), then the rules
between fields and the registry bounds the compiled loop depends on; and the rules between the other
sections (``validate_cross_sections``: goal KPIs, run length, canary phases).

Called at the end of ``soaklib.core.config.validate_config`` (so ``soak config validate`` and every
command refuse a bad value up front, naming the field) and by ``simulate`` / ``decide`` for a config
passed in directly. Deliberately imports neither numba nor the engine: loading a config must stay cheap.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soaklib.core.errors import ConfigError
from soaklib.core.kpis import KPI
from soaklib.core.params import registry_from_config
from soaklib.core.schema import check as check_schema

# Orders in flight the compiled loop has slots for (soaklib/sim/engine.py ``_INFL``; a test keeps
# the two equal). The registry must not let the tuner ask for more.
MAX_IN_FLIGHT = 64


def check_section(cfg: Mapping[str, Any], section: str, src: object = "<config>") -> Any:
    """``cfg[section]`` checked against its part of the config schema; ConfigError names the field."""
    if section not in cfg:
        raise ConfigError("missing", path=src, field=section)
    return check_schema("config", cfg[section], path=src, error=ConfigError, section=section, finite=True)


def validate_sim_config(cfg: Mapping[str, Any], src: object = "<config>") -> None:
    """Raise ``ConfigError`` naming the field (``sim.tick``...) for a value the simulator cannot use."""
    where = src if src is not None else "<config>"
    s = check_section(cfg, "sim", where)
    if s["tick"] >= s["mid0"]:
        raise ConfigError(f"expected a tick < sim.mid0 ({s['mid0']:g}), got {s['tick']:g}", path=where,
                          field="sim.tick")
    if s["rescue_target_ratio"] >= s["rescue_hard_ratio"]:
        raise ConfigError(f"expected a hedge target below sim.rescue_hard_ratio ({s['rescue_hard_ratio']:g}), "
                          f"got {s['rescue_target_ratio']:g}", path=where, field="sim.rescue_target_ratio")
    g = check_section(cfg, "runtime_guards", where)
    if g["latency_soft_ms"] >= g["latency_hard_ms"]:
        raise ConfigError(f"expected latency_soft_ms < latency_hard_ms ({g['latency_hard_ms']:g}), got "
                          f"{g['latency_soft_ms']:g}", path=where, field="runtime_guards.latency_soft_ms")
    # the compiled loop has MAX_IN_FLIGHT in-flight slots: the registry must not allow more
    reg = registry_from_config(cfg, src=where)
    if "concurrency_limit" in reg and reg["concurrency_limit"].max > MAX_IN_FLIGHT:
        raise ConfigError(f"the simulator holds at most {MAX_IN_FLIGHT} orders in flight, got max "
                          f"{reg['concurrency_limit'].max:g}", path=where, field="params.concurrency_limit.max")


def validate_tuning_config(cfg: Mapping[str, Any], src: object = "<config>") -> None:
    """Check ``[tuner]`` and ``[guards]`` against the schema, and that every rule's deltas name
    registry parameters. ConfigError names the field."""
    reg = registry_from_config(cfg, src=src)
    tuner = check_section(cfg, "tuner", src)
    check_section(cfg, "guards", src)
    for key, val in tuner.items():
        if key.endswith("_deltas"):
            for k in val:
                if k not in reg:
                    raise ConfigError("unknown parameter, expected one of: " + ", ".join(reg), path=src,
                                      field=f"tuner.{key}.{k}")


def validate_cross_sections(cfg: Mapping[str, Any], src: object = "<config>") -> None:
    """Rules between keys the schema checks one by one (run after it, so types are known):

    - a ``[goals.<kpi>]`` table names a KPI of ``core/kpis.py``: a misspelt one would make every gate
      INCONCLUSIVE instead of failing at load;
    - ``run.iterations`` stays within ``seed.max_iteration_number`` (the loader refuses larger records);
    - the canary phase lists of ``[bundle]`` have one length, traffic rises phase by phase and the
      threshold fraction never falls back."""
    for kpi in cfg["goals"]:
        if kpi not in KPI:
            raise ConfigError("unknown KPI, expected one of: " + ", ".join(KPI), path=src, field=f"goals.{kpi}")
    n, cap = cfg["run"]["iterations"], cfg["seed"]["max_iteration_number"]
    if n > cap:
        raise ConfigError(f"expected at most seed.max_iteration_number ({cap}) iterations, got {n}", path=src,
                          field="run.iterations")
    b = cfg["bundle"]
    traffic = b["phase_traffic_pct"]
    for key in ("phase_duration", "phase_fraction"):
        if len(b[key]) != len(traffic):
            raise ConfigError(f"expected {len(traffic)} entries (one per bundle.phase_traffic_pct phase), got "
                              f"{len(b[key])}", path=src, field=f"bundle.{key}")
    for i in range(1, len(traffic)):
        if not traffic[i] > traffic[i - 1]:
            raise ConfigError(f"expected more traffic than phase {i} ({traffic[i - 1]:g}%), got {traffic[i]:g}",
                              path=src, field=f"bundle.phase_traffic_pct.{i}")
        if b["phase_fraction"][i] < b["phase_fraction"][i - 1]:
            raise ConfigError(f"expected a fraction >= phase {i}'s ({b['phase_fraction'][i - 1]:g}), got "
                              f"{b['phase_fraction'][i]:g}", path=src, field=f"bundle.phase_fraction.{i}")
