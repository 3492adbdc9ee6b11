"""Supervision of an external bot's processes (Linux ``/proc``): nothing it starts outlives its iteration.

A bot runs in its own process group, but a child that calls ``setsid`` leaves that group, and a
``kill -9`` of soak leaves the whole bot running. So each bot process is started with a random token
in its environment (``SOAK_SUPERVISOR_TOKEN``, inherited by every descendant, ``setsid`` or not,
reparented or not), and its pid, kernel start time and token are recorded in ``RUN/.runner/bot.json``
while it runs. ``kill_tree`` kills the recorded process (only if ``/proc/<pid>/stat`` still shows the
recorded start time: a recycled pid is someone else), its descendants by parent pid, and every process
of ours carrying the token. ``reap(run_dir)`` does that for a bot a killed soak left behind (resume).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
from pathlib import Path

from soaklib.core import io as _io

TOKEN_ENV = "SOAK_SUPERVISOR_TOKEN"
PIDFILE = "bot.json"   # in the runner's work dir (external.WORK_DIR)
WORK_DIR = ".runner"
_PROC = Path("/proc")


def new_token() -> str:
    return secrets.token_hex(16)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: fields after the last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _ppid(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
        return int(stat[stat.rfind(")") + 2:].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(d) for d in os.listdir(_PROC) if d.isdigit()]


def _has_token(pid: int, token: str) -> bool:
    try:
        env = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return False
    return f"{TOKEN_ENV}={token}".encode() in env.split(b"\0")


def alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` by parent pid (setsid children included while their parent lives)."""
    children: dict[int, list[int]] = {}
    for p in _pids():
        pp = _ppid(p)
        if pp is not None:
            children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(pid: int | None, token: str, started: int | None = None) -> list[int]:
    """SIGKILL the bot ``pid`` (if it is still the process started at ``started``), its process group,
    its descendants and every process carrying ``token``. Returns the pids signalled."""
    me = os.getpid()
    targets: set[int] = set()
    if pid is not None and (started is None or start_time(pid) == started):
        targets.add(pid)
        targets.update(descendants(pid))
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    targets.update(p for p in _pids() if p != me and _has_token(p, token))
    targets.discard(me)
    for p in sorted(targets):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return sorted(targets)


def pidfile(run_dir: Path) -> Path:
    return Path(run_dir) / WORK_DIR / PIDFILE


def record(run_dir: Path, pid: int | None, token: str) -> None:
    """Note the bot in the run dir (``pid`` None: about to start), for ``reap`` after a kill of soak."""
    _io.write_json(pidfile(run_dir), {"pid": pid, "start_time": None if pid is None else start_time(pid),
                                      "token": token})


def forget(run_dir: Path) -> None:
    pidfile(run_dir).unlink(missing_ok=True)


def reap(run_dir: Path) -> list[int]:
    """Kill what a killed soak left running for this run dir (its recorded bot); [] when nothing."""
    f = pidfile(run_dir)
    if not f.is_file():
        return []
    try:
        info = json.loads(f.read_text())
        pid, started, token = info.get("pid"), info.get("start_time"), str(info["token"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        forget(run_dir)  # not ours to act on (the writes are atomic, so not a half-written one)
        return []
    if not isinstance(pid, int) or not isinstance(started, int):
        pid = None  # killed before the pid was noted: the token finds the bot
    killed = kill_tree(pid, token, started)
    forget(run_dir)
    return killed
