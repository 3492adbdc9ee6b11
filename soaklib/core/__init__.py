"""Core: errors, io, numbers, config, the parameter registry, KPI vocabulary, goals, records and the Run type."""
