"""Writing a run's output folder: all at once, and never over a folder that is not a previous run."""

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


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """Fail early, before any training, if ``out`` cannot be (re)written."""
    target = Path(out)
    if target.exists():
        if not target.is_dir():
            raise InputError(f"output {target} exists and is not a folder")
        if any(target.iterdir()) and not (target / RECORD_NAME).is_file():
            raise InputError(f"output folder {target} is not empty and holds no previous training run; choose another --out")
    return target


@contextmanager
def atomic_output_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``out`` once the block succeeds."""
    target = check_output_dir(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
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
