"""Scenario files of the hftbacktest engine: TOML market descriptions (``soaklib/sim/hbt/scenarios``).

``_base.toml`` holds the market constants (``[market]``) and the regimes (``[regimes.*]``); a
scenario may override any of them and lists its schedule as ``[[segments]]``, which repeats
(cyclic), so window ``n`` of ``duration_s`` maps onto ``[n*duration_s, (n+1)*duration_s)``.
Every number is checked here; an error names the file and the field (``ConfigError``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite

SCENARIO_DIR = Path(__file__).with_name("scenarios")
SHOWN_DIR = "soaklib/sim/hbt/scenarios"  # how a shipped scenario is named in an error message

# regime key -> (column, lower bound, lower strict, upper bound); columns are the generator's layout
REGIME_KEYS: dict[str, tuple[int, float | None, bool, float | None]] = {
    "vol_bps_per_sqrt_s": (0, 0.0, False, 1000.0),
    "drift_bps_per_s": (1, -1000.0, False, 1000.0),
    "jump_rate_per_h": (2, 0.0, False, None),
    "jump_bps": (3, 0.0, False, 1000.0),
    "vol_of_vol": (4, 0.0, False, 2.0),
    "vol_halflife_s": (5, 0.0, True, None),
    "trade_rate_per_s": (6, 0.0, False, 10000.0),
    "trade_size_mean": (7, 0.0, True, None),
    "informed_share": (8, 0.0, False, 1.0),
    "sweep_share": (9, 0.0, False, 1.0),
    "sweep_depth_bps": (10, 0.0, True, 1000.0),
    "depth_qty": (11, 0.0, True, None),
    "depth_updates_per_s": (12, 0.0, False, 100000.0),
    "spread_levels": (13, 1.0, False, 1000.0),
    "latency_mult": (14, 0.0, True, None),
}
N_RCOL = 15
(R_VOL, R_DRIFT, R_JUMP_RATE, R_JUMP_BPS, R_VOV, R_VOL_HL, R_TRADE_RATE, R_TRADE_SIZE, R_INF, R_SWEEP,
 R_SWEEP_BPS, R_DEPTH, R_DEPTH_RATE, R_SPREAD_LV, R_LAT_MULT) = range(N_RCOL)

# market key -> (lower bound, lower strict, upper bound, integer)
MARKET_KEYS: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "mid0": (0.0, True, None, False),
    "tick": (0.0, True, None, False),
    "lot": (0.0, True, None, False),
    "level_gap_ticks": (1.0, False, 10000.0, True),
    "levels": (1.0, False, 200.0, True),
    "depth_slope": (0.0, False, 100.0, False),
    "depth_sigma": (0.0, False, 3.0, False),
    "base_half_spread_bps": (0.0, True, 1000.0, False),
    "mid_step_ms": (1.0, False, 60000.0, False),
    "informed_horizon_s": (0.0, False, 3600.0, False),
    "feed_latency_ms": (0.0, False, 10000.0, False),
    "feed_jitter_ms": (0.0, False, 10000.0, False),
    "latency_base_ms": (0.0, True, 60000.0, False),
    "latency_sigma": (0.0, False, 3.0, False),
    "latency_halflife_s": (0.0, True, None, False),
    "latency_sample_ms": (1.0, False, 60000.0, False),
    "latency_entry_share": (0.0, True, 1.0, False),
}

# segment table columns (ms relative to the window start)
(S_START, S_END, S_MASK, S_SWITCH, S_SPIKE_RATE, S_SPIKE_DUR, S_SPIKE_MULT, S_REJECT, S_CRASH_AT,
 S_CRASH_BPS, S_CRASH_REC, S_CRASH_REC_MS, S_INIT) = range(13)
N_SCOL = 13
SEGMENT_KEYS = {
    "duration_s": None, "regimes": None, "switch_rate_per_h": 0.0, "latency_spike_rate_per_h": 0.0,
    "latency_spike_s": 0.0, "latency_spike_mult": 1.0, "reject_prob": 0.0, "flash_crash_at_s": -1.0,
    "flash_crash_bps": 0.0, "flash_crash_recover": 0.0, "flash_crash_recover_s": 0.0, "label": "",
}
_TOP_KEYS = {"name", "description", "market", "regimes", "segments"}
MAX_CRASH_BPS = 10000.0


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
    content_hash: str              # sha256 of the resolved content (the cache key's scenario part)

    def regime_dict(self, name: str) -> dict[str, float]:
        i = self.regime_names.index(name)
        return {k: float(self.regimes[i, c[0]]) for k, c in REGIME_KEYS.items()}

    def window(self, start_s: float, duration_s: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Segment table (ms, relative to the window start) covering the window, and its faults."""
        rows, faults = [], []
        t = 0.0
        pos = start_s % self.cycle_s
        idx, acc = 0, 0.0
        while acc + self.segments[idx]["duration_s"] <= pos:
            acc += self.segments[idx]["duration_s"]
            idx = (idx + 1) % len(self.segments)
        off = pos - acc
        while t < duration_s - 1e-9:
            seg = self.segments[idx]
            span = min(seg["duration_s"] - off, duration_s - t)
            mask = 0
            for r in seg["regimes"]:
                mask |= 1 << self.regime_names.index(r)
            row = np.zeros(N_SCOL)
            row[S_START] = t * 1000.0
            row[S_END] = (t + span) * 1000.0
            row[S_MASK] = mask
            row[S_SWITCH] = seg["switch_rate_per_h"]
            row[S_SPIKE_RATE] = seg["latency_spike_rate_per_h"]
            row[S_SPIKE_DUR] = seg["latency_spike_s"] * 1000.0
            row[S_SPIKE_MULT] = seg["latency_spike_mult"]
            row[S_REJECT] = seg["reject_prob"]
            crash = seg["flash_crash_at_s"]
            row[S_CRASH_AT] = -1.0
            if crash >= 0 and off <= crash < off + span:
                row[S_CRASH_AT] = (t + crash - off) * 1000.0
                row[S_CRASH_BPS] = seg["flash_crash_bps"]
                row[S_CRASH_REC] = seg["flash_crash_recover"]
                row[S_CRASH_REC_MS] = seg["flash_crash_recover_s"] * 1000.0
            row[S_INIT] = self.regime_names.index(seg["regimes"][0])
            rows.append(row)
            f = []
            if seg["latency_spike_rate_per_h"] > 0 and seg["latency_spike_mult"] != 1.0:
                f.append({"kind": "latency_spikes", "rate_per_h": seg["latency_spike_rate_per_h"],
                          "duration_s": seg["latency_spike_s"], "mult": seg["latency_spike_mult"]})
            if seg["reject_prob"] > 0:
                f.append({"kind": "rejects", "prob": seg["reject_prob"]})
            if row[S_CRASH_AT] >= 0:
                f.append({"kind": "flash_crash", "at_s": round(start_s + t + crash - off, 3),
                          "bps": seg["flash_crash_bps"], "recover": seg["flash_crash_recover"]})
            for x in f:
                x.update(start_s=round(start_s + t, 3), end_s=round(start_s + t + span, 3))
            faults.extend(f)
            t += span
            off = 0.0
            idx = (idx + 1) % len(self.segments)
        return np.array(rows), faults


