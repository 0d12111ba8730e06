"""vessel_probability / segment_vessels / model_sha256 and the Dice / clDice metrics.

Truth comes from a synthetic projected tube (exact lumen mask) and from the
expert masks of the held-out CIMAT validation images (never trained on).
"""
from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

import stenosis
from stenosis.errors import InputError
from stenosis.segmentation import (
    CONFIG_NAME,
    SHA_NAME,
    WEIGHTS_NAME,
    cldice_score,
    dice_score,
    model_sha256,
    models_dir,
    segment_vessels,
    vessel_probability,
)

SHIPPED = (models_dir() / WEIGHTS_NAME).is_file()
needs_weights = pytest.mark.skipif(not SHIPPED, reason="U-Net weights not shipped in models/")


def tube_frame(shape=(128, 160), radius_px=3.0, contrast=40.0, noise=3.0, seed=0, dtype=np.uint8):
    """A dark projected cylinder on a flat background, as displayed.

    The line row = 0.3 * col + 40; grey level falls with the chord length
    through the cylinder (Beer-Lambert, small attenuation). Returns the frame
    and the exact lumen mask (pixel centre within ``radius_px`` of the axis).
    """
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    d = np.abs(rr - (0.3 * cc + 40.0)) / np.hypot(1.0, 0.3)
    chord = 2.0 * np.sqrt(np.clip(radius_px**2 - d**2, 0.0, None))
    img = 200.0 - contrast * chord / (2.0 * radius_px)
    img = img + np.random.default_rng(seed).normal(0.0, noise, shape)
    return img.astype(dtype), d <= radius_px


# ----------------------------------------------------------------------------- metrics
def test_dice_and_cldice_known_values():
    a = np.zeros((20, 20), bool)
    a[5:15, 8:11] = True  # 30 px bar
    assert dice_score(a, a) == 1.0
    assert cldice_score(a, a) == 1.0
    b = np.zeros_like(a)
    b[5:15, 9:12] = True  # shifted by one column: overlap 20 of 30 + 30
    assert dice_score(a, b) == pytest.approx(2 * 20 / 60)
    # both skeletons lie inside the other mask -> clDice 1 although Dice < 1
    assert cldice_score(a, b) == pytest.approx(1.0)
    assert dice_score(a, np.zeros_like(a)) == 0.0
    assert cldice_score(a, np.zeros_like(a)) == 0.0
    assert dice_score(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_cldice_penalises_a_broken_vessel_more_than_dice():
    truth = np.zeros((40, 60), bool)
    truth[18:23, 2:58] = True
    pred = truth.copy()
    pred[:, 20:40] = False  # a gap a third of the length
    assert cldice_score(pred, truth) < dice_score(pred, truth) + 0.05
    assert cldice_score(pred, truth) < 0.85


# ----------------------------------------------------------------------------- classical
@pytest.mark.parametrize("radius_px", [3.0, 4.0, 6.0])
def test_classical_mask_matches_a_synthetic_tube(radius_px):
    img, truth = tube_frame(radius_px=radius_px)
    mask = segment_vessels(img, model="classical")
    # measured 0.89 / 0.99 / 0.90; Hessian responses are wider than thin lumens
    assert dice_score(mask, truth) >= 0.85
    assert cldice_score(mask, truth) >= 0.95


@pytest.mark.parametrize("radius_px", [1.0, 2.0])
def test_classical_keeps_thin_tubes_connected(radius_px):
    img, truth = tube_frame(radius_px=radius_px)
    mask = segment_vessels(img, model="classical")
    assert cldice_score(mask, truth) >= 0.95  # topology kept; the width is over-estimated


def test_classical_probability_is_high_on_the_vessel_and_low_off_it():
    img, truth = tube_frame(radius_px=4.0)
    p = vessel_probability(img, model="classical")
    rr, cc = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    far = np.abs(rr - (0.3 * cc + 40.0)) > 20
    assert np.median(p[truth]) > 0.9
    assert np.quantile(p[far], 0.99) < 0.5


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("model", ["classical", "unet"])
@pytest.mark.parametrize(
    "dtype,scale", [(np.uint8, 1), (np.uint16, 200), (np.int16, 50), (np.float32, 0.01), (np.float64, 3.0)]
)
def test_probability_shape_dtype_range(model, dtype, scale):
    img, _ = tube_frame(shape=(96, 112), radius_px=3.0)
    frame = (img.astype(np.float64) * scale).astype(dtype)
    before = frame.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unet fallback while no weights
        p = vessel_probability(frame, model=model)
    assert p.shape == frame.shape and p.dtype == np.float32
    assert np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0
    np.testing.assert_array_equal(frame, before)  # input untouched


@pytest.mark.parametrize("model", ["classical", "unet"])
def test_intensity_scaling_does_not_change_the_map(model):
    """uint8 vs the same frame stretched to 12 bits: robust normalisation makes them equal."""
    img, _ = tube_frame(shape=(96, 112), radius_px=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p8 = vessel_probability(img, model=model)
        p12 = vessel_probability(img.astype(np.uint16) * 16 + 7, model=model)
    np.testing.assert_allclose(p8, p12, atol=1e-4)


@pytest.mark.parametrize("model", ["classical", "unet"])
def test_deterministic(model):
    img, _ = tube_frame(shape=(100, 120), radius_px=2.5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = vessel_probability(img, model=model)
        b = vessel_probability(img.copy(), model=model)
    np.testing.assert_array_equal(a, b)


def test_segment_vessels_returns_bool_mask_and_checks_threshold():
    img, _ = tube_frame()
    m = segment_vessels(img, model="classical", threshold=0.5)
    assert m.dtype == bool and m.shape == img.shape
    # a higher threshold keeps a subset
    m_hi = segment_vessels(img, model="classical", threshold=0.9)
    assert m_hi.sum() <= m.sum() and not (m_hi & ~m).any()
    with pytest.raises(ValueError):
        segment_vessels(img, model="classical", threshold=1.5)


def test_public_names_resolve():
    assert stenosis.vessel_probability is vessel_probability
    assert stenosis.segment_vessels is segment_vessels
    assert stenosis.model_sha256 is model_sha256


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 32, 32)), np.zeros(100), np.full((32, 32), np.nan), np.zeros((3, 3))]
)
def test_bad_frames_raise_input_error(bad):
    with pytest.raises(InputError):
        vessel_probability(bad, model="classical")


