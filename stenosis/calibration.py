"""Pixel size at the isocentre (mm/px) and where it came from.

X-ray angiography projects the patient onto a detector that sits farther from
the source than the vessel, so the detector pixel pitch (ImagerPixelSpacing)
overstates vessel sizes by the geometric magnification SID/SOD. The precedence
follows the project SPEC:

1. ``PixelSpacing`` -- already calibrated to the patient (``pixel_spacing``);
2. ``ImagerPixelSpacing x DistanceSourceToPatient / DistanceSourceToDetector``
   (``geometry``), the isocentre calibration of the positioner;
3. ``ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor``
   (``magnification``);
4. a reader's catheter (two points across a catheter of known French size,
   1 F = 1/3 mm) or manual value;
5. none: ``mm_per_px is None`` and mm values are not reported.

Every pixel size must lie in :data:`PLAUSIBLE_MM_PER_PX` (0.02-2 mm at the
isocentre). A file's source outside it is ignored with a warning (the next source
is tried, else the run is uncalibrated); a reader's value outside it is refused
(:func:`check_pixel_mm` raises :class:`~stenosis.errors.CalibrationError`; the CLI's
``--pixel-mm`` makes it a usage error, exit 2). So the work of a measurement, which
grows with mm/px, is bounded by the image and never by a unit error.

Isocentre calibration assumes the vessel lies near the isocentre (its error is the vessel's
distance from it along the beam over the source-isocentre distance); the beam's angle does not
enter it. A warning on steep positioner angles (a coronary habit: the heart lies off the
isocentre in a lateral view) fired on every lateral projection of the head, one of neuro
angiography's two standard views, and was removed (session 34). See DICOM PS3.3 C.8.7.1 /
C.8.19.6 (X-Ray Acquisition, XA Positioner) and, for the calibration errors of QCA, Hermiller JB
et al., Am J Cardiol 1992;69:1323-7, doi:10.1016/0002-9149(92)91226-S.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from .enums import CalibrationSource
from .errors import CalibrationError

__all__ = [
    "Calibration",
    "calibration_from_dataset",
    "catheter_calibration",
    "manual_calibration",
    "check_pixel_mm",
    "is_plausible_mm",
    "MM_PER_FRENCH",
    "PLAUSIBLE_MM_PER_PX",
]

#: One French (Charriere) is 1/3 mm of outer diameter.
MM_PER_FRENCH = 1.0 / 3.0
#: Plausible pixel size at the isocentre (mm), inclusive. X-ray angiography detectors have a
#: 0.1-0.4 mm pitch over a 1.1-2 magnification; outside this range a value is a unit error
#: (micrometres typed as mm) or a broken tag, and the work of a measurement, which scales
#: with mm/px, would be bounded by the calibration instead of by the image.
PLAUSIBLE_MM_PER_PX = (0.02, 2.0)

#: Every warning of an uncalibrated run contains this (a reader's calibration drops them).
UNCALIBRATED_MARK = "mm values are not reported"
_UNCALIBRATED_TAIL = f"{UNCALIBRATED_MARK}; give a catheter or manual calibration (--pixel-mm) to get them"
NO_MM_WARNING = (
    f"no calibration in the file (no PixelSpacing, ImagerPixelSpacing with SID/SOD or magnification): {_UNCALIBRATED_TAIL}"
)


def is_plausible_mm(value: float) -> bool:
    """True when ``value`` (mm per pixel) is a finite number inside :data:`PLAUSIBLE_MM_PER_PX`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and PLAUSIBLE_MM_PER_PX[0] <= value <= PLAUSIBLE_MM_PER_PX[1]


def check_pixel_mm(value: Any, *, what: str = "pixel size") -> float:
    """``value`` as a float when it is a plausible isocentre pixel size in mm, else CalibrationError.

    The one check of every pixel size a reader gives (``--pixel-mm``, ``measure(pixel_mm=)``,
    manual and catheter calibration); see :data:`PLAUSIBLE_MM_PER_PX`."""
    try:
        mm = float(value)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what} must be a number of mm per pixel (e.g. 0.2), got {value!r}") from None
    if not is_plausible_mm(mm):
        lo, hi = PLAUSIBLE_MM_PER_PX
        raise CalibrationError(
            f"{what} {mm:.4g} mm is outside the plausible range {lo:g}-{hi:g} mm per pixel at the isocentre; "
            "give mm per pixel (e.g. 0.2), not micrometres"
        )
    return mm


