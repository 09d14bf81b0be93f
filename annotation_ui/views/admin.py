"""Admin page: an overview of every study, then per study progress, raters, results, exports and tokens
(admin secret needed)."""

from annotation_ui.admin import render
from annotation_ui.guard import render_page

render_page(render)
