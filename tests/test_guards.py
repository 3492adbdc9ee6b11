"""Between-iteration guards (issue 4): hypothesis properties and one unit test per guard."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soaklib.core.config import load_config
from soaklib.core.params import registry
from soaklib.tune import guards, tuner
from soaklib.tune.tuner import Proposal

CFG = load_config()
REG = registry(CFG)
NAMES = list(REG)
FAILING = {"net_bps": 1.0, "risk_ratio": 0.5, "maker_taker_ratio": 0.7, "p95_latency_ms": 300.0}
PASSING = {"net_bps": 3.0, "risk_ratio": 0.3, "maker_taker_ratio": 0.9, "p95_latency_ms": 300.0}
EPS = 1e-9
PROPS = settings(max_examples=int(__import__("os").environ.get("SOAK_HYP_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_forced(seq, cfg=CFG, start=None, summaries=None, total=None):
    """Drive the guards with forced proposals ``seq`` (list of {param: delta}); returns the history,
    each record carrying the params it ran with and its decisions."""
    cur = dict(start or REG.defaults())
    total = total or len(seq) + 1
    hist = []
    for n, deltas in enumerate(seq, 1):
        s = (summaries[n - 1] if summaries else FAILING)
        r = {"iteration": n, "status": "ok", "summary": dict(s), "params": dict(cur)}
        hist.append(r)
        decs = guards.apply_guards(Proposal(deltas=dict(deltas)), hist, cur, cfg, n, total)
        r["tuning"] = {"decisions": decs}
        for d in decs:
            cur[d["param"]] = d["new"]
    return hist


def values(hist, name):
    return [r["params"][name] for r in hist]


deltas_st = st.dictionaries(st.sampled_from(NAMES), st.floats(-500, 500, allow_nan=False), max_size=4)
start_st = st.fixed_dictionaries({n: st.floats(REG[n].min, REG[n].max).map(REG[n].normalise) for n in NAMES})


@PROPS
@given(seq=st.lists(deltas_st, min_size=1, max_size=14), start=start_st)
def test_never_out_of_bounds_and_within_velocity(seq, start):
    hist = run_forced(seq + [{}], start=start)
    w = CFG["guards"]["velocity_window"]
    for n, p in REG.items():
        v = values(hist, n)
        assert all(p.min - EPS <= x <= p.max + EPS for x in v)
        steps = [abs(b - a) for a, b in zip(v, v[1:])]
        assert all(s <= guards.velocity_limit(p, CFG) + EPS for s in steps)
        for i in range(len(steps)):
            assert sum(steps[i:i + w]) <= guards.window_limit(p, CFG) + EPS
        for r in hist:  # decisions agree with what happened
            for d in r["tuning"]["decisions"]:
                assert REG[d["param"]].min - EPS <= d["new"] <= REG[d["param"]].max + EPS


def _has_aba(v, w, p):
    for i in range(len(v)):
        win = v[max(0, i - w):i + 1]
        if guards._aba(win, p):
            return True
    return False


@PROPS
@given(name=st.sampled_from(NAMES), k=st.integers(1, 3), reps=st.integers(3, 8), disable_cooldown=st.booleans())
def test_forced_ping_pong_is_always_caught(name, k, reps, disable_cooldown):
    cfg = copy.deepcopy(CFG)
    if disable_cooldown:
        cfg["guards"]["cooldown_iters"] = 0
    p = REG[name]
    d = k * p.step
    start = dict(REG.defaults())
    start[name] = p.normalise((p.min + p.max) / 2)
    hist = run_forced([{name: d if i % 2 == 0 else -d} for i in range(reps)] + [{}], cfg=cfg, start=start)
    v = values(hist, name)
    w = cfg["guards"]["oscillation_window"]
    assert not _has_aba(v, w, p), v
    guards_seen = [dd["guard"] for r in hist for dd in r["tuning"]["decisions"]]
    if disable_cooldown:
        assert "oscillation" in guards_seen


@PROPS
@given(name=st.sampled_from(NAMES), tail=st.lists(deltas_st, max_size=6))
def test_frozen_parameter_never_changes_while_frozen(name, tail):
    cfg = copy.deepcopy(CFG)
    cfg["guards"]["cooldown_iters"] = 0
    p = REG[name]
    start = dict(REG.defaults())
    start[name] = p.normalise((p.min + p.max) / 2)
    seq = [{name: p.step}, {name: -p.step}] + [dict(t, **{name: p.step}) for t in tail] + [{}]
    hist = run_forced(seq, cfg=cfg, start=start)
    osc = [r["iteration"] for r in hist for d in r["tuning"]["decisions"] if d["param"] == name and d["guard"] == "oscillation"]
    assert osc == [2]
    k = cfg["guards"]["oscillation_freeze_iters"]
    v = values(hist, name)
    # decisions 3..2+k are frozen -> iterations 3..3+k run with the value of iteration 2
    for it in range(3, min(len(hist), 3 + k) + 1):
        assert v[it - 1] == v[1]
    for r in hist[2:2 + k]:
        for d in r["tuning"]["decisions"]:
            if d["param"] == name:
                assert d["guard"] == "frozen" and d["new"] == d["current"]
                assert name in guards.guard_flags([], hist[:r["iteration"]], r["params"], cfg, r["iteration"], 99)["frozen_params"]


summary_st = st.fixed_dictionaries({
    "net_bps": st.floats(-3, 5), "risk_ratio": st.floats(0, 1), "maker_taker_ratio": st.floats(0.5, 1),
    "p95_latency_ms": st.floats(100, 500), "adverse_bps_p95": st.floats(0, 6), "slippage_bps_p95": st.floats(0, 5),
    "cancel_ratio": st.floats(0, 1)})


@PROPS
@given(sums=st.lists(summary_st, min_size=1, max_size=10), start=start_st, fail_at=st.integers(0, 12))
def test_same_history_same_decisions(sums, start, fail_at):
    hist, cur = [], dict(start)
    for n, s in enumerate(sums, 1):
        failed = n == fail_at
        r = {"iteration": n, "status": "failed" if failed else "ok", "summary": {} if failed else s, "params": dict(cur)}
        hist.append(r)
        a = tuner.decide(copy.deepcopy(hist), dict(cur), CFG, iteration=n, total=len(sums), auto_tune=True)
        b = tuner.decide(copy.deepcopy(hist), dict(cur), CFG, iteration=n, total=len(sums), auto_tune=True)
        assert a == b
        r["tuning"] = a
        if failed:
            assert a["deltas"] == {} and a["skip_reason"]["reason"] == "iteration_failed"
        for d in a["decisions"]:
            cur[d["param"]] = d["new"]
        for k, dv in a["deltas"].items():
            p = REG[k]
            assert p.min - EPS <= r["params"][k] + dv <= p.max + EPS


# a fixed, varied history (every rule zone, a failed iteration, guards firing) decided in a fresh
# interpreter; prints the canonical JSON of every tuning block (decisions included)
_DECIDE_SCRIPT = r"""
import random
from soaklib.core import io as _io
from soaklib.tune import tuner
from soaklib.core.config import load_config
from soaklib.core.params import registry

