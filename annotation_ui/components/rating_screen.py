"""The rater's screen: the stimulus and the five-level scale drawn by one small browser component.

Streamlit's own elements cannot show an image at one image pixel per device pixel, keep five buttons
beside a large stimulus inside the viewport, or stop a video's seek bar; ``rating_screen.js`` does
that in the page and answers with one event per action (see ``ScreenEvent``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import streamlit as st

HERE = Path(__file__).resolve().parent
KEY = "rating_screen"  # the component's key: its events are read from st.session_state[KEY]

Mode = Literal["rate", "train"]
EVENTS = ("vote", "next", "undo", "signout")

_component = st.components.v2.component(
    "qalign_rating_screen",
    js=(HERE / "rating_screen.js").read_text(encoding="utf-8"),
    css=(HERE / "rating_screen.css").read_text(encoding="utf-8"),
)


@dataclass
class Screen:
    """What the screen shows; every text is drawn as text (never as HTML)."""

    key: str  # one per stimulus shown: a new key loads a new stimulus and resets the buttons
    mode: Mode
    kind: str  # image | video
    src: str  # URL of the stimulus bytes
    labels: list[str]  # the five level labels, best first
    question: str
    caption: str = ""
    progress: dict[str, Any] | None = None  # {"text": str, "fraction": float}
    message: dict[str, str] | None = None  # {"kind": "success"|"warning"|"error"|"info", "text": str}
    can_undo: bool = False
    offer_undo: bool = True  # the undo button at all (not in the qualification quiz)
    who: str = ""
    replay: str = "once"  # none | once | free: how often a video may be played again
    audio: str = "muted"  # muted | sound
    oversize: str = "scale"  # scale (down, recording the factor) | refuse (ask for a larger window)
    trap: str | None = None  # a trapping question's instruction, drawn over the stimulus
    example_level: int | None = None  # training: the level the example stands for
    next_label: str = "Next example"
    serial: int = field(default=0)  # changes on every run, so the page always takes the new state


@dataclass
class ScreenEvent:
    """An action on the screen: ``name`` is one of ``EVENTS``; ``values`` what the page measured."""

    name: str
    key: str
    values: dict[str, Any]

    @property
    def item_id(self) -> int | None:
        """The item id carried in the screen key (``...-i<id>``), None when there is none."""
        tail = self.key.rsplit("-i", 1)
        return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def event(name: str) -> ScreenEvent | None:
    """The event ``name`` of this run, read in a callback (None when the page sent none)."""
    state = st.session_state.get(KEY)
    value = state.get(name) if state is not None else None
    if not isinstance(value, dict) or not isinstance(value.get("key"), str):
        return None
    return ScreenEvent(name, value["key"], value)


def rating_screen(screen: Screen, handlers: dict[str, Callable[[], None]]) -> None:
    """Draw the screen; ``handlers`` maps event names to callbacks run before the next run."""
    st.session_state["_screen_serial"] = screen.serial = st.session_state.get("_screen_serial", 0) + 1
    callbacks = {f"on_{name}_change": handlers.get(name, _ignore) for name in EVENTS}
    # The callbacks travel as keyword arguments named after the events (on_vote_change, ...).
    _component(key=KEY, data=asdict(screen), **callbacks)  # type: ignore[arg-type]


def _ignore() -> None:
    """An event this screen does not offer (a stale page): nothing to do."""
