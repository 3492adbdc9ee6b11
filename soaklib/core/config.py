"""Configuration: defaults from ``defaults.toml`` (the one home of numbers) merged with a user TOML.

A user file may override any key that exists in the defaults (or add entries to tables that
are open maps, such as ``params``); anything else is refused with the file and the key named.
"""
from __future__ import annotations

import copy
import math
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from soaklib.core.errors import ConfigError
from soaklib.core.goals import goals_from_config
from soaklib.core.params import registry_from_config
from soaklib.core.sections import validate_sim_config, validate_tuning_config

# tables whose keys are user-extensible (new goals, new parameters)
_OPEN_TABLES = {"goals", "params"}


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    text = resources.files("soaklib.core").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def defaults() -> dict[str, Any]:
    """A fresh copy of the built-in defaults."""
    return copy.deepcopy(_defaults())


def _replace_whole(dotted: str) -> bool:
    """Tables a user file replaces rather than merges: a tuner rule's parameter→delta map, so a rule
    can move other registry parameters or drop one (names are checked by validate_tuning_config)."""
    return dotted.startswith("tuner.") and dotted.endswith("_deltas")


def _merge(base: dict, over: dict, path: str, src: Path) -> None:
    for key, val in over.items():
        dotted = f"{path}.{key}" if path else key
        if key in base and isinstance(base[key], dict) and _replace_whole(dotted):
            if not isinstance(val, dict):
                raise ConfigError(f"expected a table, got {type(val).__name__}", path=src, field=dotted)
            base[key] = val
            continue
        if key not in base:
            if path.split(".")[-1] in _OPEN_TABLES or path in _OPEN_TABLES:
                base[key] = val
                continue
            raise ConfigError("unknown key, expected one of: " + ", ".join(sorted(base)), path=src, field=dotted)
        cur = base[key]
        if isinstance(cur, dict):
            if not isinstance(val, dict):
                raise ConfigError(f"expected a table, got {type(val).__name__}", path=src, field=dotted)
            _merge(cur, val, dotted, src)
        elif isinstance(cur, bool):
            if not isinstance(val, bool):
                raise ConfigError(f"expected true or false, got {val!r}", path=src, field=dotted)
            base[key] = val
        elif isinstance(cur, (int, float)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
                raise ConfigError(f"expected a finite number, got {val!r}", path=src, field=dotted)
            base[key] = type(cur)(val) if isinstance(cur, float) else val
        elif isinstance(cur, str):
            if not isinstance(val, str):
                raise ConfigError(f"expected a string, got {val!r}", path=src, field=dotted)
            base[key] = val
        else:
            base[key] = val


def load_config(path: str | Path | None = None, *, overrides: dict | None = None) -> dict[str, Any]:
    """Effective configuration: defaults, then the TOML file at ``path``, then ``overrides``.

    Returns a plain nested dict (it is snapshotted into run.json as is). Validation of the
    individual sections (goals, params) is done here so every consumer can trust it.
    """
    cfg = defaults()
    if path is not None:
        p = Path(path)
        try:
            user = tomllib.loads(p.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError("config file not found", path=p) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config: {exc}", path=p) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", path=p) from None
        _merge(cfg, user, "", p)
    if overrides:
        _merge(cfg, overrides, "", Path("<overrides>"))
    validate_config(cfg, path)
    return cfg


def validate_config(cfg: dict[str, Any], src: str | Path | None = None) -> None:
    where = src if src is not None else "<config>"
    goals_from_config(cfg, src=where)
    if cfg["run"]["on_failure"] not in ("continue", "stop"):
        raise ConfigError("expected 'continue' or 'stop'", path=where, field="run.on_failure")
    for field, lo, strict in (("run.iterations", 1, False), ("run.duration_s", 0, True),
                              ("run.iteration_timeout_s", 0, True), ("run.max_failed_iterations", 0, False),
                              ("run.seed", 0, False), ("report.last_n", 1, False)):
        sec, key = field.split(".")
        v = cfg[sec][key]
        if v < lo or (strict and v == lo):
            raise ConfigError(f"expected a number {'>' if strict else '>='} {lo}, got {v!r}", path=where, field=field)
    thr = cfg["verify"]["threshold"]
    if not 0.0 <= thr <= 1.0:
        raise ConfigError(f"expected a ratio in [0, 1], got {thr!r}", path=where, field="verify.threshold")
    if cfg["verify"]["abs_tolerance"] < 0:
        raise ConfigError("expected a number >= 0", path=where, field="verify.abs_tolerance")
    # the parameter registry validates its own table (bounds, steps)
    registry_from_config(cfg, src=where)
    # tuner and guard constants are checked up front, not at the first decision mid-run
    validate_tuning_config(cfg, src=where)
    # the simulator's own sections ([sim], [runtime_guards]) and the bounds its loop depends on
    validate_sim_config(cfg, src=where)


def run_config(run: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The configuration every command judges ``run`` with: ``path`` when given, else the config
    the run was made with (its ``run.json`` snapshot, over today's defaults), else the defaults.

    One rule for gate, verify, report, bundle and metrics, so they never disagree about a run.
    """
    if path is not None:
        return load_config(path)
    manifest = getattr(run, "manifest", None) or {}
    snap = manifest.get("config") if isinstance(manifest, dict) else None
    if not isinstance(snap, dict):
        return load_config()
    cfg = defaults()
    src = Path(getattr(run, "path", ".")) / "run.json"
    _merge(cfg, snap, "", src)
    validate_config(cfg, src)
    return cfg
