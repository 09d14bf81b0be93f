"""How a score file was made, recorded beside it so that a resumed run never mixes scores.

A resumable run skips the inputs its output already holds. Scores of another model, adapter,
task, precision or prompt look exactly like the right ones, so the run that creates the output
writes ``<output>.qalign.json`` with what produced it, and a later run resumes only when it would
produce the same. The score CSV itself keeps its fixed columns.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.models.base import QAlignBackbone

RECORD_SUFFIX = ".qalign.json"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SAMPLE = 1 << 20  # bytes read at each end of a weight file


def record_path(out: str | os.PathLike[str]) -> Path:
    """Where the record of ``out`` lives: ``scores.csv`` -> ``scores.csv.qalign.json``."""
    out = Path(out)
    return out.with_name(out.name + RECORD_SUFFIX)


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A cheap identity of a checkpoint or adapter folder.

    The configs alone cannot tell a fine-tuned checkpoint from its base (same architecture, same
    config), so each weight file adds its size and its first and last MiB, which differ as soon
    as the weights do, without reading gigabytes.
    """
    folder = Path(folder)
    digest = hashlib.sha256()
    if not folder.is_dir():
        return ""
    for f in sorted(folder.iterdir()):
        if not f.is_file():
            continue
        if f.suffix == ".json" and "config" in f.name:
            digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
        elif f.suffix in _WEIGHT_SUFFIXES:
            size = f.stat().st_size
            digest.update(f"{f.name}\0{size}\0".encode())
            with open(f, "rb") as fh:
                digest.update(fh.read(_SAMPLE))
                if size > 2 * _SAMPLE:
                    fh.seek(-_SAMPLE, os.SEEK_END)
                    digest.update(fh.read(_SAMPLE))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights score: the model as named (hub id, folder or ``tiny``), the adapter, and
    fingerprints of their folders (empty when unknown)."""

    model: str
    model_fingerprint: str = ""
    adapter: str | None = None
    adapter_fingerprint: str = ""

    @classmethod
    def of_files(
        cls,
        model: str | os.PathLike[str],
        adapter: str | os.PathLike[str] | None,
        loaded: QAlignBackbone | None = None,
    ) -> ModelIdentity:
        """The identity of ``model`` (and ``adapter``) as ``load_backbone`` resolves them; pass the
        ``loaded`` backbone to fingerprint the folder it was read from without resolving again
        (a hub id would otherwise ask the hub once more, and offline fail to)."""
        return cls(model_name(model), _model_fingerprint(model, loaded), *_adapter_identity(adapter))

    @classmethod
    def of_backbone(cls, backbone: QAlignBackbone) -> ModelIdentity:
        """The best identity a loaded backbone tells about itself (its config and name)."""
        model = backbone.model
        config = getattr(model, "config", None)
        name = str(getattr(config, "_name_or_path", "") or type(backbone).__name__)
        fingerprint = ""
        try:
            if config is not None and hasattr(config, "to_json_string"):
                fingerprint = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()[:16]
        except (TypeError, ValueError):  # a config with values JSON cannot hold: name only
            fingerprint = ""
        peft = getattr(model, "peft_config", None)
        adapter = json.dumps({k: str(v) for k, v in peft.items()}, sort_keys=True) if peft else None
        return cls(name, fingerprint, adapter)


def model_name(model: str | os.PathLike[str]) -> str:
    """How a record names the model: a folder by its absolute path (the same name means another
    folder from another directory); a hub id or ``tiny`` as written, since their cache paths move."""
    local = Path(str(model)).expanduser()
    return str(local.resolve()) if local.exists() else str(model)


def _model_fingerprint(model: str | os.PathLike[str], loaded: QAlignBackbone | None) -> str:
    source = getattr(getattr(getattr(loaded, "model", None), "config", None), "_name_or_path", "")
    if source and Path(source).is_dir():
        return folder_fingerprint(source)
    from toolkit.models.loading import resolve_model_path

    try:
        return folder_fingerprint(resolve_model_path(model if isinstance(model, str) else Path(model)))
    except (InputError, OSError):
        return ""


def _adapter_identity(adapter: str | os.PathLike[str] | None) -> tuple[str | None, str]:
    if adapter is None:
        return None, ""
    folder = Path(adapter).expanduser().resolve()
    return str(folder), folder_fingerprint(folder)


@dataclass(frozen=True)
class Provenance:
    """Everything that decides the numbers of a score file. Two runs may share a file only when
    all of these agree."""

    model: str
    model_fingerprint: str
    adapter: str | None
    adapter_fingerprint: str
    task: str
    input_kind: str  # "image" or "video": how the inputs were read
    dtype: str
    question: str  # the prompt's question
    max_frames: int | None
    toolkit_version: str
    # Videos given to the model as videos ("native") or as their frames ("frames"); None for images.
    video_input: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, **asdict(self), "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def differences(self, recorded: dict[str, Any]) -> list[str]:
        """``field (was X, now Y)`` for each field the record holds otherwise."""
        return _differences({f.name: getattr(self, f.name) for f in fields(self)}, recorded)


def _differences(now: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    out = []
    for name, value in now.items():
        was = recorded.get(name, _older_default(name, recorded))
        if was != value:
            out.append(f"{name} (was {_show(was)}, now {_show(value)})")
    return out


def _older_default(name: str, recorded: dict[str, Any]) -> Any:
    """What a record written before ``name`` was recorded meant by leaving it out."""
    if name == "video_input":  # every video was read as frames then
        return "frames" if recorded.get("input_kind") == "video" else None
    return "<not recorded>"


def _show(value: Any) -> str:
    text = "none" if value is None else str(value)
    return text if len(text) <= 80 else "..." + text[-77:]


def read_record(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record beside ``out``, or ``None`` when there is none."""
    path = record_path(out)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the record of how {Path(out).name} was made ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a score file record; delete it together with {Path(out).name}")
    return data


