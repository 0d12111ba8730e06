"""Hostile inputs: DICOM files a core lab receives and the tool must survive.

Every writer here puts one file (or folder) into a folder and returns its path;
nothing is random unless a ``seed`` is given, so a failing case can be rebuilt
byte for byte. Tests import this module (``tests/`` is on ``sys.path`` under
pytest); ``benchmarks/fuzz.py`` imports it for its seed corpus and mutators.

Contents
--------
* :func:`tube_frames` / :func:`write_xa`: tiny valid XA multi-frame runs with a
  synthetic vessel (a projected cylinder with one stenosis), written with
  pydicom, in any transfer syntax pydicom or GDCM can encode here.
* :data:`PLANTED`: patient identifiers planted in :func:`write_planted` so that
  every output can be scanned for them (:func:`find_planted`).
* :data:`CASES`: the bad-input matrix, one :class:`HostileCase` per hostile file,
  each with its defined outcome (``"error"``: :class:`stenosis.InputError`;
  ``"ok"``: a run is read; ``"any"``: either, but never anything else).
* :func:`mutate`: the fuzzer's mutators (byte flips, interesting integers at
  length fields, truncation, chunk deletion/duplication, header tag values).
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "PLANTED",
    "PLANTED_PATTERNS",
    "HostileCase",
    "CASES",
    "FOLDER_CASES",
    "tube_frames",
    "xa_dataset",
    "write_dataset",
    "write_xa",
    "write_planted",
    "write_case",
    "write_all",
    "find_planted",
    "png_text_chunks",
    "seed_corpus",
    "mutate",
    "pixel_data_offset",
]

XA_SOP = "1.2.840.10008.5.1.4.1.1.12.1"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
MR_SOP = "1.2.840.10008.5.1.4.1.1.4"
SC_SOP = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
RLE = "1.2.840.10008.1.2.5"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
MPEG2 = "1.2.840.10008.1.2.4.100"
HEVC = "1.2.840.10008.1.2.4.107"

#: Patient identifiers planted by :func:`write_planted`; none may appear in any output.
PLANTED = {
    "PatientName": "PLANTED^NAME^XYZZY",
    "PatientID": "PLANTED-ID-31337",
    "PatientBirthDate": "19010203",
    "InstitutionName": "PLANTED INSTITUTION QWERTY",
    "OtherPatientIDs": "PLANTED-OTHER-ID-4242",
    "ReferringPhysicianName": "PLANTED^DOCTOR^FROBNITZ",
    "AccessionNumber": "PLANTACC8675309",
    "InstitutionAddress": "PLANTED STREET 77 GRUEVILLE",
    "PatientAddress": "PLANTED ROAD 12 ZORKTOWN",
    "OperatorsName": "PLANTED^OPERATOR^PLUGH",
}
#: Planted UIDs (de-identification replaces UIDs too, PS3.15 E.1); the run id must be a keyed hash of them.
PLANTED_UIDS = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.31337.1.777",
    "SeriesInstanceUID": "1.2.826.0.1.3680043.31337.2.777",
    "SOPInstanceUID": "1.2.826.0.1.3680043.31337.3.777",
}
#: Every planted UID (also the variants tests derive) starts with this root.
PLANTED_UID_ROOT = "1.2.826.0.1.3680043.31337."
#: Byte patterns searched by :func:`find_planted`: each identifier, its distinctive
#: parts, and reformatted variants (a birth date may come out as 1901-02-03).
PLANTED_PATTERNS: tuple[bytes, ...] = tuple(
    dict.fromkeys(
        [v.encode() for v in PLANTED.values()]
        + [b"XYZZY", b"ID-31337", b"QWERTY", b"FROBNITZ", b"ACC8675309", b"GRUEVILLE", b"ZORKTOWN", b"PLUGH",
           b"OTHER-ID-4242", b"1901-02-03", b"1901/02/03", b"03.02.1901", b"03/02/1901"]
        + [u.encode() for u in PLANTED_UIDS.values()]
        + [PLANTED_UID_ROOT.encode()]
    )
)


# --------------------------------------------------------------------------- valid runs
def tube_frames(
    rows: int = 48,
    cols: int = 64,
    n_frames: int = 3,
    *,
    diameter_px: float = 8.0,
    stenosis: float = 0.5,
    bits: int = 16,
    background: float | None = None,
    contrast: float = 0.35,
    noise: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Frames (T, H, W) with a horizontal vessel, darker than the background.

    The vessel is a cylinder along the centre row (projected thickness
    ``2 sqrt(r^2 - y^2)``), with a Gaussian narrowing of ``stenosis`` (fraction of
    the diameter) at the centre column; frame 0 has no contrast (a mask frame),
    later frames are fully opacified. Values are log-like: background minus
    ``contrast * background * thickness / diameter``.

    Returns
    -------
    ndarray, shape (n_frames, rows, cols), uint16 (bits 16) or uint8 (bits 8)
    """
    top = (1 << bits) - 1
    bg = float(background if background is not None else 0.8 * top)
    rr = np.arange(rows, dtype=np.float64)[:, None] - (rows - 1) / 2.0
    cc = np.arange(cols, dtype=np.float64)[None, :]
    sigma = max(cols / 12.0, 2.0)
    d = diameter_px * (1.0 - stenosis * np.exp(-0.5 * ((cc - (cols - 1) / 2.0) / sigma) ** 2))
    r = d / 2.0
    thick = 2.0 * np.sqrt(np.clip(r**2 - rr**2, 0.0, None))
    vessel = bg - contrast * bg * thick / max(diameter_px, 1e-6)
    rng = np.random.default_rng(seed)
    out = np.empty((n_frames, rows, cols), dtype=np.float64)
    for t in range(n_frames):
        img = np.full((rows, cols), bg) if t == 0 and n_frames > 1 else vessel.copy()
        if noise:
            img = img + rng.normal(0.0, noise, size=img.shape)
        out[t] = img
    return np.clip(np.rint(out), 0, top).astype(np.uint16 if bits > 8 else np.uint8)


