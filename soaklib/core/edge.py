"""EDGE_REPORT: the external bot's output (DESIGN §13) and the earlier toolkit's artifact (seed
§1.8 summarize rules, §2.1 maker_taker source order), turned into a record summary.

Strict about what it cannot interpret (numbers as strings, ratios out of [0, 1]: RecordError naming the
file and field), honest about what is missing (absent KPIs stay None; nothing is invented).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soaklib.core.errors import RecordError
from soaklib.core.kpis import (
    BLOCK_REASONS,
    FILL_COUNTS,
    FILL_VOLUMES,
    NONNEG_FIELDS,
    NUMERIC_FIELDS,
    RATIO_FIELDS,
    SUMMARY_KPI_KEYS,
    maker_taker,
)
from soaklib.core.numbers import finite


def parse_number(v: Any, *, path: object, field: str, ratio: bool = False, nonneg: bool = False) -> float | int | None:
    """A KPI value: None, or a finite number (not a string, not a bool), range-checked."""
    if v is None:
        return None
    if isinstance(v, str):
        raise RecordError(f"expected a number, got the string {v[:40]!r} (numbers must not be quoted)",
                          path=path, field=field)
    if finite(v) is None:
        raise RecordError(f"expected a number, got {type(v).__name__} {str(v)[:40]}", path=path, field=field)
    if ratio and not 0.0 <= v <= 1.0:
        raise RecordError(f"ratio {v} out of range, expected 0 <= value <= 1", path=path, field=field)
    if nonneg and v < 0:
        raise RecordError(f"value {v} is negative, expected >= 0", path=path, field=field)
    return v


def check_field(d: Mapping[str, Any], k: str, *, path: object, prefix: str) -> float | int | None:
    return parse_number(d.get(k), path=path, field=f"{prefix}{k}", ratio=k in RATIO_FIELDS, nonneg=k in NONNEG_FIELDS)



def parse_fills(v: Any, *, path: object, field: str) -> dict | None:
    if v is None:
        return None
    if finite(v) is not None:  # basic EDGE_REPORT: a fill count
        n = parse_number(v, path=path, field=field, nonneg=True)
        if float(n) != int(n):
            raise RecordError(f"expected a whole count, got {n}", path=path, field=field)
        return {"count": int(n)}
    if not isinstance(v, Mapping):
        raise RecordError(f"expected an object or a count, got {type(v).__name__}", path=path, field=field)
    out: dict[str, Any] = {}
    for k, x in v.items():
        if k in FILL_COUNTS:
            n = parse_number(x, path=path, field=f"{field}.{k}", nonneg=True)
            if n is not None and float(n) != int(n):
                raise RecordError(f"expected a whole count, got {n}", path=path, field=f"{field}.{k}")
            if n is not None:
                out[k] = int(n)
        elif k in FILL_VOLUMES:
            n = parse_number(x, path=path, field=f"{field}.{k}", nonneg=True)
            if n is not None:
                out[k] = n
        elif finite(x) is not None:
            out[k] = x
    # aggregate from the side×liquidity split when only that is given
    for liq in ("maker", "taker"):
        for kind in ("count", "volume"):
            key = f"{liq}_{kind}"
            parts = [out.get(f"{s}_{liq}_{kind}") for s in ("buy", "sell")]
            if out.get(key) is None and all(p is not None for p in parts):
                out[key] = parts[0] + parts[1]
    return out


def _block_reasons(totals: Mapping[str, Any], *, path: object, prefix: str) -> tuple[dict, dict | None]:
    """Ratios per block reason (0..1) and the ``blocks`` block, from ``block_reasons{k:{count, ratio}}``.

    Counts, when present, give the exact share of blocked actions (seed definition). Without counts
    the reported ``ratio`` is used, divided by 100 when > 1 (the seed's percent rule)."""
    br = totals.get("block_reasons")
    ratios: dict[str, float] = {}
    if br is None:
        return ratios, None
    if not isinstance(br, Mapping):
        raise RecordError(f"expected an object, got {type(br).__name__}", path=path, field=f"{prefix}block_reasons")
    counts: dict[str, int] = {}
    raw_ratio: dict[str, float] = {}
    for k, v in br.items():
        f = f"{prefix}block_reasons.{k}"
        if not isinstance(v, Mapping):
            raise RecordError(f"expected an object {{count, ratio}}, got {type(v).__name__}", path=path, field=f)
        c = parse_number(v.get("count"), path=path, field=f + ".count", nonneg=True)
        if c is not None:
            if float(c) != int(c):
                raise RecordError(f"expected a whole count, got {c}", path=path, field=f + ".count")
            counts[k] = int(c)
        r = parse_number(v.get("ratio"), path=path, field=f + ".ratio", nonneg=True)
        if r is not None:
            r = r / 100.0 if r > 1.0 else r
            if r > 1.0:
                raise RecordError(f"ratio {v.get('ratio')} out of range, expected 0..1 or a percentage 0..100",
                                  path=path, field=f + ".ratio")
            raw_ratio[k] = r
    blocked = sum(counts.get(k, 0) for k in BLOCK_REASONS)
    have_counts = all(k in counts for k in BLOCK_REASONS if k in br)
    for k in BLOCK_REASONS:
        if have_counts and counts:
            # a reason absent from a counted breakdown was blocked 0 times
            ratios[k] = counts.get(k, 0) / blocked if blocked else 0.0
        elif k in raw_ratio:
            ratios[k] = raw_ratio[k]
    blocks = None
    if counts:
        allowed = totals.get("allowed_actions")
        full = {k: counts.get(k, 0) for k in BLOCK_REASONS}
        whole = finite(allowed) is not None and allowed >= 0 and float(allowed).is_integer()
        full["allowed"] = int(allowed) if whole else counts.get("allowed", 0)
        full["other"] = sum(v for k, v in counts.items() if k not in BLOCK_REASONS and k != "allowed")
        total = sum(full.values())
        blocks = {"counts": full, "total": total,
                  "ratios": {k: (round(100.0 * c / total, 1) if total else 0.0) for k, c in full.items()}}
    return ratios, blocks


def summary_from_edge(report: Any, *, path: object = "<EDGE_REPORT>", field_prefix: str = "") -> dict:
    """Normalise an EDGE_REPORT (``totals`` or ``total``; or the minimal top-level form) into
    soaklib summary fields. Raises RecordError naming the field for anything it cannot trust."""
    if not isinstance(report, Mapping):
        raise RecordError(f"expected a JSON object, got {type(report).__name__}", path=path)
    if "totals" in report:
        key = "totals"
    elif "total" in report:
        key = "total"
    elif "net_bps" in report:
        key = ""  # minimal form {latency{p50,p95,p99}, net_bps, taker_ratio}
    else:
        raise RecordError("no 'totals' or 'total' object (EDGE_REPORT format expected)", path=path)
    totals = report[key] if key else report
    prefix = f"{field_prefix}{key}." if key else field_prefix
    if not isinstance(totals, Mapping):
        raise RecordError(f"expected an object, got {type(totals).__name__}", path=path, field=prefix.rstrip("."))

    s: dict[str, Any] = {k: None for k in SUMMARY_KPI_KEYS}
    for k, v in totals.items():
        if k in NUMERIC_FIELDS:
            s[k] = check_field(totals, k, path=path, prefix=prefix)
        elif finite(v) is not None and k not in ("allowed_actions", "events"):
            s[k] = v  # any further KPI the bot reports
    comp = totals.get("component_breakdown")  # extended report: the same components, nested
    if isinstance(comp, Mapping):
        for k in ("gross_bps", "fees_eff_bps", "slippage_bps", "adverse_bps", "inventory_bps", "net_bps"):
            if s.get(k) is None and comp.get(k) is not None:
                s[k] = parse_number(comp[k], path=path, field=f"{prefix}component_breakdown.{k}")
    lat = totals.get("latency")
    if isinstance(lat, Mapping):
        for q in ("p50", "p95", "p99"):
            if s.get(f"{q}_latency_ms") is None and lat.get(q) is not None:
                s[f"{q}_latency_ms"] = parse_number(lat.get(q), path=path, field=f"{prefix}latency.{q}", nonneg=True)
    if s.get("p95_latency_ms") is None and totals.get("latency_p95_ms") is not None:
        s["p95_latency_ms"] = parse_number(totals["latency_p95_ms"], path=path, field=f"{prefix}latency_p95_ms", nonneg=True)
    # seed: p95 tails fall back to the means
    for m in ("adverse_bps", "slippage_bps"):
        if s.get(f"{m}_p95") is None and s.get(m) is not None:
            s[f"{m}_p95"] = s[m]
    ratios, blocks = _block_reasons(totals, path=path, prefix=prefix)
    for k, r in ratios.items():
        if s.get(f"{k}_ratio") is None:
            s[f"{k}_ratio"] = r
    s["blocks"] = blocks
    s["fills"] = parse_fills(totals.get("fills"), path=path, field=f"{prefix}fills")
    if s.get("maker_taker_ratio") is None:
        for alias, flip in (("maker_ratio", False), ("taker_ratio", True)):
            v = totals.get(alias)
            if v is not None:
                v = parse_number(v, path=path, field=prefix + alias, ratio=True)
                s["maker_taker_ratio"] = 1.0 - v if flip else v
                break
    s["maker_taker_ratio"], s["maker_taker_source"] = maker_taker(s, s["fills"], totals)
    drivers = totals.get("neg_edge_drivers")
    if drivers is not None and not (isinstance(drivers, list) and all(isinstance(x, str) for x in drivers)):
        raise RecordError("expected a list of strings", path=path, field=f"{prefix}neg_edge_drivers")
    s["neg_edge_drivers"] = list(drivers) if drivers is not None else None
    verdict = totals.get("kpi_verdict")
    s["kpi_verdict"] = verdict if verdict in ("PASS", "WARN", "FAIL") else None
    reasons = totals.get("kpi_reasons")
    s["kpi_reasons"] = [str(x) for x in reasons] if isinstance(reasons, list) else []
    return s
