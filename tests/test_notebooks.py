"""The report notebooks: thin, parameterised, committed without outputs, and executable by
papermill and nbval (the verdict cells' outputs are checked against tests/data/audit_verdict.txt and
tests/data/compare_verdict.txt); `soak report` renders compare.ipynb for a run with a baseline arm."""
from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from soaklib.publish import reports
from soaklib.store.rundir import BASELINE_DIR, COMPARE_REPORT
from soaklib.store.synthetic import write_synthetic_run

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
BANNED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.For, ast.While, ast.With, ast.AsyncFor,
          ast.AsyncWith, ast.Lambda, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)
BANNED_NAMES = {"open", "json", "sys", "os", "glob", "Path", "exec", "eval"}


def test_the_notebooks_exist():
    assert {p.stem for p in PATHS} == {"audit", "recommendations", "compare"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_thin(path: Path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    for cell in code:
        nodes = list(ast.walk(ast.parse(cell.source)))
        bad = sorted({type(n).__name__ for n in nodes if isinstance(n, BANNED)})
        bad += [n.id for n in nodes if isinstance(n, ast.Name) and n.id in BANNED_NAMES]
        bad += [n.names[0].name for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))
                and (getattr(n, "module", None) or n.names[0].name).split(".")[0] != "soaklib"]
        assert not bad, f"{path.name}: move {bad} into soaklib; cell starts {cell.source[:60]!r}"
        # one library call per cell (plus its binding and the import)
        calls = [n for n in ast.parse(cell.source).body if not isinstance(n, (ast.Import, ast.ImportFrom))]
        assert len(calls) <= 4, f"{path.name}: cell too long: {cell.source[:60]!r}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path):
    """No outputs, no execution counts, no papermill metadata: nothing of a run is committed."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.outputs == [], f"{path.name}: committed outputs in cell {cell.source[:50]!r}"
        assert cell.execution_count is None, f"{path.name}: committed execution count"
    assert "papermill" not in nb.metadata, f"{path.name}: an executed copy was committed"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_parameters_match_dataclass(path: Path):
    declared = set(papermill.inspect_notebook(str(path)))
    expected = {f.name for f in dataclasses.fields(reports.PARAMS[path.stem])}
    assert declared == expected


GOLDEN_VERDICT = ROOT / "tests" / "data" / "audit_verdict.txt"
GOLDEN_COMPARE = ROOT / "tests" / "data" / "compare_verdict.txt"
GOLDEN = {"audit": GOLDEN_VERDICT, "compare": GOLDEN_COMPARE}


@pytest.mark.parametrize("stem", sorted(GOLDEN))
def test_has_a_checked_verdict_cell(stem: str):
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert len(checked) == 1 and "verdict: " in GOLDEN[stem].read_text()


def _with_reference_output(dst: Path, verdicts: dict[str, str]) -> Path:
    """Copies of the notebooks in ``dst`` whose verdict cell carries ``verdicts[stem]`` as the
    reference output nbval compares against (the committed notebooks stay output-free)."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in PATHS:
        nb = nbformat.read(p, as_version=4)
        for c in nb.cells:
            if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source:
                c.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdicts[p.stem])]
                c.execution_count = 1
        nbformat.write(nb, str(dst / p.name))
    return dst


def _nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
                           "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-q", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", *args, "--no-progress-bar"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", ""))
            parts.append(str(o.get("data", {}).get("text/markdown", "")))
            parts.append("".join(o.get("traceback", [])))
    return "\n".join(parts)


def test_papermill_with_relative_src_from_a_checkout_root(tmp_path: Path):
    """`papermill notebooks/audit.ipynb out.ipynb -p src runs/latest` from the root."""
    write_synthetic_run(tmp_path / "runs", 9)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "audit.ipynb").write_bytes((NOTEBOOKS / "audit.ipynb").read_bytes())
    r = _run(tmp_path, "notebooks/audit.ipynb", "out.ipynb", "-p", "src", "runs/latest")
    assert r.returncode == 0, r.stderr[-2000:]
    text = _outputs_text(tmp_path / "out.ipynb")
    assert "verdict: PASS" in text and "Cannot analyse" not in text


@pytest.mark.parametrize("case", ["not_a_run", "empty_run", "one_iteration", "last_n_too_big", "bad_last_n"])
def test_bad_input_gives_a_message(tmp_path: Path, case: str):
    """What the notebook cells call: never raises for bad input, shows a message instead."""
    last_n = 8
    if case == "not_a_run":
        (tmp_path / "nothing").mkdir()
        src, expect = str(tmp_path / "nothing"), "Cannot analyse"
    elif case == "empty_run":
        src, expect = str(write_synthetic_run(tmp_path / "runs", 0, latest=False)), "no iterations"
    elif case == "one_iteration":
        src, expect = str(write_synthetic_run(tmp_path / "runs", 1)), "verdict: INCONCLUSIVE"
    elif case == "bad_last_n":
        src, expect, last_n = str(write_synthetic_run(tmp_path / "runs", 3)), "last_n", 0
    else:
        src, expect, last_n = str(write_synthetic_run(tmp_path / "runs", 3)), "larger than the run", 50
    audit = reports.Audit(src, last_n, "")
    shown = [audit.header(), audit.executive_summary(), audit.kpi_table(), audit.trend_charts(), audit.guards(),
             audit.params_chart(), audit.verification(), audit.failures(), audit.final_assessment()]
    text = audit.verdict_text() + "\n" + "\n".join(x.data for x in shown if isinstance(getattr(x, "data", None), str))
    assert all(x is None or x.data for x in shown)
    assert expect in text, text[:2000]
    advice = reports.Advice(src, last_n, "", False)
    for x in (advice.header(), advice.status(), advice.details(), advice.chart(), advice.notes()):
        assert x is None or hasattr(x, "data")


