"""Tuning: the tuner, the guards between iterations and the soak loop."""
