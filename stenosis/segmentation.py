"""Vessel probability and vessel masks: the public face of the segmentation models.

``vessel_probability(frame, model=...)`` returns an (H, W) float32 map in [0, 1]
from either the shipped U-Net (:mod:`stenosis.unet`, weights in ``models/``)
or the classical multi-scale vesselness (:mod:`stenosis.vesselness`).
``segment_vessels`` cuts a boolean mask from it. ``frame`` is one 2-D image as
displayed (vessels darker than the background), any real dtype, subtracted or
not.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .enums import ModelName
from .errors import ModelError
from .vesselness import as_float_frame, classical_probability, hysteresis_mask

__all__ = [
    "vessel_probability",
    "segment_vessels",
    "model_sha256",
    "models_dir",
    "dice_score",
    "cldice_score",
]

# low hysteresis threshold as a fraction of the seed threshold, per model (see docs/tuning.md)
_HYSTERESIS_LOW = {ModelName.UNET: 0.8, ModelName.CLASSICAL: 0.5}

WEIGHTS_NAME = "unet.pt"
CONFIG_NAME = "config.json"
SHA_NAME = "weights.sha256"


def models_dir() -> Path:
    """Folder holding the shipped weights, config, hash and model card.

    The package ``stenosis._models`` (the repository's ``models/`` folder,
    installed inside the wheel); when it has no weights (e.g. a source tree
    where that package is not importable), the repository's ``models/``.
    """
    try:
        from importlib.resources import files

        d = Path(str(files("stenosis._models")))
        if (d / WEIGHTS_NAME).is_file():
            return d
    except (ImportError, ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / "models"


def _weights_available() -> bool:
    return (models_dir() / WEIGHTS_NAME).is_file()


def _recorded_sha256() -> str:
    f = models_dir() / SHA_NAME
    try:
        text = f.read_text().split()
    except OSError:
        raise ModelError(f"weight hash file {f} is missing; reinstall stenosis") from None
    if not text or len(text[0]) != 64:
        raise ModelError(f"weight hash file {f} is malformed; reinstall stenosis")
    return text[0].lower()


def _model_name(model) -> ModelName:
    try:
        return ModelName(str(model).lower())
    except ValueError:
        choices = ", ".join(m.value for m in ModelName)
        raise ValueError(f"unknown model {model!r}; choose one of: {choices}") from None


def _unet_probability(frame: np.ndarray) -> np.ndarray:
    """U-Net probability with the shipped weights (hash checked at first load).

    Frames up to :data:`stenosis.unet_numpy.NUMPY_MAX_PIXELS` pixels (the measurement's
    crops) run on the torch-free numpy engine: no 1-3 s torch import in a one-shot CLI
    call, and the same numbers whether or not torch is loaded. Larger frames run on torch.
    """
    from . import unet_numpy

    d = models_dir()
    if not (d / WEIGHTS_NAME).is_file():
        raise ModelError(
            f"U-Net weights not found in {d}; reinstall stenosis or pass model='classical'"
        )
    weights, config = d / WEIGHTS_NAME, d / CONFIG_NAME
    if frame.size <= unet_numpy.NUMPY_MAX_PIXELS:
        st = weights.stat()
        net = unet_numpy.load(str(weights), str(config), _recorded_sha256(), (st.st_size, st.st_mtime_ns))
        return unet_numpy.predict_probability(net, frame)
    from . import unet

    model = unet.load_unet(weights, config, expected_sha256=_recorded_sha256())
    return unet.predict_probability(model, frame)


def vessel_probability(frame, *, model: str | ModelName = "unet") -> np.ndarray:
    """Per-pixel vessel probability of one frame.

    Parameters
    ----------
    frame : array_like, shape (H, W)
        One frame as displayed (vessels darker than the background), any real
        dtype (uint8, uint16, int, float), subtracted or native.
    model : {"unet", "classical"} or ModelName
        ``"unet"``: the shipped U-Net (tiled above its tile size);
        ``"classical"``: multi-scale Sato vesselness mapped to [0, 1].

    Returns
    -------
    ndarray, shape (H, W), float32 in [0, 1]
        A new array; the input is not modified.

    Raises
    ------
    InputError
        The frame is not a finite 2-D numeric array.
    ModelError
        The U-Net weights are missing or do not match their recorded hash.
    """
    name = _model_name(model)
    a = as_float_frame(frame)
    if name is ModelName.UNET:
        return _unet_probability(a)
    return classical_probability(a)


def segment_vessels(
    frame, *, model: str | ModelName = "unet", threshold: float = 0.5
) -> np.ndarray:
    """Boolean vessel mask of one frame.

    Hysteresis on the probability map: pixels >= ``threshold`` seed the mask,
    connected pixels >= ``threshold * f`` are added (f = 0.8 for the U-Net,
    whose map is already sharp, 0.5 for the classical map; both chosen on the
    CIMAT validation images), components under 30 px are dropped.

    Parameters
    ----------
    frame : array_like, shape (H, W)
        One frame as displayed (vessels darker), any real dtype.
    model : {"unet", "classical"} or ModelName
        See :func:`vessel_probability`.
    threshold : float
        Probability in (0, 1) that seeds the mask.

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    name = _model_name(model)
    p = vessel_probability(frame, model=name)
    low = _HYSTERESIS_LOW[name] * float(threshold)
    return hysteresis_mask(p, high=float(threshold), low=low)


def model_sha256() -> str | None:
    """SHA-256 (hex) of the shipped U-Net weights, or None when none are shipped.

    Raises
    ------
    ModelError
        The weights file exists but its recorded hash is missing.
    """
    if not _weights_available():
        return None
    return _recorded_sha256()



def dice_score(pred, truth) -> float:
    """Dice coefficient 2|P∩T| / (|P| + |T|) of two boolean masks (1.0 if both empty).

    Parameters
    ----------
    pred, truth : array_like of bool, shape (H, W)
    """
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def cldice_score(pred, truth) -> float:
    """Centerline Dice (clDice) of two boolean masks.

    Topology precision |S(P)∩T|/|S(P)| and sensitivity |S(T)∩P|/|S(T)| with
    S the morphological skeleton, combined by their harmonic mean.

    Shit S. et al., "clDice - a novel topology-preserving loss function for
    tubular structure segmentation", CVPR 2021:16560-16569.
    https://doi.org/10.1109/CVPR46437.2021.01629

    Parameters
    ----------
    pred, truth : array_like of bool, shape (H, W)

    Returns
    -------
    float in [0, 1] (1.0 if both masks are empty, 0.0 if only one is).
    """
    from skimage.morphology import skeletonize

    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if not p.any() and not t.any():
        return 1.0
    if not p.any() or not t.any():
        return 0.0
    sp, st = skeletonize(p), skeletonize(t)
    tprec = (sp & t).sum() / max(int(sp.sum()), 1)
    tsens = (st & p).sum() / max(int(st.sum()), 1)
    return 0.0 if tprec + tsens == 0 else float(2 * tprec * tsens / (tprec + tsens))
