"""One lesion seen in several views (biplane A/B runs, working projections): WASID grades
the most severe.

A lumen narrowed eccentrically looks narrower in one projection than in another; WASID's
"diameter at the most severe stenosis" is read in the view that shows it most severe, and a
core lab looks at every projection. :func:`measure_views` measures each view with
:func:`stenosis.measure` (its own run, points and frame), grades the view with the largest
percent stenosis, and reports how far the views disagree.

Each view's measurement reads the lumen densitometrically (one iodine amplitude per run): an
elliptical lumen reads its area-equivalent diameter from every side, and the views of an
eccentric lesion would all look alike. When grading views, each view is read a second way at
its lesion: the lesion core's pooled free amplitude over the run's (k,
:func:`stenosis.diameter.shape.lesion_amplitude_ratio`) gives the projected width MLD / sqrt(k).
k is weighed by the core's profiles on every frame read (their likelihood) against a prior
that the lumen is round (log k Gaussian around 0, SD ``view_eccentricity_prior_sd``): where the
profiles resolve the lumen k follows them; where they do not (a slit below the blur, noise,
background structure that moves k as much on the normal artery of the same image) it stays
near 1 and the area reading stands, the SD saying how uncertain it is. Too few usable profiles at the lesion: the area
reading (the view's own result). A single view's :func:`stenosis.measure` is not changed by
any of this.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MeasurementError, ReaderInputError, StenosisError
from .measurement import measure
from .params import DEFAULT_PARAMS, MeasureParams
from .reader import ReaderInputs
from .result import CONFIRM_CALL, StenosisResult, call_text
from .wasid import borderline_warning, is_borderline_warning

__all__ = ["ViewsResult", "ViewsGrade", "ViewReading", "measure_views", "grade_views", "view_reading",
           "views_confirmation", "grading_rule", "GRADING_RULE", "AREA", "PROJECTED_WIDTH"]

GRADING_RULE = "WASID: the view with the most severe stenosis (largest percent stenosis) is graded"
#: a view's readings: the measurement's own (densitometric: the lumen's area-equivalent diameter)
#: and the projected width of a non-round lumen (the lesion core's amplitude ratio)
AREA = "area"
PROJECTED_WIDTH = "projected width"
#: what one view may give besides its run: a reader's inputs but the artery and model (the lesion's)
VIEW_KEYS = frozenset(f.name for f in fields(ReaderInputs)) - {"segment", "model"}


@dataclass(frozen=True)
class ViewsGrade:
    """Which view of one lesion is graded and how far the views disagree."""

    graded_index: int
    disagreement_points: float
    disagreement_sd: float


def grade_views(percents: Sequence[float], sds: Sequence[float | None]) -> ViewsGrade:
    """The WASID grade of one lesion from its views' percent stenosis (and 1-SD uncertainties):
    the view with the largest percent is graded (the first of equals); the disagreement is the
    largest minus the smallest percent, in points and over the two views' combined SD (NaN when
    an SD is unknown). Used by :func:`measure_views` and by a batch's ``lesion`` groups."""
    p = np.asarray(percents, dtype=float)
    if p.size == 0 or not np.all(np.isfinite(p)):
        raise MeasurementError("grading a lesion needs every view's percent stenosis")
    s = np.array([np.nan if v is None else float(v) for v in sds], dtype=float)
    i, j = int(np.argmax(p)), int(np.argmin(p))
    return ViewsGrade(i, float(p[i] - p[j]), float((p[i] - p[j]) / max(np.hypot(s[i], s[j]), 1e-9)))


def asks_for_itself(warnings_: Sequence[str]) -> bool:
    """Whether one view's warnings ask a reader to confirm for a reason other than its own
    borderline percent (which the lesion's grade judges on the view's reading)."""
    return any(CONFIRM_CALL in w and not is_borderline_warning(w) for w in warnings_ or ())


