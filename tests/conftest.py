"""Shared test settings: offline hubs and the real-data location."""

import os
from pathlib import Path

import pytest
from runs import evaluation, pipeline, reconstruction, room, tiny_weights  # noqa: F401 (session fixtures)

# A hub miss costs ~50 s before failing; tests never download anything.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(os.environ.get("FF3R_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real scenes of ../shared/data; tests that use them skip where the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real scenes not found at {SHARED_DATA} (research-only data, not shipped)")
    return SHARED_DATA
