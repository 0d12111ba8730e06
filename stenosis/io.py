"""Reading X-ray angiography (XA/XRF) runs from DICOM.

A *run* is one acquisition: a multi-frame XA/XRF file, or the single-frame
files of one series. :func:`read_run` turns it into an :class:`AngioRun`:
frames (T, H, W) in the stored dtype and displayed polarity, the isocentre
:class:`~stenosis.calibration.Calibration`, the metadata the measurement needs
(:class:`RunMetadata`, no patient identifiers) and warnings.

Decoding goes through pydicom 3 (with GDCM, pylibjpeg-rle and Pillow plugins)
frame by frame into one preallocated array; uncompressed pixel data is read
straight from the file into that array, so a run needs about its decoded size
in memory. GDCM itself is the fallback for encodings pydicom refuses (12-bit
lossy JPEG, "JPEG Extended"). Pixel processing follows DICOM PS3.3 C.7.6.3:
only BitsStored bits are kept (sign-extended for PixelRepresentation 1) and
MONOCHROME1 is inverted so that vessels are darker than the background.

Folders: :func:`find_runs` walks a folder, recognises DICOM by the 128-byte
preamble followed by ``DICM`` (not by extension) and returns one
:class:`RunSource` per run. :func:`read_run` reads one :class:`RunSource`
(raising :class:`~stenosis.errors.InputError` for that run only), so a batch
reads a folder as::

    for src in find_runs(folder):
        try:
            run = read_run(src)
        except InputError as exc:
            report(src.path, exc)

:func:`read_runs` does this loop and collects the errors in an optional list.
"""
from __future__ import annotations

import hashlib
import hmac
import math
import os
import warnings as _warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .calibration import NO_MM_WARNING, Calibration, calibration_from_dataset, find_attribute, positioner_angles
from .enums import CalibrationSource
from .errors import InputError

__all__ = [
    "AngioRun",
    "RunMetadata",
    "RunSource",
    "RunReadError",
    "read_run",
    "read_runs",
    "find_runs",
    "is_dicom_file",
    "run_id_from_uids",
    "MAX_DECODED_BYTES",
]

#: Refuse runs whose declared decoded size exceeds this (before allocating anything).
MAX_DECODED_BYTES = 4 * 1024**3
#: Default key of the pseudonymous run id; set STENOSIS_ID_KEY to a site secret.
_DEFAULT_ID_KEY = b"stenosis-run-id-v1"

_ACCEPTED_MODALITIES = {"XA", "RF"}
_XA_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",  # X-Ray Angiographic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.1.1": "XA",  # Enhanced XA Image Storage
    "1.2.840.10008.5.1.4.1.1.12.2": "RF",  # X-Ray Radiofluoroscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.2.1": "RF",  # Enhanced XRF Image Storage
    "1.2.840.10008.5.1.4.1.1.12.3": "XA",  # X-Ray Angiographic Bi-Plane (retired)
}
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture family (incl. multi-frame SC)
_NATIVE_TS = {
    "1.2.840.10008.1.2": (True, "<"),  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1": (False, "<"),  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2": (False, ">"),  # Explicit VR Big Endian (retired)
}
_DEFLATED_TS = "1.2.840.10008.1.2.1.99"
_JPEG_EXTENDED_TS = "1.2.840.10008.1.2.4.51"


# --------------------------------------------------------------------------- data types
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
        One line each (calibration, Secondary Capture, steep angle, ...).
    """

    frames: np.ndarray
    calibration: Calibration
    metadata: RunMetadata
    source: str = ""
    warnings: tuple[str, ...] = ()

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
        gives one."""
        kept = self.warnings
        if calibration.is_calibrated and not self.calibration.is_calibrated:
            kept = tuple(w for w in kept if "mm values are not reported" not in w and "ImagerPixelSpacing without" not in w)
        return replace(self, calibration=calibration, warnings=kept)

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

        The array is copied and made read-only; ``run_id`` hashes its bytes."""
        arr = np.array(frames, copy=True)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise InputError(f"frames must be (T, H, W) or (H, W), got shape {arr.shape}")
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


# --------------------------------------------------------------------------- helpers
def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file has the DICOM Part 10 preamble: 128 bytes then ``DICM``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _id_key() -> bytes:
    """Key of the pseudonymous ids: ``STENOSIS_ID_KEY`` from the environment, else a fixed default."""
    key_env = os.environ.get("STENOSIS_ID_KEY")
    return key_env.encode("utf-8") if key_env else _DEFAULT_ID_KEY


def run_id_from_uids(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Pseudonymous run id: first 16 hex of HMAC-SHA256(key, study|series|sop).

    The key is ``STENOSIS_ID_KEY`` from the environment (a fixed default
    otherwise: then ids are stable but anyone with the UIDs can recompute them)."""
    key = _id_key()
    msg = "\\".join((str(study_uid), str(series_uid), str(sop_uid))).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]


def _first_float(value: Any) -> float | None:
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
            value = list(value)
            if not value:
                return None
            value = value[0]
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int_tag(ds: Any, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword, None)
        if value is None or value == "":
            return default
        return int(value)
    except (TypeError, ValueError):
        return default


def _str_tag(ds: Any, keyword: str) -> str | None:
    try:
        value = ds.get(keyword, None)
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _frame_time_ms(ds: Any) -> float | None:
    ft = _first_float(find_attribute(ds, "FrameTime"))
    if ft is not None and ft > 0:
        return ft
    vec = find_attribute(ds, "FrameTimeVector")
    if vec is not None:
        try:
            steps = [float(v) for v in list(vec)[1:]]
        except (TypeError, ValueError):
            steps = []
        steps = [s for s in steps if math.isfinite(s) and s > 0]
        if steps:
            return float(np.mean(steps))
    for kw in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _first_float(find_attribute(ds, kw))
        if rate is not None and rate > 0:
            return 1000.0 / rate
    return None


