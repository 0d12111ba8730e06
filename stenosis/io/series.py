"""Reading runs: one file, a single-frame series, or every run of a folder."""
from __future__ import annotations

import hashlib
from dataclasses import replace
import math
import os
import warnings as _warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..calibration import NO_MM_WARNING, Calibration, calibration_from_dataset, find_attribute, positioner_angles
from ..errors import InputError
from .decode import _NATIVE_TS, _read_encapsulated, _read_native, _fix_values
from .intensity import infer_intensity_relationship
from .header import _XA_SOP_CLASSES, MAX_DECODED_BYTES, _check_modality, _check_pixels, _open_header, is_dicom_file
from .run import AngioRun, RunMetadata, RunReadError, RunSource, run_id_from_uids
from .tags import (_acq_seconds, _first_float, _frame_time_ms, _image_type, _int_tag, _is_subtracted, _mask_frames,
                   _pir, _str_tag)


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
        mask_frames=_safe(warns, "MaskSubtractionSequence (mask frames)", lambda: _mask_frames(ds, n_frames, warns), ()),
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
    info["beyond_bits_stored"] = _fix_values(frames, info["bits_stored"], info["pixel_rep"] == 1, info["photometric"])
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
    if info.get("beyond_bits_stored"):
        warns.append(_beyond_bits_warning(info["beyond_bits_stored"], frames.size, info["bits_stored"],
                                          info["pixel_rep"] == 1))
    meta = _metadata(ds, info, frames.shape[0], info["ts"], frame_time_ms, warns)
    if meta.pixel_intensity_relationship is None and not meta.subtracted:
        rel, slope = infer_intensity_relationship(frames, meta.mask_frames)
        if rel is not None:
            meta = replace(meta, pixel_intensity_relationship=rel, intensity_relationship_inferred=True)
            warns.append(f"PixelIntensityRelationship missing: read as {rel} (stored values "
                         f"{'proportional to intensity' if rel == 'LIN' else 'logarithmic'}: the noise of the first "
                         f"frames {'grows' if rel == 'LIN' else 'falls'} with the value, log-log slope {slope:+.1f}); "
                         "re-export with the tag if this is wrong")
        elif frames.shape[0] >= 2:
            warns.append("PixelIntensityRelationship missing: pixel values taken as log-scaled for subtraction "
                         "(the noise of the first frames could not tell)")
        else:
            warns.append("PixelIntensityRelationship missing: the frame's contrast is read relative to the "
                         "brightness behind the vessel (as if stored values were proportional to intensity); "
                         "re-export with the tag (LIN or LOG) for an exact reading")
    frames.flags.writeable = False
    return AngioRun(frames=frames, calibration=cal, metadata=meta, source=source, warnings=tuple(dict.fromkeys(warns)))


def _beyond_bits_warning(n: int, total: int, bits_stored: int, signed: bool) -> str:
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    return (
        f"{n} pixel(s) ({100.0 * n / max(total, 1):.3g}% of the run) hold values beyond BitsStored {bits_stored} "
        f"({lo} to {hi}): the file is broken or mislabelled; they were read as their low {bits_stored} bits, "
        "so check the image and re-export the run before grading it"
    )


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
        info0["beyond_bits_stored"] += info["beyond_bits_stored"]
        times.append(_acq_seconds(ds))
    frame_time = None
    if per_file == 1 and all(t is not None for t in times) and n > 1:
        steps = np.diff(np.asarray(times, dtype=float))
        steps = steps[steps > 0]
        if steps.size:
            frame_time = float(np.median(steps) * 1000.0)
    return _finish(out, ds0, info0, warns, src.path, frame_time)


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
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if isinstance(path, RunSource):
        src = path
    elif not isinstance(path, (str, os.PathLike)):
        raise InputError(f"read_run takes a path (str or pathlib.Path) or a RunSource, got {type(path).__name__}")
    else:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
        if p.is_dir():
            runs = find_runs(p)
            if not runs:
                from .header import folder_image_hint

                raise InputError(f"{p}: no DICOM file found in this folder; pass a DICOM XA file or a folder of them"
                                 + folder_image_hint(p))
            if len(runs) > 1:
                raise InputError(
                    f"{p}: folder holds {len(runs)} runs; pass one of its files, or measure them all with 'stenosis batch' (Python: stenosis.read_runs)"
                )
            src = runs[0]
        elif p.name.upper() == "DICOMDIR":
            raise InputError(f"{p}: a DICOMDIR (the media's index of its files, not an image); pass the folder that "
                             "holds the run, or its image file")
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
    # pydicom warns on bad values when they are read (NumberOfFrames 'abc'), not only when parsed: the
    # header problems are reported when the run is read, not as library warnings here
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                if name.upper() == "DICOMDIR" or not os.path.isfile(p) or not is_dicom_file(p):
                    continue  # a DICOMDIR is the media's index, not a run
                try:
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


#: file names that say DICOM: such a file that is not one is reported, not skipped
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def named_dicom_not_runs(folder: str | os.PathLike, sources: list[RunSource]) -> list[Path]:
    """Files under ``folder`` named like DICOM (:data:`DICOM_SUFFIXES`) that are in none of
    ``sources`` (:func:`find_runs` skips files without the DICOM preamble: empty, truncated, text),
    sorted: a user who named them so expects to hear why they were not read."""
    return [q for q, _ in _files_besides(folder, (f for src in sources for f in src.paths))
            if q.name.lower().endswith(DICOM_SUFFIXES)]


def files_not_read(folder: str | os.PathLike, read: Iterable[str | os.PathLike]) -> list[Path]:
    """Files under ``folder`` that are not among the ``read`` paths (the runs' files and the
    :func:`named_dicom_not_runs` reported on their own): not DICOM (a picture export, a text file),
    which :func:`find_runs` skips; hidden files and folders and DICOMDIR left out. Sorted; a user
    should hear that they were skipped."""
    return [q for q, hidden in _files_besides(folder, read) if not hidden and q.name.upper() != "DICOMDIR"]


def _files_besides(folder: str | os.PathLike, read: Iterable[str | os.PathLike]) -> Iterator[tuple[Path, bool]]:
    """(file, hidden) for each file under ``folder`` (sorted walk) that is not one of ``read``;
    ``hidden``: the file or a folder on its way below ``folder`` is named with a leading dot."""
    base = Path(folder).absolute()
    seen = {str(Path(f).absolute()) for f in read}
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        below = Path(dirpath).relative_to(base).parts
        for name in sorted(filenames):
            q = Path(dirpath) / name
            if str(q) not in seen:
                yield q, any(part.startswith(".") for part in (*below, name))


def skipped_note(folder: str | os.PathLike, files: list[Path]) -> str:
    """One line naming the files :func:`files_not_read` found (at most 3 shown), with the way to read
    picture exports when there are some; ``""`` when none."""
    if not files:
        return ""
    base = Path(folder).absolute()
    rel = [str(p.relative_to(base)) if p.is_relative_to(base) else str(p) for p in files]
    shown = ", ".join(rel[:3]) + (f" and {len(rel) - 3} more" if len(rel) > 3 else "")
    from .header import image_hint

    hint = next((h for h in map(image_hint, files) if h), "")
    return f"skipped {len(files)} file{'s' if len(files) > 1 else ''} that {'are' if len(files) > 1 else 'is'} not DICOM ({shown}){hint}"


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
