"""Where each item's media lives: image files, video files, or folders of video frames.

Training files store paths relative to an image folder (the reference loader joins them with
its ``--image_folder``). A video is either a video file or an ordered list of frame images.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.errors import InputError
from toolkit.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_image_path, is_video_path

# Sorted for messages: the sets' own order changes from one process to the next.
_VIDEO_LIST = ", ".join(sorted(VIDEO_EXTENSIONS))
_FRAME_LIST = ", ".join(sorted(IMAGE_EXTENSIONS))

MediaRef = str | list[str]
"""A relative media path, or the ordered frame paths of a video stored as images."""


def relative_path(path: str, root: Path | None) -> str:
    """``path`` relative to ``root`` (POSIX separators) when it is absolute and inside it."""
    p = Path(path)
    if root is not None and p.is_absolute():
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return p.as_posix()
    return p.as_posix()


def media_ref(value: Any, kind: str, root: Path | None) -> MediaRef:
    """The media reference of one item, relative to ``root``.

    For ``kind='video'`` a string with a video extension stays a file; a folder (under
    ``root``) becomes its sorted frame images; a list is taken as frames already in order.
    """
    if isinstance(value, (list, tuple)):
        if kind != "video":
            raise InputError(f"item {list(value)[:2]}... is a list of frames, which needs --video")
        if not value:
            raise InputError("a video item has an empty frame list")
        return [relative_path(str(v), root) for v in value]
    path = relative_path(str(value), root)
    if kind != "video" or is_video_path(path):
        return path
    if root is None:
        if Path(path).suffix:
            raise InputError(f"{path!r} is not a video file ({_VIDEO_LIST})")
        raise InputError(f"{path!r} looks like a folder of frames; pass the media root to list them")
    folder = root / path
    if not folder.is_dir():
        raise InputError(f"{folder} is neither a video file ({_VIDEO_LIST}) nor a folder of frames")
    frames = sorted(p.name for p in folder.iterdir() if is_image_path(p))
    if not frames:
        raise InputError(f"{folder} holds no frame images ({_FRAME_LIST})")
    return [posixpath.join(path, name) for name in frames]


def media_refs(values: Sequence[Any], kind: str, root: Path | None) -> list[MediaRef]:
    return [media_ref(v, kind, root) for v in values]


def with_prefix(ref: MediaRef, prefix: str) -> MediaRef:
    """Prepend a folder (e.g. ``'koniq'``) to every path of a reference."""
    if not prefix:
        return ref
    if isinstance(ref, list):
        return [posixpath.join(prefix, r) for r in ref]
    return posixpath.join(prefix, ref)


def absolute(ref: MediaRef, root: Path | None) -> MediaRef:
    """Filesystem paths of a reference (relative ones are resolved against ``root``)."""
    base = root if root is not None else Path(os.curdir)
    if isinstance(ref, list):
        return [str(base / r) for r in ref]
    return str(base / ref)


def item_key(value: Any) -> str:
    """A string naming an item, also for frame lists (their common folder)."""
    if isinstance(value, (list, tuple)):
        return posixpath.commonpath([str(v) for v in value]) if len(value) > 1 else str(value[0])
    return str(value)
