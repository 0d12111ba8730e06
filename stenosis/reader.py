"""A reader's inputs to a measurement, validated once (API, CLI, batch and napari build one).

Points are (row, col) in pixels of the frame as the reader gave them; every message
quotes them that way.
"""
from __future__ import annotations

import operator

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .calibration import check_pixel_mm
from .enums import ModelName, ReferenceChoice, Segment
from .errors import ReaderInputError

__all__ = ["ReaderInputs", "as_rc", "check_points_within", "frames_mode", "onto_pixel_centres"]

Point = tuple[float, float]


def as_rc(p: Any, name: str) -> Point:
    """``p`` as a finite (row, col) pair of floats, or a one-line ReaderInputError."""
    bad = isinstance(p, (str, bytes, dict)) or any(isinstance(v, (bool, np.bool_, str, bytes)) for v in
                                                   (p if isinstance(p, (list, tuple, np.ndarray)) else ()))
    try:
        if bad:
            raise TypeError
        r, c = (float(v) for v in p)
    except (TypeError, ValueError, OverflowError):
        raise ReaderInputError(f"the {name} point must be (row, col) in pixels, got {p!r}") from None
    if not (np.isfinite(r) and np.isfinite(c)):
        raise ReaderInputError(f"the {name} point ({r}, {c}) is not a finite (row, col); give two numbers, in pixels")
    return r, c


def check_points_within(named: Any, shape: tuple[int, int]) -> None:
    """Each (name, (row, col)) of ``named`` on a pixel of a frame of ``shape`` (a pixel spans its
    centre +-0.5, so a click on the first or last pixel's outer half is inside), or a one-line
    ReaderInputError."""
    h, w = shape
    for name, p in named:
        if not (-0.5 <= p[0] <= h - 0.5 and -0.5 <= p[1] <= w - 0.5):
            raise ReaderInputError(
                f"the {name} point ({p[0]:g}, {p[1]:g}) is outside the image "
                f"(rows 0..{h - 1}, cols 0..{w - 1}); give ROW,COL inside the frame (row first"
                + (f": did you mean {p[1]:g},{p[0]:g}?)" if 0 <= p[1] <= h - 1 and 0 <= p[0] <= w - 1 else ")"))


def onto_pixel_centres(p: Point | None, shape: tuple[int, int]) -> Point | None:
    """A point on the outer half of an edge pixel moved onto that pixel's centre line (the
    profiles and the trace are sampled between pixel centres); others unchanged."""
    if p is None:
        return None
    return float(min(max(p[0], 0.0), shape[0] - 1)), float(min(max(p[1], 0.0), shape[1] - 1))


def _frame_numbers(frames: Any) -> tuple[int, ...]:
    """Sorted unique whole frame numbers (a reader's dropped frames); one-line error otherwise."""
    if frames is None:
        return ()
    items = [frames] if isinstance(frames, (str, bytes)) or np.ndim(frames) == 0 else np.ravel(frames).tolist()
    return tuple(sorted({_whole_frame(f) for f in items}))


def _whole_frame(f: Any) -> int:
    """One dropped frame number: an integer, or an integral float / numeric string."""
    bad = ReaderInputError(f"a dropped frame must be a whole frame number, got {f!r}")
    if isinstance(f, (bool, np.bool_, bytes)):
        raise bad
    try:
        return operator.index(f)
    except TypeError:
        pass
    try:
        v = float(f)
    except (TypeError, ValueError):
        raise bad from None
    if not np.isfinite(v) or not v.is_integer():
        raise bad
    return int(v)


def frames_mode(frames: Any) -> str | int:
    """'all' (every frame of the arterial phase), 'single', or at most N frames."""
    text = str(frames).strip().lower()
    if text in ("all", "single"):
        return text
    n = int(text) if text.isdigit() and not isinstance(frames, bool) else 0
    if n < 1:
        raise ReaderInputError(f"frames must be all, single or a number of frames >= 1, got {frames!r}")
    return "single" if n == 1 else n


