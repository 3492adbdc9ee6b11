"""The external bot runner (DESIGN §13): ``soak run --runner "CMD ARGS"``.

Per iteration CMD runs once (shlex-split, no shell, its own process group) with environment
``SOAK_ITERATION`` (1-based), ``SOAK_OVERRIDES`` (path of a JSON object of flat parameters to run
with), ``SOAK_OUTPUT`` (where CMD must write its result), ``SOAK_SEED`` and ``SOAK_RUN_DIR``; also
``SOAK_START_S`` (the iteration's window start). CMD writes an EDGE_REPORT-format JSON
(``totals`` or ``total``, optional ``applied_overrides`` flat or in nested sections) and exits 0.

A non-zero exit, a timeout (the whole process group is killed), a missing, unparseable or invalid
output becomes ``RunnerOutput(ok=False, failure={reason, stderr_tail})``; the loop records it. Files
live in ``RUN/.runner/iter_<n>/`` (overrides.json, output.json, stdout.log, stderr.log), nothing
outside the run dir.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soaklib.core import io as _io
from soaklib.core.edge import summary_from_edge
from soaklib.core.errors import ConfigError, RecordError
from soaklib.core.params import Registry, registry
from soaklib.execute import supervisor
from soaklib.execute.base import RunnerOutput
from soaklib.execute.supervisor import WORK_DIR


def _tail(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars * 4))
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")[-chars:].strip()


def applied_params(obj: Any, reg: Registry, *, path: object) -> dict[str, float | int]:
    """Flat registry values from a bot's ``applied_overrides`` (flat keys and/or nested sections,
    resolved through the registry's paths). Keys the registry does not know are the bot's own and
    are ignored; a flat key wins over a nested one. Non-numbers raise RecordError."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"expected an object, got {type(obj).__name__}", path=path, field="applied_overrides")
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if not prefix and key in reg:
                flat[key] = (key, v)
            elif reg.by_path(key) is not None:
                nested[reg.by_path(key).name] = (key, v)
            elif isinstance(v, Mapping):
                walk(v, key + ".")

    walk(obj, "")
    out: dict[str, float | int] = {}
    for name, (key, v) in {**nested, **flat}.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            shown = repr(v)[:40]
            raise RecordError(f"expected a number, got {shown}", path=path, field=f"applied_overrides.{key}")
        out[name] = v
    return out


