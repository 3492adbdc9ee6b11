"""``soak run``: a new soak (or ``--resume RUN``), progress bar per iteration, closing table."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from soaklib.core import options
from soaklib.core.config import load_config
from soaklib.core.errors import InputError, SoakError
from soaklib.core.numbers import finite
from soaklib.core.params import load_profile, registry
from soaklib.core.text import fmt_num
from soaklib.execute import runners
from soaklib.publish.metrics import LiveExporter
from soaklib.sim.scenario import load_scenario
from soaklib.store.rundir import OVERRIDES
from soaklib.tune import loop as soak


class _Progress:
    """Soak observer: a tqdm bar on stderr showing the last iteration's KPIs."""

    def __init__(self, runs_dir: str | Path | None = None) -> None:
        self.bar = None
        self.runs_dir = runs_dir

    def on_start(self, manifest: dict) -> None:
        self.bar = tqdm(total=int(manifest["iterations_planned"]), initial=int(manifest.get("iterations_done", 0)),
                        desc=f"soak {manifest['run_id']}", unit="it", file=sys.stderr, dynamic_ncols=True)

    def on_iteration(self, record: dict, manifest: dict) -> None:
        if self.bar is None:
            return
        s = record.get("summary") or {}
        if record.get("status") == "failed":
            self.bar.set_postfix_str(f"it {record['iteration']} FAILED: {record['failure']['reason'][:40]}")
        else:
            self.bar.set_postfix_str(
                f"net={_f(s.get('net_bps'), '.2f')} mt={_f(s.get('maker_taker_ratio'), '.2f')} "
                f"p95={_f(s.get('p95_latency_ms'), '.0f')}ms risk={_f(s.get('risk_ratio'), '.2f')} "
                f"{s.get('kpi_verdict') or ''}")
        self.bar.update(1)

    def on_finish(self, manifest: dict) -> None:
        if self.bar is not None:
            self.bar.close()
        # a SoakError says this itself, in its one line (soaklib.tune.loop)
        if (manifest.get("status") in ("interrupted", "failed") and self.runs_dir is not None
                and not isinstance(sys.exc_info()[1], SoakError)):
            where = Path(self.runs_dir) / str(manifest.get("run_id"))
            click.echo(f"soak: run {manifest.get('status')} after {manifest.get('iterations_done')} iterations; "
                       f"continue with: soak run --resume {where}", err=True)


def _f(v: Any, spec: str) -> str:
    """A KPI in the terminal: '-' when not measured; an int is formatted like a float."""
    return fmt_num(finite(v), spec, missing="-")


def closing_table(records: list[dict]) -> str:
    """Plain-text table of the run: one row per iteration."""
    head = f"{'iter':>4} {'status':<6} {'net_bps':>8} {'mk/tk':>6} {'p95 ms':>7} {'risk':>5} {'verdict':<7} changed"
    return "\n".join([head, "-" * len(head), *(_closing_row(r) for r in records)])


def _closing_row(r: dict) -> str:
    s = r.get("summary") or {}
    t = r.get("tuning") or {}
    changed = ", ".join(f"{k}{fmt_num(float(t['deltas'][k]), '+g')}" for k in t.get("changed_keys") or []
                        if k in t.get("deltas", {}))
    return (f"{r['iteration']:>4} {r['status']:<6} {_f(s.get('net_bps'), '.2f'):>8} "
            f"{_f(s.get('maker_taker_ratio'), '.3f'):>6} {_f(s.get('p95_latency_ms'), '.0f'):>7} "
            f"{_f(s.get('risk_ratio'), '.2f'):>5} {(s.get('kpi_verdict') or '-'):<7} {changed}")


def _resolve_scenario(name: str) -> str:
    p = Path(name)
    if p.suffix == ".toml" or "/" in name:
        if not p.is_file():
            raise InputError("scenario file not found", path=p, field="scenario")
        return str(p.resolve())
    return name


def _check_scenario(scenario: str, cfg: dict) -> None:
    """Fail on an unknown/malformed scenario before a run dir is created (when the sim can tell)."""
    load_scenario(scenario)


def _sigterm(signum, frame):  # turn SIGTERM into the same clean stop as Ctrl-C
    raise KeyboardInterrupt


@click.command("run")
@click.option("--iterations", default=None, metavar="N", help="iterations to run (default: run.iterations)")
@click.option("--auto-tune/--no-auto-tune", "auto_tune", default=None, help="tune parameters between iterations")
@click.option("--runner", "runner_spec", default="sim", metavar="sim|hbt|CMD", show_default=True,
              help='"sim" (embedded simulator), "hbt" (hftbacktest engine, opt-in) or an external command line')
@click.option("--scenario", default=None, metavar="NAME|FILE", help="scenario NAME or TOML FILE (default: run.scenario)")
@click.option("--profile", default=None, metavar="NAME|FILE", help="initial parameters: profile NAME or JSON FILE (default: run.profile)")
@click.option("--seed", default=None, metavar="S", help="run seed (default: run.seed)")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="TOML config file")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--metrics-port", default=None, metavar="PORT", help="serve live Prometheus metrics on 127.0.0.1:PORT")
@click.option("--iteration-timeout", default=None, metavar="SECONDS", help="seconds per iteration (external runner)")
@click.option("--on-failure", default=None, metavar="[continue|stop]", help="continue | stop (default: run.on_failure)")
@click.option("--resume", "resume_dir", default=None, type=click.Path(), metavar="RUN", help="continue an interrupted run dir")
@click.option("--duration-s", default=None, metavar="SECONDS", help="simulated seconds per iteration")
@click.option("--baseline", default=None, metavar="NAME|FILE|RUN",
              help="auto-tune: the baseline run on the confirmation windows (a profile, or a run's final "
                   "parameters; default: the starting profile)")
@click.option("--confirm-iterations", default=None, metavar="K",
              help="auto-tune: frozen iterations on fresh windows after tuning (default: confirm.iterations; 0: none)")
def command(iterations, auto_tune, runner_spec, scenario, profile, seed, config_path, runs_dir, metrics_port,
            iteration_timeout, on_failure, resume_dir, duration_s, baseline, confirm_iterations) -> int:
    """Run a soak: N iterations of the strategy, auto-tuning between them, into runs/<id>/."""
    # every number within its bounds (core.options: the config schema's, so an option obeys the limit
    # the config file does); a bad value is one line "soak: error: ..." with exit 2, before any run dir
    iterations = options.parse("--iterations", iterations)
    seed = options.parse("--seed", seed)
    metrics_port = options.parse("--metrics-port", metrics_port)
    iteration_timeout = options.parse("--iteration-timeout", iteration_timeout)
    duration_s = options.parse("--duration-s", duration_s)
    confirm_iterations = options.parse("--confirm-iterations", confirm_iterations)
    if on_failure is not None and on_failure not in ("continue", "stop"):
        raise InputError(f"expected 'continue' or 'stop', got {on_failure!r}", field="--on-failure")

    progress = _Progress(runs_dir if resume_dir is None else Path(resume_dir).parent)
    observers: list[Any] = [progress]
    exporter = None
    if resume_dir is not None:
        given = {"--iterations": iterations, "--auto-tune": auto_tune, "--scenario": scenario, "--profile": profile,
                 "--seed": seed, "--config": config_path, "--on-failure": on_failure, "--duration-s": duration_s,
                 "--iteration-timeout": iteration_timeout, "--baseline": baseline,
                 "--confirm-iterations": confirm_iterations}
        clash = [k for k, v in given.items() if v is not None] + (["--runner"] if runner_spec != "sim" else [])
        if clash:
            raise InputError(f"{', '.join(clash)} cannot be combined with --resume (a run resumes with its own "
                             "settings from run.json)", field="resume")

    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        if resume_dir is None:
            run_over: dict[str, Any] = {}
            if on_failure is not None:
                run_over["on_failure"] = on_failure
            if iteration_timeout is not None:
                run_over["iteration_timeout_s"] = float(iteration_timeout)
            if duration_s is not None:
                run_over["duration_s"] = float(duration_s)
            cfg = load_config(config_path, overrides={"run": run_over} if run_over else None)
            rc = cfg["run"]
            n = iterations if iterations is not None else int(rc["iterations"])
            if n < 1:
                raise InputError(f"expected an integer >= 1, got {n}", field="run.iterations")
            if n > cfg["seed"]["max_iteration_number"]:  # the loader refuses larger record numbers
                raise InputError(f"expected at most seed.max_iteration_number ({cfg['seed']['max_iteration_number']}), "
                                 f"got {n}", field="--iterations")
            scen = _resolve_scenario(scenario if scenario is not None else rc["scenario"])
            prof = profile if profile is not None else rc["profile"]
            values = load_profile(prof, registry(cfg))
            base = None
            if baseline is not None:
                # a run dir: the parameters it ended with (what it would ship); else a profile
                bsrc = Path(baseline) / OVERRIDES if Path(baseline).is_dir() else baseline
                base = (str(baseline), load_profile(str(bsrc), registry(cfg)))
            if runner_spec == "sim":
                _check_scenario(scen, cfg)
            runner = runners.make_runner(runner_spec, scenario=scen, duration_s=float(rc["duration_s"]), config=cfg,
                                 timeout_s=float(rc["iteration_timeout_s"]))
            if metrics_port is not None:
                exporter = _exporter(metrics_port, cfg)
                observers.append(exporter)
            res = soak.run_soak(runs_dir=runs_dir, iterations=n, cfg=cfg, profile_name=str(prof),
                                profile_values=values, seed=int(seed if seed is not None else rc["seed"]),
                                scenario=scen, auto_tune=bool(auto_tune), duration_s=float(rc["duration_s"]),
                                runner=runner, runner_label=runner_spec, observers=observers,
                                confirm_iterations=confirm_iterations, baseline=base)
        else:
            if metrics_port is not None:
                exporter = _exporter(metrics_port, None)
                observers.append(exporter)
            res = soak.resume(resume_dir, observers=observers)
    finally:
        signal.signal(signal.SIGTERM, old)
        if exporter is not None and hasattr(exporter, "close"):
            exporter.close()
    click.echo(closing_table(res.records))
    click.echo(f"run: {res.path} ({res.status}, {len(res.records)} iterations, wall {res.wall_s:.1f} s, "
               f"runner {res.runner_s:.1f} s)")
    return 0


def _exporter(port: int, cfg: dict | None):
    return LiveExporter(port, host="127.0.0.1", cfg=cfg) if cfg is not None else LiveExporter(port, host="127.0.0.1")
