"""Randomness by derivation: every seed soaklib uses is a pure function of (run seed, iteration)."""
from __future__ import annotations

import numpy as np


def iteration_seed(run_seed: int, iteration: int) -> int:
    """The iteration's seed: a function of (run seed, iteration) only (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(run_seed), int(iteration)]).generate_state(1, np.uint32)[0])
