"""The reading session behind the "Measure stenosis" widget, without Qt or napari.

A :class:`ReadingSession` holds what a core-lab reader decides -- the artery,
the proximal and distal points, inner centerline waypoints, the frame, the
frames dropped from the multi-frame combination, the reference (WASID rule, a
forced site or a dragged location), a dragged MLD, a catheter calibration --
turns it into one call of :func:`stenosis.measure`, keeps the result and a log
of the reader's actions, and exports the result with that log (JSON, CSV row,
PNG). Everything measured comes from the public ``stenosis`` API; this module
only routes choices and formats results, so it is tested as plain functions
without a viewer.

Coordinates are (row, col) in pixels of the run's frames, 0-based.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import stenosis
from stenosis import ModelName, ReferenceChoice, Segment
from stenosis.result import ROW_COLUMNS, frame_chosen_by_tool, reader_without_frame, row_from_dict

from . import __version__

__all__ = [
    "ReadingSession",
    "MeasureRequest",
    "point_prompt",
    "result_table",
    "frame_items",
    "frames_tab_title",
    "FrameItem",
    "overlay_geometry",
    "csv_row",
    "save_png",
    "measure_function",
    "order_waypoints",
    "REFERENCE_MODES",
]

#: the reference choices a reader can make: (mode, label). "rule" follows the WASID order,
#: a site forces ``reference_choice=``, "manual" is a dragged location (``reference=``)
REFERENCE_MODES = (
    ("rule", "WASID rule (auto)"),
    ("proximal", "proximal"),
    ("distal", "distal"),
    ("feeding", "feeding"),
    ("manual", "manual (dragged)"),
)
_SITES = ("proximal", "distal", "feeding")

#: what the points layer asks for, by number of points already placed
PROMPTS = (
    "Press 'Place points', then click the PROXIMAL point of the segment (upstream of the lesion).",
    "Click the DISTAL point of the segment (downstream of the lesion).",
    "Ready: press Measure.",
)


#: what the session asks for while no artery is chosen (the WASID reference rule depends on it)
CHOOSE_ARTERY = "Choose the artery (ICA, M1, V4 or BA): its WASID reference rule depends on it."


def point_prompt(n_points: int) -> str:
    """Status text for the points layer after ``n_points`` clicks (0, 1 or 2)."""
    return PROMPTS[min(max(int(n_points), 0), 2)]


def _rc(p: Any) -> tuple[float, float]:
    r, c = (float(v) for v in np.asarray(p, dtype=float).ravel()[-2:])
    return (r, c)


def _round_rc(p: Any, nd: int = 2) -> list[float] | None:
    if p is None:
        return None
    r, c = _rc(p)
    return [round(r, nd), round(c, nd)]


def _fmt(value: Any, unit: str = "", nd: int = 2) -> str:
    if value is None:
        return "n/a (uncalibrated)" if unit == "mm" else "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{nd}f}{(' ' + unit) if unit else ''}"


@dataclass(frozen=True)
class MeasureRequest:
    """One call of :func:`stenosis.measure`: safe to run in a worker thread.

    ``run`` is the (possibly re-calibrated) :class:`stenosis.AngioRun`; ``kwargs``
    are passed unchanged.
    """

    run: Any
    kwargs: dict[str, Any]
    key: Any = None  # the reader's choices it was made for (ReadingSession.accept takes it back)

    def __call__(self) -> Any:
        return measure_function()(self.run, **self.kwargs)


def order_waypoints(points: Any, path: Any) -> list[tuple[float, float]]:
    """``points`` (row, col) sorted proximal to distal by their projection on ``path``.

    ``path`` is the current centerline (N, 2), proximal first, or just the proximal and
    distal points. Each point is projected on its nearest segment of the polyline; the
    arc length of the projection orders them (ties keep the given order).
    """
    pts = [_rc(p) for p in np.asarray(points, dtype=float).reshape(-1, 2)]
    poly = np.asarray(path, dtype=float).reshape(-1, 2)
    poly = poly[np.isfinite(poly).all(axis=1)]
    if len(pts) < 2 or len(poly) < 2:
        return pts
    keys, _ = _project_on_polyline(np.asarray(pts), poly)
    order = sorted(range(len(pts)), key=lambda i: (keys[i], i))
    return [pts[i] for i in order]


def measure_function() -> Any:
    """:func:`stenosis.measure`, looked up at call time (tests replace it with a stand-in)."""
    return stenosis.measure


@dataclass
class ReadingSession:
    """A reader's choices for one run and the current result.

    Parameters
    ----------
    run : stenosis.AngioRun
        The run as read (frames (T, H, W) and calibration).
    segment : Segment or None
        Artery graded (WASID rule for its reference); None until the reader chooses it
        (no default: a grade under the wrong artery applies the wrong rule).
    model : ModelName
        Vessel-probability model (the U-Net; classical vesselness as a second opinion).
    """

    run: Any
    segment: Segment | None = None
    model: ModelName = ModelName.UNET
    frame: int | None = None  # None: stenosis picks the fully opacified frame
    points: list[tuple[float, float]] = field(default_factory=list)
    reference_rc: tuple[float, float] | None = None  # reader-placed reference (-> "manual")
    reference_site: str | None = None  # reader-forced WASID site: proximal / distal / feeding
    mld_rc: tuple[float, float] | None = None  # reader-placed MLD (minimum searched near it)
    waypoints: list[tuple[float, float]] = field(default_factory=list)  # inner centerline points
    feeding: list[tuple[float, float]] = field(default_factory=list)  # 2 points on the feeding artery
    dropped_frames: list[int] = field(default_factory=list)  # frames the reader left out of the combination
    result: Any = None
    log: list[dict[str, Any]] = field(default_factory=list)
    frame_by_reader: bool = False  # the reader typed / picked the frame
    frame_guess: int | None = None  # stenosis.guess_frame for the current points, shown before measuring
    _stack: Any = field(default=None, repr=False)  # unregistered opacification, cached per run
    _measured_key: Any = field(default=None, repr=False)  # the choices the current result was measured with

    # ------------------------------------------------------------------ choices
    def _note(self, action: str, **details: Any) -> None:
        self.log.append({"time": _now(), "action": action, **details})

    def set_segment(self, segment: Segment | str | None) -> None:
        if segment is None:
            if self.segment is not None:
                self.segment = None
                self._note("segment", segment=None)
            return
        seg = Segment(str(segment))
        if seg != self.segment:
            self.segment = seg
            self._note("segment", segment=seg.value)

    def set_model(self, model: ModelName | str) -> None:
        m = ModelName(str(model))
        if m != self.model:
            self.model = m
            self._note("model", model=m.value)

    def set_frame(self, frame: int | None) -> None:
        """Frame to measure (0-based), chosen by the reader; None lets stenosis choose it."""
        if frame is not None:
            frame = int(frame)
            if not 0 <= frame < int(self.run.frames.shape[0]):
                raise ValueError(f"frame {frame} is outside the run (0..{self.run.frames.shape[0] - 1})")
        by_reader = frame is not None
        if frame != self.frame or by_reader != self.frame_by_reader:
            self.frame = frame
            self.frame_by_reader = by_reader
            self._note("frame", frame=frame)
        if frame is not None and frame in self.dropped_frames:
            self.restore_frame(frame)  # analysing a frame takes it back (it cannot be both)

    def use_auto_frame(self) -> None:
        """Back to the automatic frame (stenosis picks it when measuring)."""
        self.set_frame(None)

    @property
    def shown_frame(self) -> int | None:
        """The frame to show in the frame control: the reader's, the measured one, or the guess."""
        return self.frame if self.frame is not None else self.frame_guess

    @property
    def frame_source(self) -> str:
        """Where :attr:`shown_frame` comes from: ``reader``, ``measured`` (auto, kept for
        adjustments), ``guess`` (stenosis.guess_frame before measuring) or ``auto``."""
        if self.frame_by_reader:
            return "reader"
        if self.frame is not None:
            return "measured"
        return "guess" if self.frame_guess is not None else "auto"

    def opacified(self) -> np.ndarray:
        """The run's unregistered opacification (``stenosis.opacify(run, register=False)``),
        computed once per session (the frames do not change with a recalibration)."""
        if self._stack is None:
            self._stack = stenosis.opacify(self.run, register=False)
        return self._stack

    def guess_points(self) -> list[tuple[float, float]] | None:
        """The points a frame guess is computed for: proximal, waypoints, distal (None
        before both points are placed: the whole field)."""
        return [self.points[0], *self.waypoints, self.points[1]] if self.ready else None

    def guess_frame(self, points: Any = "current") -> int:
        """``stenosis.guess_frame`` for ``points`` (default: :meth:`guess_points`). Slow the
        first time on big runs (the opacification): the widget calls it in a worker."""
        pts = self.guess_points() if isinstance(points, str) else points
        return int(stenosis.guess_frame(self.run, pts, stack=self.opacified(), exclude=self.dropped_frames))

    def set_frame_guess(self, guess: int | None, points: Any = None) -> bool:
        """Keep ``guess`` when it was computed for ``points`` and these are still the
        current :meth:`guess_points` (a worker's answer may come late); returns whether kept."""
        given = None if points is None else [_rc(p) for p in points]
        if given != self.guess_points():
            return False
        self.frame_guess = None if guess is None else int(guess)
        return True

    def set_points(self, points: Any) -> list[tuple[float, float]]:
        """Take the points layer's (row, col) points, in click order.

        At most two are kept: the first is proximal, the second distal. A third
        click starts a new pair with itself as the proximal point (the returned
        list is what the layer should then hold).
        """
        arr = np.asarray(points, dtype=float)
        pts = [] if arr.size == 0 else [_rc(p) for p in arr.reshape(len(arr), -1)]
        if len(pts) > 2:
            pts = pts[-1:]
        if pts != self.points:
            self.points = pts
            if len(pts) == 2:
                self._note("points", proximal_rc=_round_rc(pts[0]), distal_rc=_round_rc(pts[1]))
            # new points invalidate a reference or MLD placed for the old segment
            self.reference_rc = None
            self.mld_rc = None
            self.frame_guess = None
            if len(pts) < 2:  # a new pair: the waypoints and dropped frames belonged to the old segment
                self.waypoints = []
                self.dropped_frames = []
                if not self.frame_by_reader:
                    self.frame = None  # the auto frame is picked again for the new segment
        return list(pts)

    @property
    def prompt(self) -> str:
        if self.segment is None and len(self.points) == 2:
            return CHOOSE_ARTERY
        text = point_prompt(len(self.points))
        return text if self.segment is not None else f"{CHOOSE_ARTERY} {text}"

    @property
    def ready(self) -> bool:
        return len(self.points) == 2 and self.segment is not None

    def move_reference(self, rc: Sequence[float]) -> None:
        """The reader placed the reference site at ``rc``: D_normal is measured there
        (reference choice becomes ``manual``; a forced WASID site is dropped)."""
        self.reference_rc = _rc(rc)
        self.reference_site = None
        self._note("reference_moved", reference_rc=_round_rc(rc))

    def use_reference_rule(self) -> None:
        """Back to the WASID rule's own reference choice (drops a manual location or a forced site)."""
        if self.reference_rc is not None or self.reference_site is not None:
            self.reference_rc = None
            self.reference_site = None
            self._note("reference_rule")

    def set_reference_choice(self, mode: str | ReferenceChoice | None) -> bool:
        """The reader's reference choice: ``"rule"`` (or None), ``"proximal"``, ``"distal"``,
        ``"feeding"`` (force that WASID site; drops a manual location), or ``"manual"``
        (kept only with a dragged location, see :meth:`move_reference`).

        Returns whether the request to :func:`stenosis.measure` changed.
        """
        mode = "rule" if mode is None else str(getattr(mode, "value", mode)).lower()
        if mode not in dict(REFERENCE_MODES):
            raise ValueError(f"unknown reference choice {mode!r}; choose one of {', '.join(dict(REFERENCE_MODES))}")
        if mode == "rule":
            before = (self.reference_rc, self.reference_site)
            self.use_reference_rule()
            return before != (None, None)
        if mode == ReferenceChoice.MANUAL.value:
            return False  # the location comes with the drag of the reference marker
        if mode == self.reference_site and self.reference_rc is None:
            return False
        self.reference_site = mode
        self.reference_rc = None  # the library takes a site or a location, not both
        self._note("reference_choice", reference_choice=mode)
        return True

    @property
    def reference_mode(self) -> str:
        """``"manual"`` when the reader placed the reference, the forced site, else ``"rule"``."""
        if self.reference_rc is not None:
            return ReferenceChoice.MANUAL.value
        return self.reference_site or "rule"

    def move_mld(self, rc: Sequence[float]) -> None:
        """The reader placed the MLD at ``rc``: the minimal diameter is searched near it."""
        self.mld_rc = _rc(rc)
        self._note("mld_moved", mld_rc=_round_rc(rc))

    def use_auto_mld(self) -> None:
        """Back to the narrowest traced lumen between the points (drops a placed MLD)."""
        if self.mld_rc is not None:
            self.mld_rc = None
            self._note("mld_auto")

    def set_waypoints(self, points: Any) -> list[tuple[float, float]]:
        """Inner centerline points the trace must pass through, in any order.

        They are kept ordered proximal to distal along the current centerline (the
        proximal-distal line before a result); returns that order (what a waypoints
        layer should hold).
        """
        arr = np.asarray(points, dtype=float)
        pts = [] if arr.size == 0 else [_rc(p) for p in arr.reshape(-1, 2)]
        pts = order_waypoints(pts, self._path())
        if pts != self.waypoints:
            self.waypoints = pts
            self._note("waypoints", waypoints_rc=[_round_rc(p) for p in pts])
        return list(pts)

    def _path(self) -> np.ndarray:
        """The current centerline (proximal first), or the proximal-distal line."""
        if self.result is not None:
            cl = np.asarray(self.result.profile.centerline_rc, dtype=float).reshape(-1, 2)
            cl = cl[np.isfinite(cl).all(axis=1)]
            if len(cl) >= 2:
                return cl
        return np.asarray(self.points, dtype=float).reshape(-1, 2)

    def set_feeding_points(self, points: Any) -> list[tuple[float, float]]:
        """Two points (proximal, distal) on the feeding artery: makes the WASID feeding-artery
        reference available (3rd choice; 2nd for the ICA). A third click starts a new pair."""
        arr = np.asarray(points, dtype=float)
        pts = [] if arr.size == 0 else [_rc(p) for p in arr.reshape(len(arr), -1)]
        if len(pts) > 2:
            pts = pts[-1:]
        if pts != self.feeding:
            self.feeding = pts
            self._note("feeding_points", points_rc=[_round_rc(p) for p in pts])
        return list(pts)

    def edit_centerline(self, vertices: Any, *, tolerance_px: float = 1.0) -> str:
        """The reader edited the traced centerline (vertices (N, 2), row/col).

        An end dragged elsewhere becomes the new proximal or distal point; inner
        vertices dragged (or inserted) more than ``tolerance_px`` off the traced path
        become waypoints the new trace must pass through (:func:`stenosis.measure`
        traces the path between the points again). Returns ``"ends"`` when an end
        moved, ``"interior"`` when only inner vertices moved, ``"none"`` otherwise.
        """
        v = np.asarray(vertices, dtype=float)
        if self.result is None or v.ndim != 2 or len(v) < 2:
            return "none"
        old = np.asarray(self.result.profile.centerline_rc, dtype=float)
        old = old[np.isfinite(old).all(axis=1)]
        v = v[:, -2:]
        moved_ends = [not np.allclose(v[i], old[j], atol=0.5) for i, j in ((0, 0), (-1, -1))]
        inner = v[1:-1]
        off = _project_on_polyline(inner, old)[1] > tolerance_px if len(inner) else np.zeros(0, bool)
        moved_inner = [_rc(p) for p in inner[off]]
        if not any(moved_ends) and not moved_inner:
            return "none"
        if moved_inner:
            self.set_waypoints([*self.waypoints, *moved_inner])
        if not any(moved_ends):
            return "interior"
        prox = _rc(v[0]) if moved_ends[0] else self.points[0]
        dist = _rc(v[-1]) if moved_ends[1] else self.points[1]
        self.points = [prox, dist]
        self.reference_rc = None
        self.mld_rc = None
        self._note("centerline_edited", proximal_rc=_round_rc(prox), distal_rc=_round_rc(dist))
        return "ends"

    def drop_frame(self, frame: int) -> str:
        """Leave ``frame`` out of the multi-frame combination (``exclude_frames=``).

        The analysed frame cannot be dropped (stenosis refuses it): when the reader drops
        it, stenosis chooses the analysed frame again among the frames not dropped (the
        earliest fully opacified one; ``frame=None``) and ``frame`` is dropped. Returns a
        one-line message for the status line; raises ValueError when nothing would be left.
        """
        frame = int(frame)
        n = int(self.run.frames.shape[0])
        if not 0 <= frame < n:
            raise ValueError(f"frame {frame} is outside the run (0..{n - 1})")
        if frame in self.dropped_frames:
            return f"Frame {frame} is already dropped."
        analysed = self.frame if self.frame is not None else (
            None if self.result is None else int(self.result.frame_index))
        message = f"Frame {frame} dropped; re-measuring."
        if frame == analysed:
            used = [int(t) for t in ((getattr(self.result, "frames", None) or {}).get("used") or [])]
            others = [t for t in used if t != frame and t not in self.dropped_frames]
            if not others:
                raise ValueError(f"frame {frame} is the analysed frame and no other frame is used: "
                                 "nothing left to measure (pick another frame to analyse first)")
            self.frame = None
            self.frame_by_reader = False
            self._note("frame", frame=None, reason=f"frame {frame} (analysed) dropped")
            message = (f"Frame {frame} (the analysed frame) dropped: the earliest fully opacified frame of the "
                       "others will be analysed (the result warns if none is); re-measuring.")
        self.dropped_frames = sorted({*self.dropped_frames, frame})
        self._note("frame_dropped", frame=frame, dropped_frames=list(self.dropped_frames))
        return message

    def restore_frame(self, frame: int) -> bool:
        """Put a dropped ``frame`` back into the combination; returns whether it was dropped.

        An automatic analysed frame (not the reader's) is chosen again among the frames now
        available: the one pinned after a drop may have been a fallback the restored frame beats."""
        frame = int(frame)
        if frame not in self.dropped_frames:
            return False
        self.dropped_frames = [t for t in self.dropped_frames if t != frame]
        self._note("frame_restored", frame=frame, dropped_frames=list(self.dropped_frames))
        if not self.frame_by_reader and self.frame is not None:
            self.frame = None
            self._note("frame", frame=None, reason=f"frame {frame} restored: the analysed frame is chosen again")
        return True

    def calibrate_catheter(self, p1_rc: Sequence[float], p2_rc: Sequence[float], french: float) -> Any:
        """Calibrate from a line across a catheter of ``french`` size; returns the Calibration.

        Uses :func:`stenosis.catheter_calibration` and replaces the session's run by
        ``run.with_calibration(cal)``; a previous result is kept until re-measured.
        """
        cal = stenosis.catheter_calibration(_rc(p1_rc), _rc(p2_rc), float(french))
        self.run = self.run.with_calibration(cal)
        self._note(
            "catheter_calibration",
            p1_rc=_round_rc(p1_rc),
            p2_rc=_round_rc(p2_rc),
            french=float(french),
            mm_per_px=list(cal.mm_per_px),
        )
        return cal

    # ------------------------------------------------------------------ measuring
    def _choices_key(self) -> dict[str, Any]:
        """What a result depends on among the reader's choices; the frame is the one sent
        (the reader's, or the automatic one :meth:`accept` pinned)."""
        return {
            "segment": None if self.segment is None else self.segment.value, "model": self.model.value,
            "points": tuple(self.points), "frame": self.frame, "reference_rc": self.reference_rc,
            "reference_site": self.reference_site, "mld_rc": self.mld_rc, "waypoints": tuple(self.waypoints),
            "feeding": tuple(self.feeding), "dropped": tuple(self.dropped_frames),
            "calibration": repr(self.run.calibration),
        }

    @property
    def stale(self) -> bool:
        """Whether the reader changed a choice since the current result was measured (a
        re-measure failed or has not finished): such a result is not exported under them."""
        return self.result is not None and self._choices_key() != self._measured_key

    def request(self) -> MeasureRequest:
        """The :func:`stenosis.measure` call for the current choices."""
        if not self.ready:
            raise ValueError(self.prompt)
        kwargs: dict[str, Any] = {
            "segment": self.segment.value,
            "proximal": self.points[0],
            "distal": self.points[1],
            "frame": self.frame,
            "model": self.model.value,
        }
        if self.reference_rc is not None:
            kwargs["reference"] = self.reference_rc
        elif self.reference_site is not None:
            kwargs["reference_choice"] = self.reference_site
        if self.mld_rc is not None:
            kwargs["mld"] = self.mld_rc
        if self.waypoints:
            kwargs["waypoints"] = list(self.waypoints)
        if len(self.feeding) == 2:
            kwargs["feeding_proximal"], kwargs["feeding_distal"] = self.feeding
        if self.dropped_frames:
            kwargs["exclude_frames"] = list(self.dropped_frames)
        try:  # the library's one check of a reader's inputs, before the worker thread starts
            stenosis.ReaderInputs.create(**kwargs)
        except stenosis.StenosisError as exc:
            raise ValueError(str(exc)) from None
        return MeasureRequest(self.run, kwargs, self._choices_key())

    def accept(self, result: Any, key: Any = None) -> None:
        """Keep ``result`` as the current measurement; pin its frame so later
        adjustments re-measure the same frame (new points pick it again).

        ``key``: the :attr:`MeasureRequest.key` of the request it answers (None: the current
        choices), so that :attr:`stale` says whether the reader changed a choice since."""
        self.result = result
        self.frame = int(result.frame_index)
        # an automatic frame (None sent) is the one the result pinned
        self._measured_key = self._choices_key() if key is None else {**key, "frame": self.frame}
        self._note(
            "measured",
            frame_index=int(result.frame_index),
            percent_stenosis=round(float(result.percent_stenosis), 2),
            reference_choice=str(result.reference_choice),
        )

    # ------------------------------------------------------------------ audit record
    def choices_record(self) -> dict[str, Any]:
        """The reader's choices, for the audit trail of an export."""
        cal = self.run.calibration
        return {
            "segment": None if self.segment is None else self.segment.value,
            "model": self.model.value,
            "proximal_rc": _round_rc(self.points[0]) if self.points else None,
            "distal_rc": _round_rc(self.points[1]) if len(self.points) > 1 else None,
            "frame": self.frame,
            "frame_auto": not self.frame_by_reader,
            "frame_guess": self.frame_guess,
            "reference_override_rc": _round_rc(self.reference_rc),
            "reference_mode": self.reference_mode,
            "reference_site": self.reference_site,
            "mld_override_rc": _round_rc(self.mld_rc),
            "waypoints_rc": [_round_rc(p) for p in self.waypoints] or None,
            "feeding_points_rc": [_round_rc(p) for p in self.feeding] or None,
            "dropped_frames": list(self.dropped_frames) or None,
            # what the library recorded as the reader's overrides of the current result
            "measured_with": self._measured_with(),
            "calibration": cal.to_dict(),  # with its detail
            "actions": list(self.log),
        }

    def _measured_with(self) -> dict[str, Any] | None:
        """What the library recorded as the reader's overrides of the current result (the
        frame pinned after an automatic measurement is the tool's choice, not the reader's)."""
        if self.result is None:
            return None
        reader = dict((getattr(self.result, "parameters", None) or {}).get("reader") or {})
        return reader if self.frame_by_reader else reader_without_frame(reader)

    def export_record(self) -> dict[str, Any]:
        """JSON document of an export: the result, the reader's choices and software."""
        if self.result is None:
            raise ValueError("nothing to export yet: measure first")
        if self.stale:
            raise ValueError("the result shown was measured before your last change (its re-measure failed or has "
                             "not finished): measure again, or undo the change, then export")
        from importlib.metadata import version

        software = dict(getattr(self.result, "software", {}) or {})
        software.update({"napari_stenosis": __version__, "napari": version("napari")})
        return {
            # the frame pinned after an automatic measurement is the tool's choice, not the reader's
            "result": (self.result.to_dict() if self.frame_by_reader
                       else frame_chosen_by_tool(self.result.to_dict())),
            "reader": self.choices_record(),
            "software": software,
            "exported_at": _now(),
        }

    def export(self, folder: str | Path, *, view_rgb: np.ndarray | None = None, stem: str | None = None) -> dict[str, Path]:
        """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.png`` into ``folder``.

        The CSV row is also appended to ``readings.csv`` of the folder (one row per
        export, header written once), the core lab's running log.

        Parameters
        ----------
        view_rgb : (H, W, 3 or 4) uint8, optional
            Screenshot of the viewer to put beside the profile plot in the PNG.
        """
        record = self.export_record()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        res = self.result
        stem = stem or f"{Path(str(res.file)).stem or 'run'}_{res.segment}_f{int(res.frame_index)}"
        paths = {"json": folder / f"{stem}.json", "csv": folder / f"{stem}.csv", "png": folder / f"{stem}.png"}
        paths["json"].write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
        row = csv_row(record)
        _write_csv(paths["csv"], [row], append=False)
        log_path = folder / "readings.csv"
        _write_csv(log_path, [row], append=True)
        paths["readings"] = log_path
        save_png(paths["png"], res, view_rgb=view_rgb)
        self._note("exported", folder=str(folder), stem=stem)
        return paths


