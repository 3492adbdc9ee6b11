"""The JSON Schemas soaklib ships (``core/schemas/*.schema.json``) and how a violation becomes one line.

``check(name, obj, path=..., error=...)`` validates ``obj`` (or one section of it) and raises the
first error as ``<path>: field '<dotted.key>': expected <what>, got <value>``. Used for the
iteration record (``iter_summary``, RecordError) and the configuration (``config``, ConfigError).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from soaklib.core.errors import SoakError


@cache
def load(name: str) -> dict:
    """The shipped schema ``core/schemas/<name>.schema.json``."""
    return json.loads(resources.files("soaklib.core").joinpath("schemas", f"{name}.schema.json").read_text("utf-8"))


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    # $refs resolved once up front: validation is ~2.5x faster without the referencing machinery
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].split("/")[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    return node


def _finite_number(checker, v: Any) -> bool:
    # a config number is finite: TOML allows nan/inf, which no threshold or bound can be
    return Draft202012Validator.TYPE_CHECKER.is_type(v, "number") and math.isfinite(v)


def _finite_integer(checker, v: Any) -> bool:
    return Draft202012Validator.TYPE_CHECKER.is_type(v, "integer") and math.isfinite(v)


_FiniteValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _finite_number, "integer": _finite_integer}))


@cache
def validator(name: str, section: str | None = None, *, finite: bool = False):
    """A validator of schema ``name`` (or of its top-level property ``section``)."""
    sch = load(name)
    node = _inline(sch, sch.get("$defs", {}))
    if section is not None:
        node = node["properties"][section]
    return (_FiniteValidator if finite else Draft202012Validator)(node)


_TYPE_WORDS = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
               "object": "an object", "array": "a list", "null": "null"}


def _num(v: float) -> str:
    # an integer bound in full (a seed's 2**63 - 1 is not "9.22337e+18"); a float as before
    return str(v) if isinstance(v, int) else f"{v:g}"


def describe(sch: Mapping[str, Any]) -> str:
    """What a (sub)schema expects, in words: "a number in [0, 1]", "one of "ok", "failed"", ..."""
    if "enum" in sch:
        return "one of " + ", ".join(json.dumps(v) for v in sch["enum"])
    if "const" in sch:
        return json.dumps(sch["const"])
    if "anyOf" in sch:
        return " or ".join(describe(s) for s in sch["anyOf"])
    types = sch.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    main = [t for t in types if t != "null"]
    desc = " or ".join(_TYPE_WORDS.get(t, t) for t in main) or "a value"
    lo, hi = sch.get("minimum"), sch.get("maximum")
    if "exclusiveMinimum" in sch:
        desc += f" > {_num(sch['exclusiveMinimum'])}"
        if hi is not None:
            desc += f" and <= {_num(hi)}"
    elif lo is not None and hi is not None:
        desc += f" in [{_num(lo)}, {_num(hi)}]"
    elif lo is not None:
        desc += f" >= {_num(lo)}"
    elif hi is not None:
        desc += f" <= {_num(hi)}"
    if "exclusiveMaximum" in sch:
        desc += f" < {_num(sch['exclusiveMaximum'])}"
    if "pattern" in sch:
        desc += f" matching {sch['pattern']}"
    if "minLength" in sch and sch["minLength"] > 0:
        desc = "a non-empty string" if desc == "a string" else desc
    if "minItems" in sch and sch["minItems"] > 0:
        desc += f" of at least {sch['minItems']} item{'s' if sch['minItems'] > 1 else ''}"
    if "null" in types:
        desc += " or null"
    return desc


def short(v: Any) -> str:
    """A value as JSON, cut to 60 characters."""
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def _unknown_keys(err: ValidationError) -> list[str]:
    props = err.schema.get("properties", {}) if isinstance(err.schema, Mapping) else {}
    pats = list(err.schema.get("patternProperties") or {}) if isinstance(err.schema, Mapping) else []
    return [k for k in err.instance if k not in props and not any(re.search(p, k) for p in pats)]


def error_line(err: ValidationError, *, prefix: str = "", what: str = "the schema") -> tuple[str | None, str]:
    """``(dotted field, message)`` for one validation error."""
    field = ".".join(x for x in (prefix.rstrip("."), ".".join(str(p) for p in err.absolute_path)) if x)
    if err.validator == "required":
        missing = [k for k in err.validator_value if k not in err.instance]
        field = ".".join(x for x in (field, missing[0] if missing else "") if x)
        return field or None, f"missing (required by {what})"
    if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
        extra = _unknown_keys(err)
        known = sorted(err.schema.get("properties") or {})
        field = ".".join(x for x in (field, extra[0] if extra else "") if x)
        return field or None, "unknown key, expected one of: " + ", ".join(known)
    if err.validator == "minProperties" and isinstance(err.instance, Mapping) and not err.instance:
        return field or None, "empty, expected at least one entry"
    return field or None, f"expected {describe(err.schema if isinstance(err.schema, Mapping) else {})}, " \
                          f"got {short(err.instance)}"


def check(name: str, obj: Any, *, path: object, error: type[SoakError], section: str | None = None,
          finite: bool = False, what: str = "the schema") -> Any:
    """Validate ``obj`` against schema ``name`` (or its ``section``); return it unchanged, or raise
    ``error`` naming ``path`` and the dotted field of the best-matching violation."""
    v = validator(name, section, finite=finite)
    if v.is_valid(obj):
        return obj
    field, msg = error_line(best_match(v.iter_errors(obj)), prefix=section or "", what=what)
    raise error(msg, path=path, field=field)
