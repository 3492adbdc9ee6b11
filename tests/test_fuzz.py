"""Fuzz (issue 19): hostile variants of every input soaklib reads -- iteration records (ITER_SUMMARY),
bot outputs (EDGE_REPORT format, through the real external runner), TOML configs, a bundle's
MANIFEST.json and CLI option values -- each either loads or is refused in exactly one line by a
SoakError with exit code 2 (the CLI: exit 2 and one ``soak: error:`` line); never a traceback, a hang
(every case runs under a SIGALRM deadline) or unbounded memory.

Mutations of a valid document: a value replaced by a hostile literal (numbers as strings, huge,
negative, NaN/inf, 1e400, 400-digit integers, deep nesting), a key duplicated, a value's type changed,
a line dropped, truncation, random bytes inserted, a BOM, the whole document nested deeply or replaced
by random bytes; one to three of them per case.

Seeds: hypothesis runs with ``derandomize=True`` and no example database, so every run draws the same
cases. ``test_fuzz_quick`` (default) draws a few dozen cases per input kind (< 60 s in all);
``test_fuzz_long`` (``-m slow``) draws 10 500, writes the counts per input kind and outcome and the
peak memory to ``<pytest basetemp>/fuzz_counts.json`` (and prints them), and checks the process's
peak RSS rises less than 500 MB above what the process held when the fuzz started.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import resource
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import deadline
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soaklib import open_run
from soaklib.cli import main
from soaklib.core import io as _io
from soaklib.core.config import load_config
from soaklib.core.errors import SoakError
from soaklib.core.params import registry
from soaklib.execute.base import RunnerOutput
from soaklib.execute.external import CommandRunner
from soaklib.publish.bundle import verify_bundle
from soaklib.store.synthetic import write_synthetic_run

CASE_TIMEOUT_S = 30  # one case; a hang fails the test instead of blocking it
PEAK_RSS_MB = 500
QUICK = {"record": 40, "bot_output": 15, "config": 40, "manifest": 40, "cli": 40}
LONG = {"record": 3000, "bot_output": 1500, "config": 3000, "manifest": 1500, "cli": 1500}

# -- hostile literals ------------------------------------------------------------------------------

DEEP = ["[" * n + "]" * n for n in (99, 100, 101, 150, 100_000)] + ['{"a":' * 120 + "1" + "}" * 120]
JSON_LITERALS = st.one_of(
    st.sampled_from(["1e400", "-1e400", "1e300", "1e301", "-1e300", "1E-400", "NaN", "Infinity", "-Infinity",
                     "9" * 400, "-" + "9" * 21, "9" * 20, "18446744073709551616", "1" * 5000, "0", "-0", "-1",
                     "0.0", "-0.0", "2.5", "null", "true", "false", "[]", "{}", '""', '"250"', '"nan"', '"1e400"',
                     '"\\u0000"', '"\\ud800"', '"a\\nb"', '{"x": 1, "x": 2}', *DEEP]),
    st.integers().map(str),
    st.floats().map(json.dumps),
    st.text(max_size=20).map(json.dumps),
)
TOML_LITERALS = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "+nan", "1e400", "-1e400", "1e308", "9" * 400, "-" + "9" * 19,
                     "9223372036854775807", "9223372036854775808", "-9223372036854775808", "2.5", "1.5", "0", "-1",
                     "0.0", "true", '"3"', '"x"', '""', "[]", "{}", "[1, 2]", "{ a = 1 }", '"""abc"""', "'''x'''",
                     "0x10", "1_000", "1979-05-27T07:32:00Z", '"a\\nb"', "[" * 40 + "]" * 40,
                     "[" * 100_000 + "]" * 100_000, "{x=" * 40 + "1" + "}" * 40, "{x=" * 5000 + "1" + "}" * 5000]),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=20).map(json.dumps),
)
KEYS = st.one_of(st.sampled_from(["", "a\nb", "x\u2028y", "<script>", "net_bsp", "\x1b[31m"]),
                 st.text(max_size=10)).map(json.dumps)  # as a JSON string / TOML quoted key
CLI_VALUES = st.one_of(
    st.sampled_from(["1e3", "0x10", "1_000", " 5", "5 ", "+5", "-0", "0", "1", "2.5", "2.0", "nan", "NaN", "-nan",
                     "inf", "-inf", "1e308", "1e400", "9" * 400, "9" * 5000, "", "\u0663", "1e-400", "86400",
                     "86400.0001", "1000000", "1000001", "65535", "65536", "continue", "stop", "0.95", "-1"]),
    st.integers().map(str),
    st.floats().map(repr),
    st.text(max_size=12),
)

# -- valid bases -----------------------------------------------------------------------------------

CONFIG_BASE = """\
[run]
iterations = 3
duration_s = 600.0
seed = 7
on_failure = "continue"