# ---------------------------------------------------------------------------- presentation
#: the library's messages name the CLI's flags; in napari they name the widget's controls
#: (shown on screen only: exports keep the library's text)
_IN_NAPARI = (
    ("a catheter or manual calibration (--pixel-mm)", "a catheter calibration (Catheter calibration > Draw line)"),
    ("give --pixel-mm (Python: pixel_mm=) to report mm", "calibrate (Catheter calibration > Draw line) to report mm"),
    ("--pixel-mm or --catheter-french", "Catheter calibration"),
    ("leave --frame out to let the tool choose", "press Auto in the Frame row to let the tool choose"),
    ("(leave --frame out to use it)", "(press Auto in the Frame row to use it)"),
    ("(--frame N, or frame=N)", "(the Frame box)"),
    ("give --feeding-proximal and --feeding-distal (napari: place the two feeding points first)",
     "place the two Feeding artery points first"),
    ("give both --feeding-proximal and --feeding-distal, or neither", "place both Feeding artery points, or none"),
    ("give --reference ROW,COL", "drag the green reference marker"),
    ("(--reference ROW,COL)", "(drag the green reference marker)"),
    ("force one with --reference", "force one with the Reference box or by dragging the green marker"),
    ("or give no frame (--frame; batch: the frame column) to let the tool choose",
     "or press Auto in the Frame row to let the tool choose"),
    ("give the frame the points were placed on (--frame N; batch: the frame column) to be sure",
     "set the Frame box to the frame the points were placed on to be sure"),
    ("(--proximal / --distal, the batch's proximal_* / distal_* columns)", "(drag the proximal and distal points)"),
    ("(a waypoint on the artery, --waypoint, fixes the route)", "(a waypoint on the artery fixes the route: Add waypoints)"),
)
#: the same for messages that hold a number or a tail that varies
_IN_NAPARI_PATTERNS = (
    (re.compile(r"give --frame (\d+) \(batch: the frame column\) to measure on it"), r"set the Frame box to \1 to measure on it"),
    (re.compile(r"; give ROW,COL inside the frame \(row first[^)]*\)"), "; place it inside the image"),
)


