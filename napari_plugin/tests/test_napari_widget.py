"""The widget inside a real viewer (pytest-xvfb; ``show=True`` so screenshots render).

``test_widget_plumbing`` replaces :func:`stenosis.measure` by a stand-in that
records its calls and returns a result of known geometry: it checks what the
plugin itself does (docking, points prompt, the worker thread, result layers,
table, reference drag -> re-measure with the reader's site, screenshot pixels,
export). ``test_measure_sample_run`` runs the real measurement on a bundled
phantom run and compares it with the phantom's truth.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np
import pytest

import stenosis
from napari_stenosis._qt.result_panel import WARNINGS_MAX_PX
from napari_stenosis._qt.measure_widget import (
    CATHETER_LAYER,
    CENTERLINE_LAYER,
    EDGES_LAYER,
    MARKERS_LAYER,
    POINTS_LAYER,
    WAYPOINTS_LAYER,
    MeasureWidget,
)
from nst_helpers import known_result, tube_frames, write_xa

PLUGIN = "napari-stenosis"
pytestmark = pytest.mark.slow  # a napari viewer per test: not in the -m "not slow" edit loop


def _dock(viewer) -> MeasureWidget:
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Measure stenosis")
    assert isinstance(widget, MeasureWidget)
    return widget


def _choose(widget: MeasureWidget, artery: str) -> None:
    widget.segment_combo.setCurrentIndex(widget.segment_combo.findText(artery))


def _yellow(img: np.ndarray) -> np.ndarray:
    """Pixels of the centerline colour (#ffd400) in an RGBA screenshot."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 200) & (g > 170) & (g < 235) & (b < 90)


def test_widget_plumbing(make_napari_viewer, qtbot, xa_file, tmp_path, monkeypatch):
    calls = []

    def stand_in(run, *, segment, proximal, distal, frame=None, model="unet", reference=None, mld=None):
        calls.append({"thread": threading.current_thread().name, "segment": segment, "proximal": proximal,
                      "distal": distal, "frame": frame, "reference": reference, "mld": mld,
                      "mm": run.calibration.mm_per_px})
        time.sleep(0.3)  # long enough for the UI to be seen busy
        res = known_result(mm_per_px=0.25)
        if isinstance(reference, tuple):
            res = dataclasses.replace(res, reference_rc=reference, reference_choice="manual")
        return res

    monkeypatch.setitem(vars(stenosis), "measure", stand_in)
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(xa_file), plugin=PLUGIN)
    widget = _dock(viewer)
    assert widget.image_layer is image and widget.session.run.calibration.mm_per_px == (0.25, 0.25)
    # no points layer yet: the prompt says how to get one; no artery chosen: it asks for it
    assert "Press 'Place points', then click the PROXIMAL" in widget.prompt_label.text()
    assert "Choose the artery" in widget.prompt_label.text() and not widget.measure_button.isEnabled()
    assert widget.segment_combo.currentData() is None and widget.session.segment is None

    widget.start_points()
    points = viewer.layers[POINTS_LAYER]
    assert points.mode == "add" and tuple(points.scale) == (0.25, 0.25)
    assert widget.prompt_label.text().endswith("Click the PROXIMAL point of the segment (upstream of the lesion).")
    points.add([48.0, 10.0])
    assert "DISTAL" in widget.prompt_label.text()
    points.add([48.0, 110.0])
    # points placed, no artery: Measure stays disabled and the prompt says why
    assert widget.prompt_label.text().startswith("Choose the artery") and not widget.measure_button.isEnabled()
    _choose(widget, "M1")
    assert "Ready" in widget.prompt_label.text() and widget.measure_button.isEnabled()
    assert list(points.features["label"]) == ["proximal", "distal"]

    viewer.reset_view()
    qtbot.wait(50)
    before = viewer.screenshot(canvas_only=True, flash=False)
    assert _yellow(before).sum() == 0

    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.measure_button.click()
        assert widget.progress.maximum() == 0  # busy while the worker runs
        assert not widget.measure_button.isEnabled()
    assert calls[-1]["thread"] != threading.main_thread().name  # measured off the UI thread
    assert calls[-1]["proximal"] == (48.0, 10.0) and calls[-1]["distal"] == (48.0, 110.0)
    assert calls[-1]["segment"] == "M1" and calls[-1]["frame"] is None
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled(), timeout=5000)

    res = widget.session.result
    np.testing.assert_allclose(viewer.layers[CENTERLINE_LAYER].data[0], res.profile.centerline_rc)
    assert len(viewer.layers[EDGES_LAYER].data) == 2
    np.testing.assert_allclose(viewer.layers[MARKERS_LAYER].data, [[48, 60], [48, 30]])
    assert viewer.dims.current_step[0] == 2 and widget.frame_spin.value() == 2  # the result's frame
    assert "frame 2 (chosen automatically)" in widget.status_label.text()
    table = widget.result_panel.table.as_dict()
    assert table["Percent stenosis (WASID)"] == "60.0 %" and table[">= 50%"] == "YES"
    assert table["MLD (D stenosis)"].startswith("1.00 mm")  # 4 px x 0.25 mm
    qtbot.waitUntil(widget.result_panel.isVisible, timeout=3000)

    # the overlay is drawn where the centerline is: a horizontal yellow line through
    # the middle row of the image, from col 10 to col 110 of 128
    viewer.reset_view()
    qtbot.wait(100)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    yel = _yellow(shot)
    assert yel.sum() > 50
    rows, cols = np.nonzero(yel)
    img_rows = np.nonzero((shot[..., :3].astype(int).sum(-1) > 30).any(axis=1))[0]
    img_cols = np.nonzero((shot[..., :3].astype(int).sum(-1) > 30).any(axis=0))[0]
    frac_row = (np.median(rows) - img_rows.min()) / (img_rows.max() - img_rows.min())
    assert frac_row == pytest.approx(48.5 / 96, abs=0.06)
    span = (np.array([cols.min(), cols.max()]) - img_cols.min()) / (img_cols.max() - img_cols.min())
    assert span == pytest.approx([10.5 / 128, 110.5 / 128], abs=0.06)

    # the reader drags the reference marker: re-measured with that site, choice manual
    markers = viewer.layers[MARKERS_LAYER]
    with qtbot.waitSignal(widget.measured, timeout=20000):
        markers.data = np.array([[48.0, 60.0], [47.0, 90.0]])
    assert calls[-1]["reference"] == (47.0, 90.0) and calls[-1]["frame"] == 2
    assert widget.result_panel.table.as_dict()["Reference choice"].startswith("manual")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # dragging the MLD marker re-measures with the minimum searched near it
    with qtbot.waitSignal(widget.measured, timeout=20000):
        markers.data = np.array([[40.0, 70.0], markers.data[1]])
    assert calls[-1]["mld"] == (40.0, 70.0) and calls[-1]["reference"] == (47.0, 90.0)
    assert "placed" in widget.mld_label.text() and list(markers.features["label"])[0] == "MLD (placed)"
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # dragging the distal end of the centerline moves the distal point and traces again
    centerline = viewer.layers[CENTERLINE_LAYER]
    edited = np.array(centerline.data[0])
    edited[-1] = (50.0, 100.0)
    with qtbot.waitSignal(widget.measured, timeout=20000):
        centerline.data = [edited]
    assert calls[-1]["proximal"] == (48.0, 10.0) and calls[-1]["distal"] == (50.0, 100.0)
    assert calls[-1]["reference"] is None and calls[-1]["mld"] is None  # they belonged to the old segment
    np.testing.assert_allclose(viewer.layers[POINTS_LAYER].data, [[48, 10], [50, 100]])
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    res_edited = widget.session.result
    paths = widget.export_to(tmp_path)
    rec = json.loads(paths["json"].read_text())
    actions = [a["action"] for a in rec["reader"]["actions"]]
    assert actions.index("reference_moved") < actions.index("centerline_edited")
    assert rec["reader"]["distal_rc"] == [50.0, 100.0] and rec["reader"]["reference_override_rc"] is None
    assert rec["software"]["model_sha256"] == "f" * 64
    from matplotlib.image import imread

    png = imread(paths["png"])
    assert png.shape[1] > png.shape[0]  # the view beside the plot
    # a folder that cannot be written (here a file of that name): said in the status line, no
    # exception out of the button (a new reader's probe, session 36: PermissionError uncaught)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert widget.export_to(blocked / "sub") == {}
    assert widget.status_label.text().startswith(f"Not exported: cannot write to {blocked / 'sub'}")
    assert "choose another folder" in widget.status_label.text()

    # a measurement the library refuses: its one-line message is shown, the UI recovers
    def refuses(run, **kwargs):
        raise stenosis.MeasurementError("no vessel near the proximal point; click on the artery")

    monkeypatch.setitem(vars(stenosis), "measure", refuses)
    with qtbot.waitSignal(widget.failed, timeout=20000) as blocker:
        widget.measure_button.click()
    assert blocker.args == ["no vessel near the proximal point; click on the artery"]
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled(), timeout=5000)
    assert "click on the artery" in widget.status_label.text() and widget.session.result is res_edited


