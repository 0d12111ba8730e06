"""Make the README's workflow screenshot (the whole napari window).

Run under a display (``QT_API=pyqt6 xvfb-run -s "-screen 0 1600x1000x24" python
napari_plugin/docs/make_screenshot.py``). It opens a bundled phantom run from
the sample-data menu, docks "Measure stenosis", places the phantom's proximal
and distal points, measures, and saves ``napari_plugin/docs/workflow.png``. Optional arguments: the sample name, and a
folder that gets the window screenshot and the export instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_stenosis._sample_data import sample_truth

NAME = sys.argv[1] if len(sys.argv) > 1 else "ba_subtracted_geometry"
OUT = Path(__file__).resolve().parent / "workflow.png"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1560, 940)
    viewer.open_sample("napari-stenosis", NAME)
    _, widget = viewer.window.add_plugin_dock_widget("napari-stenosis", "Measure stenosis")
    truth = sample_truth(NAME)
    widget.segment_combo.setCurrentText(truth["segment"])
    widget.set_points(truth["proximal_rc"], truth["distal_rc"])
    done = []
    widget.measured.connect(done.append)
    widget.failed.connect(lambda msg: (print("failed:", msg), done.append(None)))
    widget.measure()
    app = QApplication.instance()
    while not done:
        app.processEvents()
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # napari's own start-up notices are not part of the workflow
    for _ in range(20):
        app.processEvents()
    out = OUT if len(sys.argv) <= 2 else Path(sys.argv[2]) / "window.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    res = done[0]
    if len(sys.argv) > 2:  # also export (JSON, CSV, PNG) into this folder
        print(widget.export_to(sys.argv[2]))
    mld = "n/a (uncalibrated)" if res.mld_mm is None else f"{res.mld_mm:.3f} mm"
    print(f"{NAME}: {res.percent_stenosis:.1f}% (truth {truth['percent_stenosis']}%), "
          f"MLD {mld} (truth {truth['mld_mm']} mm), reference {res.reference_choice} -> {out}")
    viewer.close()


if __name__ == "__main__":
    main()
