"""Result types of a stenosis measurement: the diameter profile and the WASID result.

Both are frozen dataclasses with ``to_dict()`` giving plain JSON-ready values
(floats rounded so that the JSON of a run is deterministic). Coordinates are
(row, col) in pixels of the analysed frame, 0-based; lengths are mm at the
isocentre unless the name ends in ``_px``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any, Mapping

import numpy as np

#: The end of a warning that asks a reader to confirm the >= 50% call: the borderline warning
#: (:func:`stenosis.wasid.borderline_warning`: within ``borderline_points`` of 50, or the +-2 SD
#: interval reaches 50), the mask check's "no bolus is seen" note
#: (:func:`stenosis.measurement.mask_check`), the points-may-be-swapped warning
#: (:func:`stenosis.measurement.swapped_points_warning`) and the clipped-background warning where the
#: clipping can have made the call (:func:`stenosis.trace.burnt_out_warning`);
#: :attr:`StenosisResult.needs_confirmation` looks for it.
CONFIRM_CALL = "have a reader confirm the >= 50% call"
#: How the CLI, the report and napari print such a call next to YES / no.
CONFIRM_MARK = "reader must confirm"


def two_sd_interval(percent_stenosis: float, sd: float) -> tuple[float, float]:
    """The percent stenosis +-2 SD, within 0-100% (a narrowing cannot be below none or beyond an
    occlusion: an SD that reaches past them says the reading could be anything there); a reading
    itself below 0 (or above 100) keeps its +-2 SD on that side."""
    two_sd = 2.0 * sd if np.isfinite(sd) else 0.0
    lo, hi = percent_stenosis - two_sd, percent_stenosis + two_sd
    return (max(lo, 0.0) if percent_stenosis >= 0 else lo, min(hi, 100.0) if percent_stenosis <= 100 else hi)


def call_text(meets_50: bool, needs_confirmation: bool) -> str:
    """``"YES"`` or ``"no"``, followed by ``" (reader must confirm)"`` when the call needs a reader."""
    return ("YES" if meets_50 else "no") + (f" ({CONFIRM_MARK})" if needs_confirmation else "")


@dataclass(frozen=True, eq=False)
class FrameRead:
    """One frame's image around the segment as its diameters were read (not serialised):
    ``image`` is the crop whose first pixel is ``origin_rc`` of the frame; ``shift_rc`` moves the
    analysed frame's samples onto the frame; ``amplitude`` (N,) is the iodine amplitude each
    sample's diameter was fitted with there (the analysed frame's times this frame's bolus ratio);
    ``read`` (N,) the samples this frame's diameters were combined from (not those the bolus had
    not reached); ``radius_hint_px`` the profiles' radius hint."""

    index: int
    image: np.ndarray = field(repr=False)
    origin_rc: tuple[int, int]
    shift_rc: tuple[float, float]
    amplitude: np.ndarray = field(repr=False)
    read: np.ndarray = field(repr=False)
    radius_hint_px: float


class QualityFlag(IntFlag):
    """Per-sample quality of a diameter measurement (bit flags, 0 = good)."""

    OK = 0
    BRANCH = 1  # extra iodine beside the lumen: a side branch origin or a touching vessel
    OVERLAP = 2  # extra iodine over the lumen: a crossing / overlapping vessel
    POOR_FIT = 4  # the blurred-cylinder model does not explain the profile
    EDGE_MISMATCH = 8  # model and derivative edges disagree (kept, but not used as reference)
    OUTSIDE = 16  # the profile leaves the image
    # with POOR_FIT: a lumen of its own amplitude describes the profile (a non-round lumen seen
    # obliquely, or iodine that differs there): read for the MLD, not used as reference
    NON_ROUND = 32

    @classmethod
    def unusable(cls) -> int:
        """Bits that keep a sample out of the reference and (but see :meth:`mld_usable` and the
        flagged-MLD gate of :func:`stenosis.wasid.wasid`) of the MLD search; EDGE_MISMATCH does not."""
        return int(cls.BRANCH | cls.OVERLAP | cls.POOR_FIT | cls.OUTSIDE)

    @classmethod
    def mld_usable(cls, flags: np.ndarray) -> np.ndarray:
        """(N,) bool: samples the MLD is searched on: the usable ones and those flagged only
        POOR_FIT and NON_ROUND (EDGE_MISMATCH aside)."""
        soft = np.asarray(flags) & ~int(cls.EDGE_MISMATCH)
        return ((soft & cls.unusable()) == 0) | (soft == int(cls.POOR_FIT | cls.NON_ROUND))

    @classmethod
    def describe(cls, value: int) -> list[str]:
        """Names of the flags set in ``value`` (``[]`` for a good sample)."""
        return [f.name.lower() for f in cls if f.value and int(value) & f.value]


