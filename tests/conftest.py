"""Shared fixtures.

Real survey data lives outside the repository in ``../shared/data`` (see its
README).  Tests that need it take the ``shared_data`` fixture, which skips them
with a visible reason when the folder is absent instead of failing or
silently passing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("TUNINGFORK_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not present")
    return SHARED_DATA
