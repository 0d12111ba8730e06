"""The run and where it comes from: :class:`AngioRun`, :class:`RunMetadata`, :class:`RunSource`, pseudonymous ids."""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..calibration import UNCALIBRATED_MARK, Calibration
from ..enums import CalibrationSource
from ..errors import InputError

#: Default key of the pseudonymous run id; set STENOSIS_ID_KEY to a site secret.
_DEFAULT_ID_KEY = b"stenosis-run-id-v1"


@dataclass(frozen=True)
class RunMetadata:
    """What the measurement needs to know about a run; never a patient identifier.

    Attributes
    ----------
    run_id : str
        16 hex digits: HMAC-SHA256 of Study/Series/SOP Instance UIDs under the key
        ``STENOSIS_ID_KEY`` (environment; a fixed default otherwise). Pseudonymous.
    modality, sop_class_uid, transfer_syntax_uid, transfer_syntax_name : str
    rows, cols, n_frames, bits_stored : int
    photometric : str
        Stored PhotometricInterpretation (frames are already in displayed polarity).
    frame_time_ms : float or None
        Time between frames (FrameTime, mean FrameTimeVector step, or 1000/CineRate).
    primary_angle_deg, secondary_angle_deg : float or None
        PositionerPrimaryAngle (LAO+/RAO-) and PositionerSecondaryAngle (CRA+/CAU-).
    pixel_intensity_relationship : {"LIN", "LOG"} or None
    intensity_relationship_inferred : bool
        ``pixel_intensity_relationship`` was read from the noise of the first frames
        (:func:`stenosis.io.intensity.infer_intensity_relationship`), the file having no
        PixelIntensityRelationship.
    mask_frames : tuple of int
        0-based mask frame indices from MaskSubtractionSequence (DICOM's are 1-based).
    subtracted : bool
        Pixel data is already subtracted (DSA). Rule: ImageType has a value
        containing ``SUBTRACT`` (``SUBTRACTED``, ``SUBTRACTION``; usually with
        ``DERIVED``). ``RecommendedViewingMode == "SUB"`` does *not* count: by
        DICOM PS3.3 C.8.7.1.1 it asks a viewer to subtract the mask from native
        pixel data, i.e. the data are native.
    image_type : tuple of str
    manufacturer : str or None
    window_center, window_width : float or None
        First VOI window of the file, in stored values.
    """

    run_id: str
    modality: str
    sop_class_uid: str
    transfer_syntax_uid: str
    transfer_syntax_name: str
    rows: int
    cols: int
    n_frames: int
    bits_stored: int
    photometric: str
    frame_time_ms: float | None = None
    primary_angle_deg: float | None = None
    secondary_angle_deg: float | None = None
    pixel_intensity_relationship: str | None = None
    intensity_relationship_inferred: bool = False
    mask_frames: tuple[int, ...] = ()
    subtracted: bool = False
    image_type: tuple[str, ...] = ()
    manufacturer: str | None = None
    window_center: float | None = None
    window_width: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists). Holds no patient identifier."""
        d = asdict(self)
        d["mask_frames"] = list(self.mask_frames)
        d["image_type"] = list(self.image_type)
        return d


@dataclass(frozen=True)
class AngioRun:
    """One X-ray angiography run.

    Attributes
    ----------
    frames : ndarray, shape (T, H, W)
        Stored dtype (e.g. uint16), only BitsStored bits, displayed polarity
        (MONOCHROME1 inverted: vessels darker than background). Read-only.
    calibration : Calibration
        mm/px at the isocentre and its source.
    metadata : RunMetadata
    source : str
        Path of the file (or folder of a single-frame series) it was read from.
    warnings : tuple of str
        One line each (calibration, Secondary Capture, ...).
    """

    frames: np.ndarray
    calibration: Calibration
    metadata: RunMetadata
    source: str = ""
    warnings: tuple[str, ...] = ()
    #: the file's own calibration once a reader's replaced it (:meth:`with_calibration`); None before
    file_calibration: Calibration | None = None

    def __repr__(self) -> str:  # not the pixel arrays
        f = self.frames
        return (f"AngioRun(source={Path(str(self.source)).name!r}, frames={tuple(f.shape)} {f.dtype}, "
                f"calibration={self.calibration.source.value}, "
                f"intensity={self.metadata.pixel_intensity_relationship!r}, subtracted={self.metadata.subtracted})")

    def __post_init__(self) -> None:
        if not isinstance(self.frames, np.ndarray) or self.frames.ndim != 3:
            raise InputError("AngioRun frames must be a (T, H, W) array; add a frame axis for a single image")
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.frames.shape)  # type: ignore[return-value]

    def with_calibration(self, calibration: Calibration) -> "AngioRun":
        """A copy with another calibration (frames shared, not copied).

        Warnings about a missing file calibration are dropped once the reader
        gives one; a reader's calibration that replaces the file's own and differs from it
        by more than 1% adds a warning (the reader's is used: it is the later, explicit choice)."""
        if not isinstance(calibration, Calibration):
            raise InputError(f"with_calibration takes a Calibration (e.g. stenosis.calibration.manual_calibration(0.2)), got "
                             f"{type(calibration).__name__}")
        kept = self.warnings
        if calibration.is_calibrated and not self.calibration.is_calibrated:
            kept = tuple(w for w in kept if UNCALIBRATED_MARK not in w)
        # the file's own calibration, whatever the reader gave since (a second reader calibration
        # is compared with the file's, and replaces the first one's warning)
        file_cal = self.file_calibration or (self.calibration if self.calibration.source in _FILE_SOURCES else None)
        if calibration.source in _FILE_SOURCES:  # a calibration of the file's own kind is the file's
            file_cal = None
        kept = tuple(w for w in kept if _REPLACED_MARK not in w)
        replaced = _replaced_file_calibration(file_cal, calibration) if file_cal is not None else ""
        if replaced:
            kept = (*kept, replaced)
        return replace(self, calibration=calibration, warnings=kept, file_calibration=file_cal)

    @classmethod
    def from_array(
        cls,
        frames: np.ndarray,
        *,
        calibration: Calibration | None = None,
        pixel_intensity_relationship: str | None = "LOG",
        subtracted: bool = False,
        mask_frames: Sequence[int] = (),
        frame_time_ms: float | None = None,
        source: str = "<array>",
    ) -> "AngioRun":
        """Wrap an in-memory (T, H, W) or (H, W) array (displayed polarity) as a run.

        The array is copied and made read-only; ``run_id`` hashes its bytes. Frames that are not
        one real numeric array of one shape, hold no pixel, NaN or infinite values, look like one
        picture with its colour channels last, or name mask frames or an intensity relationship
        that do not exist raise :class:`~stenosis.errors.InputError`."""
        arr = _checked_frames(frames)
        if pixel_intensity_relationship is not None and pixel_intensity_relationship not in ("LIN", "LOG"):
            raise InputError(f"pixel_intensity_relationship must be 'LIN', 'LOG' or None, got "
                             f"{pixel_intensity_relationship!r}")
        bad = [int(i) for i in mask_frames if not 0 <= int(i) < arr.shape[0]]
        if bad:
            raise InputError(f"mask_frames {bad} are not frames of this run (0..{arr.shape[0] - 1})")
        arr.flags.writeable = False
        digest = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
        meta = RunMetadata(
            run_id=digest,
            modality="XA",
            sop_class_uid="",
            transfer_syntax_uid="",
            transfer_syntax_name="in memory",
            rows=int(arr.shape[1]),
            cols=int(arr.shape[2]),
            n_frames=int(arr.shape[0]),
            bits_stored=int(arr.dtype.itemsize * 8),
            photometric="MONOCHROME2",
            frame_time_ms=frame_time_ms,
            pixel_intensity_relationship=pixel_intensity_relationship,
            mask_frames=tuple(int(i) for i in mask_frames),
            subtracted=bool(subtracted),
        )
        return cls(arr, calibration or Calibration.none("in-memory array"), meta, source, ())


#: stored values beyond this are not grey levels (the processing squares them: float overflow)
_MAX_ABS_VALUE = 1e12


def _checked_frames(frames) -> np.ndarray:
    """(T, H, W) copy of ``frames`` for :meth:`AngioRun.from_array`, or a one-line InputError."""
    try:
        arr = np.array(frames, copy=True)
    except (ValueError, TypeError):  # ragged: frames of different shapes
        raise InputError("frames must be one array (T, H, W) or (H, W), all frames of one shape") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        what = "a binary mask, not an angiogram" if arr.dtype == bool else f"dtype {arr.dtype}"
        raise InputError(f"frames must be real numbers (integer or float grey levels), got {what}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"frames must be (T, H, W) or (H, W), got shape {arr.shape}")
    if arr.shape[-1] in (1, 3, 4) and arr.shape[0] > 4 and arr.shape[1] > 4:
        raise InputError(f"frames of shape {arr.shape} look like one picture with its channels last; pass (T, H, W) "
                         "or (H, W) grey levels (a picture file: stenosis.read_image)")
    if 0 in arr.shape:
        raise InputError(f"frames hold no pixel (shape {arr.shape}); pass (T, H, W) with T >= 1")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("frames hold NaN or infinite values; replace them (e.g. numpy.nan_to_num) or crop them out")
        if float(np.abs(arr).max()) > _MAX_ABS_VALUE:
            raise InputError(f"frames hold values up to {float(np.abs(arr).max()):.3g}: not grey levels; rescale them "
                             "(e.g. to 0-65535 or 0-1)")
    return arr


@dataclass(frozen=True)
class RunSource:
    """Where one run lives: a single file, or the sorted files of one single-frame series.

    ``path`` is the file, or for a series of several files their common folder
    (what :attr:`AngioRun.source` will say)."""

    paths: tuple[str, ...]
    series_key: str | None = None

    @property
    def path(self) -> str:
        if len(self.paths) == 1:
            return self.paths[0]
        return os.path.commonpath(self.paths)

    @property
    def n_files(self) -> int:
        return len(self.paths)

    def __str__(self) -> str:
        return self.path if len(self.paths) == 1 else f"{self.path} ({len(self.paths)} files)"


@dataclass(frozen=True)
class RunReadError:
    """A run of a folder that could not be read (collected by :func:`read_runs`)."""

    source: RunSource
    message: str


SITE_SECRET_ENV = "STENOSIS_SITE_SECRET"
SITE_SECRET_FILE_ENV = "STENOSIS_SITE_SECRET_FILE"


def site_secret() -> bytes | None:
    """The site secret from ``STENOSIS_SITE_SECRET`` or the file ``STENOSIS_SITE_SECRET_FILE`` names."""
    value = os.environ.get(SITE_SECRET_ENV)
    if value:
        return value.encode("utf-8")
    name = os.environ.get(SITE_SECRET_FILE_ENV)
    if not name:
        return None
    try:
        data = Path(name).read_bytes().strip()
    except OSError as exc:
        raise InputError(f"cannot read the site secret file {name} ({exc.strerror}); fix {SITE_SECRET_FILE_ENV}") from None
    if not data:
        raise InputError(f"the site secret file {name} is empty; put the secret in it or unset {SITE_SECRET_FILE_ENV}")
    return data


def _id_key() -> bytes:
    """Key of every pseudonym (run ids, SR UIDs): the site secret (:func:`site_secret`), else
    ``STENOSIS_ID_KEY``, else a public default that does not protect against linkage
    (``docs/privacy.md``)."""
    secret = site_secret()
    if secret:
        return secret
    key_env = os.environ.get("STENOSIS_ID_KEY")
    return key_env.encode("utf-8") if key_env else _DEFAULT_ID_KEY


def public_key_in_use() -> bool:
    """No site secret and no ``STENOSIS_ID_KEY``: pseudonyms are keyed by the public default,
    which anyone holding a source UID can recompute (``docs/privacy.md``)."""
    return site_secret() is None and not os.environ.get("STENOSIS_ID_KEY")


def run_id_from_uids(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Pseudonymous run id: first 16 hex of HMAC-SHA256(key, study|series|sop).

    The key is ``STENOSIS_ID_KEY`` from the environment (a fixed default
    otherwise: then ids are stable but anyone with the UIDs can recompute them)."""
    key = _id_key()
    msg = "\\".join((str(study_uid), str(series_uid), str(sop_uid))).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]


#: calibrations read from the file's header (a reader's catheter or manual one replaces them)
_FILE_SOURCES = (CalibrationSource.PIXEL_SPACING, CalibrationSource.GEOMETRY, CalibrationSource.MAGNIFICATION)


#: in the warning of :func:`_replaced_file_calibration` (a later reader calibration replaces it)
_REPLACED_MARK = "replaces the file's own"


def _replaced_file_calibration(old: Calibration, new: Calibration) -> str:
    """The warning when a reader's calibration ``new`` replaces the file's ``old`` and differs from
    it ("" if not; different: either axis more than 1% apart)."""
    if not (old.is_calibrated and new.is_calibrated):
        return ""
    ratios = [float(b) / float(a) for a, b in zip(old.mm_per_px, new.mm_per_px)]
    if max(abs(r - 1.0) for r in ratios) <= 0.01:
        return ""
    a, b = float(np.mean(old.mm_per_px)), float(np.mean(new.mm_per_px))
    return (f"the reader's {new.source.value} calibration ({b:.4g} mm/px) {_REPLACED_MARK} ({a:.4g} mm/px, "
            f"{old.source.value}), {100 * (b / a - 1):+.0f}%: mm values use the reader's; check which is right "
            "(measure without the reader's calibration to use the file's)")