def xa_dataset(
    frames: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    modality: str = "XA",
    sop_class: str = XA_SOP,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    sid_sod: tuple[float, float] | None = (1000.0, 750.0),
    identifiers: dict[str, str] | None = None,
    uids: dict[str, str] | None = None,
    subtracted: bool = False,
):
    """A pydicom Dataset of an XA multi-frame run (native pixel data, not yet written).

    ``frames`` is (T, H, W) uint8/uint16 in stored values. Geometry calibration
    (ImagerPixelSpacing x SOD/SID) is set unless ``imager_pixel_spacing`` or
    ``sid_sod`` is None. Identifiers default to neutral placeholders.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    bits_alloc = frames.dtype.itemsize * 8
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    uids = dict(uids or {})
    sop_uid = uids.get("SOPInstanceUID") or generate_uid(entropy_srcs=[f"sop-{frames.tobytes().hex()[:64]}-{modality}"])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_LE
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1394.1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = uids.get("StudyInstanceUID") or generate_uid(entropy_srcs=["study", sop_uid])
    ds.SeriesInstanceUID = uids.get("SeriesInstanceUID") or generate_uid(entropy_srcs=["series", sop_uid])
    ids = {"PatientName": "ANON", "PatientID": "ANON", "PatientBirthDate": "", "PatientSex": "O",
           "InstitutionName": "", "StudyID": "1", "StudyDate": "20240102", "StudyTime": "101010",
           "ReferringPhysicianName": "", "AccessionNumber": ""}
    ids.update(identifiers or {})
    for kw, value in ids.items():
        setattr(ds, kw, value)
    if identifiers:
        # the same identifiers nested in a sequence item: outputs must not walk sequences into reports
        item = Dataset()
        item.PatientID = identifiers.get("PatientID", "ANON")
        item.IssuerOfPatientID = identifiers.get("InstitutionName", "")
        ds.OtherPatientIDsSequence = Sequence([item])
    ds.Modality = modality
    ds.Manufacturer = "stenosis-tests"
    ds.ImageType = ["DERIVED", "PRIMARY", "SUBTRACTION"] if subtracted else ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.AcquisitionTime = "101010.000"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.NumberOfFrames = int(frames.shape[0])
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 66.7
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored or bits_alloc
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PositionerPrimaryAngle = 10.0
    ds.PositionerSecondaryAngle = -5.0
    if pixel_spacing is not None:
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = [float(v) for v in imager_pixel_spacing]
        if sid_sod is not None:
            ds.DistanceSourceToDetector = float(sid_sod[0])
            ds.DistanceSourceToPatient = float(sid_sod[1])
    if frames.shape[0] > 1 and not subtracted:
        mask = Dataset()
        mask.MaskOperation = "AVG_SUB"
        mask.MaskFrameNumbers = [1]
        ds.MaskSubtractionSequence = Sequence([mask])
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds


def write_dataset(ds, path: str | os.PathLike, *, transfer_syntax: str = EXPLICIT_LE) -> Path:
    """Write ``ds`` as DICOM Part 10 in ``transfer_syntax`` (compressing via pydicom or GDCM)."""
    from pydicom.uid import UID

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = UID(transfer_syntax)
    if ts in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED):
        ds = ds.copy()
        ds.file_meta = ds.file_meta.copy()
        ds.file_meta.TransferSyntaxUID = ts
        if ts == EXPLICIT_BE and ds.BitsAllocated == 16:
            arr = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2")
            ds.PixelData = arr.tobytes()
        ds.save_as(path, enforce_file_format=True, little_endian=ts != EXPLICIT_BE, implicit_vr=ts == IMPLICIT_LE)
        return path
    if ts in (RLE, JPEG_LS):
        ds = ds.copy()
        ds.compress(ts, encoding_plugin="pylibjpeg" if ts == RLE else "")
        ds.save_as(path, enforce_file_format=True)
        return path
    # other syntaxes: GDCM transcodes a native file
    tmp = path.with_suffix(".native.tmp")
    write_dataset(ds, tmp)
    try:
        _gdcm_transcode(tmp, path, str(ts))
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _gdcm_transcode(src: Path, dst: Path, ts: str) -> None:
    import gdcm

    names = {
        JPEG_LOSSLESS_SV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1,
        J2K_LOSSLESS: gdcm.TransferSyntax.JPEG2000Lossless,
        "1.2.840.10008.1.2.4.57": gdcm.TransferSyntax.JPEGLosslessProcess14,
        "1.2.840.10008.1.2.4.91": gdcm.TransferSyntax.JPEG2000,
    }
    if ts not in names:
        raise ValueError(f"no encoder here for transfer syntax {ts}")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    if not reader.Read():
        raise OSError(f"GDCM cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(names[ts]))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise OSError(f"GDCM cannot transcode {src} to {ts}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise OSError(f"GDCM cannot write {dst}")


def write_xa(path: str | os.PathLike, frames: np.ndarray | None = None, *, transfer_syntax: str = EXPLICIT_LE,
             **kwargs) -> Path:
    """Write a valid small XA run (default :func:`tube_frames`) to ``path``."""
    if frames is None:
        frames = tube_frames()
    return write_dataset(xa_dataset(frames, **kwargs), path, transfer_syntax=transfer_syntax)


def write_planted(folder: str | os.PathLike, name: str = "planted.dcm", *, frames: np.ndarray | None = None,
                  **kwargs) -> Path:
    """A valid XA run carrying the :data:`PLANTED` identifiers and :data:`PLANTED_UIDS`."""
    return write_xa(Path(folder) / name, frames, identifiers=PLANTED, uids=PLANTED_UIDS, **kwargs)


def pixel_data_offset(path: str | os.PathLike) -> int:
    """Byte offset of the (7FE0,0010) Pixel Data value in a written file."""
    data = Path(path).read_bytes()
    le = data.rfind(b"\xe0\x7f\x10\x00")
    be = data.rfind(b"\x7f\xe0\x00\x10")
    idx, vr = (le, data[le + 4:le + 6]) if le >= be else (be, data[be + 4:be + 6])
    if idx < 0:
        raise ValueError(f"{path}: no Pixel Data element")
    return idx + (12 if vr in (b"OB", b"OW") else 8)


# --------------------------------------------------------------------------- hostile matrix
@dataclass(frozen=True)
class HostileCase:
    """One hostile input: ``write(folder) -> path`` and its defined outcome.

    ``expect``: ``"error"`` (read_run raises InputError; CLI exit 3; a batch error
    row), ``"ok"`` (the run is read; maybe with warnings) or ``"any"`` (either of
    those; the input is odd but not necessarily unreadable).
    """

    name: str
    write: Callable[[Path], Path]
    expect: str
    why: str


def _base(folder: Path, name: str, frames: np.ndarray | None = None, *, ts: str = EXPLICIT_LE, **kw) -> Path:
    return write_xa(Path(folder) / name, frames, transfer_syntax=ts, **kw)


def _mutated(name: str, edit: Callable, *, frames: np.ndarray | None = None, ts: str = EXPLICIT_LE,
             **kw) -> Callable[[Path], Path]:
    """A writer that builds the valid dataset, applies ``edit(ds)`` and writes it raw (no validation)."""

    def write(folder: Path) -> Path:
        ds = xa_dataset(frames if frames is not None else tube_frames(), **kw)
        ds = edit(ds) or ds
        path = Path(folder) / f"{name}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            ds.save_as(fh, enforce_file_format=False, little_endian=True, implicit_vr=False)
        # save_as(enforce_file_format=False) writes no preamble when the dataset has none
        data = path.read_bytes()
        if data[128:132] != b"DICM":
            path.write_bytes(b"\0" * 128 + b"DICM" + data)
        return path

    return write


def _raw(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = Path(folder) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data() if callable(data) else data)
        return path

    return write


def _truncated(name: str, where: str, *, ts: str = EXPLICIT_LE) -> Callable[[Path], Path]:
    """Write a valid run then cut it: ``where`` is 'preamble', 'meta', 'header', 'pixel_tag',
    'pixel_10', 'pixel_50', 'pixel_minus1' (all but the last byte)."""

    def write(folder: Path) -> Path:
        folder = Path(folder)
        full = _base(folder, f".{name}.full.dcm", ts=ts)
        data = full.read_bytes()
        pix = pixel_data_offset(full)
        cut = {
            "preamble": 100,
            "meta": 150,
            "header": (132 + pix) // 2 + 40,
            "pixel_tag": pix - 6,
            "pixel_10": pix + (len(data) - pix) // 10,
            "pixel_50": pix + (len(data) - pix) // 2,
            "pixel_minus1": len(data) - 1,
        }[where]
        path = folder / f"{name}.dcm"
        path.write_bytes(data[:cut])
        full.unlink()
        return path

    return write


def _set(**values) -> Callable:
    def edit(ds):
        for kw, v in values.items():
            if v is None:
                if kw in ds:
                    del ds[kw]
            else:
                setattr(ds, kw, v)
        return ds

    return edit


def _set_raw(tag: int, vr: str, value: bytes) -> Callable:
    """Put raw bytes in an element (bypassing pydicom's value checks)."""

    def edit(ds):
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag

        ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
        return ds

    return edit


def _meta(**values) -> Callable:
    def edit(ds):
        for kw, v in values.items():
            setattr(ds.file_meta, kw, v)
        return ds

    return edit


def _both(*edits: Callable) -> Callable:
    def edit(ds):
        for e in edits:
            ds = e(ds) or ds
        return ds

    return edit


def _pixel_vr_ow(ds):
    ds["PixelData"].VR = "OW"
    return ds


def _rgb(ds):
    frames = tube_frames(bits=8)
    rgb = np.repeat(frames[..., None], 3, axis=-1)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = rgb.tobytes()
    return ds


def _encapsulated(fragments: list[bytes], *, ts: str, **header) -> Callable:
    """Replace pixel data by encapsulated ``fragments`` (one per frame) under ``ts``."""

    def edit(ds):
        from pydicom.encaps import encapsulate

        for kw, v in header.items():
            setattr(ds, kw, v)
        ds.file_meta.TransferSyntaxUID = ts
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        return ds

    return edit


def _rle_garbage() -> list[bytes]:
    # an RLE header claiming 15 segments at offsets past the end, then noise
    header = struct.pack("<16I", 15, *([64 + 1000 * i for i in range(15)]))
    return [header + bytes(range(256)) * 2]


def _rle_frame(rows: int, cols: int, value: int = 1000) -> bytes:
    """A valid RLE frame (16-bit, 2 segments) of a constant image: very small."""
    hi, lo = (value >> 8) & 0xFF, value & 0xFF

    def seg(byte: int) -> bytes:
        out = bytearray()
        n = rows * cols
        while n > 0:
            k = min(n, 128)
            out += bytes([(257 - k) & 0xFF, byte])
            n -= k
        if len(out) % 2:
            out += b"\x80"
        return bytes(out)

    s1, s2 = seg(hi), seg(lo)
    header = struct.pack("<16I", 2, 64, 64 + len(s1), *([0] * 13))
    return header + s1 + s2


def _not_dicom_png() -> bytes:
    raw = b"".join(b"\0" + bytes(range(16)) for _ in range(16))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _deflated_garbage() -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset

    buf = io.BytesIO()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = XA_SOP
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = DEFLATED
    meta.ImplementationClassUID = "1.2.3.4.5"
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    meta_bytes = buf.getvalue()
    return meta_bytes + bytes((i * 37 + 11) % 256 for i in range(600))


def _patch_mask_frames(kind: str) -> Callable[[Path], Path]:
    """A valid run whose MaskSubtractionSequence item holds a broken MaskFrameNumbers (0028,6110):
    ``bad_vr`` (VR bytes 0x55 0x80) or ``odd_length`` (3 bytes for a US value; lengths of the
    item and the sequence adjusted so the rest of the file still parses)."""

    def write(folder: Path) -> Path:
        path = write_xa(Path(folder) / f"mask_frames_{kind}.dcm")
        data = bytearray(path.read_bytes())
        i = data.find(b"\x28\x00\x10\x61US\x02\x00\x01\x00")
        if i < 0:
            raise ValueError("MaskFrameNumbers not found")
        if kind == "bad_vr":
            data[i + 4:i + 6] = b"\x55\x80"
        else:
            data[i + 6:i + 10] = b"\x03\x00\x01\x00"
            data.insert(i + 10, 0)
            item = data.rfind(b"\xfe\xff\x00\xe0", 0, i)
            seq = data.rfind(b"\x28\x00\x00\x61SQ\x00\x00", 0, item)
            for at in (item + 4, seq + 8):
                (n,) = struct.unpack("<I", data[at:at + 4])
                if n != 0xFFFFFFFF:
                    data[at:at + 4] = struct.pack("<I", n + 1)
        path.write_bytes(bytes(data))
        return path

    return write


def _jpeg_lossless_bits(folder: Path) -> Path:
    """A valid JPEG Lossless run (16-bit precision) whose header then says BitsAllocated 32."""
    import pydicom

    path = write_xa(Path(folder) / "jpeg_lossless_bits32.dcm", tube_frames(24, 32, 2),
                    transfer_syntax=JPEG_LOSSLESS_SV1)
    ds = pydicom.dcmread(path)
    ds.BitsAllocated = 32
    ds.save_as(path, enforce_file_format=True)
    return path


def _rle_corrupt_run(folder: Path) -> Path:
    """A valid 2-frame 16-bit RLE run whose second frame has the 4 bytes at offset 330 of its
    fragment replaced by the integer 0x10000 (fuzz input 5385 of base seed 20240601):
    pydicom refuses the segment, GDCM's RLE reader aborts the process."""
    path = write_xa(Path(folder) / "rle_corrupt_run.dcm", tube_frames(24, 32, 2, diameter_px=5.0),
                    transfer_syntax=RLE)
    data = bytearray(path.read_bytes())
    start = pixel_data_offset_bytes(bytes(data))
    items, pos = [], start
    while data[pos:pos + 4] == b"\xfe\xff\x00\xe0":
        (n,) = struct.unpack("<I", data[pos + 4:pos + 8])
        items.append((pos + 8, n))
        pos += 8 + n
    frag_start, frag_len = items[2]  # BOT, frame 0, frame 1
    at = frag_start + min(330, frag_len - 4)
    data[at:at + 4] = struct.pack("<I", 0x10000)
    path.write_bytes(bytes(data))
    return path


def _fuzz_case(folder: Path, base_seed: int, i: int) -> Path:
    """Fuzz input ``i`` of ``base_seed`` (seeds from :func:`seed_corpus`), kept as a regression case."""
    seeds_dir = Path(folder) / f".seeds_{base_seed}_{i}"
    paths = seed_corpus(seeds_dir)
    data, _how, _k = fuzz_input([p.read_bytes() for p in sorted(paths)], base_seed, i)
    path = Path(folder) / f"fuzz_{base_seed}_{i}.dcm"
    path.write_bytes(data)
    import shutil

    shutil.rmtree(seeds_dir, ignore_errors=True)
    return path


CASES: tuple[HostileCase, ...] = (
    # ---- not DICOM / empty / truncated
    HostileCase("not_dicom_text", _raw("notes.dcm", b"this is not a DICOM file\n" * 20), "error", "text named .dcm"),
    HostileCase("not_dicom_png", _raw("image.dcm", _not_dicom_png), "error", "a PNG named .dcm"),
    HostileCase("random_bytes", _raw("random.dcm", bytes((i * 7919 + 13) % 251 for i in range(5000))), "error",
                "noise"),
    HostileCase("empty", _raw("empty.dcm", b""), "error", "zero bytes"),
    HostileCase("preamble_only", _raw("preamble.dcm", b"\0" * 128 + b"DICM"), "error", "preamble and magic only"),
    HostileCase("trunc_preamble", _truncated("trunc_preamble", "preamble"), "error", "cut inside the preamble"),
    HostileCase("trunc_meta", _truncated("trunc_meta", "meta"), "error", "cut inside the file meta group"),
    HostileCase("trunc_header", _truncated("trunc_header", "header"), "error", "cut inside the dataset header"),
    HostileCase("trunc_pixel_tag", _truncated("trunc_pixel_tag", "pixel_tag"), "error", "cut inside the pixel data tag"),
    HostileCase("trunc_pixel_10", _truncated("trunc_pixel_10", "pixel_10"), "error", "10% of the pixel data"),
    HostileCase("trunc_pixel_50", _truncated("trunc_pixel_50", "pixel_50"), "error", "half of the pixel data"),
    HostileCase("trunc_pixel_minus1", _truncated("trunc_pixel_minus1", "pixel_minus1"), "error", "last byte missing"),
    HostileCase("trunc_rle_50", _truncated("trunc_rle_50", "pixel_50", ts=RLE), "error", "RLE cut halfway"),
    HostileCase("trunc_jpegls_50", _truncated("trunc_jpegls_50", "pixel_50", ts=JPEG_LS), "error",
                "JPEG-LS cut halfway"),
    HostileCase("deflated_garbage", _raw("deflated.dcm", _deflated_garbage), "error", "deflate stream of noise"),
    # ---- wrong modality / colour / no pixels
    HostileCase("modality_ct", _mutated("modality_ct", _set(), modality="CT", sop_class=CT_SOP), "error", "CT image"),
    HostileCase("modality_mr", _mutated("modality_mr", _set(), modality="MR", sop_class=MR_SOP), "error", "MR image"),
    HostileCase("modality_missing_ct_sop", _mutated("modality_missing_ct_sop", _set(Modality=None), sop_class=CT_SOP),
                "error", "no Modality, CT SOP class"),
    HostileCase("rgb", _mutated("rgb", _rgb), "error", "SamplesPerPixel 3 (a screenshot)"),
    HostileCase("samples_3_mono", _mutated("samples_3_mono", _set(SamplesPerPixel=3)), "error",
                "SamplesPerPixel 3 with MONOCHROME2 and too little data"),
    HostileCase("palette_color", _mutated("palette_color", _set(PhotometricInterpretation="PALETTE COLOR")), "error",
                "palette colour"),
    HostileCase("ybr", _mutated("ybr", _set(PhotometricInterpretation="YBR_FULL")), "error", "YBR colour space"),
    HostileCase("no_pixel_data", _mutated("no_pixel_data", _set(PixelData=None)), "error", "header only"),
    HostileCase("empty_pixel_data", _mutated("empty_pixel_data", _set(PixelData=b"")), "error", "zero-length pixels"),
    # ---- bit depth mismatches
    HostileCase("bits_stored_gt_allocated", _mutated("bits_stored_gt_allocated", _set(BitsStored=17, HighBit=16)),
                "error", "BitsStored 17 > BitsAllocated 16"),
    HostileCase("bits_stored_zero", _mutated("bits_stored_zero", _set(BitsStored=0)), "error", "BitsStored 0"),
    HostileCase("bits_allocated_12", _mutated("bits_allocated_12", _set(BitsAllocated=12)), "error",
                "BitsAllocated 12"),
    HostileCase("bits_allocated_1", _mutated("bits_allocated_1", _set(BitsAllocated=1, BitsStored=1, HighBit=0)),
                "error", "BitsAllocated 1 (bit-packed)"),
    HostileCase("bits_allocated_64", _mutated("bits_allocated_64", _set(BitsAllocated=64, BitsStored=64, HighBit=63)),
                "error", "BitsAllocated 64 and too little data"),
    HostileCase("bits_allocated_missing", _mutated("bits_allocated_missing", _both(_pixel_vr_ow, _set(BitsAllocated=None))), "error",
                "no BitsAllocated"),
    HostileCase("high_bit_mismatch", _mutated("high_bit_mismatch", _set(HighBit=3)), "any",
                "HighBit inconsistent with BitsStored"),
    HostileCase("pixel_representation_signed", _mutated("pixel_representation_signed", _set(PixelRepresentation=1)),
                "ok", "signed pixels (valid)"),
    HostileCase("pixel_representation_7", _mutated("pixel_representation_7", _set(PixelRepresentation=7)), "any",
                "PixelRepresentation outside 0/1"),
    HostileCase("bits_stored_10_of_16", _mutated("bits_stored_10_of_16", _set(BitsStored=10, HighBit=9)), "ok",
                "10 of 16 bits with high bits set in the data"),
    # ---- sizes that do not match the data
    HostileCase("rows_zero", _mutated("rows_zero", _set(Rows=0)), "error", "Rows 0"),
    HostileCase("columns_missing", _mutated("columns_missing", _set(Columns=None)), "error", "no Columns"),
    HostileCase("rows_double", _mutated("rows_double", _set(Rows=96)), "error", "Rows twice the data"),
    HostileCase("frames_double", _mutated("frames_double", _set(NumberOfFrames=6)), "error",
                "NumberOfFrames twice the data"),
    HostileCase("frames_fewer", _mutated("frames_fewer", _set(NumberOfFrames=2)), "any",
                "NumberOfFrames smaller than the data"),
    HostileCase("frames_zero_nodata", _mutated("frames_zero_nodata", _set(NumberOfFrames=0, PixelData=b"")), "error",
                "zero frames, no data"),
    HostileCase("frames_zero", _mutated("frames_zero", _set(NumberOfFrames=0)), "any", "NumberOfFrames 0 with data"),
    HostileCase("frames_negative", _mutated("frames_negative", _set(NumberOfFrames="-3")), "any",
                "NumberOfFrames -3 with data"),
    HostileCase("frames_text", _mutated("frames_text", _set_raw(0x00280008, "IS", b"ABC ")), "any",
                "NumberOfFrames 'ABC'"),
    HostileCase("huge_rows_cols", _mutated("huge_rows_cols", _set(Rows=65535, Columns=65535, NumberOfFrames=60000)),
                "error", "declares 65535x65535x60000 (515 TB)"),
    HostileCase("huge_frames_native", _mutated("huge_frames_native", _set(NumberOfFrames=2_000_000_000)), "error",
                "declares 2e9 frames"),
    HostileCase("large_native_1gb", _mutated("large_native_1gb", _set(Rows=16384, Columns=16384, NumberOfFrames=2)),
                "error", "declares 1 GB, holds 18 KB"),
    HostileCase("large_rle_frames", _mutated("large_rle_frames", _encapsulated(
        [_rle_frame(1024, 1024)], ts=RLE, Rows=1024, Columns=1024, NumberOfFrames=1000)), "error",
        "RLE declaring 1000 frames of 1024x1024 (2 GB) with one tiny fragment"),
    HostileCase("large_rle_frame_size", _mutated("large_rle_frame_size", _encapsulated(
        [_rle_frame(48, 64)] * 3, ts=RLE, Rows=30000, Columns=30000)), "error",
        "RLE declaring 3 frames of 30000x30000 (5.4 GB) with tiny fragments"),
    # ---- transfer syntaxes
    HostileCase("ts_mpeg2", _mutated("ts_mpeg2", _encapsulated([b"\x00\x00\x01\xb3" + b"\0" * 60] * 3, ts=MPEG2)),
                "error", "MPEG-2 video"),
    HostileCase("ts_hevc", _mutated("ts_hevc", _encapsulated([b"\x00\x00\x00\x01" + b"\0" * 60] * 3, ts=HEVC)),
                "error", "HEVC video"),
    HostileCase("ts_bogus", _mutated("ts_bogus", _meta(TransferSyntaxUID="1.2.3.4.5.6.7")), "error",
                "unknown transfer syntax UID"),
    HostileCase("ts_empty", _mutated("ts_empty", _meta(TransferSyntaxUID="")), "error", "empty transfer syntax"),
    HostileCase("rle_garbage", _mutated("rle_garbage", _encapsulated(_rle_garbage() * 3, ts=RLE)), "error",
                "RLE segments pointing past the data"),
    HostileCase("jpegls_garbage", _mutated("jpegls_garbage", _encapsulated(
        [b"\xff\xd8\xff\xf7" + bytes(range(200))] * 3, ts=JPEG_LS)), "error", "JPEG-LS noise"),
    HostileCase("j2k_garbage", _mutated("j2k_garbage", _encapsulated(
        [b"\xff\x4f\xff\x51" + bytes(range(200))] * 3, ts=J2K_LOSSLESS)), "error", "JPEG 2000 noise"),
    HostileCase("jpeg_lossless_garbage", _mutated("jpeg_lossless_garbage", _encapsulated(
        [b"\xff\xd8\xff\xc3" + bytes(range(200))] * 3, ts=JPEG_LOSSLESS_SV1)), "error", "JPEG lossless noise"),
    HostileCase("jpeg_lossless_bits32", _jpeg_lossless_bits, "any",
                "JPEG Lossless 16-bit codestream, header BitsAllocated 32 (GDCM's JPEG codec aborts)"),
    HostileCase("rle_corrupt_run", _rle_corrupt_run, "error", "RLE segment bytes overwritten"),
    HostileCase("fuzz_20240601_5385", lambda f: _fuzz_case(f, 20240601, 5385), "error",
                "fuzzed RLE run (corrupt segment, no FrameIncrementPointer): the GDCM fallback aborts"),
    HostileCase("image_type_vr_is", _mutated("image_type_vr_is", _set_raw(0x00080008, "IS", b"2 ")), "any",
                "ImageType stored with VR IS (a flipped VR byte)"),
    HostileCase("mask_frames_bad_vr", _patch_mask_frames("bad_vr"), "any",
                "MaskFrameNumbers with VR bytes 0x55 0x80 inside the mask sequence"),
    HostileCase("mask_frames_odd_length", _patch_mask_frames("odd_length"), "any",
                "MaskFrameNumbers US value of 3 bytes inside the mask sequence"),
    # ---- odd but readable
    HostileCase("big_endian", lambda f: _base(f, "big_endian.dcm", ts=EXPLICIT_BE), "ok", "Explicit VR Big Endian"),
    HostileCase("implicit_vr", lambda f: _base(f, "implicit.dcm", ts=IMPLICIT_LE), "ok", "Implicit VR Little Endian"),
    HostileCase("monochrome1", lambda f: _base(f, "mono1.dcm", photometric="MONOCHROME1"), "ok", "inverted grey"),
    HostileCase("uncalibrated", lambda f: _base(f, "uncal.dcm", imager_pixel_spacing=None), "ok",
                "no calibration tags"),
    HostileCase("secondary_capture_xa", lambda f: _base(f, "sc.dcm", sop_class=SC_SOP, imager_pixel_spacing=None),
                "ok", "Secondary Capture with Modality XA"),
    HostileCase("single_frame", lambda f: _base(f, "single.dcm", tube_frames(n_frames=1)), "ok", "one frame"),
    HostileCase("tiny_1x1", lambda f: _base(f, "tiny.dcm", np.zeros((1, 1, 1), np.uint16)), "any", "1x1 pixel"),
    HostileCase("spacing_garbage", _mutated("spacing_garbage", _both(
        _set_raw(0x00181164, "DS", b"abc\\-1"), _set_raw(0x00181110, "DS", b"NaN "),
        _set_raw(0x00181111, "DS", b"-5e308"))), "ok", "calibration tags of garbage"),
    HostileCase("planted", lambda f: write_planted(f), "ok", "valid, with planted identifiers"),
)
CASES_BY_NAME = {c.name: c for c in CASES}


def _folder_empty(folder: Path) -> Path:
    d = Path(folder) / "empty_folder"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _folder_non_dicom(folder: Path) -> Path:
    d = Path(folder) / "non_dicom_folder"
    d.mkdir(parents=True, exist_ok=True)
    (d / "readme.txt").write_text("no images here\n")
    (d / "a.dcm").write_bytes(b"not dicom")
    return d


#: Folder inputs: (name, writer, expect) with the same meaning of ``expect``.
FOLDER_CASES: tuple[HostileCase, ...] = (
    HostileCase("folder_empty", _folder_empty, "error", "empty folder"),
    HostileCase("folder_non_dicom", _folder_non_dicom, "error", "folder without DICOM"),
)


def is_part10(path: str | os.PathLike) -> bool:
    """True when the file starts with the 128-byte preamble and ``DICM`` (what find_runs looks for)."""
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def write_case(case: HostileCase | str, folder: str | os.PathLike) -> Path:
    """Write one case (by object or name) into ``folder``; returns its path."""
    case = CASES_BY_NAME[case] if isinstance(case, str) else case
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _quiet_warnings():  # pydicom warns about the invalid values we write on purpose
        return case.write(folder)


def write_all(folder: str | os.PathLike, cases: Iterable[HostileCase] = CASES) -> dict[str, Path]:
    """Write every case into its own sub-folder of ``folder``; name -> path."""
    out = {}
    for case in cases:
        out[case.name] = write_case(case, Path(folder) / case.name)
    return out


# --------------------------------------------------------------------------- identifier scanning
def png_text_chunks(data: bytes) -> list[bytes]:
    """Decoded text of every tEXt/zTXt/iTXt chunk of a PNG (empty if not a PNG)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        try:
            if kind == b"tEXt":
                out.append(body)
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out.append(key + b"\0" + zlib.decompress(rest[1:]))
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\0")
                flag, _method = rest[0], rest[1]
                lang, _, rest = rest[2:].partition(b"\0")
                tkey, _, text = rest.partition(b"\0")
                out.append(key + b"\0" + (zlib.decompress(text) if flag else text))
        except (zlib.error, IndexError):
            out.append(body)
    return out


def find_planted(data: bytes | str, patterns: Iterable[bytes] = PLANTED_PATTERNS) -> list[str]:
    """The planted identifier patterns found in ``data`` (bytes, or text), incl. PNG text chunks
    and UTF-16 encodings; [] when clean."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    hay = [data] + png_text_chunks(data)
    found = []
    for pat in patterns:
        variants = (pat, pat.decode().encode("utf-16-le"))
        if any(v in h for h in hay for v in variants):
            found.append(pat.decode())
    return found


# --------------------------------------------------------------------------- fuzzing
def seed_corpus(folder: str | os.PathLike) -> list[Path]:
    """Small valid runs in every encoding this machine can write (fuzzing seeds).

    Sizes are kept tiny (24x32, 2 frames) so that one read is about a millisecond."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    small16 = tube_frames(24, 32, 2, diameter_px=5.0)
    small8 = tube_frames(24, 32, 2, diameter_px=5.0, bits=8)
    specs = [
        ("native16.dcm", small16, EXPLICIT_LE, {}),
        ("native8.dcm", small8, EXPLICIT_LE, {}),
        ("implicit.dcm", small16, IMPLICIT_LE, {}),
        ("bigendian.dcm", small16, EXPLICIT_BE, {}),
        ("mono1_12bit.dcm", small16 >> 4, EXPLICIT_LE, {"photometric": "MONOCHROME1", "bits_stored": 12}),
        ("deflated.dcm", small16, DEFLATED, {}),
        ("rle16.dcm", small16, RLE, {}),
        ("rle8.dcm", small8, RLE, {}),
        ("jpegls.dcm", small16, JPEG_LS, {}),
        ("jpeg_lossless.dcm", small16, JPEG_LOSSLESS_SV1, {}),
        ("j2k.dcm", small16, J2K_LOSSLESS, {}),
        ("subtracted_ps.dcm", small16, EXPLICIT_LE, {"subtracted": True, "pixel_spacing": (0.15, 0.15)}),
    ]
    paths = []
    for name, frames, ts, kw in specs:
        try:
            paths.append(write_xa(folder / name, frames, transfer_syntax=ts, **kw))
        except Exception as exc:  # an encoder missing on this machine: fuzz the others
            import warnings

            warnings.warn(f"seed {name} not written ({type(exc).__name__}: {exc})")
    return paths


_INTERESTING_16 = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)
_INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x10000, 0x1000000)

# header elements worth mutating through pydicom (keyword, candidate values)
_TAG_VALUES: tuple[tuple[str, tuple], ...] = (
    ("Rows", (0, 1, 2, 23, 25, 255, 4096, 65535, None)),
    ("Columns", (0, 1, 31, 33, 65535, None)),
    ("NumberOfFrames", ("0", "1", "3", "-1", "1000", "2147483647", "99999999999", "", "1.5", "A", None)),
    ("BitsAllocated", (0, 1, 7, 8, 12, 16, 24, 32, 64, 65535, None)),
    ("BitsStored", (0, 1, 8, 12, 16, 17, 32, 255, 65535, None)),
    ("HighBit", (0, 15, 16, 65535, None)),
    ("PixelRepresentation", (0, 1, 2, 65535, None)),
    ("SamplesPerPixel", (0, 1, 2, 3, 4, 65535, None)),
    ("PlanarConfiguration", (0, 1, 2)),
    ("PhotometricInterpretation", ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "PALETTE COLOR", "", "X" * 64,
                                   None)),
    ("Modality", ("XA", "RF", "CT", "MR", "", "xa", None)),
    ("SOPClassUID", (XA_SOP, CT_SOP, SC_SOP, "1.2.3", "", None)),
    ("PixelSpacing", (["0.1", "0.1"], ["0", "0"], ["-1", "1"], ["nan", "nan"], ["inf", "1"], ["1e308", "1e308"],
                      ["1e-308", "1e-308"], ["0.1"], ["0.1", "0.1", "0.1"], None)),
    ("ImagerPixelSpacing", (["0.2", "0.2"], ["0", "0"], ["-0.2", "0.2"], ["nan", "0.2"], ["1e308", "1e-308"], None)),
    ("DistanceSourceToDetector", ("0", "-1000", "nan", "inf", "1e308", "1e-308", "1000", None)),
    ("DistanceSourceToPatient", ("0", "-750", "nan", "inf", "2000", "1e308", None)),
    ("EstimatedRadiographicMagnificationFactor", ("0", "-1", "nan", "1e-308", "1.3")),
    ("FrameTime", ("0", "-1", "nan", "inf", "1e308", None)),
    ("FrameTimeVector", (["0", "nan", "inf"], ["-1", "-1"], [])),
    ("CineRate", ("0", "-5", "100000")),
    ("WindowCenter", ("nan", "inf", "-1e308", "1000", ["1", "2", "3"])),
    ("WindowWidth", ("0", "-1", "nan", "1e308")),
    ("PositionerPrimaryAngle", ("nan", "inf", "-1e308", "90", "720")),
    ("PositionerSecondaryAngle", ("nan", "-inf", "90")),
    ("PixelIntensityRelationship", ("LIN", "LOG", "DISP", "", None)),
    ("ImageType", (["DERIVED", "PRIMARY", "SUBTRACTION"], [], [""] * 5, ["X" * 16] * 40, None)),
    ("MaskSubtractionSequence", ("frames:0", "frames:-5", "frames:99999", "frames:", "empty", None)),
    ("TransferSyntaxUID", (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED, RLE, JPEG_LS, J2K_LOSSLESS, MPEG2,
                           "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.3", "")),
)


def _mutate_tags(data: bytes, rng: np.random.Generator) -> bytes:
    """Set 1-3 header elements to hostile values with pydicom (the bytes are re-encoded)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        return data
    for _ in range(int(rng.integers(1, 4))):
        kw, values = _TAG_VALUES[int(rng.integers(len(_TAG_VALUES)))]
        value = values[int(rng.integers(len(values)))]
        try:
            if kw == "TransferSyntaxUID":
                ds.file_meta.TransferSyntaxUID = value
            elif kw == "MaskSubtractionSequence":
                if value is None:
                    if kw in ds:
                        del ds[kw]
                elif value == "empty":
                    ds.MaskSubtractionSequence = Sequence([])
                else:
                    item = Dataset()
                    nums = [v for v in value.split(":")[1].split(",") if v]
                    item.MaskFrameNumbers = [int(v) for v in nums] if nums else []
                    ds.MaskSubtractionSequence = Sequence([item])
            elif value is None:
                if kw in ds:
                    del ds[kw]
            else:
                setattr(ds, kw, value)
        except Exception:
            continue
    return _reencode(ds, data)


#: Hostile calibration values: zero, negative, NaN/inf strings, not numbers, extreme and just-outside-plausible sizes.
_CALIBRATION_VALUES = ("1e-30", "1e30", "0", "-0.2", "-1e30", "nan", "inf", "-inf", "abc", "", "1e308", "1e-308",
                       "150", "0.0001", "0.0199", "2.0001", "1000", "0.2")
_CALIBRATION_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "DistanceSourceToPatient", "DistanceSourceToDetector",
                     "EstimatedRadiographicMagnificationFactor")


