"""Reading XA runs: real WG04 encodings, tiny synthetic files written with pydicom, bad inputs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

from stenosis.enums import CalibrationSource
from stenosis.errors import InputError
from stenosis.io import (
    AngioRun,
    RunReadError,
    RunSource,
    find_runs,
    is_dicom_file,
    read_run,
    read_runs,
    run_id_from_uids,
)

XA_SOP = "1.2.840.10008.5.1.4.1.1.12.1"
CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
SC_SOP = "1.2.840.10008.5.1.4.1.1.7"

LOSSLESS = ["XA1_RLE", "XA1_JPLL", "XA1_JLSL", "XA1_J2KR"]


# --------------------------------------------------------------------------- tiny file writer
def write_xa(
    path: Path,
    frames: np.ndarray,
    *,
    modality: str = "XA",
    sop_class: str = XA_SOP,
    ts: str = ExplicitVRLittleEndian,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    series_uid: str | None = None,
    instance: int = 1,
    samples: int = 1,
    **tags,
) -> Path:
    """Write frames (T, H, W) or (H, W) as a DICOM file; extra keyword tags are set verbatim."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if ts == RLELossless else ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = "Secret^Patient"
    ds.PatientID = "ID-12345"
    ds.Modality = modality
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = int(frames.shape[1]), int(frames.shape[2])
    ds.NumberOfFrames = int(frames.shape[0])
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = bits_stored or frames.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    for k, v in tags.items():
        setattr(ds, k, v)
    little = ts != ExplicitVRBigEndian
    data = frames.astype(frames.dtype.newbyteorder("<" if little else ">"))
    ds.PixelData = data.tobytes()
    if ts == RLELossless:
        ds.compress(RLELossless, frames if frames.shape[0] > 1 else frames[0], encoding_plugin="pydicom")
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(t=3, h=16, w=20, dtype=np.uint16, scale=37):
    return (np.arange(t * h * w).reshape(t, h, w) * scale % 1024).astype(dtype)


# --------------------------------------------------------------------------- WG04 real data
@pytest.fixture(scope="module")
def wg04_unc(wg04_dir):
    return read_run(wg04_dir / "XA1_UNC")


@pytest.mark.parametrize("name", LOSSLESS)
def test_wg04_lossless_equals_uncompressed(wg04_dir, wg04_unc, name):
    run = read_run(wg04_dir / name)
    assert run.frames.shape == (1, 1024, 1024)
    assert run.frames.dtype == np.uint16
    np.testing.assert_array_equal(run.frames, wg04_unc.frames)


@pytest.mark.parametrize("name,tol", [("XA1_J2KI", 8), ("XA1_JLSN", 4)])
def test_wg04_near_lossless_within_tolerance(wg04_dir, wg04_unc, name, tol):
    run = read_run(wg04_dir / name)
    diff = np.abs(run.frames.astype(np.int32) - wg04_unc.frames.astype(np.int32))
    assert diff.max() <= tol
    assert diff.max() > 0  # it really is lossy: the decode is not a copy of UNC


def test_wg04_lossy_12bit_jpeg_decodes_near_uncompressed(wg04_dir, wg04_unc):
    run = read_run(wg04_dir / "XA1_JPLY")
    assert run.frames.shape == (1, 1024, 1024)
    a = run.frames.astype(np.float64).ravel()
    b = wg04_unc.frames.astype(np.float64).ravel()
    assert np.mean(np.abs(a - b)) < 5.0  # 10-bit data, about 50:1 lossy JPEG
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_wg04_metadata_and_uncalibrated(wg04_unc):
    run = wg04_unc
    md = run.metadata
    assert md.modality == "XA" and md.rows == 1024 and md.cols == 1024 and md.n_frames == 1
    assert md.bits_stored == 10 and md.photometric == "MONOCHROME2"
    assert md.transfer_syntax_name == "Explicit VR Little Endian"
    assert run.frames.max() < 1024  # BitsStored = 10
    assert run.calibration.mm_per_px is None and run.calibration.source is CalibrationSource.NONE
    assert any("Secondary Capture" in w for w in run.warnings)
    assert any("mm values are not reported" in w for w in run.warnings)
    assert not run.frames.flags.writeable
    assert len(md.run_id) == 16 and int(md.run_id, 16) >= 0