def for_napari(text: str) -> str:
    """A library message with its CLI flags replaced by the widget's controls."""
    for cli, here in _IN_NAPARI:
        text = text.replace(cli, here)
    for pattern, here in _IN_NAPARI_PATTERNS:
        text = pattern.sub(here, text)
    return text


def _uncertainty_text(result: Any) -> str:
    """From the result's own floats (the JSON's 2-decimal rounding would round twice and
    disagree with the warning's interval by 0.1)."""
    sd = float(getattr(result, "percent_stenosis_sd", float("nan")))
    if not np.isfinite(sd):
        return "n/a"
    lo, hi = result.percent_stenosis_interval
    return f"\u00b1 {sd:.1f} points (1 SD); \u00b1 2 SD: {lo:.1f} to {hi:.1f}%"


def _frames_text(fr: dict[str, Any]) -> str:
    """The frames measured and each one's own percent stenosis (the measured repeatability)."""
    per = fr.get("per_frame") or []
    dropped = fr.get("excluded") or []
    rejected = fr.get("rejected") or []
    tail = (f"; dropped by the reader: {', '.join(str(t) for t in dropped)}" if dropped else "") + (
        "; rejected: " + ", ".join(f"{r['frame']} ({r.get('why')})" for r in rejected) if rejected else "")
    if len(fr.get("used") or []) < 2 or not per:
        return "analysed frame only" + tail
    each = ", ".join(f"{p['frame']}: {_fmt(p.get('percent_stenosis'), '%', 1)}" for p in per)
    sd = fr.get("frame_to_frame_sd")
    return each + ("" if sd is None else f"  (SD {float(sd):.1f} points)") + tail