def test_catheter_calibration_rescales(make_napari_viewer, tmp_path):
    path = write_xa(tmp_path / "uncal.dcm", tube_frames((2, 64, 80)))
    viewer = make_napari_viewer(show=True)
    (image,) = viewer.open(str(path), plugin=PLUGIN)
    widget = _dock(viewer)
    assert tuple(image.scale) == (1.0, 1.0, 1.0)
    assert "Uncalibrated" in widget.calibration_label.text()
    widget.start_catheter_line()
    line = viewer.layers[CATHETER_LAYER]
    assert line.mode == "add_line"
    line.add_lines(np.array([[20.0, 30.0], [20.0, 54.0]]))  # 24 px across a 6 F (2 mm) catheter
    assert [str(u) for u in image.units] == ["pixel"] * 3
    width_px = float(line.edge_width[0])
    widget.french_spin.setValue(6.0)
    widget.apply_catheter_calibration()
    mm = 2.0 / 24.0
    np.testing.assert_allclose(image.scale, [1.0, mm, mm])
    np.testing.assert_allclose(line.scale, [mm, mm])
    # napari's scale bar reads the layers' units; shape edge widths are in data units (frame
    # pixels): unchanged, they keep their width against the vessel
    assert [str(u) for u in image.units] == ["pixel", "millimeter", "millimeter"]
    assert [str(u) for u in line.units] == ["millimeter", "millimeter"]
    assert float(line.edge_width[0]) == pytest.approx(width_px) and width_px >= 1.5
    assert image.metadata["stenosis"]["calibration_source"] == "catheter"
    assert widget.session.run.calibration.mm_per_px == pytest.approx((mm, mm))
    assert "catheter" in widget.calibration_label.text()
    # opening another run makes it the measured one; the first run's overlays are emptied (kept as
    # layers: removing napari points layers with text crashed the renderer, session 32)
    (other,) = viewer.open(str(write_xa(tmp_path / "other.dcm", tube_frames((2, 32, 32)), pixel_spacing=0.3)),
                           plugin=PLUGIN)
    assert widget.image_layer is other and widget.run_combo.currentText() == other.name
    assert len(viewer.layers[CATHETER_LAYER].data) == 0 and "0.3000 mm/px" in widget.calibration_label.text()
    assert tuple(viewer.layers[CATHETER_LAYER].scale) == tuple(other.scale[-2:])  # on the new run's grid
    assert [str(u) for u in other.units] == ["pixel", "millimeter", "millimeter"]
    # only the run measured is shown (overlays on another run's anatomy misled a reader)
    assert other.visible and not image.visible
    widget.run_combo.setCurrentIndex(widget.run_combo.findText(image.name))
    assert widget.image_layer is image and image.visible and not other.visible