def test_bad_src_through_papermill_shows_the_message(tmp_path: Path):
    out = tmp_path / "out.ipynb"
    r = _run(tmp_path, str(NOTEBOOKS / "audit.ipynb"), str(out), "-p", "src", "no/such/run")
    assert r.returncode == 0, r.stderr[-1500:]
    text = _outputs_text(out)
    assert "Cannot analyse" in text and "Traceback" not in text


def test_nbval_lax_passes_on_the_example_run(tmp_path: Path):
    """`pytest --nbval-lax notebooks/` passes on the committed notebooks, and with the verdict cell's
    reference output in place the verdict is output-checked: a wrong reference fails."""
    r = _nbval(NOTEBOOKS)
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout and "failed" not in r.stdout
    golden = {stem: p.read_text() for stem, p in GOLDEN.items()}
    r = _nbval(_with_reference_output(tmp_path / "checked", golden))
    assert r.returncode == 0, r.stdout[-3000:]
    wrong = golden["audit"].replace("verdict: FAIL", "verdict: PASS")
    assert wrong != golden["audit"]
    r = _nbval(_with_reference_output(tmp_path / "wrong", {**golden, "audit": wrong}))
    assert r.returncode != 0 and "1 failed" in r.stdout, r.stdout[-3000:]
    wrong = golden["compare"].replace("BETTER", "WORSE", 1)
    assert wrong != golden["compare"]
    r = _nbval(_with_reference_output(tmp_path / "wrong-compare", {**golden, "compare": wrong}))
    assert r.returncode != 0 and "1 failed" in r.stdout and "compare.ipynb" in r.stdout, r.stdout[-3000:]


def _arms(root: Path, *, delta: float) -> Path:
    """A candidate run with a baseline arm (RUN/baseline) on the same (seed, window) pairs; the
    candidate's net edge is ``delta`` bp higher in every window."""
    def base(i):
        return {"net_bps": 2.0 + 0.3 * (i % 4), "p95_latency_ms": 300.0 + i, "pnl_quote": 8.0 + (i % 3)}

    cand = write_synthetic_run(root, 10, kpis=lambda i: {**base(i), "net_bps": base(i)["net_bps"] + delta}, seed=3)
    write_synthetic_run(cand, 10, kpis=base, seed=3, latest=False).rename(cand / BASELINE_DIR)
    return cand


def test_compare_notebook_from_a_checkout_root_with_the_run_s_own_arm(tmp_path: Path):
    """`papermill notebooks/compare.ipynb out.ipynb -p src runs/latest`: the baseline defaults to the
    run's own arm; the paired differences and the KPI table are shown."""
    _arms(tmp_path / "runs", delta=0.5)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "compare.ipynb").write_bytes((NOTEBOOKS / "compare.ipynb").read_bytes())
    r = _run(tmp_path, "notebooks/compare.ipynb", "out.ipynb", "-p", "src", "runs/latest")
    assert r.returncode == 0, r.stderr[-2000:]
    text = _outputs_text(tmp_path / "out.ipynb")
    assert "net_bps" in text and "BETTER" in text and "verdict: PASS (paired-wilcoxon, 10 pairs)" in text
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def test_compare_notebook_without_a_baseline_raises(tmp_path: Path):
    """A run without a baseline arm and no `baseline` given: the notebook raises, naming what to give."""
    write_synthetic_run(tmp_path / "runs", 4)
    r = _run(tmp_path, str(NOTEBOOKS / "compare.ipynb"), "out.ipynb", "-p", "src", "runs/latest")
    assert r.returncode != 0 and "no baseline arm" in r.stderr + _outputs_text(tmp_path / "out.ipynb")


def test_report_renders_compare_only_for_a_run_with_a_baseline_arm(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cand = _arms(Path("runs"), delta=-0.5)
    res = reports.render(cand)
    out = res.out_dir
    html, md = (out / f"{COMPARE_REPORT}.html").read_text(), (out / f"{COMPARE_REPORT}.md").read_text()
    assert "WORSE" in html and "WORSE" in md and "verdict: FAIL" in md
    assert "<script src=\"http" not in html  # self-contained like the audit
    assert res.files["compare_html"] == out / f"{COMPARE_REPORT}.html"
    # the executed notebooks name the run relative to the cwd, no absolute path
    for name in ("POST_SOAK_AUDIT.ipynb", f"{COMPARE_REPORT}.ipynb"):
        assert str(tmp_path.resolve()) not in (out / name).read_text(), name
    plain = write_synthetic_run(Path("runs"), 9)
    res = reports.render(plain)
    assert "compare_html" not in res.files and not (res.out_dir / f"{COMPARE_REPORT}.html").exists()
