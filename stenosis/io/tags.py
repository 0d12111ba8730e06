"""Readers of single header attributes that tolerate missing, empty and malformed values."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..calibration import find_attribute


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


def _mask_frames(ds: Any, n_frames: int, warns: list[str] | None = None) -> tuple[int, ...]:
    """The mask frames (0-based) the first MaskSubtractionSequence item naming any gives; numbers
    that are not frames of the run are left out, with a line in ``warns``."""
    seq = ds.get("MaskSubtractionSequence", None)
    if not seq:
        return ()
    frames: list[int] = []
    outside: list[str] = []
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
                outside.append(repr(str(n)))
                continue
            if 0 <= idx < n_frames:
                if idx not in frames:
                    frames.append(idx)
            else:
                outside.append(str(idx + 1))
        if frames:
            break  # the first item that names mask frames defines the mask
    if outside and warns is not None:
        warns.append(f"MaskFrameNumbers {', '.join(outside)} are not frames of this run (1..{n_frames}): ignored"
                     + ("" if frames else "; no mask frame is tagged, the mask is found from the frames"))
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
