"""First-contact defects found in session 33, each with the behaviour a reader expects."""
from __future__ import annotations

import pytest

import stenosis
from stenosis.errors import ReaderInputError
from stenosis.io import AngioRun
from stenosis.reader import ReaderInputs

from hostile import tube_frames


def test_a_click_on_an_edge_pixels_outer_half_is_inside():
    """A pixel spans its centre +-0.5: napari reports a click on the outer half of the last
    column as 63.3, which was refused as 'outside the image (cols 0..63)'. It is now moved onto
    the pixel's centre line (at most half a pixel); beyond the pixel it is still refused."""
    inputs = ReaderInputs.create("M1", (23.5, -0.45), (23.5, 63.4), mld=(-0.2, 30.0))
    inside = inputs.within(3, (48, 64))
    assert inside.proximal == (23.5, 0.0) and inside.distal == (23.5, 63.0) and inside.mld == (0.0, 30.0)
    with pytest.raises(ReaderInputError, match=r"outside the image \(rows 0\.\.47, cols 0\.\.63\)"):
        ReaderInputs.create("M1", (23.5, -0.6), (23.5, 40.0)).within(3, (48, 64))
    with pytest.raises(ReaderInputError, match="outside the image"):
        ReaderInputs.create("M1", (23.5, 4.0), (47.51, 40.0)).within(3, (48, 64))
    run = AngioRun.from_array(tube_frames(48, 64, 3, seed=1), mask_frames=(0,))
    edge = stenosis.measure(run, "M1", (23.5, -0.4), (23.5, 63.45), model="classical")
    inner = stenosis.measure(run, "M1", (23.5, 0.0), (23.5, 63.0), model="classical")
    assert edge.percent_stenosis == inner.percent_stenosis
    assert tuple(edge.to_dict()["proximal_rc"]) == (23.5, 0.0)


def test_the_two_sd_interval_stays_within_0_and_100_percent():
    """A real coronary frame (CIMAT image 8, a reader's points around a narrowing) read 44.5 +- 36.5
    and printed its interval as '-28.5 to 117.5%', numbers no narrowing can have. The interval is
    now kept within 0-100% everywhere it is shown (warning, JSON, napari), from one function."""
    from stenosis.result import two_sd_interval
    from stenosis.wasid import borderline_warning

    assert two_sd_interval(44.5, 36.5) == (0.0, 100.0)
    assert two_sd_interval(40.0, 5.0) == (30.0, 50.0)
    assert two_sd_interval(97.0, 2.0) == (93.0, 100.0)
    assert two_sd_interval(30.0, float("nan")) == (30.0, 30.0)
    assert two_sd_interval(-5.0, 1.0) == (-7.0, -3.0)  # a reading below 0 keeps its own interval (not (0, -3))
    assert "(0.0 to 100.0%)" in borderline_warning(44.5, 36.5)
    assert "(31.0 to 51.0%)" in borderline_warning(41.0, 5.0)


def test_another_threads_warnings_are_not_this_results(sample_dicom_dir):
    """A pipeline measuring in a thread pool found another thread's ResourceWarning in a result's
    warnings (the vessel map recorded every Python warning raised meanwhile, anywhere)."""
    import threading
    import warnings

    stop = threading.Event()

    def noise():
        while not stop.is_set():
            warnings.warn("FOREIGN warning from another thread", UserWarning)
            stop.wait(0.0005)

    t = threading.Thread(target=noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.start()
        try:
            r = stenosis.measure(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", "M1", (180.8, 137.5),
                                 (192.7, 308.5), model="classical")
        finally:
            stop.set()
            t.join()
    assert not [w for w in r.warnings if "FOREIGN" in w]


def test_api_first_contact_s33(sample_dicom_dir, tmp_path):
    """A pipeline developer's defects (session 33 helper): an uncalibrated result's reference window
    lacked its mm keys (KeyError where the contract says null); find_lesion('abc') raised numpy's
    ValueError; save_report of several views raised AttributeError and wrote PNG bytes into a .jpg;
    dropping every frame blamed a frame the reader never chose."""
    from stenosis.errors import MeasurementError
    from stenosis.report import save_report

    path = sample_dicom_dir / "m1_native_uncalibrated.dcm"
    truth = __import__("json").loads(path.with_suffix(".truth.json").read_text())
    pts = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    r = stenosis.measure(path, "M1", *pts, frames="single")
    w = r.to_dict()["reference_window"]
    assert w["start_mm"] is None and w["end_mm"] is None and w["diameter_mm"] is None and w["diameter_px"] > 0
    for bad in ("abc", None, [[1, 2], [3, 4]]):
        with pytest.raises(MeasurementError, match="needs a run"):
            stenosis.find_lesion(bad)
    assert save_report(r, None, tmp_path / "r.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert save_report(r, None, tmp_path / "r.pdf").read_bytes()[:4] == b"%PDF"
    assert save_report(r, None, tmp_path / "r.report").read_bytes()[:4] == b"\x89PNG"
    views = stenosis.measure_views([{"run": path, "proximal": pts[0], "distal": pts[1], "frames": "single"}], "M1")
    with pytest.raises(TypeError, match="one view's result"):
        save_report(views, None, tmp_path / "v.png")
    n = stenosis.read_run(path).frames.shape[0]
    with pytest.raises(ReaderInputError, match="every frame of the run"):
        stenosis.measure(path, "M1", *pts, exclude_frames=range(n))


def test_a_batch_row_records_the_point_measured(tmp_path):
    """A points file's click on an edge pixel's outer half: the row's point is the one measured
    (moved onto the pixel's centre line), as the result's is, not the raw -0.4 (review)."""
    import csv

    import hostile

    src = tmp_path / "src"
    src.mkdir()
    hostile.write_xa(src / "edge.dcm", tube_frames(48, 64, 3, seed=2), pixel_spacing=(0.1, 0.1))
    points = tmp_path / "points.csv"
    points.write_text("path,segment,proximal_row,proximal_col,distal_row,distal_col\nedge.dcm,M1,23.5,-0.4,23.5,63.3\n")
    from click.testing import CliRunner

    from stenosis.cli.main import cli

    r = CliRunner().invoke(cli, ["batch", str(src), "--points", str(points), "--out", str(tmp_path / "out"),
                                 "--jobs", "0", "--no-reports", "--quiet"])
    assert r.exit_code == 0, r.output
    with open(tmp_path / "out" / "results.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["status"] == "ok", row["error"]
    assert float(row["proximal_col"]) == 0.0 and float(row["distal_col"]) == 63.0
