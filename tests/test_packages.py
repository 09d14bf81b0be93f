"""The package namespaces: every re-exported name resolves, and the command line starts without the
heavy libraries (they load only in the commands that need them)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["toolkit.store", "toolkit.analysis"])
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
        assert name in dir(module)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_the_command_line_starts_without_pandas_scipy_or_torch() -> None:
    code = (
        "import sys, toolkit.cli, toolkit.store.engine, toolkit.store.overview; "
        "print(sorted(m for m in ('pandas', 'scipy', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
