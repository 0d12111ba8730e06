"""Torch-free inference of the shipped U-Net (numpy + BLAS).

The measurement runs the U-Net on a crop of a few hundred pixels around the reader's
points. Importing torch takes 1-3 s on a 2-core machine, longer than the whole
measurement, so a one-shot ``stenosis measure`` call would spend most of its time
loading a library. This module evaluates the same network with numpy:

* :func:`load_state_dict` reads the PyTorch checkpoint (``unet.pt``: a zip with a
  pickled ``OrderedDict`` of tensors) without torch, through a restricted unpickler
  that only builds float/int arrays from the archive's storages;
* :func:`fold` folds each batch norm into the preceding 3x3 convolution;
* :func:`forward` is the network of :class:`stenosis.unet.UNet` (3x3 convolutions as
  one matrix product over the 9 shifted copies of the channels-last input, computed
  in row bands to bound memory; 2x2 max-pool; bilinear x2 up-sampling with
  ``align_corners=False`` and clamped edges, as ``torch.nn.functional.interpolate``).

It agrees with the torch module to about 1e-5 in the logits (float32 rounding;
``tests/test_unet.py`` checks it). The measurement always uses this engine, so its
numbers do not depend on whether torch happens to be imported; the full-frame
:func:`stenosis.vessel_probability` uses torch above :data:`NUMPY_MAX_PIXELS` pixels,
where torch's convolutions are faster.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["load_state_dict", "fold", "NumpyUNet", "forward", "load", "predict_probability", "NUMPY_MAX_PIXELS",
           "preprocess", "file_sha256", "tiled_logits", "sigmoid"]

#: frames up to this many pixels run on numpy in :func:`stenosis.vessel_probability`
NUMPY_MAX_PIXELS = 384 * 384
_BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
_BAND_BYTES = 8 << 20  # im2col band size

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    arr = storage
    itemsize = arr.itemsize
    return np.lib.stride_tricks.as_strided(
        arr[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


class _Unpickler(pickle.Unpickler):
    """Builds arrays from a torch zip checkpoint; refuses every other global."""

    def __init__(self, fh, archive: zipfile.ZipFile, prefix: str):
        super().__init__(fh)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _Storage(_DTYPES[name])
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the weights file")

    def persistent_load(self, pid):
        kind, storage, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("unexpected persistent id in the weights file")
        raw = self._archive.read(f"{self._prefix}/data/{key}")
        return np.frombuffer(raw, dtype=storage.dtype, count=int(numel))


def load_state_dict(path: str | Path) -> "OrderedDict[str, np.ndarray]":
    """The tensors of a PyTorch ``state_dict`` checkpoint (zip format) as numpy arrays."""
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("/data.pkl")]
        order = z.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in z.namelist() else "little"
        if order != "little":
            raise pickle.UnpicklingError("big-endian weights are not supported")
        return _Unpickler(io.BytesIO(z.read(pkl)), z, prefix).load()


def _conv_params(state, conv: str, bn: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(9*Cin, Cout) matrix in (dy, dx, cin) row order and bias, batch norm folded in."""
    w = state[f"{conv}.weight"].astype(np.float64)  # (Cout, Cin, kh, kw)
    b = state.get(f"{conv}.bias")
    b = np.zeros(w.shape[0]) if b is None else b.astype(np.float64)
    if bn is not None:
        scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + _BN_EPS)
        w = w * scale[:, None, None, None]
        b = (b - state[f"{bn}.running_mean"]) * scale + state[f"{bn}.bias"]
    mat = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
    return np.ascontiguousarray(mat, dtype=np.float32), b.astype(np.float32)


class NumpyUNet:
    """The folded network: per level, lists of (matrix, bias) for the 3x3 convolutions."""

    def __init__(self, encoders, decoders, head, depth: int):
        self.encoders = encoders
        self.decoders = decoders
        self.head = head
        self.depth = depth

    @property
    def multiple(self) -> int:
        return 2**self.depth


