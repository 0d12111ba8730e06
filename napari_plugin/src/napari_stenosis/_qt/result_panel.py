"""The result dock: diameter-profile plot (matplotlib in Qt), warnings, then tabs: the result
table and the frames combined (per-frame plot and a checkable list: uncheck a frame to drop
it, check it to restore it)."""
from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QAbstractItemView, QFrame, QHBoxLayout, QHeaderView, QLabel, QListWidget,
                            QListWidgetItem, QScrollArea, QSizePolicy, QTableWidget, QTableWidgetItem, QTabWidget,
                            QVBoxLayout, QWidget)

from .._model import for_napari, frame_items, frames_tab_title, result_table
from .._plot import FRAMES_HELP, draw_frames, draw_profile

__all__ = ["ProfilePlot", "FramesPlot", "FramesList", "FramesView", "ResultTable", "ResultPanel", "WarningsLabel",
           "Unsqueezed", "scroll_area"]


class Unsqueezed(QWidget):
    """A widget whose height for a width is the least its rows need at that width: wrapped
    labels at their wrapped height, every other row at its minimum (not its preferred) height.

    napari's docks (a QMainWindow's) do not ask a height-for-width layout how tall it must be,
    and gave it less: rows were drawn over each other. In :func:`scroll_area` the content is
    never shorter than this: a short dock scrolls instead.
    """

    def heightForWidth(self, width: int) -> int:
        layout = self.layout()
        if layout is None or not layout.hasHeightForWidth():
            return super().heightForWidth(width)
        m = self.contentsMargins()
        return layout.minimumHeightForWidth(width - m.left() - m.right()) + m.top() + m.bottom()

    def needed_height(self, width: int) -> int:
        """The height the rows need at ``width`` (none squeezed)."""
        return max(self.heightForWidth(width), self.minimumSizeHint().height())


class _ScrollArea(QScrollArea):
    """A scroll area as wide as its content's minimum and a vertical scroll bar (a dock
    narrower than that cut the buttons on the right)."""

    _content_width = 0

    def minimumSizeHint(self):
        size = super().minimumSizeHint()
        content = self.widget()
        if content is not None:
            self._content_width = content.minimumSizeHint().width()
            size.setWidth(max(size.width(), self._content_width + self.verticalScrollBar().sizeHint().width()
                              + 2 * self.frameWidth()))
        return size

    def eventFilter(self, obj, event):
        # the content's minimum width is known once the theme is applied: ask the dock again
        if (obj is self.widget() and event.type() == QEvent.LayoutRequest
                and obj.minimumSizeHint().width() != self._content_width):
            self.updateGeometry()
        return super().eventFilter(obj, event)


def scroll_area(content: QWidget) -> QScrollArea:
    """``content`` in a frameless scroll area that resizes it (a short dock scrolls it)."""
    area = _ScrollArea()
    area.setFrameShape(QFrame.NoFrame)
    area.setWidgetResizable(True)
    area.setWidget(content)
    return area


class _ResultCanvas(FigureCanvasQTAgg):
    """A matplotlib canvas that draws one result with ``_draw(ax, result)`` (None: a placeholder)."""

    _draw: Any = None

    def __init__(self, figure: Figure, parent: QWidget | None = None):
        self.figure = figure
        super().__init__(self.figure)
        self.setParent(parent)
        self.ax = self.figure.add_subplot(111)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def show_result(self, result: Any) -> None:
        type(self)._draw(self.ax, result)
        self.draw_idle()

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt's name
        event.ignore()  # the plots do not zoom: the wheel scrolls the result dock


class ProfilePlot(_ResultCanvas):
    """Diameter along the centerline, MLD and reference marked."""

    _draw = staticmethod(draw_profile)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Figure(figsize=(4.5, 3.0), dpi=90, tight_layout=True), parent)
        self.setMinimumHeight(180)  # with the tabs below (~150 px): the result dock fits a 940 px window
        self.show_result(None)


