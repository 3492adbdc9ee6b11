"""`soak report` / soaklib.publish.reports: executed notebooks rendered to HTML and Markdown, the seed's
headings, escaping of untrusted names, size budget, a failing notebook, and what Chromium shows."""
from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import nbformat
import pytest
from helpers import require_tool
from PIL import Image

from soaklib.core import io as _io
from soaklib.core.errors import ReportError
from soaklib.publish import markdown, reports
from soaklib.store.synthetic import write_synthetic_run

EVIL = "<script>alert(1)</script>"


def _kpis(i: int) -> dict:
    return {"maker_taker_ratio": 0.80 + 0.005 * i, "net_bps": 2.0 + 0.05 * i, "p95_latency_ms": 250.0 + 3 * i,
            "risk_ratio": 0.30 + 0.004 * i, "inventory_utilisation": 0.3 + 0.01 * (i % 5)}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # an external runner: recommendations are rule-based here (re-simulation is tested on its own)
    path = write_synthetic_run(root, 24, kpis=_kpis, failed=[7], runner="./bot --paper",
                               params=lambda i: {"min_interval_ms": 60 + 2 * min(i, 10)})
    m = _io.read_json(path / "run.json")
    m["profile"]["name"] = EVIL          # untrusted strings as a user could name them
    m["scenario"] = EVIL
    _io.write_json(path / "run.json", m)
    res = reports.render(path, last_n=8)
    return path, res


