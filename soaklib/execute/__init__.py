"""Execution: runners that turn (parameters, window) into a record's measurements (simulator, external bot)."""