def _mask_frames(ds: Any, n_frames: int) -> tuple[int, ...]:
    seq = ds.get("MaskSubtractionSequence", None)
    if not seq:
        return ()
    frames: list[int] = []
    for item in seq:
        numbers = item.get("MaskFrameNumbers", None)
        if numbers is None or numbers == "":
            continue
        if not hasattr(numbers, "__iter__") or isinstance(numbers, (str, bytes)):
            numbers = [numbers]
        for n in numbers:
            try:
                idx = int(n) - 1  # DICOM frame numbers are 1-based
            except (TypeError, ValueError):
                continue
            if 0 <= idx < n_frames and idx not in frames:
                frames.append(idx)
        if frames:
            break  # the first item that names mask frames defines the mask
    return tuple(frames)


def _is_subtracted(image_type: tuple[str, ...]) -> bool:
    return any("SUBTRACT" in v for v in image_type)


def _image_type(ds: Any) -> tuple[str, ...]:
    it = find_attribute(ds, "ImageType") or find_attribute(ds, "FrameType")
    if it is None:
        return ()
    if isinstance(it, (str, bytes)) or not hasattr(it, "__iter__"):
        # one value, or a wrong VR (IS, DS, ...) whose value is a scalar
        it = (it.decode("ascii", "replace") if isinstance(it, bytes) else str(it)).split("\\")
    return tuple(str(v).strip().upper() for v in it)


def _pir(ds: Any) -> str | None:
    value = find_attribute(ds, "PixelIntensityRelationship")
    if value is None:
        return None
    value = str(value).strip().upper()
    return value if value in ("LIN", "LOG") else None


# --------------------------------------------------------------------------- header checks
def _open_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot be opened ({exc.strerror}); check the path and permissions") from None
    if size == 0:
        raise InputError(f"{path}: empty file; pass a DICOM XA file")
    if not is_dicom_file(path):
        raise InputError(f"{path}: not a DICOM file (no 'DICM' marker after the 128-byte preamble); pass a DICOM XA file")
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), defer_size=4096)
            # touch every top-level element so a truncated header fails here, not later
            # (not the pixel data: ds[tag] would load a deferred value)
            for tag in list(ds.keys()):
                if tag != 0x7FE00010:
                    _ = ds[tag].value
    except InvalidDicomError as exc:
        raise InputError(f"{path}: not a valid DICOM file ({exc}); pass a DICOM XA file") from None
    except MemoryError:
        raise InputError(f"{path}: DICOM header declares absurd element sizes; the file is corrupt, re-export it") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure (zlib.error, BytesLengthException, ...) is a bad file
        raise InputError(f"{path}: DICOM header is truncated or corrupt ({type(exc).__name__}); re-export the file") from None
    return ds, size


def _check_modality(path: Path, ds: Any) -> list[str]:
    warns: list[str] = []
    modality = (_str_tag(ds, "Modality") or "").upper()
    sop = str(ds.get("SOPClassUID", "") or "")
    if modality in _ACCEPTED_MODALITIES:
        if sop.startswith(_SC_PREFIX):
            warns.append(
                f"Secondary Capture with modality {modality}: read as an X-ray angiogram; "
                "geometry and timing tags are usually missing"
            )
        elif sop and sop not in _XA_SOP_CLASSES:
            warns.append(f"modality {modality} with an unexpected SOP class {sop}; read as an X-ray angiogram")
        return warns
    if not modality and sop in _XA_SOP_CLASSES:
        warns.append("Modality tag missing; taken from the SOP class")
        return warns
    if not modality and not sop and "Rows" not in ds and "PixelData" not in ds:
        # pydicom returns a (nearly) empty dataset for a file cut inside its header or pixel data
        raise InputError(f"{path}: DICOM header is truncated or corrupt; re-export the file")
    shown = modality or "missing"
    raise InputError(
        f"{path}: modality {shown} is not X-ray angiography (XA/RF); pass an XA or XRF (DSA) run"
    )


