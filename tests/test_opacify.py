"""Opacification on synthetic runs with known iodine and known patient motion."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

import stenosis
from stenosis.errors import InputError
from stenosis.io import AngioRun
from stenosis.opacification import estimate_shift, opacify, refine_shift, shift_image

H = W = 128
VESSEL_ROW = 64.0
VESSEL_RADIUS = 4.0
MU_IODINE = 0.08  # attenuation per px of iodine path, natural-log units


def anatomy(seed: int = 0, size: int = H + 40) -> np.ndarray:
    """Smooth 'bone and soft tissue' attenuation map (log units), larger than the frame."""
    rng = np.random.default_rng(seed)
    a = ndi.gaussian_filter(rng.normal(size=(size, size)), 3.0) * 6.0
    a += ndi.gaussian_filter(rng.normal(size=(size, size)), 12.0) * 20.0
    return a + 1.5


def iodine_path() -> np.ndarray:
    """Chord length (px) through a horizontal cylinder of radius VESSEL_RADIUS."""
    r = np.arange(H, dtype=float)[:, None] - VESSEL_ROW
    chord = 2.0 * np.sqrt(np.clip(VESSEL_RADIUS**2 - r**2, 0, None))
    return np.repeat(chord, W, axis=1)


def native_run(shifts, *, lin: bool, noise: float = 0.0, seed: int = 0, mask_frames=(), contrast_from: int = 1,
               noise_seed: int | None = None):
    """Frames of a native run: anatomy moved by shifts[t], iodine from frame `contrast_from` on."""
    rng = np.random.default_rng(seed + 1 if noise_seed is None else noise_seed)
    big = anatomy(seed)
    frames = []
    for t, s in enumerate(shifts):
        moved = ndi.shift(big, s, order=3, mode="nearest")[20 : 20 + H, 20 : 20 + W]
        att = moved + (MU_IODINE * iodine_path() if t >= contrast_from else 0.0)
        if lin:
            img = 3000.0 * np.exp(-att / 10.0)  # intensities, attenuation scaled to stay in range
        else:
            img = 2000.0 - 100.0 * att  # LOG: grey level = -k log I + c (vessels darker)
        img = img + rng.normal(0, noise, img.shape)
        frames.append(np.clip(np.round(img), 0, 4095).astype(np.uint16))
    return AngioRun.from_array(
        np.stack(frames), pixel_intensity_relationship="LIN" if lin else "LOG", mask_frames=mask_frames
    )


# --------------------------------------------------------------------------- registration
def _known_shift_pair(seed: int, bound: float, noise: float = 0.0):
    """(reference, moving, shift): anatomy and the same anatomy moved by a shift drawn within
    +-``bound`` px (cubic interpolation), with white noise of SD ``noise`` on the moved one."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-bound, bound, size=2)
    big = anatomy(seed)
    ref = big[20 : 20 + H, 20 : 20 + W]
    mov = ndi.shift(big, s, order=3, mode="nearest")[20 : 20 + H, 20 : 20 + W]
    if noise:
        mov = mov + rng.normal(0, noise, ref.shape)
    return ref, mov, s


@pytest.mark.parametrize("seed", range(6))
def test_estimate_shift_recovers_known_shift(seed):
    ref, mov, s = _known_shift_pair(seed, 8.0)
    est = estimate_shift(ref, mov)
    assert est == pytest.approx(tuple(s), abs=0.15)
    # applying it aligns the images: residual well below the unregistered one
    assert np.abs(shift_image(ref, est) - mov)[10:-10, 10:-10].mean() < 0.2 * np.abs(ref - mov)[10:-10, 10:-10].mean()


@pytest.mark.parametrize("seed", range(3))
def test_refine_shift_sharpens_a_known_shift(seed):
    ref, mov, s = _known_shift_pair(seed, 6.0, noise=0.05)
    est = refine_shift(ref, mov, estimate_shift(ref, mov))
    assert est == pytest.approx(tuple(s), abs=0.03)


def _straight_vessel(angle: float, offset: float, noise: float, rng) -> np.ndarray:
    """A straight, uniform vessel 12 px wide through the centre of a 120 px frame, moved
    ``offset`` px across itself, with white noise: nothing along it to register on."""
    y, x = np.mgrid[0:120, 0:120] - 60.0
    across = -y * np.cos(angle) + x * np.sin(angle) - offset
    path = 2 * np.sqrt(np.clip(36.0 - across**2, 0, None))
    return ndi.gaussian_filter(path, 1.0) * 50.0 + rng.normal(0, noise, path.shape)


