"""Report notebooks: what their cells call (``Audit``, ``Advice``) and how ``soak report`` runs them.

The notebooks in ``notebooks/`` are thin templates: one ``parameters`` cell, then one call per cell
into the views below, which return Markdown, DataFrames or Figures (or ``None`` when there is
nothing to show). A view never raises for bad input: it carries the message and the notebook shows
it. ``render`` executes both notebooks with papermill into ``RUN/reports/analysis/`` and renders them
with nbconvert (no input cells, images embedded) to HTML and Markdown, next to the snapshot and
FAILURES.md.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib as _imp
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.display import Image, Markdown

from soaklib.core import io as _io
from soaklib.core.config import load_config, run_config
from soaklib.core.errors import InputError, ReportError, SoakError
from soaklib.core.params import registry
from soaklib.core.run import Run
from soaklib.core.text import html_escape, sparkline
from soaklib.execute import supervisor
from soaklib.judge import recommend
from soaklib.judge.verify import verify_run
from soaklib.publish import markdown, plots
from soaklib.store.loader import open_run
from soaklib.store.rundir import (
    AUDIT,
    BASELINE_DIR,
    COMPARE_REPORT,
    FAILURES,
    LATEST,
    MANIFEST,
    RECOMMENDATIONS,
    REPORTS_DIR,
    SNAPSHOT,
    write_errors,
)
from soaklib.store.synthetic import write_synthetic_run


class _LazyModule:
    """A module imported on first attribute use: ``soak report`` starts its kernels before the
    parent pays for pandas (the kernels need ~1 s to come up; the parent's imports overlap that)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


pd = _LazyModule("pandas")
analysis = _LazyModule("soaklib.judge.analysis")

NOTEBOOKS = {"audit": AUDIT, "recommendations": RECOMMENDATIONS}
# rendered only for a run with a baseline arm (RUN/baseline/run.json)
COMPARE_NOTEBOOK = {"compare": COMPARE_REPORT}


@dataclass
class AuditParams:
    """Parameters of notebooks/audit.ipynb (names must match its ``parameters`` cell)."""

    src: str = ""      # run dir, runs/latest or a seed layout; "" = the bundled example run
    last_n: int = 8    # iterations in the last-N window
    config: str = ""   # TOML overriding soaklib defaults; "" = defaults


@dataclass
class RecommendationsParams:
    """Parameters of notebooks/recommendations.ipynb."""

    src: str = ""
    last_n: int = 8
    config: str = ""
    simulate: bool = True   # re-simulate candidate deltas on simulator runs


@dataclass
class CompareParams:
    """Parameters of notebooks/compare.ipynb."""

    src: str = ""       # the candidate run; "" = the example run with a baseline arm
    baseline: str = ""  # the baseline run; "" = the candidate's own baseline arm (RUN/baseline)
    config: str = ""


PARAMS = {"audit": AuditParams, "recommendations": RecommendationsParams, "compare": CompareParams}


def notebook_path(name: str) -> Path:
    """Path of a report notebook template (the repo's notebooks/ dir, or the one beside the package)."""
    here = Path(__file__).resolve().parents[2] / "notebooks" / f"{name}.ipynb"
    if here.is_file():
        return here
    raise ReportError(f"notebook template {name}.ipynb not found", path=here)


# --------------------------------------------------------------------------- example run

def example_run(config: Mapping[str, Any] | None = None) -> Path:
    """A small seeded example run (synthetic records, soaklib.store.synthetic) in a temp dir, built once.

    What notebooks analyse when ``src`` is "": nbval runs them in their own directory, so the
    default must not depend on the cwd. Deterministic: same KPIs and params every time.
    """
    cfg = config or load_config()
    n = int(cfg["report"]["example_iterations"])
    dur = float(cfg["report"]["example_duration_s"])
    key = hashlib.sha256(f"v2-{n}-{dur}".encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"soaklib-example-{key}-{os.getuid()}"
    latest = root / LATEST
    if (latest / MANIFEST).is_file():
        return latest.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="soaklib-example-"))
    # runner "example": not a simulator run, so recommendations stay rule-based (no re-simulation)
    write_synthetic_run(tmp, n, kpis=_example_kpis, params=_example_params, seed=7, duration_s=dur,
                        profile_name="best_cell", latest=True, runner="example")
    try:
        tmp.rename(root)
    except OSError:  # another kernel built it first; use theirs
        pass
    return (root / LATEST).resolve() if (root / LATEST).exists() else (tmp / LATEST).resolve()


