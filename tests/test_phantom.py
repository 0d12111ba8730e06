"""Phantom self-consistency: the rendered physics and the truth agree with the geometry."""
from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest
from scipy import ndimage as ndi

from stenosis.phantom import (
    PhantomSpec,
    load_truth,
    make_phantom,
    make_tube,
    path_length_mm,
    render_phantom,
    training_pair,
)
from stenosis.phantom.render import chord_pixel_mean

# a small, quick run that still has room for the lesion, its reference and the points
SMALL = dict(shape=(200, 200), mm_per_px=(0.25, 0.25), n_frames=5, n_mask_frames=1, arrival_frames=1)


def _straight_tube(angle: float, radius: float, centre=(12.5, 12.5), length=80.0):
    s = np.arange(0.0, length, 0.05)
    base = np.stack([centre[0] + (s - length / 2) * np.sin(angle), centre[1] + (s - length / 2) * np.cos(angle)], 1)
    return make_tube(base, s, 2 * radius)


@pytest.mark.parametrize("angle", [0.0, 0.3, np.pi / 4, 1.1])
@pytest.mark.parametrize("radius", [0.15, 0.6, 2.0])
def test_cross_section_integral_equals_area(angle, radius):
    # the line integral of the path length across a straight vessel is pi R^2
    px = (0.25, 0.25)
    img = path_length_mm([_straight_tube(angle, radius)], (100, 100), px)
    col_integrals = img[:, 40:60].sum(axis=0) * px[0] * abs(np.cos(angle))
    np.testing.assert_allclose(col_integrals, np.pi * radius**2, rtol=0.01)


def test_anisotropic_pixels_keep_the_area():
    px = (0.2, 0.3)
    radius = 0.8
    img = path_length_mm([_straight_tube(0.0, radius, centre=(10.0, 15.0))], (100, 100), px)
    np.testing.assert_allclose(img[:, 30:70].sum(axis=0) * px[0], np.pi * radius**2, rtol=0.01)


def test_pixel_mean_chord_matches_supersampling():
    rng = np.random.default_rng(1)
    x0, r = rng.uniform(-2, 2, 50), rng.uniform(0.2, 1.5, 50)
    a, b = rng.uniform(0.05, 0.3, 50), rng.uniform(0.05, 0.3, 50)
    u = (np.arange(64) + 0.5) / 64 - 0.5
    x = x0[:, None, None] + a[:, None, None] * u[None, :, None] + b[:, None, None] * u[None, None, :]
    brute = (2 * np.sqrt(np.clip(r[:, None, None] ** 2 - x**2, 0, None))).mean(axis=(1, 2))
    np.testing.assert_allclose(chord_pixel_mean(x0, r, a, b), brute, atol=2e-3)


def test_rendered_cross_section_at_reference():
    ph = render_phantom(PhantomSpec(seed=5, segment="ICA", crossing=False, n_branches=0, **SMALL))
    t = ph.truth
    rc = np.array(t["centerline_rc"])
    i = int(np.argmin(np.hypot(*(rc - np.array(t["reference_rc"])).T)))
    tangent = rc[i + 5] - rc[i - 5]
    tangent /= np.linalg.norm(tangent)
    normal = np.array([-tangent[1], tangent[0]])
    step = 0.05
    u = np.arange(-30, 30, step)
    pts = rc[i][:, None] + normal[:, None] * u[None, :]
    prof = ndi.map_coordinates(ph.path_length_mm.astype(float), pts, order=1)
    area = prof.sum() * step * t["mm_per_px"][0]
    r = t["reference_diameter_mm"] / 2
    assert area == pytest.approx(np.pi * r * r, rel=0.01)


@pytest.fixture(scope="module")
def phantom():
    spec = PhantomSpec(seed=7, segment="M1", stenosis_percent=65, eccentricity=1.0, motion_px=(0.4, -0.3), **SMALL)
    return render_phantom(spec)


def test_truth_positions_lie_on_the_vessel(phantom):
    t = phantom.truth
    L = phantom.path_length_mm
    for key in ("proximal_rc", "distal_rc", "reference_rc", "mld_rc"):
        r, c = np.rint(t[key]).astype(int)
        assert L[r, c] > 0.1 * t["mld_mm"], key
    for r, c in np.rint(np.array(t["centerline_rc"])[::20]).astype(int):
        assert L[r, c] > 0


