"""Package namespaces that import their modules on first use.

``toolkit.store`` and ``toolkit.analysis`` re-export names from many modules; importing all of them
eagerly would make every command pay for pandas and scipy, even ``qalign --help``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (PEP 562): ``exports`` maps each public name to
    the module that defines it; a name is imported when first asked for, then kept."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