def fold(state, config: dict) -> NumpyUNet:
    """Build the numpy network from a :class:`stenosis.unet.UNet` state dict and its config."""
    norm = config.get("norm", "batch")
    depth = int(config.get("depth", 4))
    if norm not in ("batch", "none"):
        raise ValueError(f"numpy inference supports norm 'batch' or 'none', not {norm!r}")

    def block(prefix: str):
        # Sequential indices: conv, [bn], relu, [dropout] per convolution
        idx = sorted({int(k.split(".")[2]) for k in state if k.startswith(prefix + ".")})
        convs = [i for i in idx if state.get(f"{prefix}.{i}.weight") is not None and state[f"{prefix}.{i}.weight"].ndim == 4]
        out = []
        for i in convs:
            bn = f"{prefix}.{i + 1}" if norm == "batch" else None
            out.append(_conv_params(state, f"{prefix}.{i}", bn))
        return out

    encoders = [block(f"encoders.{k}") for k in range(depth + 1)]
    decoders = [block(f"decoders.{k}") for k in range(depth)]
    hw = state["head.weight"][:, :, 0, 0].T.astype(np.float32).copy()
    hb = state["head.bias"].astype(np.float32)
    return NumpyUNet(encoders, decoders, (hw, hb), depth)


def _conv3x3_relu(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    h, wd, c = x.shape
    cout = w.shape[1]
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.empty((h, wd, cout), np.float32)
    rows = int(max(1, min(h, _BAND_BYTES // (wd * 9 * c * 4))))
    cols = np.empty((rows, wd, 9 * c), np.float32)
    for r0 in range(0, h, rows):
        r1 = min(r0 + rows, h)
        n = r1 - r0
        cb = cols[:n]
        k = 0
        for dy in range(3):
            for dx in range(3):
                cb[:, :, k * c : (k + 1) * c] = xp[r0 + dy : r1 + dy, dx : dx + wd, :]
                k += 1
        o = out[r0:r1].reshape(n * wd, cout)
        np.matmul(cb.reshape(n * wd, 9 * c), w, out=o)
        o += b
        np.maximum(o, 0.0, out=o)
    return out


def _maxpool2(x: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def _up2(x: np.ndarray) -> np.ndarray:
    """Bilinear x2 up-sampling, align_corners=False, edges clamped (torch semantics)."""
    for axis in (0, 1):
        n = x.shape[axis]
        prev = np.take(x, np.r_[0, np.arange(n - 1)], axis=axis)
        nxt = np.take(x, np.r_[np.arange(1, n), n - 1], axis=axis)
        even = 0.75 * x + 0.25 * prev
        odd = 0.75 * x + 0.25 * nxt
        shape = list(x.shape)
        shape[axis] *= 2
        x = np.stack([even, odd], axis=axis + 1).reshape(shape)
    return x.astype(np.float32, copy=False)


def forward(net: NumpyUNet, x: np.ndarray) -> np.ndarray:
    """Logits (H, W) of a preprocessed (H, W) image whose sides are multiples of ``net.multiple``."""
    x = np.asarray(x, np.float32)[:, :, None]
    skips = []
    for k, blk in enumerate(net.encoders):
        if k:
            x = _maxpool2(x)
        for w, b in blk:
            x = _conv3x3_relu(x, w, b)
        skips.append(x)
    x = skips.pop()
    for k in reversed(range(len(net.decoders))):
        skip = skips.pop()
        x = np.concatenate([_up2(x), skip], axis=2)
        for w, b in net.decoders[k]:
            x = _conv3x3_relu(x, w, b)
    hw, hb = net.head
    return (x.reshape(-1, x.shape[2]) @ hw + hb)[:, 0].reshape(x.shape[:2])


def run_padded(net: NumpyUNet, x: np.ndarray) -> np.ndarray:
    """Logits of one (h, w) array, padded to the network multiple by reflection (as torch's path)."""
    m = net.multiple
    h, w = x.shape
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "edge"
        x = np.pad(x, ((0, ph), (0, pw)), mode=mode)
    return forward(net, x)[:h, :w]


# ----------------------------------------------------------------------------- shared pre/post
def preprocess(frame) -> np.ndarray:
    """Robust percentile rescaling (0.5 %, 99.5 %) of a displayed frame (vessels dark) to [-1, 1]."""
    from .vesselness import normalize_intensity

    return normalize_intensity(frame) * np.float32(2.0) - np.float32(1.0)


def file_sha256(path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checked_architecture(weights: str, config: str, expected_sha256: str) -> dict:
    """The architecture of ``config`` after checking the SHA-256 of ``weights`` (both engines' load step)."""
    from .errors import ModelError

    actual = file_sha256(weights)
    if actual != expected_sha256:
        raise ModelError(
            f"U-Net weights {weights} have sha256 {actual[:12]}..., expected "
            f"{expected_sha256[:12]}...; reinstall stenosis to restore models/unet.pt"
        )
    try:
        cfg = json.loads(Path(config).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model config {config} ({exc}); reinstall stenosis") from None
    return cfg.get("architecture", cfg)


@functools.lru_cache(maxsize=4)
def load(weights: str, config: str, expected_sha256: str, _stamp: tuple = ()) -> NumpyUNet:
    """The numpy network from the shipped checkpoint, after checking its SHA-256 (cached)."""
    from .errors import ModelError

    arch = checked_architecture(weights, config, expected_sha256)
    try:
        return fold(load_state_dict(weights), arch)
    except Exception as exc:  # a wrong file is a model problem, not a bug of the caller
        raise ModelError(f"cannot load U-Net weights {weights} ({exc}); reinstall stenosis") from None


def predict_probability(net: NumpyUNet, frame, *, max_single_px: int = 1024, tile_px: int = 512,
                        overlap_px: int = 64) -> np.ndarray:
    """Vessel probability (H, W) float32 of one frame as displayed, as :func:`stenosis.unet.predict_probability`."""
    x = preprocess(frame)
    logits = tiled_logits(lambda t: run_padded(net, t), x, max_single_px=max_single_px,
                          tile_px=tile_px, overlap_px=overlap_px)
    return sigmoid(logits)


def tile_ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weight: linear ramps over ``overlap`` px on inner sides."""
    w = np.ones(n, dtype=np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = np.minimum(w[:overlap], r)
        if not at_end:
            w[n - overlap :] = np.minimum(w[n - overlap :], r[::-1])
    return w


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    s = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(s))


def tiled_logits(run, x: np.ndarray, *, max_single_px: int, tile_px: int, overlap_px: int) -> np.ndarray:
    """Logits of a whole preprocessed frame with ``run(tile) -> logits``; tiles above ``max_single_px``."""
    h, w = x.shape
    if overlap_px * 2 >= tile_px:
        raise ValueError("overlap_px must be less than half of tile_px")
    if h <= max_single_px and w <= max_single_px:
        return run(x)
    acc = np.zeros((h, w), dtype=np.float32)
    wsum = np.zeros((h, w), dtype=np.float32)
    for r0 in tile_starts(h, tile_px, overlap_px):
        th = min(tile_px, h - r0)
        wr = tile_ramp(th, overlap_px, r0 == 0, r0 + th >= h)
        for c0 in tile_starts(w, tile_px, overlap_px):
            tw = min(tile_px, w - c0)
            wc = tile_ramp(tw, overlap_px, c0 == 0, c0 + tw >= w)
            wt = wr[:, None] * wc[None, :]
            acc[r0 : r0 + th, c0 : c0 + tw] += wt * run(x[r0 : r0 + th, c0 : c0 + tw])
            wsum[r0 : r0 + th, c0 : c0 + tw] += wt
    return acc / wsum


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).astype(np.float32)
