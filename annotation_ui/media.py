"""Showing an item: images as they are, videos in a player that tells the page when it has ended."""

from __future__ import annotations

import base64
import mimetypes
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import streamlit as st

# Videos up to this size travel inside the page (a data: URL) so the player can report "ended";
# larger ones use Streamlit's own player and the minimum-viewing-time rule alone.
INLINE_VIDEO_BYTES = 40 * 1024 * 1024

_PLAYER_JS = """
export default function(component) {
  const { data, setStateValue, parentElement } = component;
  let video = parentElement.querySelector("video");
  if (!video) {
    video = document.createElement("video");
    video.controls = true;
    video.muted = true;          // muted so that autoplay is allowed
    video.autoplay = true;
    video.playsInline = true;
    video.style.width = "100%";
    video.setAttribute("data-testid", "qalign-video");
    parentElement.appendChild(video);
  }
  if (video.dataset.key !== data.key) {
    video.dataset.key = data.key;
    video.src = data.src;
  }
  video.onended = () => setStateValue("played", data.key);
}
"""

_player = st.components.v2.component("qalign_video_player", js=_PLAYER_JS)


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


@lru_cache(maxsize=32)
def _data_url(file: str, mtime: float) -> str:
    mime = mimetypes.guess_type(file)[0] or "video/mp4"
    return f"data:{mime};base64," + base64.b64encode(Path(file).read_bytes()).decode("ascii")


def show_image(file: Path) -> None:
    # Native size: rescaling would itself change the quality being judged.
    st.image(str(file), width="content")


def show_video(file: Path, key: str, shown_at: datetime | None = None) -> bool:
    """Show the clip; True once it has played to the end, or once the clip's length has passed
    since the server first showed it (the same rule, for players that cannot report)."""
    played = False
    if file.stat().st_size <= INLINE_VIDEO_BYTES:
        result = _player(
            data={"src": _data_url(str(file), file.stat().st_mtime), "key": key},
            key=f"player-{key}",
            default={"played": None},
            on_played_change=lambda: None,
        )
        played = getattr(result, "played", None) == key
    else:
        st.video(str(file), autoplay=True, muted=True)
    if played:
        return True
    if shown_at is not None:
        elapsed = (datetime.now(timezone.utc) - shown_at).total_seconds()
        return elapsed >= video_duration(str(file))
    return False