def _check_pixels(path: Path, ds: Any, file_size: int) -> dict[str, Any]:
    """Validate the image pixel module; return decoding parameters. Never allocates pixels."""
    from pydicom.tag import Tag

    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise InputError(f"{path}: float pixel data is not supported; export the run as integer XA")
        raise InputError(f"{path}: no pixel data (a header-only or report object); pass an image file of the run")
    spp = _int_tag(ds, "SamplesPerPixel", 1)
    if spp != 1:
        raise InputError(
            f"{path}: {spp} samples per pixel (colour image); pass a greyscale XA run, not a screenshot"
        )
    rows = _int_tag(ds, "Rows")
    cols = _int_tag(ds, "Columns")
    n_frames = _int_tag(ds, "NumberOfFrames", 1) or 1
    bits_alloc = _int_tag(ds, "BitsAllocated")
    bits_stored = _int_tag(ds, "BitsStored", bits_alloc)
    pixel_rep = _int_tag(ds, "PixelRepresentation", 0)
    if not rows or not cols or rows < 1 or cols < 1 or n_frames < 1:
        raise InputError(f"{path}: Rows/Columns/NumberOfFrames missing or zero; the header is broken, re-export the file")
    if bits_alloc not in (8, 16, 32):
        raise InputError(f"{path}: BitsAllocated {bits_alloc} is not supported (need 8, 16 or 32); re-export the run")
    if bits_stored is None or not 1 <= bits_stored <= bits_alloc:
        raise InputError(f"{path}: BitsStored {bits_stored} is inconsistent with BitsAllocated {bits_alloc}; re-export the file")
    photometric = (_str_tag(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(f"{path}: photometric interpretation {photometric} is not greyscale; pass a greyscale XA run")

    itemsize = bits_alloc // 8
    declared = rows * cols * n_frames * itemsize
    if declared > MAX_DECODED_BYTES:
        raise InputError(
            f"{path}: header declares {rows}x{cols}x{n_frames} pixels ({declared / 1e9:.1f} GB), "
            f"more than the {MAX_DECODED_BYTES / 1e9:.1f} GB limit; split the run or check the header"
        )

    ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        raise InputError(f"{path}: no transfer syntax in the file meta header; re-export the file as DICOM Part 10")
    raw = ds._dict.get(Tag(0x7FE00010))
    info = dict(rows=rows, cols=cols, n_frames=n_frames, bits_alloc=bits_alloc, bits_stored=bits_stored,
                pixel_rep=pixel_rep, photometric=photometric, ts=ts, declared=declared, offset=None)
    if ts in _NATIVE_TS:
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if value is not None:
            length = len(value) if not hasattr(value, "nbytes") else value.nbytes
        if length is None or length == 0xFFFFFFFF:
            raise InputError(f"{path}: uncompressed pixel data of undefined length; re-export the file")
        if length < declared:
            raise InputError(
                f"{path}: pixel data holds {length} bytes but the header declares {declared} "
                f"({rows}x{cols}x{n_frames}x{itemsize}); the file is truncated, re-export it"
            )
        tell = getattr(raw, "value_tell", None)
        if value is None:
            if tell is None:
                raise InputError(f"{path}: cannot locate the pixel data; re-export the file")
            if tell + declared > file_size:
                raise InputError(
                    f"{path}: file ends {tell + declared - file_size} bytes before the end of the pixel data; "
                    "the file is truncated, re-export it"
                )
            info["offset"] = int(tell)
    elif ts == _DEFLATED_TS:
        pass
    else:
        from pydicom.uid import UID

        uid = UID(ts)
        if not uid.is_transfer_syntax:
            raise InputError(f"{path}: unknown transfer syntax {ts}; re-export the run uncompressed or as JPEG/RLE")
        if not _can_decode(ts):
            raise InputError(
                f"{path}: transfer syntax {uid.name} ({ts}) cannot be decoded here (video/unsupported codec); "
                "re-export the run uncompressed, RLE, JPEG or JPEG 2000"
            )
        _check_encapsulated(path, ds, info)
    return info


_JPEG_TS = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
}
_J2K_TS = {
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
}
_RLE_TS = "1.2.840.10008.1.2.5"
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}


def _check_encapsulated(path: Path, ds: Any, info: dict[str, Any]) -> None:
    """Refuse broken encapsulated pixel data before allocating or decoding.

    Counts the fragments (fewer than frames: truncated) and checks the header
    of each frame's codestream (JPEG / JPEG-LS marker segments, JPEG 2000 SIZ,
    RLE segment table) against Rows, Columns and one sample per pixel. Native
    codecs abort the whole process on some malformed headers, so these must
    never reach them."""
    try:
        buf = ds.PixelData
    except Exception as exc:  # noqa: BLE001 - a deferred read of a truncated file
        raise InputError(f"{path}: pixel data cannot be read ({type(exc).__name__}); the file is truncated, re-export it") from None
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        return
    buf = memoryview(buf)  # slices below must not copy the frames
    frags = _fragments(path, buf)
    n_frames = info["n_frames"]
    if len(frags) < n_frames:
        raise InputError(
            f"{path}: pixel data holds {len(frags)} fragment(s) but the header declares {n_frames} frames; "
            "the file is truncated, re-export it"
        )
    check = frags if len(frags) == n_frames else frags[:1]
    for k, (off, length) in enumerate(check):
        why = _codestream_problem(info["ts"], buf[off:off + length], info)
        if why:
            raise InputError(f"{path}: frame {k} is not a valid {why}; the file is corrupt, re-export it")


def _fragments(path: Path, buf: memoryview) -> list[tuple[int, int]]:
    import struct

    pos, n, items = 0, len(buf), []
    while pos + 8 <= n:
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = (group << 16) | elem
        if tag == 0xFFFEE0DD:
            break
        if tag != 0xFFFEE000:
            raise InputError(f"{path}: encapsulated pixel data has a bad item tag {tag:08X}; the file is corrupt, re-export it")
        pos += 8
        if length == 0xFFFFFFFF or pos + length > n:
            raise InputError(f"{path}: a pixel data fragment runs past the end of the data; the file is truncated, re-export it")
        items.append((pos, length))
        pos += length
    if not items:
        raise InputError(f"{path}: encapsulated pixel data has no items; the file is corrupt, re-export it")
    return items[1:]  # the first item is the basic offset table


def _codestream_problem(ts: str, data: memoryview, info: dict[str, Any]) -> str | None:
    """None when the codestream header is plausible, else what it should have been."""
    import struct

    rows, cols = info["rows"], info["cols"]
    if ts in _JPEG_TS:
        what = "JPEG codestream"
        if len(data) < 4 or data[:2] != b"\xff\xd8":
            return what + " (no SOI marker)"
        pos, seen_sof = 2, False
        while True:
            while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
                pos += 1  # fill bytes
            if pos + 4 > len(data) or data[pos] != 0xFF:
                return what + " (bad marker segment)"
            marker = data[pos + 1]
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:
                pos += 2
                continue
            if marker == 0xD9:
                return what + " (ends before the scan)"
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if length < 2 or pos + 2 + length > len(data):
                return what + " (marker segment length out of range)"
            if marker in _JPEG_SOF:
                if length < 8 or pos + 10 > len(data):
                    return what + " (short frame header)"
                precision, y, x, nf = struct.unpack_from(">BHHB", data, pos + 4)
                if nf != 1 or length != 8 + 3 * nf:
                    return what + f" for one grey sample ({nf} components)"
                if not 2 <= precision <= 16 or x != cols or y not in (0, rows):
                    return what + f" of {rows}x{cols} (frame header says {y}x{x}, {precision} bits)"
                # GDCM aborts the process when the sample size disagrees with BitsAllocated
                bits_alloc = info["bits_alloc"]
                if bits_alloc > 16 or precision > bits_alloc:
                    return what + f" for BitsAllocated {bits_alloc} (frame header says {precision} bits; JPEG holds 2-16)"
                info["jpeg_precision"] = max(info.get("jpeg_precision", 0), precision)
                seen_sof = True
            if marker == 0xDA:
                return None if seen_sof else what + " (scan before frame header)"
            pos += 2 + length
    if ts in _J2K_TS:
        what = "JPEG 2000 codestream"
        if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
            return None  # JP2 file format: left to the decoder
        if len(data) < 6 or data[:4] != b"\xff\x4f\xff\x51":
            return what + " (no SOC/SIZ marker)"
        (lsiz,) = struct.unpack_from(">H", data, 4)
        if lsiz < 41 or 4 + lsiz > len(data):
            return what + " (SIZ length out of range)"
        _, xs, ys, xo, yo, xt, yt, xto, yto, csiz = struct.unpack_from(">HIIIIIIIIH", data, 6)
        if csiz != 1 or lsiz != 38 + 3 * csiz:
            return what + f" for one grey sample ({csiz} components)"
        if xs - xo != cols or ys - yo != rows or xt == 0 or yt == 0:
            return what + f" of {rows}x{cols} (SIZ says {ys - yo}x{xs - xo})"
        pos, seen = 4 + lsiz, set()
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return what + " (bad main-header marker)"
            marker = data[pos + 1]
            if marker in (0x90, 0x93):  # SOT / SOD: main header complete
                return None if {0x52, 0x5C} <= seen else what + " (no COD/QCD)"
            (length,) = struct.unpack_from(">H", data, pos + 2)
            if length < 2 or pos + 2 + length > len(data):
                return what + " (marker segment length out of range)"
            seen.add(marker)
            pos += 2 + length
        return what + " (no tile)"
    if ts == _RLE_TS:
        what = "RLE frame"
        if len(data) < 64:
            return what + " (short header)"
        header = struct.unpack_from("<16I", data, 0)
        n_seg = header[0]
        want = info["bits_alloc"] // 8
        if n_seg != want:
            return what + f" with {want} segment(s) (header says {n_seg})"
        offsets = header[1:1 + n_seg]
        if offsets[0] != 64 or any(b <= a for a, b in zip(offsets, offsets[1:])) or offsets[-1] >= len(data):
            return what + " (segment offsets out of range)"
        # a PackBits byte pair encodes at most 128 pixels: fewer bytes cannot hold a frame
        if (len(data) - 64) * 64 < rows * cols * n_seg:
            return what + f" of {rows}x{cols} (only {len(data)} bytes)"
        return None
    return None


def _can_decode(ts: str) -> bool:
    if ts == _JPEG_EXTENDED_TS:
        return _gdcm_available()
    try:
        from pydicom.pixels import get_decoder

        decoder = get_decoder(ts)
    except Exception:
        return False
    return decoder.is_available or _gdcm_available()


def _gdcm_available() -> bool:
    try:
        import gdcm  # noqa: F401
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- decoding
def _dtype(bits_alloc: int, pixel_rep: int, order: str = "<") -> np.dtype:
    kind = "i" if pixel_rep == 1 else "u"
    return np.dtype(f"{order}{kind}{bits_alloc // 8}")


def _fix_values(arr: np.ndarray, bits_stored: int, signed: bool, photometric: str) -> None:
    """In place: keep BitsStored bits (sign-extend if signed) and invert MONOCHROME1."""
    nbits = arr.dtype.itemsize * 8
    if bits_stored < nbits:
        if signed:
            shift = nbits - bits_stored
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)  # arithmetic shift on a signed dtype
        else:
            np.bitwise_and(arr, np.array((1 << bits_stored) - 1, dtype=arr.dtype), out=arr)
    if photometric == "MONOCHROME1":
        if signed:
            np.invert(arr, out=arr)  # -1 - v maps the signed range onto itself
        else:
            np.bitwise_xor(arr, np.array((1 << bits_stored) - 1, dtype=arr.dtype), out=arr)


def _read_native(path: Path, ds: Any, info: dict[str, Any]) -> np.ndarray:
    order = _NATIVE_TS[info["ts"]][1]
    shape = (info["n_frames"], info["rows"], info["cols"])
    dtype = _dtype(info["bits_alloc"], info["pixel_rep"])
    out = np.empty(shape, dtype=dtype)
    if info["offset"] is not None:
        with open(path, "rb") as fh:
            fh.seek(info["offset"])
            view = memoryview(out.reshape(-1).view(np.uint8))
            n = fh.readinto(view)
        if n != info["declared"]:
            raise InputError(f"{path}: pixel data ends early ({n} of {info['declared']} bytes); the file is truncated, re-export it")
    else:
        buf = ds.PixelData
        out.reshape(-1)[:] = np.frombuffer(buf, dtype=dtype.newbyteorder(order), count=out.size)
        return out
    if order == ">" and dtype.itemsize > 1:
        out.byteswap(inplace=True)
    return out


def _read_encapsulated(path: Path, ds: Any, info: dict[str, Any]) -> np.ndarray:
    """Decode compressed (or deflated) pixel data frame by frame into one array.

    Each encoding goes to the decoders that are authoritative for it, in order
    (:func:`_decode_plan`); GDCM only sees JPEG (12-bit lossy "JPEG Extended"
    and lossless JPEG, which no other installed decoder reads). Native codecs
    that can abort the process or spin on corrupt data (GDCM, CharLS, OpenJPEG,
    Pillow) run in a forked child with a CPU-time budget (:func:`_decode_in_child`),
    so a crash or a stall becomes an :class:`InputError`."""
    shape = (info["n_frames"], info["rows"], info["cols"])
    dtype = _dtype(info["bits_alloc"], info["pixel_rep"])
    first: BaseException | None = None
    for where, plugin in _decode_plan(info):
        if plugin == "gdcm":
            fill = lambda out: _fill_gdcm(path, out)  # noqa: E731
        else:
            fill = lambda out, plugin=plugin: _fill_pydicom(ds, out, plugin)  # noqa: E731
        try:
            if where == "child":
                _warm_plugin(info["ts"], plugin)
                return _decode_in_child(path, fill, shape, dtype, _cpu_budget_s(info, plugin))
            out = np.empty(shape, dtype=dtype)
            fill(out)
            return out
        except _DecoderStalled as exc:
            raise InputError(str(exc)) from None
        except (MemoryError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - incl. Rust panics (pyo3 PanicException); try the next decoder
            if first is None:
                first = exc
    if first is None:
        from pydicom.uid import UID

        raise InputError(f"{path}: no decoder for {UID(info['ts']).name} is installed here; re-export the run uncompressed")
    if isinstance(first, InputError) and not isinstance(first, _DecoderFailed):
        raise InputError(str(first)) from None
    why = str(first) if isinstance(first, _DecoderFailed) else f"{type(first).__name__}: {(str(first).splitlines() or [''])[0]}"
    raise InputError(
        f"{path}: pixel data cannot be decoded ({why[:160]}); the file may be truncated or corrupt, re-export it"
    ) from None


class _DecoderStalled(Exception):
    """A decoder in a child process ran past its CPU budget (message is the one-line refusal)."""


class _DecoderFailed(InputError):
    """A decoder in a child process failed or died; the next decoder may be tried."""


#: JPEG family transfer syntaxes decoded by GDCM (no other installed decoder reads lossless / 12-bit JPEG).
_GDCM_JPEG_TS = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG_LS_TS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}


def _decode_plan(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, plugin) decoders to try for one encoding: ``where`` is "here" or "child";
    plugin a pydicom decoding plugin name ("" = pydicom's choice) or "gdcm" (GDCM on the file)."""
    ts = info["ts"]
    try:
        from pydicom.pixels import get_decoder

        available = set(get_decoder(ts).available_plugins)
    except Exception:  # noqa: BLE001 - no pydicom decoder for this syntax
        available = set()
    if ts == _RLE_TS:  # Rust (panics are caught) then pure Python: never GDCM
        plan = [("here", "pylibjpeg"), ("here", "pydicom")]
    elif ts in _J2K_TS:
        plan = [("child", "pylibjpeg"), ("child", "pillow")]
    elif ts in _JPEG_LS_TS:  # CharLS can spin for many seconds on a corrupt scan
        plan = [("child", "pyjpegls")]
    elif ts in _GDCM_JPEG_TS:
        plan = [("child", "pillow")] if info.get("jpeg_precision", 8) == 8 and ts in _JPEG_TS_LOSSY else []
        if _gdcm_available():
            plan.append(("child", "gdcm"))
        return plan
    elif ts == _DEFLATED_TS:
        return [("here", "")]
    else:
        plan = [("child", p) for p in sorted(available - {"gdcm"})]
    return [(w, p) for w, p in plan if p in available]


_JPEG_TS_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}


def _cpu_budget_s(info: dict[str, Any], plugin: str) -> float:
    """CPU seconds a child decoder may spend on one run: a fixed start plus the
    declared decoded size at a rate about 10x below the throughput measured for
    valid data (1024x1024 16-bit, one core: CharLS 44 MB/s, GDCM lossless JPEG
    20 MB/s, OpenJPEG 9 MB/s)."""
    rate = _CHILD_MIN_RATE.get(plugin, _CHILD_MIN_RATE[""])
    return _CHILD_BASE_CPU_S + info["declared"] / rate


#: CPU seconds any child decode may take, plus decoded bytes per CPU second it must reach.
_CHILD_BASE_CPU_S = 0.2
_CHILD_MIN_RATE = {"": 2e6, "pylibjpeg": 1e6, "pillow": 1e6}


def _warm_plugin(ts: str, plugin: str) -> None:
    """Import a decoder's modules here, so that each forked child does not import them again."""
    modules = {"pyjpegls": ("jpeg_ls",), "pylibjpeg": ("pylibjpeg", "openjpeg"), "pillow": ("PIL.Image",),
               "gdcm": ("gdcm",)}.get(plugin, ())
    for name in modules:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - the child reports a missing decoder
            pass


