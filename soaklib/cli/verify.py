"""``soak verify RUN [--strict] [--threshold 0.95] [--json]``: did the tuning deltas land? (DESIGN §8)"""
from __future__ import annotations

from pathlib import Path

import click

from soaklib.core import io as _io
from soaklib.core import options
from soaklib.core.config import run_config
from soaklib.core.errors import CheckFailed
from soaklib.judge.verify import verify_run
from soaklib.publish.markdown import verify_markdown
from soaklib.store.loader import open_run
from soaklib.store.rundir import DELTA_VERIFY, REPORTS_DIR, write_errors


@click.command("verify")
@click.argument("run", type=click.Path())
@click.option("--strict", is_flag=True, help="exit 1 when full_apply_ratio is below the threshold")
@click.option("--threshold", default=None, metavar="X", callback=options.click_callback,
              help="pass mark for full_apply_ratio (default: [verify] threshold, 0.95)")
@click.option("--json", "as_json", is_flag=True, help="print the JSON report instead of the Markdown")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file overriding defaults")
def command(run: str, strict: bool, threshold: float | None, as_json: bool, config_path: str | None) -> None:
    """Verify that each iteration ran with the previous params plus the applied deltas.

    Writes RUN/reports/analysis/DELTA_VERIFY_REPORT.json and .md (atomically) and prints one of them.
    """
    r = open_run(run)
    cfg = run_config(r, config_path)
    rep = verify_run(r, cfg, threshold=threshold)
    out = Path(r.path) / REPORTS_DIR
    data = rep.to_json()
    md = verify_markdown(rep)
    with write_errors(out, "write the verification report"):
        out.mkdir(parents=True, exist_ok=True)
        _io.write_json(out / f"{DELTA_VERIFY}.json", data)
        _io.write_text(out / f"{DELTA_VERIFY}.md", md)
    click.echo(_io.dumps(data) if as_json else md)
    if strict and rep.verdict == "INCONCLUSIVE":
        raise CheckFailed("delta verification inconclusive: no iteration pair could be checked "
                          "(the records report no parameters, or the run has fewer than 2 ok iterations)")
    if strict and not rep.passed:
        raise CheckFailed(f"delta verification failed: full_apply_ratio {rep.full_apply_ratio:.3f} "
                          f"(threshold {rep.threshold:.3f}), mismatches {rep.counts['mismatch']}, "
                          f"missing {rep.counts['missing']}, unexpected changes {rep.counts['unexpected_changes']}")
