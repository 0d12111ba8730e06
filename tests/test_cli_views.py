"""`stenosis measure PATH PATH ...`: several views of one lesion (issue 18, item 3).

Two bundled M1 samples stand in for two projections of one lesion (their true percent
stenosis differs: the graded view must be the more severe one, in either order), measured
with the points of their ``.truth.json``; the CLI must give exactly what
``stenosis.measure_views`` gives through the API.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
from click.testing import CliRunner

import stenosis
from stenosis.cli.main import cli
from stenosis.views import GRADING_RULE

NAMES = ("m1_subtracted_pixelspacing", "m1_native_uncalibrated")


def _rc(p) -> str:
    return ",".join(f"{v:.2f}" for v in p)


@pytest.fixture(scope="module")
def views(sample_dicom_dir):
    """(path, truth, proximal 'R,C', distal 'R,C') of each view."""
    out = []
    for name in NAMES:
        p = sample_dicom_dir / f"{name}.dcm"
        if not p.is_file():
            pytest.skip(f"{p} missing")
        truth = json.loads(p.with_suffix(".truth.json").read_text())
        out.append((p, truth, _rc(truth["proximal_rc"]), _rc(truth["distal_rc"])))
    assert truth["segment"] == "M1" and out[0][1]["segment"] == "M1"
    return out


def _args(vs, *extra: str) -> list[str]:
    args = ["measure", *[str(p) for p, *_ in vs], "--segment", "M1", "--model", "classical"]
    for _, _, prox, dist in vs:
        args += ["--proximal", prox, "--distal", dist]
    return [*args, *extra]


def _api(vs) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stenosis.measure_views(
            [{"run": p, "proximal": tuple(float(v) for v in prox.split(",")),
              "distal": tuple(float(v) for v in dist.split(","))} for p, _, prox, dist in vs],
            "M1", model="classical")
    return res.to_dict()


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["mild-first", "severe-first"])
def test_json_grades_the_most_severe_view_as_the_api_does(views, order):
    vs = [views[i] for i in order]
    r = CliRunner().invoke(cli, _args(vs, "--json"))
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d == _api(vs)  # the CLI is the library, nothing more
    truths = [t["percent_stenosis"] for _, t, _, _ in vs]
    severe = truths.index(max(truths))
    assert truths[severe] - min(truths) > 20  # the two samples really differ
    pcts = [r["percent_stenosis"] for r in d["readings"]]  # each view as graded (stenosis.views.view_reading)
    assert d["graded_view"] == severe == pcts.index(max(pcts))
    assert [v["file"] for v in d["views"]] == [p.name for p, *_ in vs]
    assert d["percent_stenosis"] == max(pcts) and d["meets_50"] is (max(pcts) >= 50)
    assert d["reading"] == d["readings"][severe]["reading"]
    assert d["rule"].startswith(GRADING_RULE) and "most severe" in d["rule"]
    assert d["disagreement_points"] == pytest.approx(max(pcts) - min(pcts), abs=0.02)
    assert d["disagreement_sd"] is not None and d["disagreement_sd"] > 2
    for v, r, truth in zip(d["views"], d["readings"], truths):  # each view measured with its own points
        assert v["percent_stenosis"] == pytest.approx(truth, abs=8)
        assert r["percent_stenosis"] == pytest.approx(truth, abs=8)  # round lumens: both readings agree


def test_summary_lists_every_view_the_graded_one_and_the_rule(views, tmp_path):
    r = CliRunner().invoke(cli, _args(views, "--out", str(tmp_path / "o")))
    assert r.exit_code == 0, r.output
    api = _api(views)
    lines = r.stdout.splitlines()
    for k, v in enumerate(api["views"]):
        line = next(x for x in lines if x.startswith(f"view {k + 1} "))
        shown = float(line.split(": ")[1].split("%")[0])  # one decimal of the unrounded value (the dict's is rounded)
        assert v["file"] in line and abs(shown - v["percent_stenosis"]) <= 0.051 and "MLD" in line and "reference" in line
    graded = next(x for x in lines if x.startswith("graded"))
    g = api["graded_view"]
    assert f"view {g + 1} of 2 ({api['views'][g]['file']}; graded_view {g} in the JSON, 0-based)" in graded
    assert abs(float(graded.split("): ")[1].split("%")[0]) - api["percent_stenosis"]) <= 0.051
    assert any(x.startswith("rule") and GRADING_RULE in x for x in lines)
    assert any(x.startswith("disagreement") and f"{api['disagreement_points']:.1f} points" in x for x in lines)
    # two different sample lesions (35 and 80%) stand in for the views: their area readings differ
    # by many SDs, so the 'YES' asks a reader and says why, on a line of its own
    assert api["needs_confirmation"] is True and "(reader must confirm)" in graded
    why = next(x for x in lines if x.startswith("reader must confirm"))
    assert "the views' own readings of the lumen's area" in why and "check both traces" in why
    assert json.loads((tmp_path / "o" / "result.json").read_text()) == api
    for k in (1, 2):
        assert (tmp_path / "o" / f"report-view{k}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_run_twice_is_two_views(views):
    """Two views may be one run read with different points: per-view --frame is paired in order too."""
    p, truth, prox, dist = views[0]
    r = CliRunner().invoke(cli, ["measure", str(p), str(p), "--segment", "M1", "--model", "classical", "--json",
                                 "--proximal", prox, "--distal", dist, "--proximal", prox, "--distal", dist,
                                 "--frame", str(truth["frame_index"]), "--frame", str(truth["frame_index"] - 1),
                                 "--frames", "single"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [v["frame_index"] for v in d["views"]] == [truth["frame_index"], truth["frame_index"] - 1]
    assert all(v["parameters"]["reader"]["frames"] == "single" for v in d["views"])


def test_a_view_that_cannot_be_measured_is_one_line_exit_3(views):
    (p1, _, prox1, dist1), (p2, _, prox2, _) = views
    args = ["measure", str(p1), str(p2), "--segment", "M1", "--model", "classical",
            "--proximal", prox1, "--distal", dist1, "--proximal", prox2, "--distal", "9999,3"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 3, r.output
    assert r.stderr.count("\n") == 1 and f"view 2 ({p2.name})" in r.stderr and "outside the image" in r.stderr
    assert r.stdout == ""
    missing = CliRunner().invoke(cli, ["measure", str(p1), "/nonexistent/b.dcm", "--segment", "M1", "--proximal", prox1,
                                       "--distal", dist1, "--proximal", prox2, "--distal", dist1])
    assert missing.exit_code == 3 and missing.stderr.count("\n") == 1 and "view 2" in missing.stderr
    assert "Traceback" not in missing.output


@pytest.mark.parametrize("extra, message", [
    ([], "2 PATHs but 1 --proximal"),
    (["--frame", "3"], "2 PATHs but 1 --frame"),
    (["--pixel-mm", "0.2", "--pixel-mm", "0.2", "--pixel-mm", "0.2"], "2 PATHs but 3 --pixel-mm"),
    (["--mld", "180,200"], "--mld applies to one run only"),
], ids=["proximal", "frame", "pixel-mm", "point-override"])
def test_mismatched_counts_are_one_line_usage_errors(views, extra, message):
    """A --proximal/--distal/--frame/--pixel-mm count that does not match the PATHs is a missing or
    extra flag: exit 2 with one line (docs/contracts.md), before anything is measured."""
    (p1, _, prox1, dist1), (p2, _, prox2, dist2) = views
    args = ["measure", str(p1), str(p2), "--segment", "M1", "--proximal", prox1, "--distal", dist1, "--distal", dist2]
    if extra:
        args += ["--proximal", prox2, *extra]
    p = subprocess.run([sys.executable, "-m", "stenosis", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and message in p.stderr and p.stdout == ""


def test_single_view_form_is_unchanged(views):
    p, truth, prox, dist = views[0]
    r = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", prox, "--distal", dist,
                                 "--model", "classical", "--frames", "single", "--frame", str(truth["frame_index"]),
                                 "--pixel-mm", "0.2", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "views" not in d and d["file"] == p.name and d["frame_index"] == truth["frame_index"]
    assert d["calibration"]["source"] == "manual" and d["parameters"]["reader"]["pixel_mm"] == 0.2
    twice = CliRunner().invoke(cli, ["measure", str(p), "--segment", "M1", "--proximal", prox, "--distal", dist,
                                     "--proximal", prox])
    assert twice.exit_code == 2
