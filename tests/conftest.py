"""Shared fixtures: paths to the real data in ../shared/data (skipped with a reason when absent)."""
from __future__ import annotations

from pathlib import Path

import pytest

from qt_display import skip_qt_items

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DICOM = REPO / "sample_dicom"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (clone with ../shared beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def wg04_dir(shared_data: Path) -> Path:
    d = shared_data / "wg04-xa1"
    if not d.is_dir():
        pytest.skip(f"{d} missing")
    return d


@pytest.fixture(scope="session")
def cimat_dir(shared_data: Path) -> Path:
    d = shared_data / "cimat-train"
    if not d.is_dir():
        pytest.skip(f"{d} missing")
    return d


@pytest.fixture(scope="session")
def sample_dicom_dir() -> Path:
    return SAMPLE_DICOM


def pytest_collection_modifyitems(config, items):
    """Qt tests skip with a reason when no display can be started (never abort pytest)."""
    skip_qt_items(items)


@pytest.fixture(scope="session")
def low_dose_run(tmp_path_factory):
    """The 8-frame low-dose M1 phantom (``_phantoms.SPECS``) read as a run, with its truth."""
    import stenosis
    from _phantoms import phantom

    dcm, truth = phantom("low_dose_m1_8frames", tmp_path_factory.mktemp("low_dose"))
    return stenosis.read_run(dcm), truth
