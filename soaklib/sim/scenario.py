"""Scenario files: TOML market descriptions shipped in ``soaklib/sim/scenarios``.

``_base.toml`` defines the market constants and the regimes; a scenario file may override any of
them and lists its schedule as ``[[segments]]``. The schedule repeats (cyclic), so any window
``[start_s, start_s + duration_s)`` maps onto it. Validation errors name the file and the field.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import require_finite
from soaklib.sim import layout as E

REGIME_KEYS = {  # key -> column in the regime table
    "vol_bps_per_sqrt_s": E.R_VOL, "drift_bps_per_s": E.R_DRIFT, "jump_rate_per_h": E.R_JUMP_RATE,
    "jump_bps": E.R_JUMP_BPS, "informed_share": E.R_INF_SHARE, "informed_impact_bps": E.R_INF_BPS,
    "order_rate_per_s": E.R_RATE, "kappa_per_bps": E.R_KAPPA, "latency_mult": E.R_LAT_MULT,
    "market_half_spread_bps": E.R_MKT_HS,
}
_POSITIVE = {"order_rate_per_s", "kappa_per_bps", "latency_mult"}
# Moves of the mid (and spreads) beyond 10 % per step/second make no sense for a market-making
# scenario and can drive the mid to <= 0 (the engine also stops with a ConfigError if it ever does).
MAX_MOVE_BPS = 1000.0
_BOUNDED_BPS = {"vol_bps_per_sqrt_s", "drift_bps_per_s", "jump_bps", "informed_impact_bps",
                "market_half_spread_bps"}
MAX_CRASH_BPS = 10000.0  # a crash of 100 % or more leaves no price (refused: flash_crash_bps >= this)
MARKET_KEYS = ("base_half_spread_bps", "latency_base_ms")
SEGMENT_KEYS = {
    "duration_s": None, "regimes": None, "switch_rate_per_h": 0.0, "latency_spike_rate_per_h": 0.0,
    "latency_spike_s": 0.0, "latency_spike_mult": 1.0, "reject_prob": 0.0, "flash_crash_at_s": -1.0,
    "flash_crash_bps": 0.0, "flash_crash_recover": 0.0, "flash_crash_recover_s": 0.0, "label": "",
}
_TOP_KEYS = {"name", "description", "market", "regimes", "segments"}


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    description: str
    market: dict[str, float]
    regime_names: tuple[str, ...]
    regimes: np.ndarray            # n_regimes x N_RCOL
    segments: tuple[dict[str, Any], ...]
    cycle_s: float

    def window(self, start_s: float, duration_s: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Segment table (ms, relative to the window start) covering the window, and its faults."""
        rows, faults = [], []
        t = 0.0
        pos = start_s % self.cycle_s
        end = duration_s
        idx, acc = 0, 0.0
        while acc + self.segments[idx]["duration_s"] <= pos:
            acc += self.segments[idx]["duration_s"]
            idx = (idx + 1) % len(self.segments)
        off = pos - acc  # seconds into segment idx
        while t < end - 1e-9:
            seg = self.segments[idx]
            span = min(seg["duration_s"] - off, end - t)
            mask = 0
            for r in seg["regimes"]:
                mask |= 1 << self.regime_names.index(r)
            row = np.zeros(E.N_SCOL)
            row[E.S_START] = t * 1000.0
            row[E.S_END] = (t + span) * 1000.0
            row[E.S_MASK] = mask
            row[E.S_SWITCH] = seg["switch_rate_per_h"]
            row[E.S_SPIKE_RATE] = seg["latency_spike_rate_per_h"]
            row[E.S_SPIKE_DUR] = seg["latency_spike_s"] * 1000.0
            row[E.S_SPIKE_MULT] = seg["latency_spike_mult"]
            row[E.S_REJECT] = seg["reject_prob"]
            crash = seg["flash_crash_at_s"]
            row[E.S_CRASH_AT] = -1.0
            if crash >= 0 and off <= crash < off + span:
                row[E.S_CRASH_AT] = (t + crash - off) * 1000.0
                row[E.S_CRASH_BPS] = seg["flash_crash_bps"]
                row[E.S_CRASH_REC] = seg["flash_crash_recover"]
                row[E.S_CRASH_REC_MS] = seg["flash_crash_recover_s"] * 1000.0
            row[E.S_INIT] = self.regime_names.index(seg["regimes"][0])
            rows.append(row)
            f = []
            if seg["latency_spike_rate_per_h"] > 0 and seg["latency_spike_mult"] != 1.0:
                f.append({"kind": "latency_spikes", "rate_per_h": seg["latency_spike_rate_per_h"],
                          "duration_s": seg["latency_spike_s"], "mult": seg["latency_spike_mult"]})
            if seg["reject_prob"] > 0:
                f.append({"kind": "rejects", "prob": seg["reject_prob"]})
            if row[E.S_CRASH_AT] >= 0:
                f.append({"kind": "flash_crash", "at_s": round(t + crash - off, 3),
                          "bps": seg["flash_crash_bps"], "recover": seg["flash_crash_recover"]})
            for x in f:
                x.update(start_s=round(start_s + t, 3), end_s=round(start_s + t + span, 3))
            faults.extend(f)
            t += span
            off = 0.0
            idx = (idx + 1) % len(self.segments)
        return np.array(rows), faults


