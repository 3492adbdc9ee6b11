"""Scenario tables shared by both engines' loaders (``sim.scenario`` and ``sim.hbt.scenario``).

A scenario is a TOML file overlaid on its engine's ``_base.toml``: ``[market]`` constants,
``[regimes.*]`` (a new regime or an override of a base one) and a schedule of ``[[segments]]`` that
repeats (cyclic). The two engines differ only in their market and regime keys (``Bound`` specs);
reading, the overlay with its unknown-key checks, number bounds, segment validation and the window's
segment table live here once. Every error names the file and the field (``ConfigError``).
"""
from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from soaklib.core.config import read_toml as read_config_toml
from soaklib.core.errors import ConfigError
from soaklib.core.numbers import finite
from soaklib.sim import layout as L

SEGMENT_KEYS = {
    "duration_s": None, "regimes": None, "switch_rate_per_h": 0.0, "latency_spike_rate_per_h": 0.0,
    "latency_spike_s": 0.0, "latency_spike_mult": 1.0, "reject_prob": 0.0, "flash_crash_at_s": -1.0,
    "flash_crash_bps": 0.0, "flash_crash_recover": 0.0, "flash_crash_recover_s": 0.0, "label": "",
}
TOP_KEYS = {"name", "description", "market", "regimes", "segments"}
MAX_CRASH_BPS = 10000.0  # a crash of 100 % or more leaves no price (refused: flash_crash_bps >= this)
MAX_REGIMES = 30         # a segment's regime set is a bit mask in a float column


class Bound(NamedTuple):
    """The range of one scenario number: ``lo`` (excluded when ``strict``), ``hi``, whole or not."""
    lo: float | None = None
    strict: bool = False
    hi: float | None = None
    integer: bool = False


def number(v: Any, path: str, field: str, b: Bound) -> float:
    """A scenario number within its bound (ConfigError naming the scenario file and field)."""
    f = finite(v)
    if f is None:
        raise ConfigError(f"expected a number, got {v!r}", path=path, field=field)
    if b.lo is not None and (f <= b.lo if b.strict else f < b.lo):
        raise ConfigError(f"expected a number {'>' if b.strict else '>='} {b.lo:g}, got {f:g}", path=path, field=field)
    if b.hi is not None and f > b.hi:
        raise ConfigError(f"expected a number <= {b.hi:g}, got {f:g}", path=path, field=field)
    if b.integer and f != int(f):
        raise ConfigError(f"expected a whole number, got {f:g}", path=path, field=field)
    return f


def read_toml(res: Any, shown: str) -> dict:
    """A scenario file (a Path or an importlib Traversable) parsed, ``shown`` naming it in errors.
    A user's file goes through the strict TOML reader (regular file, size, nesting depth, 64-bit ints)."""
    if isinstance(res, Path):
        if not res.exists():
            raise ConfigError("scenario file not found", path=shown)
        return read_config_toml(res)
    try:
        return tomllib.loads(res.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError("scenario file not found", path=shown) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed scenario TOML: {exc}", path=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario: {exc}", path=shown) from None


def shipped_names(shipped_dir: Any) -> list[str]:
    """Names of the scenarios in ``shipped_dir`` (``_base.toml`` and other ``_`` files aside)."""
    return sorted(x.name[:-5] for x in shipped_dir.iterdir() if x.name.endswith(".toml") and not x.name.startswith("_"))


