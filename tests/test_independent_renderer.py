"""Measurement on runs from a second, deliberately different renderer (not stenosis.phantom).

stenosis.phantom shares its physics with the measurement model (Gaussian blur, raised-
cosine lesions, Poisson noise). This toy renderer differs on purpose: a Gaussian-shaped
narrowing, a *disk* (focal-spot like) or Gaussian blur applied to the iodine signal,
additive Gaussian noise, 10-bit frames with an explicit mask frame, a random vessel
angle, PixelSpacing calibration. The measurement must not depend on sharing the
phantom's assumptions. Tolerances: 3 percentage points, 0.1 mm MLD, 0.1 mm reference (the
sweep's cases); the other shapes and scenes below state their own.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import stenosis
from stenosis.calibration import Calibration
from stenosis.enums import CalibrationSource
from stenosis.io import AngioRun

from _benchmarks import load_benchmark

N = 320
SS = 4  # supersampling per pixel side (pixel-aperture mean)


def lesion_shape(s: np.ndarray, width_mm: float, shape: str = "gauss") -> np.ndarray:
    """The narrowing's depth (1 at the lesion's core, 0 on the normal artery) along the arc ``s``
    (mm from the lesion's centre): "gauss" a Gaussian of SD ``width_mm``; "tubular" a flat bottom
    4 ``width_mm`` long between raised-cosine shoulders ``width_mm`` long; "lopsided" a Gaussian
    of SD ``width_mm`` proximally and 2 ``width_mm`` distally."""
    if shape == "gauss":
        return np.exp(-(s**2) / (2 * width_mm**2))
    if shape == "tubular":
        edge = np.clip((np.abs(s) - 2 * width_mm) / width_mm, 0.0, 1.0)
        return 0.5 * (1 + np.cos(np.pi * edge))
    if shape == "lopsided":
        w = np.where(s < 0, width_mm, 2 * width_mm)
        return np.exp(-(s**2) / (2 * w**2))
    raise ValueError(f"unknown lesion shape {shape!r}")


#: how far each shape's narrowing reaches from its centre, in lesion widths
SHAPE_REACH = {"gauss": 3.0, "tubular": 3.0, "lopsided": 6.0}


def render(rng, *, px, d0, pct, width_mm, blur, blur_mm, noise, ecc, shape="gauss", radius_mm=None, crossing=None):
    """(frames, proximal_rc, distal_rc, true_mld_mm) of an artery through the centre at a random
    angle (``shape``: the narrowing's, :func:`lesion_shape`). Straight by default; ``radius_mm``: an
    arc of that radius bending to a random side (the path through a torus, exact for a constant
    diameter: 2 sqrt(r^2 - t^2) at in-plane distance t from the arc). ``crossing``: ``(angle_deg,
    diameter_mm, side)``, a straight vessel of that diameter crossing the artery at that angle to
    it, midway between the lesion's reach and the ``side`` (+1 distal, -1 proximal) reader point;
    its iodine adds to the artery's."""
    y, x = (np.mgrid[0 : N * SS, 0 : N * SS] + 0.5) / SS - 0.5
    ang = rng.uniform(0, np.pi)
    c0 = np.array([N / 2, N / 2])
    u = np.array([np.sin(ang), np.cos(ang)])
    nrm = np.array([-u[1], u[0]])
    half = min(N / 2 - 12, (2 * SHAPE_REACH[shape] * width_mm + 3 * d0) / px)  # the points stay inside the frame
    if radius_mm is None:
        s = ((y - c0[0]) * u[0] + (x - c0[1]) * u[1]) * px
        t = ((y - c0[0]) * nrm[0] + (x - c0[1]) * nrm[1]) * px

        def centre(arc_mm):
            return c0 + u * arc_mm / px, u
    else:  # an arc of +-arc_mm about the lesion, straight on along its end tangents
        side = rng.choice([-1.0, 1.0])
        rad = radius_mm / px
        cc = c0 + side * rad * nrm  # the arc's centre, px
        v0 = (c0 - cc) / rad
        arc = min(half * px + 3 * d0, 0.4 * np.pi * radius_mm)  # mm

        def centre(arc_mm):
            phi = np.clip(arc_mm, -arc, arc) / radius_mm
            pos = cc + rad * (np.cos(phi) * v0 + np.sin(phi) * u)
            tan = np.cos(phi) * u - np.sin(phi) * v0
            beyond = np.sign(arc_mm) * max(abs(arc_mm) - arc, 0.0) / px
            return pos + beyond * tan, tan

        dy, dx = y - cc[0], x - cc[1]
        rho = np.hypot(dy, dx)
        phi = np.arctan2(dy * u[0] + dx * u[1], dy * v0[0] + dx * v0[1])
        on_arc = np.abs(phi) <= arc / radius_mm
        s = np.where(on_arc, phi * radius_mm, np.nan)
        t = np.where(on_arc, side * (rad - rho) * px, np.inf)
        for sign in (1.0, -1.0):  # the straight continuations past each end of the arc
            q, tan = centre(sign * arc)
            along = ((y - q[0]) * tan[0] + (x - q[1]) * tan[1]) * sign
            across = ((y - q[0]) * -tan[1] + (x - q[1]) * tan[0]) * px
            nearer = (along >= 0) & (np.abs(across) < np.abs(t))
            s = np.where(nearer, sign * (arc + along * px), s)
            t = np.where(nearer, across, t)
        s = np.nan_to_num(s, nan=1e3)
    d = d0 * (1 - pct / 100 * lesion_shape(s, width_mm, shape))
    off = ecc * (d0 - d) / 2  # an eccentric narrowing keeps one wall
    chord = 2 * np.sqrt(np.clip((d / 2) ** 2 - (t - off) ** 2, 0, None))
    if crossing is not None:
        cross_deg, dc, cross_side = crossing
        reach = SHAPE_REACH[shape] * width_mm
        q, tan = centre(cross_side * (reach + 0.5 * (half * px - reach)))
        tn = np.array([-tan[1], tan[0]])
        angle = np.radians(cross_deg)
        w = np.cos(angle) * tan + np.sin(angle) * tn
        dist = np.abs((y - q[0]) * w[1] - (x - q[1]) * w[0]) * px
        chord = chord + 2 * np.sqrt(np.clip((dc / 2) ** 2 - dist**2, 0, None))
    path = chord.reshape(N, SS, N, SS).mean(axis=(1, 3))
    if blur == "gauss":
        path = ndi.gaussian_filter(path, blur_mm / px)
    else:  # uniform disk, radius 1.5 x blur_mm
        r = 1.5 * blur_mm / px
        k = int(np.ceil(r))
        yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
        ker = (yy**2 + xx**2 <= r**2).astype(float)
        path = ndi.convolve(path, ker / ker.sum())
    frames = []
    for f in range(3):  # frame 0 is the mask
        img = 1000.0 - (200.0 * path if f else 0.0) + rng.normal(0, noise, path.shape)
        frames.append(np.clip(np.round(img), 0, 1023).astype(np.uint16))
    if radius_mm is None:  # exactly as before the curved scenes
        a_pt, b_pt = c0 - u * half, c0 + u * half
    else:
        a_pt, b_pt = centre(-half * px)[0], centre(half * px)[0]
    return np.stack(frames), tuple(a_pt), tuple(b_pt), d0 * (1 - pct / 100)


def measure_masked(frames: np.ndarray, px: float, a, b):
    """A basilar segment of a rendered run (frame 0 its mask, LOG values) measured on frame 2."""
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=(0,))
    return stenosis.measure(run, "BA", a, b, frame=2)


CASES = [  # px, d0, pct, lesion width (Gaussian SD, mm), blur kind, blur mm, noise (grey levels), eccentricity
    (0.2, 3.5, 60.0, 1.2, "disk", 0.2, 6.0, 0.0),
    (0.3, 2.8, 45.0, 1.5, "disk", 0.25, 6.0, 1.0),
    (0.15, 3.0, 70.0, 1.8, "gauss", 0.25, 12.0, 1.0),
    (0.25, 4.2, 30.0, 2.0, "gauss", 0.15, 2.0, 0.5),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c[4]}-{c[2]:.0f}pct-{c[0]}mm" for c in CASES])
def test_other_renderer(case):
    px, d0, pct, width, blur, blur_mm, noise, ecc = case
    rng = np.random.default_rng(int(pct * 10 + px * 100))
    frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=width, blur=blur, blur_mm=blur_mm,
                               noise=noise, ecc=ecc)
    res = measure_masked(frames, px, a, b)
    assert res.percent_stenosis == pytest.approx(pct, abs=3.0)
    assert res.mld_mm == pytest.approx(mld, abs=0.1)
    assert res.reference_diameter_mm == pytest.approx(d0, abs=0.1)