@dataclass(frozen=True)
class FrameItem:
    """One line of the frames list of the result panel.

    ``kind`` is ``used`` (combined; ``analysed`` marks the analysed frame), ``dropped``
    (left out by the reader) or ``rejected`` (left out by stenosis, ``why``); ``checked``
    is whether the frame is in the reader's combination (None: not the reader's to change).
    """

    frame: int
    kind: str
    checked: bool | None
    text: str
    tip: str
    analysed: bool = False


def frame_items(result: Any, dropped: Sequence[int] = ()) -> list[FrameItem]:
    """The frames of ``result`` for the panel's list, by frame number: used (their own
    percent stenosis and SD in the tooltip; the plot shows them), dropped by the reader (the
    result's ``excluded`` and the session's ``dropped`` not yet re-measured) and rejected by
    stenosis (why in the tooltip and the table's "Frames combined" row)."""
    fr = (getattr(result, "frames", None) or {}) if result is not None else {}
    dropped = {int(t) for t in dropped}
    analysed = None if result is None else int(result.frame_index)
    per = {int(p["frame"]): p for p in fr.get("per_frame") or []}
    used = [int(t) for t in fr.get("used") or []] or ([] if analysed is None else [analysed])
    if analysed is not None and not per:  # the analysed frame alone: its values are the result's
        sd = getattr(result, "percent_stenosis_sd", None)
        per[analysed] = {"percent_stenosis": result.percent_stenosis,
                         "percent_stenosis_sd": None if sd is None or not math.isfinite(float(sd)) else float(sd)}
    items: dict[int, FrameItem] = {}
    for t in used:
        p = per.get(t, {})
        pct, sd = p.get("percent_stenosis"), p.get("percent_stenosis_sd")
        value = "" if pct is None else f"{float(pct):.1f} %" + ("" if sd is None else f" \u00b1 {float(sd):.1f}")
        role = "analysed" if t == analysed else "used"
        items[t] = FrameItem(
            t, "used", t not in dropped,
            f"{t}" + (" analysed" if t == analysed else "") + (" (dropping)" if t in dropped else ""),
            f"frame {t}: {role} in the combination" + (f", {value} (1 SD)" if value else "")
            + ". Uncheck to drop it and re-measure"
            + (" (another used frame becomes the analysed frame)" if t == analysed else ""),
            analysed=t == analysed,
        )
    for t in sorted({int(v) for v in fr.get("excluded") or []} | dropped):
        if t in items:
            continue
        restoring = t not in dropped
        items[t] = FrameItem(
            t, "dropped", restoring, f"{t} {'(restoring)' if restoring else 'dropped'}",
            f"frame {t}: left out of the combination by you. Check to put it back and re-measure",
        )
    for r in fr.get("rejected") or []:
        t = int(r["frame"])
        if t not in items:
            why = str(r.get("why") or "")
            items[t] = FrameItem(t, "rejected", None, f"{t} rejected", f"frame {t}: left out by stenosis ({why})")
    return [items[t] for t in sorted(items)]


