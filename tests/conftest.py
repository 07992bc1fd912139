"""Shared fixtures: the real data in ../shared/data, skipped with a reason where it is absent. The tests never
reach the Hugging Face hub: hub look-ups run in its offline mode (from the cache only), as on a machine without
network; the test of offline detection itself replaces the probe."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data from the project root)")
    return SHARED_DATA