def views_confirmation(percents: Sequence[float], sds: Sequence[float | None], asks: Sequence[bool],
                       graded_index: int, params: MeasureParams = DEFAULT_PARAMS, *,
                       area: tuple[Sequence[float], Sequence[float | None]] | None = None,
                       names: Sequence[str] | None = None) -> str | None:
    """Why a reader must confirm a lesion's graded >= 50% call over its views, or None.

    ``percents``/``sds``: each view's graded reading and its 1-SD uncertainty; ``asks``: whether
    the view's own result asks a reader for a reason of its own (no bolus seen, a mask holding
    iodine; not its borderline percent, judged here on the reading). A view is borderline when
    its reading is (:func:`stenosis.wasid.borderline_warning`) or it asks. A reader confirms
    when the graded view is borderline; when the grade is below 50% and any view is (that view
    could be the most severe); and when the grade is >= 50% but the views' own results (``area``:
    percents and SDs, densitometric readings of the lumen's area, which an eccentric lumen does
    not change from view to view; default the readings) differ by more than 2 combined SDs
    between the graded view and a view whose own result is below 50%: the call rests on one view
    that another contradicts beyond their noise (a misplaced trace, an overlap, a wrong frame in
    one of them). ``names``: how the reason names each view (default "view 1", "view 2", ...).
    Used by :attr:`ViewsResult.needs_confirmation` and a batch's ``lesion`` groups."""
    p = [float(v) for v in percents]
    name = list(names) if names is not None else [f"view {k + 1}" for k in range(len(p))]
    s = [float("nan") if v is None else float(v) for v in sds]
    ap, asd = (p, s) if area is None else ([float(v) for v in area[0]],
                                           [float("nan") if v is None else float(v) for v in area[1]])

    def borderline(k: int) -> bool:
        return bool(asks[k]) or borderline_warning(p[k], s[k], params) is not None

    g = graded_index
    if borderline(g):
        why = ("its result asks a reader" if asks[g] else
               f"its reading {p[g]:.1f}% is borderline (within reach of 50% by its SD or the borderline margin)")
        return f"the graded {name[g]}: {why}"
    if p[g] < 50.0:
        near = [name[k] for k in range(len(p)) if borderline(k)]
        return f"{near[0]} is borderline and could be the most severe" if near else None
    for k in range(len(p)):
        combined = float(np.hypot(asd[g], asd[k]))
        if k != g and ap[k] < 50.0 and np.isfinite(combined) and abs(ap[g] - ap[k]) > 2.0 * combined:
            return (f"the views' own readings of the lumen's area, which an eccentric lumen does not change, differ: "
                    f"{name[g]} (graded) {ap[g]:.1f}%, {name[k]} {ap[k]:.1f}%, "
                    f"{abs(ap[g] - ap[k]) / max(combined, 1e-9):.1f} x their combined SD apart: check both traces")
    return None


def grading_rule(reading: str, k: float = float("nan"), k_sd: float = float("nan")) -> str:
    """The rule a lesion is graded by, stated with how its graded view was read."""
    if reading == AREA:
        return GRADING_RULE
    return (f"{GRADING_RULE}; each view is read as its projected width, MLD / sqrt(k) (graded view: the lesion's "
            f"amplitude ratio k = {k:.2f} +- {k_sd:.2f}; 1 is a round lumen)")


@dataclass(frozen=True)
class ViewReading:
    """How one view's lesion is read for the grade: ``reading`` is :data:`PROJECTED_WIDTH` or
    :data:`AREA`; ``percent_stenosis`` / ``percent_stenosis_sd`` / ``mld_px`` are that reading's.
    ``k`` / ``k_sd``: the lesion core's pooled free amplitude over the run's and its SD, ``misfit``
    the core's misfit at k (NaN when not computed); ``note`` says why the area reading stands."""

    reading: str
    percent_stenosis: float
    percent_stenosis_sd: float
    mld_px: float
    k: float = float("nan")
    k_sd: float = float("nan")
    misfit: float = float("nan")
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def r(v, nd):
            return round(float(v), nd) if v is not None and np.isfinite(v) else None

        return {"reading": self.reading, "percent_stenosis": r(self.percent_stenosis, 2),
                "meets_50": bool(self.percent_stenosis >= 50.0) if np.isfinite(self.percent_stenosis) else None,
                "percent_stenosis_sd": r(self.percent_stenosis_sd, 2), "mld_px": r(self.mld_px, 3),
                "amplitude_ratio": r(self.k, 4), "amplitude_ratio_sd": r(self.k_sd, 4), "misfit": r(self.misfit, 3),
                "note": self.note}


