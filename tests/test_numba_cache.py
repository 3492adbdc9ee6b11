"""numba caches a function on its own file's stamp only; ``sim.numba_cache.follow`` makes a module
recompile when a module whose compiled code it embeds changed."""
from __future__ import annotations

import os

from soaklib.sim import numba_cache
from soaklib.sim.hbt import strategy


def test_a_newer_dependency_touches_the_module(tmp_path):
    own, dep = tmp_path / "own.py", tmp_path / "dep.py"
    own.write_text("x = 1\n")
    dep.write_text("y = 1\n")
    os.utime(own, ns=(1_000_000_000, 1_000_000_000))
    os.utime(dep, ns=(2_000_000_000, 2_000_000_000))
    assert numba_cache.follow(own, dep)
    assert own.stat().st_mtime_ns == dep.stat().st_mtime_ns
    assert not numba_cache.follow(own, dep)  # up to date: untouched


def test_missing_files_and_read_only_are_left_alone(tmp_path):
    own = tmp_path / "own.py"
    own.write_text("x = 1\n")
    assert not numba_cache.follow(own, tmp_path / "nope.py")
    assert not numba_cache.follow(tmp_path / "nope.py", own)


def test_the_cached_strategy_is_not_older_than_what_it_embeds():
    s = os.stat(strategy.__file__).st_mtime_ns
    assert s >= max(os.stat(strategy.K.__file__).st_mtime_ns, os.stat(strategy.HB.__file__).st_mtime_ns)
