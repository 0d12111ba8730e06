"""Measurement on runs from a second, deliberately different renderer (not stenosis.phantom).

stenosis.phantom shares its physics with the measurement model (Gaussian blur, raised-
cosine lesions, Poisson noise). This toy renderer differs on purpose: a Gaussian-shaped
narrowing, a *disk* (focal-spot like) or Gaussian blur applied to the iodine signal,
additive Gaussian noise, 10-bit frames with an explicit mask frame, a random vessel
angle, PixelSpacing calibration. The measurement must not depend on sharing the
phantom's assumptions. Tolerances: 3 percentage points, 0.1 mm MLD, 0.1 mm reference.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import stenosis
from stenosis.calibration import Calibration
from stenosis.enums import CalibrationSource
from stenosis.io import AngioRun

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


def render(rng, *, px, d0, pct, width_mm, blur, blur_mm, noise, ecc, shape="gauss"):
    """(frames, proximal_rc, distal_rc, true_mld_mm) of a straight artery through the centre
    (``shape``: the narrowing's, :func:`lesion_shape`)."""
    y, x = (np.mgrid[0 : N * SS, 0 : N * SS] + 0.5) / SS - 0.5
    ang = rng.uniform(0, np.pi)
    c0 = np.array([N / 2, N / 2])
    u = np.array([np.sin(ang), np.cos(ang)])
    nrm = np.array([-u[1], u[0]])
    s = ((y - c0[0]) * u[0] + (x - c0[1]) * u[1]) * px
    t = ((y - c0[0]) * nrm[0] + (x - c0[1]) * nrm[1]) * px
    d = d0 * (1 - pct / 100 * lesion_shape(s, width_mm, shape))
    off = ecc * (d0 - d) / 2  # an eccentric narrowing keeps one wall
    chord = 2 * np.sqrt(np.clip((d / 2) ** 2 - (t - off) ** 2, 0, None))
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
    half = min(N / 2 - 12, (2 * SHAPE_REACH[shape] * width_mm + 3 * d0) / px)  # the points stay inside the frame
    return np.stack(frames), tuple(c0 - u * half), tuple(c0 + u * half), d0 * (1 - pct / 100)


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
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=(0,))
    res = stenosis.measure(run, "BA", a, b, frame=2)
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
# before session 28's shrink of the bottom's window, now +0.08, +0.30, +1.25, +0.23.
@pytest.mark.parametrize("px, d0, pct, blur, blur_mm", [(0.3, 2.0, 70, "gauss", 0.3), (0.15, 3.5, 70, "disk", 0.3),
                                                        (0.15, 2.0, 70, "disk", 0.15), (0.15, 3.5, 85, "gauss", 0.3)])
def test_a_noisy_flat_bottom_reads_within_its_sd(px, d0, pct, blur, blur_mm):
    res, mld = _tubular(px, d0, pct, blur, blur_mm, noise=6.0)
    err = res.percent_stenosis - pct
    assert abs(err) <= 1.5
    assert abs(err) <= 2.0 * res.percent_stenosis_sd
    assert res.mld_mm == pytest.approx(mld, abs=0.03)


def _tubular(px, d0, pct, blur, blur_mm, noise):
    rng = np.random.default_rng(int(pct + d0 * 10 + px * 1000 + blur_mm * 100))
    frames, a, b, mld = render(rng, px=px, d0=d0, pct=pct, width_mm=1.5, blur=blur, blur_mm=blur_mm, noise=noise,
                               ecc=0.0, shape="tubular")
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=(0,))
    return stenosis.measure(run, "BA", a, b, frame=2), mld


# A noiseless straight artery of the renderer above: the run's blur is the renderer's Gaussian with
# the pixel aperture (1/12 px^2) and the diameters its own. The blur is estimated on a coarse grid of
# sigmas refined on a finer one (``blur_refine``); the coarse grid's parabola alone read these blurs
# 0.995 / 1.485 / 1.379 / 1.784 px and these diameters 3.93 / 4.63 / 4.56 / 7.68 px.
@pytest.mark.parametrize("d_px, blur_px", [(3.0, 1.2), (4.0, 1.6), (5.0, 1.2), (8.0, 1.6)])
def test_blur_estimate_noiseless(d_px, blur_px):
    px = 0.15
    frames, a, b, _ = render(np.random.default_rng(0), px=px, d0=d_px * px, pct=0.0, width_mm=1.0, blur="gauss",
                             blur_mm=blur_px * px, noise=0.0, ecc=0.0)
    run = AngioRun.from_array(frames, calibration=Calibration((px, px), CalibrationSource.PIXEL_SPACING, "test"),
                              pixel_intensity_relationship="LOG", mask_frames=(0,))
    p = stenosis.measure(run, "BA", a, b, frame=2).profile
    assert np.sqrt(p.blur_sigma_px**2 - p.blur_interp_var_px2) == pytest.approx(np.hypot(blur_px, 12**-0.5), abs=0.02)
    assert np.median(p.diameter_px[p.valid]) == pytest.approx(d_px, abs=0.1)