def test_render_writes_all_outputs(rendered):
    path, res = rendered
    out = path / "reports" / "analysis"
    assert res.out_dir == out
    for name in ("POST_SOAK_SNAPSHOT.json", "POST_SOAK_AUDIT.ipynb", "POST_SOAK_AUDIT.html", "POST_SOAK_AUDIT.md",
                 "RECOMMENDATIONS.ipynb", "RECOMMENDATIONS.html", "RECOMMENDATIONS.md", "FAILURES.md"):
        assert (out / name).is_file(), name
    snap = _io.read_json(out / "POST_SOAK_SNAPSHOT.json")
    assert snap["iterations_total"] == 24 and snap["iterations_failed"] == [7]
    assert snap["verdict"] == res.verdict
    # markdown charts are extracted next to the .md and linked from it
    md = (out / "POST_SOAK_AUDIT.md").read_text("utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(links) >= 6 and all((out / link).is_file() for link in links)


def test_markdown_keeps_the_seed_headings_and_sparklines(rendered):
    out = rendered[1].out_dir
    audit = (out / "POST_SOAK_AUDIT.md").read_text("utf-8")
    for h in ("# Post-Soak Audit Report", "**Generated:**", "**Iterations:** 24 (analyzing last-8",
              "**Verdict:**", "## Executive Summary", "| Metric | Target | Last-n Value | Status |",
              "## KPI Metrics: All Iterations vs Last-n", "## Metric Trends", "## Guards & Tuning Activity",
              "### Guard Activations", "### Delta Application", "### Skip Reasons", "## Anomalies & Peaks",
              "## Final Assessment", "## Delta Verification", "## Failures"):
        assert h in audit, h
    spark = re.search(r"maker_taker_ratio\s+\[([^\]]+)\]", audit).group(1)
    assert len(spark) == 24 and set(spark) - {" "} <= set("▁▂▃▄▅▆▇█") and len(set(spark)) > 3
    assert spark[6] == " "  # the failed iteration 7
    rec = (out / "RECOMMENDATIONS.md").read_text("utf-8")
    for h in ("# Soak Test Recommendations", "**Status:**", "## Status:", "## Implementation Notes"):
        assert h in rec, h
    fail = (out / "FAILURES.md").read_text("utf-8")
    assert "# Soak Test Failures Report" in fail and "FAILURES DETECTED" in fail and "iteration 7" in fail


def test_html_is_self_contained_code_free_and_small(rendered):
    out = rendered[1].out_dir
    html = (out / "POST_SOAK_AUDIT.html").read_text("utf-8")
    assert len(html.encode()) < 3 * 1024 * 1024
    assert "reports.Audit(" not in html and "audit.trend_charts()" not in html  # no input cells
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(pngs) >= 6
    for b64 in pngs:
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.verify()
        assert img.size[0] > 300
    assert not re.search(r'<img[^>]+src="(?!data:)', html), "an image is not embedded"
    # self-contained: no script or stylesheet fetched from anywhere (offline, no third-party code)
    assert not re.search(r'<(?:script|link)\b[^>]*(?:src|href)="(?:https?:)?//', html, flags=re.I)
    assert "cdnjs" not in html and 'src=""' not in html


def test_untrusted_names_are_escaped_everywhere(rendered):
    out = rendered[1].out_dir
    for name in ("POST_SOAK_AUDIT.html", "RECOMMENDATIONS.html", "POST_SOAK_AUDIT.md", "RECOMMENDATIONS.md"):
        text = (out / name).read_text("utf-8")
        assert EVIL not in text, name
        assert "&lt;script&gt;" in text, name


def test_failing_notebook_keeps_partial_copy_and_names_the_cell(tmp_path, monkeypatch, rendered):
    bad = nbformat.read(reports.notebook_path("audit"), as_version=4)
    bad.cells.insert(4, nbformat.v4.new_code_cell("1 / 0"))
    bad_path = tmp_path / "audit.ipynb"
    nbformat.write(bad, str(bad_path))
    real = reports.notebook_path
    monkeypatch.setattr(reports, "notebook_path", lambda name: bad_path if name == "audit" else real(name))
    out = tmp_path / "out"
    with pytest.raises(ReportError, match=r"audit notebook failed in cell \d+ `1 / 0` \(ZeroDivisionError"):
        reports.render(rendered[0], last_n=8, out_dir=out)
    partial = nbformat.read(out / "POST_SOAK_AUDIT.ipynb", as_version=4)
    assert any(o.get("ename") == "ZeroDivisionError" for c in partial.cells for o in c.get("outputs", []))


def _soak(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soaklib", *args], capture_output=True, text=True, timeout=300)


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    r = _soak("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    empty = write_synthetic_run(tmp_path / "runs", 0, latest=False)
    r = _soak("report", str(empty))
    assert r.returncode == 2 and "no iterations" in r.stderr and "Traceback" not in r.stderr
    r = _soak("report", str(empty), "--last-n", "0")
    assert r.returncode == 2


@pytest.mark.system
def test_chromium_shows_the_charts(rendered, tmp_path):
    """Headless Chromium loads the audit HTML: every image decodes in the browser and the
    screenshot is a real rendering (many distinct colours), not a blank page."""
    chromium = require_tool("chromium")
    html = (rendered[1].out_dir / "POST_SOAK_AUDIT.html").read_text("utf-8")
    probe = ("<script>window.addEventListener('load',function(){var im=document.images,n=0;"
             "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}"
             "document.body.setAttribute('data-loaded',n+'/'+im.length);});</script>")
    page = tmp_path / "audit.html"
    page.write_text(html.replace("</body>", probe + "</body>"), "utf-8")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r'data-loaded="(\d+)/(\d+)"', dom.stdout)
    assert m, dom.stderr[-1500:]
    loaded, total = int(m.group(1)), int(m.group(2))
    assert total >= 6 and loaded == total
    shot = tmp_path / "shot.png"
    subprocess.run(base + ["--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 200, f"{len(colours or [])} colours: blank page?"


def test_simulated_recommendations_rank_by_effect_on_the_goals(tmp_path, monkeypatch):
    """Candidates are re-simulated on the last-N iterations' seeds and windows and ranked by the
    gate's view of the result. The simulator is replaced by a known response so the ranking can be
    checked exactly: maker/taker rises with base_spread_bps_delta, nothing else matters."""
    from types import SimpleNamespace

    from soaklib import sim
    from soaklib.core.config import load_config
    from soaklib.judge import recommend
    from soaklib.store.loader import open_run

    calls = []

    def fake_simulate(params, scenario, seed, duration_s, *, start_s=0.0, config=None):
        calls.append((seed, start_s, duration_s, scenario))
        mt = 0.70 + 2.0 * params["base_spread_bps_delta"]
        return SimpleNamespace(kpis={"maker_taker_ratio": mt, "net_bps": 3.0, "p95_latency_ms": 250.0,
                                     "risk_ratio": 0.3})

    monkeypatch.setattr(sim, "simulate", fake_simulate)
    run = open_run(write_synthetic_run(tmp_path, 10, kpis={"maker_taker_ratio": 0.80}, runner="sim"))
    cfg = load_config()
    rec = recommend.recommend(run, cfg, 8)
    assert rec.mode == "simulated" and rec.targets == ["maker_taker_ratio"]
    want = {(r["seed"], r["window"]["start_s"]) for r in run.records[-8:]}
    assert {(c[0], c[1]) for c in calls} == want                      # same seeds and windows
    assert rec.baseline.goals["maker_taker_ratio"]["status"] == "FAIL"  # 0.70 + 2*0.05 = 0.80
    best = rec.best
    assert best is not None and list(best.deltas) == ["base_spread_bps_delta"]
    assert best.params["base_spread_bps_delta"] == pytest.approx(0.10)  # +5% of the [0, 1] range
    assert best.goals["maker_taker_ratio"]["value"] == pytest.approx(0.90) and best.met == 4
    assert [c.label for c in rec.candidates][0].startswith("base_spread_bps_delta")
    md = markdown.recommendations_details(rec)
    assert "**Recommended:**" in md and "base_spread_bps_delta = 0.1" in md


def test_rule_based_recommendations_show_evidence(tmp_path):
    from soaklib.core.config import load_config
    from soaklib.judge import recommend
    from soaklib.store.loader import open_run

    # latency rises with min_interval_ms in this run: the "+min_interval_ms" lever is contradicted
    run = open_run(write_synthetic_run(tmp_path, 10, runner="./bot", kpis=lambda i: {"p95_latency_ms": 300.0 + 5 * i},
                                       params=lambda i: {"min_interval_ms": 60 + i}))
    rec = recommend.recommend(run, load_config(), 8)
    assert rec.mode == "rule-based" and rec.targets == ["p95_latency_ms"]
    rows = {r["change"].split()[0]: r for r in rec.rules}
    assert rows["min_interval_ms"]["supported"] is False
    assert "Spearman ρ = +1.00" in rows["min_interval_ms"]["correlation"]
    assert rows["concurrency_limit"]["supported"] is None  # did not vary


@pytest.mark.slow
def test_recommendations_on_a_real_simulator_run(tmp_path):
    """End to end on the embedded simulator: a run with the `bad` profile fails its goals; the
    baseline re-simulation reproduces the run's own goal values (same seeds, windows, params), and
    the recommended candidate meets more goals than the baseline."""
    from soaklib.core.config import load_config
    from soaklib.judge import analysis, recommend
    from soaklib.store.loader import open_run

    r = _soak("run", "--iterations", "8", "--runs-dir", str(tmp_path), "--profile", "bad", "--seed", "3",
              "--no-auto-tune")
    assert r.returncode == 0, r.stderr[-1500:]
    run = open_run(tmp_path / "latest")
    cfg = load_config()
    snap = analysis.snapshot(run, cfg, 8)
    rec = recommend.recommend(run, cfg, 8, snapshot=snap)
    assert rec.mode == "simulated" and rec.targets
    from soaklib.judge import gate

    direct = gate.evaluate(run.iterations, cfg, 8)
    for k, g in rec.baseline.goals.items():
        assert g["value"] == pytest.approx(direct.goal(k).value, rel=1e-9)
    assert rec.best is None or rec.best.met >= rec.baseline.met
    assert rec.candidates and rec.candidates[0].score >= rec.candidates[-1].score


def test_recommendations_say_inconclusive_when_there_is_no_data(tmp_path):
    from soaklib.core.config import load_config
    from soaklib.judge import recommend
    from soaklib.store.loader import open_run

    run = open_run(write_synthetic_run(tmp_path, 3, failed=[1, 2, 3]))
    md = markdown.recommendations_status(recommend.recommend(run, load_config(), 8, simulate=False))
    assert "INCONCLUSIVE" in md and "All Goals Met" not in md
