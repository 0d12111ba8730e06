"""Widget contribution: the "Measure stenosis" dock widget (see ``_qt/measure_widget.py``)."""
from __future__ import annotations

from ._qt.measure_widget import MeasureWidget

__all__ = ["MeasureStenosisWidget"]


class MeasureStenosisWidget(MeasureWidget):
    """Measure stenosis: artery, two points, Measure, adjust, export.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """
