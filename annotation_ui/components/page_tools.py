"""Small browser tools of the rater's flow: the screen check's measurement, the completion redirect
and MTurk's submit form (``page_tools.js``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

HERE = Path(__file__).resolve().parent
KEY = "page_tool"

_component = st.components.v2.component(
    "qalign_page_tools",
    js=(HERE / "page_tools.js").read_text(encoding="utf-8"),
    css="""
.qa-tool { display: flex; gap: 12px; align-items: center; font-size: 16px; }
.qa-tool-button {
  padding: 8px 16px; background: #8c8c8c; color: #111111; border: 1px solid #4d4d4d; border-radius: 4px;
  font: inherit; cursor: pointer;
}
.qa-tool a { color: #111111; }
""",
)


def measure_screen(key: str, on_measured: Callable[[], None], label: str = "Check again") -> None:
    """Measure the browser's screen on load (once per ``key``) and on the button; ``on_measured`` reads
    the figures with :func:`measured`."""
    _component(
        key=KEY, data={"tool": "measure", "key": key, "auto": True, "label": label}, on_measured_change=on_measured
    )


def measured() -> dict[str, Any] | None:
    """The figures the page sent in this run (width, height, dpr, zoom), or None."""
    state = st.session_state.get(KEY)
    value = state.get("measured") if state is not None else None
    return value if isinstance(value, dict) else None


def redirect(url: str, label: str, auto: bool = True) -> None:
    """Send the browser to ``url`` (also offered as a link, for a browser that blocks it)."""
    _component(key=KEY, data={"tool": "redirect", "url": url, "label": label, "auto": auto, "delay_ms": 3000})


def post_form(url: str, fields: dict[str, str], label: str) -> None:
    """A button that submits ``fields`` to ``url`` by POST (MTurk's external HIT submission)."""
    _component(key=KEY, data={"tool": "post", "url": url, "fields": fields, "label": label})