def _fill_pydicom(ds: Any, out: np.ndarray, plugin: str = "") -> None:
    """Decode ``ds`` frame by frame into ``out`` (T, H, W) with one pydicom plugin."""
    from pydicom.pixels import get_decoder

    decoder = get_decoder(str(ds.file_meta.TransferSyntaxUID))
    n = out.shape[0]
    i = -1
    # Frame by frame into the preallocated output: peak memory is the output
    # plus the encoded data plus one frame.
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        for i, (frame, _) in enumerate(decoder.iter_array(ds, raw=True, decoding_plugin=plugin)):
            if i >= n:
                break
            frame = np.asarray(frame)
            if frame.shape != out.shape[1:]:
                frame = frame.reshape(out.shape[1:])
            out[i] = frame
    if i + 1 < n:
        raise InputError(f"pixel data holds {i + 1} frames but the header declares {n}; the file is truncated, re-export it")


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _decode_in_child(path: Path, fill, shape: tuple[int, int, int], dtype: np.dtype, cpu_budget_s: float) -> np.ndarray:
    """Run ``fill(out)`` in a forked child that writes into shared memory.

    The child is killed once it has used ``cpu_budget_s`` of CPU (CPU, not wall
    time, so a busy machine does not refuse valid files; a wall-time cap 30 s +
    20x the budget catches a child that blocks). A child that dies (SIGABRT
    from a C++ exception escaping a codec) or overruns is an error for this
    file only. Without ``os.fork`` (Windows) the decode runs in this process.
    Overhead: one fork (a few ms; the address space is shared copy-on-write)."""
    import mmap
    import select
    import signal
    import time

    dtype = np.dtype(dtype)
    if not hasattr(os, "fork"):
        out = np.empty(shape, dtype=dtype)
        fill(out)
        return out
    nbytes = int(np.prod(shape)) * dtype.itemsize
    shm = mmap.mmap(-1, max(nbytes, 1))  # MAP_SHARED | MAP_ANONYMOUS: the child's writes are ours
    out = np.frombuffer(shm, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: decode, report one line, never return into the caller
        code = 1
        try:
            os.close(r)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # codecs print refusals on C stderr
            import faulthandler

            faulthandler.disable()  # an abort here is reported by the parent, not dumped on the caller's stderr
            try:
                fill(out)
                msg, code = b"ok", 0
            except InputError as exc:
                msg = b"I" + str(exc).encode("utf-8", "replace")
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                text = (str(exc).splitlines() or [""])[0][:200]
                msg = b"E" + f"{type(exc).__name__}: {text}".encode("utf-8", "replace")
            os.write(w, msg[:4000])
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    t0 = time.monotonic()
    wall_cap = 30.0 + 20.0 * cpu_budget_s
    wait = 0.001
    status = None
    try:
        while True:
            ready, _, _ = select.select([r], [], [], wait)
            if ready:
                data = os.read(r, 65536)
                if data:
                    chunks.append(data)
                    continue
                break  # EOF: the child has exited (or closed the pipe on its way out)
            wait = min(wait * 2, 0.02)
            cpu = _proc_cpu_s(pid)
            elapsed = time.monotonic() - t0
            if (cpu if cpu is not None else elapsed / 4) > cpu_budget_s or elapsed > wall_cap:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "killed"
                raise _DecoderStalled(
                    f"{path}: decoding stopped after {elapsed:.1f} s (budget {cpu_budget_s:.1f} s of CPU for "
                    f"{nbytes / 1e6:.2g} MB decoded); the compressed data is corrupt, re-export the file"
                )
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(r)
        if status is None:  # interrupted (KeyboardInterrupt): do not leave the child behind
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
    msg = b"".join(chunks)
    if os.WIFSIGNALED(status):
        try:
            name = signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            name = f"signal {os.WTERMSIG(status)}"
        raise _DecoderFailed(f"the decoder crashed ({name})")
    if msg == b"ok" and os.WEXITSTATUS(status) == 0:
        return out
    text = msg[1:].decode("utf-8", "replace") if msg else "no answer"
    if msg[:1] == b"I":
        raise InputError(text)
    raise _DecoderFailed(text)


def _fill_gdcm(path: Path, out: np.ndarray) -> None:
    """Decode the file with GDCM into ``out`` (run it through :func:`_decode_in_child`)."""
    import gdcm

    gdcm.Trace.WarningOff()
    gdcm.Trace.ErrorOff()
    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    if not reader.Read():
        raise InputError(f"{path}: GDCM cannot read the file; it may be truncated or corrupt, re-export it")
    image = reader.GetImage()
    pf = image.GetPixelFormat()
    if pf.GetSamplesPerPixel() != 1:
        raise InputError(f"{path}: colour pixel data; pass a greyscale XA run")
    gdcm_dtype = {
        gdcm.PixelFormat.UINT8: np.uint8,
        gdcm.PixelFormat.INT8: np.int8,
        gdcm.PixelFormat.UINT16: np.uint16,
        gdcm.PixelFormat.INT16: np.int16,
        gdcm.PixelFormat.UINT32: np.uint32,
        gdcm.PixelFormat.INT32: np.int32,
    }.get(pf.GetScalarType())
    if gdcm_dtype is None:
        raise InputError(f"{path}: GDCM pixel type {pf.GetScalarTypeAsString()} is not supported; re-export the run")
    expected = out.size * np.dtype(gdcm_dtype).itemsize
    if image.GetBufferLength() != expected:
        raise InputError(
            f"{path}: decoded pixel data has {image.GetBufferLength()} bytes, header declares {expected}; "
            "the file is truncated or corrupt, re-export it"
        )
    buf = image.GetBuffer().encode("utf-8", "surrogateescape")
    del image, reader
    out.reshape(-1)[:] = np.frombuffer(buf, dtype=gdcm_dtype)


# --------------------------------------------------------------------------- reading
def _safe(warns: list[str], what: str, fn, default):
    """``fn()``, or ``default`` with a warning when a malformed attribute makes pydicom raise.

    pydicom converts element values lazily, so a corrupt value inside a sequence
    (wrong VR, odd length) raises only when it is first read, long after the
    header checks."""
    try:
        return fn()
    except (MemoryError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure of one attribute
        warns.append(f"{what} is unreadable ({type(exc).__name__}); ignored")
        return default


def _metadata(ds: Any, info: dict[str, Any], n_frames: int, ts: str, frame_time_ms: float | None = None,
              warns: list[str] | None = None) -> RunMetadata:
    from pydicom.uid import UID

    warns = [] if warns is None else warns
    image_type = _safe(warns, "ImageType", lambda: _image_type(ds), ())
    primary, secondary = _safe(warns, "PositionerPrimaryAngle/SecondaryAngle", lambda: positioner_angles(ds),
                               (None, None))
    if frame_time_ms is None:
        frame_time_ms = _safe(warns, "FrameTime", lambda: _frame_time_ms(ds), None)
    sop_class = _str_tag(ds, "SOPClassUID") or ""
    modality = (_str_tag(ds, "Modality") or _XA_SOP_CLASSES.get(sop_class, "")).upper()
    try:
        ts_name = UID(ts).name if ts else ""
    except Exception:  # noqa: BLE001
        ts_name = ts
    return RunMetadata(
        run_id=run_id_from_uids(
            _str_tag(ds, "StudyInstanceUID") or "", _str_tag(ds, "SeriesInstanceUID") or "",
            _str_tag(ds, "SOPInstanceUID") or "",
        ),
        modality=modality,
        sop_class_uid=sop_class,
        transfer_syntax_uid=ts,
        transfer_syntax_name=ts_name,
        rows=int(info["rows"]),
        cols=int(info["cols"]),
        n_frames=int(n_frames),
        bits_stored=int(info["bits_stored"]),
        photometric=info["photometric"],
        frame_time_ms=frame_time_ms,
        primary_angle_deg=primary,
        secondary_angle_deg=secondary,
        pixel_intensity_relationship=_safe(warns, "PixelIntensityRelationship", lambda: _pir(ds), None),
        mask_frames=_safe(warns, "MaskSubtractionSequence (mask frames)", lambda: _mask_frames(ds, n_frames), ()),
        subtracted=_is_subtracted(image_type),
        image_type=image_type,
        manufacturer=_str_tag(ds, "Manufacturer"),
        window_center=_safe(warns, "WindowCenter", lambda: _first_float(find_attribute(ds, "WindowCenter")), None),
        window_width=_safe(warns, "WindowWidth", lambda: _first_float(find_attribute(ds, "WindowWidth")), None),
    )


def _read_file(path: Path) -> tuple[np.ndarray, Any, dict[str, Any], list[str]]:
    """Decode one DICOM file: (frames, header dataset, pixel info, warnings)."""
    ds, size = _open_header(path)
    try:
        warns = _check_modality(path, ds)
        info = _check_pixels(path, ds, size)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a header value pydicom cannot convert
        raise InputError(
            f"{path}: image header is corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}); "
            "re-export the file"
        ) from None
    try:
        if info["ts"] in _NATIVE_TS:
            frames = _read_native(path, ds, info)
        else:
            frames = _read_encapsulated(path, ds, info)
    except MemoryError:
        raise InputError(
            f"{path}: not enough memory to decode {info['declared'] / 1e6:.0f} MB of pixels; "
            "use a machine with more memory or split the run"
        ) from None
    _fix_values(frames, info["bits_stored"], info["pixel_rep"] == 1, info["photometric"])
    # the raw pixel bytes must not outlive the read; keep only the header
    if "PixelData" in ds:
        del ds["PixelData"]
    return frames, ds, info, warns


def _finish(frames: np.ndarray, ds: Any, info: dict[str, Any], warns: list[str], source: str,
            frame_time_ms: float | None = None) -> AngioRun:
    warns = list(warns)
    cal, cal_warns = _safe(
        warns, "calibration (PixelSpacing, ImagerPixelSpacing, distances)", lambda: calibration_from_dataset(ds),
        (Calibration.none("calibration tags unreadable"), [NO_MM_WARNING]),
    )
    warns += list(cal_warns)
    meta = _metadata(ds, info, frames.shape[0], info["ts"], frame_time_ms, warns)
    if meta.pixel_intensity_relationship is None and not meta.subtracted:
        warns.append("PixelIntensityRelationship missing: pixel values taken as log-scaled for subtraction")
    frames.flags.writeable = False
    return AngioRun(frames=frames, calibration=cal, metadata=meta, source=source, warnings=tuple(dict.fromkeys(warns)))


def _read_series(src: RunSource) -> AngioRun:
    """Stack the single-frame files of one series (already sorted) into one run."""
    first_frames, ds0, info0, warns = _read_file(Path(src.paths[0]))
    n = len(src.paths)
    shape0 = first_frames.shape[1:]
    per_file = first_frames.shape[0]
    total = per_file * n
    if first_frames.nbytes * n > MAX_DECODED_BYTES:
        raise InputError(f"{src}: series is larger than {MAX_DECODED_BYTES / 1e9:.1f} GB; split it")
    out = np.empty((total,) + shape0, dtype=first_frames.dtype)
    out[:per_file] = first_frames
    del first_frames
    times: list[float | None] = [_acq_seconds(ds0)]
    for k, p in enumerate(src.paths[1:], start=1):
        frames, ds, info, _ = _read_file(Path(p))
        if frames.shape != (per_file,) + shape0 or frames.dtype != out.dtype:
            raise InputError(
                f"{p}: frame size {frames.shape[1:]} {frames.dtype} differs from the rest of its series "
                f"{shape0} {out.dtype}; read the files one by one"
            )
        out[k * per_file:(k + 1) * per_file] = frames
        times.append(_acq_seconds(ds))
    frame_time = None
    if per_file == 1 and all(t is not None for t in times) and n > 1:
        steps = np.diff(np.asarray(times, dtype=float))
        steps = steps[steps > 0]
        if steps.size:
            frame_time = float(np.median(steps) * 1000.0)
    return _finish(out, ds0, info0, warns, src.path, frame_time)


def _acq_seconds(ds: Any) -> float | None:
    for kw in ("AcquisitionTime", "ContentTime"):
        t = _str_tag(ds, kw)
        if not t:
            continue
        try:
            hh = int(t[0:2])
            mm = int(t[2:4]) if len(t) >= 4 else 0
            ss = float(t[4:]) if len(t) > 4 else 0.0
        except ValueError:
            continue
        return hh * 3600 + mm * 60 + ss
    return None


def read_run(path: str | os.PathLike | RunSource) -> AngioRun:
    """Read one XA/XRF run.

    Parameters
    ----------
    path : str, PathLike or RunSource
        A DICOM file (multi-frame or single-frame), a folder that holds exactly
        one run (one multi-frame file or one single-frame series), or a
        :class:`RunSource` from :func:`find_runs`.

    Returns
    -------
    AngioRun
        ``frames`` (T, H, W) in the stored dtype, displayed polarity.

    Raises
    ------
    InputError
        Not DICOM, empty, truncated, no pixel data, colour, not XA/RF, unsupported
        encoding, oversize header, or a folder with zero or several runs.
    """
    if isinstance(path, RunSource):
        src = path
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
        if p.is_dir():
            runs = find_runs(p)
            if not runs:
                raise InputError(f"{p}: no DICOM file found in this folder; pass a DICOM XA file or a folder of them")
            if len(runs) > 1:
                raise InputError(
                    f"{p}: folder holds {len(runs)} runs; pass one file, or use read_runs() / 'stenosis batch'"
                )
            src = runs[0]
        else:
            src = RunSource((str(p),))
    if len(src.paths) == 1:
        frames, ds, info, warns = _read_file(Path(src.paths[0]))
        return _finish(frames, ds, info, warns, src.path)
    return _read_series(src)


def find_runs(folder: str | os.PathLike) -> list[RunSource]:
    """Find the runs in a folder tree (DICOM recognised by preamble, not extension).

    Each multi-frame file is one run. Single-frame files are grouped by
    (SeriesInstanceUID, Rows, Columns, BitsAllocated, TransferSyntaxUID) and
    sorted by InstanceNumber, then AcquisitionTime, then name; a group whose
    files repeat a SOPInstanceUID (the same image stored twice) is split into
    one run per file. A DICOM file whose header cannot be parsed is returned as
    a run of its own so that :func:`read_run` reports it. Non-DICOM files are
    ignored.

    Returns
    -------
    list of RunSource
        Sorted by path.
    """
    import pydicom

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; pass a folder of DICOM files")
    singles: dict[tuple, list[tuple[tuple, str, str]]] = defaultdict(list)
    runs: list[RunSource] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if not os.path.isfile(p) or not is_dicom_file(p):
                continue
            try:
                with _warnings.catch_warnings():
                    _warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=[
                        "SeriesInstanceUID", "SOPInstanceUID", "NumberOfFrames", "Rows", "Columns",
                        "BitsAllocated", "InstanceNumber", "AcquisitionTime", "ContentTime",
                    ])
                n_frames = _int_tag(ds, "NumberOfFrames", 1) or 1
                series = str(ds.get("SeriesInstanceUID", "") or "")
            except Exception:  # noqa: BLE001 - reported when the run is read
                runs.append(RunSource((p,)))
                continue
            if n_frames > 1 or not series:
                runs.append(RunSource((p,)))
                continue
            ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") if hasattr(ds, "file_meta") else ""
            key = (series, _int_tag(ds, "Rows"), _int_tag(ds, "Columns"), _int_tag(ds, "BitsAllocated"), ts)
            inst = _int_tag(ds, "InstanceNumber")
            t = _acq_seconds(ds)
            order = (inst if inst is not None else math.inf, t if t is not None else math.inf, p)
            singles[key].append((order, p, str(ds.get("SOPInstanceUID", "") or p)))
    for key, members in singles.items():
        members.sort(key=lambda m: m[0])
        sops = [m[2] for m in members]
        if len(set(sops)) != len(sops):
            runs.extend(RunSource((m[1],)) for m in members)
        else:
            series_key = hashlib.sha256(repr(key).encode()).hexdigest()[:12] if len(members) > 1 else None
            runs.append(RunSource(tuple(m[1] for m in members), series_key))
    runs.sort(key=lambda r: r.paths[0])
    return runs


def read_runs(folder: str | os.PathLike, *, errors: list[RunReadError] | None = None) -> Iterator[AngioRun]:
    """Iterate over the readable runs of a folder tree.

    A run that cannot be read does not stop the iteration: it is appended to
    ``errors`` as a :class:`RunReadError` when a list is given, else reported
    with :func:`warnings.warn` and skipped.

    Parameters
    ----------
    folder : path
    errors : list, optional
        Receives one :class:`RunReadError` (source, one-line message) per bad run.

    Yields
    ------
    AngioRun
    """
    for src in find_runs(folder):
        try:
            run = read_run(src)
        except InputError as exc:
            if errors is not None:
                errors.append(RunReadError(src, str(exc)))
            else:
                _warnings.warn(str(exc), stacklevel=2)
            continue
        yield run