@pytest.mark.parametrize("angle", [0.3, 0.63, 1.1])
def test_refine_shift_across_a_straight_vessel(angle):
    """Phase correlation's peak is a ridge along a straight vessel, its sub-pixel fit made along
    the image axes: the refined shift is right across the vessel (what the profiles need) and
    takes no motion along it (which the frames cannot tell)."""
    rng = np.random.default_rng(7)
    ref = _straight_vessel(angle, 0.0, 6.0, rng)
    mov = _straight_vessel(angle, 0.4, 6.0, rng)
    normal = np.array([-np.cos(angle), np.sin(angle)])  # (row, col) across the vessel
    est = np.array(refine_shift(ref, mov, estimate_shift(ref, mov)))
    assert est @ normal == pytest.approx(0.4, abs=0.03)
    assert abs(est @ np.array([np.sin(angle), np.cos(angle)])) < 0.5


def test_shift_is_bounded():
    big = anatomy(3)
    ref = big[20 : 20 + H, 20 : 20 + W]
    mov = ndi.shift(big, (0.0, 19.0), order=1, mode="nearest")[20 : 20 + H, 20 : 20 + W]
    est = estimate_shift(ref, mov, max_shift_px=5)
    assert abs(est[0]) <= 5 and abs(est[1]) <= 5
    # 19 px is 15 % of the frame: less overlap, so a looser tolerance
    assert estimate_shift(ref, mov, max_shift_px=24) == pytest.approx((0.0, 19.0), abs=0.4)


def test_phase_correlation_agrees_with_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    s = (2.6, -3.3)
    big = anatomy(7)
    ref = big[20 : 20 + H, 20 : 20 + W].astype(np.float32)
    mov = ndi.shift(big, s, order=3, mode="nearest")[20 : 20 + H, 20 : 20 + W].astype(np.float32)
    fixed, moving = sitk.GetImageFromArray(mov), sitk.GetImageFromArray(ref)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMeanSquares()
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=300)
    reg.SetInitialTransform(sitk.TranslationTransform(2))
    reg.SetInterpolator(sitk.sitkLinear)
    tx = reg.Execute(fixed, moving)
    # SimpleITK maps fixed points p to moving points p + t (x, y): moving shifted by -t aligns
    tx_x, tx_y = tx.GetParameters()
    sitk_rc = (-tx_y, -tx_x)
    ours = estimate_shift(ref, mov)
    assert sitk_rc == pytest.approx(s, abs=0.15)
    assert ours == pytest.approx(sitk_rc, abs=0.15)


# --------------------------------------------------------------------------- opacify
@pytest.mark.parametrize("lin", [False, True])
def test_native_run_with_motion_gives_iodine(lin):
    shifts = [(0, 0), (1.7, -2.4), (-3.2, 0.6), (0.4, 4.1)]
    run = native_run(shifts, lin=lin, noise=0.5)
    out = opacify(run)
    assert out.shape == (4, H, W) and out.dtype == np.float32
    truth = MU_IODINE * iodine_path()
    scale = 100.0 if not lin else 1.0 / 10.0  # LOG: grey levels per attenuation unit; LIN: natural log
    inner = (slice(12, -12), slice(12, -12))
    for k in range(1, 4):
        expected = scale * truth
        err = out[k][inner] - expected[inner]
        # iodine on the vessel axis recovered within 10 %, background residual small
        axis = out[k][int(VESSEL_ROW), 12:-12].mean()
        assert axis == pytest.approx(scale * MU_IODINE * 2 * VESSEL_RADIUS, rel=0.10)
        bg = np.abs(truth) == 0
        assert np.abs(err[bg[inner]]).mean() < 0.06 * axis
    # the unregistered subtraction leaves far larger motion artefacts
    raw = opacify(run, register=False)
    bg = (iodine_path() == 0)[inner]
    assert np.abs(raw[2][inner][bg]).mean() > 4 * np.abs(out[2][inner][bg]).mean()
    # the mask frame itself has nothing left
    assert np.abs(out[0]).max() < 1e-3 * scale * 100


def test_mask_frames_from_metadata_are_averaged():
    shifts = [(0, 0)] * 5
    # frames 0..1 already hold iodine; 2..3 are the masks named in MaskSubtractionSequence
    run = native_run(shifts, lin=False, noise=4.0, mask_frames=(2, 3), contrast_from=0)
    run = dataclasses.replace(run, frames=np.concatenate([run.frames[:2], native_run([(0, 0)] * 2, lin=False, noise=4.0, noise_seed=99, contrast_from=9).frames, run.frames[4:]]))
    out = opacify(run, frames=[0, 4], register=False)
    axis = out[:, int(VESSEL_ROW), 10:-10].mean()
    assert axis == pytest.approx(100.0 * MU_IODINE * 2 * VESSEL_RADIUS, rel=0.1)
    # averaged mask: residual noise ~ sqrt(1 + 1/2) * 4, not sqrt(2) * 4
    bg = out[0][:40, 10:-10]
    assert bg.std() < 4.0 * 1.33


