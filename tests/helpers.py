"""Test helpers shared by several test modules (imported as ``from helpers import ...``; pytest puts
tests/ on the path). System tools: tests that need a real tool call ``require_tool``; it skips with a
loud reason when the tool is absent, and fails under CI (CI=true), where a skip would hide a gap."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from soaklib.cli import main


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of a system executable, or skip (fail under CI) naming the Debian package."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path:
        return path
    msg = (f"SYSTEM TOOL MISSING: '{name}' not found; run the README test command as root "
           f"(it installs prometheus, prometheus-pushgateway, chromium, git)")
    if _under_ci():
        pytest.fail(msg + " -- under CI=true this is a failure, not a skip")
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc, deadline_s: float = 30.0) -> None:
    """Wait until ``url`` answers, failing early (with its stderr) if the server process exits."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else b""
            err = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}: {err[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not up after {deadline_s}s")


def stop_process(proc) -> None:
    """SIGTERM, then SIGKILL after 10 s: every server a test starts is ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def run_cli(args, capsys):
    """Run ``soak ARGS`` in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ei:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return ei.value.code, out.out, out.err


def assert_config_refused(tmp_path, toml: str, field: str) -> None:
    """`soak config validate` on ``toml``: exit 2, one line naming the file and ``field``."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    p = subprocess.run([sys.executable, "-m", "soaklib", "config", "validate", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soak: error: "), p.stderr
    assert f"field '{field}'" in lines[0] and str(cfg) in lines[0], lines[0]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking call (PEP 475 re-raises from the handler)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (a hang)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
