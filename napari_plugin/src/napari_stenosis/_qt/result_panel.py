"""The result dock: diameter-profile plot (matplotlib in Qt) above the result table."""
from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QSizePolicy, QTableWidget, QTableWidgetItem,
                            QVBoxLayout, QWidget)

from .._model import result_table
from .._plot import draw_profile

__all__ = ["ProfilePlot", "ResultTable", "ResultPanel", "WarningsLabel"]


class ProfilePlot(FigureCanvasQTAgg):
    """Diameter along the centerline, MLD and reference marked."""

    def __init__(self, parent: QWidget | None = None):
        self.figure = Figure(figsize=(4.5, 3.0), dpi=90, tight_layout=True)
        super().__init__(self.figure)
        self.setParent(parent)
        self.ax = self.figure.add_subplot(111)
        self.setMinimumHeight(220)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.show_result(None)

    def show_result(self, result: Any) -> None:
        draw_profile(self.ax, result)
        self.draw_idle()


class ResultTable(QTableWidget):
    """Two columns (quantity, value); the >= 50% row is highlighted when met."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["", "value"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setWordWrap(True)
        self.setMinimumHeight(150)  # scrolls; leaves the controls above their height

    def show_result(self, result: Any) -> None:
        rows = [] if result is None else result_table(result)
        self.setRowCount(len(rows))
        for i, (label, value) in enumerate(rows):
            key = QTableWidgetItem(label)
            val = QTableWidgetItem(value)
            val.setToolTip(value)
            if label == ">= 50%" and value == "YES":
                val.setForeground(QColor("#ff5050"))
                f = val.font()
                f.setBold(True)
                val.setFont(f)
            key.setFlags(key.flags() & ~Qt.ItemIsEditable)
            self.setItem(i, 0, key)
            self.setItem(i, 1, val)
        self.resizeRowsToContents()

    def as_dict(self) -> dict[str, str]:
        """What the table shows (label -> value), for tests and copy/paste."""
        return {self.item(i, 0).text(): self.item(i, 1).text() for i in range(self.rowCount())}


class WarningsLabel(QLabel):
    """The result's warnings, word-wrapped, always in view (hidden when there are none)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.PlainText)
        self.setStyleSheet("color: #ffb347; padding: 2px;")
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.setVisible(False)

    def show_result(self, result: Any) -> None:
        warns = [] if result is None else [str(w) for w in (getattr(result, "warnings", ()) or ())]
        self.setText("\n".join(f"\u26a0 {w}" for w in warns))
        self.setVisible(bool(warns))


class ResultPanel(QWidget):
    """Plot, warnings (in view without scrolling) and table, docked beside the viewer."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.plot = ProfilePlot(self)
        self.warnings = WarningsLabel(self)
        self.table = ResultTable(self)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.warnings, 0)
        layout.addWidget(self.table, 2)

    def show_result(self, result: Any) -> None:
        self.plot.show_result(result)
        self.warnings.show_result(result)
        self.table.show_result(result)