def frames_tab_title(result: Any) -> str:
    """Title of the panel's frames tab: ``"Frames (2 used, 1 dropped)"``."""
    fr = (getattr(result, "frames", None) or {}) if result is not None else {}
    if result is None:
        return "Frames"
    used = len(fr.get("used") or []) or 1
    dropped, rejected = len(fr.get("excluded") or []), len(fr.get("rejected") or [])
    parts = [f"{used} used"] + [f"{n} {what}" for n, what in ((dropped, "dropped"), (rejected, "rejected")) if n]
    return f"Frames ({', '.join(parts)})"


def result_table(result: Any) -> list[tuple[str, str]]:
    """(label, value) rows of the result table shown to the reader."""
    d = result.to_dict()
    win = d.get("reference_window") or {}
    cal = d.get("calibration") or {}
    mm = cal.get("mm_per_px")
    rows = [
        # from the result itself: the JSON's 2-decimal rounding would round twice
        ("Percent stenosis (WASID)", _fmt(result.percent_stenosis, "%", 1)),
        (">= 50%", result.call_text),
        ("Uncertainty", _uncertainty_text(result)),
        ("MLD (D stenosis)", f"{_fmt(d['mld_mm'], 'mm')}  [{_fmt(d.get('mld_px'), 'px')}]"),
        ("Reference (D normal)", f"{_fmt(d['reference_diameter_mm'], 'mm')}  [{_fmt(d.get('reference_diameter_px'), 'px')}]"),
        ("Reference choice", str(d["reference_choice"]) + (f": {win['description']}" if win.get("description") else "")),
        ("Lesion length", _fmt(d.get("lesion_length_mm"), "mm")),
        ("Frame", str(d["frame_index"])),
        ("Frames combined", _frames_text(d.get("frames") or {})),
        ("Calibration", f"{cal.get('source')}" + ("" if not mm else f" ({float(mm[0]):.4f} mm/px)")),
        ("Model", str(d.get("model", ""))),
    ]
    warnings = [for_napari(str(w)) for w in (d.get("warnings") or [])]
    rows.append(("Warnings", "\n".join(warnings) if warnings else "none"))
    return rows


