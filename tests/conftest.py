"""Shared fixtures. Models load once per session; tests that need them ask for these fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_eval() -> Path:
    """Real recorded speech (read-only, beside the checkout). Tests that need it fail loudly if absent."""
    path = SHARED / "eval"
    assert path.is_dir(), f"{path} is missing: the eval recordings live in ../shared/eval beside the checkout"
    return path
