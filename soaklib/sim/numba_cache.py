"""Keep numba's on-disk cache honest across files.

numba keys a cached function on its own source file's stamp (mtime, size) only, yet the machine code
it caches embeds the ``@njit`` functions it calls from other modules. Edit one of those and the
caller's cache still loads, running the old code. ``follow(__file__, dep, ...)`` at the top of a
module with cached functions touches that module when a dependency is newer, so numba sees a new
stamp and recompiles. Best effort: a read-only install keeps its (consistent, shipped) files.
"""
from __future__ import annotations

import os
from pathlib import Path


def follow(module_file: str | os.PathLike, *deps: str | os.PathLike) -> bool:
    """Touch ``module_file`` if any of ``deps`` was modified after it; True when it did."""
    own = Path(module_file)
    try:
        mtime = own.stat().st_mtime_ns
        newest = max(Path(d).stat().st_mtime_ns for d in deps)
    except (OSError, ValueError):
        return False
    if newest <= mtime:
        return False
    try:
        os.utime(own, ns=(newest, newest))
    except OSError:
        return False
    return True