def test_wg04_folder_lists_each_encoding_as_its_own_run(wg04_dir):
    # the files share Series and SOP Instance UIDs: they must not be stacked into one run
    runs = find_runs(wg04_dir)
    assert len(runs) == 8
    assert all(r.n_files == 1 for r in runs)


# --------------------------------------------------------------------------- synthetic files
def test_multiframe_roundtrip_native_and_rle(tmp_path):
    frames = ramp(t=4)
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless):
        p = write_xa(tmp_path / f"run_{ts}.dcm", frames, ts=ts, bits_stored=10)
        run = read_run(p)
        np.testing.assert_array_equal(run.frames, frames)
        assert run.frames.dtype == np.uint16
        assert run.metadata.transfer_syntax_uid == ts


def test_bits_stored_masks_high_bits(tmp_path):
    frames = ramp(t=2)
    dirty = frames | np.uint16(0xF000)  # garbage above BitsStored, as some modalities write overlays
    run = read_run(write_xa(tmp_path / "a.dcm", dirty, bits_stored=12))
    np.testing.assert_array_equal(run.frames, frames & 0x0FFF)


def test_signed_pixels_sign_extended(tmp_path):
    vals = np.array([[-2048, -1, 0, 1, 2047]], dtype=np.int16)
    stored = (vals.astype(np.int32) & 0x0FFF).astype(np.int16)  # 12-bit two's complement, upper bits 0
    run = read_run(write_xa(tmp_path / "s.dcm", stored[None], bits_stored=12))
    assert run.frames.dtype == np.int16
    np.testing.assert_array_equal(run.frames[0], vals)