@dataclass(frozen=True)
class Calibration:
    """Pixel size at the isocentre.

    Attributes
    ----------
    mm_per_px : tuple of float (row_mm, col_mm) or None
        Size of one pixel at the isocentre in mm, along rows and along columns.
        None when the run is uncalibrated.
    source : CalibrationSource
        Where the value came from (``pixel_spacing``, ``geometry``, ``magnification``,
        ``catheter``, ``manual``, ``none``).
    detail : str
        Human-readable derivation (tags and values used).
    """

    mm_per_px: tuple[float, float] | None
    source: CalibrationSource
    detail: str = ""

    def __post_init__(self) -> None:
        source = CalibrationSource(self.source)
        object.__setattr__(self, "source", source)
        mm = self.mm_per_px
        if mm is not None:
            if isinstance(mm, (int, float)):
                mm = (mm, mm)
            mm = tuple(float(v) for v in mm)
            if len(mm) != 2 or not all(math.isfinite(v) and v > 0 for v in mm):
                raise CalibrationError(
                    f"mm per pixel must be two positive finite numbers (row, col), got {self.mm_per_px!r}"
                )
            mm = tuple(check_pixel_mm(v, what=f"{source.value} pixel size") for v in mm)
            object.__setattr__(self, "mm_per_px", mm)
        if (mm is None) != (source is CalibrationSource.NONE):
            raise CalibrationError(
                f"calibration source {source.value!r} does not match mm_per_px={mm!r}; "
                "use source 'none' exactly when mm_per_px is None"
            )

    @classmethod
    def none(cls, detail: str = "uncalibrated") -> "Calibration":
        """An uncalibrated run: mm values are not reported."""
        return cls(None, CalibrationSource.NONE, detail)

    @property
    def is_calibrated(self) -> bool:
        return self.mm_per_px is not None

    @property
    def mm_per_px_mean(self) -> float | None:
        """Mean of the row and column pixel sizes in mm, or None when uncalibrated."""
        if self.mm_per_px is None:
            return None
        return 0.5 * (self.mm_per_px[0] + self.mm_per_px[1])

    def to_dict(self) -> dict[str, Any]:
        """``{"mm_per_px": [row_mm, col_mm] | None, "source": "...", "detail": "..."}`` (JSON-ready;
        ``detail`` says how: the tags used, or a reader's catheter size and points)."""
        return {
            # 12 significant digits: drops float noise of SOD/SID products (0.1599999999999979)
            "mm_per_px": None if self.mm_per_px is None else [float(f"{v:.12g}") for v in self.mm_per_px],
            "source": self.source.value,
            "detail": self.detail,
        }


# --------------------------------------------------------------------------- dataset reading
_FG_SEQUENCES = ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")


def find_attribute(ds: Any, keyword: str) -> Any:
    """Value of ``keyword`` at the top level of ``ds`` or, for enhanced multi-frame
    objects, in the shared or first per-frame functional group (any macro sequence
    inside it). Returns None when absent or empty, and skips what cannot be parsed
    (pydicom converts values lazily: a corrupt element inside a sequence raises
    only when read)."""
    value = _get(ds, keyword)
    if value is not None:
        return value
    for fg_name in _FG_SEQUENCES:
        fg_seq = _get(ds, fg_name)
        if not fg_seq:
            continue
        try:
            group = fg_seq[0]
        except Exception:  # noqa: BLE001 - not a sequence (wrong VR)
            continue
        value = _get(group, keyword)
        if value is not None:
            return value
        try:
            tags = list(group.keys())
        except Exception:  # noqa: BLE001
            continue
        for tag in tags:
            try:
                elem = group[tag]
                if elem.VR != "SQ" or not elem.value:
                    continue
                value = _get(elem.value[0], keyword)
            except Exception:  # noqa: BLE001 - an unreadable macro is skipped
                continue
            if value is not None:
                return value
    return None


def _get(ds: Any, keyword: str) -> Any:
    try:
        value = ds.get(keyword, None)
    except Exception:  # a malformed value raises on conversion: treat as absent
        return None
    if value is None:
        return None
    if isinstance(value, (str, bytes)) and not str(value).strip():
        return None
    try:
        if len(value) == 0:  # empty multi-value / sequence
            return None
    except TypeError:
        pass
    return value


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out or None


def _spacing(value: Any) -> tuple[float, float] | None:
    vals = _floats(value)
    if not vals:
        return None
    if len(vals) == 1:
        vals = [vals[0], vals[0]]
    row, col = vals[0], vals[1]
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        return None
    return row, col


