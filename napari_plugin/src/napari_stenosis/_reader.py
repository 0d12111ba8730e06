"""napari reader for X-ray angiography DICOM runs (files and folders).

The reader claims a path only when it looks like DICOM (the ``DICM`` magic of
the Part 10 preamble, PS3.10 section 7.1) and leaves everything else to other
readers by returning None. Reading itself is :func:`stenosis.read_run`, which
also resolves the isocentre calibration; the image layer gets

* ``data``: the frames (T, H, W) as displayed (vessels darker);
* ``scale``: (1, row_mm, col_mm) from the calibration, 1 when uncalibrated, so
  distances measured in the viewer are mm at the isocentre;
* ``contrast_limits``: the DICOM window (centre +- width / 2) when it overlaps
  the data, else the 0.5 / 99.5 percentiles;
* ``metadata["stenosis"]``: calibration (mm/px, source, derivation), frame time,
  run id (a keyed hash of UIDs, never a patient identifier) and the reader's
  warnings; ``metadata["stenosis_run"]`` keeps the :class:`stenosis.AngioRun`
  itself so that the widget measures exactly what is shown.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from stenosis import is_dicom_file  # the library's Part 10 preamble check (public API)

__all__ = ["napari_get_reader", "read_angio", "run_to_layer_data", "is_dicom_file"]


#: metadata keys set on the image layer
META_KEY = "stenosis"
RUN_KEY = "stenosis_run"

#: folders larger than this are not scanned exhaustively for a DICOM file
_MAX_SCAN = 4000


def _dir_has_dicom(path: Path) -> bool:
    n = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            n += 1
            if n > _MAX_SCAN:
                return False
            if is_dicom_file(os.path.join(root, name)):
                return True
    return False


#: a file named so that is not DICOM (empty, truncated, a text) is claimed too: reading it gives the
#: library's one-line reason ("not a DICOM file ...") instead of napari's "refused the file"
_DICOM_NAMES = (".dcm", ".dicom")


def _claims(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.is_dir():
        return _dir_has_dicom(p)
    return p.is_file() and (is_dicom_file(p) or p.suffix.lower() in _DICOM_NAMES)


def napari_get_reader(path: Any) -> Callable[[Any], list] | None:
    """npe2 reader hook: a reader function for DICOM files/folders, else None.

    Parameters
    ----------
    path : str, path-like or list of them
        What the user dropped or opened.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(isinstance(p, (str, os.PathLike)) and _claims(p) for p in paths):
        return None
    return read_angio


