"""napari-stenosis: a napari face of ``stenosis`` for angiographic core-lab readers.

Open an X-ray angiography DICOM run (file or folder), click the proximal and
distal points of the analysed segment, read and adjust the WASID result, and
export it with a record of the reader's choices. Every number comes from the
public ``stenosis`` API (:func:`stenosis.read_run`, :func:`stenosis.measure`,
:func:`stenosis.catheter_calibration`); the plugin holds no measurement logic.

Contributions (``napari.yaml``): a reader, sample data (bundled phantom runs)
and the "Measure stenosis" dock widget.
"""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("napari-stenosis")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