def _scalar(value: Any) -> float | None:
    vals = _floats(value)
    if not vals or not math.isfinite(vals[0]):
        return None
    return vals[0]


def positioner_angles(ds: Any) -> tuple[float | None, float | None]:
    """(PositionerPrimaryAngle, PositionerSecondaryAngle) in degrees, or None each."""
    return (
        _scalar(find_attribute(ds, "PositionerPrimaryAngle")),
        _scalar(find_attribute(ds, "PositionerSecondaryAngle")),
    )


def calibration_from_dataset(ds: Any) -> tuple[Calibration, list[str]]:
    """Isocentre calibration of a DICOM dataset by the SPEC precedence.

    A source whose tags are present but unusable (not positive numbers, SOD > SID,
    a pixel size outside :data:`PLAUSIBLE_MM_PER_PX`) is skipped for the next one;
    when none is left the run is uncalibrated and one warning says why.

    Parameters
    ----------
    ds : pydicom.Dataset
        Header of an XA/XRF image (pixel data not needed).

    Returns
    -------
    calibration : Calibration
    warnings : list of str
        One line each: tags present but unusable, no calibration at all.
    """
    rejected: list[str] = []
    cal = _from_pixel_spacing(ds, rejected)
    if cal is None:
        cal = _from_imager_pixel_spacing(ds, rejected)
    warnings: list[str] = []
    if cal is None:
        cal = Calibration.none("no usable calibration tags")
        warnings.append(f"{'; '.join(rejected)}: ignored, uncalibrated: {_UNCALIBRATED_TAIL}" if rejected
                        else NO_MM_WARNING)
    elif rejected:
        warnings.append(f"{'; '.join(rejected)}: ignored; calibrated from {cal.detail}")

    return cal, warnings


def _shown(raw: Any) -> str:
    """A header value as the file holds it, short (for messages)."""
    vals = list(raw) if hasattr(raw, "__iter__") and not isinstance(raw, (str, bytes)) else [raw]
    return "\\".join(str(v) for v in vals)[:40]


def _candidate(mm_rc: tuple[float, float], source: CalibrationSource, detail: str,
               rejected: list[str]) -> Calibration | None:
    """The calibration when both pixel sizes are plausible, else None with the reason in ``rejected``."""
    bad = [v for v in mm_rc if not is_plausible_mm(v)]
    if bad:
        rejected.append(f"{detail} gives {bad[0]:.4g} mm/px, outside the plausible range "
                        f"{PLAUSIBLE_MM_PER_PX[0]:g}-{PLAUSIBLE_MM_PER_PX[1]:g} mm/px")
        return None
    return Calibration(mm_rc, source, detail)


def _spacing_tag(ds: Any, keyword: str, rejected: list[str]) -> tuple[float, float] | None:
    """(row, col) of a spacing attribute; None when absent, or unusable (the reason in ``rejected``)."""
    raw = find_attribute(ds, keyword)
    if raw is None:
        return None
    value = _spacing(raw)
    if value is None:
        rejected.append(f"{keyword} {_shown(raw)} is not two positive numbers")
    return value


def _from_pixel_spacing(ds: Any, rejected: list[str]) -> Calibration | None:
    ps = _spacing_tag(ds, "PixelSpacing", rejected)
    if ps is None:
        return None
    return _candidate(ps, CalibrationSource.PIXEL_SPACING, f"PixelSpacing {ps[0]:g}\\{ps[1]:g} mm", rejected)