def _r(x: float | None, nd: int = 4) -> float | None:
    """Round a float for JSON (None and non-finite stay None)."""
    if x is None:
        return None
    x = float(x)
    if not np.isfinite(x):
        return None
    return round(x, nd)


def _rc(p: Any, nd: int = 2) -> list[float] | None:
    if p is None:
        return None
    return [_r(p[0], nd), _r(p[1], nd)]


@dataclass(frozen=True, eq=False)
class DiameterProfile:
    """Lumen diameter along a traced centerline.

    Attributes
    ----------
    arc_px : (N,) float
        Arc length of each sample from the proximal end, pixels.
    arc_mm : (N,) float or None
        The same in mm at the isocentre (None when uncalibrated).
    centerline_rc : (N, 2) float
        (row, col) of each sample, pixels.
    normal_rc : (N, 2) float
        Unit normal (row, col) along which the profile was sampled.
    diameter_px : (N,) float
        Model-based lumen diameter (blurred projected cylinder fit), pixels.
    diameter_mm : (N,) float or None
        The same in mm (None when uncalibrated).
    left_rc, right_rc : (N, 2) float
        Lumen edge points (contours), pixels.
    flags : (N,) int
        :class:`QualityFlag` bits per sample.
    edge_diameter_px : (N,) float
        Derivative (max-gradient) edge diameter, a cross-check; pixels.
    centre_offset_px : (N,) float
        Fitted lumen centre along the normal relative to the centerline, pixels.
    blur_sigma_px : float
        Gaussian imaging blur estimated for the run, pixels.
    amplitude : float
        Iodine signal per pixel of projected path length estimated for the run.
    mm_per_px : float or None
        Isotropic scale used for the mm columns (None when uncalibrated).
    local_amplitude : (N,) float or None
        The amplitude each sample was fitted with when it follows the vessel (scatter under
        a varying background, :func:`stenosis.diameter.local_amplitude`); None: ``amplitude``.
    misfit : (N,) float or None
        RMS of each profile's fit residual over the profiles' own noise (about 1 where the
        lumen model describes the profile; :func:`stenosis.diameter.fit.profile_noise`).
    refitted : (N,) bool or None
        Samples refitted on profiles cut short of a vessel beside them (their BRANCH flag
        cleared; :func:`stenosis.diameter.refit_beside_vessels`).
    attenuation_per_px : float
        The iodine attenuation (natural log per px) at which the lumen model blurred the
        transmission (a LIN run's profiles; :mod:`stenosis.diameter.model`); 0: the linear model.
    blur_interp_var_px2 : float
        The blur variance (px^2) that the bilinear interpolation of the profiles the blur was
        estimated on holds in ``blur_sigma_px`` (:func:`stenosis.diameter.profiles.bilinear_blur_var_px2`;
        spline profiles do not hold it, :mod:`stenosis.diameter.shape`); NaN: not known.
    """

    arc_px: np.ndarray
    centerline_rc: np.ndarray
    normal_rc: np.ndarray
    diameter_px: np.ndarray
    left_rc: np.ndarray
    right_rc: np.ndarray
    flags: np.ndarray
    edge_diameter_px: np.ndarray
    centre_offset_px: np.ndarray
    blur_sigma_px: float
    amplitude: float
    mm_per_px: float | None = None
    local_amplitude: np.ndarray | None = None
    misfit: np.ndarray | None = None
    refitted: np.ndarray | None = None
    attenuation_per_px: float = 0.0
    blur_interp_var_px2: float = float("nan")

    @property
    def arc_mm(self) -> np.ndarray | None:
        return None if self.mm_per_px is None else self.arc_px * self.mm_per_px

    @property
    def diameter_mm(self) -> np.ndarray | None:
        return None if self.mm_per_px is None else self.diameter_px * self.mm_per_px

    @property
    def valid(self) -> np.ndarray:
        """(N,) bool: samples without BRANCH, OVERLAP, POOR_FIT or OUTSIDE flags."""
        return (self.flags & QualityFlag.unusable()) == 0

    @property
    def amplitudes(self) -> np.ndarray:
        """(N,) the iodine amplitude each sample's diameter was fitted with (``local_amplitude``,
        else ``amplitude`` everywhere)."""
        if self.local_amplitude is not None:
            return np.asarray(self.local_amplitude, float)
        return np.full(len(self), float(self.amplitude))

    def __len__(self) -> int:
        return int(self.arc_px.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Tidy columns (lists), with both pixel and mm values."""
        mm = self.mm_per_px
        return {
            "arc_px": [_r(v, 3) for v in self.arc_px],
            "arc_mm": None if mm is None else [_r(v * mm, 4) for v in self.arc_px],
            "row": [_r(v, 2) for v in self.centerline_rc[:, 0]],
            "col": [_r(v, 2) for v in self.centerline_rc[:, 1]],
            "diameter_px": [_r(v, 3) for v in self.diameter_px],
            "diameter_mm": None if mm is None else [_r(v * mm, 4) for v in self.diameter_px],
            "edge_diameter_px": [_r(v, 3) for v in self.edge_diameter_px],
            "flags": [int(f) for f in self.flags],
            "blur_sigma_px": _r(self.blur_sigma_px, 4),
            "amplitude": _r(self.amplitude, 6),
            "attenuation_per_px": _r(self.attenuation_per_px, 6),
            "mm_per_px": _r(mm, 6),
        }


@dataclass(frozen=True, eq=False)
class ReferenceWindow:
    """Where D_normal was measured: a window of the diameter profile (or a local trace)."""

    choice: str  # ReferenceChoice value
    start_px: float  # arc positions on the traced segment (px); NaN for an off-segment site
    end_px: float
    diameter_px: float
    centre_rc: tuple[float, float]
    description: str = ""

    def to_dict(self, mm_per_px: float | None) -> dict[str, Any]:
        d = {
            "choice": self.choice,
            "start_px": _r(self.start_px, 2),
            "end_px": _r(self.end_px, 2),
            "diameter_px": _r(self.diameter_px, 3),
            "centre_rc": _rc(self.centre_rc),
            "description": self.description,
        }
        mm = mm_per_px is not None  # uncalibrated: the mm keys are there, null (as every mm value)
        d["start_mm"] = _r(self.start_px * mm_per_px, 3) if mm else None
        d["end_mm"] = _r(self.end_px * mm_per_px, 3) if mm else None
        d["diameter_mm"] = _r(self.diameter_px * mm_per_px, 4) if mm else None
        return d


@dataclass(frozen=True, eq=False)
class StenosisResult:
    """WASID measurement of one segment of one run (see SPEC, ``measure --json``)."""

    file: str
    run_id: str
    segment: str
    frame_index: int
    percent_stenosis: float
    mld_px: float
    mld_rc: tuple[float, float]
    mld_arc_px: float
    reference_diameter_px: float
    reference_rc: tuple[float, float]
    reference_choice: str
    reference_window: ReferenceWindow
    lesion_start_px: float
    lesion_end_px: float
    interpolated_percent_stenosis: float | None
    interpolated_reference_px: float | None
    calibration: dict[str, Any]
    mm_per_px: float | None
    proximal_rc: tuple[float, float]
    distal_rc: tuple[float, float]
    model: str
    software: dict[str, Any]
    profile: DiameterProfile
    warnings: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    mode: str = "points"
    image: np.ndarray | None = field(default=None, repr=False)  # analysed opacified frame (H, W)
    percent_stenosis_sd: float = float("nan")  # 1 SD: noise + phantom-calibrated model floor (wasid module notes)
    mld_sd_px: float = float("nan")
    reference_sd_px: float = float("nan")
    feeding_profile: DiameterProfile | None = field(default=None, repr=False)
    frames: dict[str, Any] = field(default_factory=dict)  # frames used, per-frame results (measurement.FrameSeries)
    # not serialised: each frame's image as its diameters were read (FrameRead: the analysed frame
    # first, opacified against its background model on a single native frame, the frames' shared
    # noise removed)
    frames_read: tuple = field(default=(), repr=False)

    # ---- derived values -------------------------------------------------------
    def __repr__(self) -> str:  # the profile arrays made it 65,000 characters long
        return (f"StenosisResult(file={self.file!r}, segment={self.segment!r}, frame_index={self.frame_index}, "
                f"percent_stenosis={self.percent_stenosis:.2f}, percent_stenosis_sd={self.percent_stenosis_sd:.2f}, "
                f"meets_50={self.meets_50}, needs_confirmation={self.needs_confirmation}, "
                f"reference_choice={self.reference_choice!r}, warnings={len(self.warnings)})")

    @property
    def meets_50(self) -> bool:
        return bool(self.percent_stenosis >= 50.0)

    @property
    def needs_confirmation(self) -> bool:
        """Whether the >= 50% call is one a reader must confirm (a warning asks for it: the call is
        within the measurement's uncertainty of 50%, no bolus was seen along the segment, the points
        look swapped, or a clipped background beside the MLD or reference can have made the call)."""
        return any(CONFIRM_CALL in w for w in self.warnings)

    @property
    def call_text(self) -> str:
        """``"YES"`` or ``"no"``, followed by ``" (reader must confirm)"`` when :attr:`needs_confirmation`."""
        return call_text(self.meets_50, self.needs_confirmation)

    def _mm(self, px: float | None) -> float | None:
        if px is None or self.mm_per_px is None:
            return None
        return float(px) * self.mm_per_px

    @property
    def mld_mm(self) -> float | None:
        return self._mm(self.mld_px)

    @property
    def reference_diameter_mm(self) -> float | None:
        return self._mm(self.reference_diameter_px)

    @property
    def lesion_length_px(self) -> float:
        return float(self.lesion_end_px - self.lesion_start_px)

    @property
    def lesion_length_mm(self) -> float | None:
        return self._mm(self.lesion_length_px)

    @property
    def percent_stenosis_interval(self) -> tuple[float, float]:
        """+-2 SD interval of the percent stenosis (about 95% on the phantoms), within 0-100%."""
        return two_sd_interval(self.percent_stenosis, self.percent_stenosis_sd)

    def uncertainty_dict(self) -> dict[str, Any]:
        lo, hi = self.percent_stenosis_interval
        return {
            "percent_stenosis_sd": _r(self.percent_stenosis_sd, 2),
            "percent_stenosis_2sd_interval": [_r(lo, 2), _r(hi, 2)],
            "mld_sd_mm": _r(self._mm(self.mld_sd_px), 4),
            "reference_diameter_sd_mm": _r(self._mm(self.reference_sd_px), 4),
            "mld_sd_px": _r(self.mld_sd_px, 3),
            "reference_diameter_sd_px": _r(self.reference_sd_px, 3),
            "basis": "1 SD from the profile's quantum noise plus a model floor calibrated on phantoms, plus, where "
                     "the lumen model does not describe the profiles (parameters.model_misfit > 1), the "
                     "model/edge disagreement, the artery's own variation along the vessel "
                     "(parameters.along_vessel_sd_px) and, on a single native frame, the background model's "
                     "(parameters.background_sd); excludes reader and centerline mistakes",
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the SPEC keys first (deterministic rounding)."""
        mm = self.mm_per_px
        return {
            "file": self.file,
            "segment": self.segment,
            "frame_index": int(self.frame_index),
            "percent_stenosis": _r(self.percent_stenosis, 2),
            "meets_50": self.meets_50,
            "needs_confirmation": self.needs_confirmation,
            "mld_mm": _r(self.mld_mm, 4),
            "mld_rc": _rc(self.mld_rc),
            "reference_diameter_mm": _r(self.reference_diameter_mm, 4),
            "reference_rc": _rc(self.reference_rc),
            "reference_choice": self.reference_choice,
            "lesion_length_mm": _r(self.lesion_length_mm, 3),
            "calibration": self.calibration,
            "warnings": list(self.warnings),
            "software": self.software,
            "uncertainty": self.uncertainty_dict(),
            "run_id": self.run_id,
            "mld_px": _r(self.mld_px, 3),
            "reference_diameter_px": _r(self.reference_diameter_px, 3),
            "lesion_length_px": _r(self.lesion_length_px, 2),
            "interpolated_percent_stenosis": _r(self.interpolated_percent_stenosis, 2),
            "interpolated_reference_mm": _r(self._mm(self.interpolated_reference_px), 4),
            "reference_window": self.reference_window.to_dict(mm),
            "model": self.model,
            "mode": self.mode,
            "proximal_rc": _rc(self.proximal_rc),
            "distal_rc": _rc(self.distal_rc),
            "frames": self.frames,
            "parameters": self.parameters,
        }

    def to_row(self, **cells: Any) -> dict[str, Any]:
        """One flat row over :data:`ROW_COLUMNS` (see :func:`row_from_dict`); `cells` fill or replace cells."""
        return row_from_dict(self.to_dict(), **cells)


#: Columns of one result row, in order: the batch ``results.csv`` and the napari export write
#: exactly these (:meth:`StenosisResult.to_row`); an empty cell is not applicable or unknown.
#: ``path`` is the run (batch: relative to the batch folder); ``status`` ok/error with the
#: one-line ``error``; ``mode`` points/auto with the auto ``confidence``; ``*_row``/``*_col``
#: are pixels of the analysed frame; ``frames_used`` the frames combined (space-separated,
#: the analysed one first) with their ``frame_to_frame_sd``; ``frame_auto`` .. ``feeding_points`` are the reader's
#: overrides (``parameters["reader"]``); ``warnings`` joined by `` | ``; ``report``/``sr`` the
#: output files written for the row (batch: relative to the output folder). ``lesion`` ..
#: ``lesion_disagreement_sd``: a batch row that is one view of a named lesion (points file column
#: ``lesion``): the lesion's name, whether this view is the graded one (the most severe), the
#: lesion's graded percent and >= 50% call, and how far its views disagree (``lesion_grade``,
#: :mod:`stenosis.batch.lesions`); empty for rows of no lesion. ``needs_confirmation``: the
#: ``meets_50`` call is within the result's uncertainty of 50% (or otherwise flagged): a reader
#: must confirm it (:attr:`StenosisResult.needs_confirmation`). ``lesion_needs_confirmation``: a
#: reader must confirm the lesion's call over its views (:func:`stenosis.views.views_confirmation`).
ROW_COLUMNS: tuple[str, ...] = (
    "path", "status", "error", "segment", "mode", "confidence", "frame_index", "frames_used", "frame_to_frame_sd",
    "percent_stenosis", "percent_stenosis_sd", "meets_50",
    "mld_mm", "mld_px", "mld_row", "mld_col",
    "reference_diameter_mm", "reference_diameter_px", "reference_choice", "reference_row", "reference_col",
    "lesion_length_mm", "calibration_source", "mm_per_px",
    "proximal_row", "proximal_col", "distal_row", "distal_col",
    "frame_auto", "reference_mode", "reference_override", "mld_override", "waypoints", "feeding_points",
    "model", "warnings", "run_id", "software_version", "model_sha256", "report", "sr",
    "lesion", "lesion_graded", "lesion_percent_stenosis", "lesion_meets_50", "lesion_disagreement_points",
    "lesion_disagreement_sd", "needs_confirmation", "lesion_needs_confirmation",
)


def reader_without_frame(reader: Mapping[str, Any]) -> dict[str, Any]:
    """A result's ``parameters["reader"]`` with the analysed frame as the tool's choice (a
    ``frame`` entry is what records a reader's frame)."""
    return {k: v for k, v in reader.items() if k != "frame"}


def frame_chosen_by_tool(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` (a result's dict) with the analysed frame marked as the tool's choice.

    A caller that re-measures on the frame an earlier automatic measurement picked (napari
    pins it so that adjustments keep it; batch ``--auto``) passes it as ``frame``, which the
    library records as the reader's; this removes it from ``parameters["reader"]`` so the
    audit and the ``frame_auto`` column say the tool chose it. Returns a copy (the result's
    own dicts are left as they are)."""
    params = record.get("parameters")
    if not isinstance(params, Mapping) or not isinstance(params.get("reader"), Mapping):
        return dict(record)
    return {**record, "parameters": {**params, "reader": reader_without_frame(params["reader"])}}


def _reader_cells(reader: Mapping[str, Any] | None) -> dict[str, Any]:
    """The reader-override columns from ``parameters["reader"]`` (all empty without one)."""
    if reader is None:
        return {}
    mld = reader.get("mld_rc")
    return {
        "frame_auto": "frame" not in reader,
        "reference_mode": "manual" if reader.get("reference_rc") else reader.get("reference_choice") or "rule",
        "reference_override": reader.get("reference_rc") is not None,
        "mld_override": None if mld is None else ";".join(f"{v:g}" for v in mld),
        "waypoints": ";".join(f"{p[0]:g} {p[1]:g}" for p in reader.get("waypoints_rc") or []),  # as the points file
        "feeding_points": reader.get("feeding_proximal_rc") is not None,
    }


def row_from_dict(d: Mapping[str, Any], **cells: Any) -> dict[str, Any]:
    """Flatten a result dict (``StenosisResult.to_dict()`` or a batch journal row) into
    :data:`ROW_COLUMNS`; `cells` fill or replace cells. None becomes ``""``."""
    unknown = set(cells) - set(ROW_COLUMNS)
    if unknown:
        raise KeyError(f"not row columns: {sorted(unknown)}")

    def at(key: str, i: int) -> Any:
        p = d.get(key)
        return None if p is None else p[i]

    cal = d.get("calibration") or {}
    mm = cal.get("mm_per_px") if isinstance(cal, Mapping) else None
    sw = d.get("software") or {}
    params = d.get("parameters")
    warnings = d.get("warnings") or []
    grade = d.get("lesion_grade") or {}
    if grade.get("note") and d.get("status", "ok") == "ok" and isinstance(warnings, list):
        warnings = [*warnings, grade["note"]]
    row = {
        "path": d.get("path") or d.get("file"),
        "status": d.get("status", "ok"),
        "error": d.get("error"),
        "segment": d.get("segment"),
        "mode": d.get("mode"),
        "confidence": d.get("confidence"),
        "frame_index": d.get("frame_index"),
        "frames_used": " ".join(str(t) for t in (d.get("frames") or {}).get("used") or []) or None,
        "frame_to_frame_sd": (d.get("frames") or {}).get("frame_to_frame_sd"),
        "percent_stenosis": d.get("percent_stenosis"),
        "percent_stenosis_sd": (d.get("uncertainty") or {}).get("percent_stenosis_sd"),
        "meets_50": d.get("meets_50"),
        "needs_confirmation": d.get("needs_confirmation"),
        "mld_mm": d.get("mld_mm"),
        "mld_px": d.get("mld_px"),
        "mld_row": at("mld_rc", 0),
        "mld_col": at("mld_rc", 1),
        "reference_diameter_mm": d.get("reference_diameter_mm"),
        "reference_diameter_px": d.get("reference_diameter_px"),
        "reference_choice": d.get("reference_choice"),
        "reference_row": at("reference_rc", 0),
        "reference_col": at("reference_rc", 1),
        "lesion_length_mm": d.get("lesion_length_mm"),
        "calibration_source": cal.get("source") if isinstance(cal, Mapping) else None,
        # the pixel size the mm values use: non-square pixels' geometric mean (the JSON keeps both)
        "mm_per_px": (round(float(np.sqrt(float(mm[0]) * float(mm[-1]))), 6) if mm else None),
        "proximal_row": at("proximal_rc", 0),
        "proximal_col": at("proximal_rc", 1),
        "distal_row": at("distal_rc", 0),
        "distal_col": at("distal_rc", 1),
        **_reader_cells(params.get("reader") if isinstance(params, Mapping) else None),
        "model": d.get("model"),
        "warnings": " | ".join(str(w) for w in warnings) if isinstance(warnings, list) else str(warnings),
        "run_id": d.get("run_id"),
        "software_version": sw.get("version"),
        "model_sha256": sw.get("model_sha256"),
        "report": d.get("report"),
        "sr": d.get("sr"),
        "lesion": d.get("lesion"),
        "lesion_graded": grade.get("graded"),
        "lesion_percent_stenosis": grade.get("percent_stenosis"),
        "lesion_meets_50": grade.get("meets_50"),
        "lesion_disagreement_points": grade.get("disagreement_points"),
        "lesion_disagreement_sd": grade.get("disagreement_sd"),
        "lesion_needs_confirmation": grade.get("needs_confirmation"),
        **cells,
    }
    return {k: ("" if row.get(k) is None else row[k]) for k in ROW_COLUMNS}