# Flat-bottomed (tubular) lesions of the renderer. Noiseless, the lesion bottom's window was
# symmetric about its lowest sample and half the bottom's span wide, took in a shoulder of the
# plateau, and its parabola dipped below it: these read 100.0 +- 0.9 ("occlusion"), 93.4, 100.0 and
# 100.0 before session 27, and 87.0, 72.8, 71.3, 71.2 after it (the window then reached the foot of
# the nearer shoulder). Since session 28 the window shrinks until a parabola describes it within the
# noise (``mld_fit_misfit``): 85.3, 70.3, 69.9, 70.0.
@pytest.mark.parametrize("px, d0, pct, blur, blur_mm", [(0.3, 2.0, 85, "disk", 0.15), (0.3, 2.0, 70, "gauss", 0.3),
                                                        (0.15, 3.5, 70, "disk", 0.3), (0.15, 2.0, 70, "disk", 0.15)])
def test_a_flat_bottomed_lesion_is_not_read_as_an_occlusion(px, d0, pct, blur, blur_mm):
    res, mld = _tubular(px, d0, pct, blur, blur_mm, noise=0.0)
    assert res.percent_stenosis == pytest.approx(pct, abs=1.0)
    assert res.mld_mm == pytest.approx(mld, abs=0.02)
    assert not any("occlusion" in w for w in res.warnings)


