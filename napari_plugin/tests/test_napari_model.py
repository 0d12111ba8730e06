"""The widget's logic as plain functions: no Qt, no viewer.

The result used here is a :class:`stenosis.StenosisResult` built from a known
geometry (a straight 100 px centerline, a 10 px lumen narrowed to 4 px), so the
table, overlays and exports can be checked against those numbers exactly.
"""
from __future__ import annotations

import csv
import dataclasses
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


def test_no_default_artery(run):
    s = ReadingSession(run)
    assert s.segment is None and "Choose the artery" in s.prompt
    s.set_points([[10, 20], [30, 40]])
    assert not s.ready and s.prompt.startswith("Choose the artery")
    with pytest.raises(ValueError, match="Choose the artery"):
        s.request()
    s.set_segment("ICA")
    assert s.ready and s.request().kwargs["segment"] == "ICA"


def test_prompts_follow_clicks(run):
    s = ReadingSession(run, segment=Segment.M1)
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
    s = ReadingSession(run, segment=Segment.M1)
    s.set_points([[48, 9], [48, 111]])
    s.accept(known_result())
    cl = np.array(s.result.profile.centerline_rc)  # (48, 10) ... (48, 110)
    assert s.edit_centerline(cl) == "none"
    inner = cl.copy()
    inner[50] += (3.0, 0.0)
    # an inner vertex dragged off the path becomes a waypoint the new trace passes through
    assert s.edit_centerline(inner) == "interior" and s.points == [(48.0, 9.0), (48.0, 111.0)]
    assert s.waypoints == [(51.0, 60.0)] and s.request().kwargs["waypoints"] == [(51.0, 60.0)]
    moved = cl.copy()
    moved[-1] = (50.0, 100.0)
    assert s.edit_centerline(moved) == "ends"
    assert s.points == [(48.0, 9.0), (50.0, 100.0)]  # the proximal point is kept as clicked
    assert s.waypoints == [(51.0, 60.0)]  # still between the ends
    assert s.log[-1]["action"] == "centerline_edited"


