"""Admin page: study set-up, progress, raters, results, exports and tokens (admin secret needed)."""

from annotation_ui.admin import render

render()