# The same with 6 grey levels of noise: the renderer's sweep (``benchmarks/independent.py --shape
# tubular --noise 6``) read MAE 1.75 points, only 55% of errors within 2 SD, the MLD 0.047 mm small
# on average; these four read +1.98 (SD 0.86), +1.94 (0.30), +2.12 (1.25) and +1.48 (0.64) points
# before session 28's shrink of the bottom's window, then +0.08, +0.30, +1.25, +0.23. Since session
# 34 the analysed frame's mask is registered again around the segment: on these flat frames the
# registration has no anatomy to find and the mask's shift (and its interpolated noise) is another
# draw: +2.43 (1.09), -0.13, +1.26 (0.63), +0.23 (the sweep: MAE 0.60 -> 0.56, 94 -> 95% within 2 SD).
# One noise draw each: judged together (mean |error|; the defect read 1.88) and each within 2.5 SD.
TUBULAR_NOISY = [(0.3, 2.0, 70, "gauss", 0.3), (0.15, 3.5, 70, "disk", 0.3), (0.15, 2.0, 70, "disk", 0.15),
                 (0.15, 3.5, 85, "gauss", 0.3)]


def test_a_noisy_flat_bottom_reads_within_its_sd():
    errs = []
    for px, d0, pct, blur, blur_mm in TUBULAR_NOISY:
        res, mld = _tubular(px, d0, pct, blur, blur_mm, noise=6.0)
        err = res.percent_stenosis - pct
        assert abs(err) <= 2.5 * res.percent_stenosis_sd + 0.1, (px, d0, pct, blur, blur_mm, err)
        assert res.mld_mm == pytest.approx(mld, abs=0.06)
        errs.append(abs(err))
    assert np.mean(errs) <= 1.2, errs


def _tubular(px, d0, pct, blur, blur_mm, noise):
    rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
    frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur=blur, blur_mm=blur_mm, noise=noise,
                               ecc=0.0, shape="tubular")
    return measure_masked(frames, px, a, b), mld


