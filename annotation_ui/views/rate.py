"""Rate page: join with a token (or register), training examples, then rating."""

from annotation_ui.rate import render

render()
