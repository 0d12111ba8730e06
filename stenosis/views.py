"""One lesion seen in several views (biplane A/B runs, working projections): WASID grades
the most severe.

A lumen narrowed eccentrically looks narrower in one projection than in another; WASID's
"diameter at the most severe stenosis" is read in the view that shows it most severe, and a
core lab looks at every projection. :func:`measure_views` measures each view with
:func:`stenosis.measure` (its own run, points and frame), grades the view with the largest
percent stenosis, and reports how far the views disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MeasurementError, StenosisError
from .measurement import measure
from .params import DEFAULT_PARAMS, MeasureParams
from .reader import ReaderInputs
from .result import StenosisResult, call_text

__all__ = ["ViewsResult", "ViewsGrade", "measure_views", "grade_views", "GRADING_RULE"]

GRADING_RULE = "WASID: the view with the most severe stenosis (largest percent stenosis) is graded"
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


@dataclass(frozen=True, eq=False)
class ViewsResult:
    """Every view's measurement of one lesion and the graded one."""

    views: tuple[StenosisResult, ...]
    graded_index: int
    rule: str = GRADING_RULE

    @property
    def graded(self) -> StenosisResult:
        return self.views[self.graded_index]

    @property
    def percent_stenosis(self) -> float:
        return self.graded.percent_stenosis

    @property
    def meets_50(self) -> bool:
        return self.graded.meets_50

    @property
    def needs_confirmation(self) -> bool:
        """Whether a reader must confirm the graded call: the graded view's call is borderline, or
        (graded below 50%) another view's is."""
        return self.graded.needs_confirmation or (not self.meets_50 and any(v.needs_confirmation for v in self.views))

    @property
    def call_text(self) -> str:
        """``"YES"`` or ``"no"``, followed by ``" (reader must confirm)"`` when :attr:`needs_confirmation`."""
        return call_text(self.meets_50, self.needs_confirmation)

    def _grade(self) -> ViewsGrade:
        return grade_views([v.percent_stenosis for v in self.views], [v.percent_stenosis_sd for v in self.views])

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
        return {
            "graded_view": self.graded_index,
            "rule": self.rule,
            "percent_stenosis": g["percent_stenosis"],
            "meets_50": g["meets_50"],
            "needs_confirmation": self.needs_confirmation,
            "mld_mm": g["mld_mm"],
            "reference_diameter_mm": g["reference_diameter_mm"],
            "segment": g["segment"],
            "disagreement_points": round(self.disagreement_points, 2),
            "disagreement_sd": round(self.disagreement_sd, 2) if np.isfinite(self.disagreement_sd) else None,
            "views": [v.to_dict() for v in self.views],
        }


def measure_views(views: Sequence[Mapping[str, Any]], segment: Any, *, model: str = "unet",
                  params: MeasureParams = DEFAULT_PARAMS) -> ViewsResult:
    """Measure one lesion in several views and grade the most severe.

    Parameters
    ----------
    views : sequence of mappings
        One per view: ``run`` (path or AngioRun), ``proximal``, ``distal`` and optionally any
        other keyword of :func:`stenosis.measure` (``frame``, ``waypoints``, ``reference``, ...).
    segment : {"ICA", "M1", "V4", "BA"}
        The artery (the same in every view).

    Returns
    -------
    ViewsResult
        Every view's result, the graded one (largest percent stenosis) and the disagreement.
    """
    if not views:
        raise MeasurementError("give at least one view (a run with its proximal and distal points)")
    results = []
    for k, v in enumerate(views):
        kw = dict(v)
        try:
            run = kw.pop("run")
        except KeyError:
            raise MeasurementError(f"view {k + 1} has no run; give each view's run and points") from None
        unknown = sorted(set(kw) - VIEW_KEYS)
        if unknown:
            raise MeasurementError(f"view {k + 1}: {', '.join(unknown)} is not a view's input; give run, proximal, "
                                   f"distal and optionally {', '.join(sorted(VIEW_KEYS - {'proximal', 'distal'}))}")
        try:
            results.append(measure(run, segment, model=model, params=params, **kw))
        except StenosisError as exc:  # the same error, naming the view it came from
            exc.args = (f"view {k + 1} ({_view_name(run)}): {exc}",)
            raise
    graded = grade_views([r.percent_stenosis for r in results], [r.percent_stenosis_sd for r in results])
    return ViewsResult(tuple(results), graded.graded_index)


def _view_name(run: Any) -> str:
    """The file name of a view's run (path or AngioRun), for messages."""
    source = getattr(run, "source", run)
    try:
        return Path(source).name or str(source)
    except TypeError:
        return type(run).__name__
