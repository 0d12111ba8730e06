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
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import MeasurementError
from .measurement import measure
from .params import DEFAULT_PARAMS, MeasureParams
from .reader import ReaderInputs
from .result import StenosisResult

__all__ = ["ViewsResult", "measure_views", "GRADING_RULE"]

GRADING_RULE = "WASID: the view with the most severe stenosis (largest percent stenosis) is graded"
#: what one view may give besides its run: a reader's inputs but the artery and model (the lesion's)
VIEW_KEYS = frozenset(f.name for f in fields(ReaderInputs)) - {"segment", "model"}


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
    def disagreement_points(self) -> float:
        """Largest minus smallest percent stenosis over the views."""
        p = [v.percent_stenosis for v in self.views]
        return float(max(p) - min(p))

    @property
    def disagreement_sd(self) -> float:
        """The views' disagreement over their combined uncertainty (SDs): above 2, they see the
        lesion differently (an eccentric lumen, foreshortening, a misplaced trace)."""
        p = np.array([v.percent_stenosis for v in self.views])
        s = np.array([v.percent_stenosis_sd for v in self.views])
        i, j = int(np.argmax(p)), int(np.argmin(p))
        return float((p[i] - p[j]) / max(np.hypot(s[i], s[j]), 1e-9))

    def to_dict(self) -> dict[str, Any]:
        g = self.graded.to_dict()
        return {
            "graded_view": self.graded_index,
            "rule": self.rule,
            "percent_stenosis": g["percent_stenosis"],
            "meets_50": g["meets_50"],
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
        results.append(measure(run, segment, model=model, params=params, **kw))
    graded = int(np.argmax([r.percent_stenosis for r in results]))
    return ViewsResult(tuple(results), graded)