def view_reading(result: StenosisResult, params: MeasureParams = DEFAULT_PARAMS) -> ViewReading:
    """The reading of one view's lesion used for the grade (module notes): the projected width
    MLD / sqrt(k), k the lesion core's amplitude ratio (its posterior under a prior of SD
    ``view_eccentricity_prior_sd`` on log k around a round lumen); the view's own (area)
    reading when the core has too few usable profiles."""
    from .diameter.shape import lesion_amplitude_ratio

    area = ViewReading(AREA, float(result.percent_stenosis), float(result.percent_stenosis_sd), float(result.mld_px))
    try:
        ar = lesion_amplitude_ratio(result, core_diameters=params.view_core_diameters,
                                    prior_sd=params.view_eccentricity_prior_sd, params=params)
    except (ValueError, FloatingPointError):  # pragma: no cover - a degenerate core
        ar = None
    if ar is None or not np.isfinite(ar.log_k):
        return replace(area, note="too few usable profiles at the lesion to read its projected width: "
                                  "the area reading is graded")
    if not np.isfinite(ar.structure_factor):
        return replace(area, note="the normal artery beside the lesion is too short to measure how far the lesion's "
                                  "shape can be trusted: the area reading is graded", misfit=ar.misfit)
    p0, s0 = float(result.percent_stenosis), float(result.percent_stenosis_sd)
    f = float(np.exp(-0.5 * ar.log_k))  # projected width over the area-equivalent diameter
    pct = 100.0 - (100.0 - p0) * f
    # the area reading's SD was scaled by the misfit at its MLD (the round lumen's, or a
    # non-round lumen's own where the area reading already read one); the share of it a
    # non-round lumen explains (the core's misfit at k against that) is taken out
    q_area = ((getattr(result, "parameters", None) or {}).get("model_misfit") or {}).get("mld")
    q_area = float(ar.misfit_area) if q_area is None or not np.isfinite(q_area) else float(q_area)
    explained = min(max(ar.misfit, 1.0) / max(q_area, 1.0), 1.0)
    sd = float(np.hypot(s0 * explained * f, (100.0 - p0) * 0.5 * f * ar.log_k_sd))
    return ViewReading(PROJECTED_WIDTH, float(pct), sd, float(result.mld_px * f), ar.k, float(ar.k * ar.log_k_sd),
                       ar.misfit)


@dataclass(frozen=True, eq=False)
class ViewsResult:
    """Every view's measurement of one lesion, the reading of each used for the grade and the
    graded one. ``views`` are the views' own results (area readings, as :func:`stenosis.measure`);
    ``readings`` say per view which reading was graded (:class:`ViewReading`); the grade, its
    percent and the disagreement are the readings'."""

    views: tuple[StenosisResult, ...]
    graded_index: int
    rule: str = GRADING_RULE
    readings: tuple[ViewReading, ...] | None = None
    params: MeasureParams = field(default=DEFAULT_PARAMS, repr=False)

    def _readings(self) -> tuple[ViewReading, ...]:
        if self.readings is not None:
            return self.readings
        return tuple(ViewReading(AREA, float(v.percent_stenosis), float(v.percent_stenosis_sd), float(v.mld_px))
                     for v in self.views)

    @property
    def graded(self) -> StenosisResult:
        return self.views[self.graded_index]

    @property
    def graded_reading(self) -> ViewReading:
        """The graded view's reading (projected width or area)."""
        return self._readings()[self.graded_index]

    @property
    def percent_stenosis(self) -> float:
        return self.graded_reading.percent_stenosis

    @property
    def meets_50(self) -> bool:
        return bool(self.percent_stenosis >= 50.0)

    @property
    def confirmation_reason(self) -> str | None:
        """Why a reader must confirm the graded call (:func:`views_confirmation`), or None."""
        rs = self._readings()
        return views_confirmation([r.percent_stenosis for r in rs], [r.percent_stenosis_sd for r in rs],
                                  [asks_for_itself(v.warnings) for v in self.views], self.graded_index, self.params,
                                  area=([v.percent_stenosis for v in self.views],
                                        [v.percent_stenosis_sd for v in self.views]))

    @property
    def needs_confirmation(self) -> bool:
        """Whether a reader must confirm the graded call (:func:`views_confirmation`): the graded
        view is borderline, or (graded below 50%) another view is, or (graded >= 50%) the views'
        own (area) results differ beyond their combined 2 SD, one of them below 50%."""
        return self.confirmation_reason is not None

    @property
    def call_text(self) -> str:
        """``"YES"`` or ``"no"``, followed by ``" (reader must confirm)"`` when :attr:`needs_confirmation`."""
        return call_text(self.meets_50, self.needs_confirmation)

    def _grade(self) -> ViewsGrade:
        rs = self._readings()
        return grade_views([r.percent_stenosis for r in rs], [r.percent_stenosis_sd for r in rs])

    @property
    def disagreement_points(self) -> float:
        """Largest minus smallest percent stenosis over the views."""
        return self._grade().disagreement_points

    @property
    def disagreement_sd(self) -> float:
        """The views' disagreement over their combined uncertainty (SDs): above 2, they see the
        lesion differently (an eccentric lumen, foreshortening, a misplaced trace)."""
        return self._grade().disagreement_sd

    def to_dict(self) -> dict[str, Any]:
        g = self.graded.to_dict()
        gr = self.graded_reading
        mld_mm = None if g["mld_mm"] is None else round(float(gr.mld_px * self.graded.mm_per_px), 4)
        return {
            "graded_view": self.graded_index,
            "rule": self.rule,
            "reading": gr.reading,
            "percent_stenosis": round(float(gr.percent_stenosis), 2),
            "percent_stenosis_sd": round(float(gr.percent_stenosis_sd), 2) if np.isfinite(gr.percent_stenosis_sd) else None,
            "meets_50": self.meets_50,
            "needs_confirmation": self.needs_confirmation,
            "confirmation_reason": self.confirmation_reason,
            "mld_mm": mld_mm,
            "reference_diameter_mm": g["reference_diameter_mm"],
            "segment": g["segment"],
            "disagreement_points": round(self.disagreement_points, 2),
            "disagreement_sd": round(self.disagreement_sd, 2) if np.isfinite(self.disagreement_sd) else None,
            "views": [v.to_dict() for v in self.views],
            "readings": [r.to_dict() for r in self._readings()],
        }