def overlay_geometry(result: Any) -> dict[str, np.ndarray]:
    """Arrays for the result layers, all (row, col) pixels of the analysed frame.

    Returns
    -------
    dict
        ``centerline`` (N, 2), ``left`` (N, 2), ``right`` (N, 2) lumen edges with
        non-finite samples dropped, ``markers`` (2, 2) = [MLD, reference].
    """
    prof = result.profile

    def finite(a: Any) -> np.ndarray:
        a = np.asarray(a, dtype=float).reshape(-1, 2)
        return a[np.isfinite(a).all(axis=1)]

    return {
        "centerline": finite(prof.centerline_rc),
        "left": finite(prof.left_rc),
        "right": finite(prof.right_rc),
        "markers": np.array([_rc(result.mld_rc), _rc(result.reference_rc)], dtype=float),
    }


#: columns of the exported CSV row, in order: the library's one result-row schema (as ``stenosis batch``)
CSV_COLUMNS = ROW_COLUMNS


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """Flatten an export record (see :meth:`ReadingSession.export_record`) to one CSV row
    (:func:`stenosis.result.row_from_dict`, the reader's choices in the override columns)."""
    reader = record["reader"]
    mld = reader.get("mld_override_rc")
    return row_from_dict(
        record["result"],
        proximal_row=_at(reader.get("proximal_rc"), 0),
        proximal_col=_at(reader.get("proximal_rc"), 1),
        distal_row=_at(reader.get("distal_rc"), 0),
        distal_col=_at(reader.get("distal_rc"), 1),
        frame_auto=reader.get("frame_auto"),
        reference_mode=reader.get("reference_mode"),
        reference_override=reader.get("reference_override_rc") is not None,
        mld_override=None if mld is None else ";".join(f"{v:g}" for v in mld),
        waypoints=" ".join(f"{p[0]:g};{p[1]:g}" for p in reader.get("waypoints_rc") or []),
        feeding_points=bool(reader.get("feeding_points_rc")),
        model=record["result"].get("model") or reader.get("model"),
    )