class FramesPlot(_ResultCanvas):
    """Percent stenosis per frame with 1-SD bars, the combined value, frame-to-frame SD."""

    _draw = staticmethod(draw_frames)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(Figure(figsize=(3.0, 1.6), dpi=90, layout="constrained"), parent)
        self.setToolTip(FRAMES_HELP)
        self.setMinimumSize(180, 100)
        self.show_result(None)


class FramesList(QListWidget):
    """The frames of the result, one a line: used ones checked (uncheck to drop), dropped
    ones unchecked (check to restore), rejected ones greyed with stenosis's reason."""

    #: (frame, keep): the reader checked (keep=True) or unchecked (keep=False) a frame
    frame_toggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSelectionMode(QAbstractItemView.NoSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        # an unchecked box must show on napari's dark theme (its own indicator is dark on dark)
        self.setStyleSheet("QListWidget::indicator:unchecked { border: 1px solid #a0a0a0; border-radius: 2px; }")
        self.setMinimumHeight(40)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Expanding)
        self._filling = False
        self.itemChanged.connect(self._on_item_changed)

    def show_result(self, result: Any, dropped: Any = ()) -> None:
        self._filling = True
        try:
            self.clear()
            for it in frame_items(result, dropped):
                item = QListWidgetItem(it.text)
                item.setData(Qt.UserRole, it.frame)
                item.setToolTip(it.tip)
                if it.checked is None:
                    item.setFlags(Qt.ItemIsEnabled)
                    item.setForeground(QColor("#9a9a9a"))
                else:
                    item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsUserCheckable)
                    item.setCheckState(Qt.Checked if it.checked else Qt.Unchecked)
                    if it.kind == "dropped":
                        item.setForeground(QColor("#ffb347"))
                if it.analysed:
                    f = item.font()
                    f.setBold(True)
                    item.setFont(f)
                self.addItem(item)
        finally:
            self._filling = False
        # as wide as its longest line, no wider: the plot beside it gets the rest
        widest = max(self.sizeHintForColumn(0), self.fontMetrics().horizontalAdvance("00 analysed") + 24)
        self.setFixedWidth(widest + 2 * self.frameWidth() + self.verticalScrollBar().sizeHint().width())

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._filling or not (item.flags() & Qt.ItemIsUserCheckable):
            return
        self.frame_toggled.emit(int(item.data(Qt.UserRole)), item.checkState() == Qt.Checked)

    def states(self) -> dict[int, str]:
        """frame -> its text, for tests: what the list shows."""
        return {int(self.item(i).data(Qt.UserRole)): self.item(i).text() for i in range(self.count())}

    def set_checked(self, frame: int, keep: bool) -> None:
        """Check or uncheck ``frame`` as the reader would (emits :attr:`frame_toggled`)."""
        for i in range(self.count()):
            if int(self.item(i).data(Qt.UserRole)) == int(frame):
                self.item(i).setCheckState(Qt.Checked if keep else Qt.Unchecked)
                return
        raise KeyError(f"frame {frame} is not in the list")