# A noiseless straight artery of the renderer above: the run's blur is the renderer's Gaussian with
# the pixel aperture (1/12 px^2) and the diameters its own. The blur is estimated on a coarse grid of
# sigmas refined on a finer one (``blur_refine``); the coarse grid's parabola alone read these blurs
# 0.995 / 1.485 / 1.379 / 1.784 px and these diameters 3.93 / 4.63 / 4.56 / 7.68 px.
@pytest.mark.parametrize("d_px, blur_px", [(3.0, 1.2), (4.0, 1.6), (5.0, 1.2), (8.0, 1.6)])
def test_blur_estimate_noiseless(d_px, blur_px):
    px = 0.15
    frames, a, b, _ = render(np.random.default_rng(0), px=px, d0=d_px * px, pct=0.0, width_mm=1.0, blur="gauss",
                             blur_mm=blur_px * px, noise=0.0, ecc=0.0)
    p = measure_masked(frames, px, a, b).profile
    assert np.sqrt(p.blur_sigma_px**2 - p.blur_interp_var_px2) == pytest.approx(np.hypot(blur_px, 12**-0.5), abs=0.02)
    assert np.median(p.diameter_px[p.valid]) == pytest.approx(d_px, abs=0.1)


# Curved arteries and crossing vessels of the renderer (``benchmarks/independent.py --radius 20``,
# ``--crossing``; session 29), runs with a mask frame: the sweeps read MAE 0.40 (curved) and 0.40
# (crossed), as straight arteries do. These read 70.06, 50.17, 49.84, 1.02 and 85.86.
SCENES = [  # px, d0, pct, blur kind, blur mm, eccentricity, arc radius mm, crossing (deg, mm, side)
    (0.2, 3.0, 70.0, "gauss", 0.2, 1.0, 20.0, None),
    (0.15, 2.5, 50.0, "disk", 0.2, 0.0, 30.0, None),
    (0.25, 3.0, 50.0, "disk", 0.2, 0.0, None, (60.0, 3.0, 1.0)),
    (0.2, 3.5, 0.0, "gauss", 0.25, 0.0, 25.0, (90.0, 2.0, -1.0)),
    (0.2, 2.5, 85.0, "gauss", 0.2, 0.0, 20.0, (60.0, 1.5, -1.0)),
]


@pytest.mark.slow
@pytest.mark.parametrize("scene", SCENES, ids=[f"{c[2]:.0f}pct-r{c[6]}-x{c[7] is not None}" for c in SCENES])
def test_curved_and_crossed_arteries(scene):
    px, d0, pct, blur, blur_mm, ecc, radius, crossing = scene
    rng = np.random.default_rng(int(pct * 10 + px * 100 + d0))
    frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur=blur, blur_mm=blur_mm, noise=6.0,
                               ecc=ecc, radius_mm=radius, crossing=crossing)
    res = measure_masked(frames, px, a, b)
    assert res.percent_stenosis == pytest.approx(pct, abs=1.5)
    assert res.mld_mm == pytest.approx(mld, abs=0.05)
    assert res.reference_diameter_mm == pytest.approx(d0, abs=0.05)


@pytest.mark.parametrize("radius", [15.0, 8.0])
def test_the_arc_passes_through_its_points_and_keeps_its_diameter(radius):
    """The curved scene's geometry, noiseless and all but unblurred: the iodine's path is one
    diameter along the centreline (on the arc and, at 8 mm, on its straight continuation where the
    points sit) and none midway between the points (the arc bends away from their chord)."""
    px, d0 = 0.2, 3.0
    frames, a, b, _ = render(np.random.default_rng(1), px=px, d0=d0, pct=0.0, width_mm=1.5, blur="gauss",
                             blur_mm=0.01, noise=0.0, ecc=0.0, radius_mm=radius)
    signal = frames[0].astype(float) - frames[1]
    a, b = np.asarray(a), np.asarray(b)
    c0 = np.array([N / 2, N / 2])  # the lesion's centre, on the arc
    for p in (a, b, c0):
        assert signal[int(round(p[0])), int(round(p[1]))] == pytest.approx(200.0 * d0, rel=0.03)
    mid = (a + b) / 2
    assert signal[int(round(mid[0])), int(round(mid[1]))] == pytest.approx(0.0, abs=2.0)


