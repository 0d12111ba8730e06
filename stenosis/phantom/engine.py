"""Render a phantom run from its spec: frames as stored integers plus the truth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Blur, add_quantum_noise, background_log_attenuation, path_length_mm, shifted_crop
from .scene import Scene, build_scene
from .spec import PhantomSpec
from .truth import compute_truth

#: stored = NATIVE_OFFSET + NATIVE_SCALE * ln(I / I0)  (12-bit, MONOCHROME2, vessels darker)
NATIVE_OFFSET = 4000.0
NATIVE_SCALE = 600.0
#: stored = SUB_OFFSET + SUB_SCALE * (ln I - mean ln I_mask)
SUB_OFFSET = 1920.0  # mid-way in a high byte: RLE keeps the background high byte constant
SUB_SCALE = 500.0
#: stored = LIN_SCALE * I / I0 for PixelIntensityRelationship LIN
LIN_SCALE = 4000.0
BITS_STORED = 12


@dataclass(frozen=True, eq=False)
class Phantom:
    """A rendered phantom run.

    Attributes
    ----------
    spec : PhantomSpec
    stored : (T, H, W) uint16
        Stored pixel values as written to DICOM (12-bit): native log frames (or linear
        with ``intensity_relationship="LIN"``), or log-subtracted frames when
        ``spec.subtracted``; vessels darker, except that MONOCHROME1 stores the
        inverted values (see :attr:`displayed`).
    log_intensity : (T, H, W) float32
        ln(I / I0) of every frame after blur and noise (native, before quantisation).
    path_length_mm : (H, W) float32
        Iodine path length through all lumens in the contrast frames' geometry (mm).
    concentration : (T,) float64
        Bolus concentration c(t), 0 in mask frames, 1 at full opacification.
    scene : Scene
    truth : dict
        The truth sidecar content (keys in the package docstring).
    """

    spec: PhantomSpec
    stored: np.ndarray
    log_intensity: np.ndarray
    path_length_mm: np.ndarray
    concentration: np.ndarray
    scene: Scene
    truth: dict

    @property
    def displayed(self) -> np.ndarray:
        """(T, H, W) uint16 stored values in display polarity (vessels darker)."""
        if self.spec.photometric == "MONOCHROME1":
            return (2**BITS_STORED - 1 - self.stored).astype(np.uint16)
        return self.stored

    @property
    def mask_frames(self) -> tuple[int, ...]:
        """0-based indices of the frames without contrast."""
        return tuple(range(self.spec.n_mask_frames))

    @property
    def frame_index(self) -> int:
        """0-based index of the first fully opacified frame."""
        return int(self.truth["frame_index"])


def concentration_curve(spec: PhantomSpec) -> np.ndarray:
    """Bolus concentration per frame: mask zeros, linear arrival, plateau, washout."""
    c = np.ones(spec.n_frames)
    c[: spec.n_mask_frames] = 0.0
    for k in range(spec.arrival_frames):
        c[spec.n_mask_frames + k] = (k + 1) / (spec.arrival_frames + 1)
    for k in range(spec.washout_frames):
        c[spec.n_frames - spec.washout_frames + k] = 1.0 - 0.7 * (k + 1) / spec.washout_frames
    return c


def render_phantom(spec: PhantomSpec) -> Phantom:
    """Render a phantom run (see :mod:`stenosis.phantom.render` for the physics).

    Parameters
    ----------
    spec : PhantomSpec

    Returns
    -------
    Phantom
        Deterministic in ``spec`` (geometry, background and noise use independent
        random streams spawned from ``spec.seed``).
    """
    g_geom, g_bg, g_noise = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(3))
    scene = build_scene(spec, g_geom)
    shape = spec.shape
    motion = spec.motion_px
    L = path_length_mm(scene.tubes, shape, spec.mm_per_px, shift_px=motion)
    conc = concentration_curve(spec)
    pad = 16
    if spec.background:
        bg_full = background_log_attenuation(g_bg, shape, strength=spec.background_strength, pad=pad)
        bg_mask = shifted_crop(bg_full, shape, (0.0, 0.0), pad)
        bg_contrast = shifted_crop(bg_full, shape, motion, pad)
    else:
        bg_mask = bg_contrast = np.zeros(shape)
    blur = Blur(
        shape, spec.mm_per_px, sigma_mm=spec.blur_sigma_mm,
        scatter_fraction=spec.scatter_fraction, scatter_sigma_mm=spec.scatter_sigma_mm,
    )
    logi = np.empty((spec.n_frames, *shape), np.float32)
    muL = spec.mu_iodine_per_mm * L
    cache: dict[tuple[bool, float], np.ndarray] = {}
    for t in range(spec.n_frames):
        is_mask = t < spec.n_mask_frames
        key = (is_mask, float(conc[t]))
        if key not in cache:  # identical noiseless frames are blurred once
            att = bg_mask if is_mask else bg_contrast + conc[t] * muL
            cache[key] = blur(np.exp(-att))
        inten = cache[key]
        inten = add_quantum_noise(g_noise, inten, photons=spec.photons, poisson=spec.poisson)
        logi[t] = np.log(inten)
    vmax = 2**BITS_STORED - 1
    if spec.subtracted:
        mask_log = logi[: spec.n_mask_frames].astype(np.float64).mean(axis=0)
        stored = np.rint(SUB_OFFSET + SUB_SCALE * (logi - mask_log))
    elif spec.intensity_relationship == "LIN":
        stored = np.rint(LIN_SCALE * np.exp(logi.astype(np.float64)))
    else:
        stored = np.rint(NATIVE_OFFSET + NATIVE_SCALE * logi.astype(np.float64))
    stored = np.clip(stored, 0, vmax).astype(np.uint16)
    if spec.photometric == "MONOCHROME1":
        stored = (vmax - stored).astype(np.uint16)
    frame_index = spec.n_mask_frames + spec.arrival_frames
    truth = compute_truth(scene, spec, frame_index=frame_index, shift_px=motion)
    truth["encoding"] = {
        "bits_stored": BITS_STORED,
        "subtracted": bool(spec.subtracted),
        "intensity_relationship": spec.intensity_relationship,
        "photometric": spec.photometric,
        "offset": SUB_OFFSET if spec.subtracted else (0.0 if spec.intensity_relationship == "LIN" else NATIVE_OFFSET),
        "scale_per_ln": SUB_SCALE if spec.subtracted else (None if spec.intensity_relationship == "LIN" else NATIVE_SCALE),
        "scale_lin": LIN_SCALE if spec.intensity_relationship == "LIN" else None,
        "mask_frames": list(range(spec.n_mask_frames)),
        "concentration": [round(float(v), 6) for v in conc],
    }
    return Phantom(spec, stored, logi, L.astype(np.float32), conc, scene, truth)
