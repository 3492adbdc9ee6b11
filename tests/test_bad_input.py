"""Bad input (issue 8 item 4): each → one line naming the file and the problem, exit 2, no traceback,
nothing written. Exercised through ``open_run``, ``soak gate`` and ``soak report`` on both the
seed layout and soaklib's own run layout, and through ``soak run --runner``."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_seed import seed_write, soak_record

from soaklib import open_run
from soaklib.cli import main
from soaklib.core.config import load_config
from soaklib.core.errors import RecordError
from soaklib.core.io import MAX_JSON_BYTES
from soaklib.core.params import registry
from soaklib.execute.external import applied_params
from soaklib.store import legacy as seed_mod
from soaklib.store.synthetic import write_synthetic_run

ROOT = Path(__file__).resolve().parents[1]


def soak(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ei:
        main(list(args))
    out, err = capsys.readouterr()
    return int(ei.value.code or 0), out, err


def listing(d: Path) -> dict[str, float]:
    """Every path under ``d`` with its mtime (symlinks not followed): to prove nothing was written."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(d))] = st.st_mtime_ns
    return out


def make_seed(tmp_path: Path) -> Path:
    d = tmp_path / "seed run"
    for n in range(1, 9):
        seed_write(d / f"ITER_SUMMARY_{n}.json", soak_record(n, net=3.0))
    return d


def make_soaklib(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path / "runs", 8, latest=False)


def _rec(d: Path, n: int) -> Path:
    return d / f"ITER_SUMMARY_{n}.json"


def _edit(d: Path, n: int, fn) -> None:
    p = _rec(d, n)
    obj = json.loads(p.read_text())
    fn(obj)
    p.write_text(json.dumps(obj, indent=2))


def _set(path: str, value):
    def fn(obj):
        *parents, leaf = path.split(".")
        for k in parents:
            obj = obj[k]
        obj[leaf] = value
    return fn


def corrupt(case: str, d: Path, outside: Path) -> tuple[str, str]:
    """Apply one bad input to run folder ``d``; return (file name expected in the message, problem text)."""
    p = _rec(d, 3)
    if case == "truncated":
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
        return p.name, "invalid JSON"
    if case == "nan":
        p.write_text(p.read_text().replace('"net_bps": 3.0', '"net_bps": NaN', 1))
        return p.name, "NaN"
    if case == "infinity":
        p.write_text(p.read_text().replace('"net_bps": 3.0', '"net_bps": -Infinity', 1))
        return p.name, "Infinity"
    if case == "string-number":
        _edit(d, 3, _set("summary.p95_latency_ms", "250"))
        return p.name, "p95_latency_ms"
    if case == "iteration-0":
        _rec(d, 1).rename(_rec(d, 0))
        return "ITER_SUMMARY_0.json", "iteration"
    if case == "iteration-negative":
        _edit(d, 3, _set("iteration", -3))
        return p.name, "iteration"
    if case == "duplicate":
        (d / "ITER_SUMMARY_005.json").write_bytes(_rec(d, 5).read_bytes())
        return "ITER_SUMMARY_005.json", "iteration 5"
    if case == "non-utf8":
        p.write_bytes(p.read_bytes().replace(b'"iteration"', b'"iter\xff\xfeation"', 1))
        return p.name, "UTF-8"
    if case == "empty":
        p.write_bytes(b"")
        return p.name, "empty"
    if case == "huge":
        with open(p, "r+b") as fh:  # sparse: the size check must refuse it before reading
            fh.truncate(50 * 1024 * 1024)
        return p.name, "limit"
    if case == "ratio-out-of-range":
        _edit(d, 3, _set("summary.risk_ratio", 1.7))
        return p.name, "risk_ratio"
    if case == "symlink-outside":
        target = outside / "ITER_SUMMARY_3.json"
        target.write_bytes(p.read_bytes())
        p.unlink()
        p.symlink_to(target)
        return p.name, "outside"
    if case == "directory":
        p.unlink()
        p.mkdir()
        return p.name, "directory"
    raise AssertionError(case)


CASES = ["truncated", "nan", "infinity", "string-number", "iteration-0", "iteration-negative", "duplicate",
         "non-utf8", "empty", "huge", "ratio-out-of-range", "symlink-outside", "directory"]


def _cases():
    for layout in ("seed", "soaklib"):
        for case in CASES:
            yield pytest.param(layout, case, id=f"{case}-{layout}")


