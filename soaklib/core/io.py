"""The only place that reads and writes JSON/text files.

Reads are strict: UTF-8 (a BOM is accepted with a logged warning naming the file), regular files only
(a FIFO or device is refused without blocking), a size limit, a nesting-depth limit, no NaN/Infinity
literals, no number beyond the magnitude limits, no duplicate keys. Any problem is one RecordError
naming the file. Writes are atomic: temp file in the same directory, fsync, rename.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from soaklib.core.errors import RecordError, SoakError
from soaklib.core.numbers import finite

MAX_JSON_BYTES = 16 * 1024 * 1024  # no legitimate record comes near this; a 50 MB file is refused
# Deepest nesting of arrays/objects a file may have: records nest ~5 levels; the json module recurses
# per level and would die with a RecursionError near 1000.
MAX_JSON_DEPTH = 100
# Integers: counts, seeds, iteration numbers; 20 digits hold any 64-bit value. Beyond that a number is
# a corrupted or hostile file (a 400-digit integer overflows every float conversion downstream).
MAX_INT_DIGITS = 20
# Floats: no KPI, threshold or parameter comes near; ``1e400`` would otherwise become inf silently.
MAX_FLOAT_ABS = 1e300

log = logging.getLogger("soaklib.core.io")
_FLOAT_LIMIT = f"{MAX_FLOAT_ABS:g}".replace("e+", "e")

_BOM = b"\xef\xbb\xbf"
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number literal {name} is not allowed")


def _parse_int(s: str) -> int:
    digits = len(s) - s.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits, more than the {MAX_INT_DIGITS}-digit limit")
    return int(s)


def _parse_float(s: str) -> float:
    x = float(s)
    if not math.isfinite(x) or abs(x) > MAX_FLOAT_ABS:
        shown = s if len(s) <= 24 else s[:21] + "..."
        raise ValueError(f"number {shown} is out of range (|x| <= {_FLOAT_LIMIT})")
    return x


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {json.dumps(k)[:60]} in one object")
            seen.add(k)
    return d


def nesting_exceeds(structure: str, limit: int) -> bool:
    """True when the brackets ``[``/``{`` in ``structure`` (text with its strings removed) nest deeper
    than ``limit``. Used before a recursive parser sees the text, so depth is refused, never recursed."""
    if structure.count("[") + structure.count("{") <= limit:  # every ordinary file: too few to nest that deep
        return False
    depth = 0
    for c in structure:
        if c == "[" or c == "{":
            depth += 1
            if depth > limit:
                return True
        elif c == "]" or c == "}":
            depth -= 1
    return False


def _kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO (named pipe)", ...); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def read_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES, what: str = "a JSON file",
               error: type[SoakError] = RecordError) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ``error`` naming the file otherwise.

    A FIFO, socket or device is refused before it is opened, and the open itself never blocks
    (O_NONBLOCK, then fstat of what was actually opened), so a FIFO swapped in cannot hang a command."""
    p = Path(path)
    try:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise error("file not found", path=p) from None
        kind = _kind(st.st_mode)
        if kind is not None:
            raise error(f"is {kind}, expected {what}", path=p)
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            kind = _kind(st.st_mode)
            if kind is not None:
                raise error(f"is {kind}, expected {what}", path=p)
            if st.st_size > max_bytes:
                raise error(f"file is {st.st_size} bytes, larger than the {max_bytes}-byte limit", path=p)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                raw = fh.read(max_bytes + 1)  # a file growing after the fstat is still capped
        finally:
            os.close(fd)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", path=p) from None
    if len(raw) > max_bytes:
        raise error(f"file is larger than the {max_bytes}-byte limit", path=p)
    return raw


def strip_bom(raw: bytes, path: object) -> bytes:
    """``raw`` without a leading UTF-8 byte-order mark; a BOM is accepted but logged (one line naming
    the file) so a user sees that an editor added it."""
    if raw.startswith(_BOM):
        log.warning("%s: warning: starts with a UTF-8 byte-order mark (BOM); read without it", path)
        return raw[3:]
    return raw


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read one JSON document strictly; raise RecordError naming the file on any problem."""
    p = Path(path)
    raw = strip_bom(read_bytes(p, max_bytes=max_bytes), p)
    if not raw.strip():
        raise RecordError("file is empty, expected a JSON document", path=p)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(f"not valid UTF-8 (byte {exc.start})", path=p) from None
    if nesting_exceeds(_JSON_STRING.sub("", text), MAX_JSON_DEPTH):
        raise RecordError(f"invalid JSON: arrays/objects nested deeper than {MAX_JSON_DEPTH} levels", path=p)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float,
                          object_pairs_hook=_no_duplicates)
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


def display_path(p: str | os.PathLike) -> str:
    """A path for artifacts and messages: relative to the working directory when below it, else its
    name -- never the absolute path of the machine that wrote the artifact."""
    p = Path(p)
    if not p.is_absolute():
        parts = [x for x in p.parts if x not in (".",)]
        return Path(*parts).as_posix() if parts and ".." not in parts else p.name or "."
    try:
        return p.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return p.name