def measure_views(views: Sequence[Mapping[str, Any]], segment: Any, *, model: str = "unet",
                  params: MeasureParams = DEFAULT_PARAMS, projected_width: bool = True) -> ViewsResult:
    """Measure one lesion in several views and grade the most severe.

    Parameters
    ----------
    views : sequence of mappings
        One per view: ``run`` (path or AngioRun), ``proximal``, ``distal`` and optionally any
        other keyword of :func:`stenosis.measure` (``frame``, ``waypoints``, ``reference``, ...).
    segment : {"ICA", "M1", "V4", "BA"}
        The artery (the same in every view).
    projected_width : bool
        Read each view's lesion as its projected width where its profiles support it (module
        notes); False grades the views' own (area) readings.

    Returns
    -------
    ViewsResult
        Every view's result and reading, the graded one (largest percent stenosis) and the
        disagreement.
    """
    if not views:
        raise ReaderInputError("give at least one view (a run with its proximal and distal points)")
    results = []
    for k, v in enumerate(views):
        kw = dict(v)
        try:
            run = kw.pop("run")
        except KeyError:
            raise ReaderInputError(f"view {k + 1} has no run; give each view's run and points") from None
        unknown = sorted(set(kw) - VIEW_KEYS)
        if unknown:
            raise ReaderInputError(f"view {k + 1}: {', '.join(unknown)} is not a view's input; give run, proximal, "
                                   f"distal and optionally {', '.join(sorted(VIEW_KEYS - {'proximal', 'distal'}))}")
        try:
            results.append(measure(run, segment, model=model, params=params, **kw))
        except StenosisError as exc:  # the same error, naming the view it came from
            exc.args = (f"view {k + 1} ({_view_name(run)}): {exc}",)
            raise
    if projected_width:
        readings = tuple(view_reading(r, params) for r in results)
    else:
        readings = tuple(ViewReading(AREA, float(r.percent_stenosis), float(r.percent_stenosis_sd), float(r.mld_px))
                         for r in results)
    graded = grade_views([r.percent_stenosis for r in readings], [r.percent_stenosis_sd for r in readings])
    g = readings[graded.graded_index]
    rule = grading_rule(g.reading, g.k, g.k_sd)
    for k, r in enumerate(readings):
        if r.note:
            warnings.warn(f"view {k + 1}: {r.note}", stacklevel=2)
    return ViewsResult(tuple(results), graded.graded_index, rule, readings, params)


def _view_name(run: Any) -> str:
    """The file name of a view's run (path or AngioRun), for messages."""
    source = getattr(run, "source", run)
    try:
        return Path(source).name or str(source)
    except TypeError:
        return type(run).__name__
