"""Writing a run's output folder: never over a folder that is not a previous run, and never
half-written.

Layout of ``out/``: the final adapter (LoRA) or model (full) with ``qalign_train.json`` at the top;
``checkpoints/step-N/`` with the state a resumed run continues from; ``best/`` a copy of the model
at the held-out evaluation that scored best. The top-level files are replaced in one sweep at
the end of a run, ``qalign_train.json`` last, so a folder with that file holds a finished run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from toolkit.errors import InputError

RECORD_NAME = "qalign_train.json"
"""The run record (settings and metrics) written beside the adapter or model."""

CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
RUN_SUBDIRS = (CHECKPOINTS_DIR, BEST_DIR)


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """Fail early, before any training, if ``out`` cannot be (re)written."""
    target = Path(out)
    if target.exists():
        if not target.is_dir():
            raise InputError(f"output {target} exists and is not a folder")
        # A finished run has its record; a killed one may have left only checkpoints or a best model.
        is_run = (target / RECORD_NAME).is_file() or any((target / d).is_dir() for d in RUN_SUBDIRS)
        if any(target.iterdir()) and not is_run:
            raise InputError(f"output folder {target} is not empty and holds no previous training run; choose another --out")
    return target


def staging_dir(target: Path) -> Path:
    """A fresh temporary sibling of ``target`` (same file system, so renames are atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))


def publish_dir(staged: Path, target: Path, keep: tuple[str, ...] = RUN_SUBDIRS) -> None:
    """Make ``target`` hold the entries of ``staged`` plus its own ``keep`` entries.

    The old record goes first (the folder stops claiming a finished run), stale entries are
    removed, each new entry is renamed into place, and the new record comes last.
    """
    target.mkdir(parents=True, exist_ok=True)
    (target / RECORD_NAME).unlink(missing_ok=True)
    new = {e.name for e in staged.iterdir()}
    for entry in target.iterdir():
        if entry.name not in keep and entry.name not in new:
            _remove(entry)
    for entry in sorted(staged.iterdir(), key=lambda e: e.name == RECORD_NAME):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    shutil.rmtree(staged, ignore_errors=True)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap ``staged`` in for ``target`` as a whole (the old folder is removed afterwards)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        os.replace(target, old)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextmanager
def atomic_output_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``out`` once the block succeeds."""
    target = check_output_dir(out)
    tmp = staging_dir(target)
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Files that describe how text and images are turned into inputs (and remote code named by
# ``auto_map``); weights, configs and anything else in the folder are not copied.
_AUXILIARY_FILES = re.compile(
    r"^(tokenizer.*|special_tokens_map\.json|added_tokens\.json|vocab\..*|merges\.txt|.*\.tiktoken|.*\.model"
    r"|preprocessor_config\.json|processor_config\.json|chat_template.*|[\w-]+\.py)$"
)


def copy_auxiliary_files(base: Path, folder: Path) -> list[str]:
    """Copy the base model folder's tokenizer, preprocessor and chat-template files that
    ``folder`` does not already have; returns their names."""
    copied = []
    for f in sorted(base.iterdir()):
        if f.is_file() and _AUXILIARY_FILES.match(f.name) and not (folder / f.name).exists():
            shutil.copy2(f, folder / f.name)
            copied.append(f.name)
    return copied


def write_record(folder: Path, record: dict[str, Any]) -> None:
    (folder / RECORD_NAME).write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The run record of a training output folder."""
    path = Path(folder) / RECORD_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read training record {path}: {exc}") from None
