"""The lumen model: a blurred projected cylinder, tabulated.

A circular lumen of radius R projects to a chord 2 sqrt(R^2 - u^2); the imaging blur
(focal spot, detector, pixel integration, interpolation) is one Gaussian of sigma. The
table K(R, u) of blurred, pixel-cell-averaged chords is computed once per blur by FFT
and cached (bounded in bytes).

The detector blurs transmitted *intensity*: on profiles in natural-log attenuation (a LIN
run) an iodine attenuation mu per px of path gives ``-log(G * exp(-mu c))``, not
``mu (G * c)``; the two part where the chord changes within the blur and mu c is not small
(a wide, dense lumen reads 0.3-0.4 px narrow with the linear model, docs/tuning.md section 3).
``attenuation_per_px`` > 0 tabulates that: K = -log(1 - G * (1 - exp(-mu c))) / mu, so that
``mu K`` is the profile of a lumen fitted with the amplitude mu; 0 is the linear model (its
limit), for profiles in grey levels whose relation to intensity is not known.
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["ChordTable", "chord_table"]

_DR = 0.05  # table step in R, px
_DU = 0.05  # table step in offset, px
#: attenuations are tabulated on a geometric grid of this log step (1%): the passes of one run and
#: runs alike share tables; a 1% error of mu moves a 10 px diameter by about 0.002 px
_LOG_MU_STEP = 0.01


@dataclass(frozen=True)
class ChordTable:
    """Blurred projected-chord profiles ``table[k, j] = K(R=k*dr, |u|=j*du)`` for one sigma."""

    sigma_px: float
    dr: float
    du: float
    table: np.ndarray  # (KR, KU) float64
    attenuation_per_px: float = 0.0  # 0: the linear model (blurred chords)

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
#: blurred tables: the 7 fixed trial blurs repeat across runs (at a LIN run's attenuation too,
#: on its 1% grid); the run's own blur rarely does
_TABLE_CACHE = _ByteLRU(max_entries=64, max_bytes=48 * 2**20)


def _chord_spectrum(r_max_px: float, u_max_px: float, pad_px: float, mu: float = 0.0):
    """Unblurred cell-mean chords (``mu`` > 0: their absorbed fraction 1 - exp(-mu c), zero off
    the lumen like the chord) and their FFT along u, independent of the blur."""
    key = (float(r_max_px), float(u_max_px), float(pad_px), float(mu))
    return _SPECTRUM_CACHE.get(key, lambda: _chord_spectrum_uncached(*key))


def _chord_spectrum_uncached(r_max_px: float, u_max_px: float, pad_px: float, mu: float = 0.0):
    r = np.arange(0.0, r_max_px + 2 * _DR, _DR)[:, None]
    u_full = np.arange(-(u_max_px + pad_px), u_max_px + pad_px + _DU / 2, _DU)
    chords = _chord_cell_mean(r, u_full[None, :], _DU)
    if mu > 0:
        chords = -np.expm1(-mu * chords)
    n_fft = int(2 ** np.ceil(np.log2(u_full.size + 2 * pad_px / _DU)))
    spec = np.fft.rfft(chords, n=n_fft, axis=1)
    u_full.flags.writeable = False
    spec.flags.writeable = False
    return u_full, n_fft, spec


def chord_table(sigma_px: float, r_max_px: float, u_max_px: float, attenuation_per_px: float = 0.0) -> ChordTable:
    """Tabulate the Gaussian-blurred projected chord of a cylinder.

    Parameters
    ----------
    sigma_px : float
        Gaussian blur standard deviation, pixels.
    r_max_px : float
        Largest lumen radius tabulated, pixels.
    u_max_px : float
        Largest |offset| from the lumen centre tabulated, pixels.
    attenuation_per_px : float
        Iodine attenuation (natural log per px of path) at which the transmission is blurred,
        taken to the nearest step of a 1% geometric grid; 0: the chord is (the linear model).

    Returns
    -------
    ChordTable
        Callable lookup K(R, u) (signal per unit amplitude: path length in pixels).
    """
    sigma_px = float(max(sigma_px, 1e-3))
    mu = 0.0
    if np.isfinite(attenuation_per_px) and attenuation_per_px > 0:  # on the 1% grid
        mu = float(np.exp(np.round(np.log(attenuation_per_px) / _LOG_MU_STEP) * _LOG_MU_STEP))
    # round the ranges up so that tables of one run share the cached spectrum
    return _chord_table_cached(sigma_px, float(np.ceil(r_max_px)), float(np.ceil(u_max_px)), mu)


def _chord_table_cached(sigma_px: float, r_max_px: float, u_max_px: float, mu: float = 0.0) -> ChordTable:
    """Deterministic, so cached per process (the table is read-only); bounded in bytes."""
    key = (float(sigma_px), float(r_max_px), float(u_max_px), float(mu))
    return _TABLE_CACHE.get(key, lambda: _chord_table_uncached(*key))


def _chord_table_uncached(sigma_px: float, r_max_px: float, u_max_px: float, mu: float = 0.0) -> ChordTable:
    pad = float(np.ceil(5 * max(sigma_px, 4.0) + 1))
    u_full, n_fft, spec = _chord_spectrum(r_max_px, u_max_px, pad, mu)  # mu > 0: the absorbed fraction
    # Gaussian blur by FFT (the kernel is hundreds of table steps wide); the padding
    # keeps the circular wrap-around outside the tabulated range
    f = np.fft.rfftfreq(n_fft, d=_DU)
    gain = np.exp(-2.0 * (np.pi * f * sigma_px) ** 2)
    blurred = np.fft.irfft(spec * gain, n=n_fft, axis=1)[:, : u_full.size]
    i0 = int(np.argmin(np.abs(u_full)))
    n_u = int(np.ceil(u_max_px / _DU)) + 2
    table = np.ascontiguousarray(blurred[:, i0 : i0 + n_u])
    if mu > 0:
        table = -np.log1p(-np.clip(table, 0.0, 1.0 - 1e-12)) / mu
    table.flags.writeable = False
    return ChordTable(sigma_px, _DR, _DU, table, mu)

