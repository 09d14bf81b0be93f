"""Decoding inputs into frames, in DataLoader workers so decoding overlaps the model forward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from torch.utils.data import Dataset

from toolkit.errors import InputError
from toolkit.media import cap_indices, load_video_frames, open_image
from toolkit.scoring.inputs import ScoreInput

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Decoded:
    """One input after decoding: frames to score, or the reason it cannot be scored."""

    position: int  # index into the list being scored
    frames: list["Image.Image"] | None
    error: str | None = None
    note: str | None = None  # e.g. the frame cap subsampled the clip


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
            return Decoded(position, [open_image(item.frames[i]) for i in kept], note=note)
        video = load_video_frames(item.path, max_frames=max_frames)
        return Decoded(position, video.frames, note=video.note)
    except InputError as exc:
        return Decoded(position, None, str(exc))
    except Exception as exc:  # a decoder bug or an exotic file: report it on the row, go on
        return Decoded(position, None, f"{item.path}: {type(exc).__name__}: {exc}")


class DecodeDataset(Dataset):
    """Map-style dataset over inputs; yields :class:`Decoded` (never raises for a bad file)."""

    def __init__(self, items: Sequence[ScoreInput], max_frames: int | None = None) -> None:
        self.items = list(items)
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Decoded:
        return decode_input(self.items[index], self.max_frames, index)


def keep_list(batch: list[Decoded]) -> list[Decoded]:
    """Collate function: a batch is the list of decoded inputs (frames differ in size and count)."""
    return batch