def test_subtracted_run_normalised():
    rng = np.random.default_rng(0)
    iod = 50.0 * iodine_path() / (2 * VESSEL_RADIUS)
    frames = np.stack([1000.0 - iod + rng.normal(0, 1, (H, W)) for _ in range(2)])
    run = dataclasses.replace(AngioRun.from_array(frames.astype(np.uint16)), metadata=dataclasses.replace(
        AngioRun.from_array(frames.astype(np.uint16)).metadata, subtracted=True))
    out = opacify(run)
    assert abs(float(np.median(out))) < 1.0
    assert out[:, int(VESSEL_ROW)].mean() == pytest.approx(50.0, abs=2.0)


def test_single_frame_native_tophat():
    # no mask frame: a smooth background (the tilt and slow swell of soft tissue) is removed
    rr, cc = np.mgrid[0:H, 0:W].astype(float)
    background = 1500.0 + 2.0 * rr - 1.5 * cc + 80.0 * np.sin(cc / 40.0)
    frame = background - 100.0 * MU_IODINE * iodine_path()
    run = AngioRun.from_array(np.round(frame).astype(np.uint16)[None])
    out = opacify(run)
    assert out.shape == (1, H, W)
    axis = out[0, int(VESSEL_ROW), 20:-20].mean()
    far = np.abs(out[0, :40, 20:-20]).mean()
    assert axis > 0.5 * 100 * MU_IODINE * 2 * VESSEL_RADIUS
    assert far < 0.15 * axis


def test_never_modifies_the_run_and_selects_frames():
    run = native_run([(0, 0), (1, 1), (2, -1)], lin=True)
    writable = np.array(run.frames)  # a writable array: opacify must still not touch it
    run = dataclasses.replace(run, frames=writable)
    before = writable.copy()
    meta_before = run.metadata
    out = opacify(run, frames=[2, 1])
    np.testing.assert_array_equal(run.frames, before)
    assert run.metadata == meta_before
    np.testing.assert_allclose(out[0], opacify(run, frames=2)[0], atol=1e-6)
    assert out.shape == (2, H, W)
    with pytest.raises(InputError, match="outside the run"):
        opacify(run, frames=[3])


def test_public_name_is_callable():
    run = native_run([(0, 0), (0, 0)], lin=False)
    np.testing.assert_array_equal(stenosis.opacify(run), opacify(run))


def test_wg04_single_frame(wg04_dir):
    run = stenosis.read_run(wg04_dir / "XA1_UNC")
    out = opacify(run)
    assert out.shape == (1, 1024, 1024) and out.dtype == np.float32
    assert abs(float(np.median(out))) < 2.0
    assert float(np.percentile(out, 99.5)) > 20.0  # vessels stand out positive


# --------------------------------------------------------------------------- mask registration vs iodine
@pytest.mark.parametrize("motion", [(0.0, 0.0), (1.3, -2.2)])
def test_mask_registration_is_not_pulled_by_the_iodine(motion):
    """Opacified vessels are in the live frames only: the mask shift must follow the anatomy.

    Phase correlation of mask and live was pulled 1-4 px by the vessels on phantom runs
    without motion (benchmarks/registration.py); the opacification's registration
    recovers the known translation of the phantom's anatomy within 0.1 px.
    """
    from stenosis.opacification import _MaskRegistration
    from stenosis.phantom import PhantomSpec, render_phantom

    spec = PhantomSpec(seed=1003, segment="BA", normal_diameter_mm=3.2, stenosis_percent=70.0,
                       shape=(256, 256), mm_per_px=(0.3, 0.3), n_frames=6, photons=20000.0,
                       subtracted=False, motion_px=motion)
    frames = render_phantom(spec).log_intensity.astype(np.float32)
    mask = frames[: spec.n_mask_frames].mean(axis=0)
    got = _MaskRegistration(mask, 16.0).shift_to(frames[-1])
    assert got == pytest.approx(motion, abs=0.1)


def test_the_registration_residual_is_computed_on_its_subsampled_grid():
    """``shift_image(step=2)`` is every 2nd row and column of the whole shifted image, and the
    slice erosion the cross-shaped binary erosion, value for value (what the mask registration
    reads, at a quarter of the cost)."""
    from stenosis.opacification import _erode_cross

    rng = np.random.default_rng(5)
    for shape in [(37, 52), (64, 64), (1, 9), (5, 3)]:
        img = rng.normal(size=shape).astype(np.float32)
        for shift in [(0.3, -1.7), (2.0, 0.0), (-3.25, 4.5), (0.0, 0.0)]:
            for step in (2, 3):
                assert np.array_equal(shift_image(img, shift)[::step, ::step], shift_image(img, shift, step=step))
        mask = rng.random(shape) > 0.2
        assert np.array_equal(ndi.binary_erosion(mask), _erode_cross(mask))
