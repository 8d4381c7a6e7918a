import os
from pathlib import Path

import pytest

import jaxpot  # noqa: F401  (enables float64)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_data():
    """Path to ../shared/data; skips where the shared folder is absent (fresh clone)."""
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip("../shared/data is not present (fresh clone)")
    return d
