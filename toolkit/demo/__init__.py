"""The synthetic end-to-end study behind ``qalign demo``.

It runs the whole loop on the embedded default: a study of degraded pictures in a fresh SQLite
database, simulated raters voting through the store, MOS, Q-Align conversations, fine-tuning of
the tiny from-scratch model, scoring of held-out items and a report. The tiny model exists to show
the loop working on a laptop; real use loads OneAlign (``q-future/one-align``).
"""

from toolkit.demo.pipeline import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "run_demo"]