@dataclass(frozen=True)
class Tables:
    """A loaded scenario: resolved market constants, the regime table and the cyclic schedule."""
    name: str
    path: str
    description: str
    market: dict[str, float]
    regime_names: tuple[str, ...]
    regimes: np.ndarray            # n_regimes x the engine's regime columns
    segments: tuple[dict[str, Any], ...]
    cycle_s: float

    # the embedded simulator reports a flash crash's at_s from the window start (kept: its records
    # are compared byte for byte); the hbt engine from the scenario start, like start_s/end_s
    CRASH_AT_ABSOLUTE: ClassVar[bool] = True

    def window(self, start_s: float, duration_s: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Segment table (ms, relative to the window start) covering the window, and its faults."""
        rows, faults = [], []
        t = 0.0
        pos = start_s % self.cycle_s
        idx, acc = 0, 0.0
        while acc + self.segments[idx]["duration_s"] <= pos:
            acc += self.segments[idx]["duration_s"]
            idx = (idx + 1) % len(self.segments)
        off = pos - acc  # seconds into segment idx
        at0 = start_s if self.CRASH_AT_ABSOLUTE else 0.0
        while t < duration_s - 1e-9:
            seg = self.segments[idx]
            span = min(seg["duration_s"] - off, duration_s - t)
            mask = 0
            for r in seg["regimes"]:
                mask |= 1 << self.regime_names.index(r)
            row = np.zeros(L.N_SCOL)
            row[L.S_START] = t * 1000.0
            row[L.S_END] = (t + span) * 1000.0
            row[L.S_MASK] = mask
            row[L.S_SWITCH] = seg["switch_rate_per_h"]
            row[L.S_SPIKE_RATE] = seg["latency_spike_rate_per_h"]
            row[L.S_SPIKE_DUR] = seg["latency_spike_s"] * 1000.0
            row[L.S_SPIKE_MULT] = seg["latency_spike_mult"]
            row[L.S_REJECT] = seg["reject_prob"]
            crash = seg["flash_crash_at_s"]
            row[L.S_CRASH_AT] = -1.0
            if crash >= 0 and off <= crash < off + span:
                row[L.S_CRASH_AT] = (t + crash - off) * 1000.0
                row[L.S_CRASH_BPS] = seg["flash_crash_bps"]
                row[L.S_CRASH_REC] = seg["flash_crash_recover"]
                row[L.S_CRASH_REC_MS] = seg["flash_crash_recover_s"] * 1000.0
            row[L.S_INIT] = self.regime_names.index(seg["regimes"][0])
            rows.append(row)
            f = []
            if seg["latency_spike_rate_per_h"] > 0 and seg["latency_spike_mult"] != 1.0:
                f.append({"kind": "latency_spikes", "rate_per_h": seg["latency_spike_rate_per_h"],
                          "duration_s": seg["latency_spike_s"], "mult": seg["latency_spike_mult"]})
            if seg["reject_prob"] > 0:
                f.append({"kind": "rejects", "prob": seg["reject_prob"]})
            if row[L.S_CRASH_AT] >= 0:
                f.append({"kind": "flash_crash", "at_s": round(at0 + t + crash - off, 3),
                          "bps": seg["flash_crash_bps"], "recover": seg["flash_crash_recover"]})
            for x in f:
                x.update(start_s=round(start_s + t, 3), end_s=round(start_s + t + span, 3))
            faults.extend(f)
            t += span
            off = 0.0
            idx = (idx + 1) % len(self.segments)
        return np.array(rows), faults


@dataclass(frozen=True)
class Loaded:
    """What ``load`` resolved: the ``Tables`` fields plus the overlaid regime specs (by name)."""
    fields: dict[str, Any]
    regime_specs: dict[str, dict[str, Any]]


def load(name_or_path: str | Path, *, shipped_dir: Any, shown_dir: str,
         market_keys: Mapping[str, Bound], regime_keys: Mapping[str, tuple[int, Bound]], n_rcol: int) -> Loaded:
    """A shipped scenario by name (``default``, ``calm``...) or a TOML file path, overlaid on
    ``shipped_dir/_base.toml`` and checked against the engine's market and regime keys."""
    s = str(name_or_path)
    if isinstance(name_or_path, Path) or s.endswith(".toml") or "/" in s:
        res: Any = Path(s)
        shown = s
        if not res.is_file():
            raise ConfigError("scenario file not found", path=shown, field="scenario")
    else:
        res = shipped_dir.joinpath(f"{s}.toml")
        if s.startswith("_") or not res.is_file():
            raise ConfigError(f"unknown scenario '{s}', expected a .toml file or one of: "
                              f"{', '.join(shipped_names(shipped_dir))}", field="scenario")
        shown = f"{shown_dir}/{s}.toml"
    base = read_toml(shipped_dir.joinpath("_base.toml"), f"{shown_dir}/_base.toml")
    user = read_toml(res, shown)
    for k in user:
        if k not in TOP_KEYS:
            raise ConfigError(f"unknown key, expected one of: {', '.join(sorted(TOP_KEYS))}", path=shown, field=k)
    market = _market(base, user, shown, market_keys)
    specs = _overlay_regimes(base, user, shown, regime_keys)
    names = tuple(specs)
    if not 1 <= len(names) <= MAX_REGIMES:
        raise ConfigError(f"expected 1 to {MAX_REGIMES} regimes", path=shown, field="regimes")
    table = np.zeros((len(names), n_rcol))
    for i, rn in enumerate(names):
        for k, (col, b) in regime_keys.items():
            if k not in specs[rn]:
                raise ConfigError(f"missing '{k}'", path=shown, field=f"regimes.{rn}")
            table[i, col] = number(specs[rn][k], shown, f"regimes.{rn}.{k}", b)
    segs = _segments(user.get("segments"), shown, names)
    nm = user.get("name", Path(shown).stem)
    desc = user.get("description", "")
    if not isinstance(nm, str) or not isinstance(desc, str):
        raise ConfigError("expected strings", path=shown, field="name/description")
    return Loaded(fields=dict(name=nm, path=shown, description=desc, market=market, regime_names=names,
                              regimes=table, segments=tuple(segs), cycle_s=sum(x["duration_s"] for x in segs)),
                  regime_specs={n: specs[n] for n in names})


def _table(user: dict, key: str, shown: str, what: str) -> dict:
    v = user.get(key, {})
    if not isinstance(v, dict):
        raise ConfigError(f"expected {what}", path=shown, field=key)
    return v


def _market(base: dict, user: dict, shown: str, keys: Mapping[str, Bound]) -> dict[str, float]:
    market = copy.deepcopy(base["market"])
    for k, v in _table(user, "market", shown, "a table").items():
        if k not in keys:
            raise ConfigError(f"unknown key, expected one of: {', '.join(keys)}", path=shown, field=f"market.{k}")
        market[k] = v
    for k, b in keys.items():
        if k not in market:
            raise ConfigError("missing", path=shown, field=f"market.{k}")
        market[k] = number(market[k], shown, f"market.{k}", b)
    return market


def _overlay_regimes(base: dict, user: dict, shown: str, keys: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    regimes = copy.deepcopy(base["regimes"])
    for rn, spec in _table(user, "regimes", shown, "a table of regimes").items():
        if not isinstance(spec, dict):
            raise ConfigError("expected a table", path=shown, field=f"regimes.{rn}")
        tgt = regimes.setdefault(rn, {})
        for k, v in spec.items():
            if k not in keys:
                raise ConfigError(f"unknown key, expected one of: {', '.join(keys)}", path=shown,
                                  field=f"regimes.{rn}.{k}")
            tgt[k] = v
    return regimes


_NON_NEGATIVE = ("switch_rate_per_h", "latency_spike_rate_per_h", "latency_spike_s", "flash_crash_bps",
                 "flash_crash_recover_s")
_SEGMENT_BOUNDS = {"latency_spike_mult": Bound(0.0, True), "reject_prob": Bound(0.0, False, 1.0),
                   "flash_crash_recover": Bound(0.0, False, 1.0), "flash_crash_at_s": Bound(-1.0)}


def _segments(segs_in: Any, shown: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
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
        out["duration_s"] = number(out["duration_s"], shown, f"{f}.duration_s", Bound(0.0, True))
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
        for k in _NON_NEGATIVE:
            out[k] = number(out[k], shown, f"{f}.{k}", Bound(0.0))
        if out["flash_crash_bps"] >= MAX_CRASH_BPS:
            raise ConfigError(f"expected a crash < {MAX_CRASH_BPS:g} bps (100 % of the price), got "
                              f"{out['flash_crash_bps']:g}", path=shown, field=f"{f}.flash_crash_bps")
        for k, b in _SEGMENT_BOUNDS.items():
            out[k] = number(out[k], shown, f"{f}.{k}", b)
        if out["flash_crash_at_s"] >= out["duration_s"]:
            raise ConfigError("expected a time inside the segment", path=shown, field=f"{f}.flash_crash_at_s")
        if out["latency_spike_rate_per_h"] > 0 and out["latency_spike_s"] <= 0:
            raise ConfigError("expected latency_spike_s > 0 when spikes are enabled", path=shown,
                              field=f"{f}.latency_spike_s")
        if not isinstance(out["label"], str):
            raise ConfigError("expected a string", path=shown, field=f"{f}.label")
        segs.append(out)
    return segs
