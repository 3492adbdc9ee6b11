"""The paired judge (judge/compare.py): A/A, a real improvement, a real regression, dispersion, sparse
counts, too few pairs, unpairable runs and bad margins.

Fixtures are synthetic runs whose per-window KPIs are "market" draws shared by both arms (the same
seed and window → the same market value, as on common random numbers) plus the arm's effect and its
own small noise. Nothing here relies on a chosen seed: effects are several interval widths away.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

from soaklib.core.config import load_config
from soaklib.core.errors import ConfigError
from soaklib.judge import compare as C
from soaklib.store.loader import open_run
from soaklib.store.synthetic import write_synthetic_run

N = 24


def _cfg():
    return load_config()


def _market(i: int) -> np.random.Generator:
    return np.random.default_rng([12345, i])  # the window's market: the same in both arms


def _arm(tmp_path, name, *, net_shift=0.0, p95_shift=0.0, spread_mult=1.0, noise=0.02, n=N, arm_seed=1,
         scenario="default", failed=(), freezes=None):
    own = np.random.default_rng(arm_seed)  # the arm's own noise (independent of the market)
    net_market = [float(_market(i).normal(3.0, 1.0)) for i in range(1, n + 1)]
    centre = float(np.mean(net_market))

    def kpis(i):
        m = net_market[i - 1]
        net = centre + spread_mult * (m - centre) + net_shift + own.normal(0.0, noise)
        lat = 250.0 + 30.0 * _market(i).standard_normal() + p95_shift + own.normal(0.0, 2.0)
        out = {"net_bps": net, "p95_latency_ms": lat, "pnl_quote": 10.0 * net, "maker_taker_ratio": 0.9,
               "risk_ratio": 0.25}
        return out

    return open_run(write_synthetic_run(tmp_path / name, n, kpis=kpis, seed=0, scenario=scenario, failed=failed))


def test_a_a_is_equivalent_and_passes(tmp_path):
    a = _arm(tmp_path, "a", arm_seed=1)
    b = _arm(tmp_path, "b", arm_seed=2)
    res = C.compare_runs(a, b, _cfg())
    assert res.verdict == C.PASS, res.to_text()
    assert res.method == "paired-wilcoxon" and res.n_pairs == N
    net = res.kpi("net_bps")
    assert net.verdict == C.EQUIVALENT and net.ci_low <= 0 <= net.ci_high


def test_identical_arms_give_zero_effect(tmp_path):
    a = _arm(tmp_path, "a")
    res = C.compare_runs(a, a, _cfg())
    net = res.kpi("net_bps")
    assert (net.estimate, net.ci_low, net.ci_high, net.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert res.verdict == C.PASS


def test_real_improvement_is_better_with_interval_excluding_zero(tmp_path):
    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, net_shift=0.5)
    res = C.compare_runs(base, cand, _cfg())
    net = res.kpi("net_bps")
    assert net.verdict == C.BETTER, res.to_text()
    assert net.ci_low > 0 and abs(net.estimate - 0.5) < 0.1 and net.p_value < 0.001
    assert res.verdict == C.PASS


def test_higher_p95_is_worse_and_fails(tmp_path):
    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, p95_shift=40.0)
    res = C.compare_runs(base, cand, _cfg())
    p95 = res.kpi("p95_latency_ms")
    assert p95.verdict == C.WORSE and p95.ci_low > 10.0, res.to_text()
    assert res.verdict == C.FAIL


def test_equal_mean_five_times_dispersion_fails_naming_dispersion(tmp_path):
    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, spread_mult=5.0)
    res = C.compare_runs(base, cand, _cfg())
    net = res.kpi("net_bps")
    assert net.verdict == C.WORSE and "dispersion" in net.reason, res.to_text()
    assert net.extra["dispersion"]["ratio"] > 3
    assert res.verdict == C.FAIL


def test_sparse_counts_never_pass(tmp_path):
    cfg = _cfg()
    rule = C.KpiRule(kpi="failed_iterations", direction="lower", kind="count")
    b = np.zeros(N)
    c = np.zeros(N)
    c[3] = 1
    c[9] = 1  # 0 vs 2 events: too sparse to call equal
    v = C._count(rule, b, c, int(cfg["compare"]["min_count_events"]))
    assert v.verdict == C.INCONCLUSIVE and "sparse" in v.reason
    assert C.overall([v]) != C.PASS


def test_failed_iterations_counted_exactly(tmp_path):
    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, failed=range(2, 24, 2))  # 11 of 24 windows failed
    res = C.compare_runs(base, cand, _cfg())
    f = res.kpi("failed_iterations")
    assert f.verdict == C.WORSE and f.candidate == 11 and f.baseline == 0, res.to_text()
    assert res.verdict == C.FAIL


def test_fewer_pairs_than_minimum_is_inconclusive(tmp_path):
    cfg = _cfg()
    n = int(cfg["compare"]["min_pairs"]) - 1
    base = _arm(tmp_path, "base", n=n, arm_seed=1)
    cand = _arm(tmp_path, "cand", n=n, arm_seed=2, net_shift=5.0)
    res = C.compare_runs(base, cand, cfg)
    assert res.verdict == C.INCONCLUSIVE
    assert res.kpi("net_bps").verdict == C.INCONCLUSIVE and "min_pairs" in res.kpi("net_bps").reason


def test_all_failed_candidate_never_passes(tmp_path):
    base = _arm(tmp_path, "base", n=8)
    cand = _arm(tmp_path, "cand", n=8, failed=range(1, 9))
    assert C.compare_runs(base, cand, _cfg()).verdict == C.FAIL


def test_unpairable_runs_are_refused_unless_unpaired(tmp_path):
    from soaklib.core.errors import InputError

    base = _arm(tmp_path, "base", scenario="default")
    cand = _arm(tmp_path, "cand", scenario="calm", net_shift=0.5)
    with pytest.raises(InputError, match="scenario"):
        C.compare_runs(base, cand, _cfg())
    res = C.compare_runs(base, cand, _cfg(), unpaired=True)
    assert res.method == "unpaired-mann-whitney" and any("unpaired" in n for n in res.notes)


def test_paired_has_more_power_than_unpaired(tmp_path):
    """The same small effect: the paired interval is far narrower than the unpaired one."""
    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, net_shift=0.15)
    paired = C.compare_runs(base, cand, _cfg()).kpi("net_bps")
    unpaired = C.compare_runs(base, cand, _cfg(), unpaired=True).kpi("net_bps")
    assert paired.ci_low > 0 and unpaired.ci_low < 0
    assert (paired.ci_high - paired.ci_low) * 5 < unpaired.ci_high - unpaired.ci_low


@pytest.mark.parametrize("spec, field", [
    ({"nope_kpi": {"direction": "higher", "margin": 0.1}}, "compare.kpis.nope_kpi"),
    ({"net_bps": {"direction": "higher", "margin": -0.1}}, "compare.kpis.net_bps.margin"),
    ({"net_bps": {"direction": "up", "margin": 0.1}}, "compare.kpis.net_bps.direction"),
])
def test_bad_margins_name_the_field(spec, field):
    cfg = copy.deepcopy(_cfg())
    cfg["compare"]["kpis"] = spec
    with pytest.raises(ConfigError) as exc:
        C.rules_from_config(cfg, src="x.toml")
    assert exc.value.field == field


def test_hodges_lehmann_interval_covers_known_shift():
    """Coverage of the signed-rank interval on symmetric noise: close to its nominal level."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(400):
        d = 0.3 + rng.standard_t(4, size=16)
        _, lo, hi = C.hodges_lehmann_paired(d, 0.95)
        hits += lo <= 0.3 <= hi
    assert 0.92 <= hits / 400 <= 0.99


