"""Reader overrides of :func:`stenosis.measure`: waypoints, reference site, MLD placement,
and the frame guess shown before measuring. Geometry is known: a synthetic subtracted
run with a straight artery and a detour vessel, and the bundled phantom samples."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import stenosis
from stenosis.errors import MeasurementError
from stenosis.io import AngioRun, RunMetadata

MM = 0.2  # mm per pixel of the synthetic run


def _tube(img, rr, cc, r0, rows, cols, radius):
    """Add the projected path length of a tube along the polyline (rows, cols)."""
    pts = np.stack([rows, cols], 1).astype(float)
    d = np.full(img.shape, np.inf)
    for a, b in zip(pts[:-1], pts[1:]):
        ab = b - a
        t = np.clip(((rr - a[0]) * ab[0] + (cc - a[1]) * ab[1]) / (ab @ ab), 0, 1)
        d = np.minimum(d, np.hypot(rr - a[0] - t * ab[0], cc - a[1] - t * ab[1]))
    img += 2 * np.sqrt(np.clip(radius**2 - d**2, 0, None))


@pytest.fixture(scope="module")
def detour_run():
    """Straight artery along row 100 (radius 5 px) and a thinner detour vessel (radius 3 px)
    leaving it at col 60 and rejoining at col 180 through row 40."""
    h, w = 160, 240
    rr, cc = np.mgrid[0:h, 0:w].astype(float)
    path = np.zeros((h, w))
    _tube(path, rr, cc, 0, np.array([100, 100]), np.array([5, 235]), 5.0)
    t = np.linspace(0, np.pi, 60)
    _tube(path, rr, cc, 0, 100 - 60 * np.sin(t), 60 + 120 * (1 - np.cos(t)) / 2, 3.0)
    rng = np.random.default_rng(0)
    img = 2000 - 40 * path + rng.normal(0, 4, (h, w))  # vessels darker, as displayed
    frames = np.clip(img, 0, 4095).astype(np.uint16)[None]
    meta = RunMetadata(run_id="0" * 16, modality="XA", sop_class_uid="1.2.840.10008.5.1.4.1.1.12.1",
                       transfer_syntax_uid="1.2.840.10008.1.2.1", transfer_syntax_name="Explicit VR Little Endian",
                       rows=h, cols=w, n_frames=1, bits_stored=12, photometric="MONOCHROME2", subtracted=True)
    from stenosis.calibration import manual_calibration

    return AngioRun(frames=frames, calibration=manual_calibration(MM), metadata=meta, source="<synthetic>")


def _m(run, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stenosis.measure(run, "M1", *a, model="classical", **kw)


def test_waypoint_routes_the_trace_through_the_detour(detour_run):
    straight = _m(detour_run, (100, 20), (100, 220))
    # the straight artery is 200 px long; the detour adds ~2 x 60 px of climb
    assert straight.profile.arc_px[-1] == pytest.approx(200, abs=6)
    assert np.abs(straight.profile.centerline_rc[:, 0] - 100).max() < 2.0
    via = _m(detour_run, (100, 20), (100, 220), waypoints=[(40, 120)])
    assert via.profile.arc_px[-1] > 240  # semicircle of radius 60 px + 2 x 40 px: 268 px, corners cut by the spline
    assert via.profile.centerline_rc[:, 0].min() == pytest.approx(40, abs=2.0)
    # the detour is the narrower vessel: 6 px of 10 px -> ~40% stenosis against the artery
    assert via.mld_px == pytest.approx(6.0, abs=0.6)
    assert via.parameters["reader"]["waypoints_rc"] == [[40.0, 120.0]]
    assert straight.parameters["reader"] == {}


def test_waypoint_off_any_vessel_is_a_clear_error(detour_run):
    with pytest.raises(MeasurementError, match="waypoint 1"):
        _m(detour_run, (100, 20), (100, 220), waypoints=[(150, 120)])


@pytest.fixture(scope="module")
def sample(sample_dicom_dir):
    path = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    run = stenosis.read_run(path)
    auto = _m(run, tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]))
    return run, truth, auto


def test_reference_site_can_be_forced(sample):
    run, truth, auto = sample
    p, d = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    i_mld = np.argmin(np.hypot(*(auto.profile.centerline_rc - np.asarray(auto.mld_rc)).T))
    for choice in ("proximal", "distal"):
        res = _m(run, p, d, reference_choice=choice)
        assert res.reference_choice == choice
        k = np.argmin(np.hypot(*(res.profile.centerline_rc - np.asarray(res.reference_rc)).T))
        assert (k < i_mld) if choice == "proximal" else (k > i_mld)
        # the phantom's artery is uniform outside the lesion: either site gives the truth
        assert res.reference_diameter_mm == pytest.approx(truth["reference_diameter_mm"], abs=0.12)
        assert res.parameters["reader"]["reference_choice"] == choice
    with pytest.raises(MeasurementError, match="feeding"):
        _m(run, p, d, reference_choice="feeding")
    with pytest.raises(MeasurementError, match="either"):
        _m(run, p, d, reference_choice="distal", reference=auto.reference_rc)


def test_mld_placement(sample):
    run, truth, auto = sample
    p, d = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    same = _m(run, p, d, mld=auto.mld_rc)
    assert same.percent_stenosis == pytest.approx(auto.percent_stenosis, abs=1e-9)
    # placed on a normal part of the artery: the MLD is found there, and the "stenosis" vanishes
    k = len(auto.profile.centerline_rc) // 8
    there = tuple(auto.profile.centerline_rc[k])
    res = _m(run, p, d, mld=there)
    assert np.hypot(*np.subtract(res.mld_rc, there)) < 1.0 * auto.reference_diameter_px
    assert abs(res.percent_stenosis) < 10.0
    assert res.parameters["reader"]["mld_rc"] == [round(v, 2) for v in there]
    with pytest.raises(MeasurementError, match="MLD point"):
        _m(run, p, d, mld=(2.0, 2.0))


def test_guess_frame_matches_measure_and_is_opacified(sample):
    run, truth, auto = sample
    p, d = tuple(truth["proximal_rc"]), tuple(truth["distal_rc"])
    g = stenosis.guess_frame(run, [p, d])
    g_all = stenosis.guess_frame(run)
    assert 0 <= g < run.n_frames and 0 <= g_all < run.n_frames
    # the guess has iodine where the segment is: at least 90% of the opacity of the final frame
    st = stenosis.opacify(run, register=False)
    cl = np.round(auto.profile.centerline_rc).astype(int)
    along = st[:, cl[:, 0], cl[:, 1]].mean(axis=1)
    assert along[g] >= 0.9 * along[auto.frame_index]
    # forcing the final frame gives the same numbers (to 0.5 point: the trace then starts on
    # that frame instead of being moved there from the guess)
    forced = _m(run, p, d, frame=auto.frame_index)
    assert forced.percent_stenosis == pytest.approx(auto.percent_stenosis, abs=0.5)


def test_cli_overrides(sample_dicom_dir, tmp_path):
    from stenosis.cli.main import cli

    path = str(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm")
    truth = json.loads((sample_dicom_dir / "m1_subtracted_pixelspacing.truth.json").read_text())
    pts = ["--proximal", "{},{}".format(*truth["proximal_rc"]), "--distal", "{},{}".format(*truth["distal_rc"])]
    r = CliRunner().invoke(cli, ["measure", path, "--segment", "M1", *pts, "--model", "classical", "--json",
                                 "--reference-choice", "distal"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["reference_choice"] == "distal" and d["parameters"]["reader"] == {"reference_choice": "distal"}
    r = CliRunner().invoke(cli, ["measure", path, "--segment", "M1", *pts, "--reference-choice", "distal", "--reference", "10,10"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["measure", path, "--segment", "M1", *pts, "--model", "classical", "--mld", "3,3"])
    assert r.exit_code == 3 and "MLD point" in r.output


def test_borderline_results_ask_for_a_reader():
    from stenosis.measurement import BORDERLINE_POINTS, borderline_warning

    assert borderline_warning(50.0) and borderline_warning(46.0) and borderline_warning(53.9)
    assert borderline_warning(50.0 - BORDERLINE_POINTS) is None and borderline_warning(60.0) is None
    assert borderline_warning(35.0) is None
    assert "confirm the >= 50% call" in borderline_warning(48.2)


def test_borderline_uses_the_measurement_uncertainty():
    from stenosis.measurement import borderline_warning

    # 8 points from 50% is outside the fixed band, but not outside a +-2 SD of 4.5 points
    assert borderline_warning(58.0, 1.0) is None
    msg = borderline_warning(58.0, 4.5)
    assert msg and "includes 50%" in msg and "49.0 to 67.0%" in msg
    assert borderline_warning(52.0, 0.5) and "within 5 points" in borderline_warning(52.0, 0.5)