def _reencode(ds, data: bytes) -> bytes:
    """``ds`` written back as Part 10 bytes (``data`` when pydicom refuses to encode it)."""
    buf = io.BytesIO()
    try:
        with _quiet_warnings():
            ds.save_as(buf, enforce_file_format=False)
    except Exception:
        return data
    out = buf.getvalue()
    return out if out[128:132] == b"DICM" else b"\0" * 128 + b"DICM" + out


def _mutate_calibration(data: bytes, rng: np.random.Generator) -> bytes:
    """Set 1-3 calibration tags to hostile values (or SOD > SID); a raw DS string, so nothing is validated."""
    import pydicom
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    try:
        with _quiet_warnings():
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        return data
    values = list(_CALIBRATION_VALUES)
    edits = {}
    if rng.random() < 0.2:  # the source behind the isocentre: SOD > SID
        sid = float(rng.choice([500.0, 1000.0, 1200.0]))
        edits = {"ImagerPixelSpacing": "0.2\\0.2", "DistanceSourceToDetector": f"{sid:g}",
                 "DistanceSourceToPatient": f"{sid * float(rng.choice([1.01, 1.5, 100.0])):g}"}
    for _ in range(int(rng.integers(1, 4))):
        kw = _CALIBRATION_TAGS[int(rng.integers(len(_CALIBRATION_TAGS)))]
        v = values[int(rng.integers(len(values)))]
        if kw.endswith("Spacing") and rng.random() < 0.5:
            v = f"{v}\\{values[int(rng.integers(len(values)))]}"
        edits[kw] = v
    for kw, v in edits.items():
        tag = Tag(tag_for_keyword(kw))
        raw = v.encode("ascii")
        raw += b" " * (len(raw) % 2)
        ds._dict[tag] = RawDataElement(tag, "DS", len(raw), raw, 0, False, True)
    return _reencode(ds, data)