def example_compare_run(config: Mapping[str, Any] | None = None) -> Path:
    """A seeded example candidate run with a baseline arm in ``RUN/baseline`` (synthetic records on
    the same (seed, window) pairs; the candidate's net edge is higher, its latency a little worse),
    built once in a temp dir. What notebooks/compare.ipynb analyses when ``src`` is ""."""
    cfg = config or load_config()
    n = int(cfg["report"]["example_iterations"])
    dur = float(cfg["report"]["example_duration_s"])
    key = hashlib.sha256(f"compare-v1-{n}-{dur}".encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"soaklib-example-{key}-{os.getuid()}"
    if (root / LATEST / BASELINE_DIR / MANIFEST).is_file():
        return (root / LATEST).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="soaklib-example-"))
    cand = write_synthetic_run(tmp, n, kpis=_example_candidate_kpis, seed=7, duration_s=dur,
                               profile_name="best_cell", latest=True, runner="example")
    arm = write_synthetic_run(cand, n, kpis=_example_baseline_kpis, seed=7, duration_s=dur,
                              profile_name="best_cell", latest=False, runner="example")
    arm.rename(cand / BASELINE_DIR)
    try:
        tmp.rename(root)
    except OSError:  # another kernel built it first; use theirs
        pass
    return (root / LATEST).resolve() if (root / LATEST).exists() else (tmp / LATEST).resolve()


def _example_baseline_kpis(i: int) -> dict:
    # window-to-window market noise both arms share (common random numbers)
    wave = ((i * 7) % 5 - 2) * 0.3
    return {"net_bps": round(2.4 + wave, 4), "p95_latency_ms": 300.0 + 10.0 * ((i * 3) % 4),
            "maker_taker_ratio": round(0.86 + 0.01 * wave, 4), "risk_ratio": round(0.3 - 0.01 * wave, 4),
            "pnl_quote": round(10.0 + 3.0 * wave, 4)}


def _example_candidate_kpis(i: int) -> dict:
    b = _example_baseline_kpis(i)
    return {**b, "net_bps": round(b["net_bps"] + 0.4 + 0.02 * (i % 3), 4),
            "p95_latency_ms": b["p95_latency_ms"] + 4.0 + (i % 2),
            "pnl_quote": round(b["pnl_quote"] + 0.8 + 0.1 * (i % 4), 4)}