def _from_imager_pixel_spacing(ds: Any, rejected: list[str]) -> Calibration | None:
    """ImagerPixelSpacing x SOD / SID, else ImagerPixelSpacing / magnification."""
    ips = _spacing_tag(ds, "ImagerPixelSpacing", rejected)
    if ips is None:
        return None
    ips_text = f"ImagerPixelSpacing {ips[0]:g}\\{ips[1]:g} mm"
    # XA: DistanceSourceToPatient is source-to-isocentre; enhanced XA names it DistanceSourceToIsocenter
    raw_sod = find_attribute(ds, "DistanceSourceToPatient")
    if raw_sod is None:
        raw_sod = find_attribute(ds, "DistanceSourceToIsocenter")
    raw_sid = find_attribute(ds, "DistanceSourceToDetector")
    raw_mag = find_attribute(ds, "EstimatedRadiographicMagnificationFactor")
    sod, sid, mag = _scalar(raw_sod), _scalar(raw_sid), _scalar(raw_mag)
    tried = False
    if raw_sod is not None and raw_sid is not None:
        tried = True
        if sod is None or sid is None:
            rejected.append(f"DistanceSourceToPatient {_shown(raw_sod)} / DistanceSourceToDetector {_shown(raw_sid)} "
                            "are not numbers")
        elif sod <= 0 or sid <= 0:
            rejected.append(f"DistanceSourceToPatient {sod:g} mm / DistanceSourceToDetector {sid:g} mm are not positive")
        elif sod > sid:
            rejected.append(f"DistanceSourceToPatient {sod:g} mm is larger than DistanceSourceToDetector {sid:g} mm "
                            "(inconsistent: the isocentre lies between source and detector)")
        else:
            f = sod / sid
            cal = _candidate((ips[0] * f, ips[1] * f), CalibrationSource.GEOMETRY,
                             f"{ips_text} x SOD {sod:g} / SID {sid:g} mm", rejected)
            if cal is not None:
                return cal
    if raw_mag is not None:
        tried = True
        if mag is None or mag <= 0:
            rejected.append(f"EstimatedRadiographicMagnificationFactor {_shown(raw_mag)} is not a positive number")
        else:
            cal = _candidate((ips[0] / mag, ips[1] / mag), CalibrationSource.MAGNIFICATION,
                             f"{ips_text} / magnification {mag:g}", rejected)
            if cal is not None:
                return cal
    if not tried:
        rejected.append(f"{ips_text} without SID/SOD or magnification factor is the detector pitch, "
                        "not the isocentre size")
    return None


# --------------------------------------------------------------------------- reader calibrations
def catheter_calibration(
    p1_rc: Iterable[float], p2_rc: Iterable[float], french: float
) -> Calibration:
    """Calibration from two points placed across a catheter of known size.

    Parameters
    ----------
    p1_rc, p2_rc : (row, col) in pixels
        Points on opposite edges of the catheter, across its axis.
    french : float
        Catheter outer size in French (1 F = 1/3 mm).

    Returns
    -------
    Calibration
        Isotropic ``mm_per_px`` = (french / 3 mm) / distance_px, source ``catheter``.

    Notes
    -----
    Catheter calibration is only as good as the edge placement and assumes the
    catheter lies in the plane of the vessel (Hermiller et al. 1992,
    doi:10.1016/0002-9149(92)91226-S).
    """
    try:
        r1, c1 = (float(v) for v in p1_rc)
        r2, c2 = (float(v) for v in p2_rc)
        french = float(french)
    except (TypeError, ValueError):
        raise CalibrationError("catheter calibration needs two (row, col) points and a French size") from None
    if not (math.isfinite(french) and french > 0):
        raise CalibrationError(f"catheter size must be a positive number of French, got {french!r}")
    dist = math.hypot(r2 - r1, c2 - c1)
    if not math.isfinite(dist) or dist < 1.0:
        raise CalibrationError(
            f"catheter points are {dist:.2f} px apart; place them on opposite edges of the catheter"
        )
    mm = french * MM_PER_FRENCH
    mpp = mm / dist
    if not is_plausible_mm(mpp):
        lo, hi = PLAUSIBLE_MM_PER_PX
        raise CalibrationError(
            f"catheter calibration gives {mpp:.4g} mm/px ({french:g} F over {dist:.1f} px), outside the plausible "
            f"{lo:g}-{hi:g} mm; place the points on the catheter's edges and check its French size"
        )
    return Calibration((mpp, mpp), CalibrationSource.CATHETER,
                       f"catheter {french:g} F ({mm:.3f} mm) over {dist:.2f} px, points ({r1:.1f}, {c1:.1f})-({r2:.1f}, {c2:.1f})")


def manual_calibration(mm_per_px: float | tuple[float, float]) -> Calibration:
    """A reader-given pixel size in mm at the isocentre (one number or (row, col))."""
    try:
        if isinstance(mm_per_px, (int, float)):
            value = (float(mm_per_px), float(mm_per_px))
        else:
            value = tuple(float(v) for v in mm_per_px)
    except (TypeError, ValueError):
        raise CalibrationError(f"manual calibration must be a number of mm per pixel, got {mm_per_px!r}") from None
    if len(value) != 2:
        raise CalibrationError(f"manual calibration must be one number or (row, col) mm per pixel, got {mm_per_px!r}")
    value = tuple(check_pixel_mm(v, what="manual pixel size") for v in value)
    return Calibration(value, CalibrationSource.MANUAL, f"manual {value[0]:g}\\{value[1]:g} mm/px")