def _mutate_bits_stored(data: bytes, rng: np.random.Generator) -> bytes:
    """BitsStored below the stored values (a band of high values, or a low BitsStored), above
    BitsAllocated, zero, or a HighBit that disagrees."""
    import pydicom

    try:
        with _quiet_warnings():
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
        bits_alloc = int(ds.get("BitsAllocated", 16) or 16)
        how = int(rng.integers(0, 5))
        if how == 0:  # values above BitsStored all over the image
            bits = int(rng.integers(1, bits_alloc))
            ds.BitsStored, ds.HighBit = bits, bits - 1
        elif how == 1:  # a band of values above BitsStored in native pixel data (e.g. 60000 in a 12-bit run)
            bits = min(12, bits_alloc - 1)
            ds.BitsStored, ds.HighBit = bits, bits - 1
            if str(ds.file_meta.get("TransferSyntaxUID", "")) in (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE):
                px = bytearray(ds.PixelData)
                a = int(rng.integers(0, max(len(px) - 1, 1)))
                b = min(len(px), a + int(rng.integers(2, 400)))
                px[a:b] = bytes([0xFF, 0xEA]) * ((b - a) // 2) + b"\xff" * ((b - a) % 2)
                ds.PixelData = bytes(px)
        elif how == 2:
            ds.BitsStored = bits_alloc + int(rng.integers(1, 17))
        elif how == 3:
            ds.BitsStored = 0
        else:
            ds.HighBit = int(rng.choice([0, 7, 11, 15, 31, 255]))
    except Exception:
        return data
    return _reencode(ds, data)


class _quiet_warnings:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def mutate(data: bytes, rng: np.random.Generator, *, header_bytes: int | None = None) -> tuple[bytes, str]:
    """One fuzzing mutation of a valid file's bytes.

    Most mutations hit the header (the first ``header_bytes``, default: up to the
    pixel data or 600 bytes), where a reader makes its decisions; the rest hit the
    whole file. Returns (new bytes, name of the mutation).
    """
    n = len(data)
    hb = max(8, min(n, header_bytes or 600))
    buf = bytearray(data)
    kind = int(rng.integers(0, 100))

    def pos(header: bool = True) -> int:
        return int(rng.integers(0, hb if (header and rng.random() < 0.8) else max(n, 1)))

    if kind < 22:
        name = "bitflip"
        for _ in range(int(rng.integers(1, 9))):
            p = pos()
            if p < n:
                buf[p] ^= 1 << int(rng.integers(0, 8))
    elif kind < 34:
        name = "byte"
        for _ in range(int(rng.integers(1, 5))):
            p = pos()
            if p < n:
                buf[p] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(0, 256))]))
    elif kind < 50:
        # interesting 16/32-bit integers: value-length fields and US values live at even offsets
        name = "int"
        for _ in range(int(rng.integers(1, 3))):
            p = pos() & ~1
            if rng.random() < 0.5 and p + 2 <= n:
                buf[p:p + 2] = struct.pack("<H", int(rng.choice(_INTERESTING_16)))
            elif p + 4 <= n:
                buf[p:p + 4] = struct.pack("<I", int(rng.choice(_INTERESTING_32)))
    elif kind < 60:
        name = "truncate"
        cut = int(rng.integers(0, n)) if rng.random() < 0.5 else n - int(rng.integers(1, min(n, 64) + 1))
        buf = buf[:max(cut, 0)]
    elif kind < 67:
        name = "delete"
        a = pos()
        b = min(n, a + int(rng.integers(1, 64)))
        del buf[a:b]
    elif kind < 73:
        name = "duplicate"
        a = pos()
        b = min(n, a + int(rng.integers(1, 64)))
        buf[a:a] = buf[a:b]
    elif kind < 78:
        name = "insert"
        a = pos()
        buf[a:a] = rng.integers(0, 256, size=int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    elif kind < 85:
        return _mutate_calibration(data, rng), "calibration"
    elif kind < 91:
        return _mutate_bits_stored(data, rng), "bits"
    else:
        name = "tags"
        return _mutate_tags(data, rng), name
    return bytes(buf), name


def fuzz_input(seeds: list[bytes], base_seed: int, i: int) -> tuple[bytes, str, int]:
    """Fuzzed input number ``i``: 1-3 stacked mutations of seed ``i % len(seeds)``.

    Deterministic in (seeds, base_seed, i), so a crashing input can be rebuilt
    from its number. Returns (bytes, mutation names joined by '+', seed index)."""
    k = i % len(seeds)
    rng = np.random.default_rng([base_seed, i])
    data = seeds[k]
    try:
        header = pixel_data_offset_bytes(data) + 16
    except ValueError:
        header = 600
    names = []
    with _quiet_warnings():
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            data, name = mutate(data, rng, header_bytes=header)
            names.append(name)
    return data, "+".join(names), k


def pixel_data_offset_bytes(data: bytes) -> int:
    """Offset of the Pixel Data value in an encoded file (see :func:`pixel_data_offset`)."""
    le = data.rfind(b"\xe0\x7f\x10\x00")
    be = data.rfind(b"\x7f\xe0\x00\x10")
    idx, vr = (le, data[le + 4:le + 6]) if le >= be else (be, data[be + 4:be + 6])
    if idx < 0:
        raise ValueError("no Pixel Data element")
    return idx + (12 if vr in (b"OB", b"OW") else 8)


# --------------------------------------------------------------------------- isolated worker
# Some decoders abort the whole process on corrupt data (C++ exceptions escaping
# GDCM), so hostile inputs are read in a child process: a native crash is then a
# finding, not the end of the test session. One child serves many requests
# (one JSON line each way); it is restarted after a crash or a hang.
class IsolatedWorker:
    """A child Python process that runs requests (``read``, ``measure``, ``napari``,
    ``fuzz_read``, ``fuzz_measure``) and survives nothing it should not.

    Parameters
    ----------
    timeout_s : float
        Per-request deadline; past it the child is killed and the request is a ``hang``.
    setup : dict, optional
        Sent once to each new child (e.g. fuzz seeds folder and base seed).
    mem_limit_mb : int, optional
        RLIMIT_AS of the child (a runaway allocation becomes MemoryError, not a dead machine).
    env : dict, optional
        Extra environment for the child.
    """

    def __init__(self, *, timeout_s: float = 60.0, setup: dict | None = None, mem_limit_mb: int | None = None,
                 env: dict | None = None):
        self.timeout_s = float(timeout_s)
        self.setup = dict(setup or {})
        self.mem_limit_mb = mem_limit_mb
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env,
            text=True, bufsize=1,
        )
        setup = {**self.setup, "mem_limit_mb": self.mem_limit_mb}
        ready = self._ask({"op": "setup", **setup}, timeout_s=max(self.timeout_s, 120.0))
        if ready.get("status") != "ok":
            raise RuntimeError(f"isolated worker failed to start: {ready}")

    def _ask(self, request: dict, *, timeout_s: float) -> dict:
        import selectors

        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._dead()
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout_s):
                self.kill()
                return {"status": "hang", "type": "timeout", "message": f"no answer in {timeout_s:g} s"}
            line = self.proc.stdout.readline()
        finally:
            sel.close()
        if not line:
            return self._dead()
        return json.loads(line)

    def _dead(self) -> dict:
        assert self.proc is not None
        rc = self.proc.wait(timeout=10)
        self.proc = None
        sig = -rc if rc < 0 else None
        import signal as _signal

        name = _signal.Signals(sig).name if sig else f"exit {rc}"
        return {"status": "crash", "type": "native", "message": f"worker process died ({name})", "returncode": rc}

    def call(self, request: dict, *, timeout_s: float | None = None) -> dict:
        """Run one request; returns the child's answer or a ``crash``/``hang`` record."""
        if self.proc is None:
            self._start()
            self.restarts += 1
        out = self._ask(request, timeout_s=timeout_s or self.timeout_s)
        return out

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.kill()
            self.proc = None

    def __enter__(self) -> "IsolatedWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe_exception(exc: BaseException) -> dict:
    import traceback

    from stenosis.errors import StenosisError

    declared = isinstance(exc, StenosisError)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno} in {tb[-1].name}" if tb else ""
    return {
        "status": "error" if declared else "crash",
        "type": type(exc).__name__,
        "message": str(exc),
        "where": "" if declared else where,
        "traceback": "" if declared else "".join(traceback.format_exception(exc))[-4000:],
    }


