"""Decoding inputs into frames and model inputs, in DataLoader workers so that this work
overlaps the model forward of the previous batch."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset, get_worker_info

from toolkit.errors import InputError
from toolkit.media import SAMPLED_FPS, FrameTimes, TimedFrames, cap_indices, load_video_frames, open_image
from toolkit.models.base import QAlignBackbone, Task
from toolkit.qalign import INPUT_KINDS, InputKind
from toolkit.scoring.inputs import ScoreInput

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Decoded:
    """One input after decoding: frames to score, or the reason it cannot be scored."""

    position: int  # index into the list being scored
    frames: list[Image.Image] | None  # a video's frames carry their times (TimedFrames)
    error: str | None = None
    note: str | None = None  # e.g. the frame cap subsampled the clip
    frame_counts: tuple[int, int] | None = None  # videos: (frames decoded, frames the sampling asked for)
    shortfall: str | None = None  # videos: why fewer frames were decoded than asked for
    released: bool = False  # decoded fine, frames dropped once a worker built the model inputs

    @property
    def usable(self) -> bool:
        """Whether the input decoded (its frames may have been released since)."""
        return self.frames is not None or self.released


def decode_input(item: ScoreInput, max_frames: int | None = None, position: int = 0) -> Decoded:
    """Frames of one input; every failure becomes ``Decoded.error`` rather than an exception,
    so one unreadable file never stops a long run."""
    if item.error:
        return Decoded(position, None, item.error)
    try:
        if item.kind == "image":
            return Decoded(position, [open_image(item.path)])
        if item.frames is not None:
            kept, note = cap_indices(range(len(item.frames)), max_frames)
            # Listed frame files state no rate: taken to be the sampling rate apart, as a folder's.
            times = FrameTimes.at_rate(kept, len(item.frames), SAMPLED_FPS)
            frames = TimedFrames((open_image(item.frames[i]) for i in kept), times)
            return Decoded(position, frames, note=note, frame_counts=(len(frames), len(kept)))
        video = load_video_frames(item.path, max_frames=max_frames)
        counts = (video.decoded, video.sampled)
        return Decoded(position, video.timed(), note=video.note, frame_counts=counts, shortfall=video.shortfall)
    except InputError as exc:
        return Decoded(position, None, str(exc))
    except Exception as exc:  # a decoder bug or an exotic file: report it on the row, go on
        return Decoded(position, None, f"{item.path}: {type(exc).__name__}: {exc}")


class BatchVisuals(SequenceABC):
    """The frames of some decoded inputs, decoding again those a worker released.

    Workers drop the frames of inputs whose model inputs they built (shipping full-size
    pictures back to the main process costs more than decoding them), so the frames are
    only needed again when a batch fails and its inputs are retried one at a time.
    """

    def __init__(self, decoded: Sequence[Decoded], items: Sequence[ScoreInput], max_frames: int | None) -> None:
        self.decoded = list(decoded)
        self.items = items
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.decoded)

    def __getitem__(self, index: int) -> list[Image.Image]:  # type: ignore[override]
        d = self.decoded[index]
        if d.frames is not None:
            return d.frames
        again = decode_input(self.items[d.position], self.max_frames, d.position)
        if again.frames is None:
            raise InputError(again.error or f"{self.items[d.position].path}: cannot be decoded again")
        return again.frames


class DecodeDataset(Dataset):
    """Map-style dataset over inputs; yields :class:`Decoded` (never raises for a bad file)."""

    def __init__(self, items: Sequence[ScoreInput], max_frames: int | None = None) -> None:
        self.items = list(items)
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        return decode_input(self.items[index], self.max_frames, index)


@dataclass
class PreparedBatch:
    """A batch of decoded inputs and, per kind, the backbone's model inputs for the decoded ones."""

    decoded: list[Decoded]
    prepared: dict[InputKind, tuple[list[int], dict[str, Any]]] = field(default_factory=dict)
    # kind -> (positions within ``decoded``, output of ``backbone.transfer_batch`` for them)

    def pin_memory(self, *_: Any) -> PreparedBatch:
        """Page-locked copies of the model inputs (called by ``DataLoader(pin_memory=True)``)."""
        return PreparedBatch(
            self.decoded, {kind: (idx, _pinned(inputs)) for kind, (idx, inputs) in self.prepared.items()}
        )


def _pinned(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.pin_memory()
    if isinstance(value, dict):
        return {k: _pinned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_pinned(v) for v in value)
    return value


def detach_preprocessing(backbone: QAlignBackbone) -> QAlignBackbone | None:
    """A shallow copy of ``backbone`` without its model, for worker processes.

    ``transfer_batch`` only needs the processor (the device move happens in ``level_logits``),
    so workers can build batches without a copy of the weights being pickled to them.
    Returns ``None`` if the backbone does not allow it; batches are then built in the main process.
    """
    clone = copy.copy(backbone)
    try:
        clone.model = None  # type: ignore[assignment]  # deliberately breaks the declared type: no weights to pickle
    except Exception:
        return None
    return clone


class BatchPreparer:
    """Collate function: keeps the decoded inputs and runs ``transfer_batch`` on them.

    With DataLoader workers this is where the image processing (padding, resizing,
    normalising) happens in parallel with the forward pass of the previous batch. A failure
    here is not reported: the main process builds that batch again and handles the error.
    """

    def __init__(self, backbone: QAlignBackbone | None, items: Sequence[ScoreInput], task: Task) -> None:
        self.backbone = backbone
        self.kinds = [it.kind for it in items]
        self.task = task

    def __call__(self, batch: list[Decoded]) -> PreparedBatch:
        out = PreparedBatch(batch)
        if self.backbone is None:
            return out
        in_worker = get_worker_info() is not None
        for kind in INPUT_KINDS:
            chosen = [
                (i, d.frames) for i, d in enumerate(batch) if d.frames is not None and self.kinds[d.position] == kind
            ]
            if not chosen:
                continue
            idx = [i for i, _ in chosen]
            try:
                out.prepared[kind] = (idx, self.backbone.transfer_batch([f for _, f in chosen], self.task, kind))
            except Exception:
                continue
            if in_worker:
                # Pickling full-size pictures back to the main process would cost that process
                # more than the model inputs themselves (which travel in shared memory).
                for i in idx:
                    batch[i].frames = None
                    batch[i].released = True
        return out
