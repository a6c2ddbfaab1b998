"""fraudcore.atomic: the old file or the new one, never half, and no temporary left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fraudcore import atomic


def test_a_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "doc.json"
    atomic.write_json(target, {"b": 1, "a": [1, 2]})
    atomic.write_json(target, {"b": 2})
    assert target.read_text() == '{\n  "b": 2\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["doc.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "counts.txt"
    atomic.write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_file(target) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["counts.txt"]


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path: Path, monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))[1])
    atomic.write_bytes(tmp_path / "x.bin", b"\x00\x01")
    assert events == ["fsync", "rename", "fsync"]


def test_text_mode_writes_utf8(tmp_path: Path) -> None:
    with atomic.atomic_file(tmp_path / "t.txt", "w") as fh:
        fh.write("café\n")
    assert (tmp_path / "t.txt").read_bytes() == "café\n".encode()


def test_only_whole_file_modes_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        with atomic.atomic_file(tmp_path / "a.log", "ab"):
            pass


def test_a_folder_is_swapped_whole(tmp_path: Path) -> None:
    final = tmp_path / "stage"
    first = atomic.temp_dir_for(final)
    (first / "part-0").write_text("one")
    atomic.replace_dir(first, final)
    second = atomic.temp_dir_for(final)
    (second / "part-1").write_text("two")
    atomic.replace_dir(second, final)
    assert [p.name for p in final.iterdir()] == ["part-1"]
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]