def test_grey_image_stored_as_rgb_is_accepted_colour_is_not():
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 255, (48, 48)).astype(np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((48, 48, 1), 255, np.uint8)], axis=-1)
    ref = vessel_probability(grey, model="classical")
    np.testing.assert_array_equal(vessel_probability(rgb, model="classical"), ref)
    np.testing.assert_array_equal(vessel_probability(rgba, model="classical"), ref)
    colour = rgb.copy()
    colour[10, 10, 1] ^= 1
    with pytest.raises(InputError, match="colour image"):
        vessel_probability(colour, model="classical")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model"):
        vessel_probability(np.zeros((32, 32)), model="sam")


def test_constant_frame_gives_no_vessels():
    p = vessel_probability(np.full((64, 64), 1000, np.uint16), model="classical")
    assert p.max() < 0.5


# ----------------------------------------------------------------------------- shipped model
@needs_weights
def test_model_sha256_is_the_hash_of_the_shipped_file():
    d = models_dir()
    digest = hashlib.sha256((d / WEIGHTS_NAME).read_bytes()).hexdigest()
    assert model_sha256() == digest
    assert (d / SHA_NAME).read_text().split()[0] == digest
    assert (d / WEIGHTS_NAME).stat().st_size <= 10 * 1024 * 1024


@needs_weights
def test_unet_does_not_fall_back_when_weights_exist():
    img, _ = tube_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        p_unet = vessel_probability(img, model="unet")
    p_cl = vessel_probability(img, model="classical")
    assert not np.array_equal(p_unet, p_cl)


@needs_weights
@pytest.mark.slow
def test_unet_on_held_out_real_angiograms(cimat_dir):
    """Dice of the shipped U-Net on two validation images (never trained on)."""
    from skimage import io

    cfg = json.loads((models_dir() / CONFIG_NAME).read_text())
    val_ids = cfg["training"]["real_val_ids"]
    assert not set(val_ids) & set(cfg["training"]["real_train_ids"])
    dices = []
    for i in val_ids[:2]:
        img = io.imread(cimat_dir / f"{i}.png")
        truth = io.imread(cimat_dir / f"{i}_gt.png") > 127
        dices.append(dice_score(segment_vessels(img, model="unet"), truth))
    # floor a few points under the measured values (MODEL_CARD.md)
    assert min(dices) >= 0.62, dices  # measured 0.658, 0.657 (ids 1, 2)


@needs_weights
def test_unet_segments_a_synthetic_tube():
    img, truth = tube_frame(radius_px=4.0)
    mask = segment_vessels(img, model="unet")
    assert dice_score(mask, truth) >= 0.80
    assert cldice_score(mask, truth) >= 0.90
