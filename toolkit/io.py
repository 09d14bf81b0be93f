"""File helpers: atomic writes, content hashes, and tables by extension.

Every file the toolkit produces is first written under a temporary name in the destination
folder and then renamed over the target, so that a crash or a full disk never leaves a
half-written JSON, CSV or Parquet file where a training run or an analysis would pick it up.
The results get the permissions a plain ``open(path, "w")`` or ``mkdir`` would give them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pandas as pd

from toolkit.errors import InputError

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "jsonl"}
_HASH_CHUNK = 1 << 20
_NAME_TRIES = 100


# ``tempfile.mkstemp`` and ``mkdtemp`` create their entries 0600 / 0700 on purpose (private
# scratch space); renamed into place, they would make results unreadable to the rest of a group
# that shares them. The temporary names are therefore created here with the modes of ``open()``
# (0666) and ``mkdir`` (0777), and the kernel applies the umask (or a folder's default ACL) exactly
# as for any other new file. Reading the umask instead would mean setting it with ``os.umask`` and
# restoring it, which changes it for the whole process in between and races other threads.
def _new_sibling(target: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    for _ in range(_NAME_TRIES):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {target}")


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))


def new_sibling_file(target: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """Create an empty file with a fresh hidden name beside ``target``, mode as ``open()`` gives."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _new_sibling(target, suffix, _create_file)


def new_sibling_dir(target: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """Create an empty folder with a fresh hidden name beside ``target`` (same file system, so it
    can be renamed into place atomically), mode as ``mkdir`` gives."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _new_sibling(target, suffix, lambda path: path.mkdir(0o777))


def give_default_modes(folder: str | os.PathLike[str]) -> None:
    """Give everything under ``folder`` the mode a new file or folder gets there, read off
    ``folder`` itself (made by :func:`new_sibling_dir`, so 0777 less the umask).

    Libraries that write through private temporary files leave their results 0600 (safetensors
    does so for model weights), which would lock the rest of a group out of a shared output.
    Execute bits are kept where the folder's mode allows them.
    """
    root = Path(folder)
    dir_mode = stat.S_IMODE(root.stat().st_mode)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            mode = dir_mode
        else:
            mode = (dir_mode & 0o666) | (stat.S_IMODE(path.stat().st_mode) & 0o111 & dir_mode)
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The caller writes the file at the yielded path by any means (``json.dump``, pyarrow,
    matplotlib ...). On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = new_sibling_file(target, suffix + ".tmp")
    mode = tmp.stat().st_mode & 0o7777
    try:
        yield tmp
        # A writer that deletes and recreates the path (rather than truncating it) would leave
        # its own mode; put back the one the file was created with.
        if tmp.stat().st_mode & 0o7777 != mode:
            tmp.chmod(mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically; return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


@contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place.

    An existing ``target`` folder is moved aside first and deleted only once the new one is in
    place, so at every moment either the old or the new complete folder exists.
    """
    target = Path(target)
    tmp = new_sibling_dir(target)
    try:
        yield tmp
        give_default_modes(tmp)
        old: Path | None = None
        if target.exists():
            if not target.is_dir():
                raise InputError(f"{target} exists and is not a folder")
            old = new_sibling_dir(target, ".old")  # reserves a free name; the rename needs it absent
            old.rmdir()
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except IsADirectoryError:
        return sha256_tree(path)
    return digest.hexdigest()


def sha256_tree(folder: str | os.PathLike[str]) -> str:
    """Hash of a folder of files (a video stored as frames): names and bytes, in sorted order."""
    digest = hashlib.sha256()
    root = Path(folder)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle


def table_format(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    if ext not in TABLE_FORMATS:
        raise InputError(f"{path}: unknown table format {ext!r} (use .csv, .parquet, .json or .jsonl)")
    return TABLE_FORMATS[ext]


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV, Parquet, JSON (records) or JSON lines, chosen by the extension."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "json":
            frame.to_json(tmp, orient="records", indent=1, date_format="iso")
        else:
            frame.to_json(tmp, orient="records", lines=True, date_format="iso")
    return Path(path)


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV, Parquet or JSON table; a clear error naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pd.read_csv(path)
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, orient="records", lines=fmt == "jsonl")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None
