"""``soak gate RUN [--last-n 8] [--summary-md FILE] [--fail-on-warn]``: KPI goals → exit code (DESIGN §9)."""
from __future__ import annotations

from pathlib import Path

import click

from soaklib.core import io as _io
from soaklib.core import options
from soaklib.core.config import run_config
from soaklib.core.errors import CheckFailed
from soaklib.core.goals import FAIL, INCONCLUSIVE, WARN
from soaklib.judge.gate import evaluate_run
from soaklib.publish.markdown import gate_markdown
from soaklib.store.loader import open_run
from soaklib.store.rundir import GATE, REPORTS_DIR, write_errors


@click.command("gate")
@click.argument("run", type=click.Path())
@click.option("--last-n", default=None, metavar="N", callback=options.click_callback,
              help="evaluate the last N ok iterations (default: [report] last_n, 8)")
@click.option("--summary-md", type=click.Path(dir_okay=False),
              help="also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY; appended to)")
@click.option("--fail-on-warn", is_flag=True, help="exit 1 on WARN too")
@click.option("--baseline", "baseline_run", default=None, type=click.Path(), metavar="RUN",
              help="judge non-inferiority against this run on the same (seed, window) pairs "
                   "(default: the run's own baseline arm, RUN/baseline, when it has a confirmation phase)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file overriding defaults")
def command(run: str, last_n: int | None, summary_md: str | None, fail_on_warn: bool,
            baseline_run: str | None, config_path: str | None) -> None:
    """Evaluate the KPI goals over the run's last N ok iterations.

    Writes RUN/reports/analysis/GATE.json. Exit 0 on PASS or WARN, 1 on FAIL or INCONCLUSIVE
    (missing data never passes), 1 on WARN with --fail-on-warn.
    """
    r = open_run(run)
    cfg = run_config(r, config_path)
    res = evaluate_run(r, cfg, last_n, baseline=open_run(baseline_run) if baseline_run is not None else None)
    # the gate already names excluded failed iterations
    res.notes.extend(f"loader: {w}" for w in r.warnings if not w.startswith("failed iterations"))
    out = Path(r.path) / REPORTS_DIR / GATE
    with write_errors(out, "write the gate result"):
        out.parent.mkdir(parents=True, exist_ok=True)
        _io.write_json(out, res.to_dict())
    if summary_md:
        # append: GitHub's step summary file collects several steps
        with write_errors(summary_md, "write the summary"), open(summary_md, "a", encoding="utf-8") as f:
            f.write(gate_markdown(res))
    click.echo(res.to_text())
    if res.verdict in (FAIL, INCONCLUSIVE) or (fail_on_warn and res.verdict == WARN):
        bad = [f"{g.kpi}={g.status}" for g in res.goals if g.status != "PASS"]
        raise CheckFailed(f"gate {res.verdict}: " + ", ".join(bad))