def test_truth_is_self_consistent(phantom):
    t = phantom.truth
    d = np.array(t["diameter_mm"])
    assert t["mld_mm"] == d.min()
    assert np.diff(t["arc_mm"]) == pytest.approx(0.1)
    assert t["percent_stenosis"] == pytest.approx((1 - t["mld_mm"] / t["reference_diameter_mm"]) * 100, abs=1e-3)
    assert t["meets_50"] == (t["percent_stenosis"] >= 50)
    # no taper, no proximal disease: the WASID percent is the lesion's nominal percent
    assert t["percent_stenosis"] == pytest.approx(65.0, abs=0.05)
    assert t["reference_choice"] == "proximal"
    # reader points: proximal at least 3 reference diameters before the lesion
    st = t["stenoses"][0]
    assert st["position_mm"] - st["length_mm"] / 2 - t["proximal_arc_mm"] >= 3 * t["reference_diameter_mm"]
    assert t["proximal_arc_mm"] < t["reference_arc_mm"] < t["mld_arc_mm"] < t["distal_arc_mm"]
    # lesion length by its rule, computed independently: p * w(s) > 0.1 on the cosine
    p = st["percent"] / 100
    half = st["length_mm"] / (2 * np.pi) * np.arccos(2 * 0.1 / p - 1)  # where p*w(s) = 0.1
    assert t["lesion_length_mm"] == pytest.approx(2 * half, abs=0.11)
    # the graded segment is full once the inflow's plateau (frame 2) has travelled to the
    # distal point at 300 mm/s from the field entry (frames of 1/3 s)
    arrival_distal = (t["distal_arc_mm"] - t["arc_mm"][0]) / 300.0
    assert t["frame_index"] == 2 + int(np.ceil(arrival_distal / (1 / 3)))


def test_eccentric_stenosis_keeps_one_wall(phantom):
    scene = phantom.scene
    st = scene.stenoses[0]
    s = np.linspace(st.position_mm - st.length_mm, st.position_mm + st.length_mm, 401)
    d, off = scene.diameter(s)
    dn = scene.normal_diameter(s)
    kept = st.side * off + d / 2  # the wall on `side`, measured from the base centreline
    moved = st.side * off - d / 2
    np.testing.assert_allclose(kept, dn / 2, atol=1e-9)
    assert moved.max() - moved.min() == pytest.approx(dn[0] * st.percent / 100, rel=1e-3)


def test_concentric_stenosis_keeps_the_centre():
    ph = render_phantom(PhantomSpec(seed=3, eccentricity=0.0, **SMALL))
    _, off = ph.scene.diameter(np.array(ph.truth["arc_mm"]))
    assert np.abs(off).max() == 0


def test_occlusion_renders_zero_iodine_at_the_mld():
    ph = render_phantom(PhantomSpec(seed=4, stenosis_percent=100, crossing=False, n_branches=0, **SMALL))
    t = ph.truth
    assert t["mld_mm"] == 0 and t["percent_stenosis"] == 100
    r, c = np.rint(t["mld_rc"]).astype(int)
    # only the pixel aperture's reach into the narrowing tails remains
    assert ph.path_length_mm[r, c] < 0.01 * t["reference_diameter_mm"]
    r, c = np.rint(t["reference_rc"]).astype(int)
    assert ph.path_length_mm[r, c] > 0.9 * t["reference_diameter_mm"]


def test_vessels_darker_and_bolus(phantom):
    t = phantom.truth
    r, c = np.rint(t["reference_rc"]).astype(int)
    f = phantom.stored.astype(float)
    contrast = f[t["frame_index"]] - f[0]
    assert contrast[r, c] < -20  # darker where iodine is (MONOCHROME2, stored ~ log I)
    assert abs(np.median(contrast)) < 5  # the background cancels
    assert list(phantom.concentration) == [0.0, 0.5, 1.0, 1.0, 1.0]