def test_measure_sample_run(make_napari_viewer, qtbot, sample_runs):
    """Real measurement of a bundled phantom run (35% M1 stenosis, 0.15 mm/px) from the
    sample-data menu, with the phantom's own proximal/distal points."""
    from napari_stenosis._sample_data import sample_truth

    name = "m1_subtracted_pixelspacing"
    truth = sample_truth(name)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, name)
    image = viewer.layers[-1]
    np.testing.assert_allclose(image.scale, [1.0, 0.15, 0.15])
    widget = _dock(viewer)
    assert widget.image_layer is image
    _choose(widget, "M1")
    widget.set_points(truth["proximal_rc"], truth["distal_rc"])
    with qtbot.waitSignal(widget.measured, timeout=180000):
        widget.measure_button.click()
    res = widget.session.result
    # phantom truth: 35.0 %, MLD 1.69 mm, reference 2.6 mm (proximal); tolerances of the
    # measurement's own tests are tighter, these only guard the plugin's plumbing
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)
    assert res.meets_50 == truth["meets_50"]
    assert res.mld_mm == pytest.approx(truth["mld_mm"], abs=0.2)
    assert res.frame_index == truth["frame_index"] and viewer.dims.current_step[0] == truth["frame_index"]
    table = widget.result_panel.table.as_dict()
    assert table["Percent stenosis (WASID)"] == f"{res.percent_stenosis:.1f} %"
    assert table["Calibration"].startswith("pixel_spacing")
    # edge widths are in data units (frame pixels): at 0.15 mm/px they were drawn 0.15 x as wide (0.6 px)
    assert min(viewer.layers[CENTERLINE_LAYER].edge_width) >= 1.5
    cl = viewer.layers[CENTERLINE_LAYER].data[0]
    # the traced centerline runs from the proximal to the distal point (within 3 px)
    assert np.hypot(*(cl[0] - truth["proximal_rc"])) < 3 and np.hypot(*(cl[-1] - truth["distal_rc"])) < 3

    # the reader drags the reference marker onto the phantom's true reference site
    markers = viewer.layers[MARKERS_LAYER]
    with qtbot.waitSignal(widget.measured, timeout=180000):
        markers.data = np.array([markers.data[0], truth["reference_rc"]])
    manual = widget.session.result
    assert manual.reference_choice == "manual" and manual.frame_index == truth["frame_index"]
    assert manual.reference_diameter_mm == pytest.approx(truth["reference_diameter_mm"], abs=0.2)
    assert manual.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)


