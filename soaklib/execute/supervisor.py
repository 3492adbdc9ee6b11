"""Supervision of an external bot's processes (Linux ``/proc``): nothing it starts outlives its iteration.

A bot runs in its own process group, but a child that calls ``setsid`` leaves that group, one that
double-forks is reparented away from the bot, and a ``kill -9`` of soak leaves the whole bot running.
Three nets catch them (``Supervision``, one per bot invocation):

- while the bot runs soak is the *child subreaper* of its descendants (``prctl(PR_SET_CHILD_SUBREAPER)``):
  an orphan is reparented to soak, not to init, so every process the bot started stays below soak
  and is found by parent pid, whatever it did to its session or environment;
- a random token in the bot's environment (``SOAK_SUPERVISOR_TOKEN``) marks every descendant that
  keeps its environment;
- the pids of the bot's processes with their kernel start times are recorded in
  ``RUN/.runner/bot.json`` (when the bot starts, and again whenever a new one appears), so a
  ``--resume`` after a ``kill -9`` of soak -- when the subreaper is gone and an ``env -i`` child
  carries no token -- kills each survivor whose ``/proc/<pid>/stat`` still shows the recorded start
  time (a recycled pid is someone else and is spared).
"""
from __future__ import annotations

import ctypes
import json
import os
import secrets
import signal
import time
from pathlib import Path

from soaklib.core import io as _io

TOKEN_ENV = "SOAK_SUPERVISOR_TOKEN"
PIDFILE = "bot.json"   # in the runner's work dir (external.WORK_DIR)
WORK_DIR = ".runner"
_PROC = Path("/proc")
REFRESH_S = 0.2  # how often a running bot's process list is re-read (recorded only when it grows)
_REAP_WAIT_S = 5.0  # a SIGKILLed process is gone within milliseconds; this bounds the wait for one stuck in D
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37  # <linux/prctl.h>


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


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for p in _pids():
        pp = _ppid(p)
        if pp is not None:
            children.setdefault(pp, []).append(p)
    return children


def descendants(pid: int, skip: frozenset[int] = frozenset()) -> list[int]:
    """Every process below ``pid`` by parent pid (setsid children included while their parent lives;
    orphans too while soak is their subreaper), not entering the subtrees of ``skip``."""
    children = _children()
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in skip:
                out.append(c)
                todo.append(c)
    return out