def test_monochrome1_inverted_to_displayed(tmp_path):
    frames = ramp(t=1)
    run = read_run(write_xa(tmp_path / "m1.dcm", frames, bits_stored=10, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(run.frames, 1023 - frames)
    assert run.metadata.photometric == "MONOCHROME1"


def test_metadata_tags(tmp_path):
    msq = Dataset()
    msq.MaskOperation = "AVG_SUB"
    msq.MaskFrameNumbers = [1, 2]
    p = write_xa(
        tmp_path / "m.dcm",
        ramp(t=5),
        FrameTime=66.7,
        PositionerPrimaryAngle=-30.5,
        PositionerSecondaryAngle=70.0,
        PixelIntensityRelationship="LOG",
        MaskSubtractionSequence=Sequence([msq]),
        ImageType=["ORIGINAL", "PRIMARY", "SINGLE PLANE"],
        Manufacturer="Acme",
        WindowCenter=[512, 300],
        WindowWidth=1024,
        ImagerPixelSpacing=[0.2, 0.2],
        DistanceSourceToPatient=750.0,
        DistanceSourceToDetector=1200.0,
    )
    run = read_run(p)
    md = run.metadata
    assert md.frame_time_ms == pytest.approx(66.7)
    assert md.primary_angle_deg == pytest.approx(-30.5)
    assert md.secondary_angle_deg == pytest.approx(70.0)
    assert md.pixel_intensity_relationship == "LOG"
    assert md.mask_frames == (0, 1)
    assert md.subtracted is False
    assert md.manufacturer == "Acme"
    assert md.window_center == 512 and md.window_width == 1024
    assert run.calibration.source is CalibrationSource.GEOMETRY
    assert run.calibration.mm_per_px == pytest.approx((0.125, 0.125), rel=1e-6)
    assert not any("angle" in w for w in run.warnings)  # the beam's angle is recorded, not warned about
    d = md.to_dict()
    text = repr(d) + repr(run.to_dict() if hasattr(run, "to_dict") else "")
    assert "Secret" not in text and "ID-12345" not in text
    assert d["mask_frames"] == [0, 1]


def test_frame_time_vector(tmp_path):
    run = read_run(write_xa(tmp_path / "v.dcm", ramp(t=3), FrameTimeVector=[0, 40, 60]))
    assert run.metadata.frame_time_ms == pytest.approx(50.0)


@pytest.mark.parametrize(
    "image_type,subtracted",
    [
        (["DERIVED", "PRIMARY", "SUBTRACTION"], True),
        (["DERIVED", "SECONDARY", "SUBTRACTED"], True),
        (["ORIGINAL", "PRIMARY", "SINGLE PLANE"], False),
    ],
)
def test_subtracted_rule(tmp_path, image_type, subtracted):
    run = read_run(write_xa(tmp_path / "x.dcm", ramp(t=2), ImageType=image_type, RecommendedViewingMode="SUB"))
    assert run.metadata.subtracted is subtracted


def test_run_id_is_keyed_hash_without_identifiers(tmp_path, monkeypatch):
    p = write_xa(tmp_path / "r.dcm", ramp(t=1))
    ds = pydicom.dcmread(p, stop_before_pixels=True)
    run = read_run(p)
    assert run.metadata.run_id == run_id_from_uids(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    monkeypatch.setenv("STENOSIS_ID_KEY", "site-secret")
    assert read_run(p).metadata.run_id != run.metadata.run_id
    for field in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert str(getattr(ds, field)) not in repr(run.metadata)
    assert not any(isinstance(v, Dataset) for v in vars(run).values())


def test_with_calibration_returns_copy(tmp_path):
    from stenosis.calibration import manual_calibration

    run = read_run(write_xa(tmp_path / "c.dcm", ramp(t=1)))
    cal = manual_calibration(0.3)
    run2 = run.with_calibration(cal)
    assert run2.calibration is cal and run.calibration.mm_per_px is None
    assert run2.frames is run.frames
    assert not any("mm values are not reported" in w for w in run2.warnings)


def test_secondary_capture_xa_accepted_with_warning(tmp_path):
    run = read_run(write_xa(tmp_path / "sc.dcm", ramp(t=1), sop_class=SC_SOP))
    assert any("Secondary Capture" in w for w in run.warnings)


def test_rf_modality_accepted(tmp_path):
    run = read_run(write_xa(tmp_path / "rf.dcm", ramp(t=2), modality="RF", sop_class="1.2.840.10008.5.1.4.1.1.12.2"))
    assert run.metadata.modality == "RF"


# --------------------------------------------------------------------------- folders
def test_single_frame_series_grouped_and_sorted(tmp_path):
    series = generate_uid()
    frames = ramp(t=4)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    # written out of order, with names that do not sort by instance, no extension
    for k, inst in enumerate([3, 1, 4, 2]):
        write_xa(sub / f"IMG{9 - k}", frames[inst - 1], series_uid=series, instance=inst, AcquisitionTime=f"1200{inst:02d}.5")
    mf = write_xa(tmp_path / "multi.dcm", ramp(t=3, scale=11))
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "fake.dcm").write_bytes(b"\0" * 300)
    runs = find_runs(tmp_path)
    assert len(runs) == 2
    by_n = sorted(runs, key=lambda r: r.n_files)
    assert by_n[0].paths == (str(mf),)
    series_src = by_n[1]
    assert series_src.n_files == 4
    run = read_run(series_src)
    np.testing.assert_array_equal(run.frames, frames)
    assert run.metadata.n_frames == 4
    assert run.metadata.frame_time_ms == pytest.approx(1000.0)
    assert run.source == str(sub)
    # a folder holding exactly one series reads as that series
    np.testing.assert_array_equal(read_run(sub).frames, frames)
    # the whole folder holds two runs: read_run refuses, read_runs iterates
    with pytest.raises(InputError, match="2 runs"):
        read_run(tmp_path)
    assert sorted(r.n_frames for r in read_runs(tmp_path)) == [3, 4]


def test_read_runs_goes_on_after_bad_file(tmp_path):
    write_xa(tmp_path / "good1.dcm", ramp(t=2))
    p = write_xa(tmp_path / "bad.dcm", ramp(t=2))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 40])  # truncated pixel data
    write_xa(tmp_path / "good2.dcm", ramp(t=3))
    errors: list[RunReadError] = []
    runs = list(read_runs(tmp_path, errors=errors))
    assert sorted(r.n_frames for r in runs) == [2, 3]
    assert len(errors) == 1 and errors[0].source.path == str(p)
    assert "truncated" in errors[0].message
    with pytest.warns(UserWarning, match="truncated"):
        assert len(list(read_runs(tmp_path))) == 2


def test_is_dicom_file(tmp_path):
    good = write_xa(tmp_path / "x", ramp(t=1))
    bad = tmp_path / "y.dcm"
    bad.write_bytes(b"hello")
    assert is_dicom_file(good) and not is_dicom_file(bad)


