"""The widget's logic as plain functions: no Qt, no viewer.

The result used here is a :class:`stenosis.StenosisResult` built from a known
geometry (a straight 100 px centerline, a 10 px lumen narrowed to 4 px), so the
table, overlays and exports can be checked against those numbers exactly.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import stenosis
from stenosis import ModelName, Segment

from napari_stenosis import _model
from napari_stenosis._model import ReadingSession, csv_row, overlay_geometry, point_prompt, result_table
from napari_stenosis._plot import profile_series
from nst_helpers import MM, known_result

@pytest.fixture
def run():
    frames = np.zeros((4, 96, 128), np.uint16)
    return stenosis.AngioRun.from_array(frames, calibration=stenosis.Calibration((MM, MM), "pixel_spacing"))


def test_prompts_follow_clicks(run):
    s = ReadingSession(run)
    assert s.prompt == point_prompt(0) and "PROXIMAL" in s.prompt
    s.set_points([[10, 20]])
    assert "DISTAL" in s.prompt and not s.ready
    s.set_points([[10, 20], [30, 40]])
    assert s.ready and s.points == [(10.0, 20.0), (30.0, 40.0)]
    # a third click starts a new pair with itself as the proximal point
    kept = s.set_points([[10, 20], [30, 40], [50, 60]])
    assert kept == [(50.0, 60.0)] and not s.ready and "DISTAL" in s.prompt
    with pytest.raises(ValueError, match="DISTAL"):
        s.request()


def test_request_routes_the_readers_choices(run):
    s = ReadingSession(run, segment=Segment.BA, model=ModelName.CLASSICAL)
    s.set_points([[10, 20], [30, 40]])
    kw = s.request().kwargs
    assert kw["segment"] == "BA" and kw["proximal"] == (10.0, 20.0) and kw["distal"] == (30.0, 40.0)
    assert kw["frame"] is None and "reference" not in kw and kw["model"] == "classical"
    assert s.request().run is run
    s.set_frame(3)
    s.move_reference((12.5, 22.0))
    assert s.request().kwargs["reference"] == (12.5, 22.0) and s.request().kwargs["frame"] == 3
    assert s.reference_mode == "manual"
    s.use_reference_rule()
    assert "reference" not in s.request().kwargs and s.reference_mode == "rule"
    s.set_feeding_points([[5, 5]])
    assert "feeding_proximal" not in s.request().kwargs
    s.set_feeding_points([[5, 5], [8, 9]])
    kw = s.request().kwargs
    assert kw["feeding_proximal"] == (5.0, 5.0) and kw["feeding_distal"] == (8.0, 9.0)
    with pytest.raises(ValueError):
        s.set_frame(4)  # the run has frames 0..3
    # new points drop a reference placed for the old segment
    s.move_reference((12.5, 22.0))
    s.set_points([[11, 20], [30, 40]])
    assert s.reference_rc is None
    # the library's measure takes every keyword the session sends
    import inspect

    from napari_stenosis._model import measure_function

    params = inspect.signature(measure_function()).parameters
    assert set(kw) <= set(params)


def test_centerline_edit_moves_the_dragged_end(run):
    s = ReadingSession(run)
    s.set_points([[48, 9], [48, 111]])
    s.accept(known_result())
    cl = np.array(s.result.profile.centerline_rc)  # (48, 10) ... (48, 110)
    assert s.edit_centerline(cl) == "none"
    inner = cl.copy()
    inner[50] += (3.0, 0.0)
    assert s.edit_centerline(inner) == "interior" and s.points == [(48.0, 9.0), (48.0, 111.0)]
    moved = cl.copy()
    moved[-1] = (50.0, 100.0)
    assert s.edit_centerline(moved) == "ends"
    assert s.points == [(48.0, 9.0), (50.0, 100.0)]  # the proximal point is kept as clicked
    assert s.log[-1]["action"] == "centerline_edited"


def test_catheter_calibration_recalibrates_the_run(run):
    uncal = stenosis.AngioRun.from_array(np.zeros((1, 64, 64), np.uint16))
    s = ReadingSession(uncal)
    cal = s.calibrate_catheter((10, 10), (10, 40), 6.0)  # 6 F = 2 mm over 30 px
    assert cal.mm_per_px == pytest.approx((2.0 / 30, 2.0 / 30), rel=1e-9)
    assert s.run.calibration.source.value == "catheter"
    assert s.run.frames is uncal.frames  # frames shared, not copied
    assert s.choices_record()["calibration"]["source"] == "catheter"
    with pytest.raises(stenosis.CalibrationError):
        s.calibrate_catheter((10, 10), (10, 10.2), 6.0)


def test_table_and_overlays_show_the_result():
    res = known_result()
    table = dict(result_table(res))
    assert table["Percent stenosis (WASID)"] == "60.0 %"
    assert table[">= 50%"] == "YES"
    assert table["MLD (D stenosis)"].startswith("0.80 mm")  # 4 px x 0.2 mm
    assert table["Reference (D normal)"].startswith("2.00 mm")
    assert table["Reference choice"].startswith("proximal")
    assert "pixel_spacing" in table["Calibration"] and table["Frame"] == "2"
    assert table["Warnings"] == "a warning for the reader"
    geom = overlay_geometry(res)
    np.testing.assert_allclose(geom["centerline"], res.profile.centerline_rc)
    np.testing.assert_allclose(geom["left"][:, 0] - geom["right"][:, 0], -res.profile.diameter_px)
    np.testing.assert_allclose(geom["markers"], [[48, 60], [48, 30]])
    s = profile_series(res)
    assert s.unit == "mm" and s.mld_x == pytest.approx(10.0) and s.mld_y == pytest.approx(0.8)
    assert s.ref_span == pytest.approx((2.0, 6.0))


def test_uncalibrated_result_reports_no_mm():
    res = known_result(mm_per_px=None)
    table = dict(result_table(res))
    assert table["MLD (D stenosis)"].startswith("n/a (uncalibrated)") and "4.00 px" in table["MLD (D stenosis)"]
    assert profile_series(res).unit == "px"


def test_export_writes_json_csv_png_with_the_readers_choices(tmp_path, run):
    s = ReadingSession(run)
    s.set_points([[48, 10], [48, 110]])
    s.move_reference((48, 32))
    res = known_result()
    s.accept(res)
    view = np.zeros((60, 80, 4), np.uint8)
    view[..., 1] = 200
    paths = s.export(tmp_path, view_rgb=view)
    rec = json.loads(paths["json"].read_text())
    assert rec["result"] == json.loads(json.dumps(res.to_dict()))
    assert rec["reader"]["proximal_rc"] == [48.0, 10.0] and rec["reader"]["reference_override_rc"] == [48.0, 32.0]
    assert rec["reader"]["frame"] == 2 and rec["reader"]["frame_auto"] is True
    assert rec["software"]["model_sha256"] == "f" * 64 and rec["software"]["version"] == "9.9.9"
    assert "napari_stenosis" in rec["software"]
    assert [a["action"] for a in rec["reader"]["actions"]][:3] == ["points", "reference_moved", "measured"]
    with open(paths["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and float(rows[0]["percent_stenosis"]) == 60.0 and rows[0]["meets_50"] == "True"
    assert rows[0]["reference_override"] == "True" and rows[0]["model_sha256"] == "f" * 64
    assert float(rows[0]["mld_mm"]) == pytest.approx(0.8)
    from matplotlib.image import imread

    png = imread(paths["png"])
    assert png.ndim == 3 and png.shape[1] > png.shape[0]  # screenshot beside the plot
    s.export(tmp_path)  # a second export appends to the folder's running log
    with open(tmp_path / "readings.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    assert list(csv_row(rec)) == list(_model.CSV_COLUMNS)
