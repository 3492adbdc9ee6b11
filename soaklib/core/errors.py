"""Error tree. Every user-facing failure is a SoakError carrying its exit code.

The CLI prints ``soak: error: <message>`` (one line) and exits with ``exit_code``;
tracebacks are for bugs only.
"""
from __future__ import annotations

# every character str.splitlines() breaks at -> its escape ("\\n", "\\x85", "\\u2028", ...)
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


class SoakError(Exception):
    """Base of every soaklib error. ``exit_code`` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, *, path: object | None = None, field: str | None = None):
        self.path = path
        self.field = field
        parts = []
        if path is not None:
            parts.append(str(path))
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        # one line whatever a file name, key or value holds: line breaks are shown escaped
        super().__init__((f"{prefix}: {message}" if prefix else message).translate(_LINE_BREAKS))


class InputError(SoakError, ValueError):
    """Bad user input: a file, an option, a config value. Exit 2."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration, profile or scenario is invalid. Exit 2."""


class RecordError(InputError):
    """A record or artifact on disk is invalid or unreadable. Exit 2."""


class RunnerError(SoakError):
    """The strategy runner failed beyond the failure policy. Exit 4."""

    exit_code = 4


class ReportError(SoakError):
    """A report notebook failed to execute or render. Exit 4."""

    exit_code = 4


class CheckFailed(SoakError):
    """A check the user asked for did not pass (gate FAIL, strict verify, bundle verify). Exit 1."""

    exit_code = 1