def _at(p: Any, i: int) -> Any:
    return None if p is None else p[i]


def save_png(path: str | Path, result: Any, *, view_rgb: np.ndarray | None = None, dpi: int = 110) -> Path:
    """PNG of the viewer screenshot (when given) beside the diameter-profile plot."""
    from matplotlib.figure import Figure

    from ._plot import draw_profile

    path = Path(path)
    if view_rgb is not None:
        fig = Figure(figsize=(12, 5.2), dpi=dpi)
        ax_img, ax_plot = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1.0]})
        ax_img.imshow(_trim_border(np.asarray(view_rgb)[..., :3]))
        ax_img.set_axis_off()
        ax_img.set_title(f"{Path(str(result.file)).name}  frame {int(result.frame_index)}", fontsize=9)
    else:
        fig = Figure(figsize=(6.5, 4.5), dpi=dpi)
        ax_plot = fig.subplots()
    draw_profile(ax_plot, result)
    sw = getattr(result, "software", {}) or {}
    sha = str(sw.get("model_sha256") or "none")[:12]
    fig.text(0.01, 0.01, f"stenosis {sw.get('version', '?')}  weights {sha}  napari-stenosis {__version__}",
             fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    return path


# ---------------------------------------------------------------------------- helpers
def _project_on_polyline(points: np.ndarray, poly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arc position along the polyline ``poly`` (N, 2) of the nearest foot of each of
    ``points`` (K, 2), and the distance to it, pixels (the first nearest segment wins ties)."""
    pts = np.asarray(points, float).reshape(-1, 2)
    poly = np.asarray(poly, float).reshape(-1, 2)
    if len(poly) == 1:
        return np.zeros(len(pts)), np.hypot(*(pts - poly[0]).T)
    a, seg = poly[:-1], np.diff(poly, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    t = np.clip(np.einsum("kij,ij->ki", pts[:, None, :] - a[None], seg) / np.maximum(seg_len**2, 1e-12), 0.0, 1.0)
    foot = a[None] + t[..., None] * seg[None]
    dist = np.sqrt(((pts[:, None, :] - foot) ** 2).sum(-1))
    k = np.argmin(dist, axis=1)
    rows = np.arange(len(pts))
    arc0 = np.r_[0.0, np.cumsum(seg_len)][:-1]
    return arc0[k] + t[rows, k] * seg_len[k], dist[rows, k]


def _trim_border(rgb: np.ndarray) -> np.ndarray:
    """Crop the uniform canvas background around the image of a viewer screenshot."""
    if rgb.ndim != 3 or rgb.size == 0:
        return rgb
    differs = np.any(rgb != rgb[0, 0], axis=-1)
    rows, cols = np.nonzero(differs.any(axis=1))[0], np.nonzero(differs.any(axis=0))[0]
    if len(rows) == 0 or len(cols) == 0:
        return rgb
    return rgb[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _write_csv(path: Path, rows: list[dict[str, Any]], *, append: bool) -> None:
    new = not (append and path.exists() and path.stat().st_size > 0)
    if not new:
        with open(path, newline="") as fh:
            header = next(csv.reader(fh), [])
        if header != list(CSV_COLUMNS):
            # a log written by another version of the plugin: keep it, start a new one beside it
            k = 1
            while (old := path.with_name(f"{path.stem}.v{k}{path.suffix}")).exists():
                k += 1
            path.rename(old)
            new = True
    with open(path, "a" if append else "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        if new:
            w.writeheader()
        w.writerows(rows)
