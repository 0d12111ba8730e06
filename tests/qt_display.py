"""Can Qt (and napari's OpenGL canvas) start here? Probed once, in a subprocess.

A Qt application without a display, or with the xcb platform plugin's system libraries
missing, aborts the whole Python process ("Fatal Python error: Aborted", no summary).
The probe runs in a child process, so an abort there only says "no": the Qt tests are
then skipped with the reason (how to get the packages: ``scripts/setup_test_env.sh``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

#: fixtures that start a Qt application
QT_FIXTURES = ("qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy", "viewer_model")

_PROBE = "import napari; v = napari.Viewer(show=False); v.close(); print('qt-ok')"
_cached: tuple[bool, str] | None = None


def qt_available() -> tuple[bool, str]:
    """(True, "") when a napari viewer can be made here; else (False, why)."""
    global _cached
    if _cached is not None:
        return _cached
    if os.environ.get("STENOSIS_SKIP_QT"):
        _cached = (False, "STENOSIS_SKIP_QT is set")
        return _cached
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY") and platform in ("", "xcb"):
        why = ("no X display: Xvfb is not installed" if shutil.which("Xvfb") is None
               else "no X display (pytest-xvfb did not start Xvfb)")
        _cached = (False, f"{why}; run `sh scripts/setup_test_env.sh` (apt packages) to run the Qt tests")
        return _cached
    try:
        p = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=180)
        ok = p.returncode == 0 and "qt-ok" in p.stdout
        tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, tail = False, str(exc)
    _cached = (True, "") if ok else (
        False, f"Qt cannot start a napari viewer here ({tail[:160]}); the Qt xcb libraries are probably "
               "missing: run `sh scripts/setup_test_env.sh` (apt packages) to run the Qt tests")
    return _cached


def skip_qt_items(items) -> None:
    """Mark every collected test that uses a Qt fixture as skipped when Qt cannot start."""
    import pytest

    qt_items = [it for it in items if set(getattr(it, "fixturenames", ())) & set(QT_FIXTURES)]
    if not qt_items:
        return
    ok, why = qt_available()
    if ok:
        return
    mark = pytest.mark.skip(reason=why)
    for it in qt_items:
        it.add_marker(mark)
