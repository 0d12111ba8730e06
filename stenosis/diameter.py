"""Sub-pixel lumen diameters from perpendicular profiles: model-based fit of a blurred cylinder.

A projected circular lumen of radius R (pixels) with iodine signal A per pixel of
path length gives, across the vessel at offset x from its centre c,

    s(x) = b0 + b1 x + A * [2 sqrt(R^2 - (x - c)^2)]_+  (*)  G_sigma(x)

where G_sigma is the imaging blur (focal spot, detector, pixel integration and
interpolation lumped into one Gaussian) and b0 + b1 x the local background. The
blur sigma and the amplitude A are estimated once per run from the widest
segments (a joint fit where the edge shape determines sigma and the plateau A);
each profile is then fitted with A and sigma fixed, so that the integrated
(densitometric) signal still determines R when 2R is below the blur width, where
edge detectors overestimate (Hoffmann, Wahle, Pellot-Barakat, Sklansky, Sonka,
"Improved quantitative coronary angiography...", Med Phys 2002;29:1509,
doi:10.1118/1.1488603; Fleagle et al., Med Phys 1989, doi:10.1118/1.596337).

Scatter lowers the iodine signal by 1 / (1 + scatter-to-primary ratio), and that ratio
follows the anatomy behind the vessel, so one A per run measured a lumen over a
darker background too narrow (a 20% ICA stenosis at scatter fraction 0.25 read as
28%). The final fit (``local_amplitude_from``) lets A follow the vessel: where the
lumen is resolved its own shape fixes R, a free fit gives the local A, and each
sample takes the median of those within a few radii (shrunk towards the run's A by
its significance; an unresolved stenosis takes its resolved neighbours').

The fit is vectorised over all profiles: b0, b1 (and A when free) are linear and
eliminated by projection; (R, c) are found by a coarse grid search on a lookup
table of blurred-chord profiles, a fine local grid, and a quadratic refinement.
Derivative (maximum-gradient) edges are computed as a cross-check.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .result import DiameterProfile, QualityFlag

__all__ = [
    "ChordTable",
    "chord_table",
    "sample_profiles",
    "fit_profiles",
    "estimate_blur",
    "derivative_edges",
    "measure_diameters",
]

LOCAL_AMPLITUDE_HALF = 4.0  # local amplitude: half-window along the vessel, x the radius hint (0: one per run)
LOCAL_AMPLITUDE_MIN = 10  # ... from at least this many resolved samples
RESOLVED_SIGMAS = 4.0  # a lumen is resolved (its shape fixes R) when 2R >= this x the blur sigma
RESOLVED_MIN_PX = 10.0  # ... and spans at least this many pixels
_DR = 0.05  # table step in R, px
_DU = 0.05  # table step in offset, px


@dataclass(frozen=True)
class ChordTable:
    """Blurred projected-chord profiles ``table[k, j] = K(R=k*dr, |u|=j*du)`` for one sigma."""

    sigma_px: float
    dr: float
    du: float
    table: np.ndarray  # (KR, KU) float64

    @property
    def r_max(self) -> float:
        return (self.table.shape[0] - 1) * self.dr

    def __call__(self, r: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Bilinear lookup of K(r, u); ``r`` and ``u`` broadcast, pixels."""
        kr, ku = self.table.shape
        fr = np.clip(np.asarray(r, dtype=np.float64) * (1.0 / self.dr), 0, kr - 1.000001)
        fu = np.clip(np.abs(np.asarray(u, dtype=np.float64)) * (1.0 / self.du), 0, ku - 1.000001)
        ir = fr.astype(np.intp)
        iu = fu.astype(np.intp)
        wr = fr - ir
        wu = fu - iu
        # flat gathers (np.take on the raveled table) are several times faster than 2-D fancy indexing
        flat = self.table.ravel()
        k = ir * ku + iu
        k, wr, wu = np.broadcast_arrays(k, wr, wu)
        a = flat.take(k)
        a += (flat.take(k + 1) - a) * wu
        b = flat.take(k + ku)
        b += (flat.take(k + ku + 1) - b) * wu
        a += (b - a) * wr
        return a


def _chord_cell_mean(r: np.ndarray, u: np.ndarray, du: float) -> np.ndarray:
    """Exact mean of 2 sqrt(r^2 - x^2) over cells [u - du/2, u + du/2] (area preserving)."""

    def prim(x):
        x = np.clip(x, -r, r)
        with np.errstate(invalid="ignore", divide="ignore"):
            rr = np.where(r > 0, r, 1.0)
            val = x * np.sqrt(np.maximum(r * r - x * x, 0.0)) + r * r * np.arcsin(np.clip(x / rr, -1, 1))
        return np.where(r > 0, val, 0.0)

    return (prim(u + du / 2) - prim(u - du / 2)) / du