def test_bolus_front_travels_along_the_trunk_and_into_the_branches():
    spec = PhantomSpec(seed=12, crossing=False, branch_fractions=(0.05, 0.95), background=False, photons=None, **SMALL)
    ph = render_phantom(spec)
    t = ph.truth
    arc, arrival = np.array(t["arc_mm"]), np.array(t["arrival_s"])
    # 0 where the artery enters the field, then later and later along it at 300 mm/s
    assert arrival[0] == pytest.approx(0.0, abs=1e-3)
    assert np.all(np.diff(arrival) > 0)
    np.testing.assert_allclose(np.diff(arrival), np.diff(arc) / 300.0, atol=2e-4)
    # a side branch starts from its parent's arrival at its origin and fills on from there
    assert len(ph.arrival_s) == 3 and len(t["branch_arc_mm"]) == 2
    for origin, branch in zip(t["branch_arc_mm"], ph.arrival_s[1:]):
        assert branch[0] == pytest.approx(np.interp(origin, arc, arrival), abs=1e-3)
        assert np.all(np.diff(branch) > 0)
    # the frames show it: mask frame empty; while the bolus rises (frame 1, half of the
    # inflow's plateau) a point holds the inflow's concentration delayed by its arrival
    sig = -ph.log_intensity.astype(float)
    assert np.abs(sig[0]).max() < 1e-9
    fractions = []
    for key in ("proximal", "distal"):
        r, c = np.rint(t[f"{key}_rc"]).astype(int)
        delay_frames = np.interp(t[f"{key}_arc_mm"], arc, arrival) / (spec.frame_time_ms / 1000)
        fractions.append(sig[1, r, c] / sig[-1, r, c])
        assert fractions[-1] == pytest.approx(0.5 * (1 - delay_frames), abs=0.03), key
    assert fractions[0] > fractions[1] + 0.1
    # the graded segment is full in frame_index, not before
    r, c = np.rint(t["distal_rc"]).astype(int)
    assert sig[t["frame_index"], r, c] == pytest.approx(sig[-1, r, c], rel=1e-6)
    assert sig[t["frame_index"] - 1, r, c] < 0.95 * sig[-1, r, c]


def test_no_bolus_front_fills_everywhere_at_once():
    ph = render_phantom(PhantomSpec(seed=12, bolus_velocity_mm_s=None, **SMALL))
    assert not np.any(ph.truth["arrival_s"]) and ph.frame_index == 2
    assert all(not np.any(a) for a in ph.arrival_s)


def test_slow_front_without_a_full_frame_says_what_to_do():
    from stenosis.errors import InputError

    with pytest.raises(InputError, match="add frames"):
        render_phantom(PhantomSpec(seed=12, bolus_velocity_mm_s=20.0, **SMALL))
    with pytest.raises(InputError, match="bolus_velocity_mm_s"):
        PhantomSpec(bolus_velocity_mm_s=0.0)


@pytest.mark.parametrize(
    "calibration,subtracted,compression",
    [("pixel_spacing", True, "rle"), ("geometry", False, "none"), ("magnification", False, "rle"), ("none", True, "none")],
)
def test_dicom_round_trip(tmp_path, calibration, subtracted, compression):
    spec = PhantomSpec(
        seed=11, calibration=calibration, subtracted=subtracted, compression=compression,
        sid_mm=1130.0, sod_mm=817.0, **{**SMALL, "mm_per_px": (0.23, 0.23)},
    )
    dcm, truth_path = make_phantom(spec, tmp_path / "run.dcm")
    assert truth_path.name == "run.truth.json"
    ds = pydicom.dcmread(dcm)
    t = load_truth(dcm)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.12.1" and ds.Modality == "XA"
    assert ds.file_meta.TransferSyntaxUID == ("1.2.840.10008.1.2.5" if compression == "rle" else "1.2.840.10008.1.2.1")
    assert int(ds.NumberOfFrames) == spec.n_frames
    assert ds.PixelIntensityRelationship == "LOG"
    assert ds.PatientName == "PHANTOM^STENOSIS"
    np.testing.assert_array_equal(ds.pixel_array, render_phantom(spec).stored)
    if calibration == "pixel_spacing":
        mm = [float(v) for v in ds.PixelSpacing]
    elif calibration == "geometry":
        mm = [float(v) * float(ds.DistanceSourceToPatient) / float(ds.DistanceSourceToDetector) for v in ds.ImagerPixelSpacing]
    elif calibration == "magnification":
        mm = [float(v) / float(ds.EstimatedRadiographicMagnificationFactor) for v in ds.ImagerPixelSpacing]
    else:
        assert not any(k in ds for k in ("PixelSpacing", "ImagerPixelSpacing"))
        mm = None
    if mm is not None:
        np.testing.assert_allclose(mm, t["mm_per_px"], rtol=1e-3)
    if subtracted:
        assert "SUBTRACTED" in ds.ImageType and "MaskSubtractionSequence" not in ds
    else:
        item = ds.MaskSubtractionSequence[0]
        assert item.MaskOperation == "AVG_SUB"
        assert list(np.atleast_1d(item.MaskFrameNumbers)) == [1]  # 1-based; mask frame 0