def measure_function():
    """The public ``stenosis.measure`` function."""
    import stenosis

    return stenosis.measure


def _summarise_run(run) -> dict:
    return {
        "shape": list(run.frames.shape),
        "dtype": str(run.frames.dtype),
        "calibration": run.calibration.to_dict(),
        "warnings": list(run.warnings),
        "run_id": run.metadata.run_id,
    }


def run_contract_problem(run) -> str | None:
    """What is wrong with a run that was read, or None: frames (T, H, W) non-empty, a calibration
    inside the plausible range, values inside BitsStored."""
    from stenosis.calibration import is_plausible_mm

    if run.frames.ndim != 3 or 0 in run.frames.shape:
        return f"frames shape {run.frames.shape}"
    mm = run.calibration.mm_per_px
    if mm is not None and not all(is_plausible_mm(v) for v in mm):
        return f"implausible calibration {mm}"
    bits = run.metadata.bits_stored
    if run.frames.dtype.kind == "u" and bits < run.frames.dtype.itemsize * 8 and int(run.frames.max()) >> bits:
        return f"values above BitsStored {bits}"
    return None


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Worker:
    def __init__(self) -> None:
        self.seeds: list[bytes] = []
        self.base_seed = 0
        self.tmp = None
        self.measure_seeds: list[dict] = []

    def setup(self, req: dict) -> dict:
        if req.get("mem_limit_mb"):
            import resource

            limit = int(req["mem_limit_mb"]) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import tempfile
        import warnings

        warnings.simplefilter("ignore")
        import stenosis  # noqa: F401 - import cost paid once, before the first deadline
        from stenosis import io as _io  # noqa: F401

        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.tmp = Path(tempfile.mkdtemp(prefix="stenosis-fuzz-", dir=base))
        if req.get("seeds_dir"):
            paths = sorted(Path(req["seeds_dir"]).glob("*.dcm"))
            self.seeds = [p.read_bytes() for p in paths]
        self.base_seed = int(req.get("base_seed", 0))
        self.measure_seeds = list(req.get("measure_seeds", []))
        if req.get("warm_measure"):
            measure_function()  # import torch and the model now, not under the first deadline
        return {"status": "ok", "n_seeds": len(self.seeds)}

    def read(self, req: dict) -> dict:
        import tracemalloc

        import stenosis

        trace = bool(req.get("trace"))
        if trace:
            tracemalloc.start()
        t0 = time.perf_counter()
        try:
            run = stenosis.read_run(req["path"])
            out = {"status": "ok", **_summarise_run(run)}
        except BaseException as exc:  # noqa: BLE001 - classify everything
            out = _describe_exception(exc)
        out["seconds"] = time.perf_counter() - t0
        if trace:
            out["peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
        return out

    def fuzz_read(self, req: dict) -> dict:
        import stenosis

        i = int(req["i"])
        data, how, k = fuzz_input(self.seeds, self.base_seed, i)
        path = self.tmp / "input.dcm"
        path.write_bytes(data)
        try:
            run = stenosis.read_run(path)
            broken = run_contract_problem(run)
            out = {"status": "crash", "type": "contract", "message": broken} if broken else {"status": "ok"}
        except BaseException as exc:  # noqa: BLE001
            out = _describe_exception(exc)
        out.update(i=i, mutation=how, seed=k, size=len(data), rss_mb=_peak_rss_mb())
        return out

    def measure(self, req: dict) -> dict:
        import stenosis

        t0 = time.perf_counter()
        try:
            target = req["path"]
            if req.get("pixel_mm"):
                from stenosis.calibration import manual_calibration

                target = stenosis.read_run(target).with_calibration(manual_calibration(float(req["pixel_mm"])))
            kwargs = dict(req.get("kwargs", {}))
            for k in ("proximal", "distal"):
                if k in kwargs and isinstance(kwargs[k], list):
                    kwargs[k] = tuple(kwargs[k])
            res = measure_function()(target, **kwargs)
            out = {"status": "ok", "result": json.loads(json.dumps(res.to_dict(), default=str))}
        except BaseException as exc:  # noqa: BLE001
            out = _describe_exception(exc)
        out["seconds"] = time.perf_counter() - t0
        return out

    def fuzz_measure(self, req: dict) -> dict:
        """Measure a mutated seed with mutated points (seed list: {path, segment, proximal, distal})."""
        import stenosis

        i = int(req["i"])
        rng = np.random.default_rng([self.base_seed, 7, i])
        spec = self.measure_seeds[i % len(self.measure_seeds)]
        data = Path(spec["path"]).read_bytes()
        how = "none"
        u = rng.random()
        if u < 0.25:  # hostile header values (calibration, sizes, bits, frame time, mask frames, ...)
            with _quiet_warnings():
                data, how = _mutate_tags(data, rng), "tags"
        elif u < 0.4:
            data, how = (_mutate_calibration(data, rng), "calibration") if rng.random() < 0.7 else \
                (_mutate_bits_stored(data, rng), "bits")
        elif u < 0.7:  # damage inside the pixel data: the run still reads, the image is hostile
            start = pixel_data_offset_bytes(data)
            buf = bytearray(data)
            for _ in range(int(rng.integers(1, 200))):
                p = int(rng.integers(start, len(buf)))
                buf[p] = int(rng.choice([0, 0xFF, int(rng.integers(0, 256))]))
            data, how = bytes(buf), "pixels"
        elif u < 0.85:
            data, how = mutate(data, rng, header_bytes=pixel_data_offset_bytes(data) + 16)
        prox, dist = list(spec["proximal"]), list(spec["distal"])
        pm = int(rng.integers(0, 8))
        if pm == 1:
            prox, dist = dist, prox
        elif pm == 2:
            dist = [float(dist[0]) + float(rng.normal(0, 4)), float(dist[1]) + float(rng.normal(0, 4))]
        elif pm == 3:
            dist = [float(rng.choice([-1e9, -5, 1e9, float("nan"), float("inf")])), dist[1]]
        elif pm == 4:
            dist = list(prox)
        elif pm == 5:
            prox = [float(prox[0]) + float(rng.integers(-40, 40)), float(prox[1])]
        path = self.tmp / "measure_input.dcm"
        path.write_bytes(data)
        kwargs = {"segment": spec.get("segment", "M1"), "proximal": tuple(prox), "distal": tuple(dist)}
        if rng.random() < 0.2:
            kwargs["frame"] = int(rng.choice([-1, 0, 1, 2, 10**6]))
        if rng.random() < 0.15:
            kwargs["pixel_mm"] = float(rng.choice([1e-30, 1e-4, 0.0199, 0.02, 2.0, 2.0001, 10.0, 150.0, 1e30, -1.0,
                                                   float("nan"), float("inf")]))
        try:
            res = measure_function()(path, **kwargs)
            d = res.to_dict()
            out = {"status": "ok"}
            ps = d.get("percent_stenosis")
            if ps is not None and not (isinstance(ps, (int, float)) and 0.0 <= ps <= 100.0):
                out = {"status": "crash", "type": "contract", "message": f"percent_stenosis {ps!r} outside 0-100"}
        except BaseException as exc:  # noqa: BLE001
            out = _describe_exception(exc)
        out.update(i=i, mutation=f"{how}/points{pm}", size=len(data), seed_run=Path(spec["path"]).name, rss_mb=_peak_rss_mb(),
                   kwargs={k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
        if out["status"] == "ok":
            out["result"] = {k: d.get(k) for k in ("percent_stenosis", "mld_px", "reference_diameter_px", "mld_rc",
                                                   "reference_rc", "frame_index", "warnings")}
        return out

    def read_runs(self, req: dict) -> dict:
        """``stenosis.read_runs`` over a folder: runs read, errors collected, nothing raised."""
        from stenosis.io import read_runs

        errors: list = []
        try:
            runs = [r.source for r in read_runs(req["path"], errors=errors)]
        except BaseException as exc:  # noqa: BLE001
            return _describe_exception(exc)
        return {"status": "ok", "runs": runs, "errors": [[str(e.source), e.message] for e in errors]}

    def selftest(self, req: dict) -> dict:
        """Misbehave on purpose so the harness can be tested: abort, sleep, raise."""
        what = req.get("what")
        if what == "abort":
            os.abort()
        if what == "sleep":
            time.sleep(3600)
        try:
            if what == "raise":
                1 / 0
            if what == "declared":
                from stenosis.errors import InputError

                raise InputError("declared error for the harness test")
        except BaseException as exc:  # noqa: BLE001
            return _describe_exception(exc)
        return {"status": "ok"}

    def napari(self, req: dict) -> dict:
        try:
            from napari_stenosis._reader import napari_get_reader

            reader = napari_get_reader(req["path"])
            if reader is None:
                return {"status": "none"}
            layers = reader(req["path"])
            return {"status": "ok", "n_layers": len(layers)}
        except BaseException as exc:  # noqa: BLE001
            return _describe_exception(exc)


def _worker_main() -> None:
    worker = _Worker()
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        try:
            out = getattr(worker, op)(req)
        except BaseException as exc:  # noqa: BLE001 - the worker itself must not die on a Python error
            out = {"status": "crash", "type": f"worker:{type(exc).__name__}", "message": str(exc)}
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker_main()


# --------------------------------------------------------------------------- phantom runs for measure tests
#: Small, fast phantom: one M1 artery, no branches, 60% stenosis, 160x160 at 0.2 mm/px, 4 frames.
PHANTOM_BASE = dict(seed=1, shape=(160, 160), n_frames=4, n_mask_frames=1, arrival_frames=1, stenosis_percent=60.0,
                    crossing=False, n_branches=0, mm_per_px=(0.2, 0.2))


def phantom_run(folder: str | os.PathLike, name: str, **overrides) -> tuple[Path, dict]:
    """Write a phantom run (``PHANTOM_BASE`` with ``overrides``) and return (path, truth dict)."""
    from stenosis.phantom import PhantomSpec, load_truth, make_phantom

    path = Path(folder) / f"{name}.dcm"
    if not path.exists():
        make_phantom(PhantomSpec(**{**PHANTOM_BASE, **overrides}), path)
    return path, load_truth(path)


def occluded_tube(rows: int = 64, cols: int = 96, *, diameter_px: float = 10.0, gap: tuple[int, int] = (44, 52),
                  noise: float = 30.0) -> np.ndarray:
    """:func:`tube_frames` without a stenosis but with no contrast at all over columns ``gap``
    in the opacified frames: a total occlusion (MLD 0, 100% stenosis)."""
    fr = tube_frames(rows, cols, 3, diameter_px=diameter_px, stenosis=0.0, noise=noise)
    fr[1:, :, gap[0]:gap[1]] = fr[0, :, gap[0]:gap[1]]
    return fr