class _ByteLRU:
    """Least-recently-used cache bounded in entries *and* bytes of the arrays it holds.

    The chord tables are keyed by the run's estimated blur (a continuous value), so in
    a long-lived batch worker nearly every run adds entries; an entry-count bound alone
    lets the cache hold hundreds of MB when vessels are wide (a spectrum of a 26 px
    radius table is ~35 MB). Values are recomputed exactly when evicted, so the bound
    changes speed, never results.
    """

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._data: collections.OrderedDict = collections.OrderedDict()
        self._sizes: dict = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def get(self, key, make):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
        value = make()  # outside the lock: tables take milliseconds to seconds
        size = _nbytes(value)
        if size > self.max_bytes:  # too big to keep: use it once
            return value
        with self._lock:
            if key in self._data:  # another thread made it meanwhile
                return self._data[key]
            self._data[key] = value
            self._sizes[key] = size
            self.nbytes += size
            while len(self._data) > self.max_entries or self.nbytes > self.max_bytes:
                old, _ = self._data.popitem(last=False)
                self.nbytes -= self._sizes.pop(old)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._sizes.clear()
            self.nbytes = 0


def _nbytes(value) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, ChordTable):
        return int(value.table.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


#: blur-independent chord spectra (few distinct keys: the radius/offset ranges rounded up)
_SPECTRUM_CACHE = _ByteLRU(max_entries=8, max_bytes=48 * 2**20)
#: blurred tables: the 7 fixed trial blurs repeat across runs; the run's own blur rarely does
_TABLE_CACHE = _ByteLRU(max_entries=64, max_bytes=48 * 2**20)


def _chord_spectrum(r_max_px: float, u_max_px: float, pad_px: float):
    """Unblurred cell-mean chords and their FFT along u (independent of the blur)."""
    key = (float(r_max_px), float(u_max_px), float(pad_px))
    return _SPECTRUM_CACHE.get(key, lambda: _chord_spectrum_uncached(*key))


def _chord_spectrum_uncached(r_max_px: float, u_max_px: float, pad_px: float):
    r = np.arange(0.0, r_max_px + 2 * _DR, _DR)[:, None]
    u_full = np.arange(-(u_max_px + pad_px), u_max_px + pad_px + _DU / 2, _DU)
    chords = _chord_cell_mean(r, u_full[None, :], _DU)
    n_fft = int(2 ** np.ceil(np.log2(u_full.size + 2 * pad_px / _DU)))
    spec = np.fft.rfft(chords, n=n_fft, axis=1)
    u_full.flags.writeable = False
    spec.flags.writeable = False
    return u_full, n_fft, spec


def chord_table(sigma_px: float, r_max_px: float, u_max_px: float) -> ChordTable:
    """Tabulate the Gaussian-blurred projected chord of a cylinder.

    Parameters
    ----------
    sigma_px : float
        Gaussian blur standard deviation, pixels.
    r_max_px : float
        Largest lumen radius tabulated, pixels.
    u_max_px : float
        Largest |offset| from the lumen centre tabulated, pixels.

    Returns
    -------
    ChordTable
        Callable lookup K(R, u) (signal per unit amplitude: path length in pixels).
    """
    sigma_px = float(max(sigma_px, 1e-3))
    # round the ranges up so that tables of one run share the cached spectrum
    return _chord_table_cached(sigma_px, float(np.ceil(r_max_px)), float(np.ceil(u_max_px)))


def _chord_table_cached(sigma_px: float, r_max_px: float, u_max_px: float) -> ChordTable:
    """Deterministic, so cached per process (the table is read-only); bounded in bytes."""
    key = (float(sigma_px), float(r_max_px), float(u_max_px))
    return _TABLE_CACHE.get(key, lambda: _chord_table_uncached(*key))


def _chord_table_uncached(sigma_px: float, r_max_px: float, u_max_px: float) -> ChordTable:
    pad = float(np.ceil(5 * max(sigma_px, 4.0) + 1))
    u_full, n_fft, spec = _chord_spectrum(r_max_px, u_max_px, pad)
    # Gaussian blur by FFT (the kernel is hundreds of table steps wide); the padding
    # keeps the circular wrap-around outside the tabulated range
    f = np.fft.rfftfreq(n_fft, d=_DU)
    gain = np.exp(-2.0 * (np.pi * f * sigma_px) ** 2)
    blurred = np.fft.irfft(spec * gain, n=n_fft, axis=1)[:, : u_full.size]
    i0 = int(np.argmin(np.abs(u_full)))
    n_u = int(np.ceil(u_max_px / _DU)) + 2
    table = np.ascontiguousarray(blurred[:, i0 : i0 + n_u])
    table.flags.writeable = False
    return ChordTable(sigma_px, _DR, _DU, table)


def profile_offsets(half_length_px: float, step_px: float = 0.5) -> np.ndarray:
    """(M,) symmetric sample offsets along the normal, pixels."""
    n = int(np.ceil(half_length_px / step_px))
    return np.arange(-n, n + 1) * step_px


def sample_profiles(
    image: np.ndarray,
    centerline_rc: np.ndarray,
    normals_rc: np.ndarray,
    offsets_px: np.ndarray,
    *,
    band_px: float = 1.0,
    band_step_px: float = 0.5,
    order: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Perpendicular intensity profiles, averaged over a short band along the vessel.

    Parameters
    ----------
    image : (H, W) array
        Opacified frame (iodine positive).
    centerline_rc : (N, 2) float
        Sample points (row, col), pixels.
    normals_rc : (N, 2) float
        Unit normals (row, col).
    offsets_px : (M,) float
        Offsets along the normal, pixels.
    band_px : float
        Half-length of the band of parallel profiles averaged along the tangent, pixels.
    order : int
        Interpolation order for :func:`scipy.ndimage.map_coordinates`.

    Returns
    -------
    profiles : (N, M) float64
        Band-averaged profiles.
    inside : (N,) bool
        Whether the whole band lies inside the image.
    """
    img = np.asarray(image, dtype=np.float32)
    pts = np.asarray(centerline_rc, float)
    nrm = np.asarray(normals_rc, float)
    tan = np.stack([nrm[:, 1], -nrm[:, 0]], axis=1)
    nb = int(round(band_px / band_step_px)) if band_px > 0 else 0
    bands = np.arange(-nb, nb + 1) * band_step_px
    # coords: (2, N, B, M)
    coords = (
        pts.T[:, :, None, None]
        + nrm.T[:, :, None, None] * offsets_px[None, None, None, :]
        + tan.T[:, :, None, None] * bands[None, None, :, None]
    )
    h, w = img.shape
    inside = (
        (coords[0] >= -0.5).all(axis=(1, 2))
        & (coords[0] <= h - 0.5).all(axis=(1, 2))
        & (coords[1] >= -0.5).all(axis=(1, 2))
        & (coords[1] <= w - 0.5).all(axis=(1, 2))
    )
    vals = ndi.map_coordinates(img, coords.reshape(2, -1), order=order, mode="nearest", prefilter=order > 1)
    vals = vals.reshape(coords.shape[1:]).astype(np.float64)
    return vals.mean(axis=1), inside


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
) -> tuple[float, float]:
    """Joint estimate of the blur sigma and the iodine amplitude from wide normal profiles.

    For each candidate sigma every profile is fitted with a free amplitude; the
    sigma with the least total residual (parabola-refined) wins and the amplitude
    is the median of the per-profile amplitudes refitted at that sigma.

    Parameters
    ----------
    profiles : (N, M) float
        Profiles of wide, normal samples.
    offsets_px : (M,) float
        Offsets, pixels.
    r_max_px : float
        Largest radius searched, pixels.

    Returns
    -------
    sigma_px, amplitude : float
    """
    if sigmas_px is None:
        sigmas_px = np.geomspace(0.4, 4.0, 7)
    u_max = float(np.abs(offsets_px).max()) + 3.0
    tot = []
    for s in sigmas_px:
        tab = chord_table(s, r_max_px, u_max)
        f = fit_profiles(profiles, offsets_px, tab, amplitude=None, r_max_px=r_max_px, c_max_px=c_max_px)
        tot.append(f.rss.sum())
    tot = np.asarray(tot)
    k = int(np.argmin(tot))
    ls = np.log(sigmas_px)
    if 0 < k < len(sigmas_px) - 1:
        den = tot[k - 1] - 2 * tot[k] + tot[k + 1]
        off = 0.5 * (tot[k - 1] - tot[k + 1]) / den if den > 0 else 0.0
        lsig = ls[k] + np.clip(off, -1, 1) * (ls[k + 1] - ls[k])
    else:
        lsig = ls[k]
    sigma = float(np.exp(lsig))
    tab = chord_table(sigma, r_max_px, u_max)
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


def normals_from_centerline(centerline_rc: np.ndarray) -> np.ndarray:
    """(N, 2) unit normals of a resampled centerline (tangent rotated by +90 degrees)."""
    p = np.asarray(centerline_rc, float)
    t = np.gradient(p, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    return np.stack([-t[:, 1], t[:, 0]], axis=1)


def _profile_geometry(radius_hint_px: float) -> tuple[float, float, float]:
    """(half length, largest radius, largest centre offset) of the profiles, pixels."""
    rh = float(max(radius_hint_px, 1.5))
    return max(1.6 * rh + 7.0, 10.0), max(1.6 * rh + 2.0, 4.0), float(np.clip(0.5 * rh, 3.0, 12.0))


def _edge_points(centerline_rc: np.ndarray, normal_rc: np.ndarray, centre_px: np.ndarray, radius_px: np.ndarray):
    """(left, right) lumen edge points (N, 2) from the fitted centre offsets and radii."""
    return (centerline_rc + normal_rc * (centre_px - radius_px)[:, None],
            centerline_rc + normal_rc * (centre_px + radius_px)[:, None])


def _probe_beside(probability: np.ndarray, pts: np.ndarray, nrm: np.ndarray, centre_px: np.ndarray,
                  start_px: np.ndarray, steps_px: np.ndarray):
    """Vessel probability beside each lumen: one (N, K) array per side (-1, then +1).

    Sampled along the normal at ``centre + sign * (start + step)``; ``pts`` are in the
    probability map's coordinates.
    """
    prob = np.asarray(probability, np.float32)
    for sign in (-1.0, 1.0):
        off = centre_px[:, None] + sign * (start_px[:, None] + steps_px[None, :])
        q = pts[:, None, :] + nrm[:, None, :] * off[:, :, None]
        v = ndi.map_coordinates(prob, q.reshape(-1, 2).T, order=1, mode="constant", cval=0.0)
        yield v.reshape(off.shape)


def measure_diameters(
    image: np.ndarray,
    centerline_rc: np.ndarray,
    arc_px: np.ndarray,
    *,
    radius_hint_px: float,
    mm_per_px: float | None = None,
    blur_sigma_px: float | None = None,
    amplitude: float | None = None,
    band_px: float = 1.0,
    profile_step_px: float = 1.0,
    estimate_from: np.ndarray | None = None,
    local_amplitude_from: np.ndarray | None = None,
) -> DiameterProfile:
    """Model-based diameter profile along a centerline.

    Parameters
    ----------
    image : (H, W) array
        Opacified frame (iodine positive, background about 0).
    centerline_rc : (N, 2) float
        Resampled centerline (row, col), pixels.
    arc_px : (N,) float
        Arc length of each sample, pixels.
    radius_hint_px : float
        Rough largest lumen radius on the segment (sets the profile length), pixels.
    mm_per_px : float, optional
        Isotropic scale for the mm columns.
    blur_sigma_px, amplitude : float, optional
        Known blur and amplitude; estimated from the widest samples when None.
    band_px : float
        Half-length of the band of profiles averaged along the vessel, pixels.
    estimate_from : (N,) bool, optional
        Samples allowed in the blur and amplitude estimate (e.g. not flagged as branch or
        crossing by an earlier pass: a crossing's profile looks like a wide, blurred lumen).
    local_amplitude_from : (N,) bool, optional
        Fit with an amplitude that follows the vessel (:func:`local_amplitude`), from these
        samples' own resolved profiles (the unflagged ones of an earlier pass: a crossing
        or a branch raises the iodine signal). None: one amplitude for the run.

    Returns
    -------
    DiameterProfile
    """
    pts = np.asarray(centerline_rc, float)
    nrm = normals_from_centerline(pts)
    rh = float(max(radius_hint_px, 1.5))
    half, r_max, c_max = _profile_geometry(rh)
    x = profile_offsets(half, profile_step_px)
    Y, inside = sample_profiles(image, pts, nrm, x, band_px=band_px)
    u_max = half + 3.0
    if blur_sigma_px is None or amplitude is None:
        # first pass with a nominal blur to find wide samples
        tab0 = chord_table(1.0, r_max, u_max)
        f0 = fit_profiles(Y, x, tab0, amplitude=None, r_max_px=r_max, c_max_px=c_max)
        ok = inside & (f0.radius_px > 0)
        if estimate_from is not None and (ok & estimate_from).sum() >= 5:
            ok &= np.asarray(estimate_from, bool)
        cand = np.where(ok)[0]
        if cand.size == 0:
            cand = np.arange(len(Y))
        # select on the radius smoothed along the vessel: picking single noisy profiles for
        # being wide picks those whose noise widened them (a blur estimate biased low at low dose)
        step = float(np.median(np.diff(arc_px))) if len(arc_px) > 1 else 1.0
        r_s = ndi.gaussian_filter1d(np.where(ok, f0.radius_px, np.median(f0.radius_px[cand])),
                                    max(2.0 * rh / step, 1.0), mode="nearest")
        thr = np.quantile(r_s[cand], 0.6)
        wide = cand[r_s[cand] >= thr]
        # drop profiles whose amplitude is atypical (overlaps, branches)
        a = f0.amplitude[wide]
        med = np.median(a)
        mad = np.median(np.abs(a - med)) + 1e-12
        wide = wide[np.abs(a - med) <= 3 * 1.4826 * mad]
        if wide.size > 40:
            wide = wide[np.linspace(0, wide.size - 1, 40).astype(int)]
        s_est, a_est = estimate_blur(Y[wide], x, r_max_px=r_max, c_max_px=c_max)
        blur_sigma_px = s_est if blur_sigma_px is None else blur_sigma_px
        amplitude = a_est if amplitude is None else amplitude
    tab = chord_table(blur_sigma_px, r_max, u_max)
    fit = fit_profiles(Y, x, tab, amplitude=amplitude, r_max_px=r_max, c_max_px=c_max)
    amp_local = None
    if local_amplitude_from is not None and LOCAL_AMPLITUDE_HALF > 0:
        amp_local = local_amplitude(Y, x, tab, np.asarray(arc_px, float), float(amplitude), float(blur_sigma_px),
                                    inside & np.asarray(local_amplitude_from, bool), fit.radius_px,
                                    half_px=LOCAL_AMPLITUDE_HALF * rh, r_max_px=r_max, c_max_px=c_max)
        if np.any(amp_local != amplitude):  # else the fit above is already this one
            fit = fit_profiles(Y, x, tab, amplitude=amp_local, r_max_px=r_max, c_max_px=c_max)
    R, C = fit.radius_px, fit.centre_px
    free_amp = _free_amplitude(Y, x, tab, R, C)
    el, er = derivative_edges(Y, x, C)
    flags = _quality_flags(Y, x, fit, free_amp, inside, blur_sigma_px, amplitude, R)
    left, right = _edge_points(pts, nrm, C, R)
    return DiameterProfile(
        arc_px=np.asarray(arc_px, float),
        centerline_rc=pts,
        normal_rc=nrm,
        diameter_px=2.0 * R,
        left_rc=left,
        right_rc=right,
        flags=flags,
        edge_diameter_px=er - el,
        centre_offset_px=C,
        blur_sigma_px=float(blur_sigma_px),
        amplitude=float(amplitude),
        mm_per_px=mm_per_px,
        local_amplitude=amp_local,
    )


def flag_side_vessels(
    profile: DiameterProfile,
    probability: np.ndarray,
    *,
    origin_rc: tuple[float, float] = (0.0, 0.0),
    threshold: float = 0.5,
    reach_px: float = 4.0,
    crossings: bool = True,
) -> DiameterProfile:
    """Add BRANCH flags where another vessel touches the lumen (branch origin, touching vessel)
    and OVERLAP flags where one crosses it (``crossings``: needs a clean vessel map, such as
    the U-Net's; the classical vesselness responds to background texture and is not used).

    Just outside each edge of the normal lumen (from 2 sigma + 1 px to that plus ``reach_px``)
    the vessel probability is sampled; a side where it exceeds ``threshold`` holds
    another vessel, whose iodine biases the background line of the profile fit.

    Parameters
    ----------
    profile : DiameterProfile
    probability : (h, w) float
        Vessel probability (possibly of a crop).
    origin_rc : (row, col)
        Position of the probability crop in the frame, pixels.

    Returns
    -------
    DiameterProfile
        A copy with the extra flags.
    """
    from dataclasses import replace

    pts = profile.centerline_rc - np.asarray(origin_rc, float)
    nrm = profile.normal_rc
    c = profile.centre_offset_px
    r = profile.diameter_px / 2
    # look beyond the normal lumen (not just the local one): at a stenosis the vessel
    # map still covers the normal width of the artery
    r_norm = 0.5 * float(np.quantile(profile.diameter_px, 0.9))
    # ... and beyond an eccentric narrowing: the centreline follows the residual lumen,
    # which may sit against one wall of the artery; the vessel map (the artery's normal
    # outline) then reaches up to 2 r_norm - r from the lumen centre on that side
    start = np.maximum(2.0 * r_norm - r, r) + 2.0 * profile.blur_sigma_px + 1.0
    ks = np.arange(0.0, reach_px + 1e-9, 1.0)
    hit = np.zeros(len(profile), bool)
    for v in _probe_beside(probability, pts, nrm, c, start, ks):
        hit |= v.max(axis=1) > threshold
    # a branch origin disturbs the profiles over its own width: dilate by a few samples
    hit = ndi.binary_dilation(hit, iterations=2)
    flags = profile.flags | np.where(hit, int(QualityFlag.BRANCH), 0)
    if crossings:
        flags = flags | np.where(_crossing_samples(profile, pts, probability, threshold=threshold, reach_px=reach_px),
                                 int(QualityFlag.OVERLAP), 0)
    return replace(profile, flags=flags)


def _crossing_samples(profile: DiameterProfile, pts: np.ndarray, probability: np.ndarray, *,
                      threshold: float, reach_px: float) -> np.ndarray:
    """(N,) samples whose lumen another vessel crosses (see :func:`_crossing_ratio`).

    A vessel crossing at a shallow angle has a footprint along the profile that can end before
    the side-vessel probe starts, and the profile fit absorbs it into a wider lumen (3.4 mm
    read for 2.8 mm at a 30-degree crossing, which then passed as the widest "normal" window).
    """
    n = len(profile)
    step = float(np.median(np.diff(profile.arc_px))) if n > 1 else 1.0
    # every ~0.5 px of arc is enough (samples are 0.1 mm apart, a fraction of a pixel)
    idx = np.unique(np.r_[np.arange(0, n, max(int(0.5 / step), 1)), n - 1])
    # one vessel's half-width: a robust middle of the diameters (a long crossing region
    # inflates the 0.9 quantile, a long lesion pulls the median down); the circle has the
    # same radius all along (a lesion's wider probe start reached a crossing 5 mm away)
    fit_ok = (profile.flags & int(QualityFlag.POOR_FIT | QualityFlag.OUTSIDE)) == 0
    r_one = 0.5 * float(np.quantile(profile.diameter_px[fit_ok] if fit_ok.sum() >= 5 else profile.diameter_px, 0.6))
    radius = np.full(idx.size, r_one + 2.0 * profile.blur_sigma_px + 1.0 + 0.5 * reach_px)
    ratio = _crossing_ratio(probability, pts[idx], r_one, radius, threshold=threshold)
    cross = np.interp(np.arange(n), idx, ratio) > CROSSING_RATIO
    if not cross.any():
        return cross
    k = max(int(round(r_one / step)), 1)  # bridge gaps, then half a lumen width either side
    return ndi.binary_dilation(ndi.binary_closing(cross, iterations=2 * k), iterations=k)


#: a sample whose vessel map reaches this many times the arc of one straight vessel on a
#: circle around it (along straight rays inside the map) has another vessel through its lumen;
#: normal samples of 48 dev phantoms stayed <= 1.13, crossings' centres read 1.2-2.0
CROSSING_RATIO = 1.2


def _crossing_ratio(probability: np.ndarray, pts: np.ndarray, half_width_px: float, radius_px: np.ndarray, *,
                    threshold: float = 0.5, n_ang: int = 96, n_rad: int = 12) -> np.ndarray:
    """(N,) arc of the vessel map reached from each sample along straight rays that stay inside
    the map, on a circle of ``radius_px``, over that of one straight vessel of ``half_width_px``.

    One vessel through the sample gives about 1 (two arms), a crossing vessel about 2 (four
    arms, merged at shallow angles); a vessel beside the lumen, across background, is not
    reached along a ray inside the map and does not count.
    """
    prob = np.asarray(probability, np.float32)
    ang = np.linspace(0.0, 2.0 * np.pi, n_ang, endpoint=False)
    dirs = np.stack([np.sin(ang), np.cos(ang)], axis=-1)
    radius = np.asarray(radius_px, float)
    rad = radius[:, None] * np.linspace(0.0, 1.0, n_rad)[None, :]
    q = pts[:, None, None, :] + rad[:, :, None, None] * dirs[None, None, :, :]
    v = ndi.map_coordinates(prob, q.reshape(-1, 2).T, order=1, mode="constant", cval=0.0)
    inside = v.reshape(len(pts), n_rad, n_ang) > threshold
    reached = np.logical_and.accumulate(inside, axis=1)[:, -1, :]
    arc = reached.mean(axis=1) * 2.0 * np.pi * radius
    expected = 4.0 * radius * np.arcsin(np.clip(half_width_px / np.maximum(radius, 1e-6), 0.0, 1.0))
    return arc / np.maximum(expected, 1e-6)


def refit_beside_vessels(
    image: np.ndarray,
    profile: DiameterProfile,
    probability: np.ndarray,
    *,
    radius_hint_px: float,
    origin_rc: tuple[float, float] = (0.0, 0.0),
    threshold: float = 0.5,
) -> DiameterProfile:
    """Refit BRANCH-flagged samples on profiles cut short of the other vessel.

    A vessel running beside the lumen (not touching it) lies in the tail of the full-length
    profile, raises the fitted background line and shrinks the fitted lumen; flagging the
    sample drops it, which at a lesion drops the MLD. Where the vessel map shows the other
    vessel at distance D from the lumen centre on the nearer side, the profile is sampled
    again only out to D - 2 sigma - 1 px (symmetric) and refitted with the run's blur and
    amplitude; if at least 2.5 px of background remain beyond the blurred lumen edge the
    refit replaces the sample and its BRANCH flag is cleared. Branch origins (the other
    vessel touches the lumen) leave no room and stay flagged. Samples that are also poor
    fits are refitted too (the other vessel is often why) and keep their POOR_FIT flag:
    a lesion beside a crossing vessel is then still found by the MLD search
    (:func:`stenosis.wasid.wasid`).
    """
    from dataclasses import replace

    flags = profile.flags
    other = int(QualityFlag.OVERLAP | QualityFlag.OUTSIDE)
    idx = np.where(((flags & int(QualityFlag.BRANCH)) != 0) & ((flags & other) == 0))[0]
    if idx.size == 0:
        return profile
    sig = float(profile.blur_sigma_px)
    half_full, r_max, c_max = _profile_geometry(radius_hint_px)
    r = profile.diameter_px[idx] / 2.0
    c = profile.centre_offset_px[idx]
    pts = profile.centerline_rc[idx] - np.asarray(origin_rc, float)
    ks = np.arange(0.0, half_full + 3.0, 0.5)
    start = r + 2.0 * sig + 1.0
    dist = np.full(idx.size, np.inf)
    for v in _probe_beside(probability, pts, profile.normal_rc[idx], c, start, ks):
        hit = v > threshold
        first = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
        d = np.where(first >= 0, start + ks[np.maximum(first, 0)], np.inf)  # from the lumen centre
        dist = np.minimum(dist, d)
    lim = np.minimum(dist - 2.0 * sig - 1.0, half_full)  # background tail ends here (from the centre)
    room = lim - (r + 2.0 * sig)
    # only where the vessel map shows the other vessel: a flag from the profile's own residuals
    # (a branch the map missed) or from the flag's dilation is kept
    ok = np.isfinite(dist) & (room >= 2.5)
    if not ok.any():
        return profile
    diam = profile.diameter_px.copy()
    cen = profile.centre_offset_px.copy()
    new_flags = flags.copy()
    # group by the cut (whole pixels) so each group is one vectorised fit
    cut = np.floor(lim[ok] - np.abs(c[ok]))
    for h in np.unique(cut):
        sel = idx[ok][cut == h]
        x = profile_offsets(max(float(h), 3.0), 1.0)
        Y, inside = sample_profiles(image, profile.centerline_rc[sel], profile.normal_rc[sel], x, band_px=1.0)
        tab = chord_table(sig, r_max, float(np.abs(x).max()) + 3.0)
        amp = profile.amplitude if profile.local_amplitude is None else profile.local_amplitude[sel]
        fit = fit_profiles(Y, x, tab, amplitude=amp, r_max_px=r_max, c_max_px=min(c_max, float(h) / 2))
        good = inside & (fit.radius_px > 0)
        diam[sel[good]] = 2.0 * fit.radius_px[good]
        cen[sel[good]] = fit.centre_px[good]
        new_flags[sel[good]] &= ~int(QualityFlag.BRANCH)
    left, right = _edge_points(profile.centerline_rc, profile.normal_rc, cen, diam / 2)
    return replace(profile, diameter_px=diam, centre_offset_px=cen, flags=new_flags, left_rc=left, right_rc=right)


def local_amplitude(Y, x, tab, arc_px, amplitude, sigma_px, usable, radius_px, *, half_px, r_max_px, c_max_px):
    """(N,) iodine amplitude along the vessel: the run's, corrected where the lumen shows its own.

    Scatter and veiling glare lower the iodine signal by 1 / (1 + scatter-to-primary ratio),
    and that ratio follows the anatomy behind the vessel (bone, lung, soft tissue); with one
    amplitude per run a lumen over a darker background is measured too narrow (densitometric
    area). Where the lumen is resolved (2R >= RESOLVED_SIGMAS x blur and >= RESOLVED_MIN_PX),
    its own profile shape fixes R and a free fit gives the local amplitude; the amplitude at
    each sample is the median of those within ``half_px`` of arc (at least LOCAL_AMPLITUDE_MIN
    of them, else the run's), so that an unresolved stenosis uses its resolved neighbours'.
    The median's departure from the run's amplitude is shrunk by dev^2 / (dev^2 + SE^2): on
    a small, noisy lumen (a free fit trades amplitude against width) it stays the run's.
    """
    out = np.full(len(Y), float(amplitude))
    # resolved by the run-amplitude fit's diameter: selecting on the free fit's own (noisy)
    # diameter would pick the profiles whose noise widened them, i.e. lowered their amplitude
    d_fix = 2.0 * np.asarray(radius_px, float)
    cand = np.flatnonzero(usable & (d_fix >= RESOLVED_SIGMAS * sigma_px) & (d_fix >= RESOLVED_MIN_PX))
    if cand.size < LOCAL_AMPLITUDE_MIN:
        return out
    # the free fit only where it is used (profiles are fitted independently)
    a = fit_profiles(Y[cand], x, tab, amplitude=None, r_max_px=r_max_px, c_max_px=c_max_px).amplitude
    keep = (a > 0.5 * amplitude) & (a < 1.3 * amplitude)
    if keep.sum() < LOCAL_AMPLITUDE_MIN:
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
        if k >= LOCAL_AMPLITUDE_MIN:
            w = aa[lo[j]:hi[j]]
            med = float(np.median(w))
            # standard error of the median (correlated samples); the departure from the run's
            # amplitude is shrunk by its significance, so noise alone does not move it
            se = 1.2533 * 1.4826 * float(np.median(np.abs(w - med))) / np.sqrt(max(k * step / corr, 1.0))
            dev = med - amplitude
            val[j] = amplitude + dev * dev * dev / (dev * dev + se * se + 1e-300)
    return np.interp(arc_px, knots, val) if knots.size > 1 else out


def _free_amplitude(Y, x, tab, R, C):
    """Least-squares amplitude of each profile at its fitted (R, c), background projected out."""
    _, E = _projector(x)
    T = _project_out(tab(R[:, None], x[None, :] - C[:, None]), E)
    nb = (T**2).sum(1)
    return np.where(nb > 1e-12, (_project_out(np.asarray(Y, float), E) * T).sum(1) / np.where(nb > 1e-12, nb, 1.0), 0.0)


def _quality_flags(Y, x, fit, free_amp, inside, sigma, amplitude, R):
    """Per-sample :class:`QualityFlag` bits from the fit residuals."""
    n = len(Y)
    flags = np.zeros(n, dtype=np.int64)
    flags[~inside] |= int(QualityFlag.OUTSIDE)
    res = fit.residuals
    # robust noise level of the residuals (per sample point), from the whole run
    noise = 1.4826 * np.median(np.abs(res - np.median(res))) + 1e-12
    peak_ref = amplitude * 2.0 * np.quantile(R, 0.9)
    rel = np.abs(x[None, :] - fit.centre_px[:, None])
    outer = rel > (R[:, None] + 2.0 * sigma + 1.0)
    inner = rel <= np.maximum(R[:, None], 0.5)
    rs = ndi.uniform_filter1d(res, 5, axis=1)
    out_max = np.where(outer, rs, -np.inf).max(axis=1)
    thr_b = max(0.15 * peak_ref, 4.0 * noise)
    flags[out_max > thr_b] |= int(QualityFlag.BRANCH)
    # extra iodine over the lumen: the free amplitude exceeds the run's amplitude
    resolved = 2 * R > 2.5 * sigma
    in_mean = np.where(inner, res, 0).sum(1) / np.maximum(inner.sum(1), 1)
    over = (resolved & (free_amp > 1.3 * amplitude)) | (in_mean > max(0.2 * peak_ref, 4 * noise))
    flags[over] |= int(QualityFlag.OVERLAP)
    m = Y.shape[1]
    rms = np.sqrt(fit.rss / m)
    flags[rms > max(3.0 * np.median(rms), 3 * noise)] |= int(QualityFlag.POOR_FIT)
    return flags