def test_same_seed_same_bytes(tmp_path):
    spec = PhantomSpec(seed=21, **SMALL)
    a, _ = make_phantom(spec, tmp_path / "a" / "run.dcm")
    b, _ = make_phantom(spec, tmp_path / "b" / "run.dcm")
    c, _ = make_phantom(spec.replace(seed=22), tmp_path / "c" / "run.dcm")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (a, b, c)]
    assert digest[0] == digest[1] != digest[2]
    assert (tmp_path / "a" / "run.truth.json").read_bytes() == (tmp_path / "b" / "run.truth.json").read_bytes()


def test_artery_typical_diameters():
    from stenosis.phantom import NORMAL_DIAMETER_MM

    for seg, (lo, hi) in NORMAL_DIAMETER_MM.items():
        t = render_phantom(PhantomSpec(seed=2, segment=seg, stenosis_percent=0, photons=None, **SMALL)).truth
        assert lo <= t["reference_diameter_mm"] <= hi


def test_training_pair():
    rng = np.random.default_rng(0)
    for _ in range(4):
        img, mask = training_pair(rng, size=128)
        assert img.shape == mask.shape == (128, 128)
        assert img.dtype == np.float32 and mask.dtype == bool
        assert 0.001 < mask.mean() < 0.6
        assert img[mask].mean() < img[~mask].mean()  # vessels darker as displayed
    a = training_pair(np.random.default_rng(5), size=96)
    b = training_pair(np.random.default_rng(5), size=96)
    np.testing.assert_array_equal(a[0], b[0])


def test_specified_centreline_and_washout():
    pts = ((-20.0, 20.0), (60.0, 90.0), (120.0, 110.0), (220.0, 180.0))
    spec = PhantomSpec(seed=8, control_points_px=pts, n_frames=7, washout_frames=2, crossing=False,
                       n_branches=0, **{k: v for k, v in SMALL.items() if k != "n_frames"})
    ph = render_phantom(spec)
    rc = np.array(ph.truth["centerline_rc"])
    # the centreline passes through the interior control points (no eccentric offset here)
    for p in pts[1:3]:
        assert np.hypot(*(rc - np.array(p)).T).min() < 0.1
    assert list(ph.concentration) == pytest.approx([0, 0.5, 1, 1, 1, 0.65, 0.3])
    assert PhantomSpec.from_dict(ph.truth["spec"]) == spec


def test_too_small_field_says_what_to_do():
    from stenosis.errors import InputError

    with pytest.raises(InputError, match="larger shape"):
        render_phantom(PhantomSpec(shape=(40, 40), **{k: v for k, v in SMALL.items() if k != "shape"}))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    angle=st.floats(0, np.pi),
    radius=st.floats(0.1, 2.5),
    dr=st.floats(-0.5, 0.5),
    px_r=st.floats(0.1, 0.35),
    px_c=st.floats(0.1, 0.35),
)
def test_cross_section_integral_property(angle, radius, dr, px_r, px_c):
    # the iodine volume per unit vessel length is pi R^2 whatever the angle, offset and pixel shape
    extent = 10 * radius + 16.0  # mm: every line below crosses the whole lumen inside the field
    shape = (int(extent / px_r), int(extent / px_c))
    ci, cj = shape[0] // 2, shape[1] // 2
    centre = (ci * px_r + dr, cj * px_c - dr)
    img = path_length_mm([_straight_tube(angle, radius, centre=centre, length=4 * extent)], shape, (px_r, px_c))
    # integrate along columns (or rows) through the centre of the field
    if abs(np.cos(angle)) > 0.5:
        lines = img[:, cj - 10 : cj + 10].sum(axis=0) * px_r * abs(np.cos(angle))
    else:
        lines = img[ci - 10 : ci + 10, :].sum(axis=1) * px_c * abs(np.sin(angle))
    np.testing.assert_allclose(lines, np.pi * radius**2, rtol=0.01)


