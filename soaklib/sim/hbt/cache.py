"""On-disk market cache keyed by content: sha256 of (generator version, resolved scenario content,
seed, window, duration). A hit is reused by every iteration, run, comparison and sweep on the same
(scenario, seed, window); editing a scenario value or the generator changes the key.

Stored compressed (an ``.npz`` that ``np.load`` reads; deflate level 1: within ~10 % of the default
level's size at a fifth of the write time) column by column in a compact form: event flags as
uint32, exchange times as deltas, feed latency as an offset, prices in ticks and sizes in lots where
that round-trips exactly (checked on write; a column that would not is stored as it is), all-zero
columns omitted. Loading rebuilds the arrays hftbacktest replays, byte for byte.
Writes are atomic (temp file + os.replace), so concurrent workers never read half a file.

Directory: ``[hbt].market_cache_dir`` when set, else ``$SOAK_MARKET_CACHE``, else
``~/.cache/soaklib/markets``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soaklib.core.io import canonical_json
from soaklib.sim.hbt import scenario as S
from soaklib.sim.hbt.generator import (
    GENERATOR_VERSION,
    Market,
    event_dtype,
    generate,
    order_latency_dtype,
)

ENV = "SOAK_MARKET_CACHE"
FORMAT = 2  # layout of the stored file (part of the key: a new layout never reads an old file)
COMPRESS_LEVEL = 1


def default_dir(hbt_cfg: Mapping[str, Any] | None = None) -> Path:
    """``[hbt].market_cache_dir``, else $SOAK_MARKET_CACHE, else ~/.cache/soaklib/markets."""
    configured = str((hbt_cfg or {}).get("market_cache_dir") or "")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "soaklib" / "markets")


def market_key(scenario, seed: int, window: int, duration_s: float) -> str:
    sc = S.load_scenario(scenario)
    blob = canonical_json({"gen": GENERATOR_VERSION, "format": FORMAT, "scenario": sc.content_hash,
                           "seed": int(seed), "window": int(window), "duration_s": float(duration_s)})
    return hashlib.sha256(blob.encode()).hexdigest()


# -- compact columns ---------------------------------------------------------------------------

def _pack_events(ev: np.ndarray, tick: float, lot: float) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    flags = ev["ev"]
    if flags.max(initial=0) < 2**32:
        out["ev.u4"] = flags.astype(np.uint32)
    else:
        out["ev"] = flags
    out["exch_ts.delta"] = np.diff(ev["exch_ts"], prepend=np.int64(0))
    out["local_ts.offset"] = ev["local_ts"] - ev["exch_ts"]
    for col, unit in (("px", tick), ("qty", lot)):
        k = np.rint(ev[col] / unit)
        if np.array_equal(k * unit, ev[col]) and np.abs(k).max(initial=0) < 2**31:
            out[f"{col}.units"] = k.astype(np.int32)
        else:  # a value off the grid (e.g. a depleted level): keep the float column exactly
            out[col] = ev[col]
    for col in ("order_id", "ival", "fval"):
        if np.any(ev[col] != 0):
            out[col] = ev[col]
    return {f"events.{k}": v for k, v in out.items()}


def _unpack_events(z: Mapping[str, np.ndarray], n: int, tick: float, lot: float) -> np.ndarray:
    ev = np.zeros(n, event_dtype)
    ev["ev"] = z["events.ev.u4"] if "events.ev.u4" in z else z["events.ev"]
    ev["exch_ts"] = np.cumsum(z["events.exch_ts.delta"])
    ev["local_ts"] = ev["exch_ts"] + z["events.local_ts.offset"]
    for col, unit in (("px", tick), ("qty", lot)):
        ev[col] = z[f"events.{col}.units"] * unit if f"events.{col}.units" in z else z[f"events.{col}"]
    for col in ("order_id", "ival", "fval"):
        if f"events.{col}" in z:
            ev[col] = z[f"events.{col}"]
    return ev


def _pack(m: Market) -> dict[str, np.ndarray]:
    tick, lot = float(m.meta["tick"]), float(m.meta["lot"])
    cols = _pack_events(m.events, tick, lot)
    if not np.array_equal(_unpack_events(cols, len(m.events), tick, lot), m.events):
        cols = {"events.raw": m.events}  # never store a lossy copy
    for c in ("req_ts", "exch_ts", "resp_ts"):
        cols[f"latency.{c}"] = m.latency[c]
    if len(m.grid_ts) > 1 and np.array_equal(_grid(m.grid_ts[0], m.grid_ts[1] - m.grid_ts[0], len(m.grid_ts)),
                                             m.grid_ts):
        cols["grid_ts.t0_step"] = np.array([m.grid_ts[0], m.grid_ts[1] - m.grid_ts[0]], np.int64)
    else:
        cols["grid_ts"] = m.grid_ts
    cols.update(grid_mid=m.grid_mid, grid_regime=m.grid_regime, meta=np.array(json.dumps(m.meta)))
    return cols


def _grid(t0: int, step: int, n: int) -> np.ndarray:
    return np.int64(t0) + np.arange(n, dtype=np.int64) * np.int64(step)


def _unpack(z: Mapping[str, np.ndarray]) -> Market:
    meta = json.loads(str(z["meta"]))
    n_grid = len(z["grid_mid"])
    if "events.raw" in z:
        events = z["events.raw"]
    else:
        events = _unpack_events(z, int(meta["rows"]), float(meta["tick"]), float(meta["lot"]))
    lat = np.zeros(len(z["latency.req_ts"]), order_latency_dtype)
    for c in ("req_ts", "exch_ts", "resp_ts"):
        lat[c] = z[f"latency.{c}"]
    if "grid_ts.t0_step" in z:
        grid_ts = _grid(int(z["grid_ts.t0_step"][0]), int(z["grid_ts.t0_step"][1]), n_grid)
    else:
        grid_ts = z["grid_ts"]
    return Market(events=events, latency=lat, grid_ts=grid_ts, grid_mid=z["grid_mid"],
                  grid_regime=z["grid_regime"], meta=meta)


def _write_npz(f, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with a fast deflate level (numpy does not expose the level)."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as z:
        for name, arr in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


class MarketCache:
    """``get(scenario, seed, window, duration_s)``: the stored market, generated and stored on a miss."""

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory is not None else default_dir()
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, scenario, seed: int, window: int, duration_s: float = 3600.0) -> Market:
        key = market_key(scenario, seed, window, duration_s)
        p = self.path(key)
        if p.is_file():
            try:
                with np.load(p, allow_pickle=False) as z:
                    m = _unpack({k: z[k] for k in z.files})
                self.hits += 1
                return m
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # unreadable (e.g. a foreign or damaged file): regenerate and overwrite
        self.misses += 1
        m = generate(scenario, seed, window, duration_s)
        m.meta["key"] = key
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                _write_npz(f, _pack(m))
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return m
