"""Views of one lesion in a batch: rows of a points file with the same ``lesion`` name.

Each view is measured as its own task (its own row, report, resume entry); once the rows are
in, every row of a lesion gets ``lesion_grade``: the WASID grade of the lesion over its views
(:func:`stenosis.views.grade_views`, the rule of :func:`stenosis.measure_views`: the most
severe view is graded) and the disagreement between them. The grade is recomputed from the
journal whenever the outputs are written (so ``--resume`` grades lesions whose views were
measured in different invocations). A lesion with a view that could not be measured is not
graded (the missing view could be the most severe): its rows say so in ``lesion_grade.note``.
Views of different arteries are refused before measuring (:func:`stenosis.batch.tasks.lesion_problems`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..views import AREA, GRADING_RULE, asks_for_itself, grade_views, grading_rule, views_confirmation
from .outputs import row_sort_key

__all__ = ["annotate_lesions"]


def _reading(row: Mapping[str, Any]) -> dict[str, Any]:
    """The reading a view's row is graded with: its ``view_reading`` (projected width or area,
    :func:`stenosis.views.view_reading`), else (a row of an older journal) its own result (area)."""
    vr = row.get("view_reading") or {}
    if vr.get("percent_stenosis") is not None:
        return dict(vr)
    return {"reading": AREA, "percent_stenosis": float(row["percent_stenosis"]), "meets_50": row.get("meets_50"),
            "percent_stenosis_sd": (row.get("uncertainty") or {}).get("percent_stenosis_sd")}


def annotate_lesions(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each row with a ``lesion`` name given ``lesion_grade``.

    ``lesion_grade`` is ``{graded, graded_key, percent_stenosis, meets_50, needs_confirmation,
    confirmation_reason, reading, disagreement_points, disagreement_sd, n_views, rule, note}``:
    ``graded`` is true on the lesion's graded view, false on its other views;
    ``percent_stenosis``/``meets_50`` are the lesion's (the graded view's reading: ``reading``,
    each row's ``view_reading`` as ``stenosis.measure_views`` grades it); ``needs_confirmation``
    and its reason as :func:`stenosis.views.views_confirmation` decides them. When the lesion
    cannot be graded, ``graded`` and the numbers are None and ``note`` says why. Rows without ``lesion`` are returned unchanged (an older ``lesion_grade`` removed).
    """
    out = [dict(r) for r in rows]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in out:
        r.pop("lesion_grade", None)
        if r.get("lesion"):
            groups.setdefault(str(r["lesion"]), []).append(r)
    for name, group in groups.items():
        group.sort(key=row_sort_key)
        grade: dict[str, Any] = {"graded": None, "graded_key": None, "percent_stenosis": None, "meets_50": None,
                                 "needs_confirmation": None, "confirmation_reason": None, "reading": None,
                                 "disagreement_points": None, "disagreement_sd": None, "n_views": len(group),
                                 "rule": GRADING_RULE, "note": None}
        graded_index = None
        failed = [r for r in group if r.get("status") != "ok" or r.get("percent_stenosis") is None]
        segments = sorted({str(r.get("segment")) for r in group})
        if failed:
            grade["note"] = (f"lesion {name!r} not graded: {', '.join(str(r.get('path')) for r in failed)} could not be "
                             "measured (see its row); the missing view could be the most severe")
        elif len(segments) > 1:
            grade["note"] = f"lesion {name!r} not graded: its views grade different arteries ({', '.join(segments)})"
        else:
            readings = [_reading(r) for r in group]
            g = grade_views([float(r["percent_stenosis"]) for r in readings],
                            [r.get("percent_stenosis_sd") for r in readings])
            graded_index = g.graded_index
            best, how = group[graded_index], readings[graded_index]
            k, k_sd = how.get("amplitude_ratio"), how.get("amplitude_ratio_sd")
            grade.update(graded_key=best.get("key") or best.get("path"), percent_stenosis=how["percent_stenosis"],
                         meets_50=how.get("meets_50"), reading=how["reading"],
                         rule=grading_rule(how["reading"], float("nan") if k is None else k,
                                           float("nan") if k_sd is None else k_sd),
                         disagreement_points=round(g.disagreement_points, 2),
                         disagreement_sd=round(g.disagreement_sd, 2) if math.isfinite(g.disagreement_sd) else None)
            why = views_confirmation([float(r["percent_stenosis"]) for r in readings],
                                     [r.get("percent_stenosis_sd") for r in readings],
                                     [asks_for_itself(r.get("warnings") or []) for r in group], graded_index,
                                     area=([float(r["percent_stenosis"]) for r in group],
                                           [(r.get("uncertainty") or {}).get("percent_stenosis_sd") for r in group]),
                                     names=[f"view {k + 1} ({Path(str(r.get('path'))).name})" for k, r in enumerate(group)])
            grade.update(needs_confirmation=why is not None, confirmation_reason=why)
        for k, r in enumerate(group):
            r["lesion_grade"] = {**grade, "graded": None if graded_index is None else k == graded_index}
    return out