@pytest.mark.parametrize("layout, case", list(_cases()))
def test_bad_record_one_line_exit_2_nothing_written(tmp_path, capsys, layout, case):
    d = make_seed(tmp_path) if layout == "seed" else make_soaklib(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fname, problem = corrupt(case, d, outside)
    before = listing(d)
    with pytest.raises(RecordError) as ei:
        open_run(d)
    assert fname in str(ei.value) and problem in str(ei.value), str(ei.value)
    rc, out, err = soak(capsys, "gate", str(d))
    assert rc == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soak: error: "), err
    assert fname in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert listing(d) == before, "something was written"


@pytest.mark.parametrize("case", ["truncated", "duplicate", "symlink-outside"])
def test_bad_record_through_soak_report(tmp_path, capsys, case):
    d = make_seed(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    fname, problem = corrupt(case, d, outside)
    before = listing(d)
    rc, out, err = soak(capsys, "report", str(d))
    assert rc == 2 and fname in err and problem in err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1
    assert listing(d) == before


@pytest.mark.parametrize("layout", ["seed", "soaklib"])
def test_utf8_bom_is_accepted(tmp_path, layout):
    d = make_seed(tmp_path) if layout == "seed" else make_soaklib(tmp_path)
    p = _rec(d, 3)
    p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    run = open_run(d)
    assert len(run.records) == 8 and run.records[2]["iteration"] == 3


def test_huge_limit_is_the_io_limit():
    assert MAX_JSON_BYTES < 50 * 1024 * 1024


@pytest.mark.parametrize("what", ["TUNING_REPORT.json", "reports/analysis/POST_SOAK_SNAPSHOT.json"])
def test_bad_side_files_of_a_seed_layout(tmp_path, capsys, what):
    d = make_seed(tmp_path)
    p = d / what
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('{"iterations": [')
    before = listing(d)
    rc, out, err = soak(capsys, "gate", str(d))
    assert rc == 2 and p.name in err and "invalid JSON" in err and "Traceback" not in err
    assert listing(d) == before


def test_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = soak(capsys, "gate", str(tmp_path / "empty"))
    assert rc == 2 and "not a run directory" in err
    rc, _, err = soak(capsys, "gate", str(tmp_path / "missing dir"))
    assert rc == 2 and "missing dir" in err


def test_implausible_iteration_number_refused_fast(tmp_path, capsys):
    d = make_seed(tmp_path)
    seed_write(d / "ITER_SUMMARY_99999999999.json", soak_record(99999999999))
    rc, _, err = soak(capsys, "gate", str(d))  # would be a 10^11-long gap list
    assert rc == 2 and "ITER_SUMMARY_99999999999.json" in err and "max_iteration_number" in err


def test_seed_content_iteration_must_match_file_name(tmp_path):
    d = make_seed(tmp_path)
    _edit(d, 4, _set("iteration", 5))
    with pytest.raises(RecordError, match="ITER_SUMMARY_4.json: field 'iteration': iteration 5 does not match"):
        open_run(d)


# --- soak run --runner with bad input ------------------------------------------------------------


def test_runner_bad_options(tmp_path, capsys):
    bot = f"{sys.executable} {ROOT / 'examples' / 'bot.py'}"
    runs = tmp_path / "runs"
    for args, needle in ((["--iteration-timeout", "0"], "--iteration-timeout"),
                         (["--on-failure", "explode"], "explode"),
                         (["--iterations", "0"], "--iterations")):
        rc, out, err = soak(capsys, "run", "--runner", bot, *args, "--runs-dir", str(runs))
        assert rc == 2 and needle in out + err and "Traceback" not in out + err
    rc, _, err = soak(capsys, "run", "--runner", "python3 'unbalanced", "--runs-dir", str(runs))
    assert rc == 2 and "cannot parse the command line" in err
    assert not runs.exists() or not any(runs.iterdir())


# --- untrusted strings in Markdown/HTML outputs --------------------------------------------------

EVIL = "<script>alert(1)</script>|*x*"


def _evil_window_run(tmp_path: Path) -> Path:
    d = tmp_path / "w"
    for n in range(1, 9):
        seed_write(d / f"ITER_SUMMARY_{n:03d}.json",
                   {"symbol": EVIL, "net_bps": 3.0, "maker_taker_ratio": 0.9, "p95_latency_ms": 200.0,
                    "risk_ratio": 0.3, "profile": EVIL, "notes": EVIL})
    seed_write(d / "runtime_overrides.json", {"min_interval_ms": 60, "tail_age_ms": 600})
    return d


def test_untrusted_strings_escaped_in_gate_markdown(tmp_path, capsys):
    d = _evil_window_run(tmp_path)
    md = tmp_path / "summary.md"
    rc, out, err = soak(capsys, "gate", str(d), "--summary-md", str(md))
    assert rc == 0, out + err
    assert "<script>" not in md.read_text()
    assert open_run(d).manifest["profile"]["name"] == EVIL  # kept verbatim in data, escaped on output


def test_untrusted_strings_escaped_in_report_and_bundle(tmp_path, capsys):
    """Every Markdown/HTML output of `soak report`, `soak verify` and `soak bundle` over a seed run whose
    profile, symbol and notes are an HTML payload: shown escaped, never raw."""
    d = _evil_window_run(tmp_path)
    for args in (["report", str(d)], ["verify", str(d)], ["bundle", str(d), "--out", str(tmp_path / "bundle"), "--version", "v1.0.0"]):
        rc, out, err = soak(capsys, *args)
        assert rc == 0, (args, out + err)
    outputs = [p for p in list((d / "reports").rglob("*")) + list((tmp_path / "bundle").rglob("*"))
               if p.suffix in (".md", ".html", ".yml")]
    assert len(outputs) >= 8
    for p in outputs:
        assert "<script>alert(1)</script>" not in p.read_text(), p
    audit_md = (d / "reports" / "analysis" / "POST_SOAK_AUDIT.md").read_text()
    assert "&lt;script&gt;alert" in audit_md  # the profile is shown, escaped


def test_bot_stderr_escaped_in_reports(tmp_path, capsys):
    """A failed iteration's stderr tail comes from the bot: untrusted, shown escaped."""
    bot = tmp_path / "evilbot.py"
    bot.write_text(textwrap.dedent(f"""
        import json, os, sys
        if os.environ["SOAK_ITERATION"] == "2":
            print({EVIL!r}, file=sys.stderr)
            sys.exit(1)
        json.dump({{"totals": {{"net_bps": 3.0, "p95_latency_ms": 200, "risk_ratio": 0.3,
                               "maker_taker_ratio": 0.9}}}}, open(os.environ["SOAK_OUTPUT"], "w"))
    """))
    runs = tmp_path / "runs"
    rc, out, err = soak(capsys, "run", "--runner", f"{sys.executable} {bot}", "--iterations", "3",
                        "--runs-dir", str(runs))
    assert rc == 0, out + err
    rc, out, err = soak(capsys, "report", str(runs / "latest"))
    assert rc == 0, out + err
    analysis = runs / "latest" / "reports" / "analysis"
    for p in list(analysis.glob("*.md")) + list(analysis.glob("*.html")):
        assert "<script>alert(1)</script>" not in p.read_text(), p
    assert "&lt;script&gt;alert" in (analysis / "FAILURES.md").read_text()


# --- fuzz: whatever JSON a seed file or a bot output holds, the answer is a record or a RecordError ----


_REG = registry(load_config())

_KEYS = st.sampled_from(["iteration", "summary", "tuning", "net_bps", "risk_ratio", "maker_taker_ratio", "fills",
                         "blocks", "symbol", "edge_bps", "timestamp", "mode", "deltas", "applied", "skip_reason",
                         "maker_volume", "taker_count", "block_reasons", "risk", "ratio", "count", "totals",
                         "total", "p95_latency_ms", "counts", "proposed_deltas", "latency", "p95", "x", "engine",
                         "min_interval_ms", "iterations", "kpi_last8", "mean"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids, max_size=5),
    max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_KEYS, _JSON, max_size=6))
def test_fuzz_seed_record_and_edge_report_never_crash(doc):
    for call in (lambda: seed_mod.normalise_record(doc, 1, path="ITER_SUMMARY_1.json"),
                 lambda: seed_mod.summary_from_edge(doc, path="EDGE_REPORT.json"),
                 lambda: applied_params(doc, _REG, path="SOAK_OUTPUT.json"),
                 lambda: seed_mod.normalise_tuning_report(doc.get("x", doc), path="TUNING_REPORT.json"),
                 lambda: seed_mod.normalise_snapshot(doc, path="POST_SOAK_SNAPSHOT.json")):
        try:
            call()
        except RecordError as exc:
            assert ".json" in str(exc)
