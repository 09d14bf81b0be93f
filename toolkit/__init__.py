"""qalign-toolkit: teach a multimodal model to rate images and videos the way people do (Q-Align).

The package is layered along the data flow: ``levels`` -> ``store`` -> ``analysis`` -> ``convert``
-> ``models`` / ``scoring`` -> ``training`` -> ``evaluation``. Heavy dependencies (torch,
transformers, streamlit) are imported inside the modules that need them, so that the store and the
command line stay quick to import.
"""

__version__ = "0.1.0"
