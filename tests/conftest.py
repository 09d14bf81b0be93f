"""Paths of the reference data and fixtures that ship with the tests.

Everything a test reads lives under ``tests/``, so a bare clone runs the whole suite. Test modules
import the constants (``from conftest import ONEALIGN_TINY``; pytest puts ``tests/`` on
``sys.path``) where they need a path at import time, or ask for the fixtures of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
DATA = TESTS / "data"

# Tiny random OneAlign checkpoint with the reference implementation's outputs (fixtures/README.md).
ONEALIGN_TINY = FIXTURES / "onealign-tiny"
# Real rating data sets and sureal's numbers on them (data/README.md).
KONIQ_CSV = DATA / "koniq10k_distributions_sets.csv"
NFLX_VOTES_CSV = DATA / "nflx_public_raw_votes.csv"
NFLX_SUREAL_JSON = DATA / "nflx_public_sureal_reference.json"
# Simulated partially sampled study and sureal's numbers on it.
ANALYSIS_DATA = DATA / "analysis"


@pytest.fixture(scope="session")
def onealign_tiny() -> Path:
    """The OneAlign fixture folder (read-only: copy it before writing into it)."""
    return ONEALIGN_TINY


@pytest.fixture(scope="session")
def koniq_csv() -> Path:
    return KONIQ_CSV


@pytest.fixture(scope="session")
def nflx_votes() -> Path:
    return NFLX_VOTES_CSV


@pytest.fixture(scope="session")
def nflx_sureal() -> Path:
    return NFLX_SUREAL_JSON


@pytest.fixture(scope="session")
def family_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``family_model(name)``: the folder of that model family's tiny random build, built on first
    use and shared by every test (read-only: copy it before writing into it)."""
    from toolkit.models.tiny_families import build_tiny_family

    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_tiny_family(name, root / name)
        return built[name]

    return get
