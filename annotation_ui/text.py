"""Showing names, questions and labels that came from users exactly as typed."""

from __future__ import annotations

import re

# Every ASCII punctuation character can be backslash-escaped in Markdown; escaping all of them
# also disarms Streamlit's own directives (":red[...]", ":material/...:") and raw HTML.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: object) -> str:
    """``text`` as Markdown that renders to the same characters, never to markup."""
    return _PUNCTUATION.sub(r"\\\1", str(text)).replace("\n", "  \n")