def set_subreaper(on: bool) -> bool | None:
    """Make this process the child subreaper of its descendants (an orphan is reparented to it, not to
    init) or stop being one; returns the previous setting, None where prctl is not available."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the token and the recorded pids remain
        return None
    prev = ctypes.c_int(0)
    if prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(prev), 0, 0, 0) != 0:
        return None
    if prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        return None
    return bool(prev.value)


def kill_tree(pid: int | None, token: str, started: int | None = None,
              procs: dict[int, int] | None = None) -> list[int]:
    """SIGKILL the bot ``pid`` (if it is still the process started at ``started``), its process group,
    its descendants, every process carrying ``token`` and each of ``procs`` (pid -> start time) that
    still has its recorded start time. Returns the pids signalled."""
    me = os.getpid()
    targets: set[int] = set()
    if pid is not None and (started is None or start_time(pid) == started):
        targets.add(pid)
        targets.update(descendants(pid))
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for p, st in (procs or {}).items():
        if start_time(p) == st:  # never a recycled pid
            targets.add(p)
            targets.update(descendants(p))
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


def record(run_dir: Path, pid: int | None, token: str, procs: dict[int, int] | None = None) -> None:
    """Note the bot in the run dir (``pid`` None: about to start) with the processes it has started
    (pid -> start time), for ``reap`` after a kill of soak."""
    _io.write_json(pidfile(run_dir), {"pid": pid, "start_time": None if pid is None else start_time(pid),
                                      "token": token,
                                      "procs": sorted([p, st] for p, st in (procs or {}).items())})


def forget(run_dir: Path) -> None:
    pidfile(run_dir).unlink(missing_ok=True)


def _recorded_procs(info: dict) -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in info.get("procs") or []:
        if (isinstance(entry, list) and len(entry) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in entry)):
            out[entry[0]] = entry[1]
    return out


def reap(run_dir: Path) -> list[int]:
    """Kill what a killed soak left running for this run dir (its recorded bot and the processes it
    had started); [] when nothing."""
    f = pidfile(run_dir)
    if not f.is_file():
        return []
    try:
        info = json.loads(f.read_text())
        pid, started, token = info.get("pid"), info.get("start_time"), str(info["token"])
        procs = _recorded_procs(info)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        forget(run_dir)  # not ours to act on (the writes are atomic, so not a half-written one)
        return []
    if not isinstance(pid, int) or not isinstance(started, int):
        pid = None  # killed before the pid was noted: the token finds the bot
    killed = kill_tree(pid, token, started, procs)
    forget(run_dir)
    return killed


class Supervision:
    """One bot invocation, as a context manager around its start and wait.

    On entry soak becomes the subreaper of its descendants and the token is recorded; ``started(pid)``
    records the bot; ``refresh()`` (called while waiting) records each new process below it; on exit
    everything the bot started is killed -- the processes found now (by parent pid below the bot and
    below soak, and by token) and every recorded one whose start time still matches -- the orphans that
    were reparented to soak are reaped, the subreaper setting is restored and the record removed.
    """

    def __init__(self, run_dir: Path, token: str) -> None:
        self.run_dir, self.token = Path(run_dir), token
        self.me = os.getpid()
        # soak's own children before the bot (in-process callers may have some): never the bot's
        self.own = frozenset(_children().get(self.me, []))
        self.pid: int | None = None
        self.started_at: int | None = None
        self.procs: dict[int, int] = {}
        self._prev: bool | None = None

    def __enter__(self) -> Supervision:
        self._prev = set_subreaper(True)
        # the token is on disk before the bot starts: a resume after a kill -9 of soak finds it
        record(self.run_dir, None, self.token)
        return self

    def started(self, pid: int) -> None:
        self.pid, self.started_at = pid, start_time(pid)
        self.refresh(force=True)

    def _tree(self) -> dict[int, int]:
        """pid -> start time of every live process the bot started (the bot included)."""
        found: set[int] = set(descendants(self.me, skip=self.own))  # the bot and all below it, orphans too
        if self.pid is not None:
            found.add(self.pid)
            found.update(descendants(self.pid))
        found.update(p for p in _pids() if _has_token(p, self.token))
        found.discard(self.me)
        out = {}
        for p in found:
            st = start_time(p)
            if st is not None:
                out[p] = st
        return out

    def refresh(self, force: bool = False) -> None:
        """Record the bot's processes again if a new one appeared (or ``force``)."""
        now = self._tree()
        if force or any(self.procs.get(p) != st for p, st in now.items()):
            self.procs.update(now)
            try:
                record(self.run_dir, self.pid, self.token, self.procs)
            except OSError:  # a full disk: the kill when the bot ends does not need the record
                pass

    def kill(self) -> list[int]:
        """SIGKILL everything the bot started (a few rounds: a process may fork while the first is
        read); reap the ones soak is now the parent of. The bot itself is left to its Popen."""
        killed: set[int] = set()
        for _ in range(3):
            now = self._tree()
            live = {p: st for p, st in now.items() if p not in killed}
            if not live:
                break
            self.procs.update(live)
            killed.update(kill_tree(None, self.token, procs={**self.procs, **live}))
        self._reap(killed)
        return sorted(killed)

    def _reap(self, pids: set[int]) -> None:
        # orphans reparented to soak are its children now: collect their exit status (no zombies);
        # the bot is its Popen's to wait for
        for p in pids:
            if p == self.pid or _ppid(p) != self.me:
                continue
            end = time.monotonic() + _REAP_WAIT_S
            while True:
                try:
                    done, _status = os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    break
                if done or time.monotonic() > end:
                    break
                time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        try:
            self.kill()
        finally:
            if self._prev is not None:
                set_subreaper(self._prev)
            forget(self.run_dir)
