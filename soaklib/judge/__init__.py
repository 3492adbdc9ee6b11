"""Judgement: frames, snapshot, gate, delta verification, recommendations."""
