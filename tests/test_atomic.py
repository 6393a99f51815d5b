"""Atomic outputs: all or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spinefx.atomic import atomic_dir, atomic_path, write_text


def test_atomic_path_renames_on_success_with_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        final = tmp_path / "sub" / "x.nii.gz"
        with atomic_path(final) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == final.parent
            tmp.write_bytes(b"data")
            assert not final.exists()
        assert final.read_bytes() == b"data"
        assert stat.S_IMODE(final.stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "x.tsv"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.tsv"]


def test_atomic_dir(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    with pytest.raises(ValueError), atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
        raise ValueError
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    write_text(tmp_path / "t.txt", "hi")
    assert (tmp_path / "t.txt").read_text() == "hi"
