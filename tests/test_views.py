"""One lesion in several views: the most severe view is graded, the disagreement reported."""
from __future__ import annotations

import json
import warnings

import pytest

import stenosis
from stenosis.errors import MeasurementError


@pytest.fixture(scope="module")
def two_views(tmp_path_factory):
    """The same artery 'seen' twice: 45% in one projection, 60% in the other (as an eccentric
    lumen narrower in one direction would look)."""
    from _phantoms import phantom

    tmp = tmp_path_factory.mktemp("views")
    return [phantom("view_a_45", tmp), phantom("view_b_60", tmp)]


def test_the_most_severe_view_is_graded(two_views):
    views = [{"run": dcm, "proximal": tuple(t["proximal_rc"]), "distal": tuple(t["distal_rc"])} for dcm, t in two_views]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stenosis.measure_views(views, "M1")
    truths = [t["percent_stenosis"] for _, t in two_views]
    assert res.graded_index == 1
    assert res.percent_stenosis == pytest.approx(truths[1], abs=3.0)
    assert res.meets_50
    assert res.disagreement_points == pytest.approx(truths[1] - truths[0], abs=4.0)
    assert res.disagreement_sd > 2
    d = res.to_dict()
    assert d["graded_view"] == 1 and len(d["views"]) == 2 and "most severe" in d["rule"]
    json.dumps(d)


def test_a_view_without_run_is_a_clear_error():
    with pytest.raises(MeasurementError, match="view 1 has no run"):
        stenosis.measure_views([{"proximal": (1, 2), "distal": (3, 4)}], "M1")
    # a caller's malformed views are a ValueError, as measure's malformed inputs are
    with pytest.raises(ValueError, match="view 1 has no run"):
        stenosis.measure_views([{"proximal": (1, 2), "distal": (3, 4)}], "M1")
    with pytest.raises(stenosis.ReaderInputError, match="at least one view"):
        stenosis.measure_views([], "M1")


def test_a_view_with_an_unknown_key_is_a_clear_error():
    with pytest.raises(MeasurementError, match="view 1: segmnt is not a view's input"):
        stenosis.measure_views([{"run": "x.dcm", "proximal": (1, 2), "distal": (3, 4), "segmnt": "M1"}], "M1")


def test_a_view_that_fails_is_named_in_the_error(tmp_path):
    from stenosis.errors import StenosisError

    with pytest.raises(StenosisError, match=r"^view 1 \(nope\.dcm\): "):
        stenosis.measure_views([{"run": tmp_path / "nope.dcm", "proximal": (1, 2), "distal": (3, 4)}], "M1")


def test_grade_views_rule():
    from stenosis.views import grade_views

    g = grade_views([30.0, 62.0, 62.0, 45.0], [1.0, 3.0, 1.0, 4.0])
    assert (g.graded_index, g.disagreement_points) == (1, 32.0)  # the most severe; the first of equals
    assert g.disagreement_sd == pytest.approx(32 / (10 ** 0.5))
    assert grade_views([50.0], [None]).disagreement_points == 0
    with pytest.raises(MeasurementError):
        grade_views([], [])


def test_views_confirmation_rule():
    """A lesion's call over its views (stenosis.views.views_confirmation): the graded view
    borderline; a 'no' with any view borderline; a 'YES' whose views' own (area) readings differ
    beyond 2 combined SDs, one below 50%; nothing otherwise (an eccentric lumen: readings apart,
    areas alike)."""
    from stenosis.views import asks_for_itself, views_confirmation

    no = [False, False]
    assert views_confirmation([70.0, 65.0], [3.0, 3.0], no, 0) is None  # agree, clear
    assert views_confirmation([52.0, 40.0], [3.0, 3.0], no, 0) is not None  # graded borderline
    assert views_confirmation([75.0, 48.0], [10.0, 10.0], no, 0) is None  # 27 apart < 2 x 14.1
    why = views_confirmation([70.0, 40.0], [5.0, 5.0], no, 0)  # 30 apart > 2 x 7.1 (areas default to readings)
    assert why is not None and "view 2 40.0%" in why and "4.2 x their combined SD" in why
    # an eccentric lumen: projected widths 70 / 40%, the area readings alike: no contradiction
    assert views_confirmation([70.0, 40.0], [5.0, 5.0], no, 0, area=([56.0, 54.0], [5.0, 5.0])) is None
    # the area readings apart, the other view's below 50%: one view's trace or frame is suspect
    why = views_confirmation([70.0, 40.0], [5.0, 5.0], no, 0, area=([70.0, 40.0], [5.0, 5.0]), names=["a", "b"])
    assert why is not None and why.startswith("the views' own readings") and "a (graded) 70.0%, b 40.0%" in why
    assert views_confirmation([70.0, 55.0], [2.0, 2.0], no, 0) is None  # both 'YES'
    assert views_confirmation([30.0, 20.0], [2.0, 20.0], no, 0) is not None  # a 'no', view 2 reaches 50
    assert views_confirmation([30.0, 20.0], [2.0, 2.0], [False, True], 0) is not None  # view 2 asks for itself
    assert views_confirmation([70.0, 40.0], [5.0, None], no, 0) is None  # SD unknown: no claim
    # a view's own borderline warning is judged on its reading, not counted as asking for itself
    from stenosis.wasid import borderline_warning

    own = borderline_warning(48.0, 3.0)
    assert own is not None and not asks_for_itself([own])
    assert asks_for_itself(["no frame differs from another: no bolus seen; have a reader confirm the >= 50% call"])
