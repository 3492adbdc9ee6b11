"""Benchmarks (not timed tests): ``python -m soaklib.bench NAME [args]``.

Each benchmark is ``soaklib/benchmarks/<NAME>.py`` with ``main(argv: list[str]) -> int``;
it prints its figures, including the ratios the issues name, measured in one run.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

from soaklib import bench as benchmarks


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] not in names:
        print(f"usage: python -m soaklib.bench {{{'|'.join(names)}}} [args]", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"soaklib.bench.{argv[0]}")
    return int(mod.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
