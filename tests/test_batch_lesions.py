"""`stenosis batch` with a ``lesion`` column: rows with the same name are views of one lesion
(issue 18, item 3). Each view keeps its own row; every row of a lesion carries the lesion's
grade (the most severe view, as ``stenosis.measure_views``); rows without a lesion are as before.
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import stenosis
from stenosis.batch import annotate_lesions, lesion_problems, read_points
from stenosis.batch.tasks import Task
from stenosis.cli.main import cli
from stenosis.result import ROW_COLUMNS

M1_VIEWS = ("m1_subtracted_pixelspacing.dcm", "m1_native_uncalibrated.dcm")
HEADER = "path,segment,proximal_row,proximal_col,distal_row,distal_col"
LESION_COLUMNS = ("lesion", "lesion_graded", "lesion_percent_stenosis", "lesion_meets_50",
                  "lesion_disagreement_points", "lesion_disagreement_sd")
#: the columns before this change, in order: they must stay as they are
OLD_COLUMNS = (
    "path", "status", "error", "segment", "mode", "confidence", "frame_index", "frames_used", "frame_to_frame_sd",
    "percent_stenosis", "percent_stenosis_sd", "meets_50", "mld_mm", "mld_px", "mld_row", "mld_col",
    "reference_diameter_mm", "reference_diameter_px", "reference_choice", "reference_row", "reference_col",
    "lesion_length_mm", "calibration_source", "mm_per_px", "proximal_row", "proximal_col", "distal_row", "distal_col",
    "frame_auto", "reference_mode", "reference_override", "mld_override", "waypoints", "feeding_points",
    "model", "warnings", "run_id", "software_version", "model_sha256", "report", "sr",
)


@pytest.fixture(scope="module")
def truth(sample_dicom_dir):
    out = {}
    for name in (*M1_VIEWS, "ba_subtracted_geometry.dcm", "ica_native_geometry.dcm", "v4_native_magnification.dcm"):
        p = sample_dicom_dir / name
        if not p.is_file():
            pytest.skip(f"{p} missing")
        out[name] = json.loads(p.with_suffix(".truth.json").read_text())
    return out


def _line(name: str, t: dict, lesion: str | None = None, segment: str | None = None, distal=None) -> str:
    (pr, pc), (dr, dc) = t["proximal_rc"], distal or t["distal_rc"]
    cells = [name, segment or t["segment"], f"{pr:.2f}", f"{pc:.2f}", f"{dr:.2f}", f"{dc:.2f}"]
    return ",".join(cells + ([] if lesion is None else [lesion]))


def _batch(root: Path, tmp: Path, name: str, lines: list[str], *extra: str) -> tuple[dict, dict, list[str]]:
    pts = tmp / f"{name}.csv"
    pts.write_text("\n".join(lines) + "\n")
    out = tmp / name
    r = CliRunner().invoke(cli, ["batch", str(root), "--points", str(pts), "--out", str(out), "--jobs", "0",
                                 "--model", "classical", "--no-reports", "-q", *extra])
    assert r.exit_code == 0, r.output
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = {row["path"]: row for row in reader}
        header = list(reader.fieldnames)
    journal = {row["path"]: row for row in map(json.loads, (out / "results.jsonl").read_text().splitlines())}
    return rows, journal, header


def test_columns_are_added_at_the_end():
    assert ROW_COLUMNS[: len(OLD_COLUMNS)] == OLD_COLUMNS
    assert ROW_COLUMNS[len(OLD_COLUMNS):] == LESION_COLUMNS + ("needs_confirmation", "lesion_needs_confirmation")


@pytest.fixture(scope="module")
def grouped(sample_dicom_dir, truth, tmp_path_factory):
    """One batch: lesion L1 (two M1 views), a BA row of no lesion, lesion L2 naming two arteries;
    and the same M1/BA rows without the lesion column, as before."""
    tmp = tmp_path_factory.mktemp("lesions")
    lines = [f"{HEADER},lesion", *[_line(n, truth[n], "L1") for n in M1_VIEWS],
             _line("ba_subtracted_geometry.dcm", truth["ba_subtracted_geometry.dcm"], ""),
             _line("ica_native_geometry.dcm", truth["ica_native_geometry.dcm"], "L2"),
             _line("v4_native_magnification.dcm", truth["v4_native_magnification.dcm"], "L2")]
    plain = [HEADER, *[_line(n, truth[n]) for n in (*M1_VIEWS, "ba_subtracted_geometry.dcm")]]
    return _batch(sample_dicom_dir, tmp, "grouped", lines), _batch(sample_dicom_dir, tmp, "plain", plain)


def test_each_view_has_its_row_and_the_lesion_its_graded_view(grouped, truth):
    (rows, journal, header), _ = grouped
    assert header == list(ROW_COLUMNS) and len(rows) == 5
    views = [rows[n] for n in M1_VIEWS]
    assert all(v["status"] == "ok" and v["lesion"] == "L1" for v in views)
    # each view graded as measure_views reads it (results.jsonl's view_reading)
    pcts = [journal[n]["view_reading"]["percent_stenosis"] for n in M1_VIEWS]
    severe = pcts.index(max(pcts))
    assert severe == [truth[n]["percent_stenosis"] for n in M1_VIEWS].index(max(truth[n]["percent_stenosis"] for n in M1_VIEWS))
    assert [v["lesion_graded"] for v in views] == [str(k == severe) for k in range(2)]
    for v in views:  # the lesion's grade on every row of the lesion
        assert float(v["lesion_percent_stenosis"]) == max(pcts)
        assert v["lesion_meets_50"] == str(max(pcts) >= 50) == views[severe]["meets_50"]
        assert float(v["lesion_disagreement_points"]) == pytest.approx(max(pcts) - min(pcts), abs=0.011)
        assert float(v["lesion_disagreement_sd"]) > 2
    g = journal[M1_VIEWS[0]]["lesion_grade"]
    assert g["graded_key"] == M1_VIEWS[severe] and g["n_views"] == 2 and "most severe" in g["rule"] and g["note"] is None

    # the same grade as measure_views through the API (same points, model, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api = stenosis.measure_views(
            [{"run": Path(stenosis.sample_dir()) / n, "proximal": tuple(round(v, 2) for v in truth[n]["proximal_rc"]),
              "distal": tuple(round(v, 2) for v in truth[n]["distal_rc"])} for n in M1_VIEWS], "M1", model="classical")
    d = api.to_dict()
    assert d["graded_view"] == severe and d["views"][severe]["file"] == M1_VIEWS[severe]
    assert float(views[0]["lesion_percent_stenosis"]) == d["percent_stenosis"]
    assert [float(v["percent_stenosis"]) for v in views] == [v["percent_stenosis"] for v in d["views"]]
    assert [journal[n]["view_reading"] for n in M1_VIEWS] == d["readings"]
    assert g["reading"] == d["reading"]
    # the lesion's confirmation as measure_views decides it: these two "views" are two different
    # sample lesions (35% and 80%), whose area readings differ by many SDs: the 'YES' rests on one
    # view the other contradicts
    assert g["needs_confirmation"] is True is d["needs_confirmation"]
    own = [float(v["percent_stenosis"]) for v in views]
    why = g["confirmation_reason"]
    assert why.startswith("the views' own readings of the lumen's area, which an eccentric lumen does not change, "
                          "differ: view ")
    # each view named by its place in the lesion's group and its file (two files may share a name)
    assert f"({M1_VIEWS[severe]}) (graded) {own[severe]:.1f}%, " in why
    assert f"({M1_VIEWS[1 - severe]}) {own[1 - severe]:.1f}%, " in why and why.endswith("check both traces")
    assert [v["lesion_needs_confirmation"] for v in views] == ["True", "True"]
    assert float(views[0]["lesion_disagreement_points"]) == pytest.approx(d["disagreement_points"], abs=0.011)


def test_a_lesion_naming_two_arteries_is_error_rows(grouped):
    (rows, _journal, _), _ = grouped
    for name in ("ica_native_geometry.dcm", "v4_native_magnification.dcm"):
        row = rows[name]
        assert row["status"] == "error" and row["lesion"] == "L2" and row["percent_stenosis"] == ""
        assert "lesion 'L2' has views of different arteries" in row["error"]
        assert "ICA: ica_native_geometry.dcm" in row["error"] and "V4: v4_native_magnification.dcm" in row["error"]
        assert row["lesion_graded"] == "" and row["lesion_percent_stenosis"] == ""


def test_rows_without_lesion_are_as_before(grouped):
    (rows, journal, _), (plain, plain_journal, plain_header) = grouped
    assert plain_header == list(ROW_COLUMNS)
    for name, row in plain.items():
        assert all(row[c] == "" for c in LESION_COLUMNS)
        assert "lesion" not in plain_journal[name] and "lesion_grade" not in plain_journal[name]
        assert {c: rows[name][c] for c in OLD_COLUMNS} == {c: row[c] for c in OLD_COLUMNS}
    ba = "ba_subtracted_geometry.dcm"
    assert all(rows[ba][c] == "" for c in LESION_COLUMNS) and "lesion" not in journal[ba]


def test_a_lesion_with_a_failed_view_is_not_graded_and_resume_grades_across_runs(sample_dicom_dir, truth, tmp_path):
    first, second = M1_VIEWS
    one = [f"{HEADER},lesion", _line(first, truth[first], "A")]
    rows, journal, _ = _batch(sample_dicom_dir, tmp_path, "out", one)
    assert rows[first]["lesion_graded"] == "True" and journal[first]["lesion_grade"]["n_views"] == 1
    assert float(rows[first]["lesion_disagreement_points"]) == 0

    # the second view added, measured by --resume: the lesion is graded on both
    both = [*one, _line(second, truth[second], "A")]
    rows, journal, _ = _batch(sample_dicom_dir, tmp_path, "out", both, "--resume")
    pcts = {n: journal[n]["view_reading"]["percent_stenosis"] for n in M1_VIEWS}
    best = max(pcts, key=pcts.get)
    assert {n: rows[n]["lesion_graded"] for n in M1_VIEWS} == {n: str(n == best) for n in M1_VIEWS}
    assert all(float(rows[n]["lesion_percent_stenosis"]) == pcts[best] for n in M1_VIEWS)

    # a view that cannot be measured: its error row stands, the lesion is not graded
    bad = [f"{HEADER},lesion", _line(first, truth[first], "B"), _line(second, truth[second], "B", distal=(9999, 3))]
    rows, journal, _ = _batch(sample_dicom_dir, tmp_path, "bad", bad)
    assert rows[second]["status"] == "error" and "outside the image" in rows[second]["error"]
    assert rows[first]["status"] == "ok" and rows[first]["percent_stenosis"] != ""
    for n in M1_VIEWS:
        assert all(rows[n][c] == "" for c in LESION_COLUMNS[1:]) and rows[n]["lesion"] == "B"
    assert "lesion 'B' not graded" in rows[first]["warnings"] and second in rows[first]["warnings"]
    assert journal[first]["lesion_grade"]["graded"] is None and "not graded" in journal[first]["lesion_grade"]["note"]


# ---- the pieces, without measuring ------------------------------------------------------------
def test_read_points_takes_the_lesion_column(tmp_path):
    pts = tmp_path / "p.csv"
    pts.write_text(f"{HEADER},lesion\na.dcm,M1,1,2,3,4, L1 \nb.dcm,M1,1,2,3,4,\nc.dcm,m1,1,2,3,4,L1\n")
    tasks = {t.path: t for t in read_points(pts, tmp_path)}
    assert (tasks["a.dcm"].lesion, tasks["b.dcm"].lesion, tasks["c.dcm"].lesion) == ("L1", None, "L1")
    assert lesion_problems(tasks.values()) == {}
    no_column = tmp_path / "q.csv"
    no_column.write_text(f"{HEADER}\na.dcm,M1,1,2,3,4\n")
    assert read_points(no_column, tmp_path)[0].lesion is None


def test_lesion_problems_names_the_arteries():
    tasks = [Task(path=p, source=p, segment=s, key=p, lesion=les)
             for p, s, les in (("a", "M1", "X"), ("b", "ICA", "X"), ("c", "M1", "Y"), ("d", "BA", None))]
    problems = lesion_problems(tasks)
    assert set(problems) == {"a", "b"} and "ICA: b; M1: a" in problems["a"]


def _row(path, pct, sd=1.0, lesion="L", status="ok", segment="M1"):
    return {"key": path, "path": path, "status": status, "segment": segment, "lesion": lesion,
            "percent_stenosis": pct if status == "ok" else None, "meets_50": None if pct is None else pct >= 50,
            "uncertainty": {"percent_stenosis_sd": sd}}


def test_annotate_lesions_rule():
    rows = annotate_lesions([_row("b", 60.0, 3.0), _row("a", 40.0, 4.0), _row("c", 60.0), _row("z", 10.0, lesion=None)])
    by = {r["path"]: r for r in rows}
    # most severe graded; a tie goes to the first in results order (b before c)
    assert [by[p]["lesion_grade"]["graded"] for p in "abc"] == [False, True, False]
    assert by["a"]["lesion_grade"]["percent_stenosis"] == 60.0 and by["a"]["lesion_grade"]["meets_50"] is True
    assert by["a"]["lesion_grade"]["disagreement_points"] == 20.0
    assert by["a"]["lesion_grade"]["disagreement_sd"] == pytest.approx(20 / 5, abs=0.01)
    assert "lesion_grade" not in by["z"]
    again = annotate_lesions(rows)  # idempotent: the journal is re-graded on every write
    assert again == rows
    # unknown SD: no disagreement SD; a different segment among the views: not graded
    assert annotate_lesions([_row("a", 40.0, None), _row("b", 50.0)])[0]["lesion_grade"]["disagreement_sd"] is None
    mixed = annotate_lesions([_row("a", 40.0), _row("b", 50.0, segment="ICA")])
    assert all(r["lesion_grade"]["graded"] is None and "different arteries" in r["lesion_grade"]["note"] for r in mixed)
