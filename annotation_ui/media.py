"""Serving stimuli to the rater's browser: the file's own bytes, never re-encoded.

Re-encoding (as ``st.image`` may do) would change the very quality being judged and costs tens of
milliseconds per vote; the bytes go to Streamlit's media store as they are on disk and the page
loads them from a URL (HTTP range requests included, for videos).
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path

from streamlit import runtime

# Files up to this size stay in memory between runs (the item on screen is drawn again after each
# vote or reload); larger ones are read again when shown.
CACHED_BYTES = 64 * 1024 * 1024
COORDINATES = "qalign-stimulus"  # one stimulus on screen per browser session

_VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime", ".mkv": "video/x-matroska"}


@lru_cache(maxsize=8)
def _cached_bytes(file: str, mtime_ns: int, size: int) -> bytes:
    # Keyed by modification time and size too: a file replaced on disk is read again.
    return Path(file).read_bytes()


def mime_type(file: Path) -> str:
    suffix = file.suffix.lower()
    return _VIDEO_TYPES.get(suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"


def stimulus_url(file: Path) -> str:
    """A URL the rater's browser loads ``file`` from, exactly as stored."""
    stat = file.stat()
    data = (
        _cached_bytes(str(file), stat.st_mtime_ns, stat.st_size) if stat.st_size <= CACHED_BYTES else file.read_bytes()
    )
    return runtime.get_instance().media_file_mgr.add(data, mime_type(file), COORDINATES)


@lru_cache(maxsize=256)
def video_duration(file: str) -> float:
    """Length of a clip in seconds (0 when it cannot be read: then no waiting is imposed)."""
    try:
        import av

        with av.open(file) as container:
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0]
            return float(stream.duration * stream.time_base) if stream.duration else 0.0
    except Exception:  # noqa: BLE001 - an unreadable clip must not break the page
        return 0.0