cfg = load_config()
reg = registry(cfg)
out = []
for run_seed in (1, 2, 3):
    rnd = random.Random(run_seed)
    cur, hist, total = dict(reg.defaults()), [], 24
    for n in range(1, total + 1):
        failed = n == 7
        s = {"net_bps": rnd.uniform(-3, 5), "risk_ratio": rnd.uniform(0, 1), "maker_taker_ratio": rnd.uniform(0.5, 1),
             "p95_latency_ms": rnd.uniform(100, 500), "adverse_bps_p95": rnd.uniform(0, 6),
             "slippage_bps_p95": rnd.uniform(0, 5), "cancel_ratio": rnd.uniform(0, 1)}
        if n in (15, 16, 17, 18):  # every goal passes: steady state
            s.update(net_bps=3.0, risk_ratio=0.3, maker_taker_ratio=0.9, p95_latency_ms=250.0)
        if n in (11, 21):  # the runner went back to what it ran two iterations ago: observed A->B->A
            cur = dict(hist[-2]["params"])
        if n in (19, 20):  # MODERATE then NORMALIZE: impact_cap_ratio -0.005, +0.005 (a blocked return)
            s.update(net_bps=3.5, risk_ratio=0.45 if n == 19 else 0.2, maker_taker_ratio=0.9, p95_latency_ms=250.0,
                     adverse_bps_p95=2.0, slippage_bps_p95=1.0, cancel_ratio=0.3)
        r = {"iteration": n, "status": "failed" if failed else "ok", "summary": {} if failed else s,
             "params": dict(cur)}
        hist.append(r)
        r["tuning"] = tuner.decide(hist, dict(cur), cfg, iteration=n, total=total, auto_tune=True)
        for d in r["tuning"]["decisions"]:
            cur[d["param"]] = d["new"]
        out.append(r["tuning"])