def test_cli_compare_exit_codes_and_file(tmp_path, capsys):
    from soaklib.cli import main

    base = _arm(tmp_path, "base", arm_seed=1)
    better = _arm(tmp_path, "better", arm_seed=2, net_shift=0.5)
    worse = _arm(tmp_path, "worse", arm_seed=3, p95_shift=40.0)
    other = _arm(tmp_path, "other", arm_seed=4, scenario="calm")

    def run(*args):
        with pytest.raises(SystemExit) as exc:
            main(["compare", *map(str, args)])
        return exc.value.code, capsys.readouterr()

    code, out = run(base.path, better.path)
    assert code == 0 and "verdict: PASS" in out.out
    assert (better.path / "reports" / "analysis" / "COMPARE.json").is_file()
    code, out = run(base.path, worse.path)
    assert code == 1 and "p95_latency_ms=WORSE" in out.err
    code, out = run(base.path, other.path)
    assert code == 2 and out.err.count("\n") == 1 and "--unpaired" in out.err and "Traceback" not in out.err


def test_prometheus_carries_the_comparison(tmp_path, capsys):
    """soak_compare_verdict / _effect{kpi} / _p_value{kpi} from the run's COMPARE.json."""
    from prometheus_client.parser import text_string_to_metric_families

    from soaklib.publish import metrics

    base = _arm(tmp_path, "base", arm_seed=1)
    cand = _arm(tmp_path, "cand", arm_seed=2, net_shift=0.5)
    with pytest.raises(SystemExit):
        from soaklib.cli import main
        main(["compare", str(base.path), str(cand.path)])
    capsys.readouterr()
    text = metrics.exposition(metrics.run_registry(open_run(cand.path))).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    verdict = {s.labels["verdict"]: s.value for s in fams["soak_compare_verdict"].samples}
    assert verdict == {"pass": 1.0, "inconclusive": 0.0, "fail": 0.0}
    effect = {s.labels["kpi"]: s.value for s in fams["soak_compare_effect"].samples}
    assert abs(effect["net_bps"] - 0.5) < 0.1
    p = {s.labels["kpi"]: s.value for s in fams["soak_compare_p_value"].samples}
    assert p["net_bps"] < 0.001
    assert "soak_compare_verdict" not in metrics.exposition(metrics.run_registry(open_run(base.path))).decode()
