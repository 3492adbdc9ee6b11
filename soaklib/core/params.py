"""The one parameter registry (DESIGN §5).

Built from the ``params`` table of the effective config. Flat keys are canonical; nested views
(``engine.min_interval_ms``) are read and written only through here.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from soaklib.core import io as _io
from soaklib.core.errors import ConfigError
from soaklib.core.numbers import require_finite
from soaklib.core.schema import check as check_schema


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: float
    min: float
    max: float
    step: float
    kind: str  # "int" | "float"
    unit: str
    subsystem: str
    path: str
    hot: bool = True
    doc: str = ""

    def round(self, value: float) -> float | int:
        """Round to the step grid (anchored at 0), then to int for int parameters."""
        q = round(value / self.step) * self.step
        q = round(q, 10)  # strip float noise such as 0.15000000000000002
        return int(round(q)) if self.kind == "int" else q

    def clamp(self, value: float) -> float | int:
        v = min(max(value, self.min), self.max)
        return int(round(v)) if self.kind == "int" else v

    def normalise(self, value: float) -> float | int:
        """Round to the step then clamp to bounds: the value a parameter may actually take."""
        return self.clamp(self.round(value))

    @property
    def tolerance(self) -> float:
        return self.step / 2.0


class Registry(Mapping[str, Param]):
    """Ordered mapping name → Param with validation and nested-path helpers."""

    def __init__(self, params: Iterable[Param]):
        self._p = {p.name: p for p in params}
        self._by_path = {p.path: p for p in self._p.values()}

    def __getitem__(self, k: str) -> Param:
        return self._p[k]

    def __iter__(self):
        return iter(self._p)

    def __len__(self) -> int:
        return len(self._p)

    def defaults(self) -> dict[str, float | int]:
        return {n: p.default for n, p in self._p.items()}

    def by_path(self, path: str) -> Param | None:
        return self._by_path.get(path)

    def validate_values(self, values: Mapping[str, Any], *, src: object = "<params>",
                        partial: bool = True) -> dict[str, float | int]:
        """Check a flat (or nested) parameter mapping; returns flat, typed values.

        Raises ConfigError naming the field for unknown names, non-numbers, out-of-bounds values.
        """
        flat = self.flatten(values, src=src)
        out: dict[str, float | int] = {}
        for name, v in flat.items():
            p = self._p[name]
            require_finite(v, path=src, field=name, expected=f"a number in [{p.min}, {p.max}] {p.unit}")
            if v < p.min or v > p.max:
                raise ConfigError(f"value {v} out of bounds, expected {p.min} <= value <= {p.max} {p.unit}",
                                  path=src, field=name)
            if p.kind == "int" and float(v) != int(v):
                raise ConfigError(f"expected a whole number, got {v!r}", path=src, field=name)
            out[name] = int(v) if p.kind == "int" else float(v)
        if not partial:
            missing = [n for n in self._p if n not in out]
            if missing:
                raise ConfigError("missing parameters: " + ", ".join(missing), path=src)
        return out

    def flatten(self, values: Mapping[str, Any], *, src: object = "<params>") -> dict[str, Any]:
        """Accept flat keys and nested sections; return flat keys. Unknown names are refused."""
        out: dict[str, Any] = {}

        def walk(d: Mapping[str, Any], prefix: str) -> None:
            for k, v in d.items():
                key = f"{prefix}{k}"
                if key in self._p and not prefix:
                    out[key] = v
                elif key in self._by_path:
                    out[self._by_path[key].name] = v
                elif isinstance(v, Mapping):
                    walk(v, key + ".")
                else:
                    raise ConfigError("unknown parameter, expected one of: " + ", ".join(self._p), path=src, field=key)

        walk(values, "")
        return out

    def nest(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """Nested view (``engine.min_interval_ms`` → {"engine": {"min_interval_ms": v}})."""
        out: dict[str, Any] = {}
        for name, v in flat.items():
            parts = self._p[name].path.split(".")
            d = out
            for part in parts[:-1]:
                d = d.setdefault(part, {})
            d[parts[-1]] = v
        return out

    def get_nested(self, nested: Mapping[str, Any], name: str) -> Any:
        """Read a parameter from a nested mapping; KeyError if the path is missing."""
        d: Any = nested
        for part in self._p[name].path.split("."):
            if not isinstance(d, Mapping) or part not in d:
                raise KeyError(self._p[name].path)
            d = d[part]
        return d


def registry_from_config(cfg: Mapping[str, Any], *, src: object = "<config>") -> Registry:
    """The registry of ``cfg["params"]``: each entry as the config schema describes it, then the rules
    between its fields (min <= default <= max)."""
    table = check_schema("config", cfg.get("params", {}), path=src, error=ConfigError, section="params", finite=True)
    params = []
    for name, spec in table.items():
        f = f"params.{name}"
        if spec["min"] > spec["max"]:
            raise ConfigError(f"bounds min {spec['min']} > max {spec['max']}, expected min <= max", path=src, field=f"{f}.min")
        if not spec["min"] <= spec["default"] <= spec["max"]:
            raise ConfigError(f"default {spec['default']} outside [{spec['min']}, {spec['max']}]", path=src, field=f"{f}.default")
        params.append(Param(name=name, default=spec["default"], min=spec["min"], max=spec["max"],
                            step=spec["step"], kind=spec["kind"], unit=spec["unit"],
                            subsystem=spec["subsystem"], path=spec["path"], hot=spec.get("hot", True),
                            doc=spec.get("doc", "")))
    return Registry(params)


def registry(cfg: Mapping[str, Any]) -> Registry:
    """The registry of an (already validated) config."""
    return registry_from_config(cfg)


def load_profile(name_or_path: str | Path, reg: Registry) -> dict[str, float | int]:
    """A shipped profile by name (``best_cell``, ``bad``) or a JSON file; full flat values.

    Missing keys take registry defaults; unknown keys or bad values raise ConfigError.
    """
    p = Path(name_or_path)
    if p.suffix != ".json" and "/" not in str(name_or_path):
        res = resources.files("soaklib.core").joinpath("profiles", f"{name_or_path}.json")
        if not res.is_file():
            shipped = sorted(x.name[:-5] for x in resources.files("soaklib.core").joinpath("profiles").iterdir()
                             if x.name.endswith(".json"))
            raise ConfigError(f"unknown profile '{name_or_path}', expected a JSON file or one of: {', '.join(shipped)}",
                              field="profile")
        p = Path(str(res))
    data = _io.read_json(p)
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object of parameters", path=p)
    data = {k: v for k, v in data.items() if not k.startswith("_")}  # "_doc" etc. are comments
    values = reg.defaults()
    values.update(reg.validate_values(data, src=p))
    return values
