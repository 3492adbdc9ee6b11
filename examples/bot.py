#!/usr/bin/env python3
"""A toy market-making bot that follows soaklib's external runner contract (DESIGN §13).

It does not import soaklib: it is what your own bot would look like from soaklib's side.

    soak run --runner "python3 examples/bot.py" --iterations 6 --auto-tune

Per iteration soaklib runs this program with:
  SOAK_ITERATION  1-based iteration number
  SOAK_OVERRIDES  path to a JSON object of flat parameters to run with
  SOAK_OUTPUT     path where the result must be written (EDGE_REPORT format)
  SOAK_SEED       integer seed for this iteration
  SOAK_RUN_DIR    the run directory (read-only for the bot)

The "market" is a small seeded event simulation in plain Python: quote attempts are blocked by
the pacing/risk parameters, fills arrive with a probability falling with the quoted spread, each
fill's edge and mark-out are drawn, so every KPI is computed from the events of this iteration and
responds to the overrides. It is a demo, not a model of a real venue.

Test knobs (environment):
  EXAMPLE_BOT_MODE      crash | hang | garbage | nothing | ignore:<param> | ignore:<param>=<value>
                        crash: exit 3 with a message on stderr; hang: sleep (with a child process)
                        until killed; garbage: write non-JSON output; nothing: exit 0 without output;
                        ignore:<param>: run with (and report) a different value than requested for
                        one parameter (requested ± 20 %, sign alternating by iteration); with
                        =<value> the bot runs with that fixed value instead.
  EXAMPLE_BOT_MODE_AT   comma-separated iterations the mode applies to (default: all)
  EXAMPLE_BOT_NESTED    1 = echo applied_overrides as nested sections (engine.*, risk.*)
  EXAMPLE_BOT_EVENTS    quote attempts per iteration (default 4000)
"""
from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time

# What the bot uses when a parameter is not in SOAK_OVERRIDES (the seed's best cell).
DEFAULTS = {
    "min_interval_ms": 60,
    "replace_rate_per_min": 300,
    "base_spread_bps_delta": 0.05,
    "tail_age_ms": 600,
    "impact_cap_ratio": 0.10,
    "max_delta_ratio": 0.15,
    "concurrency_limit": 10,
}
# Sections the bot's own config uses (matches soaklib's registry paths) for EXAMPLE_BOT_NESTED=1.
SECTIONS = {
    "min_interval_ms": "engine", "replace_rate_per_min": "engine", "tail_age_ms": "engine",
    "concurrency_limit": "engine", "base_spread_bps_delta": "risk", "impact_cap_ratio": "risk",
    "max_delta_ratio": "risk",
}


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            sys.exit(f"bot: {name} is not set")
        return default
    try:
        return int(raw)
    except ValueError:
        sys.exit(f"bot: {name}={raw!r} is not an integer")


