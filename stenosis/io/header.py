"""Checks of a DICOM header before any pixel is allocated: modality, image pixel module,
encapsulated codestreams (DICOM PS3.3 C.7.6.3, PS3.5 A.4)."""
from __future__ import annotations

import os
import warnings as _warnings
from pathlib import Path
from typing import Any

from ..errors import InputError
from .decode import _DEFLATED_TS, _J2K_TS, _JPEG_TS, _NATIVE_TS, _RLE_TS, _can_decode
from .tags import _int_tag, _str_tag

#: Refuse runs whose declared decoded size exceeds this (before allocating anything).
MAX_DECODED_BYTES = 4 * 1024**3

_ACCEPTED_MODALITIES = {"XA", "RF"}
_XA_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1": "XA",  # X-Ray Angiographic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.1.1": "XA",  # Enhanced XA Image Storage
    "1.2.840.10008.5.1.4.1.1.12.2": "RF",  # X-Ray Radiofluoroscopic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.2.1": "RF",  # Enhanced XRF Image Storage
    "1.2.840.10008.5.1.4.1.1.12.3": "XA",  # X-Ray Angiographic Bi-Plane (retired)
}
_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture family (incl. multi-frame SC)


#: Why a file is not read as DICOM (the one wording of ``measure``, ``info`` and ``batch``).
NO_DICM_MARKER = "no 'DICM' marker after the 128-byte preamble"
NOT_DICOM = f"not a DICOM file ({NO_DICM_MARKER})"


def image_hint(path: str | os.PathLike) -> str:
    """``"; a picture export (PNG, TIFF, ...) is read from Python: ..."`` (the way to
    :func:`stenosis.io.read_image`) for a path named as a picture, else ``""``."""
    from .image import IMAGE_SUFFIXES

    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        return ""
    return ("; a picture export (PNG, TIFF, ...) is read from Python: stenosis.measure(stenosis.read_image(path), ...), "
            "uncalibrated unless pixel_mm= is given")


def folder_image_hint(folder: str | os.PathLike) -> str:
    """:func:`image_hint` for a folder holding picture exports (among its first 1000 entries), else ``""``."""
    try:
        entries = sorted(Path(folder).iterdir())[:1000]
    except OSError:
        return ""
    return next((h for h in map(image_hint, entries) if h), "")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file has the DICOM Part 10 preamble: 128 bytes then ``DICM``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


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
        raise InputError(f"{path}: {NOT_DICOM}; pass a DICOM XA file" + image_hint(path))
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


def _header_reads_without_pixels(path: Path) -> bool:
    """The header up to the pixel data parses and names the image (rows, modality or SOP class)."""
    import pydicom

    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            head = pydicom.dcmread(str(path), stop_before_pixels=True)
        return "Rows" in head and ("Modality" in head or "SOPClassUID" in head)
    except Exception:  # noqa: BLE001 - the header itself is damaged
        return False


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
        if _header_reads_without_pixels(path):
            raise InputError(f"{path}: the file ends inside its pixel data (truncated); re-export the file")
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
    given = ds.get("NumberOfFrames", None)
    stated = _int_tag(ds, "NumberOfFrames")  # None: absent, empty or not a number
    if given is not None and str(given).strip() != "" and (stated is None or stated < 0):
        raise InputError(f"{path}: NumberOfFrames {str(given).strip()!r} is not a positive number of "
                         "frames; the header is broken, re-export the file")
    n_frames = stated or 1  # 0 read as 1, as pydicom does
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
        if length >= declared + rows * cols * itemsize:  # a whole frame more than declared (not even-length padding)
            raise InputError(
                f"{path}: pixel data holds {length // (rows * cols * itemsize)} frames of {rows}x{cols} but "
                + (f"NumberOfFrames says {stated}" if stated is not None and stated > 0
                   else "NumberOfFrames is absent or 0 (read as 1)")
                + "; the header is inconsistent (frames would be lost), re-export the file"
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