def test_reader_choices_in_the_widget(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Frame guess shown on loading, reference drop-down, waypoints, reader's frame: each
    re-measures with the matching keyword (stand-in measure; the library's own refusal of
    a feeding reference without feeding points is shown in the status line)."""
    from stenosis.measurement import measure as library_measure

    calls = []

    def stand_in(run, *, segment, proximal, distal, frame=None, model="unet", reference=None,
                 reference_choice=None, mld=None, waypoints=(), feeding_proximal=None, feeding_distal=None):
        kw = dict(segment=segment, proximal=proximal, distal=distal, frame=frame, reference=reference,
                  reference_choice=reference_choice, mld=mld, waypoints=list(waypoints))
        calls.append(kw)
        if reference_choice == "feeding" and feeding_proximal is None:
            library_measure(run, **kw)  # the library's checks refuse it before measuring
        res = dataclasses.replace(known_result(mm_per_px=0.25), frame_index=3 if frame is None else frame)
        if reference_choice:
            res = dataclasses.replace(res, reference_choice=reference_choice, reference_rc=(48.0, 95.0))
        elif reference is not None:
            res = dataclasses.replace(res, reference_choice="manual", reference_rc=reference)
        return res

    monkeypatch.setitem(vars(stenosis), "measure", stand_in)
    # a 5-frame run whose vessel (row 48) is opacified most in frame 2
    frames = tube_frames((5, 96, 128), contrast=0)
    for k, c in enumerate([0, 500, 1500, 900, 300]):
        frames[k] = tube_frames((2, 96, 128), contrast=c)[1]
    path = write_xa(tmp_path / "bolus.dcm", frames, pixel_spacing=0.25)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    widget = _dock(viewer)
    # loading: the frame control shows stenosis.guess_frame, labelled as auto, and the viewer goes there
    qtbot.waitUntil(lambda: widget.frame_spin.value() == 2, timeout=20000)
    assert widget.frame_source_label.text() == "auto: guess" and viewer.dims.current_step[0] == 2
    _choose(widget, "M1")
    widget.set_points((48.0, 10.0), (48.0, 110.0))
    qtbot.waitUntil(lambda: widget.session.frame_guess == 2, timeout=20000)  # guessed again near the points
    assert widget.frame_spin.value() == 2 and widget.frame_source_label.text() == "auto: guess"

    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.measure_button.click()
    assert calls[-1]["frame"] is None  # auto: the guess is only shown
    assert widget.frame_spin.value() == 3 and widget.frame_source_label.text() == "auto: measured"
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # the drop-down forces the distal site: re-measured with reference_choice="distal"
    labels = [widget.reference_combo.itemText(i) for i in range(widget.reference_combo.count())]
    assert labels == ["WASID rule (auto)", "proximal", "distal", "feeding", "manual (dragged)"]
    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.reference_combo.setCurrentIndex(labels.index("distal"))
    assert calls[-1]["reference_choice"] == "distal" and calls[-1]["reference"] is None and calls[-1]["frame"] == 3
    assert widget.result_panel.table.as_dict()["Reference choice"].startswith("distal")
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # feeding without feeding-artery points: the library's one-line message, the result stays
    before = widget.session.result
    with qtbot.waitSignal(widget.failed, timeout=20000) as blocker:
        widget.reference_combo.setCurrentIndex(labels.index("feeding"))
    assert "feeding" in blocker.args[0] and "\n" not in blocker.args[0]
    assert blocker.args[0] in widget.status_label.text() and widget.session.result is before
    assert "--feeding" not in widget.status_label.text() and "Feeding artery points" in widget.status_label.text()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # dragging the reference marker means manual: the forced site goes, the drop-down follows
    markers = viewer.layers[MARKERS_LAYER]
    with qtbot.waitSignal(widget.measured, timeout=20000):
        markers.data = np.array([markers.data[0], [47.0, 30.0]])
    assert calls[-1]["reference"] == (47.0, 30.0) and calls[-1]["reference_choice"] is None
    assert widget.reference_combo.currentData() == "manual"
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # waypoints clicked out of order are sent proximal to distal
    widget.start_waypoints()
    wp = viewer.layers[WAYPOINTS_LAYER]
    with qtbot.waitSignal(widget.measured, timeout=20000):
        wp.add([49.0, 80.0])
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    with qtbot.waitSignal(widget.measured, timeout=20000):
        wp.add([47.0, 40.0])
    assert calls[-1]["waypoints"] == [(47.0, 40.0), (49.0, 80.0)]
    np.testing.assert_allclose(wp.data, [[47, 40], [49, 80]])
    assert list(wp.features["label"]) == ["w1", "w2"] and widget.waypoints_label.text() == "2 points"
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # an inner vertex of the centerline dragged 4 px off the path joins the waypoints, in order
    centerline = viewer.layers[CENTERLINE_LAYER]
    edited = np.array(centerline.data[0])
    edited[60] = (52.0, 70.0)  # the known result's centerline is row 48, cols 10..110
    with qtbot.waitSignal(widget.measured, timeout=20000):
        centerline.data = [edited]
    assert calls[-1]["waypoints"] == [(47.0, 40.0), (52.0, 70.0), (49.0, 80.0)]
    assert calls[-1]["proximal"] == (48.0, 10.0) and calls[-1]["distal"] == (48.0, 110.0)
    np.testing.assert_allclose(wp.data, [[47, 40], [52, 70], [49, 80]])
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)

    # the reader's frame is sent as frame=
    widget.frame_spin.setValue(1)
    assert widget.frame_source_label.text() == "yours" and viewer.dims.current_step[0] == 1
    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.measure_button.click()
    assert calls[-1]["frame"] == 1 and len(calls[-1]["waypoints"]) == 3
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    rec = widget.session.export_record()["reader"]
    assert rec["frame_auto"] is False and rec["reference_mode"] == "manual"
    assert rec["waypoints_rc"] == [[47.0, 40.0], [52.0, 70.0], [49.0, 80.0]]


def _name(w) -> str:
    return f"{type(w).__name__}({getattr(w, 'text', lambda: '')()!r})"


def _overlapping(widgets) -> list[tuple[str, str]]:
    """Pairs of sibling widgets whose geometries overlap."""
    return [(_name(a), _name(b)) for i, a in enumerate(widgets) for b in widgets[i + 1:]
            if a.geometry().intersects(b.geometry())]


def _squeezed(widgets) -> list[tuple[str, int, int]]:
    """Widgets shorter than their minimum size hint (a row drawn over the next)."""
    return [(_name(w), w.height(), w.minimumSizeHint().height())
            for w in widgets if w.height() < w.minimumSizeHint().height()]


def test_buttons_show_their_whole_text_and_warnings_are_in_view(make_napari_viewer, qtbot, xa_file, monkeypatch):
    from qtpy.QtWidgets import QGroupBox, QPushButton, QWidget

    monkeypatch.setitem(vars(stenosis), "measure", lambda run, **kw: dataclasses.replace(
        known_result(mm_per_px=0.25), warnings=("first warning for the reader " * 6, "second warning")))
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)  # a new user's window: the docks share < 1000 px
    viewer.open(str(xa_file), plugin=PLUGIN)
    widget = _dock(viewer)
    qtbot.wait(50)
    for b in widget.findChildren(QPushButton):
        assert b.width() >= b.fontMetrics().horizontalAdvance(b.text()) + 8, b.text()
    _choose(widget, "ICA")
    widget.set_points((48.0, 10.0), (48.0, 110.0))
    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.measure_button.click()
    qtbot.waitUntil(lambda: widget.result_panel is not None and widget.result_panel.isVisible(), timeout=3000)
    label = widget.result_panel.warnings
    assert label.isVisible() and label.wordWrap()
    assert "first warning" in label.text() and "second warning" in label.text()
    # the whole text is in view: the label is tall enough for its wrapped lines
    assert label.height() >= label.heightForWidth(label.width()) - 2

    # with the result dock below it, no control is squeezed: every row of the Adjust (and the
    # calibration) group keeps its height, none drawn over the next (the Reference drop-down was
    # clipped, "Feeding artery points" overlapped the MLD row)
    qtbot.wait(100)
    for box in widget.findChildren(QGroupBox):
        kids = [w for w in box.findChildren(QWidget) if w.parentWidget() is box and w.isVisible()]
        assert len(kids) >= 4, box.title()
        assert _overlapping(kids) == [], box.title()
        assert _squeezed(kids) == [], box.title()
    # nor in the result dock, whichever tab is shown: the plot, the warnings and the tabs
    # keep their heights, the plot never drawn over the first warning line
    panel = widget.result_panel
    for tab in (panel.frames, panel.table):
        panel.tabs.setCurrentWidget(tab)
        qtbot.wait(100)
        # the warnings scroll in a box of their own (session 32: a real frame's 7 warnings pushed the
        # tabs out of view); these two fit in it whole
        parts = [panel.plot, panel.warnings_box, panel.tabs]
        assert _overlapping(parts) == [], panel.tabs.tabText(panel.tabs.currentIndex())
        assert panel.plot.height() >= panel.plot.minimumHeight()
        assert label.height() >= label.heightForWidth(label.width()) - 2
        assert panel.warnings_box.height() >= min(label.heightForWidth(label.width()), WARNINGS_MAX_PX) - 2
        assert panel.tabs.height() >= panel.tabs.minimumSizeHint().height()


def test_frames_shown_and_dropped_on_a_sample_run(make_napari_viewer, qtbot, sample_runs):
    """Real measurements of a bundled multi-frame phantom run: the result dock lists the frames
    combined and plots each one's percent stenosis; unchecking a frame drops it (the library's
    result leaves it out), checking restores it, unchecking the analysed frame analyses another."""
    from napari_stenosis._sample_data import sample_truth

    name = "m1_subtracted_pixelspacing"
    truth = sample_truth(name)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample(PLUGIN, name)
    widget = _dock(viewer)
    _choose(widget, "M1")
    widget.set_points(truth["proximal_rc"], truth["distal_rc"])
    with qtbot.waitSignal(widget.measured, timeout=180000):
        widget.measure_button.click()
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    res = widget.session.result
    used = res.frames["used"]
    assert len(used) >= 2, "the sample run combines several frames"
    panel = widget.result_panel
    panel.tabs.setCurrentIndex(panel.tabs.indexOf(panel.frames))
    qtbot.wait(50)
    assert panel.tabs.tabText(panel.tabs.indexOf(panel.frames)) == f"Frames ({len(used)} used)"
    assert panel.frames.plot.isVisible() and panel.frames.list.isVisible()
    shown = panel.frames.list.states()
    assert sorted(shown) == sorted(used) and "analysed" in shown[res.frame_index]
    # the per-frame plot: one point per frame combined, the combined value as a line
    ax = panel.frames.plot.ax
    assert any(sorted(line.get_xdata()) == sorted(used) for line in ax.lines)
    assert any(np.allclose(line.get_ydata(), res.percent_stenosis) for line in ax.lines)
    assert "frame-to-frame SD" in ax.get_title()

    # uncheck the last frame used: re-measured without it
    other = used[-1]
    with qtbot.waitSignal(widget.measured, timeout=180000):
        panel.frames.list.set_checked(other, False)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    res = widget.session.result
    assert other not in res.frames["used"] and res.frames["excluded"] == [other]
    assert widget.session.dropped_frames == [other] and f"Frame {other} dropped" in widget.status_label.text()
    qtbot.waitUntil(lambda: "dropped" in panel.frames.list.states().get(other, ""), timeout=3000)
    assert "1 dropped" in panel.tabs.tabText(panel.tabs.indexOf(panel.frames))
    assert f"dropped by the reader: {other}" in panel.table.as_dict()["Frames combined"]

    # check it again: restored
    with qtbot.waitSignal(widget.measured, timeout=180000):
        panel.frames.list.set_checked(other, True)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    assert other in widget.session.result.frames["used"] and widget.session.dropped_frames == []

    # uncheck the analysed frame: another used frame is analysed, the status line says so
    analysed = widget.session.result.frame_index
    with qtbot.waitSignal(widget.measured, timeout=180000):
        panel.frames.list.set_checked(analysed, False)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=5000)
    res = widget.session.result
    assert res.frame_index in used and res.frame_index != analysed and res.frames["excluded"] == [analysed]
    assert not any("not fully opacified" in w or "holds the whole segment" in w for w in res.warnings)
    assert "the earliest fully opacified frame of the others" in widget.status_label.text()
    assert widget.frame_spin.value() == res.frame_index and widget.frame_source_label.text() != "yours"
    assert viewer.dims.current_step[0] == res.frame_index


def _measured_ica(viewer, qtbot, xa_file) -> MeasureWidget:
    """The widget docked on ``xa_file``, its ICA measured between (48, 10) and (48, 110)."""
    viewer.open(str(xa_file), plugin=PLUGIN)
    widget = _dock(viewer)
    _choose(widget, "ICA")
    widget.set_points((48.0, 10.0), (48.0, 110.0))
    with qtbot.waitSignal(widget.measured, timeout=20000):
        widget.measure_button.click()
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled(), timeout=5000)
    return widget


def test_a_result_measured_before_a_change_is_shown_out_of_date(make_napari_viewer, qtbot, xa_file, monkeypatch):
    """Session 32 (a reader's walk-through): after a point was moved, the artery changed or a
    re-measure failed, the old trace, markers and "35.2%" stayed on screen as if current. The
    overlays now fade and the result dock says it is out of date until Measure answers."""
    from napari_stenosis._qt.result_panel import STALE_TEXT

    calls = {"n": 0}

    def fake(run, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise stenosis.MeasurementError("the distal point (48, 100) is not on a vessel")
        return known_result(mm_per_px=0.25)

    monkeypatch.setitem(vars(stenosis), "measure", fake)
    viewer = make_napari_viewer(show=False)
    widget = _measured_ica(viewer, qtbot, xa_file)
    panel = widget.result_panel
    assert not panel.stale_label.isVisibleTo(panel) and viewer.layers[CENTERLINE_LAYER].opacity == 1.0
    widget.set_points((48.0, 10.0), (48.0, 100.0))  # the distal point moved: not measured yet
    assert panel.stale_label.isVisibleTo(panel) and panel.stale_label.text() == STALE_TEXT
    assert viewer.layers[CENTERLINE_LAYER].opacity == pytest.approx(0.3)
    assert viewer.layers[MARKERS_LAYER].opacity == pytest.approx(0.3)
    with qtbot.waitSignal(widget.failed, timeout=20000):  # its re-measure fails: still out of date
        widget.measure_button.click()
    qtbot.waitUntil(lambda: widget.measure_button.isEnabled(), timeout=5000)
    assert panel.stale_label.isVisibleTo(panel) and "Could not measure" in widget.status_label.text()
    widget.set_points((48.0, 10.0), (48.0, 110.0))  # back to the measured points: current again
    assert not panel.stale_label.isVisibleTo(panel) and viewer.layers[EDGES_LAYER].opacity == pytest.approx(0.9)


def test_an_image_layer_the_library_refuses_leaves_no_session(make_napari_viewer, qtbot, xa_file):
    """The review's case (session 32): a float layer holding NaN made ``from_array`` raise inside the
    Qt slot, after the widget had taken the layer but kept the previous run's session (Measure
    would have measured the previous run)."""
    viewer = make_napari_viewer(show=False)
    viewer.open(str(xa_file), plugin=PLUGIN)
    widget = _dock(viewer)
    bad = np.ones((3, 64, 64), np.float32)
    bad[0, 5, 5] = np.nan
    viewer.add_image(bad, name="with nan")
    widget.run_combo.setCurrentIndex(widget.run_combo.findText("with nan"))
    qtbot.wait(50)
    assert widget.session is None and not widget.measure_button.isEnabled()
    assert "Cannot measure the layer 'with nan'" in widget.status_label.text() and "NaN" in widget.status_label.text()


def test_opening_a_second_run_after_measuring_draws(make_napari_viewer, qtbot, xa_file, tmp_path, monkeypatch):
    """Session 32 (a reader's walk-through): measuring a run, then opening another, crashed napari
    (a segfault in vispy's draw, 3 of 3 tries) when the widget removed the first run's overlay
    layers (points with text, paths). They are now emptied and moved to the new run's grid."""
    monkeypatch.setitem(vars(stenosis), "measure", lambda run, **kw: known_result(mm_per_px=0.25))
    viewer = make_napari_viewer(show=True)
    widget = _measured_ica(viewer, qtbot, xa_file)
    qtbot.wait(100)
    (other,) = viewer.open(str(write_xa(tmp_path / "other.dcm", tube_frames((2, 40, 40)), pixel_spacing=0.3)),
                           plugin=PLUGIN)
    qtbot.wait(200)
    shot = viewer.screenshot(canvas_only=True, flash=False)  # drawn: the renderer survived
    assert shot.size and widget.image_layer is other
    assert len(viewer.layers[MARKERS_LAYER].data) == 0 and len(viewer.layers[CENTERLINE_LAYER].data) == 0
    assert len(viewer.layers[POINTS_LAYER].data) == 0  # the new run has no points yet
    assert "60.0%" not in widget.status_label.text()  # the first run's result is not spoken of
    # the view fits the shown run, not the hidden first one (12 mm against 32 mm: it read small)
    world = np.asarray(other.extent.world)[:, -2:]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert np.allclose(camera.center[-2:], world.mean(axis=0), atol=0.5)
