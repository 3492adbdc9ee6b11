"""The command line's own contract: every user mistake is one line on stderr and exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ["gate"],                       # missing argument
    ["run", "--bogus"],             # unknown option
    ["nosuch"],                     # unknown command
    ["gate", "/nonexistent/run"],   # not a run
    ["config", "validate", "/nonexistent.toml"],
]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a))
def test_user_mistakes_are_one_line_exit_2(argv):
    p = subprocess.run([sys.executable, "-m", "soaklib", *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("soak: error: ")
    assert "Traceback" not in p.stderr


def test_config_show_and_validate(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[params.min_interval_ms]\nmin = 300\nmax = 100\n")
    p = subprocess.run([sys.executable, "-m", "soaklib", "config", "validate", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "params.min_interval_ms.min" in p.stderr and "min <= max" in p.stderr
    p = subprocess.run([sys.executable, "-m", "soaklib", "config", "show"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and '"goals"' in p.stdout


def test_bad_guard_constant_is_refused_before_any_run(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text("[guards]\noscillation_window = -2\n")
    p = subprocess.run([sys.executable, "-m", "soaklib", "run", "--config", str(cfg), "--iterations", "2",
                        "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "guards.oscillation_window" in p.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("toml, field", [
    ("[goals.net_bps]\nhard = nan\n", "goals.net_bps.hard"),
    ("[verify]\nthreshold = 1.5\n", "verify.threshold"),
    ("[run]\niterations = 0\n", "run.iterations"),
    ("[run]\nduration_s = -1.0\n", "run.duration_s"),
    ("[goals.net_bps]\nsoft = 2.0\n", "goals.net_bps.soft"),
    ("[tuner]\nmoderate_deltas = { nosuch = 30 }\n", "tuner.moderate_deltas.nosuch"),
    ("[nosuch]\nx = 1\n", "nosuch"),
])
def test_config_validate_names_the_field(tmp_path, toml, field):
    from helpers import assert_config_refused

    assert_config_refused(tmp_path, toml, field)


def test_a_tuner_rule_table_is_replaced_not_merged(tmp_path):
    from soaklib.core.config import load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text("[tuner]\nmoderate_deltas = { tail_age_ms = 30 }\n")
    assert load_config(cfg)["tuner"]["moderate_deltas"] == {"tail_age_ms": 30}


def test_every_command_judges_a_run_by_the_config_it_was_made_with(tmp_path):
    """A run made with strict goals fails `soak gate` and shows as failed in `soak metrics`, without
    repeating --config; an explicit --config still wins."""
    strict = tmp_path / "strict.toml"
    strict.write_text("[goals.net_bps]\nhard = 1000.0\nsoft = 1001.0\n")
    runs = tmp_path / "runs"

    def soak(*args):
        return subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    p = soak("run", "--config", strict, "--iterations", 3, "--duration-s", 600, "--runs-dir", runs)
    assert p.returncode == 0, p.stderr
    gate = soak("gate", runs / "latest", "--last-n", 3)
    assert gate.returncode == 1 and "1000" in gate.stdout
    prom = tmp_path / "m.prom"
    assert soak("metrics", runs / "latest", "--textfile", prom).returncode == 0
    assert 'soak_gate_verdict{verdict="fail"} 1.0' in prom.read_text()
    lenient = tmp_path / "lenient.toml"
    lenient.write_text("[goals.net_bps]\nhard = -50.0\nsoft = -49.0\n")
    again = soak("gate", runs / "latest", "--last-n", 3, "--config", lenient)
    net_row = again.stdout.split("net_bps", 1)[1].splitlines()[0]
    assert "-50" in net_row and "1000" not in net_row


def test_report_judges_the_run_by_its_own_config_too(tmp_path):
    from soaklib.core import io as _io

    strict = tmp_path / "strict.toml"
    strict.write_text("[goals.net_bps]\nhard = 1000.0\nsoft = 1001.0\n")
    runs = tmp_path / "runs"
    for args in (["run", "--config", strict, "--iterations", 3, "--duration-s", 600, "--runs-dir", runs],
                 ["report", runs / "latest", "--last-n", 3, "--no-simulate"]):
        p = subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
    snap = _io.read_json(runs / "latest" / "reports" / "analysis" / "POST_SOAK_SNAPSHOT.json")
    assert snap["verdict"] == "FAIL"
    assert "1000" in (runs / "latest" / "reports" / "analysis" / "POST_SOAK_AUDIT.md").read_text()


def test_the_gate_fails_a_deliberately_bad_simulated_run(tmp_path):
    """The `bad` profile without tuning, on the real simulator: `soak gate` must exit 1 naming FAIL."""
    runs = tmp_path / "runs"

    def soak(*args):
        return subprocess.run([sys.executable, "-m", "soaklib", *map(str, args)], capture_output=True, text=True,
                              timeout=300)

    p = soak("run", "--profile", "bad", "--no-auto-tune", "--iterations", 8, "--seed", 3, "--runs-dir", runs)
    assert p.returncode == 0, p.stderr
    g = soak("gate", runs / "latest")
    assert g.returncode == 1 and "verdict: FAIL" in g.stdout, g.stdout + g.stderr
    assert g.stdout.count("FAIL") >= 3  # at least two goals fail, plus the verdict line