def _bounded(v: Any, path: str, field: str, *, lo: float | None = None, hi: float | None = None,
             positive: bool = False) -> float:
    """A scenario number within its range (ConfigError naming the scenario file and field)."""
    v = require_finite(v, path=path, field=field, expected="a number")
    if positive and v <= 0:
        raise ConfigError(f"expected a number > 0, got {v}", path=path, field=field)
    if lo is not None and v < lo:
        raise ConfigError(f"expected a number >= {lo}, got {v}", path=path, field=field)
    if hi is not None and v > hi:
        raise ConfigError(f"expected a number <= {hi}, got {v}", path=path, field=field)
    return v


def _read(path: Path | Any, shown: str) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError("scenario file not found", path=shown) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed scenario TOML: {exc}", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario: {exc}", path=shown) from None


def shipped() -> list[str]:
    """Names of the scenarios shipped with soaklib."""
    d = resources.files("soaklib.sim").joinpath("scenarios")
    return sorted(x.name[:-5] for x in d.iterdir() if x.name.endswith(".toml") and not x.name.startswith("_"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``default``, ``calm``...) or a TOML file path."""
    d = resources.files("soaklib.sim").joinpath("scenarios")
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or s.endswith(".toml") or "/" in s:
        p = Path(s)
        shown = str(p)
        if not p.is_file():
            raise ConfigError("scenario file not found", path=shown, field="scenario")
        res: Any = p
    else:
        res = d.joinpath(f"{s}.toml")
        shown = f"scenario '{s}'"
        if s.startswith("_") or not res.is_file():
            raise ConfigError(f"unknown scenario '{s}', expected a .toml file or one of: {', '.join(shipped())}",
                              field="scenario")
        shown = f"soaklib/sim/scenarios/{s}.toml"
    base = _read(d.joinpath("_base.toml"), "soaklib/sim/scenarios/_base.toml")
    user = _read(res, shown)
    for k in user:
        if k not in _TOP_KEYS:
            raise ConfigError(f"unknown key, expected one of: {', '.join(sorted(_TOP_KEYS))}", path=shown, field=k)
    market = copy.deepcopy(base["market"])
    um = user.get("market", {})
    if not isinstance(um, dict):
        raise ConfigError("expected a table", path=shown, field="market")
    for k, v in um.items():
        if k not in MARKET_KEYS:
            raise ConfigError(f"unknown key, expected one of: {', '.join(MARKET_KEYS)}", path=shown, field=f"market.{k}")
        market[k] = v
    for k in MARKET_KEYS:
        market[k] = _bounded(market[k], shown, f"market.{k}", positive=True,
                         hi=MAX_MOVE_BPS if k == "base_half_spread_bps" else None)
    regimes = copy.deepcopy(base["regimes"])
    ur = user.get("regimes", {})
    if not isinstance(ur, dict):
        raise ConfigError("expected a table of regimes", path=shown, field="regimes")
    for rn, spec in ur.items():
        if not isinstance(spec, dict):
            raise ConfigError("expected a table", path=shown, field=f"regimes.{rn}")
        tgt = regimes.setdefault(rn, {})
        for k, v in spec.items():
            if k not in REGIME_KEYS:
                raise ConfigError(f"unknown key, expected one of: {', '.join(REGIME_KEYS)}", path=shown,
                                  field=f"regimes.{rn}.{k}")
            tgt[k] = v
    names = tuple(regimes)
    if len(names) > 30:
        raise ConfigError("at most 30 regimes", path=shown, field="regimes")
    table = np.zeros((len(names), E.N_RCOL))
    for i, rn in enumerate(names):
        for k, col in REGIME_KEYS.items():
            if k not in regimes[rn]:
                raise ConfigError(f"missing '{k}'", path=shown, field=f"regimes.{rn}")
            drift = k == "drift_bps_per_s"
            table[i, col] = _bounded(regimes[rn][k], shown, f"regimes.{rn}.{k}",
                                 lo=-MAX_MOVE_BPS if drift else 0.0, hi=MAX_MOVE_BPS if k in _BOUNDED_BPS else None,
                                 positive=k in _POSITIVE)
        if table[i, E.R_INF_SHARE] > 1:
            raise ConfigError("expected a share in [0, 1]", path=shown, field=f"regimes.{rn}.informed_share")
    segs_in = user.get("segments")
    if not isinstance(segs_in, list) or not segs_in:
        raise ConfigError("expected a non-empty array of [[segments]] tables", path=shown, field="segments")
    segs = []
    for i, sg in enumerate(segs_in):
        f = f"segments[{i}]"
        if not isinstance(sg, dict):
            raise ConfigError("expected a table", path=shown, field=f)
        for k in sg:
            if k not in SEGMENT_KEYS:
                raise ConfigError(f"unknown key, expected one of: {', '.join(SEGMENT_KEYS)}", path=shown, field=f"{f}.{k}")
        out = {k: v for k, v in SEGMENT_KEYS.items()}
        out.update(sg)
        if out["duration_s"] is None:
            raise ConfigError("missing 'duration_s'", path=shown, field=f"{f}.duration_s")
        out["duration_s"] = _bounded(out["duration_s"], shown, f"{f}.duration_s", positive=True)
        rg = out["regimes"]
        if isinstance(rg, str):
            rg = [rg]
        if not isinstance(rg, list) or not rg or not all(isinstance(x, str) for x in rg):
            raise ConfigError("expected a regime name or a non-empty list of names", path=shown, field=f"{f}.regimes")
        for x in rg:
            if x not in names:
                raise ConfigError(f"unknown regime '{x}', expected one of: {', '.join(names)}", path=shown,
                                  field=f"{f}.regimes")
        out["regimes"] = rg
        for k in ("switch_rate_per_h", "latency_spike_rate_per_h", "latency_spike_s", "flash_crash_bps",
                  "flash_crash_recover_s"):
            out[k] = _bounded(out[k], shown, f"{f}.{k}", lo=0.0)
        if out["flash_crash_bps"] >= MAX_CRASH_BPS:
            raise ConfigError(f"expected a crash < {MAX_CRASH_BPS:g} bps (100 % of the price), got "
                              f"{out['flash_crash_bps']:g}", path=shown, field=f"{f}.flash_crash_bps")
        out["latency_spike_mult"] = _bounded(out["latency_spike_mult"], shown, f"{f}.latency_spike_mult", positive=True)
        out["reject_prob"] = _bounded(out["reject_prob"], shown, f"{f}.reject_prob", lo=0.0, hi=1.0)
        out["flash_crash_recover"] = _bounded(out["flash_crash_recover"], shown, f"{f}.flash_crash_recover", lo=0.0, hi=1.0)
        out["flash_crash_at_s"] = _bounded(out["flash_crash_at_s"], shown, f"{f}.flash_crash_at_s", lo=-1.0)
        if out["flash_crash_at_s"] >= out["duration_s"]:
            raise ConfigError("expected a time inside the segment", path=shown, field=f"{f}.flash_crash_at_s")
        if out["latency_spike_rate_per_h"] > 0 and out["latency_spike_s"] <= 0:
            raise ConfigError("expected latency_spike_s > 0 when spikes are enabled", path=shown,
                              field=f"{f}.latency_spike_s")
        if not isinstance(out["label"], str):
            raise ConfigError("expected a string", path=shown, field=f"{f}.label")
        segs.append(out)
    nm = user.get("name", Path(shown).stem if "/" in shown else s)
    desc = user.get("description", "")
    if not isinstance(nm, str) or not isinstance(desc, str):
        raise ConfigError("expected strings", path=shown, field="name/description")
    return Scenario(name=nm, path=shown, description=desc, market=market, regime_names=names, regimes=table,
                    segments=tuple(segs), cycle_s=sum(x["duration_s"] for x in segs))