print(_io.canonical_json(out))
"""


def test_same_history_same_decisions_across_processes():
    """Decisions do not depend on the interpreter's hash seed (set/dict iteration order)."""
    outs = []
    for hs in ("1", "2"):
        r = subprocess.run([sys.executable, "-c", _DECIDE_SCRIPT], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": hs})
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.strip())
    assert outs[0] == outs[1]
    blocks = json.loads(outs[0])
    guards_seen = {d["guard"] for b in blocks for d in b["decisions"]}
    assert sum(len(b["decisions"]) for b in blocks) > 50
    assert {"steady_state", "last_iteration", "bounds", "frozen", "oscillation", "cooldown"} <= guards_seen
    assert any(b["skip_reason"] and b["skip_reason"]["reason"] == "iteration_failed" for b in blocks)
    assert any(len(b["guards"]["frozen_params"]) >= 2 for b in blocks)


# ------------------------------------------------------------------ one unit test per guard

def test_bounds_clamped_and_blocked():
    start = dict(REG.defaults(), min_interval_ms=248)
    h = run_forced([{"min_interval_ms": 10}, {"min_interval_ms": 10}, {}], start=start)
    d1, d2 = h[0]["tuning"]["decisions"][0], h[1]["tuning"]["decisions"][0]
    assert (d1["verdict"], d1["guard"], d1["new"]) == ("clamped", "bounds", 250)
    assert (d2["verdict"], d2["guard"], d2["new"]) == ("blocked", "bounds", 250)


def test_velocity_per_iteration_and_window():
    p = REG["min_interval_ms"]
    lim = guards.velocity_limit(p, CFG)
    assert lim == 23  # 10 % of 230
    h = run_forced([{"min_interval_ms": 100}] * 4 + [{}])
    v = values(h, "min_interval_ms")
    assert v[1] - v[0] == lim
    d = h[0]["tuning"]["decisions"][0]
    assert (d["verdict"], d["guard"]) == ("clamped", "velocity")
    assert sum(b - a for a, b in zip(v, v[1:])) <= guards.window_limit(p, CFG)
    assert any(dd["guard"] == "velocity" and dd["verdict"] == "blocked" or dd["guard"] == "cooldown"
               for r in h for dd in r["tuning"]["decisions"])


def test_cooldown_after_large_change():
    # +20 ms is >= 8 % of the 230 ms range: the next decision for it is skipped
    h = run_forced([{"min_interval_ms": 20}, {"min_interval_ms": 5}, {"min_interval_ms": 5}, {}])
    g = [r["tuning"]["decisions"][0]["guard"] for r in h[:3]]
    assert g == [None, "cooldown", None]
    assert values(h, "min_interval_ms") == [60, 80, 80, 85]
    # a small change starts no cooldown
    h = run_forced([{"min_interval_ms": 5}, {"min_interval_ms": 5}, {}])
    assert values(h, "min_interval_ms") == [60, 65, 70]