def compare_sources(src: str | os.PathLike | None, baseline: str | os.PathLike | None = "",
                    config: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """(candidate, baseline) paths for notebooks/compare.ipynb: ``src`` "" = the example run; ``baseline``
    "" = the candidate's own baseline arm, InputError when it has none."""
    cand = resolve_src(src, config or load_config()) if str(src or "").strip() else example_compare_run(config)
    if str(baseline or "").strip():
        return cand, Path(os.path.expanduser(str(baseline)))
    arm = cand / BASELINE_DIR
    if not (arm / MANIFEST).is_file():
        raise InputError("the run has no baseline arm (RUN/baseline, written by an auto-tuned run with a "
                         "confirmation phase): give baseline", path=cand, field="baseline")
    return cand, arm


def show(obj: Any):
    """What a notebook cell shows for a soaklib result: a Figure as a PNG, a DataFrame as a Markdown
    table (it renders the same in the HTML and the Markdown report), text as Markdown."""
    if obj is None or isinstance(obj, str):
        return None if obj is None else _md(obj)
    if isinstance(obj, pd.DataFrame):
        return _md(frame_markdown(obj))
    return _png(obj)


def _example_kpis(i: int) -> dict:
    # a run that improves: maker/taker climbs, latency spikes once, net edge rises past the goal
    return {"maker_taker_ratio": round(0.78 + 0.015 * i, 4), "net_bps": round(1.9 + 0.2 * i, 4),
            "p95_latency_ms": 300.0 + (45.0 if i == 3 else 5.0 * i), "risk_ratio": round(0.42 - 0.02 * i, 4),
            "gross_bps": round(3.3 + 0.2 * i, 4), "pnl_quote": 8.0 + i}


def _example_params(i: int) -> dict:
    return {"min_interval_ms": 60 + 5 * min(i - 1, 3), "impact_cap_ratio": round(0.1 - 0.005 * min(i - 1, 2), 4)}


# --------------------------------------------------------------------------- opening a source

def resolve_src(src: str | os.PathLike | None, cfg: Mapping[str, Any]) -> Path:
    """"" → the example run; otherwise the path, relative to the current directory."""
    if src is None or str(src).strip() == "":
        return example_run(cfg)
    return Path(os.path.expanduser(str(src)))


def _open_with_snapshot(path: Path, config, last_n: int, purpose: str) -> tuple[dict, Run, dict]:
    """``open_run`` plus the config the run is judged by and its snapshot; InputError when the run
    has no iterations (nothing to ``purpose``)."""
    run = open_run(path)
    cfg = run_config(run, config or None)  # the same rule as every soak command
    if run.iterations.empty:
        raise InputError(f"the run has no iterations yet: nothing to {purpose}", path=path)
    return cfg, run, analysis.snapshot(run, cfg, last_n)


def _view_inputs(src, last_n, config):
    """What a notebook view starts from: its parameters checked, ``src`` resolved ("" = the example
    run), the run opened with its snapshot."""
    try:
        last_n = int(last_n)
    except (TypeError, ValueError):
        raise InputError(f"last_n must be a whole number, got {last_n!r}", field="last_n") from None
    path = resolve_src(src, load_config(config or None))
    cfg, run, snap = _open_with_snapshot(path, config, last_n, "analyse")
    return cfg, path, run, snap


def _md(text: str):
    return Markdown(text)


def _audit(view: str, **kwargs: Any):
    """One view of the audit notebook: a macro of templates/audit.md.j2, as a Markdown display object."""
    return _md(markdown.part("audit.md.j2", view, **kwargs))


def _png(fig):
    """A Figure as a PNG display object, drawn once at the figure's dpi (the inline backend would
    draw it twice for a tight bounding box)."""
    if fig is None:
        return None

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return Image(data=buf.getvalue(), format="png")


class _View:
    """Shared opening logic: load config, open the run, compute the snapshot; keep errors as text."""

    def __init__(self, src: str = "", last_n: int = 8, config: str = ""):
        self.src, self.last_n, self.config = str(src), last_n, str(config)
        self.error: str | None = None
        self.cfg: dict = {}
        self.run: Run | None = None
        self.snap: dict = {}
        self.path: Path | None = None
        try:
            self.cfg, self.path, self.run, self.snap = _view_inputs(src, last_n, config)
        except SoakError as exc:
            self.error = str(exc)

    @property
    def ok(self) -> bool:
        return self.error is None

    def problem(self):
        """A Markdown box naming what is wrong with the input (None when all is well)."""
        if self.ok:
            return None
        return _audit("problem", src=self.src, error=self.error)

    @property
    def iterations(self) -> pd.DataFrame:
        return self.run.iterations if self.ok else pd.DataFrame()

    @property
    def goal_specs(self) -> dict:
        return dict(self.cfg.get("goals", {})) if self.ok else {}

    def _source(self) -> dict[str, Any]:
        """What the headers' **Source:** line names (untrusted: the template escapes each)."""
        m = (self.run.manifest or {}) if self.ok else {}
        prof = m.get("profile") or {}
        name = prof.get("name") if isinstance(prof, Mapping) else prof
        return {"run": m.get("run_id") or self.path, "runner": m.get("runner") or "n/a",
                "scenario": m.get("scenario") or "n/a", "profile": name or "n/a"}


class Audit(_View):
    """What notebooks/audit.ipynb shows. Every method returns something displayable or None."""

    def header(self):
        """Generated / Iterations / Verdict lines (seed header)."""
        if not self.ok:
            return self.problem()
        return _audit("header", s=self.snap, src=self._source())

    def verdict_text(self) -> str:
        """Deterministic one-screen verdict (the nbval-checked cell prints this)."""
        if not self.ok:
            return f"no verdict: {self.error}"
        s = self.snap
        goals = " ".join(f"{k}={g.get('status')}" for k, g in s["goals"].items())
        its = s["iterations_analyzed"]
        return (f"verdict: {s['verdict']}\n"
                f"goals met: {s['pass_count_last_n']}/{len(s['goals'])} ({goals})\n"
                f"window: {len(its)} iteration(s) of {s['iterations_total']}, freeze_ready: {s['freeze_ready']}")

    def executive_summary(self):
        """| Metric | Target | Last-n Value | Status | for each goal."""
        if not self.ok:
            return None
        return _audit("summary", goals=self.snap["goals"])

    def kpi_table(self):
        """All iterations vs last-n: mean, median, min, max and trend per metric (Markdown table)."""
        if not self.ok:
            return None
        return _md(frame_markdown(self.kpi_frame()))

    def kpi_frame(self) -> pd.DataFrame | None:
        """The same as a DataFrame (for analysts)."""
        if not self.ok:
            return None
        rows = []
        for m, a in self.snap["kpi_all"].items():
            last = self.snap["kpi_last_n"].get(m, {})
            op = (self.goal_specs.get(m) or {}).get("op")
            rows.append({"metric": m, "all mean": a["mean"], "all median": a["median"],
                         "all min": a["min"], "all max": a["max"],
                         "last-n mean": last.get("mean"), "last-n median": last.get("median"),
                         "last-n min": last.get("min"), "last-n max": last.get("max"),
                         "trend": last.get("trend"),
                         "direction": analysis.direction(str(last.get("trend")), op)})
        return pd.DataFrame(rows).set_index("metric")

    def sparklines(self):
        """Unicode sparkline per goal metric over all iterations (seed §6.1, Unicode not ASCII)."""
        if not self.ok:
            return None
        it = self.iterations
        lines = [(m, sparkline(pd.to_numeric(it[m], errors="coerce").tolist())) for m in self.snap["kpi_all"]]
        return _audit("sparklines", n=len(it), lines=lines)

    def _plot(self, fn, *args):
        if not self.ok:
            return None
        return _png(fn(*args, self.cfg))

    def trend_charts(self):
        return self._plot(plots.kpi_trends, self.iterations, self.goal_specs, self.snap.get("iterations_analyzed"))

    def pnl_chart(self):
        return self._plot(plots.pnl_decomposition, self.iterations)

    def latency_chart(self):
        return self._plot(plots.latency, self.iterations, self.goal_specs)

    def inventory_chart(self):
        return self._plot(plots.inventory, self.iterations)

    def blocks_chart(self):
        if not self.ok:  # no run to take the blocks frame from
            return None
        return _png(plots.block_reasons(self.run.blocks, self.cfg))

    def params_chart(self):
        if not self.ok:
            return None
        return _png(plots.param_trajectories(self.run.params, self.run.decisions, registry(self.cfg), self.cfg))

    def guards(self):
        """Guard activations in the window, delta application and skip reasons (seed headings)."""
        if not self.ok:
            return None
        return _audit("guards", g=self.snap["guards_last_n"], t=self.snap["tuning_summary"])

    def anomalies(self):
        """Peak p95 / risk / adverse p95 with their iteration, and frequent guards."""
        if not self.ok:
            return None
        pk = analysis.peaks(self.iterations, ["p95_latency_ms", "risk_ratio", "adverse_bps_p95"])
        lim = int(self.cfg["snapshot"]["anomaly_guard_count"])
        frequent = [(k, c) for k, c in self.snap["guards_last_n"]["counts"].items() if c > lim]
        return _audit("anomalies", peaks=pk, frequent=frequent, lim=lim)

    def verification(self):
        """Delta verification (soaklib.judge.verify) as Markdown."""
        if not self.ok:
            return None

        try:
            rep = verify_run(self.run, self.cfg)
        except SoakError as exc:
            return _audit("verify_unavailable", error=exc)
        # its headings go two levels below the notebook's section heading
        return _md(markdown.verify_markdown(rep, demote=2))

    def failures(self):
        """Failed iterations with their reasons, gaps, and loader warnings."""
        if not self.ok:
            return None
        return _md(failures_section(self.run, self.snap))

    def final_assessment(self):
        """All goals met, or which are not and what to look at next (computed from the snapshot)."""
        if not self.ok:
            return None
        return _md(final_assessment(self.snap))


def frame_markdown(df: pd.DataFrame | None) -> str:
    """A DataFrame as a Markdown table (cells escaped, floats to 4 significant digits)."""
    if df is None or df.empty:
        return markdown.part("audit.md.j2", "table", head=None, rows=[])
    head = [str(df.index.name or "")] + [str(c) for c in df.columns]
    return markdown.part("audit.md.j2", "table", head=head, rows=[(idx, row.tolist()) for idx, row in df.iterrows()])


def failures_section(run: Run, snap: Mapping[str, Any]) -> str:
    """Markdown list of failed iterations (reason, stderr tail), gaps and loader warnings."""
    return markdown.part("audit.md.j2", "failures", **_failures(run, snap))


def _failures(run: Run, snap: Mapping[str, Any]) -> dict[str, Any]:
    failed_its = set(snap.get("iterations_failed", []))
    failed = []
    for rec in run.records:
        if rec.get("iteration") in failed_its:
            f = rec.get("failure") or {}
            tail = str(f.get("stderr_tail") or "").strip().splitlines()[-1:] or [""]
            failed.append({"iteration": rec["iteration"], "reason": f.get("reason") or "failed", "tail": tail[0]})
    return {"failed": failed, "gaps": snap.get("gaps") or [], "warnings": run.warnings}


def final_assessment(snap: Mapping[str, Any]) -> str:
    bad = [(k, g) for k, g in snap["goals"].items() if g.get("status") != "PASS"]
    return markdown.part("audit.md.j2", "final", s=snap, bad=bad)


class Advice(_View):
    """What notebooks/recommendations.ipynb shows."""

    def __init__(self, src: str = "", last_n: int = 8, config: str = "", simulate: bool = True):
        super().__init__(src, last_n, config)
        self.result = None
        if self.ok:
            try:
                self.result = recommend.recommend(self.run, self.cfg, int(last_n), snapshot=self.snap,
                                                  simulate=bool(simulate))
            except SoakError as exc:
                self.error = str(exc)

    def header(self):
        if not self.ok:
            return self.problem()
        status = {"PASS": "PROD-READY", "INCONCLUSIVE": "NOT ENOUGH DATA"}.get(self.snap["verdict"], "TUNING NEEDED")
        return _audit("advice_header", s=self.snap, status=status, src=self._source())

    def status(self):
        if not self.ok:
            return None
        return _md(markdown.recommendations_status(self.result))

    def table(self) -> pd.DataFrame | None:
        if not self.ok:
            return None
        return self.result.table()

    def details(self):
        if not self.ok:
            return None
        return _md(markdown.recommendations_details(self.result))

    def chart(self):
        if not self.ok:
            return None
        return _png(plots.recommendation_chart(self.result, self.cfg))

    def notes(self):
        if not self.ok:
            return None
        return _md(markdown.recommendations_notes(self.result))


# --------------------------------------------------------------------------- soak report

@dataclass
class ReportResult:
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    verdict: str = ""

    @property
    def html(self) -> Path:
        return self.files["audit_html"]


def render(src: str | os.PathLike, *, last_n: int | None = None, config: str | os.PathLike | None = None,
           out_dir: str | os.PathLike | None = None, kernel: str | None = None,
           simulate: bool = True) -> ReportResult:
    """Execute both notebooks over a run and render them; write the snapshot and FAILURES.md.

    Output goes to ``RUN/reports/analysis`` (or ``out_dir``). Bad input raises InputError before
    any notebook runs; a failing notebook leaves its partly executed copy and raises ReportError
    naming the cell.
    """
    t0 = time.perf_counter()
    cfg = load_config(config)
    n = int(last_n if last_n is not None else cfg["report"]["last_n"])
    if n < 1:
        raise InputError(f"--last-n must be >= 1, got {n}", field="last_n")
    path = Path(src)
    kernel = kernel or str(cfg["report"]["kernel"])
    timeout = float(cfg["report"]["cell_timeout_s"])
    # The kernels take about a second to come up: each worker launches its kernel now (no notebook
    # runs yet) so the start overlaps loading the run and computing the snapshot; bad input shuts
    # them down again. A worker keeps its kernel in its own thread (and event loop) throughout.
    early = path.exists()
    # the kernels' connection files (HMAC key inside) live in a private dir that goes when we do; one
    # a killed report left behind goes at the next report
    _remove_stale_kernel_dirs()
    with write_errors(tempfile.gettempdir(), "create a private directory for the report kernels"):
        kdir = Path(tempfile.mkdtemp(prefix=f"{_KERNEL_DIR_PREFIX}{os.getpid()}-"))
    try:
        return _render(path, n, config, out_dir, kernel, timeout, simulate, early, kdir, t0)
    finally:
        shutil.rmtree(kdir, ignore_errors=True)


_KERNEL_DIR_PREFIX = "soak-report-kernels-"


def _remove_stale_kernel_dirs() -> None:
    for d in Path(tempfile.gettempdir()).glob(f"{_KERNEL_DIR_PREFIX}*-*"):
        pid = d.name[len(_KERNEL_DIR_PREFIX):].split("-", 1)[0]
        try:
            mine = d.is_dir() and not d.is_symlink() and d.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and not supervisor.alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _render(path: Path, n: int, config, out_dir, kernel: str, timeout: float, simulate: bool, early: bool,
            kdir: Path, t0: float) -> ReportResult:
    ctx: dict[str, Any] = {}
    go = threading.Event()
    # the comparison notebook only for a run with a baseline arm
    books = {**NOTEBOOKS, **(COMPARE_NOTEBOOK if (path / BASELINE_DIR / MANIFEST).is_file() else {})}
    launched = {name: threading.Event() for name in books}

    def job(name: str, stem: str) -> tuple[float, float, Path, Path] | None:
        try:
            km = _start_kernel(kernel, name, kdir) if early else None
        finally:
            launched[name].set()
        import papermill  # noqa: F401 - imported while the kernel boots, not after the go
        go.wait()
        if "params" not in ctx:  # bad input: no notebook runs
            _stop_kernel(km)
            return None
        out = ctx["out"]
        try:
            took, nb = _execute(name, out / f"{stem}.ipynb", ctx["params"], kernel, timeout, km)
        except BaseException:
            if km is not None and km.has_kernel:  # papermill never took it over
                _stop_kernel(km)
            raise
        # each notebook is rendered as soon as it has run, overlapping the other's execution
        t1 = time.perf_counter()
        html, md = _export(nb, out, stem)  # the executed copy as written, not read back
        return took, time.perf_counter() - t1, html, md

    # the notebooks are independent: execute them side by side (one kernel process each)
    with ThreadPoolExecutor(max_workers=len(books)) as pool:
        futs = {name: pool.submit(job, name, stem) for name, stem in books.items()}
        try:
            # let the launches have the interpreter first: the kernels' boot is the longer path
            for ev in launched.values():
                ev.wait(5.0)
            res, run = _analyse(path, config, n, out_dir)
            # the kernels run in this cwd: paths below it are given relative to it, so the executed
            # notebook (bundled as POST_SOAK_AUDIT.ipynb) names no absolute path of this machine
            ctx["params"] = {"src": cwd_relative(run.path), "last_n": n,
                             "config": cwd_relative(config) if config else "", "simulate": bool(simulate),
                             "baseline": ""}
            ctx["out"] = res.out_dir
        finally:
            go.set()
        errors = []
        for name, fut in futs.items():
            try:
                took, rend, html, md = fut.result()
            except ReportError as exc:
                errors.append(exc)
                continue
            res.seconds[name] = took
            res.seconds["render"] = res.seconds.get("render", 0.0) + rend
            res.files[f"{name}_html"], res.files[f"{name}_md"] = html, md
            res.files[f"{name}_ipynb"] = res.out_dir / f"{books[name]}.ipynb"
    if errors:
        raise errors[0]
    res.seconds["total"] = time.perf_counter() - t0
    return res


def _analyse(path: Path, config, n: int, out_dir):
    """Open the run, write the snapshot and FAILURES.md (in-process, before the notebooks)."""
    t1 = time.perf_counter()
    # the goals the run was made with, unless --config
    _cfg, run, snap = _open_with_snapshot(path, config, n, "report")
    out = Path(out_dir) if out_dir else Path(run.path) / REPORTS_DIR
    res = ReportResult(out_dir=out, verdict=snap["verdict"])
    res.files["snapshot"] = out / SNAPSHOT
    res.files["failures"] = out / FAILURES
    with write_errors(out, "write the report"):
        out.mkdir(parents=True, exist_ok=True)
        _io.write_json(res.files["snapshot"], snap)
        _io.write_text(res.files["failures"], failures_markdown(run, snap))
    res.seconds["analysis"] = time.perf_counter() - t1
    return res, run


# the kernel's own start/stop chatter is not the user's business; no IPython history file
_KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL", "--HistoryManager.hist_file=:memory:"]


def preload(name: str) -> None:
    """Import what notebook ``name``'s cells will use (run by ``soak report``'s kernels while they
    boot, during the time the parent is still loading the run; the cells then find the modules
    loaded). Only imports: no state, nothing shown."""
    mods = ["pandas", "IPython.display", "soaklib.store.loader", "soaklib.judge.analysis", "soaklib.judge.gate"]
    if name == "audit":
        # the charts: matplotlib's Figure and the Agg canvas savefig draws with
        mods += ["soaklib.publish.plots", "soaklib.core.params", "soaklib.judge.verify", "matplotlib.backends.backend_agg"]
    elif name == "recommendations":
        mods += ["soaklib.judge.recommend"]
    elif name == "compare":
        mods += ["soaklib.publish.plots", "soaklib.judge.compare", "matplotlib.backends.backend_agg"]
    for m in mods:
        _imp.import_module(m)


def _start_kernel(kernel_name: str, name: str | None = None, kdir: Path | None = None):
    """Launch a kernel (without waiting for it to be ready) in the calling thread's event loop; None
    when that fails: papermill then starts its own and reports the problem in its words. The
    kernel first imports what notebook ``name`` needs (``preload``)."""
    try:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=kernel_name)
        if kdir is not None:
            km.connection_file = str(kdir / f"kernel-{name or kernel_name}.json")
        args = list(_KERNEL_ARGS)
        if name is not None and km.ipykernel:
            # IPython runs exec_lines before it answers the first request; the names it binds are
            # hidden from %who and the lines do not count as executions
            args.append(f"--IPKernelApp.exec_lines=from soaklib.publish import reports as _r; _r.preload({name!r}); del _r")
        run_sync(km.start_kernel)(extra_arguments=args)
        return km
    except Exception:  # noqa: BLE001 - see above
        return None