def read_angio(path: Any) -> list[tuple]:
    """Read one or several runs into napari layer data tuples (one image layer each).

    A folder that holds several runs (several multi-frame files) gives one layer
    per run; a folder holding one series gives one layer.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[tuple] = []
    for p in paths:
        for run in _read_runs(Path(p)):
            layers.append(run_to_layer_data(run))
    return layers


def _read_runs(path: Path) -> list:
    """All readable runs of a file or folder; a folder's unreadable runs are skipped
    with a warning (napari shows it), and only a folder with none raises."""
    import warnings

    import stenosis

    if not path.is_dir():
        return [stenosis.read_run(path)]
    sources = stenosis.find_runs(path)
    if len(sources) <= 1:
        return [stenosis.read_run(path)]
    runs, errors = [], []
    for src in sources:
        try:
            runs.append(stenosis.read_run(src))
        except stenosis.InputError as exc:
            errors.append(str(exc))
    if not runs:
        raise stenosis.InputError(f"{path}: none of its {len(sources)} runs could be read ({errors[0]})")
    for message in errors:
        warnings.warn(message, stacklevel=2)
    return runs


def layer_scale(calibration: Any, ndim: int = 3) -> tuple[float, ...]:
    """napari ``scale`` for a layer whose last two axes are (row, col) of a run.

    (..., row_mm, col_mm) from ``calibration.mm_per_px``; all ones when uncalibrated.
    """
    mm = getattr(calibration, "mm_per_px", None)
    row, col = (1.0, 1.0) if mm is None else (float(mm[0]), float(mm[1]))
    return (1.0,) * (ndim - 2) + (row, col)


def layer_units(calibration: Any, ndim: int = 3) -> tuple[str, ...]:
    """napari ``units`` matching :func:`layer_scale`: mm on (row, col) when calibrated, pixels
    otherwise (napari's scale bar reads them)."""
    plane = ("pixel", "pixel") if getattr(calibration, "mm_per_px", None) is None else ("mm", "mm")
    return ("pixel",) * (ndim - 2) + plane


def contrast_limits(frames: np.ndarray, metadata: Any = None) -> tuple[float, float]:
    """Display range from the DICOM window, or the 0.5 / 99.5 percentiles.

    The window is used only when it overlaps the data (some files carry a window
    meant for another LUT stage); a constant image gets a unit-wide range.
    """
    sub = np.asarray(frames[:: max(1, len(frames) // 8)], dtype=np.float64)
    step = max(1, int(np.sqrt(sub[0].size / 65536)))
    sub = sub[:, ::step, ::step]
    lo_d, hi_d = float(sub.min()), float(sub.max())
    centre = _first_float(getattr(metadata, "window_center", None))
    width = _first_float(getattr(metadata, "window_width", None))
    if centre is not None and width is not None and width > 1:
        lo, hi = centre - width / 2.0, centre + width / 2.0
        bits = getattr(metadata, "bits_stored", None)
        if getattr(metadata, "photometric", None) == "MONOCHROME1" and bits:
            # the window applies to stored values; read_run shows v' = (2**bits - 1) - v
            top = float(2 ** int(bits) - 1)
            lo, hi = top - hi, top - lo
        if hi > lo_d and lo < hi_d and (min(hi, hi_d) - max(lo, lo_d)) > 0.05 * (hi_d - lo_d):
            return float(lo), float(hi)
    lo, hi = np.percentile(sub, [0.5, 99.5])
    if not hi > lo:
        lo, hi = lo_d, lo_d + 1.0
    return float(lo), float(hi)


def _first_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def run_metadata(run: Any) -> dict[str, Any]:
    """The layer's ``metadata["stenosis"]``: calibration, frame time, run id, warnings.

    No patient identifiers: only technical fields of :class:`stenosis.RunMetadata`.
    """
    md = run.metadata
    cal = run.calibration
    return {
        "path": str(getattr(run, "source", "")),
        "run_id": getattr(md, "run_id", None),
        "calibration": {**cal.to_dict(), "detail": getattr(cal, "detail", "")},
        "calibration_source": str(cal.source),
        "frame_time_ms": getattr(md, "frame_time_ms", None),
        "n_frames": int(run.frames.shape[0]),
        "modality": getattr(md, "modality", None),
        "subtracted": getattr(md, "subtracted", None),
        "window_center": _first_float(getattr(md, "window_center", None)),
        "window_width": _first_float(getattr(md, "window_width", None)),
        "warnings": list(getattr(run, "warnings", ()) or ()),
    }


def run_to_layer_data(run: Any, *, name: str | None = None) -> tuple:
    """napari layer data tuple ``(frames, kwargs, "image")`` for an :class:`stenosis.AngioRun`."""
    frames = run.frames
    if frames.ndim == 2:  # defensive: the contract is (T, H, W)
        frames = frames[np.newaxis]
    if name is None:
        src = str(getattr(run, "source", "") or "run")
        name = Path(src).name or "run"
        if name.lower().endswith(".dcm"):
            name = name[:-4]
    kwargs = {
        "name": name,
        "scale": layer_scale(run.calibration, frames.ndim),
        "units": layer_units(run.calibration, frames.ndim),
        "contrast_limits": contrast_limits(frames, run.metadata),
        "colormap": "gray",
        "axis_labels": ("frame", "row", "col"),
        "metadata": {META_KEY: run_metadata(run), RUN_KEY: run},
    }
    return frames, kwargs, "image"
