"""``python -m toolkit.cli`` (also ``accelerate launch -m toolkit.cli ...``)."""

from toolkit.cli import main

main()
