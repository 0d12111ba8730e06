"""End-to-end measurement on phantom runs with known truth (stenosis.phantom)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import stenosis
from stenosis.errors import MeasurementError

SAMPLES = ["m1_subtracted_pixelspacing", "v4_native_magnification"]


def _measure(path, truth, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stenosis.measure(path, truth["segment"], tuple(truth["proximal_rc"]), tuple(truth["distal_rc"]), model="classical", **kw)


@pytest.fixture(scope="module", params=SAMPLES)
def measured(request, sample_dicom_dir):
    path = sample_dicom_dir / f"{request.param}.dcm"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    return path, truth, _measure(path, truth)


def test_percent_mld_reference_against_truth(measured):
    _, truth, res = measured
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)
    assert res.mld_mm == pytest.approx(truth["mld_mm"], abs=0.1)
    assert res.reference_diameter_mm == pytest.approx(truth["reference_diameter_mm"], abs=0.1)
    assert res.meets_50 == truth["meets_50"]
    assert res.reference_choice == truth["reference_choice"]
    assert res.frame_index == truth["frame_index"]
    # the MLD is found where the truth has it (within a lumen diameter)
    assert np.hypot(*np.subtract(res.mld_rc, truth["mld_rc"])) < truth["reference_diameter_mm"] / res.mm_per_px


def test_json_contract(measured):
    path, _, res = measured
    d = res.to_dict()
    for key in ("file", "segment", "frame_index", "percent_stenosis", "meets_50", "mld_mm", "mld_rc",
                "reference_diameter_mm", "reference_rc", "reference_choice", "lesion_length_mm",
                "calibration", "warnings", "software"):
        assert key in d
    assert d["file"] == path.name
    assert d["reference_choice"] in {"proximal", "distal", "feeding", "manual"}
    assert set(d["software"]) >= {"version", "model_sha256"}
    assert json.loads(json.dumps(d)) == d


def test_calibration_invariance_and_symmetry(measured):
    path, truth, res = measured
    # a different manual pixel size scales mm values, not the percent stenosis
    res2 = _measure(path, truth, pixel_mm=2 * res.mm_per_px)
    assert res2.percent_stenosis == pytest.approx(res.percent_stenosis, abs=0.5)
    assert res2.mld_mm == pytest.approx(2 * res.mld_mm, rel=0.02)
    assert res2.calibration["source"] == "manual"
    # swapping proximal and distal gives the same MLD
    sw = stenosis.measure(path, truth["segment"], tuple(truth["distal_rc"]), tuple(truth["proximal_rc"]), model="classical")
    assert sw.mld_mm == pytest.approx(res.mld_mm, abs=0.05)


def test_uncalibrated_run_reports_percent_but_no_mm(sample_dicom_dir):
    path = sample_dicom_dir / "m1_native_uncalibrated.dcm"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    res = _measure(path, truth)
    d = res.to_dict()
    assert d["mld_mm"] is None and d["reference_diameter_mm"] is None and d["lesion_length_mm"] is None
    assert d["percent_stenosis"] == pytest.approx(truth["percent_stenosis"], abs=5.0)
    assert any("uncalibrated" in w or "not reported" in w for w in d["warnings"])


def test_points_outside_or_off_vessel_are_one_line_errors(sample_dicom_dir):
    path = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    with pytest.raises(MeasurementError, match="outside the image") as e:
        stenosis.measure(path, "M1", (5000, 3), tuple(truth["distal_rc"]), model="classical")
    assert "\n" not in str(e.value)
    with pytest.raises(MeasurementError, match="not on"):
        stenosis.measure(path, "M1", (5, 5), tuple(truth["distal_rc"]), model="classical")


def test_severity_is_monotonic_on_phantoms(tmp_path):
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    pcts = []
    for pct in (30.0, 55.0, 75.0):
        spec = PhantomSpec(seed=5, segment="M1", stenosis_percent=pct, shape=(256, 256), mm_per_px=(0.2, 0.2),
                           n_frames=6, n_branches=1, crossing=False, subtracted=True, name=f"sev{int(pct)}")
        dcm, _ = make_phantom(spec, tmp_path / f"sev{int(pct)}.dcm")
        truth = load_truth(dcm)
        res = _measure(dcm, truth)
        assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=5.0)
        pcts.append(res.percent_stenosis)
    assert pcts[0] < pcts[1] < pcts[2]


def test_block_mean_probability_stays_on_the_vessel():
    # a horizontal bright (iodine-positive) tube at row 40.5 + a diagonal one; the probability
    # computed on 2x2 block means and brought back must peak on the same rows as at full size
    from scipy import ndimage as ndi

    from stenosis.trace import vessel_map

    img = np.zeros((96, 128), np.float32)
    rr, cc = np.mgrid[0:96, 0:128]
    img += 10.0 * (np.abs(rr - 40.5) <= 5)
    img += 10.0 * (np.abs((rr - cc) / np.sqrt(2) - 20.0) <= 4)
    img = ndi.gaussian_filter(img, 1.0) + np.random.default_rng(0).normal(0, 0.3, img.shape).astype(np.float32)
    full = vessel_map(img, "classical")
    half = vessel_map(img, "classical", factor=2)
    assert half.shape == full.shape
    cols = slice(90, 120)  # away from the crossing
    rows = np.arange(20, 60)[:, None]

    def centre(p):  # centroid of the vessel mask (p > 0.5) in each column
        m = p[20:60, cols] > 0.5
        return (rows * m).sum(0) / np.maximum(m.sum(0), 1)

    assert np.median(np.abs(centre(full) - 40.5)) <= 0.5
    assert np.median(np.abs(centre(half) - 40.5)) <= 0.5
    assert (half[38:44, cols] > 0.5).mean() > 0.9


def test_eccentric_lesion_at_fine_pixels_keeps_its_bottom(tmp_path):
    """An eccentric lesion's residual lumen sits against one wall of the artery.

    The side-vessel check must look beyond the artery's normal outline from there; it
    used to flag the artery's own outline as a branch over the lesion's bottom and drop
    those samples (this run measured 64.7% instead of 72.9%).
    """
    from stenosis.enums import CalibrationSource
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom
    from stenosis.result import QualityFlag

    spec = PhantomSpec(seed=1000, segment="M1", normal_diameter_mm=3.04, stenosis_percent=72.9,
                       stenosis_length_mm=4.830124529915336, eccentricity=1.0, n_branches=1, crossing=False, n_frames=7, shape=(512, 512),
                       mm_per_px=(0.1, 0.1), blur_sigma_mm=0.10065768840657494, photons=5000.0, subtracted=False,
                       calibration=CalibrationSource.GEOMETRY)
    dcm, _ = make_phantom(spec, tmp_path / "ecc.dcm")
    truth = load_truth(dcm)
    res = stenosis.measure(dcm, "M1", truth["proximal_rc"], truth["distal_rc"])
    prof = res.profile
    near = np.abs(prof.arc_px - res.mld_arc_px) <= 0.5 / 0.1  # +-0.5 mm around the MLD
    assert not np.any(prof.flags[near] & int(QualityFlag.BRANCH))
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=3.0)
    assert res.mld_mm == pytest.approx(truth["mld_mm"], abs=0.1)


def test_uncertainty_grows_with_noise_and_covers_the_truth(tmp_path):
    """1-SD uncertainty of the result: larger at a quarter of the dose, and the truth inside +-3 SD."""
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    sds = []
    for photons in (80000.0, 5000.0):
        spec = PhantomSpec(seed=11, segment="BA", normal_diameter_mm=3.0, stenosis_percent=70.0, stenosis_length_mm=6.0,
                           shape=(256, 256), mm_per_px=(0.25, 0.25), n_frames=6, photons=photons, subtracted=True,
                           crossing=False, n_branches=1)
        dcm, _ = make_phantom(spec, tmp_path / f"u{int(photons)}.dcm")
        truth = load_truth(dcm)
        res = _measure(dcm, truth)
        assert np.isfinite(res.percent_stenosis_sd) and res.percent_stenosis_sd > 0
        assert abs(res.percent_stenosis - truth["percent_stenosis"]) <= 3 * res.percent_stenosis_sd
        assert abs(res.mld_mm - truth["mld_mm"]) <= 3 * res.mld_sd_px * res.mm_per_px
        u = res.to_dict()["uncertainty"]
        assert u["percent_stenosis_sd"] == pytest.approx(res.percent_stenosis_sd, abs=0.01)
        lo, hi = u["percent_stenosis_2sd_interval"]
        assert lo < res.percent_stenosis < hi
        sds.append(res.percent_stenosis_sd)
    assert sds[1] > 1.5 * sds[0]


def test_vessel_beside_the_lesion_does_not_drop_its_bottom(tmp_path):
    """A second vessel ~3 mm beside a lesion (phantom branch) lies in the profiles' tails.

    Flagging those samples as BRANCH dropped the lesion's bottom (57% for a 71.7% lesion);
    they are refitted on profiles cut short of the other vessel instead.
    """
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom
    from stenosis.result import QualityFlag

    spec = PhantomSpec(seed=1010, segment="BA", normal_diameter_mm=2.56, stenosis_percent=71.7,
                       stenosis_length_mm=6.833446394496146, eccentricity=0.5, crossing=False,
                       proximal_diseased=True, shape=(384, 384), mm_per_px=(0.25, 0.25), n_frames=7,
                       blur_sigma_mm=0.19304631814130097, photons=5000.0, subtracted=True)
    dcm, _ = make_phantom(spec, tmp_path / "beside.dcm")
    truth = load_truth(dcm)
    res = stenosis.measure(dcm, "BA", truth["proximal_rc"], truth["distal_rc"])
    prof = res.profile
    # the MLD is found at the lesion's bottom, on a sample that is not flagged
    assert abs(res.mld_arc_px * res.mm_per_px - (truth["mld_arc_mm"] - truth["proximal_arc_mm"])) <= 1.0
    k = int(np.argmin(np.abs(prof.arc_px - res.mld_arc_px)))
    assert not prof.flags[k] & int(QualityFlag.BRANCH)
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=4.0)


def test_lesion_beside_a_crossing_vessel_is_measured_not_skipped(tmp_path):
    """A 73.9% BA lesion with a vessel crossing the segment a few mm distal to it.

    The crossing vessel runs beside the narrowing, whose samples were flagged BRANCH and
    POOR_FIT and then skipped: the MLD landed on the lesion's shoulder, 37.6% for 73.9%
    with an SD of 2 points (robustness seed 53). They are now refitted short of the other
    vessel, and the narrowing, still a POOR_FIT, is taken as the MLD with a warning.
    """
    from stenosis.enums import CalibrationSource
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    spec = PhantomSpec(seed=1026, segment="BA", normal_diameter_mm=3.52, taper=0.1, stenosis_percent=73.6,
                       stenosis_length_mm=6.520514735052332, eccentricity=0.5, n_branches=1, crossing=True,
                       crossing_in_segment=True, shape=(384, 384), mm_per_px=(0.25, 0.25), n_frames=7,
                       blur_sigma_mm=0.23897027185217926, scatter_fraction=0.15, photons=80000.0, poisson=True,
                       motion_px=(0.62, 0.43), subtracted=False, intensity_relationship="LIN",
                       calibration=CalibrationSource.GEOMETRY, compression="rle")
    dcm, _ = make_phantom(spec, tmp_path / "crossing_lesion.dcm")
    truth = load_truth(dcm)
    res = stenosis.measure(dcm, "BA", truth["proximal_rc"], truth["distal_rc"])
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=4.0)
    assert res.mld_mm == pytest.approx(truth["mld_mm"], abs=0.12)
    assert any("narrowest part of the segment is flagged" in w for w in res.warnings)


def test_shallow_crossing_is_not_taken_for_a_wide_normal_segment(tmp_path):
    """A vessel crossing the traced M1 at ~30 degrees, distal to the lesion.

    Its footprint ends before the side-vessel probe starts and the profile fit absorbed it
    into a wider lumen (3.4 mm for 2.8 mm, unflagged); that "widest normal window" made the
    whole normal proximal M1 look narrowed: reference 3.31 mm, 53.4% for a 43.8% lesion.
    The crossing is now flagged OVERLAP from the vessel map around each sample.
    """
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom
    from stenosis.result import QualityFlag

    spec = PhantomSpec(seed=1000, segment="M1", normal_diameter_mm=2.82, stenosis_percent=43.8,
                       stenosis_length_mm=5.382238655010841, eccentricity=1.0, n_branches=1,
                       crossing=True, crossing_in_segment=True, shape=(384, 384), mm_per_px=(0.35, 0.35),
                       n_frames=7, blur_sigma_mm=0.2815848589375568, photons=20000.0, subtracted=True)
    dcm, _ = make_phantom(spec, tmp_path / "crossing.dcm")
    truth = load_truth(dcm)
    res = stenosis.measure(dcm, "M1", truth["proximal_rc"], truth["distal_rc"])
    prof = res.profile
    # the samples at the crossing carry the OVERLAP flag
    arc_cross = (truth["crossing_arc_mm"] - truth["proximal_arc_mm"]) / res.mm_per_px
    k = int(np.argmin(np.abs(prof.arc_px - arc_cross)))
    assert prof.flags[k] & int(QualityFlag.OVERLAP)
    assert res.reference_choice == truth["reference_choice"] == "proximal"
    assert res.reference_diameter_mm == pytest.approx(truth["reference_diameter_mm"], abs=0.1)
    assert res.percent_stenosis == pytest.approx(truth["percent_stenosis"], abs=4.0)


def test_clipped_pixel_values_along_the_lumen_are_reported(sample_dicom_dir):
    """An export with a display window clips the densest iodine: the tool says so."""
    import dataclasses

    path = sample_dicom_dir / "m1_subtracted_pixelspacing.dcm"
    truth = json.loads(path.with_suffix(".truth.json").read_text())
    run = stenosis.read_run(path)
    clean = _measure(run, truth)
    assert not any("clipped" in w for w in clean.warnings)
    frames = np.asarray(run.frames)
    lo = np.percentile(frames[truth["frame_index"]], 2.0)  # the darkest 2% of the frame: the lumen
    clipped = dataclasses.replace(run, frames=np.maximum(frames, lo.astype(frames.dtype)))
    res = _measure(clipped, truth)
    assert any("clipped" in w for w in res.warnings)


def test_a_faint_real_vessel_the_map_sees_is_measured(cimat_dir):
    """CIMAT image 23: points on the expert centreline of a faint vessel (its 5-pixel contrast
    just below 2.5 noise SDs in the textured background) were refused as 'no contrast there';
    the U-Net map holds the vessel there (p 0.99), so it is measured."""
    from PIL import Image

    from stenosis.io import AngioRun

    img = np.array(Image.open(cimat_dir / "23.png").convert("L"))
    run = AngioRun.from_array(img, pixel_intensity_relationship=None)
    res = stenosis.measure(run, "M1", (168.0, 76.0), (222.0, 113.0))
    assert np.isfinite(res.percent_stenosis)
    assert len(res.profile) > 100