# --------------------------------------------------------------------------- bad inputs
def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_not_dicom(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"x" * 1000)
    with pytest.raises(InputError, match="not a DICOM file") as ei:
        read_run(p)
    _one_line(ei.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_run(p)


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_run(tmp_path / "nope.dcm")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="no DICOM file"):
        read_run(tmp_path)


def test_truncated_in_header(tmp_path):
    p = write_xa(tmp_path / "t.dcm", ramp(t=2))
    data = p.read_bytes()
    p.write_bytes(data[:200])
    with pytest.raises(InputError) as ei:
        read_run(p)
    _one_line(ei.value)


def test_truncated_in_pixel_data(tmp_path):
    p = write_xa(tmp_path / "t.dcm", ramp(t=2))
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    with pytest.raises(InputError, match="truncated"):
        read_run(p)


def test_truncated_rle(tmp_path):
    p = write_xa(tmp_path / "t.dcm", ramp(t=3), ts=RLELossless)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError):
        read_run(p)


def test_ct_modality_refused(tmp_path):
    p = write_xa(tmp_path / "ct.dcm", ramp(t=1), modality="CT", sop_class=CT_SOP)
    with pytest.raises(InputError, match="modality CT is not X-ray angiography"):
        read_run(p)


def test_no_pixel_data(tmp_path):
    p = write_xa(tmp_path / "n.dcm", ramp(t=1))
    ds = pydicom.dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    with pytest.raises(InputError, match="no pixel data"):
        read_run(p)


def test_rgb_refused(tmp_path):
    rgb = np.zeros((1, 8, 8 * 3), dtype=np.uint8)
    p = write_xa(tmp_path / "rgb.dcm", rgb, samples=3, photometric="RGB")
    ds = pydicom.dcmread(p)
    ds.Columns = 8
    ds.save_as(p)
    with pytest.raises(InputError, match="colour"):
        read_run(p)


def test_oversize_header_refused_before_allocating(tmp_path):
    p = write_xa(tmp_path / "big.dcm", ramp(t=1))
    ds = pydicom.dcmread(p)
    ds.NumberOfFrames = 60
    ds.Rows = ds.Columns = 1024
    ds.save_as(p)
    with pytest.raises(InputError, match="truncated"):
        read_run(p)
    ds.NumberOfFrames = 5000  # 10 GB declared
    ds.save_as(p)
    with pytest.raises(InputError, match="GB limit"):
        read_run(p)


def test_unsupported_transfer_syntax(tmp_path):
    p = write_xa(tmp_path / "mpeg.dcm", ramp(t=1))
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(p)
    with pytest.raises(InputError, match="cannot be decoded"):
        read_run(p)


def test_angiorun_from_array_is_readonly_copy():
    arr = np.ones((2, 4, 5), dtype=np.uint16)
    run = AngioRun.from_array(arr)
    arr[:] = 7
    assert run.frames.max() == 1 and not run.frames.flags.writeable
    with pytest.raises(InputError):
        AngioRun.from_array(np.ones(5))
    assert isinstance(RunSource(("a",)).path, str)


def _encapsulated_file(tmp_path, name, fragments, ts, n_frames, rows=16, cols=20):
    p = write_xa(tmp_path / name, ramp(t=1, h=rows, w=cols))
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = ts
    ds.NumberOfFrames = n_frames
    ds.PixelData = pydicom.encaps.encapsulate(list(fragments))
    ds["PixelData"].VR = "OB"
    ds.save_as(p)
    return p


def test_encapsulated_fewer_fragments_than_frames_refused(tmp_path):
    # one real RLE frame, header declares 1000 frames of 1024x1024 (2 GB): refused from the header
    frame = tmp_path / "one.dcm"
    write_xa(frame, ramp(t=1, h=1024, w=1024), ts=RLELossless)
    frag = next(iter(pydicom.encaps.generate_frames(pydicom.dcmread(frame).PixelData, number_of_frames=1)))
    p = _encapsulated_file(tmp_path, "many.dcm", [frag], RLELossless, 1000, rows=1024, cols=1024)
    with pytest.raises(InputError, match="1 fragment"):
        read_run(p)