def test_catheter_calibration_recalibrates_the_run(run):
    uncal = stenosis.AngioRun.from_array(np.zeros((1, 64, 64), np.uint16))
    s = ReadingSession(uncal, segment=Segment.M1)
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
    assert table["Frames combined"] == "analysed frame only"
    import dataclasses

    # the interval from the result's own floats, "to" between its ends (a negative end read "-4.4-6.9%")
    near_zero = dataclasses.replace(res, percent_stenosis=1.25, percent_stenosis_sd=2.825)
    assert dict(result_table(near_zero))["Uncertainty"] == "\u00b1 2.8 points (1 SD); \u00b1 2 SD: 0.0 to 6.9%"  # within 0-100% (session 33)

    multi = dataclasses.replace(res, frames={"used": [2, 3, 4], "frame_to_frame_sd": 0.84, "per_frame": [
        {"frame": 2, "percent_stenosis": 60.1}, {"frame": 3, "percent_stenosis": 59.2}, {"frame": 4, "percent_stenosis": 60.8}]})
    assert dict(result_table(multi))["Frames combined"] == "2: 60.1 %, 3: 59.2 %, 4: 60.8 %  (SD 0.8 points)"
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
    s = ReadingSession(run, segment=Segment.M1)
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
    # a log with another header (an older plugin) is kept aside, never appended to misaligned
    old_log = "path,percent_stenosis\nrun.dcm,55.0\n"
    (tmp_path / "readings.csv").write_text(old_log)
    s.export(tmp_path)
    assert (tmp_path / "readings.v1.csv").read_text() == old_log
    with open(tmp_path / "readings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and list(rows[0]) == list(_model.CSV_COLUMNS)
    assert list(csv_row(rec)) == list(_model.CSV_COLUMNS)


def test_reference_site_and_manual_location_exclude_each_other(run):
    s = ReadingSession(run, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    assert s.set_reference_choice("distal") is True
    kw = s.request().kwargs
    assert kw["reference_choice"] == "distal" and "reference" not in kw and s.reference_mode == "distal"
    # dragging the reference marker means manual: the forced site goes (the library refuses both)
    s.move_reference((47.0, 90.0))
    kw = s.request().kwargs
    assert kw["reference"] == (47.0, 90.0) and "reference_choice" not in kw and s.reference_mode == "manual"
    # choosing a site drops the dragged location
    assert s.set_reference_choice("proximal") is True
    kw = s.request().kwargs
    assert kw["reference_choice"] == "proximal" and "reference" not in kw and s.reference_rc is None
    assert s.set_reference_choice("proximal") is False  # no change, no re-measure
    assert s.set_reference_choice("manual") is False and s.reference_mode == "proximal"  # manual needs a drag
    s.set_feeding_points([[5, 5], [8, 9]])
    s.set_reference_choice(stenosis.ReferenceChoice.FEEDING)
    kw = s.request().kwargs
    assert kw["reference_choice"] == "feeding" and kw["feeding_proximal"] == (5.0, 5.0)
    assert s.set_reference_choice("rule") is True
    kw = s.request().kwargs
    assert "reference_choice" not in kw and "reference" not in kw and s.reference_mode == "rule"
    with pytest.raises(ValueError, match="unknown reference choice"):
        s.set_reference_choice("widest")
    assert [e["action"] for e in s.log if e["action"].startswith("reference")] == [
        "reference_choice", "reference_moved", "reference_choice", "reference_choice", "reference_rule"]


def test_mld_override_is_sent_and_cleared_when_points_change(run):
    s = ReadingSession(run, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.move_mld((49.0, 75.5))
    assert s.request().kwargs["mld"] == (49.0, 75.5)
    s.use_auto_mld()
    assert "mld" not in s.request().kwargs
    s.move_mld((49.0, 75.5))
    s.set_points([[48, 12], [48, 110]])  # the proximal point dragged
    assert s.mld_rc is None and "mld" not in s.request().kwargs
    s.move_mld((49.0, 75.5))
    s.accept(known_result())
    moved = np.array(s.result.profile.centerline_rc)
    moved[0] = (46.0, 14.0)  # the proximal end of the centerline dragged
    assert s.edit_centerline(moved) == "ends" and s.mld_rc is None


def test_waypoints_are_ordered_proximal_to_distal(run):
    s = ReadingSession(run, segment=Segment.M1)
    # distal on the left: before a result the order follows the proximal -> distal line
    s.set_points([[48, 110], [48, 10]])
    assert s.set_waypoints([[47, 30], [49, 80], [48, 55]]) == [(49.0, 80.0), (48.0, 55.0), (47.0, 30.0)]
    assert s.request().kwargs["waypoints"] == [(49.0, 80.0), (48.0, 55.0), (47.0, 30.0)]
    s.set_points([[48, 110], [48, 12]])  # one point dragged: the waypoints stay
    assert len(s.waypoints) == 3
    s.set_points([[48, 110], [48, 12], [20, 20]])  # a third click starts a new pair: they go
    assert s.waypoints == [] and "waypoints" not in s.set_points([[20, 20], [60, 60]]) and "waypoints" not in s.request().kwargs
    # with a result the order follows the traced centerline (a U-turn: along the path, not the chord)
    u_path = np.array([[0, 0], [0, 100], [20, 100], [20, 0]], float)
    pts = [[20, 10], [0, 50], [20, 60], [10, 101]]
    assert _model.order_waypoints(pts, u_path) == [(0.0, 50.0), (10.0, 101.0), (20.0, 60.0), (20.0, 10.0)]
    assert _model.order_waypoints(pts, u_path[[0, -1]])[0] == (0.0, 50.0)  # the chord ranks by row only
    assert _model.order_waypoints(pts, u_path[[0, -1]]) != _model.order_waypoints(pts, u_path)


def _two_band_run():
    """Native frames (vessels darker) with two horizontal vessels: one at row 20 opacified
    most in frame 1 (the darkest of the run), one at row 70 opacified most in frame 3."""
    t, h, w = 5, 96, 128
    frames = np.full((t, h, w), 3000.0)
    rows = np.arange(h)[:, None]
    wide = (np.abs(rows - 20) <= 8).astype(float)
    narrow = (np.abs(rows - 70) <= 3).astype(float)
    for k, (a, b) in enumerate([(0, 0), (1200, 200), (500, 400), (200, 900), (100, 300)]):
        frames[k] -= a * wide + b * narrow
    cal = stenosis.Calibration((MM, MM), "pixel_spacing")
    return stenosis.AngioRun.from_array(frames.astype(np.uint16), calibration=cal)


def test_frame_guess_then_measured_then_readers_frame():
    s = ReadingSession(_two_band_run(), segment=Segment.M1)
    assert s.frame_source == "auto" and s.shown_frame is None
    # guess_frame = most iodine (its top 2 %): whole field -> frame 1; near points on the row-70 vessel -> frame 3
    assert s.set_frame_guess(s.guess_frame(), s.guess_points()) and s.shown_frame == 1 and s.frame_source == "guess"
    assert s.opacified() is s.opacified()  # cached for the run
    s.set_points([[70, 20], [70, 100]])
    assert s.frame_guess is None  # the points changed: guess again
    pts = s.guess_points()
    assert s.guess_frame(pts) == 3
    assert not s.set_frame_guess(1, None)  # a late whole-field answer is not kept
    assert s.set_frame_guess(3, pts) and s.shown_frame == 3 and s.request().kwargs["frame"] is None
    # after Measure the measured frame is shown and kept for adjustments (auto, not the reader's)
    s.accept(dataclasses.replace(known_result(), frame_index=4))
    assert s.shown_frame == 4 and s.frame_source == "measured" and s.request().kwargs["frame"] == 4
    assert s.choices_record()["frame_auto"] is True
    # a new pair: auto picks the frame again
    s.set_points([[70, 30]])
    assert s.frame is None and s.frame_source == "auto"
    s.set_points([[70, 30], [70, 90]])
    s.set_frame(2)
    assert s.frame_source == "reader" and s.request().kwargs["frame"] == 2
    assert s.choices_record()["frame_auto"] is False
    s.set_points([[70, 40]])  # the reader's frame survives new points
    s.set_points([[70, 40], [70, 90]])
    assert s.request().kwargs["frame"] == 2
    s.use_auto_frame()
    assert s.request().kwargs["frame"] is None and s.frame_source == "auto"


def test_export_records_the_new_reader_choices(tmp_path, run):
    s = ReadingSession(run, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.set_waypoints([[47, 70], [49, 40]])
    s.move_mld((48.0, 58.0))
    s.set_reference_choice("distal")
    lib_reader = {"reference_choice": "distal", "mld_rc": [48.0, 58.0], "waypoints_rc": [[49.0, 40.0], [47.0, 70.0]]}
    s.accept(dataclasses.replace(known_result(), reference_choice="distal", parameters={"reader": lib_reader}))
    paths = s.export(tmp_path)
    rec = json.loads(paths["json"].read_text())
    reader = rec["reader"]
    assert reader["reference_mode"] == "distal" and reader["reference_site"] == "distal"
    assert reader["mld_override_rc"] == [48.0, 58.0]
    assert reader["waypoints_rc"] == [[49.0, 40.0], [47.0, 70.0]]
    assert reader["measured_with"] == lib_reader == rec["result"]["parameters"]["reader"]
    with open(paths["csv"]) as fh:
        row = next(csv.DictReader(fh))
    assert row["reference_mode"] == "distal" and row["mld_override"] == "48;58"
    assert row["waypoints"] == "49;40 47;70" and row["reference_override"] == "False"


def test_a_result_older_than_the_readers_choices_is_not_exported(tmp_path, run):
    """A new user's export: reference forced to "feeding" without feeding points and an MLD
    dragged, both re-measures failed, and Export wrote the earlier result under the new choices
    (CSV reference_mode=feeding, mld_override set, numbers from the distal reference)."""
    s = ReadingSession(run, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.set_reference_choice("distal")
    first = s.request()  # auto frame: the result pins its frame, and the choices still match
    assert first.kwargs["frame"] is None
    s.accept(dataclasses.replace(known_result(), reference_choice="distal"), first.key)
    assert not s.stale
    s.set_reference_choice("feeding")  # its request is refused: no feeding points
    with pytest.raises(ValueError, match="feeding"):
        s.request()
    assert s.stale
    with pytest.raises(ValueError, match="measured before your last change"):
        s.export(tmp_path)
    assert not list(tmp_path.iterdir())
    s.set_reference_choice("distal")  # undone: the result answers the choices again
    assert not s.stale and s.export(tmp_path)["json"].exists()
    s.move_mld((48.0, 58.0))
    req = s.request()  # a re-measure in flight: stale until its result is accepted
    assert s.stale
    s.accept(dataclasses.replace(known_result(), reference_choice="distal",
                                 parameters={"reader": {"mld_rc": list(req.kwargs["mld"])}}), req.key)
    assert not s.stale
    # the frame the result pinned, then chosen by the reader: the same measurement, not stale
    assert s.frame is not None and not s.frame_by_reader
    s.set_frame(s.frame)
    assert s.frame_by_reader and not s.stale
    # a result answers the request it was made for, not a later one
    old = s.request()
    s.move_mld((48.0, 70.0))
    s.request()
    s.accept(dataclasses.replace(known_result(), reference_choice="distal"), old.key)
    assert s.stale


def test_session_overrides_on_a_bundled_phantom():
    """Real measurements through the session on the bundled M1 phantom (truth: 35 % at
    arc 57.9 mm, normal 2.6 mm proximal and distal, 0.15 mm/px)."""
    name = "m1_subtracted_pixelspacing"
    truth = json.loads((stenosis.sample_dir() / f"{name}.truth.json").read_text())
    run = stenosis.read_run(stenosis.sample_dir() / f"{name}.dcm")
    s = ReadingSession(run, segment=Segment.M1)
    # the automatic frame before measuring: a frame in which the artery is fully opacified
    conc = truth["encoding"]["concentration"]
    s.set_points([truth["proximal_rc"], truth["distal_rc"]])
    assert s.set_frame_guess(s.guess_frame(), s.guess_points()) and conc[s.shown_frame] == 1.0

    def measure():
        s.accept(s.request()())
        return s.result

    def arc_of(res, rc):
        cl = np.asarray(res.profile.centerline_rc)
        return float(res.profile.arc_px[np.argmin(np.hypot(*(cl - np.asarray(rc)).T))])

    base = measure()
    assert base.reference_choice == "proximal" and base.percent_stenosis == pytest.approx(35.0, abs=5.0)
    assert arc_of(base, base.reference_rc) < base.mld_arc_px  # proximal of the MLD

    # distal reference: the library takes it, and the marker lies distal of the MLD
    s.set_reference_choice("distal")
    dist = measure()
    assert dist.reference_choice == "distal" and dist.parameters["reader"]["reference_choice"] == "distal"
    assert arc_of(dist, dist.reference_rc) > dist.mld_arc_px
    assert dist.reference_diameter_mm == pytest.approx(truth["normal_diameter_mm"], abs=0.2)
    assert dist.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)

    # the MLD dragged onto normal artery 6 mm distal of the lesion centre (it ends 2.5 mm from it): no stenosis there
    arc_mm = np.asarray(truth["arc_mm"])
    k = int(np.argmin(np.abs(arc_mm - (truth["mld_arc_mm"] + 6.0))))
    assert truth["diameter_mm"][k] == pytest.approx(2.6, abs=1e-6)
    s.set_reference_choice("rule")
    s.move_mld(truth["centerline_rc"][k])
    moved = measure()
    assert moved.parameters["reader"]["mld_rc"] == [round(v, 2) for v in truth["centerline_rc"][k]]
    assert np.hypot(*(np.asarray(moved.mld_rc) - truth["centerline_rc"][k])) < 1.3 / 0.15  # within half a diameter
    assert moved.mld_mm == pytest.approx(2.6, abs=0.2) and moved.percent_stenosis < 10.0

    # back to the automatic MLD, tracing through a waypoint on the true centerline: the lesion again
    s.use_auto_mld()
    j = int(np.argmin(np.abs(arc_mm - (truth["mld_arc_mm"] - 6.0))))
    s.set_waypoints([truth["centerline_rc"][j]])
    via = measure()
    assert via.parameters["reader"]["waypoints_rc"] == [[round(v, 2) for v in truth["centerline_rc"][j]]]
    assert via.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)
    assert via.mld_mm == pytest.approx(truth["mld_mm"], abs=0.2)
    assert np.hypot(*(np.asarray(via.mld_rc) - truth["mld_rc"])) < 1.3 / 0.15


@pytest.fixture
def run6():
    frames = np.zeros((6, 96, 128), np.uint16)
    return stenosis.AngioRun.from_array(frames, calibration=stenosis.Calibration((MM, MM), "pixel_spacing"))


def _three_frames(res=None, **kw):
    """The known result combined from frames 2 (analysed), 3 and 4."""
    frames = {"used": [2, 3, 4], "frame_to_frame_sd": 0.84, "rejected": [{"frame": 1, "why": "still filling"}],
              "excluded": [], "per_frame": [{"frame": t, "percent_stenosis": p, "percent_stenosis_sd": 0.7}
                                            for t, p in ((2, 60.1), (3, 59.2), (4, 60.8))]}
    frames.update(kw)
    return dataclasses.replace(res or known_result(), frames=frames)


def test_dropped_frames_are_sent_kept_and_restored(run6):
    s = ReadingSession(run6, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.accept(_three_frames())
    assert "exclude_frames" not in s.request().kwargs and s.dropped_frames == []
    assert s.drop_frame(4) == "Frame 4 dropped; re-measuring."
    kw = s.request().kwargs
    assert kw["exclude_frames"] == [4] and kw["frame"] == 2  # the analysed frame is kept
    s.drop_frame(3)
    assert s.request().kwargs["exclude_frames"] == [3, 4]
    assert s.choices_record()["dropped_frames"] == [3, 4]
    assert s.restore_frame(4) and not s.restore_frame(4)
    assert s.request().kwargs["exclude_frames"] == [3]
    # the analysed frame was the tool's (pinned after the automatic measurement): chosen again
    assert s.request().kwargs["frame"] is None
    assert [e["action"] for e in s.log][-4:] == ["frame_dropped", "frame_dropped", "frame_restored", "frame"]
    # the list the panel shows: the reader's choice (ahead of the result until re-measured)
    items = {it.frame: it for it in _model.frame_items(s.result, s.dropped_frames)}
    assert [t for t in items] == [1, 2, 3, 4]
    assert items[1].kind == "rejected" and items[1].checked is None and "still filling" in items[1].tip
    assert items[2].analysed and items[2].checked and "60.1 %" in items[2].tip
    assert items[3].checked is False and "dropping" in items[3].text and items[4].checked is True
    # a new pair of points: the dropped frames belonged to the old segment
    s.set_points([[40, 10]])
    s.set_points([[40, 10], [40, 100]])
    assert s.dropped_frames == [] and "exclude_frames" not in s.request().kwargs
    with pytest.raises(ValueError, match="outside the run"):
        s.drop_frame(7)


def test_restoring_frames_chooses_the_automatic_frame_again(run6):
    """A reader dropped the analysed frame 2, then 3 (the fallback), and put both back: the
    measurement stayed on the next fallback, pinned as if the reader had chosen it (with the
    library's warning that it is not fully opacified). An automatic frame is now chosen again when
    a frame comes back; a reader's own frame stays."""
    s = ReadingSession(run6, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.accept(_three_frames())  # automatic: frame 2 pinned
    s.drop_frame(2)
    s.accept(_three_frames(used=[3, 4], per_frame=[]), key=None)
    s.frame = 3
    s.drop_frame(3)
    assert s.request().kwargs["frame"] is None
    s.frame = 4  # what the next automatic result pins
    s.restore_frame(2)
    assert s.request().kwargs["frame"] is None and s.request().kwargs["exclude_frames"] == [3]
    s.set_frame(4)  # the reader's own choice is kept through a restore
    s.restore_frame(3)
    assert s.request().kwargs["frame"] == 4 and "exclude_frames" not in s.request().kwargs


def test_dropping_the_analysed_frame_analyses_another(run6):
    s = ReadingSession(run6, segment=Segment.M1)
    s.set_points([[48, 10], [48, 110]])
    s.accept(_three_frames())
    s.drop_frame(3)
    msg = s.drop_frame(2)  # the analysed frame: stenosis chooses again among the frames not dropped
    assert "Frame 2 (the analysed frame) dropped: the earliest fully opacified frame of the others" in msg
    kw = s.request().kwargs
    assert kw["frame"] is None and kw["exclude_frames"] == [2, 3]
    assert s.frame_source == "auto" and s.log[-2]["action"] == "frame" and s.log[-2]["frame"] is None
    # choosing a dropped frame to analyse takes it back (the library refuses a frame both analysed and dropped)
    s.set_frame(2)
    assert s.request().kwargs["frame"] == 2 and s.request().kwargs["exclude_frames"] == [3]
    # nothing left to analyse: refused, nothing changed
    s.accept(_three_frames(used=[2], per_frame=[]))
    with pytest.raises(ValueError, match="no other frame is used"):
        s.drop_frame(2)
    assert s.frame == 2 and s.dropped_frames == [3]


def test_frames_in_the_table_and_tab_title():
    res = _three_frames(excluded=[5])
    table = dict(result_table(res))
    assert table["Frames combined"] == ("2: 60.1 %, 3: 59.2 %, 4: 60.8 %  (SD 0.8 points); dropped by the reader: 5; "
                                        "rejected: 1 (still filling)")
    assert _model.frames_tab_title(res) == "Frames (3 used, 1 dropped, 1 rejected)"
    assert _model.frames_tab_title(known_result()) == "Frames (1 used)" and _model.frames_tab_title(None) == "Frames"
    from napari_stenosis._plot import draw_frames, frame_series

    import stenosis.report

    assert draw_frames is stenosis.report.draw_frames and frame_series is stenosis.report.frame_series  # one plot
    fs = frame_series(res)
    assert fs.frames.tolist() == [2, 3, 4] and fs.analysed == 2 and fs.dropped == (5,) and fs.rejected == (1,)
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    draw_frames(ax, res)
    assert "frame-to-frame SD 0.8 points" in ax.get_title()
    assert [int(t) for t in ax.get_xticks()] == [1, 2, 3, 4, 5]
    assert any(list(line.get_xdata()) == [2, 3, 4] for line in ax.lines)  # the per-frame points
    assert any(list(line.get_ydata()) == [60.0, 60.0] for line in ax.lines)  # the combined value
    draw_frames(ax, _three_frames(used=[2], per_frame=[], frame_to_frame_sd=None))
    assert "n/a (< 3 frames)" in ax.get_title()


def test_dropping_frames_on_a_bundled_phantom(tmp_path):
    """Real measurements: a dropped frame is left out of the combination the library returns,
    dropping the analysed frame measures another one, the export records both."""
    name = "m1_subtracted_pixelspacing"
    truth = json.loads((stenosis.sample_dir() / f"{name}.truth.json").read_text())
    s = ReadingSession(stenosis.read_run(stenosis.sample_dir() / f"{name}.dcm"), segment=Segment.M1)
    s.set_points([truth["proximal_rc"], truth["distal_rc"]])

    def measure():
        s.accept(s.request()())
        return s.result

    full = measure()
    used = full.frames["used"]
    assert len(used) >= 2 and used[0] == full.frame_index and full.frames["excluded"] == []
    other = used[-1]
    s.drop_frame(other)
    res = measure()
    assert other not in res.frames["used"] and res.frames["excluded"] == [other]
    assert res.parameters["reader"]["exclude_frames"] == [other] and res.frame_index == full.frame_index
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)

    s.restore_frame(other)
    assert other in measure().frames["used"]
    msg = s.drop_frame(full.frame_index)
    assert "the earliest fully opacified frame of the others" in msg
    res = measure()
    assert res.frame_index in used and res.frame_index != full.frame_index
    assert full.frame_index not in res.frames["used"] and res.frames["excluded"] == [full.frame_index]
    assert res.parameters["reader"] == {"exclude_frames": [full.frame_index]}
    assert not any("not fully opacified" in w or "holds the whole segment" in w for w in res.warnings)

    rec = json.loads(s.export(tmp_path)["json"].read_text())
    assert rec["result"]["frames"]["excluded"] == [full.frame_index]
    assert rec["reader"]["dropped_frames"] == [full.frame_index] and rec["reader"]["frame_auto"] is True
    with open(tmp_path / "readings.csv") as fh:
        row = next(csv.DictReader(fh))
    assert row["frames_used"] == " ".join(str(t) for t in res.frames["used"])


def test_library_messages_name_the_widgets_controls_in_napari():
    """The library's messages name CLI flags; napari shows its own controls instead (a new user
    read "give a catheter or manual calibration (--pixel-mm)" in the dock). Each message a reader
    can meet here, taken from the library itself, comes out without a flag."""
    import re

    from napari_stenosis._model import for_napari
    from stenosis.calibration import _UNCALIBRATED_TAIL

    from stenosis.calibration import Calibration
    from stenosis.params import DEFAULT_PARAMS
    from stenosis.trace import Scale

    texts = [_UNCALIBRATED_TAIL, *Scale.of(Calibration.none(), Segment.M1, "unet", DEFAULT_PARAMS).warnings]
    assert len(texts) == 2 and "--pixel-mm" in texts[1]
    for kw in ({"reference_choice": "feeding"}, {"feeding_proximal": (10, 10)}, {"reference_choice": "manual"}):
        with pytest.raises(stenosis.StenosisError) as err:
            stenosis.ReaderInputs.create("M1", (10, 10), (20, 20), **kw)
        texts.append(str(err.value))
    shown = [for_napari(t) for t in texts]
    assert not [t for t in shown if re.search(r"--[a-z]", t)], shown
    assert "Catheter calibration" in shown[0] and "Feeding artery points" in shown[2]
    # results: the table's warnings too (the exported JSON keeps the library's text)
    res = dataclasses.replace(known_result(), warnings=(texts[0],))
    assert "--pixel-mm" not in dict(result_table(res))["Warnings"]
    assert res.to_dict()["warnings"] == [texts[0]]


def test_frame_and_point_messages_name_the_widgets_controls_in_napari():
    """A new reader's probe (session 36) met "--frame" and "give ROW,COL" in the dock: each
    message about the frame, the points or the route, taken from the library, comes out in the
    widget's terms."""
    import inspect
    import re

    import numpy as np

    from napari_stenosis._model import for_napari
    from stenosis import frames
    from stenosis.params import DEFAULT_PARAMS
    from stenosis.reader import check_points_within

    texts = [frames._moved_note(9, 5), frames._not_full_note(3, np.array([0.0, 0.0, 0.0, 0.6, 1.0]), DEFAULT_PARAMS,
                                                             (), 4)]
    for pts in ([("proximal", (500.0, 3.0))], [("distal", (150.0, 3.0))]):  # the second: row and col swapped
        with pytest.raises(stenosis.StenosisError) as err:
            check_points_within(pts, (100, 200))
        texts.append(str(err.value))
    texts.append("frame 0 is a mask frame (no contrast: it is subtracted from the others): pick a frame where the "
                 "artery is opacified (frame 5 holds the most iodine around the points) or give no frame (--frame; "
                 "batch: the frame column) to let the tool choose")  # frames._reader_frame_refused's form
    assert "or give no frame (--frame; batch: the frame column) to let the tool choose" in inspect.getsource(
        frames._reader_frame_refused)
    shown = [for_napari(t) for t in texts]
    assert not [t for t in shown if re.search(r"--[a-z]|ROW,COL", t)], shown
    assert "set the Frame box to 4 to measure on it" in shown[1] and "set the Frame box to the frame" in shown[0]
    assert shown[2].endswith("is outside the image (rows 0..99, cols 0..199); place it inside the image")
    assert "did you mean 3,150?" not in shown[3] and shown[3].endswith("place it inside the image")
    assert "press Auto in the Frame row" in shown[4]


def test_pinned_automatic_frame_is_recorded_as_the_tools_choice(tmp_path):
    """After an automatic measurement the plugin re-measures on the frame it picked (an
    adjustment keeps the frame); the export still says the tool chose it, until the reader
    picks a frame."""
    name = "m1_subtracted_pixelspacing"
    truth = json.loads((stenosis.sample_dir() / f"{name}.truth.json").read_text())
    s = ReadingSession(stenosis.read_run(stenosis.sample_dir() / f"{name}.dcm"), segment=Segment.M1)
    s.set_points([truth["proximal_rc"], truth["distal_rc"]])
    s.accept(s.request()())
    assert "frame" not in s.result.parameters["reader"]
    s.set_reference_choice("distal")
    req = s.request()
    assert req.kwargs["frame"] == s.result.frame_index  # pinned: the library records it as given
    s.accept(req(), req.key)
    assert s.result.parameters["reader"]["frame"] == s.frame
    rec = json.loads(s.export(tmp_path)["json"].read_text())
    assert "frame" not in rec["result"]["parameters"]["reader"] and "frame" not in rec["reader"]["measured_with"]
    assert rec["result"]["parameters"]["reader"]["reference_choice"] == "distal"
    with open(tmp_path / "readings.csv") as fh:
        assert next(csv.DictReader(fh))["frame_auto"] == "True"
    s.set_frame(s.frame)  # now the reader's: the same measurement, recorded as theirs
    rec = json.loads(s.export(tmp_path / "b")["json"].read_text())
    assert rec["result"]["parameters"]["reader"]["frame"] == s.frame and rec["reader"]["measured_with"]["frame"] == s.frame
    with open(tmp_path / "b" / "readings.csv") as fh:
        assert next(csv.DictReader(fh))["frame_auto"] == "False"
