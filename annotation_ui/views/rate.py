"""Rate page: join with a token (or register), training examples, then rating."""

from annotation_ui.guard import render_page
from annotation_ui.rate import render

render_page(render)
