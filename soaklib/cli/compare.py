"""``soak compare BASELINE CANDIDATE [--unpaired] [--json]``: the paired judge (DESIGN §9)."""
from __future__ import annotations

from pathlib import Path

import click

from soaklib.core import io as _io
from soaklib.core.config import run_config
from soaklib.core.errors import CheckFailed
from soaklib.judge.compare import PASS, compare_runs
from soaklib.publish.markdown import compare_markdown
from soaklib.store.loader import open_run
from soaklib.store.rundir import COMPARE, REPORTS_DIR, write_errors


@click.command("compare")
@click.argument("baseline", type=click.Path())
@click.argument("candidate", type=click.Path())
@click.option("--unpaired", is_flag=True,
              help="compare as independent samples (Mann–Whitney) when the runs share no (seed, window)")
@click.option("--json", "as_json", is_flag=True, help="print COMPARE.json instead of the table")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file overriding defaults")
def command(baseline: str, candidate: str, unpaired: bool, as_json: bool, config_path: str | None) -> None:
    """Judge CANDIDATE against BASELINE, iteration by iteration on the same (seed, window).

    Writes CANDIDATE/reports/analysis/COMPARE.json and COMPARE.md. Exit 0 on PASS, 1 on FAIL or INCONCLUSIVE,
    2 when the runs cannot be paired (unless --unpaired) or a margin is misconfigured.
    """
    b, c = open_run(baseline), open_run(candidate)
    cfg = run_config(c, config_path)
    res = compare_runs(b, c, cfg, unpaired=unpaired)
    data = res.to_dict()
    out = Path(c.path) / REPORTS_DIR
    with write_errors(out, "write the comparison"):
        out.mkdir(parents=True, exist_ok=True)
        _io.write_json(out / f"{COMPARE}.json", data)
        _io.write_text(out / f"{COMPARE}.md", compare_markdown(res))
    click.echo(_io.dumps(data) if as_json else res.to_text())
    if res.verdict != PASS:
        bad = [f"{k.kpi}={k.verdict}" for k in res.kpis if k.verdict in ("WORSE", "INCONCLUSIVE")]
        raise CheckFailed(f"compare {res.verdict}: " + (", ".join(bad) or "; ".join(res.notes)))