[goals.net_bps]
agg = "mean"
op = ">="
hard = 2.5
soft = 2.7

[snapshot]
trend_max_points = 256
round_digits = 4

[metrics]
hmean_window = 8

[bundle]
phase_traffic_pct = [5, 25, 50, 100]
phase_fraction = [0.5, 0.75, 0.9, 1.0]

[verify]
threshold = 0.95

[params.min_interval_ms]
max = 500
"""
TOML_TABLES = ["[run]", "[goals.net_bps]", "[goals.net_bsp]", "[goals]", "[snapshot]", "[metrics]", "[bundle]",
               "[verify]", "[params.min_interval_ms]", "[nonsense]", "[[run]]", "[run.x]"]
TOML_KEYS = ["iterations", "duration_s", "seed", "trend_max_points", "hmean_window", "phase_fraction", "threshold",
             "net_bps_min", "agg", "op", "hard", "soft", "max", "min", "default", "x"]


def _edge_base(reg) -> str:
    return json.dumps({
        "totals": {"net_bps": 3.0, "gross_bps": 4.1, "risk_ratio": 0.2, "p95_latency_ms": 250, "cancel_ratio": 0.3,
                   "maker_taker_ratio": 0.9, "events": 1500, "runtime_guards": {"partial_freeze_count": 0},
                   "fills": {"maker_count": 10, "taker_count": 2, "maker_volume": 1.5, "taker_volume": 0.2}},
        "applied_overrides": reg.defaults(),
        "symbols": {"BTCUSDT": {"net_bps": 3.0}},
        "runtime": {"version": "bot 1.0"},
    }, indent=2)


# -- mutations -------------------------------------------------------------------------------------

def _scalar_lines(lines: list[str], sep: str) -> list[int]:
    """Indexes of ``key<sep>value`` lines whose value is a scalar (no nested block opens there)."""
    return [i for i, ln in enumerate(lines) if sep in ln and not ln.rstrip().endswith(("{", "["))]


def _set_value(line: str, sep: str, value: str) -> str:
    key, _, rest = line.partition(sep)
    comma = "," if sep == ": " and rest.rstrip().endswith(",") else ""
    return f"{key}{sep}{value}{comma}"


@st.composite
def mutated(draw, base: str, literals, *, toml: bool) -> bytes:
    """``base`` with one to three hostile edits (a no-edit case too, so valid input is in the mix)."""
    sep = " = " if toml else ": "
    text = base
    tail: list[str] = []  # byte-level edits, applied last
    ops = ["value", "value", "dup", "type", "key", "drop", "truncate", "bytes", "bom", "wrap", "garbage"]
    if toml:
        ops += ["table", "add"]
    for op in draw(st.lists(st.sampled_from(ops), min_size=0, max_size=3)):
        lines = text.splitlines()
        scalars = _scalar_lines(lines, sep)
        if op in ("value", "type", "dup", "key") and scalars:
            i = scalars[draw(st.integers(0, len(scalars) - 1))]
            old = lines[i].partition(sep)[2].rstrip(",")
            if op == "value":
                lines[i] = _set_value(lines[i], sep, draw(literals))
            elif op == "type":
                new = draw(st.sampled_from([json.dumps(old), f"[{old}]", "{}", "null" if not toml else '""']))
                lines[i] = _set_value(lines[i], sep, new)
            elif op == "key":  # a key that is no name: control characters, line breaks, markup, empty
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = indent + draw(KEYS) + lines[i][len(lines[i].partition(sep)[0]):]
            else:  # the same key twice in one object / table
                lines.insert(i, lines[i] if toml or lines[i].endswith(",") else lines[i] + ",")
        elif op == "drop" and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif op == "table":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(TOML_TABLES)))
        elif op == "add":
            lines.insert(draw(st.integers(0, len(lines))), f"{draw(st.sampled_from(TOML_KEYS))} = {draw(literals)}")
        elif op == "wrap" and not toml:
            n = draw(st.sampled_from([1, 99, 100, 101, 100_000]))
            lines = ["[" * n, *lines, "]" * n]
        elif op in ("truncate", "bytes", "bom", "garbage"):
            tail.append(op)
        text = "\n".join(lines) + "\n"
    raw = text.encode("utf-8", errors="surrogatepass")
    for op in tail:
        if op == "truncate":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif op == "bytes":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
        elif op == "bom":
            raw = b"\xef\xbb\xbf" + raw
        else:
            raw = draw(st.binary(max_size=300))
    return raw


# -- the cases: each returns "loaded" or "refused", or fails ---------------------------------------

@dataclass
class Ctx:
    root: Path
    run: Path          # a one-iteration soaklib run (record cases rewrite its ITER_SUMMARY_1.json)
    record_base: str
    edge_base: str
    runner: CommandRunner
    bot_src: Path
    bot_run: Path
    params: dict
    bundle: Path
    manifest_base: str
    verify_run: Path   # a run verify writes into (cli cases)


def _refused(exc: SoakError, name: str) -> str:
    msg = str(exc)
    assert exc.exit_code == 2, msg
    assert "\n" not in msg and "\r" not in msg, msg  # one line
    assert name in msg, msg  # naming the file
    return "refused"


def case_record(ctx: Ctx, raw: bytes) -> str:
    f = ctx.run / "ITER_SUMMARY_1.json"
    f.write_bytes(raw)
    try:
        run = open_run(ctx.run)
    except SoakError as exc:
        return _refused(exc, f.name)
    assert len(run.iterations) == 1  # the frame every command builds from the records
    return "loaded"


def case_bot_output(ctx: Ctx, raw: bytes) -> str:
    ctx.bot_src.write_bytes(raw)
    out = ctx.runner.run(ctx.params, iteration=1, seed=1, run_dir=ctx.bot_run)  # never raises
    assert isinstance(out, RunnerOutput)
    if out.ok:
        return "loaded"
    reason = out.failure["reason"]
    assert reason.startswith("invalid output: SOAK_OUTPUT") and "\n" not in reason, reason
    return "refused"


def case_config(ctx: Ctx, raw: bytes) -> str:
    f = ctx.root / "fuzz.toml"
    f.write_bytes(raw)
    try:
        load_config(f)
    except SoakError as exc:
        return _refused(exc, f.name)
    return "loaded"


def case_manifest(ctx: Ctx, raw: bytes) -> str:
    m = ctx.bundle / "MANIFEST.json"
    m.write_bytes(raw)
    try:
        _io.read_json(m)
        outcome = "loaded"
    except SoakError as exc:
        outcome = _refused(exc, m.name)
    res = verify_bundle(ctx.bundle, raise_on_fail=False)  # a broken manifest is a problem listed, not a crash
    assert outcome == "loaded" or not res.ok
    return outcome


SENTINEL = "fuzz-no-such-profile.json"  # a run whose options pass stops here, before any run dir


def case_cli(ctx: Ctx, args: tuple[str, str, str]) -> str:
    cmd, opt, value = args
    runs = ctx.root / "cli-runs"
    argv = (["run", opt, value, "--profile", str(ctx.root / SENTINEL), "--runs-dir", str(runs)] if cmd == "run"
            else ["verify", str(ctx.verify_run), opt, value])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert not runs.exists(), argv  # nothing left behind
    if code == 0:
        assert cmd == "verify", argv
        return "loaded"
    lines = text.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("soak: error: "), (argv, code, text)
    if cmd == "run" and SENTINEL in lines[0]:
        return "loaded"  # the value passed; the sentinel profile stopped the run
    return "refused"


RUN_OPTIONS = ["--iterations", "--seed", "--duration-s", "--iteration-timeout", "--metrics-port", "--on-failure"]
STRATEGIES = {
    "record": lambda ctx: mutated(ctx.record_base, JSON_LITERALS, toml=False),
    "bot_output": lambda ctx: mutated(ctx.edge_base, JSON_LITERALS, toml=False),
    "config": lambda ctx: mutated(CONFIG_BASE, TOML_LITERALS, toml=True),
    "manifest": lambda ctx: mutated(ctx.manifest_base, JSON_LITERALS, toml=False),
    "cli": lambda ctx: st.one_of(st.tuples(st.just("run"), st.sampled_from(RUN_OPTIONS), CLI_VALUES),
                                 st.tuples(st.just("verify"), st.just("--threshold"), CLI_VALUES)),
}
CASES = {"record": case_record, "bot_output": case_bot_output, "config": case_config, "manifest": case_manifest,
         "cli": case_cli}




def fuzz(ctx: Ctx, kind: str, n: int, counts: Counter) -> None:
    @settings(max_examples=n, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(x=STRATEGIES[kind](ctx))
    def one(x):
        with deadline(CASE_TIMEOUT_S):
            outcome = CASES[kind](ctx, x)
        counts[f"{kind}/{outcome}"] += 1

    one()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    root = tmp_path_factory.mktemp("fuzz")
    run = write_synthetic_run(root / "runs", 1, latest=False)
    reg = registry(load_config())
    bot_src = root / "bot_output.json"
    cmd = f"sh -c 'cp \"$0\" \"$SOAK_OUTPUT\"' {bot_src}"  # a "bot" that writes the prepared output
    bundle = root / "bundle"
    (bundle / "reports").mkdir(parents=True)
    files = {"CHANGELOG.md": b"# v1\n", "reports/GATE.json": b'{"verdict": "PASS"}\n'}
    for rel, data in files.items():
        (bundle / rel).write_bytes(data)
    manifest = {"schema_version": "1.0", "generator": "soaklib", "version": "v1", "verdict": "PASS",
                "files": {rel: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for rel, d in files.items()},
                "release": {"gate": {"verdict": "PASS"}}}
    return Ctx(root=root, run=run, record_base=(run / "ITER_SUMMARY_1.json").read_text(), edge_base=_edge_base(reg),
               runner=CommandRunner(cmd, timeout_s=20, config=load_config()), bot_src=bot_src,
               bot_run=root / "bot-run", params=reg.defaults(), bundle=bundle,
               manifest_base=json.dumps(manifest, indent=2),
               verify_run=write_synthetic_run(root / "vr", 3, latest=False))


def test_the_valid_bases_load(ctx):
    assert case_record(ctx, ctx.record_base.encode()) == "loaded"
    assert case_bot_output(ctx, ctx.edge_base.encode()) == "loaded"
    assert case_config(ctx, CONFIG_BASE.encode()) == "loaded"
    assert case_manifest(ctx, ctx.manifest_base.encode()) == "loaded"
    assert case_cli(ctx, ("run", "--iterations", "3")) == "loaded"
    assert case_cli(ctx, ("verify", "--threshold", "0.9")) == "loaded"


@pytest.mark.parametrize("kind", list(QUICK))
def test_fuzz_quick(ctx, kind):
    counts: Counter = Counter()
    fuzz(ctx, kind, QUICK[kind], counts)
    assert sum(counts.values()) >= QUICK[kind] // 2  # hypothesis ran the cases (a tiny space may end early)


@pytest.mark.slow
def test_fuzz_long(ctx, tmp_path_factory):
    counts: Counter = Counter()
    # the process already holds what earlier tests loaded (numba, hftbacktest, pandas): the fuzz is
    # judged by how far it raises the peak above the memory in use when it starts
    start_mb = _rss_now_mb()
    for kind, n in LONG.items():
        fuzz(ctx, kind, n, counts)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    growth_mb = max(0.0, peak_mb - start_mb)
    # a traceback (any exception but the refusals) or a hang (TimeoutError) has failed the test before here
    report = {"seeds": "hypothesis derandomize=True", "cases": sum(counts.values()), "peak_rss_mb": round(peak_mb, 1),
              "rss_at_start_mb": round(start_mb, 1), "peak_growth_mb": round(growth_mb, 1),
              "counts": dict(sorted(counts.items())), "tracebacks": 0, "hangs": 0}
    out = tmp_path_factory.getbasetemp() / "fuzz_counts.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfuzz counts ({out}):\n{json.dumps(report, indent=2)}", file=sys.stderr)
    assert report["cases"] >= 10_000, report
    assert growth_mb < PEAK_RSS_MB, report


def _rss_now_mb() -> float:
    """Resident memory of this process now (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