@pytest.mark.parametrize(
    "ts,frag,why",
    [
        ("1.2.840.10008.1.2.4.80", b"\xff\xd8\xff\xf7" + bytes(range(200)), "JPEG codestream"),
        ("1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + bytes(range(200)), "JPEG 2000 codestream"),
        ("1.2.840.10008.1.2.4.70", b"\xff\xd8\xff\xc3" + bytes(range(200)), "JPEG codestream"),
        ("1.2.840.10008.1.2.5", bytes(64) + b"\x00" * 16, "RLE frame"),
    ],
)
def test_garbage_codestreams_refused_before_decoding(tmp_path, ts, frag, why):
    # GDCM aborts the process on some of these: they must be refused by the header checks
    p = _encapsulated_file(tmp_path, "g.dcm", [frag] * 3, ts, 3)
    with pytest.raises(InputError, match=why):
        read_run(p)


def test_jpeg_baseline_multiframe_cine(tmp_path):
    # 8-bit lossy JPEG baseline cine, as coronary systems export it (frames encoded with Pillow)
    import io as _io

    from PIL import Image

    rng = np.random.default_rng(0)
    rr, cc = np.mgrid[0:64, 0:80]
    frames = np.stack([
        np.clip(128 + 60 * np.sin(rr / 9.0 + t) * np.cos(cc / 13.0) + rng.normal(0, 2, rr.shape), 0, 255)
        for t in range(12)
    ]).astype(np.uint8)
    encoded = []
    for f in frames:
        buf = _io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=95)
        encoded.append(buf.getvalue())
    p = write_xa(tmp_path / "cine.dcm", frames[:1])
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.PixelData = pydicom.encaps.encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.save_as(p)
    run = read_run(p)
    assert run.frames.shape == frames.shape and run.frames.dtype == np.uint8
    assert np.abs(run.frames.astype(int) - frames).mean() < 2.0
    assert "Baseline" in run.metadata.transfer_syntax_name


# --------------------------------------------------------------------------- decoders in a child process
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="decoders run in a forked child only where fork exists")


@needs_fork
def test_child_decode_returns_what_the_child_wrote():
    from stenosis.io import _decode_in_child

    def fill(out):
        out[:] = np.arange(out.size, dtype=out.dtype).reshape(out.shape)

    out = _decode_in_child(Path("x.dcm"), fill, (2, 3, 4), np.dtype("<u2"), 5.0)
    np.testing.assert_array_equal(out.reshape(-1), np.arange(24))


@needs_fork
def test_child_decoder_abort_becomes_input_error():
    """A C++ exception escaping a codec aborts the process: here only the child dies."""
    from stenosis.io import _decode_in_child

    with pytest.raises(InputError, match="SIGABRT"):
        _decode_in_child(Path("x.dcm"), lambda out: os.abort(), (1, 4, 4), np.dtype("u1"), 5.0)


@needs_fork
def test_child_decoder_spinning_is_stopped_by_its_cpu_budget():
    import time

    from stenosis.io import _decode_in_child, _DecoderStalled

    def spin(out):
        while True:
            pass

    t0 = time.perf_counter()
    with pytest.raises(_DecoderStalled, match="corrupt"):
        _decode_in_child(Path("x.dcm"), spin, (1, 4, 4), np.dtype("u1"), 0.2)
    assert time.perf_counter() - t0 < 5.0  # 0.2 s of CPU; wall time on a loaded machine is a few times that


def test_jpeg_header_with_bits_allocated_32_is_refused_before_gdcm(wg04_dir, tmp_path):
    """Lossless JPEG labelled BitsAllocated 32 aborted GDCM (reliability defect 1)."""
    ds = pydicom.dcmread(wg04_dir / "XA1_JPLL")
    ds.BitsAllocated = 32
    path = tmp_path / "jpll32.dcm"
    ds.save_as(path)
    with pytest.raises(InputError, match="BitsAllocated 32"):
        read_run(path)