def test_branch_positions_are_chosen():
    spec = PhantomSpec(seed=9, branch_fractions=(0.1, 0.9), crossing=False, **SMALL)
    ph = render_phantom(spec)
    t = ph.truth
    assert len(t["branch_arc_mm"]) == 2 and t["crossing_arc_mm"] is None
    assert len(ph.scene.others) == 2
    a = np.array(t["arc_mm"])
    assert t["branch_arc_mm"][0] < a[len(a) // 5] and t["branch_arc_mm"][1] > a[-len(a) // 5]


def test_random_specs_render_and_round_trip():
    from stenosis.phantom import random_spec

    for seed in range(3):
        spec = random_spec(seed, shape=(384, 384), n_frames=4, n_mask_frames=1, arrival_frames=1)
        assert random_spec(seed, shape=(384, 384), n_frames=4, n_mask_frames=1, arrival_frames=1) == spec
        t = render_phantom(spec).truth
        assert PhantomSpec.from_dict(t["spec"]) == spec
        # WASID percent against the normal diameter at the lesion and the taper
        dn_lesion = t["mld_mm"] / (1 - spec.stenosis_percent / 100)
        assert dn_lesion <= t["reference_diameter_mm"] * (1 + 1e-6)
        assert dn_lesion >= t["reference_diameter_mm"] * (1 - spec.taper)


def test_image_chain_preserves_the_iodine_integral():
    # noiseless, no background, weak iodine: -ln I is ~ mu L, and blur moves signal
    # across the vessel without creating or losing it
    mu = 0.01
    spec = PhantomSpec(seed=6, crossing=False, n_branches=0, background=False, photons=None,
                       mu_iodine_per_mm=mu, blur_sigma_mm=0.3, scatter_fraction=0.0, **SMALL)
    ph = render_phantom(spec)
    t = ph.truth
    sig = -ph.log_intensity[t["frame_index"]].astype(float)
    rc = np.array(t["centerline_rc"])
    i = int(np.argmin(np.hypot(*(rc - np.array(t["reference_rc"])).T)))
    tangent = (rc[i + 5] - rc[i - 5]) / np.linalg.norm(rc[i + 5] - rc[i - 5])
    normal = np.array([-tangent[1], tangent[0]])
    u = np.arange(-30, 30, 0.05)
    prof = ndi.map_coordinates(sig, rc[i][:, None] + normal[:, None] * u[None, :], order=1)
    r = t["reference_diameter_mm"] / 2
    assert prof.sum() * 0.05 * t["mm_per_px"][0] == pytest.approx(mu * np.pi * r * r, rel=0.02)


def test_blur_conserves_intensity_and_noise_has_the_quantum_level():
    from stenosis.phantom.render import Blur, add_quantum_noise

    blur = Blur((64, 80), (0.2, 0.2), sigma_mm=0.3, scatter_fraction=0.1, scatter_sigma_mm=8.0)
    np.testing.assert_allclose(blur(np.full((64, 80), 0.7)), 0.7, rtol=1e-6)
    rng = np.random.default_rng(0)
    for poisson in (True, False):
        noisy = add_quantum_noise(rng, np.full((200, 200), 0.25), photons=4000.0, poisson=poisson)
        assert noisy.mean() == pytest.approx(0.25, rel=2e-3)
        assert noisy.std() == pytest.approx(np.sqrt(0.25 * 4000) / 4000, rel=0.03)


@pytest.mark.parametrize("relationship,photometric", [("LIN", "MONOCHROME2"), ("LOG", "MONOCHROME1"), ("LIN", "MONOCHROME1")])
def test_lin_and_monochrome1_encodings(tmp_path, relationship, photometric):
    base = PhantomSpec(seed=12, photons=None, **SMALL)
    spec = base.replace(intensity_relationship=relationship, photometric=photometric)
    ref, ph = render_phantom(base), render_phantom(spec)
    dcm, _ = make_phantom(spec, tmp_path / "run.dcm")
    ds = pydicom.dcmread(dcm)
    assert ds.PixelIntensityRelationship == relationship and ds.PhotometricInterpretation == photometric
    np.testing.assert_array_equal(ds.pixel_array, ph.stored)
    shown = ph.displayed.astype(float)
    if relationship == "LIN":  # displayed ~ 4000 I: its log is the LOG run's data up to scale and offset
        # bound: half a LOG step plus half a LIN step carried through the log
        err = np.abs(np.log(shown / 4000) * 600 + 4000 - ref.stored)
        assert np.all(err <= 0.5 + 0.5 * 600 / shown + 1e-6)
    else:
        np.testing.assert_array_equal(shown, ref.stored)
    t = ph.truth
    r, c = np.rint(t["reference_rc"]).astype(int)
    assert shown[t["frame_index"], r, c] < shown[0, r, c]  # vessels darker as displayed


def test_subtracted_lin_is_refused():
    from stenosis.errors import InputError

    with pytest.raises(InputError, match="LOG"):
        PhantomSpec(subtracted=True, intensity_relationship="LIN")


def test_command_line_writes_a_run(tmp_path, capsys):
    from stenosis.phantom.__main__ import main

    out = tmp_path / "cli.dcm"
    assert main([str(out), "--segment", "V4", "--percent", "55", "--seed", "2", "--set", "shape=[200,200]",
                 "--set", "mm_per_px=[0.25,0.25]", "--set", "calibration=magnification"]) == 0
    t = load_truth(out)
    assert t["segment"] == "V4" and t["spec"]["calibration"] == "magnification"
    assert t["percent_stenosis"] == pytest.approx(55.0, abs=0.05)
    assert "V4 55.0%" in capsys.readouterr().out
    assert main([str(out), "--set", "no_such_field=1"]) == 2


def test_truth_centreline_is_the_centre_of_the_rendered_lumen(phantom):
    # eccentric lesion and patient motion: the iodine centroid across the vessel sits on
    # centerline_rc (a sign error in the offset or the motion would move it by > 0.3 px)
    t = phantom.truth
    rc = np.array(t["centerline_rc"])
    arc = np.array(t["arc_mm"])
    L = phantom.path_length_mm.astype(float)
    checked = 0
    for s in (t["reference_arc_mm"], t["mld_arc_mm"] - 1.0, t["mld_arc_mm"] - 0.5, t["mld_arc_mm"] + 0.7):
        i = int(np.argmin(np.abs(arc - s)))
        # the lumen's cross-sections are perpendicular to the base centreline (not to the
        # lumen-centre line, which slants through an eccentric lesion)
        normal = phantom.scene.main.at(np.array([arc[i]]))["normal"][0] / np.array(t["mm_per_px"])
        normal /= np.linalg.norm(normal)
        u = np.arange(-15, 15, 0.02)
        prof = ndi.map_coordinates(L, rc[i][:, None] + normal[:, None] * u[None, :], order=1)
        centroid = (prof * u).sum() / prof.sum()
        assert abs(centroid) < 0.05, (s, centroid)
        checked += 1
    assert checked == 4


def test_motion_moves_anatomy_and_vessels_the_same_way():
    from stenosis.phantom.render import background_log_attenuation, shifted_crop

    pad = 8
    field = background_log_attenuation(np.random.default_rng(0), (40, 50), pad=pad)
    moved = shifted_crop(field, (40, 50), (1.0, -2.0), pad)
    np.testing.assert_allclose(moved, field[pad - 1 : pad - 1 + 40, pad + 2 : pad + 2 + 50], atol=1e-9)
    tube = _straight_tube(0.4, 0.8, centre=(6.0, 6.0), length=40.0)
    still = path_length_mm([tube], (48, 48), (0.25, 0.25))
    shifted = path_length_mm([tube], (48, 48), (0.25, 0.25), shift_px=(1.0, -2.0))
    np.testing.assert_allclose(shifted[1:, :-2], still[:-1, 2:], atol=1e-9)


def test_whole_artery_disease_takes_the_feeding_reference():
    spec = PhantomSpec(seed=14, segment="M1", feeding=True, artery_diseased=True, stenosis_percent=50,
                       crossing=False, **{**SMALL, "shape": (280, 280)})
    ph = render_phantom(spec)
    t = ph.truth
    assert t["reference_choice"] == "feeding"
    dn = t["normal_diameter_mm"]
    from stenosis.phantom.scene import FEEDING_FACTOR

    assert t["reference_diameter_mm"] == pytest.approx(FEEDING_FACTOR * dn, rel=1e-6)
    # focal 50 % inside diffuse 30 %: MLD = 0.35 dn; percent against the feeding artery
    assert t["mld_mm"] == pytest.approx(0.35 * dn, rel=1e-3)
    assert t["percent_stenosis"] == pytest.approx((1 - 0.35 / FEEDING_FACTOR) * 100, abs=0.05)
    arc = np.array(t["arc_mm"])
    assert t["feeding_proximal_rc"] is not None and t["feeding_distal_rc"] is not None
    # the whole reader segment is diseased: the lesion rule runs from point to point
    assert t["lesion_length_mm"] == pytest.approx(t["distal_arc_mm"] - t["proximal_arc_mm"] + 0.1, abs=0.15)
    d = np.array(t["diameter_mm"])
    ref_i = int(np.argmin(np.abs(arc - t["reference_arc_mm"])))
    assert d[ref_i] == pytest.approx(FEEDING_FACTOR * dn)
    L = ph.path_length_mm
    for key in ("feeding_proximal_rc", "feeding_distal_rc", "reference_rc"):
        r, c = np.rint(t[key]).astype(int)
        assert L[r, c] > 0.9 * FEEDING_FACTOR * dn, key


def test_artery_disease_needs_a_feeding_segment():
    from stenosis.errors import InputError

    with pytest.raises(InputError, match="feeding=True"):
        PhantomSpec(artery_diseased=True)


def test_truth_has_the_documented_keys(phantom):
    import stenosis.phantom as ph_pkg

    keys = ("segment percent_stenosis meets_50 mld_mm mld_rc reference_diameter_mm reference_rc "
            "reference_choice lesion_length_mm proximal_rc distal_rc frame_index mm_per_px arc_mm "
            "diameter_mm centerline_rc spec").split()
    for k in keys:
        assert k in phantom.truth, k
        assert f"``{k}``" in ph_pkg.__doc__, k
    n = len(phantom.truth["arc_mm"])
    assert len(phantom.truth["diameter_mm"]) == len(phantom.truth["centerline_rc"]) == n


def test_truth_mld_lies_within_the_reader_points(tmp_path):
    """A diffuse proximal disease narrower before the proximal point than the lesion is
    not in the graded segment: the truth MLD is the minimum between the two points."""
    spec = PhantomSpec(seed=1014, segment="BA", normal_diameter_mm=3.03, stenosis_percent=19.6,
                       stenosis_length_mm=5.77, proximal_diseased=True, shape=(512, 512),
                       mm_per_px=(0.15, 0.15), n_frames=5, n_mask_frames=1, arrival_frames=1)
    dcm, _ = make_phantom(spec, tmp_path / "prox.dcm")
    t = load_truth(dcm)
    arc, d = np.array(t["arc_mm"]), np.array(t["diameter_mm"])
    inside = (arc >= t["proximal_arc_mm"] - 0.05) & (arc <= t["distal_arc_mm"] + 0.05)
    assert d.min() < d[inside].min() - 0.1  # the case this test is about: narrower outside
    assert t["proximal_arc_mm"] - 0.05 <= t["mld_arc_mm"] <= t["distal_arc_mm"] + 0.05
    assert t["mld_mm"] == pytest.approx(d[inside].min(), abs=1e-5)
    assert t["percent_stenosis"] == pytest.approx((1 - t["mld_mm"] / t["reference_diameter_mm"]) * 100, abs=1e-3)


def test_elliptical_lumen_seen_from_two_views():
    """An elliptical lumen (semi-axes 2 and 4 px) projects 4 px wide in the view of its minor axis
    and 8 px in the view at right angles, with the same iodine area (pi a b) in both."""
    from stenosis.phantom.geometry import Tube, elliptical_view
    from stenosis.phantom.render import path_length_mm

    s = np.arange(0, 60, 0.25)
    base = np.stack([np.full_like(s, 30.0), s + 10], 1)
    a, b = np.full_like(s, 2.0), np.full_like(s, 4.0)
    widths = []
    for phi in (0.0, np.pi / 2, np.pi / 4):
        w, k = elliptical_view(a, b, phi)
        tube = Tube(base, s, w, np.zeros_like(s), depth_scale=k)
        col = path_length_mm([tube], (60, 80), (1.0, 1.0))[:, 40]
        assert col.sum() == pytest.approx(np.pi * 2 * 4, rel=1e-3)
        widths.append(float(2 * w[0]))
    assert widths[:2] == pytest.approx([4.0, 8.0])
    assert widths[2] == pytest.approx(2 * np.sqrt(10.0))
    # a circular lumen (no depth scale) renders exactly as before
    circ = Tube(base, s, np.full_like(s, 3.0), np.zeros_like(s))
    same = Tube(base, s, np.full_like(s, 3.0), np.zeros_like(s), depth_scale=np.ones_like(s))
    assert np.array_equal(path_length_mm([circ], (60, 80), (1.0, 1.0)), path_length_mm([same], (60, 80), (1.0, 1.0)))
