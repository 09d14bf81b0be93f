"""Reading visual inputs the way Q-Align expects them: RGB images, square padding, video frames.

Images are opened as RGB and fully decoded up front so that a truncated file fails here, with
its name, rather than deep inside a model forward. Videos follow the reference sampling of one
frame per second (decord ``VideoReader``, ``int(fps * i)`` for ``i in range(int(n / fps))``),
with a PyAV fallback and an optional frame cap, because the reference has none and a long clip
otherwise exhausts memory. A folder of frame images is treated as a video whose frames are the
files in natural order ("frame2" before "frame10"). The frames of a video carry when they were
taken (:class:`TimedFrames`): a capped clip's frames are several seconds apart, and a model told
the frames' times must be told those.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from toolkit.errors import InputError, ToolkitError

if TYPE_CHECKING:
    from PIL import Image

CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
"""Channel mean of the OpenAI CLIP image processor (RGB)."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".yuv", ".flv", ".wmv", ".3gp"}
)
"""File suffixes (lower case) taken as images and as videos by every reader of media: the
scorer, the converter (an image suffix in a folder of video frames) and the trainer."""

# What a web browser can show. The annotation app serves a study's files as they are (re-encoding
# would change the quality being judged), so a study takes only these: raw YUV, PPM/PGM and the
# old container formats cannot be shown, though the scorer reads them.
BROWSER_IMAGE_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS - {".ppm", ".pgm"}
BROWSER_VIDEO_EXTENSIONS: frozenset[str] = VIDEO_EXTENSIONS - {".yuv", ".flv", ".wmv", ".3gp"}

VideoBackend = Literal["auto", "decord", "pyav"]


def pad_color(mean: Sequence[float] = CLIP_MEAN) -> tuple[int, ...]:
    """The padding colour of the reference: ``int(255 * m)`` per channel; (122, 116, 104) for CLIP."""
    return tuple(int(255 * m) for m in mean)


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def natural_key(path: str | Path) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders embedded numbers by value: ``f2.png`` < ``f10.png``, ``cam`` < ``cam2``."""
    parts = re.split(r"(\d+)", Path(path).name)
    # A capturing split alternates text and digits from a text part (maybe empty), so two names
    # compare text with text and number with number at every position. The full path stays
    # outside that tuple: appended to it, it would meet a number when one name is a prefix of
    # another ("cam" and "cam2"). It keeps the order total for equal names ("f02" and "f2").
    name = tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts))
    return name, str(path)


# --------------------------------------------------------------------------- images


def open_image(path: str | Path) -> Image.Image:
    """Open ``path`` as a fully decoded RGB image; raise :class:`InputError` naming the file and why."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an image file")
    try:
        with Image.open(p) as img:
            img.load()  # decode now: a truncated file raises here, not later in the model
            # Palette or alpha images go through RGBA so transparency does not turn into
            # arbitrary palette colours; the reference simply calls convert("RGB").
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise InputError(f"{p}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{p}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{p}: cannot decode image ({exc})") from None


def expand2square(img: Image.Image, fill: Sequence[int] = (122, 116, 104)) -> Image.Image:
    """Pad to a square as the reference does: a canvas of side ``max(w, h)`` in ``fill``, the image
    pasted at ``((side - w) // 2, (side - h) // 2)``. Square images are returned unchanged."""
    from PIL import Image

    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    colour = tuple(int(c) for c in fill)
    if img.mode in ("L", "I", "F") and len(colour) > 1:
        colour = colour[:1]
    canvas = Image.new(img.mode, (side, side), colour if len(colour) > 1 else colour[0])
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


# --------------------------------------------------------------------------- videos


@dataclass
class VideoFrames:
    """Frames sampled from one clip, with where they came from."""

    frames: list[Image.Image]
    indices: list[int]  # positions of the frames in the decoded stream (or in the folder)
    fps: float | None  # average frame rate of the file; None for a folder of frames
    total_frames: int
    backend: str  # "decord", "pyav" or "folder"
    note: str | None = None  # set when the frames were subsampled to a cap
    warnings: list[str] = field(default_factory=list)  # e.g. why decord was not used
    sampled: int = 0  # frames the 1 fps rule (and cap) asks for over the container's duration

    def __post_init__(self) -> None:
        self.sampled = max(self.sampled, len(self.frames))

    @property
    def decoded(self) -> int:
        return len(self.frames)

    @property
    def short(self) -> bool:
        """Fewer frames decoded than the sampling asked for: a truncated or damaged file."""
        return self.decoded < self.sampled

    @property
    def shortfall(self) -> str | None:
        """One line saying how many of the sampled frames were decoded, when some were not."""
        if not self.short:
            return None
        return (
            f"decoded {self.decoded} of {self.sampled} sampled frames"
            " (the file ends early: truncated or damaged); scored from those decoded"
        )

    @property
    def times(self) -> FrameTimes:
        """When the frames were taken: their index over the file's frame rate. A folder of frames
        has no rate and a file may state none (every frame is then a candidate): their frames are
        taken to be :data:`SAMPLED_FPS` apart, the spacing the reference rule gives a video."""
        fps = self.fps
        rate = fps if fps is not None and math.isfinite(fps) and fps > 0 else SAMPLED_FPS
        return FrameTimes.at_rate(self.indices, self.total_frames, rate)

    def timed(self) -> TimedFrames:
        """The frames, carrying their times (what the scorer and the trainer give a backbone)."""
        return TimedFrames(self.frames, self.times)


