"""Vectorised fit of the blurred-cylinder model to each profile; blur, amplitude and
derivative (check) edges."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..params import DEFAULT_PARAMS, MeasureParams
from .model import ChordTable, chord_table

__all__ = ["ProfileFit", "fit_profiles", "estimate_blur", "derivative_edges", "local_amplitude", "free_amplitude",
           "profile_noise", "misfit_ratio"]

#: OpenBLAS hands a product to its thread pool above about 2**18 multiply-adds; on a busy
#: machine that pool costs 10-30x the single-thread time for the small products here, so
#: large products are cut into row blocks that stay below it (results are identical).
_BLAS_BLOCK_MACS = 2**18


def _matmul_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, computed in blocks small enough for single-threaded BLAS."""
    n, k = a.shape
    m = b.shape[1]
    if n * k * m <= _BLAS_BLOCK_MACS:
        return a @ b
    cols = min(m, max(16, _BLAS_BLOCK_MACS // max(16 * k, 1)))
    rows = max(1, _BLAS_BLOCK_MACS // max(k * cols, 1))
    b = np.ascontiguousarray(b)
    out = np.empty((n, m), dtype=np.result_type(a, b))
    for j in range(0, m, cols):
        bj = np.ascontiguousarray(b[:, j : j + cols])
        for i in range(0, n, rows):
            np.matmul(a[i : i + rows], bj, out=out[i : i + rows, j : j + cols])
    return out


def _project_out(y: np.ndarray, E: np.ndarray) -> np.ndarray:
    """Rows of ``y`` (..., M) minus their projection on the orthonormal columns of ``E`` (M, 2)."""
    return y - (y @ E) @ E.T


def _projector(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projector (M, M) onto the complement of span{1, x} and an orthonormal basis (M, 2) of the span."""
    X = np.stack([np.ones_like(x), x], axis=1)
    E, _ = np.linalg.qr(X)
    return np.eye(x.size) - E @ E.T, E


@dataclass(frozen=True)
class ProfileFit:
    """Per-profile fit results (arrays of shape (N,))."""

    radius_px: np.ndarray
    centre_px: np.ndarray
    amplitude: np.ndarray  # fitted (free) or the fixed value
    rss: np.ndarray  # residual sum of squares
    residuals: np.ndarray  # (N, M)


def _scores(Qy, T, E, amplitude):
    """Residual sum of squares (up to the constant ||Qy||^2) for each template.

    ``Qy`` (N, M) are the profiles with their background line projected out,
    ``T`` (N or 1, K, M) the templates and ``E`` (M, 2) an orthonormal basis of
    the background lines; since Q is a symmetric projector, Qy.QT = Qy.T and
    ||QT||^2 = ||T||^2 - ||E^T T||^2. Returns (N, K) scores and amplitudes.
    """
    if T.shape[0] == Qy.shape[0]:
        cross = (T @ Qy[:, :, None])[..., 0]
        TE = T @ E
        norm = (T * T).sum(-1) - (TE * TE).sum(-1)
    else:
        cross = _matmul_rows(Qy, T[0].T)
        norm = ((T[0] ** 2).sum(-1) - ((T[0] @ E) ** 2).sum(-1))[None, :]
    if amplitude is None:
        safe = np.where(norm > 1e-12, norm, 1.0)
        amp = np.where(cross > 0, cross / safe, 0.0)
        score = -amp * cross
    else:
        amp = np.broadcast_to(np.float64(amplitude), cross.shape)
        score = -2.0 * amplitude * cross + amplitude**2 * norm
    return score, amp


def fit_profiles(
    profiles: np.ndarray,
    offsets_px: np.ndarray,
    table: ChordTable,
    *,
    amplitude: float | None = None,
    r_max_px: float | None = None,
    c_max_px: float = 2.0,
) -> ProfileFit:
    """Fit the blurred-cylinder model to each profile (vectorised).

    Parameters
    ----------
    profiles : (N, M) float
        Profiles sampled at ``offsets_px`` (iodine positive).
    offsets_px : (M,) float
        Sample offsets along the normal, pixels.
    table : ChordTable
        Blurred chords for the run's blur sigma.
    amplitude : float or None
        Fixed iodine amplitude (signal per pixel of path length); None fits it
        per profile (linear, non-negative).
    r_max_px : float, optional
        Largest radius searched (default: the table's).
    c_max_px : float
        Largest |centre offset| searched, pixels.

    Returns
    -------
    ProfileFit
    """
    Y = np.asarray(profiles, dtype=np.float64)
    x = np.asarray(offsets_px, dtype=np.float64)
    n, m = Y.shape
    amp_vec = None
    if amplitude is not None and np.ndim(amplitude) > 0:  # one amplitude per profile
        amp_vec = np.broadcast_to(np.asarray(amplitude, np.float64), (n,))
        amplitude = amp_vec[:, None]
    _, E = _projector(x)
    Qy = _project_out(Y, E)
    r_hi = min(table.r_max - 0.3, r_max_px if r_max_px is not None else np.inf)
    # coarse grid shared by all profiles
    rg = np.arange(0.0, r_hi + 1e-9, 0.25)
    cg = np.arange(-c_max_px, c_max_px + 1e-9, 0.5)
    RR, CC = np.meshgrid(rg, cg, indexing="ij")
    T = table(RR.reshape(-1, 1), x[None, :] - CC.reshape(-1, 1))  # (K, M)
    score, _ = _scores(Qy, T[None], E, amplitude)
    best = np.argmin(score, axis=1)
    R = RR.reshape(-1)[best]
    C = CC.reshape(-1)[best]
    rows = np.arange(n)
    d = np.array([-1.0, 0.0, 1.0])
    dR, dC = np.meshgrid(d, d, indexing="ij")
    dR, dC = dR.reshape(1, -1), dC.reshape(1, -1)

    def parab(sm, s0, sp):
        den = sm - 2 * s0 + sp
        with np.errstate(invalid="ignore", divide="ignore"):
            off = np.where(den > 1e-15, 0.5 * (sm - sp) / den, 0.0)
        return np.clip(off, -1.0, 1.0)

    # local refinement: 3x3 stencils of shrinking steps, parabola through the best
    for hr, hc in ((0.2, 0.35), (0.08, 0.15), (0.03, 0.05)):
        Rs = np.clip(R[:, None] + hr * dR, 0.0, r_hi)
        Cs = C[:, None] + hc * dC
        Ts = table(Rs[:, :, None], x[None, None, :] - Cs[:, :, None])  # (N, 9, M)
        S, _ = _scores(Qy, Ts, E, amplitude)
        S = S.reshape(n, 3, 3)
        k = np.argmin(S.reshape(n, 9), axis=1)
        ir, ic = np.unravel_index(k, (3, 3))
        # parabolas through the centre row/column of the stencil when it is the minimum
        o_r = np.where(ir == 1, parab(S[rows, 0, ic], S[rows, 1, ic], S[rows, 2, ic]), d[ir])
        o_c = np.where(ic == 1, parab(S[rows, ir, 0], S[rows, ir, 1], S[rows, ir, 2]), d[ic])
        R = np.clip(R + hr * o_r, 0.0, r_hi)
        C = np.clip(C + hc * o_c, -c_max_px - 1, c_max_px + 1)
    Tb = table(R[:, None], x[None, :] - C[:, None])
    QTb = _project_out(Tb, E)
    if amplitude is None:
        nb = (QTb**2).sum(1)
        A = np.where(nb > 1e-12, np.maximum((Qy * QTb).sum(1), 0) / np.where(nb > 1e-12, nb, 1), 0.0)
    else:
        A = np.array(amp_vec, float) if amp_vec is not None else np.full(n, float(amplitude))
    res = Qy - A[:, None] * QTb
    rss = (res**2).sum(1)
    return ProfileFit(R, C, A, rss, res)


def estimate_blur(
    profiles: np.ndarray,
    offsets_px: np.ndarray,
    *,
    sigmas_px: np.ndarray | None = None,
    r_max_px: float,
    c_max_px: float = 3.0,
    attenuation_per_px: float = 0.0,
    refine: int | None = None,
) -> tuple[float, float]:
    """Joint estimate of the blur sigma and the iodine amplitude from normal profiles.

    For each candidate sigma every profile is fitted with a free amplitude; the
    sigma with the least total residual wins and the amplitude is the median of the
    per-profile amplitudes refitted at that sigma. ``refine`` (default ``blur_refine``) > 1: the grid's best
    sigma is searched again, between its two neighbours, on the geometric grid
    ``refine`` times finer (the same grid for every run, so its tables are shared;
    a golden-section search, the total residual being unimodal there); the best of
    that grid is then parabola-refined. On the coarse grid alone (``refine`` 1) the
    parabola through three sigmas ~1.47x apart reads a noiseless blur up to 20% off
    and a 3 px lumen 1 px wide (``docs/tuning.md``, section 3, session 24).

    Parameters
    ----------
    profiles : (N, M) float
        Profiles of wide, normal samples.
    offsets_px : (M,) float
        Offsets, pixels.
    r_max_px : float
        Largest radius searched, pixels.
    attenuation_per_px : float
        The tables' (:func:`~stenosis.diameter.model.chord_table`; 0: the linear model).

    Returns
    -------
    sigma_px, amplitude : float
    """
    if sigmas_px is None:
        sigmas_px = np.geomspace(*DEFAULT_PARAMS.blur_sigma_grid_px)
    if refine is None:
        refine = DEFAULT_PARAMS.blur_refine
    u_max = float(np.abs(offsets_px).max()) + 3.0
    sigmas_px = np.asarray(sigmas_px, float)

    def total(s: float) -> float:
        tab = chord_table(float(s), r_max_px, u_max, attenuation_per_px)
        return float(fit_profiles(profiles, offsets_px, tab, amplitude=None, r_max_px=r_max_px,
                                  c_max_px=c_max_px).rss.sum())

    tot = np.array([total(s) for s in sigmas_px])
    k = int(np.argmin(tot))
    refine = int(refine)
    steps = np.diff(np.log(sigmas_px))
    if refine > 1 and steps.size > 1 and np.allclose(steps, steps[0], rtol=1e-9):  # a geometric grid
        fine = np.geomspace(sigmas_px[0], sigmas_px[-1], steps.size * refine + 1)
        seen = {refine * i: float(t) for i, t in enumerate(tot)}

        def at(i: int) -> float:
            if i not in seen:
                seen[i] = total(fine[i])
            return seen[i]

        lo, hi = refine * max(k - 1, 0), refine * min(k + 1, steps.size)
        g = (np.sqrt(5.0) - 1.0) / 2.0
        while hi - lo > 2:  # golden section on the fine grid's indices
            a = hi - int(round(g * (hi - lo)))
            b = lo + int(round(g * (hi - lo)))
            if a >= b:
                a, b = (lo + hi) // 2, (lo + hi) // 2 + 1
            if at(a) <= at(b):
                hi = b
            else:
                lo = a
        k = min(sorted(set(range(lo, hi + 1)) | {refine * k}), key=at)  # never worse than the coarse best
        # the parabola below reads only the best and its two neighbours
        sigmas_px = fine
        tot = np.array([at(i) if abs(i - k) <= 1 else np.nan for i in range(fine.size)])
    ls = np.log(sigmas_px)
    if 0 < k < len(sigmas_px) - 1:
        den = tot[k - 1] - 2 * tot[k] + tot[k + 1]
        off = 0.5 * (tot[k - 1] - tot[k + 1]) / den if den > 0 else 0.0
        lsig = ls[k] + np.clip(off, -1, 1) * (ls[k + 1] - ls[k])
    else:
        lsig = ls[k]
    sigma = float(np.exp(lsig))
    tab = chord_table(sigma, r_max_px, u_max, attenuation_per_px)
    f = fit_profiles(profiles, offsets_px, tab, amplitude=None, r_max_px=r_max_px, c_max_px=c_max_px)
    good = f.radius_px > 0.5
    amp = float(np.median(f.amplitude[good])) if good.any() else float(np.median(f.amplitude))
    return sigma, amp


def derivative_edges(
    profiles: np.ndarray, offsets_px: np.ndarray, centre_px: np.ndarray, *, smooth_px: float = 0.75
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-gradient edges either side of the fitted centre (the classic QCA edge).

    Returns
    -------
    left_px, right_px : (N,) float
        Edge offsets along the normal, pixels (sub-sample by parabola).
    """
    x = np.asarray(offsets_px, float)
    dx = x[1] - x[0]
    g = ndi.gaussian_filter1d(np.asarray(profiles, float), max(smooth_px / dx, 0.5), axis=1, order=1)
    n, m = g.shape
    rel = x[None, :] - centre_px[:, None]
    gl = np.where(rel < 0, g, -np.inf)
    gr = np.where(rel > 0, -g, -np.inf)

    def peak(arr):
        i = np.argmax(arr, axis=1)
        ic = np.clip(i, 1, m - 2)
        rows = np.arange(n)
        a, b, c = arr[rows, ic - 1], arr[rows, ic], arr[rows, ic + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            den = a - 2 * b + c
            off = np.where(np.isfinite(den) & (den < 0), 0.5 * (a - c) / den, 0.0)
        off = np.where(i == ic, np.clip(off, -1, 1), 0.0)
        return x[ic] + np.where(i == ic, off, 0.0) * dx

    return peak(gl), peak(gr)



def local_amplitude(Y, x, tab, arc_px, amplitude, sigma_px, usable, radius_px, *, half_px, r_max_px, c_max_px,
                    params: MeasureParams = DEFAULT_PARAMS):
    """(N,) iodine amplitude along the vessel: the run's, corrected where the lumen shows its own.

    Scatter and veiling glare lower the iodine signal by 1 / (1 + scatter-to-primary ratio),
    and that ratio follows the anatomy behind the vessel (bone, lung, soft tissue); with one
    amplitude per run a lumen over a darker background is measured too narrow (densitometric
    area). Where the lumen is resolved (2R >= ``resolved_sigmas`` x blur and >= ``resolved_min_px``),
    its own profile shape fixes R and a free fit gives the local amplitude; the amplitude at
    each sample is the median of those within ``half_px`` of arc (at least ``local_amplitude_min``
    of them, else the run's), so that an unresolved stenosis uses its resolved neighbours'.
    The median's departure from the run's amplitude is shrunk by dev^2 / (dev^2 + SE^2): on
    a small, noisy lumen (a free fit trades amplitude against width) it stays the run's.
    """
    out = np.full(len(Y), float(amplitude))
    # resolved by the run-amplitude fit's diameter: selecting on the free fit's own (noisy)
    # diameter would pick the profiles whose noise widened them, i.e. lowered their amplitude
    d_fix = 2.0 * np.asarray(radius_px, float)
    cand = np.flatnonzero(usable & (d_fix >= params.resolved_sigmas * sigma_px) & (d_fix >= params.resolved_min_px))
    if cand.size < params.local_amplitude_min:
        return out
    # the free fit only where it is used (profiles are fitted independently)
    a = fit_profiles(Y[cand], x, tab, amplitude=None, r_max_px=r_max_px, c_max_px=c_max_px).amplitude
    lo_a, hi_a = params.local_amplitude_range
    keep = (a > lo_a * amplitude) & (a < hi_a * amplitude)
    if keep.sum() < params.local_amplitude_min:
        return out
    ia, aa = arc_px[cand[keep]], a[keep]
    step = float(np.median(np.diff(arc_px))) if len(arc_px) > 1 else 1.0
    corr = float(np.sqrt(2.0 * np.pi * (sigma_px**2 + 0.5)))  # noise correlation along the vessel, px
    # evaluated every quarter window and interpolated (it varies on the window's scale)
    knots = np.arange(arc_px[0], arc_px[-1] + 0.25 * half_px, max(0.25 * half_px, step))
    lo = np.searchsorted(ia, knots - half_px, side="left")
    hi = np.searchsorted(ia, knots + half_px, side="right")
    val = np.full(knots.size, float(amplitude))
    for j in range(knots.size):
        k = hi[j] - lo[j]
        if k >= params.local_amplitude_min:
            w = aa[lo[j]:hi[j]]
            med = float(np.median(w))
            # standard error of the median (correlated samples); the departure from the run's
            # amplitude is shrunk by its significance, so noise alone does not move it
            se = 1.2533 * 1.4826 * float(np.median(np.abs(w - med))) / np.sqrt(max(k * step / corr, 1.0))
            dev = med - amplitude
            val[j] = amplitude + dev * dev * dev / (dev * dev + se * se + 1e-300)
    return np.interp(arc_px, knots, val) if knots.size > 1 else out


def free_amplitude(Y, x, tab, R, C):
    """Least-squares amplitude of each profile at its fitted (R, c), background projected out."""
    _, E = _projector(x)
    T = _project_out(tab(R[:, None], x[None, :] - C[:, None]), E)
    nb = (T**2).sum(1)
    return np.where(nb > 1e-12, (_project_out(np.asarray(Y, float), E) * T).sum(1) / np.where(nb > 1e-12, nb, 1.0), 0.0)



def profile_noise(profiles: np.ndarray, offsets_px: np.ndarray, arc_px: np.ndarray, *, lag_px: float) -> float:
    """Noise SD per profile point, from differences of profiles ``lag_px`` apart along the vessel.

    The lumen, its background and any structure beside it change slowly along the vessel and
    cancel in the difference; the quantum and detector noise, independent at that lag, does not
    (robust SD / sqrt 2, the background line projected out as in the fit). Points that are exactly
    0 in both profiles (never observed: pinned) are left out.
    """
    Y = np.asarray(profiles, float)
    step = float(np.median(np.diff(arc_px))) if len(arc_px) > 1 else 1.0
    lag = max(int(round(lag_px / step)), 1)
    if len(Y) <= lag:
        return float("nan")
    _, E = _projector(np.asarray(offsets_px, float))
    d = _project_out(Y[lag:] - Y[:-lag], E)
    # points exactly 0 in both profiles were never observed (a single native frame's contrast is
    # pinned to 0 off the lumen's hole): they carry no noise, and counted they read it low
    seen = (Y[lag:] != 0) | (Y[:-lag] != 0)
    if seen.sum() >= 20 and not seen.all():
        d = d[seen]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2.0))


def misfit_ratio(residuals: np.ndarray, noise_sd: float) -> np.ndarray:
    """(N,) RMS of each profile's fit residual over the noise SD: about 1 (or below, the fit
    absorbs a little noise) where the model describes the profile, well above where it does not."""
    rms = np.sqrt(np.mean(np.asarray(residuals, float) ** 2, axis=1))
    return rms / noise_sd if np.isfinite(noise_sd) and noise_sd > 0 else np.full(rms.shape, np.nan)
