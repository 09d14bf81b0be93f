"""Atomic writes: results land whole, and with the permissions a plain ``open()`` would give."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from toolkit.files import atomic_directory, atomic_open, atomic_path, atomic_write_text
from toolkit.io import read_table, write_table
from toolkit.training.output import replace_dir, staging_dir


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_private(path: Path) -> None:
    """Write as a library that goes through a private temporary file does (safetensors' weights)."""
    path.parent.mkdir(0o700, exist_ok=True)
    path.write_bytes(b"weights")
    path.chmod(0o600)


def test_written_files_and_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    file_mode, dir_mode = 0o666 & ~umask, 0o777 & ~umask
    frame = pd.DataFrame({"item": ["a", "b"], "score": [1.5, 2.5]})

    # What a plain open() gives is the reference, so the test also holds under a default ACL.
    with open(tmp_path / "plain.txt", "w") as fh:
        fh.write("x")
    assert _mode(tmp_path / "plain.txt") == file_mode

    for name in ("items.csv", "items.parquet", "items.json", "items.jsonl"):
        write_table(frame, tmp_path / name)
        assert _mode(tmp_path / name) == file_mode, name
        assert read_table(tmp_path / name)["score"].tolist() == [1.5, 2.5]
    atomic_write_text(tmp_path / "report" / "notes.md", "# notes\n")
    assert _mode(tmp_path / "report" / "notes.md") == file_mode
    with atomic_open(tmp_path / "log.txt") as fh:
        fh.write("done\n")
    assert _mode(tmp_path / "log.txt") == file_mode

    for _ in range(2):  # a fresh folder, then one that replaces an existing folder
        with atomic_directory(tmp_path / "dataset", overwrite=True) as folder:
            (folder / "data.json").write_text("[]")
            _write_private(folder / "data" / "train.arrow")
        assert _mode(tmp_path / "dataset") == dir_mode
        assert _mode(tmp_path / "dataset" / "data.json") == file_mode
        assert _mode(tmp_path / "dataset" / "data") == dir_mode
        assert _mode(tmp_path / "dataset" / "data" / "train.arrow") == file_mode

    staged = staging_dir(tmp_path / "model")  # a training or merge output folder
    (staged / "config.json").write_text("{}")
    _write_private(staged / "model.safetensors")
    replace_dir(staged, tmp_path / "model")
    assert _mode(tmp_path / "model") == dir_mode
    assert _mode(tmp_path / "model" / "config.json") == _mode(tmp_path / "model" / "model.safetensors") == file_mode
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_a_writer_that_recreates_the_file_still_gets_the_umask_mode(tmp_path: Path, umask: int) -> None:
    with atomic_path(tmp_path / "plot.png", suffix=".png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".png.tmp")
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"png")
        os.close(fd)
    assert _mode(tmp_path / "plot.png") == 0o666 & ~umask
    assert (tmp_path / "plot.png").read_bytes() == b"png"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]

    with atomic_directory(tmp_path / "folder") as folder:
        (folder / "v1").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "folder", overwrite=True) as folder:
            (folder / "v2").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == [".qalign-output", "v1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "folder"]
