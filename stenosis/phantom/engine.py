"""Render a phantom run from its spec: frames as stored integers plus the truth.

Contrast time course. The bolus enters the field at the proximal end of the main artery
with the concentration :func:`concentration_curve` (per frame; linear in time between
frames) and its front travels along the vessel tree at ``spec.bolus_velocity_mm_s``
(:func:`bolus_arrival_s`): a point of the main artery at arc length ``s`` past the field
entry receives it ``s / v`` seconds later, a side branch inherits the arrival of its
parent at the branch point and adds its own arc length, a vessel from another plane
(the crossing) has its own inflow where it enters the field. A pixel's concentration in
frame ``t`` is the inflow's at ``t - arrival / frame_time``, so upstream fills first, as
in real DSA (mean intracranial arterial velocities 20-60 cm/s by transcranial Doppler:
Aaslid et al., J Neurosurg 1982;57:769-74, doi:10.3171/jns.1982.57.6.0769).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .render import Blur, add_quantum_noise, background_log_attenuation, project_layers, shifted_crop
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
        Bolus concentration c(t) at the inflow (the main artery's field entry), 0 in mask
        frames, 1 at full opacification; a point with arrival time a (s) sees
        c(t - a / frame_time) (:func:`inflow_concentration`).
    arrival_s : tuple of (N_k,) float64
        Arrival time (s) of the contrast front at each centreline sample of each tube of
        ``scene.tubes`` (:func:`bolus_arrival_s`).
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
    arrival_s: tuple[np.ndarray, ...] = ()

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
        """0-based index of the first frame in which the graded segment is fully opacified."""
        return int(self.truth["frame_index"])


def concentration_curve(spec: PhantomSpec) -> np.ndarray:
    """Bolus concentration per frame at the inflow: mask zeros, linear arrival, plateau, washout.

    Downstream points see this curve delayed by their arrival time (:func:`inflow_concentration`).
    """
    c = np.ones(spec.n_frames)
    c[: spec.n_mask_frames] = 0.0
    for k in range(spec.arrival_frames):
        c[spec.n_mask_frames + k] = (k + 1) / (spec.arrival_frames + 1)
    for k in range(spec.washout_frames):
        c[spec.n_frames - spec.washout_frames + k] = 1.0 - 0.7 * (k + 1) / spec.washout_frames
    return c


def inflow_concentration(spec: PhantomSpec, t_frames: np.ndarray) -> np.ndarray:
    """Inflow concentration at fractional frame times: :func:`concentration_curve` joined by
    straight lines (0 before frame 0, the last value after the last frame).

    The rise starts after the last mask frame, so a point reached later (t - delay) is
    still free of contrast in every mask frame.
    """
    c = concentration_curve(spec)
    return np.interp(np.asarray(t_frames, float), np.arange(spec.n_frames, dtype=float), c, left=0.0, right=float(c[-1]))


def _field_entry_arc(tube, shape: tuple[int, int], mm_per_px: tuple[float, float]) -> float:
    """Arc position (mm) of the first centreline sample of ``tube`` inside the field (0 if none)."""
    rc = tube.base_mm / np.asarray(mm_per_px)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] <= shape[0] - 1) & (rc[:, 1] >= 0) & (rc[:, 1] <= shape[1] - 1)
    return float(tube.s_mm[int(np.argmax(inside))]) if inside.any() else 0.0


def bolus_arrival_s(scene: Scene, spec: PhantomSpec) -> tuple[np.ndarray, ...]:
    """Arrival time (s) of the contrast front at each centreline sample, one array per tube.

    The main artery's clock starts where it enters the field (``landmarks["field_start"]``,
    its proximal end: arrival 0 there and upstream of it); side branches start from their
    parent's arrival at their origin; a vessel from another plane starts at 0 where it
    enters the field. ``spec.bolus_velocity_mm_s`` None: 0 everywhere (the contrast
    arrives everywhere at once).

    Returns
    -------
    tuple of (N_k,) float64 arrays, in the order of ``scene.tubes``
    """
    v = spec.bolus_velocity_mm_s
    if v is None:
        return tuple(np.zeros(len(t.s_mm)) for t in scene.tubes)
    main = scene.main
    t_main = np.clip(main.s_mm - scene.landmarks["field_start"], 0.0, None) / v
    out = [t_main]
    origins = list(scene.landmarks.get("branches", []))
    for tube in scene.others:
        if tube.name == "branch" and origins:
            t0 = float(np.interp(origins.pop(0), main.s_mm, t_main))
            out.append(t0 + tube.s_mm / v)
        else:
            out.append(np.clip(tube.s_mm - _field_entry_arc(tube, spec.shape, spec.mm_per_px), 0.0, None) / v)
    return tuple(out)


def _full_frame(spec: PhantomSpec, scene: Scene, t_main: np.ndarray) -> int:
    """First frame in which the graded segment (from the first reader point, or the feeding
    artery's, to the distal point) is fully opacified (inflow plateau reached at its far end)."""
    lm = scene.landmarks
    first = min(lm["proximal"], lm["feeding_proximal"] if lm.get("feeding_proximal") is not None else np.inf)
    frame_s = spec.frame_time_ms / 1000.0
    d_near, d_far = (float(np.interp(x, scene.main.s_mm, t_main)) / frame_s for x in (first, lm["distal"]))
    full = spec.n_mask_frames + spec.arrival_frames + int(np.ceil(d_far - 1e-9))
    last_plateau = spec.n_frames - spec.washout_frames - 1  # at the inflow
    if full > spec.n_frames - 1 or full - d_near > last_plateau:
        raise InputError(
            f"the contrast front ({spec.bolus_velocity_mm_s} mm/s) fills the graded segment only "
            f"{d_far:.1f} frames after the inflow: no frame shows it fully opacified; add frames "
            "(n_frames) or raise bolus_velocity_mm_s"
        )
    return full


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
    arrival = bolus_arrival_s(scene, spec)
    layers = project_layers(scene.tubes, shape, spec.mm_per_px, arrival_s=arrival, shift_px=motion)
    L = np.zeros(shape)
    for chord, _ in layers:  # the same sum as path_length_mm
        L += chord
    conc = concentration_curve(spec)
    frame_s = spec.frame_time_ms / 1000.0
    vessel = []  # per layer: its vessel pixels (flat), their path length and delay in frames
    for chord, arr in layers:
        idx = np.flatnonzero(chord)
        vessel.append((idx, chord.ravel()[idx], arr.ravel()[idx] / frame_s))
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
    cache: dict[tuple, np.ndarray] = {}
    for t in range(spec.n_frames):
        is_mask = t < spec.n_mask_frames
        c_vessel = [inflow_concentration(spec, t - delay) for _, _, delay in vessel]
        uniform = all(np.all(c == conc[t]) for c in c_vessel)
        # identical noiseless frames are blurred once; a frame the front is crossing is its own
        key = (is_mask, float(conc[t])) if is_mask or uniform else (False, f"frame {t}")
        if key not in cache:
            if is_mask:
                att = bg_mask
            elif uniform:
                att = bg_contrast + conc[t] * muL
            else:
                iodine = np.zeros(shape[0] * shape[1])
                for (idx, chord, _), c in zip(vessel, c_vessel):
                    iodine[idx] += c * chord
                att = bg_contrast + spec.mu_iodine_per_mm * iodine.reshape(shape)
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
    frame_index = _full_frame(spec, scene, arrival[0])
    truth = compute_truth(scene, spec, frame_index=frame_index, shift_px=motion, main_arrival_s=arrival[0])
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
        "bolus_velocity_mm_s": spec.bolus_velocity_mm_s,
        "frame_time_ms": spec.frame_time_ms,
    }
    return Phantom(spec, stored, logi, L.astype(np.float32), conc, scene, truth, arrival)
