"""Fixtures of the napari-stenosis tests: tiny DICOM runs and a result built from known geometry.

The napari fixtures (``make_napari_viewer``) come from napari's own pytest plugin;
pytest-xvfb gives them an X server. When Qt cannot start a viewer here (no Xvfb, or the xcb
libraries missing), the tests that need one are skipped with the reason instead of aborting
(``tests/qt_display.py``; ``scripts/setup_test_env.sh`` installs the packages).
"""
from __future__ import annotations

from pathlib import Path

import sys

import pytest

from nst_helpers import tube_frames, write_xa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
# the plugin's source beside these tests, even when napari-stenosis was installed as a copy
# (pip install ./napari_plugin) rather than editable: the tests check this checkout
sys.path.insert(0, str(REPO / "napari_plugin" / "src"))
from qt_display import skip_qt_items  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Qt tests skip with a reason when no display can be started (never abort pytest)."""
    skip_qt_items(items)


@pytest.fixture
def xa_file(tmp_path: Path) -> Path:
    """A 3-frame 96x128 XA run with PixelSpacing 0.25 mm and a DICOM window."""
    return write_xa(tmp_path / "run1.dcm", tube_frames(), pixel_spacing=0.25, window=(2500.0, 2000.0))


@pytest.fixture
def sample_runs() -> list[Path]:
    """The bundled phantom runs (skipped with a reason when none is built yet)."""
    from napari_stenosis._sample_data import sample_files

    files = sample_files()
    if not files:
        pytest.skip("no phantom runs in sample_dicom/ (build them with stenosis.phantom)")
    return files
