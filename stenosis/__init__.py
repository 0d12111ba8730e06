"""stenosis: WASID measurement of residual intracranial stenosis on X-ray angiography.

Public API (see SPEC): ``read_run``, ``read_runs``, ``read_image``, ``opacify``, ``measure``,
``vessel_probability``, ``segment_vessels`` and the result types. Names are
resolved lazily so that ``import stenosis`` stays cheap (the CLI start-up
budget is tight) and torch is only imported when a model is used.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .enums import CalibrationSource, ModelName, ReferenceChoice, Segment
from .errors import (
    CalibrationError,
    InputError,
    MeasurementError,
    ReaderInputError,
    MissingExtraError,
    ModelError,
    StenosisError,
)

# public name -> module that defines it
_LAZY = {
    "AngioRun": "stenosis.io",
    "RunMetadata": "stenosis.io",
    "read_run": "stenosis.io",
    "read_runs": "stenosis.io",
    "read_image": "stenosis.io",
    "find_runs": "stenosis.io",
    "is_dicom_file": "stenosis.io",
    "Calibration": "stenosis.calibration",
    "catheter_calibration": "stenosis.calibration",
    "manual_calibration": "stenosis.calibration",
    "opacify": "stenosis.opacification",
    "vessel_probability": "stenosis.segmentation",
    "segment_vessels": "stenosis.segmentation",
    "model_sha256": "stenosis.segmentation",
    "measure": "stenosis.measurement",
    "measure_views": "stenosis.views",
    "ReaderInputs": "stenosis.reader",
    "MeasureParams": "stenosis.params",
    "DEFAULT_PARAMS": "stenosis.params",
    "ViewsResult": "stenosis.views",
    "guess_frame": "stenosis.frames",
    "StenosisResult": "stenosis.result",
    "DiameterProfile": "stenosis.result",
    "phantom": "stenosis.phantom",
    "sample_dir": "stenosis.data",
    "find_lesion": "stenosis.auto",
    "run_batch": "stenosis.batch",
}

__all__ = [
    "__version__",
    "CalibrationSource",
    "ModelName",
    "ReferenceChoice",
    "Segment",
    "StenosisError",
    "InputError",
    "CalibrationError",
    "MeasurementError",
    "ReaderInputError",
    "ModelError",
    "MissingExtraError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    try:
        module_name = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'stenosis' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