def test_steady_state_freezes_and_sets_freeze_ready():
    k = CFG["guards"]["steady_state_iters"]
    h = run_forced([{"tail_age_ms": 10}] * (k + 2) + [{}], summaries=[PASSING] * (k + 3))
    guards_by_it = [r["tuning"]["decisions"][0]["guard"] for r in h[:-1]]
    assert guards_by_it[:k - 1] == [None] * (k - 1)
    assert set(guards_by_it[k - 1:]) == {"steady_state"}
    hist = h[:k]
    b = tuner.decide(hist, hist[-1]["params"], CFG, iteration=k, total=20, auto_tune=True)
    assert b["freeze_ready"] is True and b["guards"]["freeze_ready"] is True
    # one failing iteration in the window -> not steady
    hist2 = copy.deepcopy(hist)
    hist2[-2]["summary"]["risk_ratio"] = 0.5
    assert tuner.decide(hist2, hist2[-1]["params"], CFG, iteration=k, total=20, auto_tune=True)["freeze_ready"] is False


def test_observed_aba_freezes_even_without_a_decision():
    # an external runner went 60 -> 70 -> 60: the parameter is frozen for the next decisions
    h = [{"iteration": i, "status": "ok", "summary": FAILING, "params": dict(REG.defaults(), min_interval_ms=v)}
         for i, v in enumerate([60, 70, 60], 1)]
    decs = guards.apply_guards(Proposal(deltas={"min_interval_ms": 5}), h, h[-1]["params"], CFG, 3, 10)
    assert decs[0]["guard"] == "frozen"
    assert guards.guard_flags(decs, h, h[-1]["params"], CFG, 3, 10)["oscillation_detected"] is True


def test_last_iteration_guard():
    decs = guards.apply_guards(Proposal(deltas={"tail_age_ms": 10}), [{"iteration": 4, "status": "ok",
                               "summary": FAILING, "params": REG.defaults()}], REG.defaults(), CFG, 4, 4)
    assert decs[0]["guard"] == "last_iteration" and decs[0]["new"] == decs[0]["current"]


# ------------------------------------------------------------------ bad config/profile input via the CLI

def _soak(*args):
    return subprocess.run([sys.executable, "-m", "soaklib", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("toml, field", [
    ("[params.min_interval_ms]\nmin = 300\n", "params.min_interval_ms.min"),
    ("[params.tail_age_ms]\nstep = 0\n", "params.tail_age_ms.step"),
    ("[guards]\nvelocity_window = \"x\"\n", "guards.velocity_window"),
    ("[tuner]\nbogus = 1\n", "tuner.bogus"),
    ("[tuner.aggressive_deltas]\nbase_spread_bps = 0.1\n", "tuner.aggressive_deltas.base_spread_bps"),
])
def test_bad_config_one_line_exit_2(tmp_path, toml, field):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    r = _soak("config", "validate", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and field in r.stderr and "Traceback" not in r.stderr


def test_unknown_parameter_in_profile_exit_2(tmp_path):
    from soaklib.core.errors import ConfigError
    from soaklib.core.params import load_profile

    f = tmp_path / "p.json"
    f.write_text('{"min_interval_ms": 60, "base_spread_bps": 0.1}')
    with pytest.raises(ConfigError, match="base_spread_bps"):
        load_profile(str(f), REG)
    r = _soak("run", "--profile", str(f), "--iterations", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "base_spread_bps" in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not any((tmp_path / "runs").glob("*/ITER_SUMMARY_*.json"))


@pytest.mark.parametrize("toml, field", [
    ("[params.min_interval_ms]\nmin = 300\n", "params.min_interval_ms.min"),
    ("[params.tail_age_ms]\nstep = 0\n", "params.tail_age_ms.step"),
])
def test_soak_run_bad_config_exit_2(tmp_path, toml, field):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    r = _soak("run", "--config", str(f), "--iterations", "1", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert field in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