def test_unreadable_mask_sequence_is_ignored_with_a_warning(tmp_path):
    """A corrupt value inside a sequence raises lazily in pydicom (reliability defect 2)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    frames = np.full((3, 16, 24), 500, np.uint16)
    path = write_xa(tmp_path / "mask.dcm", frames)
    ds = pydicom.dcmread(path)
    item = Dataset()
    item.MaskOperation = "AVG_SUB"
    ds.MaskSubtractionSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True)
    ds = pydicom.dcmread(path)
    # an odd-length US value: pydicom raises BytesLengthException on first access
    ds.MaskSubtractionSequence[0]._dict[Tag(0x00286110)] = RawDataElement(
        Tag(0x00286110), "US", 3, b"\x01\x00\x02", 0, False, True)
    ds.save_as(path, enforce_file_format=True)
    run = read_run(path)
    assert run.metadata.mask_frames == ()
    assert any("MaskSubtractionSequence" in w and "unreadable" in w for w in run.warnings), run.warnings


def test_scalar_image_type_is_one_value(tmp_path):
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    path = write_xa(tmp_path / "it.dcm", np.full((1, 16, 24), 500, np.uint16))
    ds = pydicom.dcmread(path)
    ds._dict[Tag(0x00080008)] = RawDataElement(Tag(0x00080008), "IS", 2, b"2 ", 0, False, True)
    ds.save_as(path, enforce_file_format=True)
    assert read_run(path).metadata.image_type == ("2",)


def test_truncated_header_says_so(tmp_path):
    path = write_xa(tmp_path / "t.dcm", np.full((2, 16, 24), 500, np.uint16))
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:140])  # preamble, DICM and a few bytes of the meta header
    with pytest.raises(InputError, match="DICOM header is truncated or corrupt; re-export the file"):
        read_run(path)


# --------------------------------------------------------------------------- #15 item 5, #19 item 4
def test_io_is_a_package_by_role():
    """stenosis.io re-exports the names of its role modules (the same objects)."""
    import stenosis.io as io_pkg
    from stenosis.io import decode, header, run, series

    assert io_pkg.read_run is series.read_run and io_pkg.find_runs is series.find_runs
    assert io_pkg.AngioRun is run.AngioRun and io_pkg.RunMetadata is run.RunMetadata
    assert io_pkg.is_dicom_file is header.is_dicom_file and io_pkg._decode_in_child is decode._decode_in_child
    assert set(io_pkg.__all__) <= set(dir(io_pkg))


def test_values_above_bits_stored_are_warned_with_a_count(tmp_path):
    """#19 item 4: a band of 60000 in a 12-bit run is a broken or mislabelled file, never read quietly."""
    frames = ramp(t=2) % 4096
    frames[1, 4:6, :] = 60000
    run = read_run(write_xa(tmp_path / "band.dcm", frames, bits_stored=12))
    warned = [w for w in run.warnings if "BitsStored 12" in w]
    assert len(warned) == 1 and "40 pixel(s)" in warned[0] and "broken or mislabelled" in warned[0], run.warnings
    assert int(run.frames.max()) <= 4095
    clean = read_run(write_xa(tmp_path / "clean.dcm", ramp(t=2) % 4096, bits_stored=12))
    assert not any("BitsStored" in w for w in clean.warnings)


def test_values_beyond_bits_stored_counted_over_a_series_and_signed(tmp_path):
    uid = generate_uid()
    for k in range(3):
        img = (ramp(t=1) % 4096).astype(np.uint16)
        img[0, 0, :k] = 5000  # 0 + 1 + 2 pixels
        write_xa(tmp_path / f"s{k}.dcm", img, bits_stored=12, series_uid=uid, instance=k + 1)
    run = read_run(tmp_path)
    assert any(w.startswith("3 pixel(s)") and "BitsStored 12" in w for w in run.warnings), run.warnings
    signed = np.zeros((1, 4, 4), np.int16)
    signed[0, 0, :2] = (-3000, 2048)  # outside -2048..2047
    run = read_run(write_xa(tmp_path / "signed.dcm", signed, bits_stored=12))
    assert any(w.startswith("2 pixel(s)") and "-2048 to 2047" in w for w in run.warnings), run.warnings


def test_runs_and_results_have_short_reprs():
    """Typing a run or a result in a REPL shows what it is, not its arrays (a result's repr was
    65,000 characters, a run's printed its pixels)."""
    import stenosis

    run = stenosis.read_run(stenosis.sample_dir() / "m1_subtracted_pixelspacing.dcm")
    text = repr(run)
    assert text.startswith("AngioRun(source='m1_subtracted_pixelspacing.dcm'") and "(7, 384, 384)" in text
    assert len(text) < 200 and "[" not in text
    res = stenosis.measure(run, "M1", (181, 138), (193, 308))
    text = repr(res)
    assert text.startswith("StenosisResult(file='m1_subtracted_pixelspacing.dcm', segment='M1'") and len(text) < 400
    assert f"percent_stenosis={res.percent_stenosis:.2f}" in text and "array" not in text
