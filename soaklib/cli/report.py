"""``soak report RUN [--last-n 8] [--config FILE] [--out DIR]``."""
from __future__ import annotations

import click

from soaklib.core import options
from soaklib.publish.reports import render


@click.command("report")
@click.argument("run", type=click.Path())
@click.option("--last-n", default=None, metavar="N", callback=options.click_callback, help="iterations in the last-N window (default: [report] last_n)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML file overriding defaults")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="output directory (default: RUN/reports/analysis)")
@click.option("--simulate/--no-simulate", default=True, show_default=True,
              help="re-simulate candidate deltas for recommendations on simulator runs")
def command(run: str, last_n: int | None, config_path: str | None, out_dir: str | None, simulate: bool) -> None:
    """Execute the audit and recommendations notebooks over RUN and render HTML + Markdown."""
    res = render(run, last_n=last_n, config=config_path, out_dir=out_dir, simulate=simulate)
    s = res.seconds
    click.echo(f"verdict: {res.verdict}  (analysis {s.get('analysis', 0):.1f} s, notebooks "
               f"{max(s.get('audit', 0), s.get('recommendations', 0)):.1f} s, render {s.get('render', 0):.1f} s)")
    for key in ("snapshot", "audit_md", "recommendations_md", "recommendations_html", "failures"):
        click.echo(f"  {res.files[key]}")
    click.echo(f"HTML report: {res.html}")