SAMPLED_FPS = 1.0
"""Frames per second the reference rule takes from a video. A model told the frames' times
(Qwen-VL's temporal positions, Qwen3-VL's and SmolVLM2's timestamps) is told their real times
(:class:`FrameTimes`), which are this rate's for a clip read whole; frames given without times
are taken to be this rate's."""


@dataclass(frozen=True)
class FrameTimes:
    """When the frames of one video were taken: seconds from the clip's start, one per frame,
    and the clip's length in seconds."""

    seconds: tuple[float, ...]
    duration: float

    @classmethod
    def at_rate(cls, indices: Sequence[int], total_frames: int, fps: float) -> FrameTimes:
        """Frames at positions ``indices`` of a clip of ``total_frames`` frames at ``fps``."""
        # Rounded to the microsecond: a rate such as 30.000000001 would otherwise put a frame at
        # 2.9999999999 s, which a model shown whole seconds (SmolVLM2) reads as second 2.
        return cls(tuple(round(i / fps, 6) for i in indices), round(total_frames / fps, 6))

    @classmethod
    def sampled(cls, count: int) -> FrameTimes:
        """``count`` frames :data:`SAMPLED_FPS` apart from the start: what frames given without
        their times are taken to be (a clip read whole by the reference rule)."""
        return cls.at_rate(range(count), count, SAMPLED_FPS)


class TimedFrames(list["Image.Image"]):
    """The frames of one video with their :class:`FrameTimes`: a list of images, so usable
    wherever frames are; a backbone that tells the model when frames were taken reads the times
    (:func:`frame_times`)."""

    def __init__(self, frames: Iterable[Image.Image], times: FrameTimes) -> None:
        super().__init__(frames)
        if len(times.seconds) != len(self):
            raise ToolkitError(f"{len(times.seconds)} frame times for {len(self)} frames")
        self.times = times


def frame_times(frames: Sequence[Image.Image]) -> FrameTimes:
    """When the frames of one video were taken: the times they carry (:class:`TimedFrames`), else
    :data:`SAMPLED_FPS` apart from the start."""
    if isinstance(frames, TimedFrames):
        if len(frames.times.seconds) != len(frames):
            raise ToolkitError(f"{len(frames.times.seconds)} frame times for {len(frames)} frames")
        return frames.times
    return FrameTimes.sampled(len(frames))


def reference_indices(total_frames: int, fps: float) -> list[int]:
    """The reference rule: one frame per second from frame 0, ``int(fps * i)`` for
    ``i in range(int(total_frames / fps))``; clips shorter than one second give frame 0."""
    if total_frames <= 0:
        return []
    if not np.isfinite(fps) or fps <= 0:
        # No usable rate: every frame is a candidate; the cap (if any) thins them.
        return list(range(total_frames))
    idx = [int(fps * i) for i in range(int(total_frames / fps))]
    # int(fps * i) can reach total_frames only through a rounded-up rate; keep indices decodable.
    idx = [i for i in idx if i < total_frames]
    return idx or [0]


def cap_indices(indices: Sequence[int], max_frames: int | None) -> tuple[list[int], str | None]:
    """Subsample ``indices`` uniformly (first and last kept) to at most ``max_frames``.

    Returns the kept indices and a note saying what was done, or ``None`` when nothing was dropped.
    """
    idx = list(indices)
    if max_frames is None or len(idx) <= max_frames:
        return idx, None
    if max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    pick = np.unique(np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int))
    kept = [idx[i] for i in pick]
    return kept, f"subsampled {len(idx)} sampled frames to {len(kept)} uniformly (max_frames={max_frames})"


