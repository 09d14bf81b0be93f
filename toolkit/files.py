"""Files and folders the toolkit writes: atomic writes, output folders it may replace, content hashes.

Every file the toolkit produces is first written under a temporary name in the destination
folder and then renamed over the target, so that a crash or a full disk never leaves a
half-written JSON, CSV or Parquet file where a training run or an analysis would pick it up.
The results get the permissions a plain ``open(path, "w")`` or ``mkdir`` would give them. A
folder is replaced only when the toolkit wrote it (``OUTPUT_MARKER``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from toolkit.errors import InputError

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


OUTPUT_MARKER = ".qalign-output"
"""File the toolkit writes into every output folder it creates (JSON: what wrote it, when).

Only a folder holding it may be replaced: a command never deletes what it did not write."""


def read_output_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of a toolkit output folder, or None when ``folder`` is not one."""
    try:
        record = json.loads((Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_output_marker(folder: str | os.PathLike[str], written_by: str) -> Path:
    """Mark ``folder`` as the toolkit's own output (``written_by``: the command or function)."""
    from toolkit import __version__

    record = {
        "written_by": written_by,
        "toolkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_text(Path(folder) / OUTPUT_MARKER, json.dumps(record, indent=1) + "\n")


def is_toolkit_output(folder: str | os.PathLike[str], legacy: Sequence[str] = ()) -> bool:
    """Whether ``folder`` holds the marker, or one of the ``legacy`` entries by which outputs
    written before the marker existed are recognised (a training run's record, say)."""
    root = Path(folder)
    return (root / OUTPUT_MARKER).is_file() or any((root / name).exists() for name in legacy)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def claim_output_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """Check that ``path`` may become (or be replaced by) a toolkit output folder; raise
    :class:`InputError` before anything is written when it may not.

    Accepted: a new path, an empty folder, and, with ``overwrite``, an earlier toolkit output
    (see :func:`is_toolkit_output`). Refused: a file, a non-empty folder the toolkit did not
    write (a folder of photos, a home directory), an earlier output without ``overwrite``, and
    any folder that holds one of ``inputs`` (the media a dataset is built from).
    """
    target = Path(path)
    if not target.exists():
        return target
    if not target.is_dir():
        raise InputError(f"output {target} exists and is not a folder")
    for source in inputs:
        if source is not None and _inside(Path(source), target):
            raise InputError(f"output folder {target} holds the input {source}; choose another output folder")
    if not any(target.iterdir()):
        return target
    if not is_toolkit_output(target, legacy):
        raise InputError(
            f"output folder {target} is not empty and was not written by qalign; nothing was changed, "
            "choose a new or empty folder"
        )
    if not overwrite:
        raise InputError(f"output folder {target} holds an earlier qalign output; pass --overwrite to replace it")
    return target


def prepare_output_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    written_by: str = "qalign",
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """:func:`claim_output_dir`, then create the folder with the output marker: for outputs
    written file by file into place (a report folder) rather than swapped in whole."""
    target = claim_output_dir(path, overwrite=overwrite, legacy=legacy, inputs=inputs)
    target.mkdir(parents=True, exist_ok=True)
    write_output_marker(target, written_by)
    return target


@contextmanager
def atomic_directory(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    written_by: str = "qalign",
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place.

    ``target`` must pass :func:`claim_output_dir` (checked before the caller writes anything, and
    again just before the swap); the new folder gets the output marker. An existing ``target``
    folder is moved aside first and deleted only once the new one is in place, so at every moment
    either the old or the new complete folder exists.
    """
    target = Path(target)
    claim_output_dir(target, overwrite=overwrite, legacy=legacy, inputs=inputs)
    tmp = new_sibling_dir(target)
    try:
        yield tmp
        write_output_marker(tmp, written_by)
        give_default_modes(tmp)
        # The folder may have changed while the output was being built.
        claim_output_dir(target, overwrite=overwrite, legacy=legacy, inputs=inputs)
        old: Path | None = None
        if target.exists():
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