def _stop_kernel(km) -> None:
    if km is None:
        return
    try:
        from jupyter_core.utils import run_sync

        run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - best effort on the error path
        pass


def _manager_class(km):
    """A kernel-manager class whose construction yields the already started ``km``: nbclient sees
    a kernel that is up, skips its own launch, and still owns (and shuts down) the kernel."""

    class _Started(type(km)):
        def __new__(cls, *args, **kwargs):
            return km

    return _Started


def _execute(name: str, out_nb: Path, params: dict, kernel: str, timeout: float, km=None):
    """Run one notebook with papermill into ``out_nb``; (seconds, the executed notebook)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    t = time.perf_counter()
    p = {k: v for k, v in params.items() if k in PARAMS[name].__dataclass_fields__}
    extra = {"kernel_manager_class": _manager_class(km)} if km is not None else {}
    template = notebook_path(name)
    try:
        # executed with absolute paths (a relative output path was once resolved elsewhere and papermill
        # found no output folder); the metadata names them relative to the cwd below (no absolute path)
        nb = pm.execute_notebook(str(Path(template).resolve()), str(Path(out_nb).resolve()), parameters=p,
                                 kernel_name=kernel,
                                 progress_bar=False, log_output=False, execution_timeout=timeout, cwd=None,
                                 # no rewrite of the whole notebook after every cell; papermill still
                                 # saves the partly executed copy when a cell fails
                                 request_save_on_cell_execute=False, autosave_cell_every=0,
                                 extra_arguments=list(_KERNEL_ARGS),
                                 # every cell's outputs are in by then: stop the kernel at once instead of
                                 # asking it to shut down and polling until it has (~0.3 s per notebook)
                                 shutdown_kernel="immediate", **extra)
    except PapermillExecutionError as exc:
        first = next((ln.strip() for ln in (exc.source or "").splitlines() if ln.strip()), "")
        first = first if len(first) <= 60 else first[:57] + "..."
        # the execution count includes papermill's injected-parameters cell: the source line is what
        # finds the cell in the template
        raise ReportError(f"{name} notebook failed in cell {exc.exec_count} `{first}` ({exc.ename}: "
                          f"{str(exc.evalue).splitlines()[0] if exc.evalue else ''}); partly executed copy kept",
                          path=out_nb) from None
    except Exception as exc:  # kernel died, timeout, missing kernel: one line, not a traceback
        raise ReportError(f"{name} notebook could not run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                          path=out_nb) from None
    meta = nb.metadata.get("papermill", {})
    meta["output_path"] = cwd_relative(out_nb)
    meta["input_path"] = cwd_relative(template)
    if Path(meta["input_path"]).is_absolute():
        # the template lives outside the cwd (an installed soaklib): name it as the checkout does
        meta["input_path"] = f"{template.parent.name}/{template.name}"
    import nbformat  # heavy; only after the notebook ran

    # written once more, so the executed copy holds no absolute path
    with write_errors(out_nb, "write the report"):
        _io.atomic_write_bytes(out_nb, nbformat.writes(nb).encode("utf-8"))
    return time.perf_counter() - t, nb


def cwd_relative(p: str | os.PathLike) -> str:
    """``p`` relative to the current directory when it lies below it (resolved), else absolute."""
    full = Path(p).resolve()
    try:
        return str(full.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(full)


_TEMPLATES = Path(__file__).resolve().parent / "templates"
_HTML_TEMPLATE = "audit_lab.html.j2"
_EXPORT_LOCK = threading.Lock()
_EXPORTERS: dict[str, Any] = {}


def _exporters():
    """The HTML and Markdown exporters, built once per process (template loading and compiling is
    most of an export's cost); callers hold ``_EXPORT_LOCK``."""
    if not _EXPORTERS:
        from nbconvert import HTMLExporter, MarkdownExporter

        opts = dict(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        # the lab template minus its CDN loaders (templates/audit_lab.html.j2): self-contained HTML
        _EXPORTERS["html"] = HTMLExporter(embed_images=True, template_name="lab", template_file=_HTML_TEMPLATE,
                                          extra_template_paths=[str(_TEMPLATES)], **opts)
        _EXPORTERS["md"] = MarkdownExporter(**opts)
    return _EXPORTERS["html"], _EXPORTERS["md"]


def _export(nb, out: Path, stem: str) -> tuple[Path, Path]:
    """Render an executed notebook (a NotebookNode, or the path of one) to ``STEM.html`` and
    ``STEM.md`` (+ ``STEM_files/``) in ``out``."""
    import nbformat

    if not isinstance(nb, nbformat.NotebookNode):
        nb = nbformat.read(str(nb), as_version=4)
    else:
        nb = nbformat.from_dict(nb)  # a copy: the cell filter below must not touch the caller's
    # papermill's own banner cells and parameter cells are not part of the report
    nb.cells = [c for c in nb.cells if not ({"injected-parameters", "parameters", "papermill-error-cell-tag"}
                                            & set(c.get("metadata", {}).get("tags", [])))]
    files_dir = f"{stem}_files"
    with _EXPORT_LOCK:
        html_exp, md_exp = _exporters()
        body, _ = html_exp.from_notebook_node(nb)
        mdbody, resources_ = md_exp.from_notebook_node(nb, resources={"output_files_dir": files_dir})
    html_path, md_path = out / f"{stem}.html", out / f"{stem}.md"
    writes = [(html_path, body.encode("utf-8")), (md_path, mdbody.encode("utf-8"))]
    for rel, data in (resources_.get("outputs") or {}).items():
        writes.append((out / rel, data))
    with write_errors(out, "write the report"):
        for d in {w[0].parent for w in writes}:
            d.mkdir(parents=True, exist_ok=True)
        # each atomic write waits for its fsync (which releases the GIL): issue them side by side
        with ThreadPoolExecutor(max_workers=min(8, len(writes))) as pool:
            list(pool.map(lambda w: _io.atomic_write_bytes(*w), writes))
    return html_path, md_path


def failures_markdown(run: Run, snap: Mapping[str, Any]) -> str:
    """FAILURES.md with the seed's headings: KPI goals not met plus failed iterations."""
    bad = [k for k, g in snap["goals"].items() if g.get("status") not in ("PASS", "WARN")]
    return markdown.render("failures.md.j2", s=snap, bad=bad, **_failures(run, snap))


__all__ = ["Audit", "Advice", "AuditParams", "RecommendationsParams", "PARAMS", "render", "ReportResult",
           "example_run", "notebook_path", "html_escape"]