class CommandRunner:
    """Runs an external bot command once per iteration; see the module docstring for the contract."""

    def __init__(self, cmd: str, timeout_s: float, config: Mapping[str, Any]):
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            raise ConfigError(f"cannot parse the command line: {exc}", field="runner") from None
        if not argv:
            raise ConfigError("empty command line", field="runner")
        exe = argv[0]
        if shutil.which(exe) is None and not (os.sep in exe and os.access(exe, os.X_OK)):
            raise ConfigError(f"command not found or not executable: {exe}", field="runner")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
            raise ConfigError(f"expected a timeout > 0 seconds, got {timeout_s!r}", field="iteration-timeout")
        self.cmd = cmd
        self.name = cmd
        self.argv = argv
        self.timeout_s = float(timeout_s)
        self.config = config
        ext = config.get("external", {})
        self.tail_chars = int(ext.get("stderr_tail_chars", 2000))
        self.term_grace_s = float(ext.get("term_grace_s", 1.0))
        self.registry = registry(config)

    # -- process handling ---------------------------------------------------------------------

    def _kill_group(self, proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self, proc: subprocess.Popen, sup: supervisor.Supervision) -> tuple[int | None, bool]:
        """(returncode, timed_out). On timeout: SIGTERM to the group, SIGKILL to the whole tree after
        the grace. While waiting, the bot's processes are recorded as they appear (for a resume after a
        kill -9 of soak); whatever it started (setsid, env -i, double-forked) is killed when the
        Supervision ends."""
        deadline = time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    rc = proc.wait(timeout=max(0.0, min(supervisor.REFRESH_S, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() >= deadline:
                        raise
                    sup.refresh()
        except subprocess.TimeoutExpired:
            self._kill_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=self.term_grace_s)
            except subprocess.TimeoutExpired:
                pass
            supervisor.kill_tree(proc.pid, sup.token)
            proc.wait()
            return proc.returncode, True
        except BaseException:
            # Ctrl-C / SIGTERM of soak: the bot runs in its own session and would outlive us
            supervisor.kill_tree(proc.pid, sup.token)
            proc.wait()
            raise
        # stray children of a finished bot: its group now; the rest when the Supervision ends
        self._kill_group(proc, signal.SIGKILL)
        return rc, False

    # -- one iteration ------------------------------------------------------------------------

    def run(self, params: Mapping[str, Any], *, iteration: int, seed: int, run_dir: Path | None = None,
            start_s: float = 0.0) -> RunnerOutput:
        """Run CMD for one iteration and turn its EDGE_REPORT into a RunnerOutput."""
        if run_dir is None:  # direct API use without a run: keep files in a private temp dir
            with tempfile.TemporaryDirectory(prefix="soak-runner-") as tmp:
                return self.run(params, iteration=iteration, seed=seed, run_dir=Path(tmp), start_s=start_s)
        run_dir = Path(run_dir).resolve()
        work = run_dir / WORK_DIR / f"iter_{int(iteration)}"
        work.mkdir(parents=True, exist_ok=True)
        out_path, ov_path = work / "output.json", work / "overrides.json"
        for stale in (out_path, work / "stdout.log", work / "stderr.log"):  # a resumed iteration starts clean
            stale.unlink(missing_ok=True)
        _io.write_json(ov_path, {k: v for k, v in params.items()})
        env = dict(os.environ)
        token = supervisor.new_token()
        env[supervisor.TOKEN_ENV] = token
        env.update(SOAK_ITERATION=str(int(iteration)), SOAK_OVERRIDES=str(ov_path), SOAK_OUTPUT=str(out_path),
                   SOAK_SEED=str(int(seed)), SOAK_RUN_DIR=str(run_dir), SOAK_START_S=repr(float(start_s)))
        t0 = time.perf_counter()
        err_log = work / "stderr.log"
        try:
            with open(work / "stdout.log", "wb") as out_fh, open(err_log, "wb") as err_fh:
                # token, pid and the bot's processes on disk (RUN/.runner/bot.json) while it runs: a
                # resume after a kill -9 of soak finds whatever it left running
                with supervisor.Supervision(run_dir, token) as sup:
                    proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=out_fh,
                                            stderr=err_fh, start_new_session=True, close_fds=True)
                    try:
                        sup.started(proc.pid)
                        rc, timed_out = self._wait(proc, sup)
                    except BaseException:
                        supervisor.kill_tree(proc.pid, token)
                        proc.wait()
                        raise
        except OSError as exc:
            return RunnerOutput.failed(f"cannot start the runner command: {exc.strerror or exc}",
                                       elapsed_s=time.perf_counter() - t0)
        elapsed = time.perf_counter() - t0
        tail = _tail(err_log, self.tail_chars)

        def failed(reason: str) -> RunnerOutput:
            return RunnerOutput.failed(reason, tail, elapsed_s=elapsed, market={"source": "external"})

        if timed_out:
            return failed(f"timed out after {self.timeout_s:g} s (process group killed)")
        if rc != 0:
            if rc < 0:
                try:
                    name = signal.Signals(-rc).name
                except ValueError:
                    name = str(-rc)
                return failed(f"killed by signal {name}")
            return failed(f"exit code {rc}")
        if not out_path.exists():
            return failed("exited 0 but wrote no output file (SOAK_OUTPUT)")
        try:
            report = _io.read_json(out_path)
            kpis = summary_from_edge(report, path="SOAK_OUTPUT")
            applied = (applied_params(report["applied_overrides"], self.registry, path="SOAK_OUTPUT")
                       if isinstance(report, dict) and report.get("applied_overrides") is not None else None)
        except RecordError as exc:
            return failed(f"invalid output: {str(exc).replace(str(out_path), 'SOAK_OUTPUT')}")
        totals = report.get("totals", report.get("total", report))
        rg = totals.get("runtime_guards")
        runtime = report.get("runtime") if isinstance(report.get("runtime"), dict) else {}
        market = {"source": "external",
                  "symbols": sorted(map(str, report["symbols"])) if isinstance(report.get("symbols"), dict) else [],
                  # runtime.utc is wall clock: left out so same-seed runs compare equal
                  "bot_version": runtime.get("version") if isinstance(runtime.get("version"), str) else None}
        events = totals.get("events")
        reported = applied or {}
        return RunnerOutput(
            ok=True, kpis=kpis, params=dict(reported),
            runtime_guards=dict(rg) if isinstance(rg, dict) else {},
            market=market,
            events=int(events) if isinstance(events, int) and not isinstance(events, bool) and events >= 0 else None,
            params_missing=sorted(k for k in params if k not in reported),
            elapsed_s=elapsed,
            stderr_tail=tail,
        )
