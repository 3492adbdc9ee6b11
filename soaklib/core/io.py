"""The only place that reads and writes JSON/text files.

Reads are strict: UTF-8 (a BOM is accepted), no NaN/Infinity literals, a size limit,
regular files only. Writes are atomic: temp file in the same directory, fsync, rename.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from soaklib.core.errors import RecordError
from soaklib.core.numbers import finite

MAX_JSON_BYTES = 16 * 1024 * 1024  # no legitimate record comes near this; a 50 MB file is refused


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number literal {name} is not allowed")


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read one JSON document strictly; raise RecordError naming the file on any problem."""
    p = Path(path)
    try:
        if p.is_symlink() or not p.is_file():
            if p.is_dir():
                raise RecordError("is a directory, expected a JSON file", path=p)
            if not p.exists():
                raise RecordError("file not found", path=p)
        size = p.stat().st_size
        if size > max_bytes:
            raise RecordError(f"file is {size} bytes, larger than the {max_bytes}-byte limit", path=p)
        raw = p.read_bytes()
    except OSError as exc:
        raise RecordError(f"cannot read: {exc.strerror or exc}", path=p) from None
    if not raw.strip():
        raise RecordError("file is empty, expected a JSON document", path=p)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 (byte {exc.start})", path=p) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        msg = str(exc).split(": line")[0] if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise RecordError(f"invalid JSON{where}: {msg}", path=p) from None


def dumps(obj: Any, *, indent: int | None = 2) -> str:
    """Serialise the way every soaklib file is written: sorted keys, ASCII, no NaN."""
    return json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=True, allow_nan=False)


def _canon(obj: Any) -> Any:
    if isinstance(obj, float):
        if finite(obj) is None:
            raise ValueError("non-finite float in canonical JSON")
        # fixed float format so equal values hash equally whatever their repr history
        return float(f"{obj:.10g}")
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    """Canonical form used for hashes: sorted keys, no whitespace, floats to 10 significant digits."""
    return json.dumps(_canon(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def state_hash(obj: Any) -> str:
    """sha256 over canonical JSON, never over file bytes."""
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _current_umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


# mkstemp creates 0600 files; reports and records are meant to be shared like any file the user writes
_FILE_MODE = 0o666 & ~_current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> None:
    """Write via temp file + fsync + rename. ``exclusive`` refuses to replace an existing file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), _FILE_MODE)
            os.fsync(f.fileno())
        if exclusive:
            # link() fails if the target exists: a record is written once, never replaced
            os.link(tmp, p)
            os.unlink(tmp)
        else:
            os.replace(tmp, p)
        _fsync_dir(p.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | os.PathLike, obj: Any, *, exclusive: bool = False, indent: int | None = 2) -> None:
    atomic_write_bytes(path, (dumps(obj, indent=indent) + "\n").encode("ascii"), exclusive=exclusive)


def write_text(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), exclusive=exclusive)
