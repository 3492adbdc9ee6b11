"""Shared fixtures. System tools: tests that need a real tool call ``require_tool``; it skips with a
loud reason when the tool is absent, and fails under CI (CI=true), where a skip would hide a gap."""
from __future__ import annotations

import os
import shutil
import socket

import pytest


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
