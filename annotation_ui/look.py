"""The rater pages' fixed look: a mid-grey surround, dark text, nothing around the stimulus.

Every rater sees the same screen (P.910: a neutral grey background; no theme of the rater's
choosing). The app's theme is fixed to ``light`` by its configuration (``launch.py`` and
``.streamlit/config.toml``); this style sheet makes the rater pages grey and takes away Streamlit's
header and margins so that the rating screen can use the whole viewport.
"""

from __future__ import annotations

import streamlit as st

SURROUND = "#808080"  # 50 % grey in sRGB
TEXT = "#111111"
TEXT_BOX = "qa-text"  # container key of the text pages (join, instructions, breaks)

_STYLE = f"""
<style>
.stApp, [data-testid="stAppViewContainer"], [data-testid="stMain"] {{
  background: {SURROUND};
  color: {TEXT};
}}
.stApp p, .stApp li, .stApp h1, .stApp h2, .stApp h3, .stApp label, .stApp [data-testid="stCaptionContainer"] {{
  color: {TEXT};
}}
header[data-testid="stHeader"], [data-testid="stToolbar"], [data-testid="stDecoration"] {{
  display: none !important;
}}
[data-testid="stMainBlockContainer"] {{
  padding: 0 !important;
  max-width: none !important;
}}
[data-testid="stMainBlockContainer"] > div > [data-testid="stVerticalBlock"] {{
  gap: 0;
}}
.st-key-{TEXT_BOX} {{
  max-width: 46rem;
  margin: 0 auto;
  padding: 2.5rem 1.5rem 3rem;
  gap: 1rem;
}}
.st-key-{TEXT_BOX} [data-testid="stCode"] pre {{
  background: #d9d9d9;
  color: #000000;
  font-size: 1.4rem;
}}
/* While a run replaces one screen by another, never show two rating screens at once. */
.st-key-rating_screen[data-stale="true"] {{
  display: none !important;
}}
/* Buttons of the text pages in the screen's neutral greys, none coloured. */
.st-key-{TEXT_BOX} [data-testid^="stBaseButton"] {{
  background: #8c8c8c;
  color: {TEXT};
  border: 1px solid #4d4d4d;
}}
</style>
"""


def apply() -> None:
    """Draw the rater pages' style (call once per run, before anything else is drawn)."""
    st.html(_STYLE)


def text_page() -> st.delta_generator.DeltaGenerator:
    """The centred column the rater's text pages are written into."""
    return st.container(key=TEXT_BOX)