def _mode_applies(iteration: int) -> bool:
    at = os.environ.get("EXAMPLE_BOT_MODE_AT", "").strip()
    if not at:
        return True
    return iteration in {int(x) for x in at.split(",") if x.strip()}


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def simulate(p: dict, seed: int, n_events: int) -> dict:
    """Run the toy market for one iteration; return EDGE_REPORT ``totals`` computed from events."""
    rng = random.Random(seed)
    half_spread = 3.0 + p["base_spread_bps_delta"] * 4.0          # bps
    fill_prob = min(0.95, 0.55 * math.exp(-0.35 * (half_spread - 1.0)))
    size = p["impact_cap_ratio"]
    counts = {"min_interval": 0, "concurrency": 0, "risk": 0, "throttle": 0}
    allowed = 0
    place = cancel = replace = 0
    inventory = 0.0
    inv_limit = 0.5
    in_flight = 0
    tokens = p["replace_rate_per_min"] / 60.0
    t_ms = 0.0
    last_quote_ms = -1e9
    lat, ages, adverse, slip, gross, fees = [], [], [], [], [], []
    fills = {f"{s}_{liq}_{k}": 0 for s in ("buy", "sell") for liq in ("maker", "taker") for k in ("count", "volume")}
    for _ in range(n_events):
        t_ms += rng.expovariate(1.0 / 25.0)                         # a quote opportunity every ~25 ms
        tokens = min(p["replace_rate_per_min"] / 60.0, tokens + p["replace_rate_per_min"] / 60_000.0 * 25.0)
        in_flight = max(0, in_flight - rng.randint(0, 3))
        if t_ms - last_quote_ms < p["min_interval_ms"]:
            counts["min_interval"] += 1
            continue
        if in_flight >= p["concurrency_limit"]:
            counts["concurrency"] += 1
            continue
        if abs(inventory) + size > inv_limit:
            counts["risk"] += 1
            inventory *= 0.5                                        # taker rescue halves the position
            side = "sell" if inventory > 0 else "buy"
            fills[f"{side}_taker_count"] += 1
            fills[f"{side}_taker_volume"] += round(abs(inventory), 6)
            gross.append(-1.0)
            fees.append(-2.0)
            slip.append(-abs(rng.gauss(1.0, 0.5)))
            continue
        if tokens < 1.0:
            counts["throttle"] += 1
            continue
        tokens -= 1.0
        allowed += 1
        last_quote_ms = t_ms
        in_flight += 1
        load = 1.0 + in_flight / max(1.0, p["concurrency_limit"]) + p["replace_rate_per_min"] / 900.0
        lat.append(rng.lognormvariate(math.log(90.0 * load), 0.35))
        age = rng.expovariate(1.0 / (p["tail_age_ms"] * 0.6))
        ages.append(min(age, p["tail_age_ms"]))
        if age >= p["tail_age_ms"]:
            replace += 1
        elif rng.random() < 0.2:
            cancel += 1
        else:
            place += 1
        if rng.random() < fill_prob:
            side = "buy" if rng.random() < 0.5 - inventory * 0.2 else "sell"
            inventory += size if side == "buy" else -size
            fills[f"{side}_maker_count"] += 1
            fills[f"{side}_maker_volume"] += size
            gross.append(half_spread + rng.gauss(0.0, 0.4))
            fees.append(0.2)                                         # maker rebate
            adv = abs(rng.gauss(0.0, 1.0 + p["max_delta_ratio"] * 4.0))
            adverse.append(adv)
            slip.append(rng.gauss(0.0, 0.2))
    fills = {k: (round(v, 6) if k.endswith("volume") else v) for k, v in fills.items()}
    maker_count = fills["buy_maker_count"] + fills["sell_maker_count"]
    taker_count = fills["buy_taker_count"] + fills["sell_taker_count"]
    maker_volume = round(fills["buy_maker_volume"] + fills["sell_maker_volume"], 6)
    taker_volume = round(fills["buy_taker_volume"] + fills["sell_taker_volume"], 6)
    fills.update(maker_count=maker_count, taker_count=taker_count, maker_volume=maker_volume,
                 taker_volume=taker_volume, count=maker_count + taker_count,
                 volume=round(maker_volume + taker_volume, 6))
    mean = (lambda xs: sum(xs) / len(xs) if xs else 0.0)
    g, f, s = mean(gross), mean(fees), mean(slip)
    a = mean(adverse)
    inv_bps = -abs(inventory) * 0.5
    net = g + f + s + inv_bps - 0.5 * a
    blocked = sum(counts.values())
    actions = max(1, place + cancel + replace)
    totals = {
        "net_bps": round(net, 6), "gross_bps": round(g, 6), "fees_eff_bps": round(f, 6),
        "slippage_bps": round(s, 6), "adverse_bps": round(a, 6), "inventory_bps": round(inv_bps, 6),
        "adverse_bps_p95": round(_percentile(adverse, 0.95), 6),
        "slippage_bps_p95": round(_percentile([abs(x) for x in slip], 0.95), 6),
        "order_age_p95_ms": round(_percentile(ages, 0.95), 3),
        "p50_latency_ms": round(_percentile(lat, 0.50), 3),
        "p95_latency_ms": round(_percentile(lat, 0.95), 3),
        "p99_latency_ms": round(_percentile(lat, 0.99), 3),
        "cancel_ratio": round(cancel / actions, 6),
        "replace_ratio": round(replace / actions, 6),
        "fills": fills,
        # seed producer semantics: share of blocked actions per reason, in percent
        "block_reasons": {k: {"count": v, "ratio": round(100.0 * v / blocked, 3) if blocked else 0.0}
                          for k, v in counts.items()},
        "allowed_actions": allowed,
        "neg_edge_drivers": [],
    }
    if net < 0:
        drivers = {"fees_eff_bps": f, "slippage_bps": s, "adverse_bps": a, "inventory_bps": abs(inv_bps)}
        totals["neg_edge_drivers"] = sorted(drivers, key=lambda k: -abs(drivers[k]))[:2]
    return totals


def main() -> int:
    iteration = _env_int("SOAK_ITERATION")
    seed = _env_int("SOAK_SEED", 0)
    out_path = os.environ.get("SOAK_OUTPUT") or sys.exit("bot: SOAK_OUTPUT is not set")
    ov_path = os.environ.get("SOAK_OVERRIDES") or sys.exit("bot: SOAK_OVERRIDES is not set")
    with open(ov_path, encoding="utf-8") as fh:
        requested = json.load(fh)
    params = dict(DEFAULTS)
    params.update({k: v for k, v in requested.items() if k in DEFAULTS})

    mode = os.environ.get("EXAMPLE_BOT_MODE", "") if _mode_applies(iteration) else ""
    print(f"bot: iteration {iteration} seed {seed} mode {mode or 'normal'}", file=sys.stderr)
    if mode == "crash":
        print("bot: simulated crash: venue connection lost", file=sys.stderr)
        return 3
    if mode == "hang":
        # a child in the same process group: soaklib must kill the whole group on timeout
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(os.path.dirname(out_path), "hang.pid"), "w") as fh:
            fh.write(f"{os.getpid()} {child.pid}\n")
        print("bot: hanging", file=sys.stderr, flush=True)
        time.sleep(600)
        return 0
    if mode == "garbage":
        print("bot: \x00\x01 ### not json ###")
        with open(out_path, "w") as fh:
            fh.write("{totals: ??? <html>garbage</html>")
        return 0
    if mode == "nothing":
        return 0
    if mode.startswith("ignore:"):
        name, _, fixed = mode[len("ignore:"):].partition("=")
        if name not in params:
            sys.exit(f"bot: unknown parameter in EXAMPLE_BOT_MODE: {name}")
        v = params[name]
        if fixed:
            new = float(fixed)
        else:
            off = abs(v) * 0.2 or 0.05
            new = v + off if iteration % 2 else v - off
        params[name] = int(round(new)) if isinstance(v, int) else round(new, 6)

    totals = simulate(params, seed, _env_int("EXAMPLE_BOT_EVENTS", 4000))
    if os.environ.get("EXAMPLE_BOT_NESTED") == "1":
        applied: dict = {}
        for k, v in params.items():
            applied.setdefault(SECTIONS[k], {})[k] = v
    else:
        applied = params
    report = {
        "runtime": {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": "example-bot 1.0"},
        "symbols": {"BTCUSDT": {k: totals[k] for k in ("net_bps", "gross_bps", "fees_eff_bps", "slippage_bps",
                                                      "adverse_bps", "inventory_bps")}},
        "totals": totals,
        "applied_overrides": applied,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, sort_keys=True, allow_nan=False)
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
