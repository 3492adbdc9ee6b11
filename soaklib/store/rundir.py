"""Run directory layout (DESIGN §4): the only module that spells run-dir file names (every reader and
writer takes them from here), and the writer of our own run dirs.

``runs/<YYYYMMDDTHHMMSSZ>-<8 hex>/`` is created exclusively (``mkdir`` fails if it exists), so
two runs started at once never share a file. Records are written once; TUNING_REPORT.json and
runtime_overrides.json are derived and rewritten atomically; ``runs/latest`` is a relative symlink
replaced atomically, and only ever names a completed run.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from soaklib.core import io as _io
from soaklib.core.errors import InputError, RecordError
from soaklib.core.records import plain, utc_now, version_string

# -- file names -------------------------------------------------------------------------------
MANIFEST = "run.json"
OVERRIDES = "runtime_overrides.json"
TUNING_REPORT = "TUNING_REPORT.json"
LATEST = "latest"
LOCK = ".lock"
RECORD_GLOB = "ITER_SUMMARY_*.json"
# the number as written, sign and zero padding included, so a reader can refuse or normalise it
RECORD_RE = re.compile(r"^ITER_SUMMARY_([+-]?\d+)\.json$")
REPORTS_DIR = Path("reports") / "analysis"   # derived reports, relative to the run dir
SNAPSHOT = "POST_SOAK_SNAPSHOT.json"
GATE = "GATE.json"
DELTA_VERIFY = "DELTA_VERIFY_REPORT"         # .json and .md
AUDIT = "POST_SOAK_AUDIT"                    # .ipynb, .html, .md
RECOMMENDATIONS = "RECOMMENDATIONS"          # .ipynb, .html, .md
COMPARE = "COMPARE"                          # .json and .md
COMPARE_REPORT = "COMPARE_REPORT"             # .ipynb, .html, .md (notebooks/compare.ipynb, soak report)
BASELINE_DIR = "baseline"                    # the baseline arm of a run with a confirmation phase (a run dir)
FAILURES = "FAILURES.md"
METRICS_TEXTFILE = Path("metrics") / "soak.prom"
# the earlier toolkit's layouts (read only): where its ITER_SUMMARY folder may sit under a given path,
# and its artifacts beside the records
SEED_RECORD_DIRS: tuple[tuple[str, ...], ...] = (("soak", "latest"), ("latest",), ("artifacts", "soak", "latest"), ())
SEED_PARENT = "soak"                          # <dir>/soak/latest: the CI download nesting
EDGE_REPORT = "EDGE_REPORT.json"
ARTIFACTS = "artifacts"
RUN_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
MANIFEST_SCHEMA = "1.0"
STATUSES = ("running", "completed", "failed", "interrupted")


def record_name(n: int) -> str:
    """``ITER_SUMMARY_<n>.json``, 1-based and unpadded."""
    return f"ITER_SUMMARY_{int(n)}.json"


def _oserror(action: str, path: Path, exc: OSError) -> InputError:
    return InputError(f"cannot {action}: {exc.strerror or exc}", path=path)


@contextmanager
def write_errors(path: str | os.PathLike, action: str = "write") -> Iterator[None]:
    """The one mapping of a file-system refusal (disk full, read-only mount, a parent that is a file)
    to a one-line InputError naming ``path`` and the system's reason, for every writer of run and
    report files (report, verify, gate, bundle)."""
    try:
        yield
    except OSError as exc:
        raise _oserror(action, Path(path), exc) from None


# a run dir whose .lock is this old and that holds nothing else was abandoned at creation
_ABANDONED_AFTER_S = 60.0


def is_abandoned(path: Path) -> bool:
    """A run dir that holds nothing or only ``.lock`` (creation stopped before run.json: a full disk,
    a kill), that no process holds locked and that is older than a minute."""
    try:
        names = os.listdir(path)
        if names not in ([], [LOCK]) or time.time() - path.stat().st_mtime < _ABANDONED_AFTER_S:
            return False
        if not names:
            return True
        fd = os.open(path / LOCK, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a run being created right now
    finally:
        os.close(fd)
    return True


def _remove_abandoned_dir(p: Path) -> None:
    try:
        (p / LOCK).unlink(missing_ok=True)
        p.rmdir()
    except OSError:
        pass


def _remove_abandoned(root: Path) -> None:
    # leftovers of our own creation attempts; anything else in the runs dir is left alone
    for p in root.iterdir() if root.is_dir() else ():
        if p.is_dir() and not p.is_symlink() and RUN_ID_RE.match(p.name) and is_abandoned(p):
            _remove_abandoned_dir(p)


def new_run_id(now: float | None = None) -> str:
    t = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y%m%dT%H%M%SZ", t) + "-" + secrets.token_hex(4)


class RunDir:
    """A run directory we own for writing. Use ``create`` for a new run, ``open_for_resume`` to continue.

    Holds an exclusive ``flock`` on ``<run>/.lock`` while open, so one run dir is never written by
    two processes (a killed process releases it).
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self._lock_fd: int | None = None

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> RunDir:
        """Make a fresh ``runs_dir/<id>/`` and write its run.json (status running)."""
        root = Path(runs_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _oserror("create the runs directory", root, exc) from None
        if not os.access(root, os.W_OK | os.X_OK):
            raise InputError("runs directory is not writable", path=root)
        _remove_abandoned(root)
        latest = root / LATEST
        if latest.exists() and not latest.is_symlink():
            # found now, not after hours of soak when the run completes
            raise InputError("exists and is not a symlink; the run could never become 'latest'", path=latest)
        for _ in range(20):
            run_id = new_run_id()
            path = root / run_id
            try:
                path.mkdir()
            except FileExistsError:
                continue  # same second and same random suffix: pick another
            except OSError as exc:
                raise _oserror("create the run directory", path, exc) from None
            break
        else:  # pragma: no cover - 20 collisions of 32 random bits
            raise InputError("could not allocate a unique run directory", path=root)
        return cls._start(path, run_id, manifest)

    @classmethod
    def create_at(cls, path: str | os.PathLike, run_id: str, manifest: Mapping[str, Any]) -> RunDir:
        """Make the run dir ``path`` itself (an arm inside a run, e.g. ``RUN/baseline``); it must not
        exist, except as what a process killed while creating it left (only ``.lock``)."""
        p = Path(path)
        if p.is_dir() and os.listdir(p) in ([], [LOCK]):
            _remove_abandoned_dir(p)
        try:
            p.mkdir()
        except FileExistsError:
            raise InputError("already exists; refusing to overwrite", path=p) from None
        except OSError as exc:
            raise _oserror("create the run directory", p, exc) from None
        return cls._start(p, run_id, manifest)

    @classmethod
    def _start(cls, path: Path, run_id: str, manifest: Mapping[str, Any]) -> RunDir:
        m = dict(manifest)
        m.update(schema_version=MANIFEST_SCHEMA, run_id=run_id, status="running", finished_utc=None,
                 iterations_done=0)
        rd = cls(path, m)
        rd._lock()
        try:
            rd.write_manifest()
        except BaseException:
            # no run.json: nothing here is a run; leave no directory holding only the lock behind
            rd.close()
            try:
                (path / LOCK).unlink()
                path.rmdir()
            except OSError:
                pass  # the next `soak run` removes it (_remove_abandoned)
            raise
        return rd

    @classmethod
    def open_for_resume(cls, path: str | os.PathLike) -> RunDir:
        """Open an interrupted run of ours for writing; refuse completed, locked or foreign dirs."""
        p = Path(path)
        if p.name == LATEST and p.is_symlink():
            raise InputError("'latest' names a completed run; give the interrupted run's directory", path=p)
        if not p.is_dir():
            raise InputError("not a directory, expected a soaklib run directory to resume", path=p)
        mpath = p / MANIFEST
        if not mpath.is_file():
            if RUN_ID_RE.match(p.name) and os.listdir(p) in ([], [LOCK]):
                raise InputError("a run directory abandoned while it was created (only .lock, no run.json: "
                                 "the run never started); nothing to resume, delete it", path=p)
            raise InputError("not a soaklib run directory (no run.json); refusing to resume", path=p)
        m = _io.read_json(mpath)
        if not isinstance(m, dict) or "run_id" not in m or "status" not in m or "profile" not in m:
            raise InputError("not a soaklib run manifest (run_id/status/profile missing); refusing to resume",
                             path=mpath)
        if m["status"] == "completed":
            raise InputError("run already completed; nothing to resume", path=p)
        if m["status"] not in STATUSES:
            raise RecordError(f"expected one of {', '.join(STATUSES)}, got {m['status']!r}", path=mpath,
                              field="status")
        rd = cls(p.resolve(), m)
        rd._lock()
        return rd

    # -- locking --------------------------------------------------------------------------------
    def _lock(self) -> None:
        lp = self.path / LOCK
        try:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _oserror("open the run lock", lp, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError("run is in progress in another process (locked); refusing to write to it",
                                 path=self.path) from None
            raise _oserror("lock the run directory", lp, exc) from None
        self._lock_fd = fd

    def close(self) -> None:
        """Release the run lock."""
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            finally:
                self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def clean_temp(self) -> None:
        # temp files of atomic writes cut short by a kill; never a completed file
        for f in self.path.glob(".*.tmp"):
            try:
                f.unlink()
            except OSError:
                pass

    # -- files ----------------------------------------------------------------------------------
    def _write(self, name: str, obj: Any, *, exclusive: bool = False) -> Path:
        p = self.path / name
        try:
            _io.write_json(p, obj, exclusive=exclusive)
        except FileExistsError:
            raise RecordError("already written; records are write-once", path=p) from None
        except OSError as exc:
            raise _oserror("write", p, exc) from None
        return p

    def write_manifest(self) -> None:
        self._write(MANIFEST, self.manifest)

    def set_status(self, status: str, *, finished_utc: str | None = None) -> None:
        assert status in STATUSES
        self.manifest["status"] = status
        if finished_utc is not None:
            self.manifest["finished_utc"] = finished_utc
        self.write_manifest()

    def write_record(self, record: Mapping[str, Any]) -> Path:
        """Write ``ITER_SUMMARY_<n>.json`` once (refuses to replace an existing one)."""
        return self._write(record_name(record["iteration"]), record, exclusive=True)

    def write_overrides(self, params: Mapping[str, Any]) -> Path:
        return self._write(OVERRIDES, dict(params))

    def write_tuning_report(self, report: Mapping[str, Any]) -> Path:
        return self._write(TUNING_REPORT, report)

    # -- latest ---------------------------------------------------------------------------------
    def mark_latest(self) -> None:
        """Point ``<runs>/latest`` at this run: symlink to a temp name, then rename over ``latest``."""
        set_latest(self.path.parent, self.path.name)


def set_latest(runs_dir: Path, run_id: str) -> None:
    """Atomically make ``runs_dir/latest`` a relative symlink to ``run_id``."""
    link = runs_dir / LATEST
    if link.exists() and not link.is_symlink():
        raise InputError("exists and is not a symlink; refusing to replace it", path=link)
    tmp = runs_dir / f".{LATEST}.{secrets.token_hex(4)}.tmp"
    try:
        os.symlink(run_id, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _oserror("update the latest link", link, exc) from None
    _io._fsync_dir(runs_dir)


def list_runs(runs_dir: str | os.PathLike) -> list[Path]:
    """Run directories under ``runs_dir`` (by name, so oldest first)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and RUN_ID_RE.match(p.name))


def write_run(path: str | os.PathLike, manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
              overrides: Mapping[str, Any], tuning_report: Mapping[str, Any]) -> None:
    """Write a complete run dir in one go at ``path`` (must not exist). For fixtures and importers."""
    p = Path(path)
    try:
        p.mkdir(parents=True)
    except FileExistsError:
        raise InputError("already exists; refusing to overwrite", path=p) from None
    except OSError as exc:
        raise _oserror("create the run directory", p, exc) from None
    rd = RunDir(p, dict(manifest))
    for rec in records:
        rd.write_record(rec)
    rd.write_tuning_report(tuning_report)
    rd.write_overrides(overrides)
    rd.write_manifest()


def new_manifest(*, config: Mapping[str, Any], seed: int, runner: str, scenario: str, profile_name: str,
                 profile_values: Mapping[str, Any], iterations_planned: int, auto_tune: bool,
                 duration_s: float, created_utc: str | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """The run.json fields of docs/ARCHITECTURE.md (run_id/status are set by ``RunDir.create``)."""
    m = {
        "schema_version": MANIFEST_SCHEMA, "run_id": None, "status": "running",
        "created_utc": created_utc or utc_now(), "finished_utc": None,
        "soaklib_version": version_string(), "config": plain(dict(config)), "seed": int(seed),
        "runner": str(runner), "scenario": str(scenario),
        "profile": {"name": str(profile_name), "values": plain(dict(profile_values))},
        "iterations_planned": int(iterations_planned), "iterations_done": 0,
        "auto_tune": bool(auto_tune), "duration_s": float(duration_s),
    }
    if extra:
        m.update(plain(dict(extra)))
    return m