def test_an_eccentric_lesion_keeps_the_same_wall_curved_or_straight():
    """The signed distance across the artery has one convention on the arc and on a straight
    artery: an eccentric lesion's lumen leans the same way (the same seed draws the same angle)."""
    yy, xx = np.mgrid[-12:13, -12:13]

    def centroid(radius, pct):
        frames, _, _, _ = render(np.random.default_rng(4), px=0.2, d0=3.0, pct=pct, width_mm=1.5, blur="gauss",
                                 blur_mm=0.01, noise=0.0, ecc=1.0, radius_mm=radius)
        win = (frames[0].astype(float) - frames[1])[N // 2 - 12 : N // 2 + 13, N // 2 - 12 : N // 2 + 13]
        return np.array([(win * yy).sum(), (win * xx).sum()]) / win.sum()

    # the lesion's shift of the iodine's centroid, against the same scene without it
    straight = centroid(None, 50.0) - centroid(None, 0.0)
    curved = centroid(20.0, 50.0) - centroid(20.0, 0.0)
    assert np.hypot(*straight) > 1.0  # the lumen leans off the centre...
    assert curved == pytest.approx(straight, abs=0.3)  # ...the same way on the arc


# A single native frame of a curved artery across a bone edge (``--radius 20 --native --noise 6``):
# the bone edge skews the top-hat the trace is centred on and pulls it 8 px off the 23 px lumen.
# Until session 30 the lumen kept out of the background followed the trace only, the vessel's far
# edge was left in that background and this normal artery read 13.6 +- 13.8%; the lumen now also
# follows the vessel map's mid-line where the trace is off it (``background_map_reach_radii``,
# docs/tuning.md section 3, session 30): 0.98 +- 0.71 (with the true background about 1%).
def native_run(px: float, d0: float, pct: float, blur_mm: float, **scene):
    """(run, proximal, distal) of one ``benchmarks/independent.py --native --noise 6`` design point
    (its seed; Gaussian blur, round lumen, lesion width 1.5 mm; ``scene``: ``radius_mm``, ``shape``):
    3 frames of anatomy (SD 30 grey levels) and noise, no mask frame, LOG values."""
    independent = load_benchmark("independent")
    rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
    frames, a, b, _ = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur="gauss", blur_mm=blur_mm, noise=0.0,
                             ecc=0.0, **scene)
    frames = independent.native_frames(rng, frames, px, 6.0, 30.0)
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=())
    return run, a, b


def _curved_native_normal():
    run, a, b = native_run(0.15, 3.5, 0.0, 0.15, radius_mm=20.0)
    return stenosis.measure(run, "BA", a, b, frame=1)


@pytest.mark.slow
def test_a_curved_native_normal_across_a_bone_edge_reads_normal():
    res = _curved_native_normal()
    assert abs(res.percent_stenosis) <= 2.0  # 0.98 measured (13.6 before session 30)
    assert abs(res.percent_stenosis) <= 2 * res.percent_stenosis_sd  # SD 0.71


def test_a_long_tight_lesion_in_a_run_without_a_mask_says_what_to_do():
    """Three native frames all opacified (no frame before the bolus; ``--shape tubular --native``):
    subtracting frame 0 leaves nothing to trace, and on the native frame the 6 mm flat 85% lesion
    holds under half of the path's iodine, so the whole-vessel guard refuses it (session 30: 6 of 144
    such runs). The tracer's refusal ("the proximal point is not on an opacified vessel", said of the
    subtracted frame) now goes on to say where the native path lacks iodine and what may lie there.
    Measured as the frame alone (the other frames dropped) it reads the lesion; the guard cannot tell
    this from a path across background, so the message does not suggest it."""
    run, a, b = native_run(0.30, 2.0, 85, 0.30, shape="tubular")
    with pytest.raises(stenosis.MeasurementError) as err:
        stenosis.measure(run, "BA", a, b, frame=1)
    msg = str(err.value)
    assert msg.startswith("the proximal point is not on an opacified vessel")
    assert "holds under 50% of its median iodine around (152, 169)" in msg and "a long tight lesion" in msg
    assert "\n" not in msg and err.value.__cause__ is None and err.value.__suppress_context__
    res = stenosis.measure(run, "BA", a, b, frame=1, exclude_frames=(0, 2))
    assert res.percent_stenosis == pytest.approx(85.0, abs=3.0)  # 82.9 +- 3.9 measured