class FramesView(Unsqueezed):
    """The frames combined: a title line, the per-frame plot and the checkable list (its
    wrapped title made the tabs ask for the plot's preferred height, not its minimum)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.label = QLabel("Frames combined (uncheck to drop, check to restore)")
        self.label.setWordWrap(True)
        self.label.setStyleSheet("padding: 0px 2px;")
        self.label.setToolTip(FRAMES_HELP)
        self.plot = FramesPlot(self)
        self.list = FramesList(self)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.list, 0)
        row.addWidget(self.plot, 1)
        layout.addWidget(self.label, 0)
        layout.addLayout(row, 1)

    def show_result(self, result: Any, dropped: Any = ()) -> None:
        self.plot.show_result(result)
        self.list.show_result(result, dropped)


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
        self.setMinimumHeight(110)  # scrolls; leaves the controls above their height

    def show_result(self, result: Any) -> None:
        rows = [] if result is None else result_table(result)
        self.setRowCount(len(rows))
        for i, (label, value) in enumerate(rows):
            key = QTableWidgetItem(label)
            val = QTableWidgetItem(value)
            val.setToolTip(value)
            if label == ">= 50%" and value != "no":  # YES, or a call a reader must confirm
                val.setForeground(QColor("#ff5050" if value.startswith("YES") else "#ffa040"))
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
        warns = [] if result is None else [for_napari(str(w)) for w in (getattr(result, "warnings", ()) or ())]
        self.setText("\n".join(f"\u26a0 {w}" for w in warns))
        self.setVisible(bool(warns))


#: the warnings' box grows to this height, then scrolls
WARNINGS_MAX_PX = 110

STALE_TEXT = ("Out of date: this result was measured before your last change (or its re-measure failed). "
              "Press Measure.")


def _faded():
    from qtpy.QtWidgets import QGraphicsOpacityEffect

    effect = QGraphicsOpacityEffect()
    effect.setOpacity(0.35)
    return effect


class ResultPanel(QWidget):
    """Plot, warnings (in view below the plot), then two tabs: the result table and the
    frames combined (per-frame plot and the checkable list), docked beside the viewer.

    The tabs keep the dock within a laptop screen's height beside the controls (a shorter dock
    scrolls: nothing is drawn over anything else); the Frames tab's title says how many frames
    are used and dropped. :attr:`frame_toggled` (frame, keep) is the reader's check / uncheck
    of a frame.
    """

    frame_toggled = Signal(int, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        # in a scroll area: a short dock scrolls, it never draws the plot over the warnings
        self.content = Unsqueezed()
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(2, 2, 2, 2)
        self.stale_label = QLabel(STALE_TEXT, self.content)
        self.stale_label.setWordWrap(True)
        self.stale_label.setStyleSheet("color: black; background: #ffb347; padding: 3px; font-weight: bold;")
        self.stale_label.setVisible(False)
        self.plot = ProfilePlot(self.content)
        self.warnings = WarningsLabel(self.content)
        self.tabs = QTabWidget(self.content)
        self.table = ResultTable()
        self.frames = FramesView()
        self.tabs.addTab(self.table, "Result")
        self.tabs.addTab(self.frames, "Frames")
        self.tabs.setTabToolTip(1, FRAMES_HELP)
        layout.addWidget(self.stale_label, 0)
        layout.addWidget(self.plot, 3)
        # many warnings (a real single frame has 7) scroll in a box of their own: the tabs stay in view
        self.warnings_box = QScrollArea(self.content)
        self.warnings_box.setWidget(self.warnings)
        self.warnings_box.setWidgetResizable(True)
        self.warnings_box.setFrameShape(QFrame.NoFrame)
        self.warnings_box.setMaximumHeight(WARNINGS_MAX_PX)
        self.warnings_box.setVisible(False)
        layout.addWidget(self.warnings_box, 0)
        layout.addWidget(self.tabs, 2)
        self.scroll = scroll_area(self.content)
        outer.addWidget(self.scroll)
        self.frames.list.frame_toggled.connect(self.frame_toggled)

    def set_stale(self, stale: bool) -> None:
        """Say (above the plot) that the result shown no longer answers the reader's choices; its
        plot and table are greyed until it does."""
        self.stale_label.setVisible(stale)
        self.plot.setEnabled(not stale)
        self.table.setEnabled(not stale)
        self.plot.setGraphicsEffect(_faded() if stale else None)

    def show_result(self, result: Any, dropped: Any = ()) -> None:
        """Show ``result``; ``dropped`` are the reader's dropped frames (the session's, which
        may be ahead of the result while it is re-measured)."""
        self.plot.show_result(result)
        self.warnings.show_result(result)
        self.warnings_box.setVisible(self.warnings.isVisibleTo(self.content) or bool(self.warnings.text()))
        self.warnings_box.setMaximumHeight(min(WARNINGS_MAX_PX, self.warnings.sizeHint().height() + 4))
        self.frames.show_result(result, dropped)
        self.table.show_result(result)
        self.tabs.setTabText(1, frames_tab_title(result))