def _opt(p: Any, name: str) -> Point | None:
    return None if p is None else as_rc(p, name)


@dataclass(frozen=True)
class ReaderInputs:
    """What a reader (or the auto mode) gives one measurement; build with :meth:`create`.

    ``reference_choice`` is the forced WASID site (None: the WASID order); a reference
    location (``reference``) makes the choice "manual".
    """

    segment: Segment
    proximal: Point
    distal: Point
    frame: int | None = None
    model: str = ModelName.UNET.value
    reference: Point | None = None
    reference_choice: ReferenceChoice | None = None
    mld: Point | None = None
    waypoints: tuple[Point, ...] = ()
    feeding_proximal: Point | None = None
    feeding_distal: Point | None = None
    pixel_mm: float | None = None
    frames: str | int = "all"
    exclude_frames: tuple[int, ...] = ()  # frames the reader dropped from the combination

    @classmethod
    def create(cls, segment: Any, proximal: Any, distal: Any, frame: Any = None, *, model: Any = "unet",
               reference: Any = None, reference_choice: Any = None, mld: Any = None, waypoints: Any = (),
               feeding_proximal: Any = None, feeding_distal: Any = None, pixel_mm: Any = None,
               frames: Any = "all", exclude_frames: Any = ()) -> ReaderInputs:
        """Validate and normalise; raises ReaderInputError (a MeasurementError) with a one-line message."""
        if segment is None:
            raise ReaderInputError("choose the artery graded: segment ICA, M1, V4 or BA (it sets the WASID reference rule)")
        try:
            seg = Segment(str(getattr(segment, "value", segment)).upper())
        except ValueError:
            raise ReaderInputError(f"unknown segment {segment!r}; choose one of ICA, M1, V4, BA") from None
        try:
            model_name = ModelName(str(getattr(model, "value", model)).lower()).value
        except ValueError:
            raise ReaderInputError(f"unknown model {model!r}; choose unet or classical") from None
        if proximal is None or distal is None:
            raise ReaderInputError("measure needs both a proximal and a distal point (row, col)")
        force = None
        if reference_choice is not None:
            try:
                force = ReferenceChoice(str(getattr(reference_choice, "value", reference_choice)).lower())
            except ValueError:
                raise ReaderInputError(f"unknown reference choice {reference_choice!r}; choose proximal, distal or feeding") from None
            if force is ReferenceChoice.MANUAL:
                if reference is None:
                    raise ReaderInputError("a manual reference needs its location: give --reference ROW,COL")
                force = None  # the location makes it manual
            elif reference is not None:
                raise ReaderInputError(f"give either a reference location or the {force.value} reference site, not both")
            elif force is ReferenceChoice.FEEDING and feeding_proximal is None:
                raise ReaderInputError("the feeding reference needs two points on the feeding artery: give --feeding-proximal "
                                       "and --feeding-distal (napari: place the two feeding points first)")
        if (feeding_proximal is None) != (feeding_distal is None):
            raise ReaderInputError("give both --feeding-proximal and --feeding-distal, or neither")
        if frame is not None:
            try:
                if isinstance(frame, (bool, np.bool_)) or not float(frame).is_integer():
                    raise ValueError
                frame = int(frame)
            except (TypeError, ValueError, OverflowError):
                raise ReaderInputError(f"the frame must be a whole number, got {frame!r}") from None
        if pixel_mm is not None:
            pixel_mm = check_pixel_mm(pixel_mm, what="the reader's pixel size (--pixel-mm)")
        frames = frames_mode(frames)
        excluded = _frame_numbers(exclude_frames)
        if frame is not None and frame in excluded:
            raise ReaderInputError(f"frame {frame} is both the analysed frame and a dropped one; drop another frame "
                                   "or analyse another")
        return cls(
            segment=seg, proximal=as_rc(proximal, "proximal"), distal=as_rc(distal, "distal"), frame=frame,
            model=model_name, reference=_opt(reference, "reference"), reference_choice=force,
            mld=_opt(mld, "MLD"),
            waypoints=tuple(as_rc(p, f"waypoint {k + 1}") for k, p in enumerate(() if waypoints is None else list(waypoints))),
            feeding_proximal=_opt(feeding_proximal, "feeding proximal"),
            feeding_distal=_opt(feeding_distal, "feeding distal"), pixel_mm=pixel_mm, frames=frames,
            exclude_frames=excluded,
        )

    def named_points(self) -> list[tuple[str, Point]]:
        """Every point given, with its name for messages."""
        pts = [("proximal", self.proximal), ("distal", self.distal)]
        pts += [(n, p) for n, p in (("reference", self.reference), ("feeding proximal", self.feeding_proximal),
                                    ("feeding distal", self.feeding_distal)) if p is not None]
        pts += [(f"waypoint {k + 1}", p) for k, p in enumerate(self.waypoints)]
        if self.mld is not None:
            pts.append(("MLD", self.mld))
        return pts

    def within(self, n_frames: int, shape: tuple[int, int]) -> ReaderInputs:
        """These inputs checked against a run of ``n_frames`` frames of ``shape``: every point on a
        pixel (one on an edge pixel's outer half moved onto its centre line, at most half a
        pixel) and the frames inside the run; one-line ReaderInputError otherwise."""
        check_points_within(self.named_points(), shape)
        if self.frame is not None and not 0 <= self.frame < n_frames:
            raise ReaderInputError(f"frame {self.frame} is outside the run (0..{n_frames - 1}); "
                                   f"pick a frame from 0 to {n_frames - 1}")
        outside = [t for t in self.exclude_frames if not 0 <= t < n_frames]
        if outside:
            raise ReaderInputError(f"dropped frame {outside[0]} is outside the run (0..{n_frames - 1}); "
                                   f"drop frames from 0 to {n_frames - 1}")
        if len(set(self.exclude_frames)) >= n_frames:
            raise ReaderInputError(f"every frame of the run (0..{n_frames - 1}) is dropped: keep at least the frame "
                                   "to analyse")

        def on(p):
            return onto_pixel_centres(p, shape)

        return replace(self, proximal=on(self.proximal), distal=on(self.distal), reference=on(self.reference),
                       mld=on(self.mld), waypoints=tuple(on(p) for p in self.waypoints),
                       feeding_proximal=on(self.feeding_proximal), feeding_distal=on(self.feeding_distal))

    @property
    def frame_limit(self) -> int | None:
        """How many frames besides the analysed one are combined (None: every frame of the arterial phase)."""
        return 0 if self.frames == "single" else (None if self.frames == "all" else int(self.frames) - 1)

    @property
    def path_points(self) -> list[Point]:
        """Proximal, waypoints, distal: the points the trace passes."""
        return [self.proximal, *self.waypoints, self.distal]

    def to_record(self) -> dict[str, Any]:
        """The reader's overrides, for the audit trail (empty when the tool chose everything)."""
        def rc(p):
            return [round(float(v), 2) for v in p]

        out: dict[str, Any] = {}
        if self.frame is not None:
            out["frame"] = int(self.frame)
        if self.reference is not None:
            out["reference_rc"] = rc(self.reference)
        if self.reference_choice is not None:
            out["reference_choice"] = self.reference_choice.value
        if self.mld is not None:
            out["mld_rc"] = rc(self.mld)
        if self.waypoints:
            out["waypoints_rc"] = [rc(p) for p in self.waypoints]
        if self.feeding_proximal is not None:
            out["feeding_proximal_rc"] = rc(self.feeding_proximal)
            out["feeding_distal_rc"] = rc(self.feeding_distal)
        if self.pixel_mm is not None:
            out["pixel_mm"] = float(self.pixel_mm)
        if self.frames != "all":
            out["frames"] = self.frames
        if self.exclude_frames:
            out["exclude_frames"] = list(self.exclude_frames)
        return out
