"""The "Measure stenosis" dock widget: Qt and napari glue around a ReadingSession.

Every decision goes through :class:`napari_stenosis._model.ReadingSession`; this
module only wires controls and layers to it:

* a points layer ("stenosis points") that prompts for proximal then distal;
* Measure runs :func:`stenosis.measure` in a :func:`napari.qt.threading.thread_worker`
  (busy progress bar, the UI stays responsive); a request made while one runs is
  queued and the newest choices win;
* result layers: centerline (Shapes path), lumen edges (Shapes paths), MLD and
  reference markers (Points), and a dock with the profile plot and result table;
* the frame control shows the automatic frame before measuring
  (:func:`stenosis.guess_frame`, computed in a worker on the run's cached
  opacification), the measured frame after; a frame the reader picks is sent as ``frame=``;
* dragging the reference marker re-measures with the reader's reference site
  ("manual"); the reference drop-down forces the WASID site (proximal / distal /
  feeding) or goes back to the rule; two points on the feeding artery make the
  feeding reference available; dragging the MLD marker re-measures with the
  minimum searched near it; waypoints (a points layer, or dragged inner vertices
  of the centerline) make the trace pass through them; dragging an end of the
  centerline moves that point and traces again;
* the frames combined: the result dock lists them (and plots each one's percent
  stenosis); unchecking a frame drops it (``exclude_frames=``) and re-measures,
  checking it restores it; dropping the analysed frame analyses another used frame;
* catheter calibration: a line across the catheter and its French size;
* export of JSON, CSV row and PNG (viewer screenshot beside the plot).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import time

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

import stenosis
from stenosis import ModelName, Segment
from stenosis.result import CONFIRM_MARK

from .._model import REFERENCE_MODES, ReadingSession, for_napari, overlay_geometry
from .._plot import COLOURS
from .._reader import META_KEY, RUN_KEY, layer_scale, layer_units, run_metadata
from .result_panel import ResultPanel, Unsqueezed, scroll_area

__all__ = ["MeasureWidget"]

POINTS_LAYER = "stenosis points"
CENTERLINE_LAYER = "stenosis centerline"
EDGES_LAYER = "stenosis lumen edges"
MARKERS_LAYER = "stenosis MLD / reference"
CATHETER_LAYER = "catheter line"
FEEDING_LAYER = "stenosis feeding points"
WAYPOINTS_LAYER = "stenosis waypoints"
RESULT_MIN_PX = 250  # the result dock's least height, px (its plot stays readable), when the window allows
OVERLAY_LAYERS = (POINTS_LAYER, CENTERLINE_LAYER, EDGES_LAYER, MARKERS_LAYER, FEEDING_LAYER, WAYPOINTS_LAYER,
                  CATHETER_LAYER)

#: what the frame control's label says, by ReadingSession.frame_source
_FRAME_SOURCE = {
    "reader": "yours",
    "measured": "auto: measured",
    "guess": "auto: guess",
    "auto": "auto",
}

_REFERENCE_HELP = {
    "rule": "WASID order: the widest normal parallel segment of the proximal artery, else distal, else feeding",
    "proximal": "force the proximal artery's best normal segment",
    "distal": "force the distal artery's best normal segment",
    "feeding": "force the feeding artery (needs the two feeding-artery points)",
    "manual": "drag the green reference marker to the site to use",
}

_SEGMENT_HELP = {
    Segment.ICA: "intracranial ICA (reference: petrous ICA, else extracranial ICA)",
    Segment.M1: "M1 (reference: proximal M1, else distal, else supraclinoid ICA)",
    Segment.V4: "V4 (reference: proximal V4, else distal, else extracranial VA)",
    Segment.BA: "basilar (reference: proximal BA, else distal, else dominant V4)",
}


def _measure_worker(request):  # pragma: no cover - body runs in the worker thread
    return request()


def _guess_worker(session, points):  # pragma: no cover - body runs in the worker thread
    return session.guess_frame(points)


class MeasureWidget(QWidget):
    """Dock widget: pick the artery, click two points, measure, adjust, export.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    measured = Signal(object)  # the StenosisResult, after layers and table are updated
    failed = Signal(str)

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):  # noqa: F821
        super().__init__()
        self.viewer = napari_viewer
        self.session: ReadingSession | None = None
        self.image_layer = None
        self._sessions: dict[int, ReadingSession] = {}
        self._worker = None
        self._pending = False
        self._guess_workers: set = set()
        self._syncing = False
        self.result_panel: ResultPanel | None = None
        self.result_dock = None
        self.last_export: dict[str, Path] | None = None
        self._status_note = ""  # said before the next result's summary (e.g. the analysed frame switched)
        self._build()
        self._t0 = 0.0
        self._ticker = QTimer(self)
        self._ticker.setInterval(500)
        self._ticker.timeout.connect(self._tick)
        self.viewer.layers.events.inserted.connect(self._refresh_runs)
        self.viewer.layers.events.removed.connect(self._refresh_runs)
        self._refresh_runs()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        # the controls in a scroll area: a short dock scrolls them, it never squeezes their rows
        # onto each other (the Adjust group's rows overlapped once the result dock was added)
        self._controls = Unsqueezed()
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        self._scroll = scroll_area(self._controls)
        root.addWidget(self._scroll)
        outer = QVBoxLayout(self._controls)
        form = QFormLayout()
        self.run_combo = QComboBox()
        self.run_combo.currentIndexChanged.connect(self._on_run_changed)
        form.addRow("Run", self.run_combo)
        self.segment_combo = QComboBox()
        # no default artery: the reader chooses (the WASID reference rule depends on it)
        self.segment_combo.addItem("choose...", None)
        for seg in Segment:
            self.segment_combo.addItem(seg.value, seg)
            self.segment_combo.setItemData(self.segment_combo.count() - 1, _SEGMENT_HELP[seg], Qt.ToolTipRole)
        self.segment_combo.setCurrentIndex(0)
        self.segment_combo.currentIndexChanged.connect(self._on_segment)
        form.addRow("Artery", self.segment_combo)
        self.model_combo = QComboBox()
        for m in ModelName:
            self.model_combo.addItem(m.value, m)
        self.model_combo.currentIndexChanged.connect(self._on_model)
        form.addRow("Vessel model", self.model_combo)
        frame_row = QHBoxLayout()
        self.frame_spin = QSpinBox()
        self.frame_spin.setMinimum(-1)
        self.frame_spin.setSpecialValueText("auto")
        self.frame_spin.setValue(-1)
        self.frame_spin.setToolTip(
            "Frame to measure (0-based). Shows the automatic frame (first guess before measuring, "
            "the measured frame after); change it to measure another frame"
        )
        self.frame_spin.valueChanged.connect(self._on_frame)
        self.frame_source_label = QLabel("auto")
        self.frame_source_label.setToolTip(
            "auto: guess = stenosis.guess_frame before measuring (Measure may move to the first fully "
            "opacified frame); auto: measured = the frame Measure picked; yours = the frame you set"
        )
        self.frame_here = QPushButton("Use shown")
        self.frame_here.setToolTip("Measure the frame shown in the viewer")
        self.frame_here.clicked.connect(self._use_shown_frame)
        self.frame_auto_button = QPushButton("Auto")
        self.frame_auto_button.setToolTip("Let stenosis pick the fully opacified frame again")
        self.frame_auto_button.clicked.connect(self._use_auto_frame)
        frame_row.addWidget(self.frame_spin, 1)
        frame_row.addWidget(self.frame_source_label)
        frame_row.addWidget(self.frame_here)
        frame_row.addWidget(self.frame_auto_button)
        form.addRow("Frame", frame_row)
        outer.addLayout(form)

        self.points_button = QPushButton("Place points")
        self.points_button.setToolTip("Adds the points layer: click the proximal, then the distal point")
        self.points_button.clicked.connect(self.start_points)
        outer.addWidget(self.points_button)
        self.prompt_label = QLabel("")
        self.prompt_label.setWordWrap(True)
        outer.addWidget(self.prompt_label)

        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        outer.addWidget(self.measure_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        outer.addWidget(self.progress)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        outer.addWidget(self.status_label)

        ref_box = QGroupBox("Adjust (each change re-measures)")
        ref_form = QFormLayout(ref_box)
        self.reference_combo = QComboBox()
        for mode, label in REFERENCE_MODES:
            self.reference_combo.addItem(label, mode)
            self.reference_combo.setItemData(self.reference_combo.count() - 1, _REFERENCE_HELP[mode], Qt.ToolTipRole)
        self.reference_combo.setToolTip(
            "WASID rule: the widest normal parallel segment of the proximal artery, else distal, "
            "else the feeding artery; or force a site; manual: drag the green reference marker."
        )
        self.reference_combo.currentIndexChanged.connect(self._on_reference_mode)
        ref_form.addRow("Reference", self.reference_combo)
        self.feeding_button = QPushButton("Feeding artery points")
        self.feeding_button.setToolTip(
            "Two points (proximal, distal) on the feeding artery: the WASID feeding-artery reference "
            "(supraclinoid ICA for M1, extracranial VA for V4, dominant V4 for BA, extracranial ICA for ICA)"
        )
        self.feeding_button.clicked.connect(self.start_feeding_points)
        self.feeding_label = QLabel("none")
        ref_form.addRow(self.feeding_button, self.feeding_label)
        mld_row = QHBoxLayout()
        self.mld_label = QLabel("auto (narrowest traced lumen)")
        self.mld_label.setToolTip("Drag the red MLD marker onto the lesion to grade: the minimum is searched near it")
        self.mld_auto_button = QPushButton("Auto")
        self.mld_auto_button.setToolTip("Back to the narrowest traced lumen between the points")
        self.mld_auto_button.clicked.connect(self.use_auto_mld)
        mld_row.addWidget(self.mld_label, 1)
        mld_row.addWidget(self.mld_auto_button)
        ref_form.addRow("MLD", mld_row)
        wp_row = QHBoxLayout()
        self.waypoints_button = QPushButton("Add waypoints")
        self.waypoints_button.setToolTip(
            "Click inner points on the artery that the centerline must pass through (any order: they are "
            "sorted proximal to distal); or drag inner vertices of the centerline"
        )
        self.waypoints_button.clicked.connect(self.start_waypoints)
        self.waypoints_clear_button = QPushButton("Clear")
        self.waypoints_clear_button.clicked.connect(self.clear_waypoints)
        self.waypoints_label = QLabel("none")
        wp_row.addWidget(self.waypoints_button)
        wp_row.addWidget(self.waypoints_clear_button)
        wp_row.addWidget(self.waypoints_label, 1)
        ref_form.addRow("Waypoints", wp_row)
        outer.addWidget(ref_box)

        cal_box = QGroupBox("Catheter calibration")
        cal_form = QFormLayout(cal_box)
        self.calibration_label = QLabel("")
        self.calibration_label.setWordWrap(True)
        cal_form.addRow(self.calibration_label)
        self.french_spin = QDoubleSpinBox()
        self.french_spin.setRange(2.0, 12.0)
        self.french_spin.setSingleStep(1.0)
        self.french_spin.setDecimals(1)
        self.french_spin.setValue(6.0)
        self.french_spin.setSuffix(" F")
        self.french_spin.setToolTip("Catheter size (French; 1 F = 1/3 mm)")
        cal_row = QHBoxLayout()
        cal_row.addWidget(self.french_spin)
        self.catheter_button = QPushButton("Draw line")
        self.catheter_button.setToolTip("Draw a line across the catheter, edge to edge")
        self.catheter_button.clicked.connect(self.start_catheter_line)
        self.calibrate_button = QPushButton("Apply")
        self.calibrate_button.clicked.connect(self.apply_catheter_calibration)
        cal_row.addWidget(self.catheter_button)
        cal_row.addWidget(self.calibrate_button)
        cal_form.addRow(cal_row)
        outer.addWidget(cal_box)

        self.export_button = QPushButton("Export (JSON, CSV, PNG)...")
        self.export_button.clicked.connect(self._export_dialog)
        outer.addWidget(self.export_button)
        outer.addStretch(1)
        for b in self.findChildren(QPushButton):  # a narrow dock must not cut button texts
            b.setMinimumWidth(b.sizeHint().width())  # (their height: the theme's, set later)
        self._update_enabled()

    def _update_enabled(self) -> None:
        has_run = self.session is not None
        busy = self._worker is not None
        for w in (self.points_button, self.catheter_button, self.calibrate_button, self.frame_here, self.frame_spin,
                  self.frame_auto_button, self.feeding_button, self.waypoints_button, self.waypoints_clear_button,
                  self.mld_auto_button):
            w.setEnabled(has_run)
        self.measure_button.setEnabled(has_run and self.session.ready and not busy)
        self.export_button.setEnabled(has_run and self.session.result is not None and not busy
                                      and not self.session.stale)
        self.reference_combo.setEnabled(has_run)
        self._show_staleness(has_run and self.session.result is not None and self.session.stale)

    #: the result's overlays as drawn when current; faded to STALE_OPACITY when out of date
    OVERLAY_OPACITY = {CENTERLINE_LAYER: 1.0, EDGES_LAYER: 0.9, MARKERS_LAYER: 1.0}
    STALE_OPACITY = 0.3

    def _show_staleness(self, stale: bool) -> None:
        """A result measured before the reader's last change (a moved point, another artery, a
        re-measure that failed) is not shown as current: its overlays fade and the result dock says
        it is out of date until Measure answers the new choices."""
        for name, opacity in self.OVERLAY_OPACITY.items():
            layer = self._get_layer(name)
            if layer is not None:
                layer.opacity = self.STALE_OPACITY if stale else opacity
        if self.result_panel is not None:
            self.result_panel.set_stale(stale)

    def _prompt(self) -> str:
        """The session's prompt; once the points layer exists, "click" needs no "press" first."""
        text = self.session.prompt if self.session is not None else ""
        if POINTS_LAYER in self.viewer.layers:
            text = text.replace("Press 'Place points', then click", "Click")
        return text

    def _set_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff6060;" if error else "")

    # ------------------------------------------------------------------ runs
    def _run_layers(self) -> list:
        from napari.layers import Image

        return [
            ly for ly in self.viewer.layers
            if isinstance(ly, Image) and not ly.rgb and ly.ndim in (2, 3)
            and not ly.name.startswith("stenosis ")
        ]

    def _refresh_runs(self, event: Any = None) -> None:
        layers = self._run_layers()
        # forget the sessions of removed layers (an id can be reused by a new layer)
        alive = {id(ly) for ly in self.viewer.layers}
        self._sessions = {k: v for k, v in self._sessions.items() if k in alive}
        current = self.image_layer
        new = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if new is not None and new in layers and RUN_KEY in new.metadata:
            current = new  # a run just opened becomes the one measured
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for ly in layers:
            self.run_combo.addItem(ly.name, ly)
        self.run_combo.blockSignals(False)
        if current in layers:
            self.run_combo.setCurrentIndex(layers.index(current))
            if current is not self.image_layer:
                self._select_layer(current)
        elif layers:
            # prefer a run read by this plugin
            ours = [i for i, ly in enumerate(layers) if RUN_KEY in ly.metadata]
            self.run_combo.setCurrentIndex(ours[-1] if ours else len(layers) - 1)
            self._on_run_changed()
        else:
            self._select_layer(None)

    def _on_run_changed(self, *args: Any) -> None:
        self._select_layer(self.run_combo.currentData())

    def _select_layer(self, layer: Any) -> None:
        if layer is self.image_layer and layer is not None:
            return
        run, note = None, None
        if layer is not None and id(layer) not in self._sessions:
            run = layer.metadata.get(RUN_KEY)
            if run is None:  # an image not read by this plugin: wrapped by the library, which checks it
                try:
                    run = stenosis.AngioRun.from_array(np.asarray(layer.data), source=layer.name)
                except stenosis.StenosisError as exc:  # NaN, a bool mask...: no session on it
                    self.image_layer, self.session = None, None
                    self._set_status(f"Cannot measure the layer '{layer.name}': {for_napari(str(exc))}", error=True)
                    self._update_enabled()
                    return
                note = ("This image was not read by napari-stenosis: it is measured uncalibrated "
                        "(open the DICOM with the napari-stenosis reader for mm values).")
        self.image_layer = layer
        if layer is None:
            self.session = None
            self.prompt_label.setText("Open a DICOM run (File > Open, napari-stenosis reader).")
            self._update_enabled()
            return
        key = id(layer)
        if key not in self._sessions:
            # each run starts with no artery: the reader chooses it for every run
            self._sessions[key] = ReadingSession(run, segment=None, model=self.model_combo.currentData())
        previous = self.session
        self.session = self._sessions[key]
        if previous is not None and previous is not self.session:
            self._reset_overlays()
            self._show_only(layer)
            # the status line spoke of the previous run's result: this run's, or nothing yet
            result = self.session.result
            self._set_status("" if result is None else
                             f"{layer.name}: {float(result.percent_stenosis):.1f}% stenosis, measured earlier"
                             + (" (out of date: press Measure)." if self.session.stale else "."))
        if note:
            self._set_status(note)
        self._sync_controls()
        if self.session.frame_guess is None:
            self._start_guess()

    def _show_only(self, layer: Any) -> None:
        """Switching runs: show the run measured, hide the other runs' images (the overlays
        would be drawn on another run's anatomy), and fit it in the view (runs differ in size
        and pixel scale)."""
        for other in self._run_layers():
            other.visible = other is layer
        self._fit_view(layer)

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Docking this widget narrows the canvas: the run shown is fitted to it again once laid out
        (a square frame was cut off left and right until Measure refitted it)."""
        super().showEvent(event)
        if not getattr(self, "_shown_once", False):
            self._shown_once = True
            if self.image_layer is not None:
                QTimer.singleShot(0, self._fit_view)

    def _fit_view(self, layer: Any = None) -> None:
        """Fit the measured run (``layer``, default the widget's) to the canvas, not every layer: a
        hidden run of another size or pixel scale made the shown one small."""
        layer = self.image_layer if layer is None else layer
        try:
            self.viewer.reset_view(layers=[layer] if layer is not None else None)
        except TypeError:  # a napari whose reset_view takes no layers
            self.viewer.reset_view()

    #: the overlays' marker sizes, a fraction of the frame's height (as when they are created)
    _POINT_SIZES = {POINTS_LAYER: (60, 6.0), FEEDING_LAYER: (60, 6.0), WAYPOINTS_LAYER: (70, 5.0), MARKERS_LAYER: (45, 4.0)}

    def _reset_overlays(self) -> None:
        """Switching runs: the previous run's overlays are emptied and put on this run's pixel grid
        and sizes, not removed (removing napari points layers with text crashed the renderer, a
        segfault in vispy's draw, on opening a second run), then this run's points and result are
        shown."""
        from napari.layers import Points

        g = self._layer_geometry()
        width = self._line_px()
        self._syncing = True  # the layers' data handlers must not read the emptying as the reader's
        try:
            for name in OVERLAY_LAYERS:
                layer = self._get_layer(name)
                if layer is None:
                    continue
                layer.data = np.empty((0, 2)) if isinstance(layer, Points) else []
                layer.scale, layer.translate = g["scale"], g["translate"]
                try:
                    layer.units = g["units"]
                except Exception:  # noqa: BLE001 - a napari without layer units
                    pass
                if name in self._POINT_SIZES:
                    layer.current_size = self._point_size(name)
                else:
                    layer.current_edge_width = width * (0.7 if name == EDGES_LAYER else 1.0)
        finally:
            self._syncing = False
        if self.session.points:
            self.start_points()
            self._sync_points_layer(self._get_layer(POINTS_LAYER))
            self._get_layer(POINTS_LAYER).mode = "pan_zoom"
        if self.session.waypoints:
            self._sync_waypoints_layer(create=True)
        if self.session.result is not None:
            self._show_result(self.session.result)
        elif self.result_panel is not None:
            self.result_panel.show_result(None)

    def _sync_controls(self) -> None:
        s = self.session
        self._syncing = True
        try:
            self.segment_combo.setCurrentIndex(max(self.segment_combo.findData(s.segment), 0))
            self.model_combo.setCurrentIndex(list(ModelName).index(s.model))
            self.frame_spin.setMaximum(int(s.run.frames.shape[0]) - 1)
            self.reference_combo.setCurrentIndex(max(self.reference_combo.findData(s.reference_mode), 0))
        finally:
            self._syncing = False
        self._show_frame(move_viewer=False)
        self._show_adjustments()
        self.prompt_label.setText(self._prompt())
        self._show_calibration()
        self._update_enabled()

    def _show_frame(self, *, move_viewer: bool = True) -> None:
        """Frame control = the session's frame (reader's or measured) or the automatic guess."""
        s = self.session
        shown = s.shown_frame
        self._syncing = True
        try:
            self.frame_spin.setValue(-1 if shown is None else int(shown))
        finally:
            self._syncing = False
        self.frame_source_label.setText(_FRAME_SOURCE[s.frame_source])
        if move_viewer and shown is not None and self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, int(shown))

    def _show_adjustments(self) -> None:
        s = self.session
        self.mld_label.setText(
            "auto (narrowest traced lumen)" if s.mld_rc is None
            else f"placed near ({s.mld_rc[0]:.0f}, {s.mld_rc[1]:.0f})"
        )
        n = len(s.waypoints)
        self.waypoints_label.setText("none" if not n else f"{n} point{'s' if n > 1 else ''}")

    def _start_guess(self) -> None:
        """Compute stenosis.guess_frame for the current points in a worker (the first call
        opacifies the run; the stack is cached in the session)."""
        if self.session is None:
            return
        from napari.qt.threading import thread_worker

        session, pts = self.session, self.session.guess_points()
        worker = thread_worker(_guess_worker, ignore_errors=True)(session, pts)
        worker.returned.connect(lambda g, s=session, p=pts: self._on_guess(s, g, p))
        worker.errored.connect(self._on_guess_error)
        worker.finished.connect(lambda w=worker: self._guess_workers.discard(w))
        self._guess_workers.add(worker)
        worker.start()

    def _on_guess(self, session: ReadingSession, guess: int, points: Any) -> None:
        if session.set_frame_guess(guess, points) and session is self.session:
            self._show_frame(move_viewer=session.frame_source == "guess")

    def _on_guess_error(self, exc: BaseException) -> None:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self._set_status(f"No automatic frame guess ({msg}); Measure still picks the frame, or type one.")

    def _show_calibration(self) -> None:
        cal = self.session.run.calibration
        if cal.mm_per_px is None:
            self.calibration_label.setText("Uncalibrated: percent stenosis only. Draw a line across the catheter for mm.")
        else:
            self.calibration_label.setText(f"{cal.source.value}: {cal.mm_per_px[0]:.4f} mm/px")

    # ------------------------------------------------------------------ choices
    def _on_segment(self, *args: Any) -> None:
        if self.session is not None and not self._syncing:
            self.session.set_segment(self.segment_combo.currentData())
            self.prompt_label.setText(self._prompt())
            self._update_enabled()

    def _on_model(self, *args: Any) -> None:
        if self.session is not None and not self._syncing:
            self.session.set_model(self.model_combo.currentData())
            self._update_enabled()  # Export follows whether the result still answers the choices

    def _on_frame(self, value: int) -> None:
        if self.session is None or self._syncing:
            return
        self.session.set_frame(None if value < 0 else value)
        self._show_frame()
        self._update_enabled()

    def _use_shown_frame(self) -> None:
        if self.session is not None and self.viewer.dims.ndim >= 3:
            self.session.set_frame(int(self.viewer.dims.current_step[0]))
            self._show_frame()
            self._update_enabled()

    def _use_auto_frame(self) -> None:
        if self.session is None:
            return
        self.session.use_auto_frame()
        self._show_frame()
        self._update_enabled()
        if self.session.frame_guess is None:
            self._start_guess()

    def _on_reference_mode(self, *args: Any) -> None:
        if self.session is None or self._syncing:
            return
        mode = self.reference_combo.currentData()
        if mode == "manual":
            if self.session.reference_rc is None:
                mk = self._get_layer(MARKERS_LAYER)
                if mk is not None:
                    self.viewer.layers.selection.active = mk
                    mk.mode = "select"
                self._set_status("Drag the green reference marker to the normal segment to use as reference.")
            return
        changed = self.session.set_reference_choice(mode)
        if changed and self.session.result is not None and self.session.ready:
            self.measure()
        elif mode == "feeding" and len(self.session.feeding) < 2:
            self._set_status("Feeding reference: place two points on the feeding artery (Feeding artery points).")

    # ------------------------------------------------------------------ layers
    def _layer_geometry(self) -> dict[str, Any]:
        ly = self.image_layer
        return {"scale": tuple(ly.scale[-2:]), "translate": tuple(ly.translate[-2:]),
                "units": tuple(str(u) for u in ly.units[-2:])}

    def _get_layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def start_points(self) -> None:
        """Create (or activate) the points layer in add mode."""
        if self.session is None:
            return
        layer = self._get_layer(POINTS_LAYER)
        if layer is None:
            layer = self.viewer.add_points(
                np.empty((0, 2)), name=POINTS_LAYER, ndim=2, size=self._point_size(POINTS_LAYER),
                face_color=COLOURS["proximal"], border_color="black",
                features={"label": np.array([], dtype=object)},
                text={"string": "{label}", "color": "white", "size": 11, "anchor": "upper_left"},
                **self._layer_geometry(),
            )
            layer.events.data.connect(self._on_points_changed)
            self._sync_points_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.prompt_label.setText(self._prompt())

    def _line_px(self) -> float:
        """Width of the overlay lines in frame pixels (napari's edge widths are in data units):
        thin enough that a reader sees the lumen's edge beside its line (1.5 px; a 400th of a
        larger frame's height)."""
        return max(1.5, int(self.session.run.frames.shape[1]) / 400.0)

    def _point_size(self, name: str) -> float:
        """The marker size of the overlay layer ``name`` on this run (:attr:`_POINT_SIZES`)."""
        frac, least = self._POINT_SIZES[name]
        return max(least, self._size_px(frac))

    def _size_px(self, fraction_of: int) -> float:
        h = int(self.session.run.frames.shape[1])
        return max(4.0, h / float(fraction_of))

    def _on_points_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if self._syncing or not action.endswith(("added", "removed", "changed")) or self.session is None:
            return
        layer = self._get_layer(POINTS_LAYER)
        kept = self.session.set_points(layer.data)
        self._sync_points_layer(layer, kept)
        self.prompt_label.setText(self._prompt())
        self._update_enabled()
        self._show_adjustments()
        if self.session.ready:
            layer.mode = "pan_zoom"
        if self.session.frame_guess is None:  # new points: guess the frame again
            self._show_frame(move_viewer=False)
            self._start_guess()

    def _sync_points_layer(self, layer: Any, kept: list | None = None) -> None:
        pts = self.session.points if kept is None else kept
        labels = ["proximal", "distal"][: len(pts)]
        self._syncing = True
        try:
            if len(layer.data) != len(pts) or not np.allclose(layer.data, np.reshape(pts, (-1, 2))):
                layer.data = np.reshape(np.asarray(pts, float), (-1, 2))
            if len(pts):
                layer.features = {"label": np.array(labels, dtype=object)}
                layer.face_color = [COLOURS["proximal"], COLOURS["distal"]][: len(pts)]
                layer.text.refresh(layer.features)
        finally:
            self._syncing = False

    def start_feeding_points(self) -> None:
        """Points layer for two points on the feeding artery (WASID feeding reference)."""
        if self.session is None:
            return
        layer = self._get_layer(FEEDING_LAYER)
        if layer is None:
            layer = self.viewer.add_points(
                np.empty((0, 2)), name=FEEDING_LAYER, ndim=2, size=self._point_size(FEEDING_LAYER),
                face_color=COLOURS["reference"], symbol="diamond", border_color="black",
                **self._layer_geometry(),
            )
            layer.events.data.connect(self._on_feeding_changed)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self._set_status("Click two points on the feeding artery: proximal, then distal.")

    def _on_feeding_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if self._syncing or not action.endswith(("added", "removed", "changed")) or self.session is None:
            return
        layer = self._get_layer(FEEDING_LAYER)
        kept = self.session.set_feeding_points(layer.data)
        if len(kept) != len(layer.data):
            self._syncing = True
            try:
                layer.data = np.reshape(np.asarray(kept, float), (-1, 2))
            finally:
                self._syncing = False
        self.feeding_label.setText({0: "none", 1: "1 of 2 (click the distal one)", 2: "2 points set"}[len(kept)])
        if len(kept) == 2:
            layer.mode = "pan_zoom"
            if self.session.result is not None:
                self.measure()

    def start_waypoints(self) -> None:
        """Points layer for inner centerline points (any order; kept proximal to distal)."""
        if self.session is None:
            return
        layer = self._sync_waypoints_layer(create=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self._set_status("Click points on the artery that the centerline must pass through; Measure traces through them.")

    def clear_waypoints(self) -> None:
        if self.session is None or not self.session.waypoints:
            return
        self.session.set_waypoints([])
        self._sync_waypoints_layer()
        self._show_adjustments()
        if self.session.result is not None and self.session.ready:
            self.measure()

    def _sync_waypoints_layer(self, *, create: bool = False):
        """The waypoints layer shows the session's waypoints, numbered proximal to distal."""
        layer = self._get_layer(WAYPOINTS_LAYER)
        if layer is None:
            if not create:
                return None
            layer = self.viewer.add_points(
                np.empty((0, 2)), name=WAYPOINTS_LAYER, ndim=2, size=self._point_size(WAYPOINTS_LAYER),
                face_color=COLOURS["waypoint"], border_color="black", symbol="square",
                features={"label": np.array([], dtype=object)},
                text={"string": "{label}", "color": "white", "size": 10, "anchor": "upper_left"},
                **self._layer_geometry(),
            )
            layer.events.data.connect(self._on_waypoints_changed)
        wps = np.reshape(np.asarray(self.session.waypoints, float), (-1, 2))
        self._syncing = True
        try:
            if len(layer.data) != len(wps) or not np.allclose(layer.data, wps):
                layer.data = wps
            layer.features = {"label": np.array([f"w{i + 1}" for i in range(len(wps))], dtype=object)}
            layer.text.refresh(layer.features)
        finally:
            self._syncing = False
        return layer

    def _on_waypoints_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if self._syncing or not action.endswith(("added", "removed", "changed")) or self.session is None:
            return
        before = list(self.session.waypoints)
        self.session.set_waypoints(self._get_layer(WAYPOINTS_LAYER).data)
        self._sync_waypoints_layer()
        self._show_adjustments()
        if self.session.waypoints != before and self.session.result is not None and self.session.ready:
            self.measure()

    def use_auto_mld(self) -> None:
        """Back to the library's MLD (the narrowest traced lumen) and re-measure."""
        if self.session is None or self.session.mld_rc is None:
            return
        self.session.use_auto_mld()
        self._show_adjustments()
        if self.session.result is not None and self.session.ready:
            self.measure()

    def set_points(self, proximal_rc: Any, distal_rc: Any) -> None:
        """Place both points programmatically (as two clicks would)."""
        self.start_points()
        layer = self._get_layer(POINTS_LAYER)
        layer.data = np.array([proximal_rc, distal_rc], dtype=float)
        layer.mode = "pan_zoom"

    # ------------------------------------------------------------------ measuring
    def measure(self) -> None:
        """Measure with the current choices in a worker thread (queued if one runs)."""
        if self.session is None:
            return
        if not self.session.ready:
            self._set_status(self.session.prompt)
            return
        if self._worker is not None:
            self._pending = True
            return
        from napari.qt.threading import thread_worker

        try:
            request = self.session.request()
        except ValueError as exc:  # not ready, or an input the library refuses (one line)
            self._set_status(f"Could not measure: {for_napari(str(exc))}", error=True)
            self._update_enabled()  # the result shown no longer answers the choices: no export
            self.failed.emit(for_napari(str(exc)))
            return
        # errors are shown in the widget (one line that says what to do), not as a traceback
        worker = thread_worker(
            _measure_worker, progress={"total": 0, "desc": "Measuring stenosis"}, ignore_errors=True
        )(request)
        auto = request.kwargs.get("frame") is None
        worker.returned.connect(lambda res, s=self.session, k=request.key: self._on_result(s, res, auto_frame=auto, key=k))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.progress.setRange(0, 0)  # busy
        self._t0 = time.monotonic()
        self._tick()
        self._ticker.start()
        self._update_enabled()
        worker.start()

    def _tick(self) -> None:
        self._set_status(
            f"Measuring (frame choice, vessel model, centerline, diameters)... {time.monotonic() - self._t0:.0f} s"
        )

    def _on_result(self, session: ReadingSession, result: Any, *, auto_frame: bool = False, key: Any = None) -> None:
        self._ticker.stop()
        session.accept(result, key)
        if session is not self.session:
            return
        self._show_result(result)
        pct = result.percent_stenosis
        frame = f"frame {result.frame_index}" + (" (chosen automatically)" if auto_frame else "")
        note, self._status_note = self._status_note, ""
        self._set_status(
            (f"{note} " if note else "")
            + f"{result.segment}: {pct:.1f}% stenosis ({'>= 50%' if result.meets_50 else '< 50%'}"
            + (f"; {CONFIRM_MARK}" if result.needs_confirmation else "") + f") on {frame}, "
            f"reference {result.reference_choice}. Drag the red (MLD) or green (reference) marker to adjust."
        )
        self.measured.emit(result)

    def _on_error(self, exc: BaseException) -> None:
        self._ticker.stop()
        self._status_note = ""
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, stenosis.StenosisError):  # a bug, not an input the tool refuses
            msg = f"{type(exc).__name__}: {msg}"
            from napari.utils.notifications import show_error

            show_error(f"napari-stenosis: unexpected error while measuring: {msg}")
        msg = for_napari(msg)
        self._set_status(f"Could not measure: {msg}", error=True)
        self.failed.emit(msg)

    def _on_finished(self) -> None:
        self._ticker.stop()
        self._worker = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._update_enabled()
        if self._pending:
            self._pending = False
            self.measure()

    def _show_result(self, result: Any) -> None:
        geom = overlay_geometry(result)
        g = self._layer_geometry()
        # shape edge widths are in the layer's data units (frame pixels, whatever its scale): a
        # render at scale 1 and 0.1 draws width 4 as the same 11 screen pixels
        width = self._line_px()
        self._syncing = True
        try:
            cl = self._get_layer(CENTERLINE_LAYER)
            if cl is None:
                cl = self.viewer.add_shapes(
                    [geom["centerline"]], shape_type="path", name=CENTERLINE_LAYER,
                    edge_color=COLOURS["centerline"], edge_width=width, opacity=1.0, **g,
                )
                cl.events.data.connect(self._on_centerline_changed)
            else:  # emptied, then paths added as paths (data set on an emptied layer makes polygons)
                cl.data = []
                cl.add_paths([geom["centerline"]], edge_width=width, edge_color=COLOURS["centerline"])
            edges = [e for e in (geom["left"], geom["right"]) if len(e) >= 2]
            ed = self._get_layer(EDGES_LAYER)
            if ed is None:
                ed = self.viewer.add_shapes(
                    edges, shape_type="path", name=EDGES_LAYER, edge_color=COLOURS["edges"],
                    edge_width=width * 0.7, opacity=0.9, **g,
                )
            else:
                ed.data = []
                if edges:
                    ed.add_paths(edges, edge_width=width * 0.7, edge_color=COLOURS["edges"])
            mld_label = "MLD (placed)" if self.session.mld_rc is not None else "MLD"
            # short labels (the site chosen is in the status line and the table): "ref (proximal)"
            # and "MLD" ran together where the two are close on a horizontal artery
            labels = np.array([mld_label, "ref"], dtype=object)
            mk = self._get_layer(MARKERS_LAYER)
            if mk is None:
                mk = self.viewer.add_points(
                    geom["markers"], name=MARKERS_LAYER, ndim=2, size=self._point_size(MARKERS_LAYER),
                    # rings: the reader checks the lumen inside them (a disc hid the lesion it marks)
                    symbol="ring", face_color=[COLOURS["mld"], COLOURS["reference"]], border_color="black",
                    features={"label": labels},
                    # below the markers, the end points' labels above theirs: "ref" beside "proximal"
                    # ran together (a new reader's probe, session 36)
                    text={"string": "{label}", "color": "white", "size": 11, "anchor": "lower_left"},
                    **g,
                )
                mk.events.data.connect(self._on_markers_changed)
                # adjusting comes next: the markers can be dragged at once (space + drag pans)
                self.viewer.layers.selection.active = mk
                mk.mode = "select"
            else:
                mk.data = geom["markers"]
                mk.features = {"label": labels}
                mk.face_color = [COLOURS["mld"], COLOURS["reference"]]
                mk.text.refresh(mk.features)
        finally:
            self._syncing = False
        self._syncing = True
        try:
            self.reference_combo.setCurrentIndex(max(self.reference_combo.findData(self.session.reference_mode), 0))
        finally:
            self._syncing = False
        self._show_frame(move_viewer=False)
        self._show_adjustments()
        if self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, int(result.frame_index))
        self._ensure_result_panel().show_result(result, self.session.dropped_frames)
        self._update_enabled()

    def _ensure_result_panel(self) -> ResultPanel:
        if self.result_panel is None:
            self.result_panel = ResultPanel()
            self.result_panel.frame_toggled.connect(self._on_frame_toggled)
            try:
                self.result_dock = self.viewer.window.add_dock_widget(
                    self.result_panel, name="Stenosis result", area="right"
                )
                QTimer.singleShot(0, self._keep_controls_height)  # once both docks are laid out
                QTimer.singleShot(0, self._fit_view)  # the canvas narrowed: the frame fits it again
            except Exception as exc:  # noqa: BLE001 - a viewer without a window: show the panel alone
                import warnings

                warnings.warn(f"result dock not added ({exc}); showing the panel in its own window", stacklevel=2)
                self.result_panel.show()
        return self.result_panel

    def _keep_controls_height(self) -> None:
        """Give this dock the height its controls need once the result dock is added below it
        and both are laid out (called from the event loop; a shorter dock scrolls the controls)."""
        from qtpy.QtWidgets import QDockWidget, QMainWindow

        def dock_of(widget: QWidget) -> Any:
            while widget is not None and not isinstance(widget, QDockWidget):
                widget = widget.parentWidget()
            return widget

        try:
            own, below = dock_of(self), dock_of(self.result_panel)
        except RuntimeError:  # the viewer closed before the event loop called this
            return
        window = None if own is None else own.parentWidget()
        if own is None or below is None or not isinstance(window, QMainWindow) or below.isFloating():
            return
        # every row at its height (wrapped labels wrapped), + the dock's title bar and room for
        # a longer status line; a shorter dock scrolls the controls
        view = self._scroll.viewport()
        need = (self._controls.needed_height(view.width()) + own.height() - view.height()
                + self.status_label.fontMetrics().lineSpacing())
        total = own.height() + below.height()
        # the result keeps at least RESULT_MIN_PX (or half of a short window) and the controls
        # scroll: on a laptop-sized window the result dock was left 69 px tall, its plot's title
        # alone in view (a new reader's probe, session 36)
        result = max(total - need, min(RESULT_MIN_PX, total // 2))
        window.resizeDocks([own, below], [total - result, result], Qt.Vertical)

    def _on_markers_changed(self, event: Any) -> None:
        if self._syncing or self.session is None or self.session.result is None:
            return
        if not str(getattr(event, "action", "")).endswith("changed"):
            return
        layer = self._get_layer(MARKERS_LAYER)
        if len(layer.data) < 2:  # a marker was deleted: put them back
            self._show_result(self.session.result)
            return
        # which marker moved: compare with the result's (event indices cover all
        # points when the data is replaced as a whole)
        before = overlay_geometry(self.session.result)["markers"]
        moved = {i for i in (0, 1) if np.hypot(*(np.asarray(layer.data[i][-2:]) - before[i])) > 0.01}
        if 0 in moved:
            # the minimum is searched near the dragged marker (the library decides where exactly)
            self.session.move_mld(layer.data[0][-2:])
            self._show_adjustments()
        if 1 in moved:
            self.session.move_reference(layer.data[1][-2:])
            self._sync_reference_combo()
        if moved:
            self.measure()

    def _sync_reference_combo(self) -> None:
        self._syncing = True
        try:
            self.reference_combo.setCurrentIndex(max(self.reference_combo.findData(self.session.reference_mode), 0))
        finally:
            self._syncing = False

    def _on_centerline_changed(self, event: Any) -> None:
        if self._syncing or self.session is None or self.session.result is None:
            return
        if not str(getattr(event, "action", "")).endswith("changed"):
            return
        layer = self._get_layer(CENTERLINE_LAYER)
        if len(layer.data) == 0:
            return
        n_before = len(self.session.waypoints)
        outcome = self.session.edit_centerline(layer.data[0])
        if len(self.session.waypoints) != n_before or self._get_layer(WAYPOINTS_LAYER) is not None:
            self._sync_waypoints_layer(create=bool(self.session.waypoints))
        self._show_adjustments()
        if outcome == "ends":
            pts = self._get_layer(POINTS_LAYER)
            if pts is not None:
                self._sync_points_layer(pts)
            self._set_status("Centerline ends moved: tracing again between the new points...")
            self.measure()
        elif outcome == "interior":
            self._set_status("Centerline vertices moved: tracing again through them (waypoints)...")
            self.measure()

    # ------------------------------------------------------------------ frames combined
    def _on_frame_toggled(self, frame: int, keep: bool) -> None:
        if keep:
            self.restore_frame(frame)
        else:
            self.drop_frame(frame)

    def drop_frame(self, frame: int) -> None:
        """Leave ``frame`` out of the combination and re-measure (the analysed frame: another
        used frame is analysed, the status line says which)."""
        if self.session is None:
            return
        try:
            note = self.session.drop_frame(frame)
        except ValueError as exc:
            self._set_status(f"Could not drop frame {frame}: {exc}", error=True)
            self._refresh_frames()  # the frame stays checked
            return
        self._status_note = note.replace("; re-measuring", "")
        self._set_status(note)
        self._show_frame(move_viewer=False)
        self._refresh_frames()
        if self.session.result is not None and self.session.ready:
            self.measure()

    def restore_frame(self, frame: int) -> None:
        """Put a dropped ``frame`` back into the combination and re-measure."""
        if self.session is None or not self.session.restore_frame(frame):
            return
        self._status_note = f"Frame {frame} restored."
        self._set_status(f"Frame {frame} restored to the combination; re-measuring.")
        self._refresh_frames()
        if self.session.result is not None and self.session.ready:
            self.measure()

    def _refresh_frames(self) -> None:
        """The frames list shows the session's dropped frames (ahead of the result while re-measuring)."""
        def refresh(session=self.session):
            if self.result_panel is not None and session is not None and session is self.session:
                self.result_panel.frames.list.show_result(session.result, session.dropped_frames)

        QTimer.singleShot(0, refresh)  # not inside the list's own itemChanged signal

    def move_reference(self, rc: Any) -> None:
        """Use ``rc`` (row, col) as the reference site and re-measure (choice: manual)."""
        self.session.move_reference(rc)
        self._sync_reference_combo()
        self.measure()

    def move_mld(self, rc: Any) -> None:
        """Search the MLD near ``rc`` (row, col) and re-measure."""
        self.session.move_mld(rc)
        self._show_adjustments()
        self.measure()

    def set_reference_choice(self, mode: str) -> None:
        """Pick a reference choice as the drop-down would (``rule``, ``proximal``, ``distal``, ``feeding``)."""
        self.reference_combo.setCurrentIndex(self.reference_combo.findData(mode))

    # ------------------------------------------------------------------ catheter
    def start_catheter_line(self) -> None:
        layer = self._get_layer(CATHETER_LAYER)
        if layer is None:
            layer = self.viewer.add_shapes(
                name=CATHETER_LAYER, ndim=2, edge_color=COLOURS["catheter"],
                edge_width=self._line_px(),
                **self._layer_geometry(),
            )
        self.viewer.layers.selection.active = layer
        layer.mode = "add_line"
        self.calibration_label.setText("Draw a line across the catheter, edge to edge, then Apply.")

    def apply_catheter_calibration(self) -> None:
        """Calibrate from the last line of the catheter layer and the French size."""
        layer = self._get_layer(CATHETER_LAYER)
        lines = [] if layer is None else [np.asarray(d) for d, t in zip(layer.data, layer.shape_type) if t == "line"]
        if not lines:
            self._set_status("Draw a line across the catheter first (Draw line).", error=True)
            return
        p1, p2 = lines[-1][0][-2:], lines[-1][-1][-2:]
        try:
            cal = self.session.calibrate_catheter(p1, p2, self.french_spin.value())
        except stenosis.StenosisError as exc:
            self._set_status(str(exc), error=True)
            return
        self._apply_calibration_to_layers(cal)
        self._show_calibration()
        self._set_status(f"Calibrated from the catheter: {cal.mm_per_px[0]:.4f} mm/px.")
        if self.session.result is not None:
            self.measure()

    def _apply_calibration_to_layers(self, cal: Any) -> None:
        ly = self.image_layer
        ly.scale = layer_scale(cal, ly.ndim)
        ly.units = layer_units(cal, ly.ndim)
        ly.metadata[META_KEY] = run_metadata(self.session.run)
        ly.metadata[RUN_KEY] = self.session.run
        for name in OVERLAY_LAYERS:
            other = self._get_layer(name)
            if other is not None:
                other.scale = layer_scale(cal, other.ndim)
                other.units = layer_units(cal, other.ndim)  # edge widths are in data units: unchanged

    # ------------------------------------------------------------------ export
    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export measurement to folder")
        if folder:
            self.export_to(folder)

    def export_to(self, folder: str | Path) -> dict[str, Path]:
        """Export the current measurement to ``folder`` (JSON, CSV, PNG with the view)."""
        try:
            view = self.viewer.screenshot(canvas_only=True, flash=False)
        except Exception:  # noqa: BLE001 - no canvas: the PNG has the plot only
            view = None
        try:
            paths = self.session.export(folder, view_rgb=view)
        except ValueError as exc:  # nothing measured, or a result older than the reader's choices
            self._set_status(f"Not exported: {exc}", error=True)
            return {}
        except OSError as exc:  # a folder that cannot be written (read-only, a file of that name, a full disk)
            why = exc.strerror or type(exc).__name__
            self._set_status(f"Not exported: cannot write to {folder} ({why}); choose another folder", error=True)
            return {}
        self.last_export = paths
        self._set_status(f"Exported to {paths['json'].parent} ({paths['json'].stem}.json/.csv/.png)")
        return paths
