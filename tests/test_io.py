"""core/io: strict JSON reading, the one way files are written, atomic and write-once writes."""
from __future__ import annotations

import os

import pytest

from soaklib.core import io as _io
from soaklib.core.errors import RecordError


@pytest.mark.parametrize("raw, match", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b'{"a": NaN}', "non-finite"),
    (b'{"a": Infinity}', "non-finite"),
    (b'{"a": 1,}', "invalid JSON at line 1"),
    (b"\xff\xfe{}", "not valid UTF-8"),
])
def test_read_json_refuses_with_the_file_named(tmp_path, raw, match):
    f = tmp_path / "x.json"
    f.write_bytes(raw)
    with pytest.raises(RecordError, match=match) as ei:
        _io.read_json(f)
    assert str(ei.value).startswith(str(f))


def test_read_json_accepts_a_bom_and_refuses_dirs_missing_and_huge(tmp_path):
    f = tmp_path / "x.json"
    f.write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert _io.read_json(f) == {"a": 1}
    with pytest.raises(RecordError, match="is a directory"):
        _io.read_json(tmp_path)
    with pytest.raises(RecordError, match="file not found"):
        _io.read_json(tmp_path / "nope.json")
    with pytest.raises(RecordError, match="larger than the 4-byte limit"):
        _io.read_json(f, max_bytes=4)


def test_write_json_format_is_sorted_ascii_indented(tmp_path):
    f = tmp_path / "x.json"
    _io.write_json(f, {"b": 1, "a": "é", "c": [1.5]})
    assert f.read_bytes() == b'{\n  "a": "\\u00e9",\n  "b": 1,\n  "c": [\n    1.5\n  ]\n}\n'
    assert _io.read_json(f) == {"b": 1, "a": "é", "c": [1.5]}
    with pytest.raises(ValueError):
        _io.write_json(f, {"a": float("nan")})
    assert _io.read_json(f)["b"] == 1  # a refused write leaves the old file


def test_exclusive_write_never_replaces(tmp_path):
    f = tmp_path / "rec.json"
    _io.write_json(f, {"n": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        _io.write_json(f, {"n": 2}, exclusive=True)
    assert _io.read_json(f) == {"n": 1}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp file left behind


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    f = tmp_path / "x.json"
    _io.write_json(f, {"v": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _io.write_json(f, {"v": 2})
    assert _io.read_json(f) == {"v": 1}
    assert sorted(os.listdir(tmp_path)) == ["x.json"]


def test_state_hash_is_canonical():
    assert _io.state_hash({"a": 0.1 + 0.2, "b": 1}) == _io.state_hash({"b": 1, "a": 0.3})
    assert _io.state_hash({"a": 1}) != _io.state_hash({"a": 2})
    with pytest.raises(ValueError):
        _io.state_hash({"a": float("inf")})
