"""Errors the tool declares.

Every message is one line that says what is wrong and what to do. The CLI maps
:class:`StenosisError` (and subclasses) to exit status 3 and a batch to an error
row; anything else escaping the library is a bug.
"""
from __future__ import annotations


class StenosisError(Exception):
    """Base class: an input or request the tool cannot measure."""


class InputError(StenosisError, ValueError):
    """The file or folder is not a readable XA/DSA run (not DICOM, truncated,
    wrong modality, no pixel data, unsupported encoding, ...)."""


class CalibrationError(StenosisError, ValueError):
    """A calibration request is inconsistent (e.g. catheter points coincide)."""


class MeasurementError(StenosisError):
    """The run was read but the requested segment cannot be measured
    (points outside the image or far from any vessel, segment too short, ...)."""


class ReaderInputError(MeasurementError, ValueError):
    """The reader's inputs are not valid (unknown segment or reference choice, a point that is not
    (row, col), a frame outside the run, ...): a :class:`MeasurementError`, and a ``ValueError``
    as a bad argument is in Python."""


class ModelError(StenosisError):
    """Shipped model weights are missing or do not match their recorded hash."""


class MissingExtraError(StenosisError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"{package} is needed for this; install it with: pip install 'stenosis[{extra}]'"
        )
