"""Custom browser components of the annotation app (HTML, CSS and JavaScript served with the page)."""