def _num(v: Any, path: str, field: str, lo: float | None = None, lo_strict: bool = False,
         hi: float | None = None, integer: bool = False) -> float:
    f = finite(v)
    if f is None:
        raise ConfigError(f"expected a number, got {v!r}", path=path, field=field)
    v = f
    if lo is not None and (v <= lo if lo_strict else v < lo):
        raise ConfigError(f"expected a number {'>' if lo_strict else '>='} {lo:g}, got {v:g}", path=path, field=field)
    if hi is not None and v > hi:
        raise ConfigError(f"expected a number <= {hi:g}, got {v:g}", path=path, field=field)
    if integer and v != int(v):
        raise ConfigError(f"expected a whole number, got {v:g}", path=path, field=field)
    return v


def _read(path: Path, shown: str) -> dict:
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError("scenario file not found", path=shown) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed scenario TOML: {exc}", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario: {exc}", path=shown) from None


def shipped() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml") if not p.name.startswith("_"))


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """A shipped scenario by name (``default``, ``calm``...) or a TOML file path."""
    if isinstance(name_or_path, Scenario):
        return name_or_path
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or s.endswith(".toml") or "/" in s:
        p = Path(s)
        shown = str(p)
        if not p.is_file():
            raise ConfigError("scenario file not found", path=shown, field="scenario")
    else:
        p = SCENARIO_DIR / f"{s}.toml"
        if s.startswith("_") or not p.is_file():
            raise ConfigError(f"unknown scenario '{s}', expected a .toml file or one of: {', '.join(shipped())}",
                              field="scenario")
        shown = f"{SHOWN_DIR}/{s}.toml"
    base = _read(SCENARIO_DIR / "_base.toml", f"{SHOWN_DIR}/_base.toml")
    user = _read(p, shown)
    for k in user:
        if k not in _TOP_KEYS:
            raise ConfigError(f"unknown key, expected one of: {', '.join(sorted(_TOP_KEYS))}", path=shown, field=k)
    market = copy.deepcopy(base["market"])
    um = user.get("market", {})
    if not isinstance(um, dict):
        raise ConfigError("expected a table", path=shown, field="market")
    for k, v in um.items():
        if k not in MARKET_KEYS:
            raise ConfigError(f"unknown key, expected one of: {', '.join(MARKET_KEYS)}", path=shown,
                              field=f"market.{k}")
        market[k] = v
    for k, (lo, strict, hi, integer) in MARKET_KEYS.items():
        if k not in market:
            raise ConfigError("missing", path=shown, field=f"market.{k}")
        market[k] = _num(market[k], shown, f"market.{k}", lo, strict, hi, integer)
    if market["tick"] >= market["mid0"]:
        raise ConfigError(f"expected a tick < market.mid0 ({market['mid0']:g})", path=shown, field="market.tick")
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
    if not 1 <= len(names) <= 30:
        raise ConfigError("expected 1 to 30 regimes", path=shown, field="regimes")
    table = np.zeros((len(names), N_RCOL))
    for i, rn in enumerate(names):
        for k, (col, lo, strict, hi) in REGIME_KEYS.items():
            if k not in regimes[rn]:
                raise ConfigError(f"missing '{k}'", path=shown, field=f"regimes.{rn}")
            table[i, col] = _num(regimes[rn][k], shown, f"regimes.{rn}.{k}", lo, strict, hi,
                                 integer=k == "spread_levels")
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
                raise ConfigError(f"unknown key, expected one of: {', '.join(SEGMENT_KEYS)}", path=shown,
                                  field=f"{f}.{k}")
        out = dict(SEGMENT_KEYS)
        out.update(sg)
        if out["duration_s"] is None:
            raise ConfigError("missing 'duration_s'", path=shown, field=f"{f}.duration_s")
        out["duration_s"] = _num(out["duration_s"], shown, f"{f}.duration_s", 0.0, True)
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
            out[k] = _num(out[k], shown, f"{f}.{k}", 0.0)
        if out["flash_crash_bps"] >= MAX_CRASH_BPS:
            raise ConfigError(f"expected a crash < {MAX_CRASH_BPS:g} bps", path=shown, field=f"{f}.flash_crash_bps")
        out["latency_spike_mult"] = _num(out["latency_spike_mult"], shown, f"{f}.latency_spike_mult", 0.0, True)
        out["reject_prob"] = _num(out["reject_prob"], shown, f"{f}.reject_prob", 0.0, False, 1.0)
        out["flash_crash_recover"] = _num(out["flash_crash_recover"], shown, f"{f}.flash_crash_recover",
                                          0.0, False, 1.0)
        out["flash_crash_at_s"] = _num(out["flash_crash_at_s"], shown, f"{f}.flash_crash_at_s", -1.0)
        if out["flash_crash_at_s"] >= out["duration_s"]:
            raise ConfigError("expected a time inside the segment", path=shown, field=f"{f}.flash_crash_at_s")
        if out["latency_spike_rate_per_h"] > 0 and out["latency_spike_s"] <= 0:
            raise ConfigError("expected latency_spike_s > 0 when spikes are enabled", path=shown,
                              field=f"{f}.latency_spike_s")
        if not isinstance(out["label"], str):
            raise ConfigError("expected a string", path=shown, field=f"{f}.label")
        segs.append(out)
    nm = user.get("name", p.stem)
    desc = user.get("description", "")
    if not isinstance(nm, str) or not isinstance(desc, str):
        raise ConfigError("expected strings", path=shown, field="name/description")
    # resolved content, not file bytes: a comment edit keeps the cache, a value edit invalidates it
    content = json.dumps({"market": market, "regimes": {n: regimes[n] for n in names}, "segments": segs},
                         sort_keys=True, default=float)
    return Scenario(name=nm, path=shown, description=desc, market=market, regime_names=names, regimes=table,
                    segments=tuple(segs), cycle_s=sum(x["duration_s"] for x in segs),
                    content_hash=hashlib.sha256(content.encode()).hexdigest())
