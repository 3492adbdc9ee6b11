"""``soak metrics RUN [--textfile F | --serve HOST:PORT | --push URL [--job NAME] [--delete]]``."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from soaklib.core import options
from soaklib.core.config import run_config
from soaklib.core.errors import InputError
from soaklib.publish import metrics as m
from soaklib.store.loader import open_run
from soaklib.store.rundir import METRICS_TEXTFILE


@click.command("metrics")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--textfile", type=click.Path(dir_okay=False, path_type=Path),
              help="write a node_exporter textfile (default when no other output: RUN/metrics/soak.prom)")
@click.option("--serve", "serve_at", metavar="HOST:PORT",
              help="serve /metrics over HTTP until interrupted (host defaults to 127.0.0.1; port 0 = any)")
@click.option("--serve-seconds", default=None, metavar="SECONDS", callback=options.click_callback,
              help="with --serve: stop after this many seconds instead of waiting for an interrupt")
@click.option("--push", "push_url", metavar="URL", help="pushgateway URL (pushadd; grouping key job + run)")
@click.option("--job", help="pushgateway job name (default: [metrics] job)")
@click.option("--delete", is_flag=True, help="with --push: delete this run's group from the pushgateway")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="TOML config (default: the config the run was made with)")
def command(run: Path, textfile: Path | None, serve_at: str | None, serve_seconds: float | None,
            push_url: str | None, job: str | None, delete: bool, config_path: str | None) -> None:
    """Export a run's metrics to Prometheus (textfile, HTTP or pushgateway)."""
    if sum(x is not None for x in (textfile, serve_at, push_url)) > 1:
        raise InputError("choose one of --textfile, --serve, --push")
    if delete and push_url is None:
        raise InputError("--delete needs --push URL")
    if serve_seconds is not None and serve_at is None:
        raise InputError("--serve-seconds needs --serve")

    r = open_run(run)
    cfg = run_config(r, config_path)
    mcfg = m.metrics_config(cfg)

    if push_url is not None:
        job = job or str(mcfg["job"])
        run_id = str(r.manifest.get("run_id") or r.path.name)
        timeout = float(mcfg["push_timeout_s"])
        if delete:
            m.delete(push_url, job, run_id, timeout=timeout)
            click.echo(f"deleted job={job} run={run_id} from {push_url}")
        else:
            m.push(m.run_registry(r, cfg), push_url, job, run_id, timeout=timeout)
            click.echo(f"pushed job={job} run={run_id} to {push_url}")
        return

    registry = m.run_registry(r, cfg)
    if serve_at is not None:
        host, port = m.parse_hostport(serve_at)
        server = m.MetricsServer(registry, host, port)
        stop = threading.Event()
        old = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            # the line tests and operators wait for: the real port (port 0 picks one)
            click.echo(f"serving {server.url}", err=True)
            sys.stderr.flush()
            try:
                stop.wait(serve_seconds)
            except KeyboardInterrupt:
                pass
        finally:
            signal.signal(signal.SIGTERM, old)
            server.close()
        return

    out = textfile if textfile is not None else r.path / METRICS_TEXTFILE
    m.write_textfile(registry, out, make_parent=textfile is None)
    click.echo(str(out))