def load_video_frames(path: str | Path, max_frames: int | None = None, backend: VideoBackend = "auto") -> VideoFrames:
    """Sample the frames of a video file (1 frame per second) or of a folder of frame images.

    ``backend="auto"`` uses decord and falls back to PyAV when decord is not installed or cannot
    read the file. A clip from which no frame can be decoded raises :class:`InputError`.
    """
    p = Path(path)
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    if not p.exists():
        raise InputError(f"{p}: file not found")
    if p.is_dir():
        return _load_frame_folder(p, max_frames)
    if backend not in ("auto", "decord", "pyav"):
        raise InputError(f"unknown video backend {backend!r}; use 'auto', 'decord' or 'pyav'")

    warnings: list[str] = []
    if backend in ("auto", "decord"):
        try:
            out = _load_with_decord(p, max_frames)
            return out
        except ImportError as exc:
            if backend == "decord":
                raise InputError(f"{p}: decord is not installed ({exc})") from None
            warnings.append(f"decord unavailable ({exc}); used PyAV")
        except Exception as exc:  # decord raises its own DECORDError (a RuntimeError) and others
            if backend == "decord":
                raise InputError(f"{p}: decord cannot read the video ({_one_line(exc)})") from None
            warnings.append(f"decord failed ({_one_line(exc)}); used PyAV")
    try:
        out = _load_with_pyav(p, max_frames)
    except InputError as exc:
        if warnings:
            raise InputError(f"{exc}; {warnings[0]}") from None
        raise
    out.warnings = warnings + out.warnings
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


def _load_with_decord(path: Path, max_frames: int | None) -> VideoFrames:
    import decord  # ImportError is the caller's cue to fall back
    from PIL import Image

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    total = len(vr)
    fps = float(vr.get_avg_fps())
    indices, note = cap_indices(reference_indices(total, fps), max_frames)
    if not indices:
        raise InputError(f"{path}: the video has no frames")
    arrays = vr.get_batch(indices).asnumpy()
    frames = [Image.fromarray(a).convert("RGB") for a in arrays]
    # decord counts the frames it can index; a file whose header promises more (a faststart MP4
    # cut short) would otherwise be scored from its first seconds without a word.
    sampled = expected_sampled(path, fps, total, max_frames)
    return VideoFrames(frames, indices, fps, total, "decord", note, sampled=sampled)


def _load_with_pyav(path: Path, max_frames: int | None) -> VideoFrames:
    import av

    warnings: list[str] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream in the file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else float("nan")
            total = int(stream.frames or 0)
        if total <= 0:
            # Some containers do not record a frame count: count by decoding once.
            total = _count_frames(path)
        indices, note = cap_indices(reference_indices(total, fps), max_frames)
        wanted = set(indices)
        last = max(indices) if indices else -1
        frames_by_index: dict[int, Image.Image] = {}
        with av.open(str(path)) as container:
            try:
                for i, frame in enumerate(container.decode(video=0)):
                    if i in wanted:
                        frames_by_index[i] = frame.to_image().convert("RGB")
                    if i >= last:
                        break
            except Exception as exc:
                if not frames_by_index:
                    raise
                # A file cut short decodes up to the cut: keep those frames and say so below.
                warnings.append(f"decoding stopped early ({_one_line(exc)})")
    except InputError:
        raise
    except Exception as exc:  # av.error.* (InvalidDataError, ...) and OSError
        raise InputError(f"{path}: cannot decode video ({_one_line(exc)})") from None

    kept = [i for i in indices if i in frames_by_index]
    if not kept:
        raise InputError(f"{path}: no decodable frame in the video")
    sampled = max(len(indices), expected_sampled(path, fps, total, max_frames))
    frames = [frames_by_index[i] for i in kept]
    return VideoFrames(frames, kept, fps, total, "pyav", note, warnings, sampled=sampled)


def _count_frames(path: Path) -> int:
    import av

    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except Exception:
            if not count:
                raise
            # A damaged tail ends the count; the duration check reports the missing frames.
    return count


def expected_sampled(path: str | Path, fps: float, total: int, max_frames: int | None) -> int:
    """Frames the 1 fps rule (and cap) takes from ``path`` given the container's own duration.

    Only the header is read. The duration of the video stream is preferred over the container's
    (an audio track may run longer). Returns the count for ``total`` frames when the file states
    no duration.
    """
    best = total
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000  # av.time_base: microseconds
            else:
                seconds = 0.0
            header_frames = int(stream.frames or 0)
    except Exception:  # no PyAV, or a header it cannot read: keep what the decoder found
        seconds, header_frames = 0.0, 0
    if np.isfinite(fps) and fps > 0 and seconds > 0:
        best = max(best, int(seconds * fps + 0.5))
    best = max(best, header_frames)
    return len(cap_indices(reference_indices(best, fps), max_frames)[0])


def list_frame_files(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, in natural order."""
    folder = Path(folder)
    return sorted((f for f in folder.iterdir() if f.is_file() and is_image_path(f)), key=natural_key)


def _load_frame_folder(folder: Path, max_frames: int | None) -> VideoFrames:
    files = list_frame_files(folder)
    if not files:
        raise InputError(f"{folder}: folder holds no frame images")
    indices, note = cap_indices(range(len(files)), max_frames)
    frames = [open_image(files[i]) for i in indices]
    return VideoFrames(frames, indices, None, len(files), "folder", note)
