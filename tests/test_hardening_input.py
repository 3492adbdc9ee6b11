"""Hostile input (issue 19, items 1-5, 8, 9): each ends in one line naming the file (and the field),
exit 2, no traceback, no hang, nothing left behind -- through the one JSON reader (core/io), the TOML
config loader (core/config) and the CLI options."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import deadline, run_cli
from test_bundle import make_reported_run, ramp

from soaklib import open_run
from soaklib.core import io as _io
from soaklib.core import options, schema
from soaklib.core.config import load_config
from soaklib.core.errors import CheckFailed, ConfigError, RecordError
from soaklib.publish.bundle import build_bundle, verify_bundle
from soaklib.store.synthetic import write_synthetic_run


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soak: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def run(tmp_path) -> Path:
    return write_synthetic_run(tmp_path / "runs", 8, latest=False)


def record(run: Path, n: int = 3) -> Path:
    return run / f"ITER_SUMMARY_{n}.json"


def replace_net_bps(run: Path, literal: str) -> Path:
    """Record 3 with its summary.net_bps written as ``literal`` (raw JSON text)."""
    p = record(run)
    text, k = re.subn(r'"net_bps": [-0-9.e+]+', f'"net_bps": {literal}', p.read_text(), count=1)
    assert k == 1
    p.write_text(text)
    return p


def bot(tmp_path: Path, body: str) -> str:
    """A tiny external bot (DESIGN §13): ``body`` writes SOAK_OUTPUT."""
    f = tmp_path / "bot.py"
    f.write_text("import json, os\nout = os.environ['SOAK_OUTPUT']\n" + textwrap.dedent(body))
    return f"{sys.executable} {f}"


GOOD_TOTALS = '{"totals": {"net_bps": 3.0, "risk_ratio": 0.2, "p95_latency_ms": 250, "maker_taker_ratio": 0.9}}'


def failed_reason(tmp_path: Path, capsys, cmd: str) -> str:
    """Run one iteration with bot ``cmd``: the run completes (exit 0) and the iteration failed; its reason."""
    runs = tmp_path / "runs"
    code, out, err = run_cli(["run", "--runner", cmd, "--iterations", "1", "--runs-dir", runs], capsys)
    assert code == 0 and "Traceback" not in err, out + err
    rec = _io.read_json(runs / "latest" / "ITER_SUMMARY_1.json")
    assert rec["status"] == "failed", rec
    return rec["failure"]["reason"]


# -- item 1: a FIFO in place of a file -------------------------------------------------------------

def test_fifo_record_is_refused_without_blocking(run, capsys):
    f = record(run)
    f.unlink()
    os.mkfifo(f)
    with deadline(20):
        with pytest.raises(RecordError, match="FIFO") as ei:
            open_run(run)
        assert str(ei.value).startswith(str(f))
        for cmd in (["verify", run], ["gate", run], ["metrics", run]):
            code, _out, err = run_cli(cmd, capsys)
            assert code == 2 and str(f) in one_line(err) and "FIFO" in err, (cmd, err)


def test_fifo_run_manifest_blocks_no_resume(run, capsys):
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")
    with deadline(20):
        code, _out, err = run_cli(["run", "--resume", run], capsys)
    assert code == 2 and "run.json" in one_line(err)


def test_bot_output_fifo_is_a_failed_iteration(tmp_path, capsys):
    with deadline(60):
        reason = failed_reason(tmp_path, capsys, bot(tmp_path, "os.unlink(out) if os.path.exists(out) else None\n"
                                                               "os.mkfifo(out)\n"))
    assert "SOAK_OUTPUT" in reason and "FIFO" in reason


def test_fifo_config_is_refused(tmp_path, capsys):
    f = tmp_path / "c.toml"
    os.mkfifo(f)
    with deadline(20):
        code, _out, err = run_cli(["config", "validate", f], capsys)
    assert code == 2 and "FIFO" in one_line(err) and str(f) in err


# -- item 2: nesting depth -------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_deep_record_is_refused(run, capsys):
    p = replace_net_bps(run, DEEP)
    with pytest.raises(RecordError, match="nested deeper than 100"):
        _io.read_json(p)
    code, _out, err = run_cli(["gate", run], capsys)
    assert code == 2 and str(p) in one_line(err) and "nested deeper" in err


def test_nesting_at_the_limit_loads_and_strings_do_not_count(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("[" * 100 + "]" * 100)
    assert _io.read_json(f) is not None
    f.write_text('{"s": "' + "[" * 5000 + '"}')  # brackets inside a string are text
    assert _io.read_json(f) == {"s": "[" * 5000}
    f.write_text("[" * 101 + "]" * 101)
    with pytest.raises(RecordError, match="nested deeper"):
        _io.read_json(f)


def test_deep_bot_output_is_a_failed_iteration(tmp_path, capsys):
    write = f"open(out, 'w').write('{{\"totals\": ' + '{DEEP}' + '}}')\n"
    reason = failed_reason(tmp_path, capsys, bot(tmp_path, write))
    assert "SOAK_OUTPUT" in reason and "nested deeper" in reason


def test_deep_bundle_manifest_is_one_problem(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "MANIFEST.json").write_text('{"files": ' + DEEP + "}")
    # a bundle that does not verify is a failed check (exit 1), the reason in its one line
    with pytest.raises(CheckFailed, match="MANIFEST.json: invalid JSON: arrays/objects nested deeper than 100"):
        verify_bundle(b)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, Path]:
    """A built bundle and a git repository to tag (nothing is tagged: the manifest is refused first)."""
    root = tmp_path_factory.mktemp("release")
    out = root / "v1.0.0"
    build_bundle(make_reported_run(root / "runs", params=ramp), out, load_config())
    repo = root / "repo"
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.invalid",
                    "commit", "-q", "--allow-empty", "-m", "x"], check=True, env=env)
    return out, repo


BROKEN_MANIFESTS = {
    "not-json": "{not json",
    "deep": '{"files": ' + DEEP + "}",
    "a-list": "[]",
    "files-a-list": '{"schema_version": "2.0", "generator": "g", "version": "v1.0.0", "files": []}',
    "bytes-a-string": '{"schema_version": "2.0", "generator": "g", "version": "v1.0.0", '
                      '"files": {"CHANGELOG.md": {"sha256": "00", "bytes": "12"}}}',
    "no-files": '{"schema_version": "2.0", "generator": "g", "version": "v1.0.0"}',
    "no-version": '{"schema_version": "2.0", "generator": "g", "files": {}}',
    "empty": "",
}


@pytest.mark.parametrize("kind", list(BROKEN_MANIFESTS))
def test_broken_manifest_is_bad_input_for_verify_and_tag(release, capsys, kind):
    """A MANIFEST.json that is not a manifest at all is bad input (exit 2, one line naming it); a
    well-formed one whose hashes disagree is a failed verification (exit 1, next test)."""
    out, repo = release
    m = out / "MANIFEST.json"
    orig = m.read_bytes()
    try:
        m.write_text(BROKEN_MANIFESTS[kind])
        for argv in (["bundle", "verify", out], ["tag", out, "--repo", repo, "--dry-run"]):
            code, _o, err = run_cli(argv, capsys)
            assert code == 2 and "MANIFEST.json" in one_line(err), (argv, code, err)
    finally:
        m.write_bytes(orig)


def test_well_formed_manifest_that_does_not_match_fails_verification(release, capsys):
    out, repo = release
    assert run_cli(["bundle", "verify", out], capsys)[0] == 0
    m = out / "MANIFEST.json"
    orig = m.read_bytes()
    try:
        doc = _io.read_json(m)
        doc["files"]["CHANGELOG.md"]["sha256"] = "0" * 64  # same shape, wrong hash
        _io.write_json(m, doc)
        for argv in (["bundle", "verify", out], ["tag", out, "--repo", repo, "--dry-run"]):
            code, _o, err = run_cli(argv, capsys)
            assert code == 1 and "MANIFEST.json" in one_line(err), (argv, code, err)
    finally:
        m.write_bytes(orig)


@pytest.mark.parametrize("toml", ["a = " + DEEP + "\n", "a = " + "{x=" * 5000 + "1" + "}" * 5000 + "\n"],
                         ids=["arrays", "inline-tables"])
def test_deep_toml_config_is_refused(tmp_path, capsys, toml):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match="nested deeper than"):
        load_config(f)
    code, _out, err = run_cli(["config", "validate", f], capsys)
    assert code == 2 and str(f) in one_line(err)


def test_toml_brackets_in_strings_and_comments_do_not_count(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\nscenario = "' + "[" * 100 + '"  # ' + "{" * 100 + "\nprofile = '" + "[" * 50 + "'\n")
    assert load_config(f)["run"]["scenario"] == "[" * 100


# -- item 3: number magnitude ----------------------------------------------------------------------

def test_400_digit_integer_in_a_record_is_refused(run, capsys):
    p = replace_net_bps(run, "9" * 400)
    with pytest.raises(RecordError, match="integer of 400 digits"):
        _io.read_json(p)
    code, _out, err = run_cli(["verify", run], capsys)
    assert code == 2 and str(p) in one_line(err)


def test_400_digit_integer_in_bot_output_is_a_failed_iteration(tmp_path, capsys):
    reason = failed_reason(tmp_path, capsys, bot(tmp_path, f"""\
        open(out, 'w').write('{{"totals": {{"net_bps": 3.0, "events": {"9" * 400}}}}}')
    """))
    assert "integer of 400 digits" in reason


def test_64_bit_integers_still_load(tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"a": 18446744073709551615, "b": -9223372036854775808, "c": 1e300, "d": -2.5e-300}')
    assert _io.read_json(f) == {"a": 2**64 - 1, "b": -2**63, "c": 1e300, "d": -2.5e-300}


def test_400_digit_integer_in_toml_is_refused(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[report]\nlast_n = " + "9" * 400 + "\n")
    with pytest.raises(ConfigError, match="report.last_n.*64-bit integer"):
        load_config(f)


# -- item 4: 1e400 is not inf ----------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1e301"])
def test_out_of_range_float_is_refused(run, literal):
    p = replace_net_bps(run, literal)
    with pytest.raises(RecordError, match=r"out of range \(\|x\| <= 1e300\)") as ei:
        open_run(run)
    assert str(ei.value).startswith(str(p))


# -- item 5: duplicate keys, BOM -------------------------------------------------------------------

def test_duplicate_key_is_refused_naming_it(run, capsys):
    p = record(run)
    p.write_text(p.read_text().replace('"status": "ok",', '"status": "ok", "status": "failed",', 1))
    with pytest.raises(RecordError, match='duplicate key "status"'):
        open_run(run)
    code, _out, err = run_cli(["gate", run], capsys)
    assert code == 2 and str(p) in one_line(err)


def test_bom_is_accepted_with_a_warning_naming_the_file(run, caplog):
    p = record(run)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    with caplog.at_level(logging.WARNING, logger="soaklib.core.io"):
        r = open_run(run)
    assert len(r.records) == 8
    assert [m for m in caplog.messages if "byte-order mark" in m] == [f"{p}: warning: starts with a UTF-8 "
                                                                       "byte-order mark (BOM); read without it"]


def test_bom_warning_reaches_the_terminal_as_one_line(run):
    import subprocess

    p = record(run)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    res = subprocess.run([sys.executable, "-m", "soaklib", "verify", str(run)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [f"{p}: warning: starts with a UTF-8 byte-order mark (BOM); read without it"]


def test_bom_in_a_toml_config_is_accepted(tmp_path):
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xef\xbb\xbf[run]\niterations = 3\n")
    assert load_config(f)["run"]["iterations"] == 3


# -- item 8: CLI values ----------------------------------------------------------------------------

def test_huge_duration_is_refused_before_a_run_dir_exists(tmp_path, capsys):
    runs = tmp_path / "runs"
    for v in ("1e308", "86401"):
        code, _out, err = run_cli(["run", "--duration-s", v, "--iterations", "1", "--runs-dir", runs], capsys)
        assert code == 2 and "--duration-s" in one_line(err) and "<= 86400" in err
    f = tmp_path / "c.toml"
    f.write_text("[run]\nduration_s = 1e308\n")
    code, _out, err = run_cli(["run", "--config", f, "--iterations", "1", "--runs-dir", runs], capsys)
    assert code == 2 and "run.duration_s" in one_line(err)
    assert not runs.exists()


@pytest.mark.parametrize("value", ["nan", "NaN", "-nan", "inf", "1e400", "1.5", "x"])
def test_verify_threshold_must_be_a_number_in_0_1(run, capsys, value):
    code, _out, err = run_cli(["verify", run, "--threshold", value], capsys)
    assert code == 2 and "--threshold" in one_line(err)
    assert not (run / "reports").exists()


@pytest.mark.parametrize("args, field", [
    (["--seed", "1.5"], "--seed"),
    (["--seed", "9" * 30], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--iterations", "2.5"], "--iterations"),
    (["--iterations", "1000001"], "--iterations"),
    (["--duration-s", "nan"], "--duration-s"),
    (["--duration-s", "-inf"], "--duration-s"),
])
def test_run_options_out_of_range(tmp_path, capsys, args, field):
    runs = tmp_path / "runs"
    code, _out, err = run_cli(["run", *args, "--runs-dir", runs], capsys)
    assert code == 2 and field in one_line(err)
    assert not runs.exists()


# Every numeric option of every command, each with values beyond its bounds: one line naming the
# option and what it expects, exit 2, nothing written. (`soak run` options: above and in test_fuzz.)
BOUNDED = [
    ("gate", "--last-n", "1000001", "in [1, 1000000]"),
    ("gate", "--last-n", "9" * 30, "in [1, 1000000]"),
    ("report", "--last-n", "0", "in [1, 1000000]"),
    ("report", "--last-n", "-5", "in [1, 1000000]"),
    ("report", "--last-n", "99999999999999999999999", "in [1, 1000000]"),
    ("report", "--last-n", "2.5", "an integer"),
    ("report", "--last-n", "9" * 400, "in [1, 1000000]"),  # beyond a float: found by test_fuzz_long
    ("run", "--confirm-iterations", "9" * 400, "in [0, 10000]"),
    ("run", "--confirm-iterations", "-1", "in [0, 10000]"),
    ("run", "--iteration-timeout", "1e308", "<= 604800"),
    ("run", "--iteration-timeout", "inf", "<= 604800"),
    ("run", "--iteration-timeout", "nan", "<= 604800"),
    ("run", "--iteration-timeout", "-1", "> 0 and <= 604800"),
    ("run", "--metrics-port", "65536", "in [0, 65535]"),
    ("metrics", "--serve-seconds", "inf", "<= 2592000"),
    ("metrics", "--serve-seconds", "nan", "<= 2592000"),
    ("metrics", "--serve-seconds", "1e308", "<= 2592000"),
    ("metrics", "--serve", "127.0.0.1:70000", "in [0, 65535]"),
    ("verify", "--threshold", "1.5", "in [0, 1]"),
]


@pytest.mark.parametrize("cmd, opt, value, expected", BOUNDED, ids=[f"{c}{o}={v[:12]}" for c, o, v, _ in BOUNDED])
def test_numeric_options_are_bounded(run, tmp_path, capsys, cmd, opt, value, expected):
    runs = tmp_path / "new-runs"
    argv = {"run": ["run", opt, value, "--iterations", "1", "--duration-s", "60", "--runs-dir", runs],
            "metrics": ["metrics", run, "--serve", ":0", "--serve-seconds", "0.01", opt, value]}.get(cmd, [cmd, run, opt, value])
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with deadline(20):
        code, _out, err = run_cli(argv, capsys)
    line = one_line(err)
    assert code == 2 and f"field '{opt}': expected " in line and expected in line, line
    assert not runs.exists() and sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_option_bounds_are_the_config_schema_bounds(tmp_path, capsys):
    """An option that sets a config key is bounded by that key's schema (one number, one place): the
    same value in a config file is refused naming the key."""
    run_schema = schema.load("config")["properties"]["run"]["properties"]
    assert options.bounds("--iteration-timeout") is run_schema["iteration_timeout_s"]
    assert options.bounds("--last-n") is schema.load("config")["properties"]["report"]["properties"]["last_n"]
    for toml, field in (("[run]\niteration_timeout_s = 1e308\n", "run.iteration_timeout_s"),
                        ("[report]\nlast_n = 1000001\n", "report.last_n")):
        f = tmp_path / "c.toml"
        f.write_text(toml)
        code, _out, err = run_cli(["config", "validate", f], capsys)
        assert code == 2 and field in one_line(err)


@pytest.mark.parametrize("toml, field", [
    ("[run]\niterations = 2.5\n", "run.iterations"),
    ("[run]\nseed = 1.5\n", "run.seed"),
    ("[run]\niterations = 1000001\n", "run.iterations"),
])
def test_config_non_integers_are_not_truncated(tmp_path, capsys, toml, field):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    code, _out, err = run_cli(["config", "validate", f], capsys)
    assert code == 2 and f"field '{field}'" in one_line(err) and str(f) in err


# -- item 9: values that would break later ---------------------------------------------------------

@pytest.mark.parametrize("toml, field, text", [
    ("[snapshot]\ntrend_max_points = 0\n", "snapshot.trend_max_points", "an integer >= 2"),
    ("[metrics]\nhmean_window = 0\n", "metrics.hmean_window", "an integer >= 1"),
    ("[bundle]\nphase_traffic_pct = [5, 25]\n", "bundle.phase_duration", "expected 2 entries"),
    ("[bundle]\nphase_fraction = [0.5, 1.0]\n", "bundle.phase_fraction", "expected 4 entries"),
    ("[bundle]\nphase_traffic_pct = [50, 25, 5, 100]\n", "bundle.phase_traffic_pct.1", "more traffic"),
    ("[bundle]\nphase_fraction = [0.9, 0.5, 0.75, 1.0]\n", "bundle.phase_fraction.1", "fraction >= phase 1"),
    ("[goals]\nnet_bps_min = 3\n", "goals.net_bps_min", "expected an object"),
    ('[goals.net_bsp]\nagg = "mean"\nop = ">="\nhard = 2.5\n', "goals.net_bsp", "unknown KPI"),
])
def test_config_values_that_break_later_are_refused_up_front(tmp_path, capsys, toml, field, text):
    f = tmp_path / "c.toml"
    f.write_text(toml)
    code, _out, err = run_cli(["config", "validate", f], capsys)
    line = one_line(err)
    assert code == 2 and f"field '{field}'" in line and str(f) in line and text in line, line


def test_a_goal_on_any_known_kpi_is_accepted(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[goals.ws_lag_p95_ms]\nagg = "max"\nop = "<="\nhard = 500\n')
    assert load_config(f)["goals"]["ws_lag_p95_ms"]["hard"] == 500


def test_a_line_break_in_a_key_stays_on_one_line(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text('[goals."x\\ny\\u2028z"]\nagg = "mean"\nop = ">="\nhard = 1.0\n')
    code, _out, err = run_cli(["config", "validate", f], capsys)
    assert code == 2 and "field 'goals.x\\ny\\u2028z': unknown KPI" in one_line(err)


@pytest.mark.parametrize("engine", ["sim", "hbt"])
def test_deep_scenario_toml_is_one_line(tmp_path, engine, capsys):
    """A user scenario file goes through the strict TOML reader: 100 000 levels → one line, exit 2."""
    from helpers import run_cli

    f = tmp_path / "deep.toml"
    f.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = run_cli(["run", "--iterations", "1", "--runner", engine, "--scenario", f,
                            "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 2 and err.count("\n") == 1 and "nested deeper" in err and str(f) in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
