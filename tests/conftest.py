import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("RSN2_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the repository (../shared/data); tests using it skip when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set RSN2_SHARED_DATA or place ../shared/data)")
    return SHARED_DATA
