"""Shared pytest fixtures.

Real media lives outside the repository, in ``../shared/data/real`` beside the clone; tests that
use it skip when it is absent (a user's clone has no ../shared).
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_MEDIA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_media() -> Path:
    """The folder of real media; skips the test when it is not there."""
    if not REAL_MEDIA.is_dir():
        pytest.skip(f"real media not found at {REAL_MEDIA}")
    return REAL_MEDIA