def write_record(out: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Write the record beside ``out`` through a temporary file, so it is never half there."""
    path = record_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _resume_hint(out: Path) -> str:
    return f"pass another --out (out= in Python) or delete {out} to start over"


def refuse_early(
    out: str | os.PathLike[str] | None,
    model: str | os.PathLike[str],
    adapter: str | os.PathLike[str] | None,
    task: str,
    video: bool,
    video_as_frames: bool = False,
) -> None:
    """Before the weights are loaded (a minute for OneAlign): refuse an output whose record already
    differs in what is known without them. The full check (:func:`check_resumable`, with the
    fingerprints and the dtype) still runs once the model is loaded."""
    if out is None:
        return
    from toolkit.scoring.results import existing_parts  # results builds on this module

    out = Path(out)
    try:
        with open(out, encoding="utf-8") as fh:
            has_rows = bool(fh.readline()) and bool(fh.readline())
    except OSError:
        has_rows = False  # no file yet: only the parts of a sharded run may be there to resume
    recorded = read_record(out) if has_rows or existing_parts(out) else None
    if recorded is None:
        return
    diffs = _differences(_known_without_weights(model, adapter, task, video, video_as_frames), recorded)
    if diffs:
        raise InputError(f"{out} was made differently, cannot resume: {'; '.join(diffs)}; {_resume_hint(out)}")


def _known_without_weights(
    model: str | os.PathLike[str],
    adapter: str | os.PathLike[str] | None,
    task: str,
    video: bool,
    video_as_frames: bool | None,
) -> dict[str, Any]:
    from toolkit import __version__
    from toolkit.qalign import scoring_question

    kind = "video" if video else "image"
    known: dict[str, Any] = {
        "model": model_name(model),
        "adapter": None if adapter is None else str(Path(adapter).expanduser().resolve()),
        "task": task,
        "input_kind": kind,
        "question": scoring_question(task, kind),  # type: ignore[arg-type]
        "toolkit_version": __version__,
    }
    mode = _video_input(model, video_as_frames) if video and video_as_frames is not None else None
    if mode is not None:
        known["video_input"] = mode
    return known


def _video_input(model: str | os.PathLike[str], as_frames: bool) -> str | None:
    """The ``video_input`` of a video run, from the model's config alone (as the scorer sets it);
    None when the model cannot be read here (the full check once it is loaded decides)."""
    if as_frames:
        return "frames"
    from toolkit.models.loading import native_video_available

    try:
        return "native" if native_video_available(model if isinstance(model, str) else Path(model)) else "frames"
    except InputError:
        return None


def check_merge(
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None,
    adapter: str | os.PathLike[str] | None,
    task: str,
    video: bool,
    video_as_frames: bool | None = None,
) -> None:
    """Before the parts of a run are joined into ``out`` (without loading the model): they share
    the record beside ``out``, which must exist and, when ``model`` is given, agree with what the
    merge command says (model, adapter, task, input kind; with ``video_as_frames``, how videos were
    given), so parts of another run never join."""
    out = Path(out)
    recorded = read_record(out)
    if recorded is None:
        raise InputError(
            f"{out}: no record of the model and task that made its parts (no {record_path(out).name}),"
            " so they cannot be merged safely"
        )
    if model is None:
        return
    diffs = _differences(_known_without_weights(model, adapter, task, video, video_as_frames), recorded)
    if diffs:
        raise InputError(f"{out}: its parts were made differently, not merged: {'; '.join(diffs)}")


def check_resumable(out: Path, provenance: Provenance, has_rows: bool) -> bool:
    """Whether ``out`` already has a matching record (``False``: there is nothing to resume, so
    the caller writes one). Raises :class:`InputError` naming what differs when the existing
    rows were made otherwise, or when they carry no record at all."""
    how = _resume_hint(out)
    if not has_rows:
        return False  # a record without rows (its CSV deleted) describes nothing
    recorded = read_record(out)
    if recorded is None:
        raise InputError(
            f"{out} has no record of the model, adapter and task that made it (no {record_path(out).name};"
            f" an older toolkit wrote it), so it cannot be resumed safely; {how}"
        )
    diffs = provenance.differences(recorded)
    if diffs:
        raise InputError(f"{out} was made differently, cannot resume: {'; '.join(diffs)}; {how}")
    return True
