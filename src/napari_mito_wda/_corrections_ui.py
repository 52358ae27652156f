"""The adapt section's row on the user's corrections: how many corrected objects the next adaptation uses.

:class:`CorrectionsRow` follows the edits of the current image's instances layer (napari's paint, fill
and erase once per stroke, or new data), counts its corrections (_proofread.corrections_of) and
announces them by ``changed(object)`` (core Corrections, or None): a running adaptation takes
them up at its next round. "Forget corrections" stops using them.
"""

from __future__ import annotations

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from ._proofread import corrections_of, forget_corrections
from ._util import same_layer

NONE_TEXT = "No corrected objects: paint, erase, split or merge objects in the instances layer to teach them exactly."


class CorrectionsRow(QWidget):
    """The count of corrected objects and the Forget corrections button."""

    changed = Signal(object)
    status = Signal(str)

    def __init__(self, layer_for, parent: QWidget | None = None):
        super().__init__(parent)
        self._layer_for = layer_for  # () -> the instances layer whose corrections count, or None
        self._watched = None
        self.n_corrected = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.recount)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(NONE_TEXT)
        self.label.setWordWrap(True)
        self.label.setToolTip("Objects you painted, erased, split or merged in the instances layer since the plugin "
                              "wrote it: the adaptation learns them as exact labels (also while it runs), and new "
                              "predictions keep them")
        self.forget_button = QPushButton("Forget corrections")
        self.forget_button.setToolTip("Stop using your edits of the instances layer as labels; the next prediction "
                                      "then replaces them")
        self.forget_button.clicked.connect(self.forget)
        self.forget_button.setEnabled(False)
        layout.addWidget(self.label)
        layout.addWidget(self.forget_button)

    @property
    def layer(self):
        """The instances layer whose corrections are counted."""
        return self._watched

    def watch(self, *_args) -> None:
        """Follow the current instances layer (after the image changed or a layer was added), and count."""
        layer = self._layer_for()
        if not same_layer(layer, self._watched):
            if self._watched is not None:
                for event, slot in ((self._watched.events.paint, self._on_paint),
                                    (self._watched.events.data, self._on_data)):
                    try:
                        event.disconnect(slot)
                    except (TypeError, ValueError, RuntimeError):
                        pass
            self._watched = layer
            if layer is not None:
                layer.events.paint.connect(self._on_paint)
                layer.events.data.connect(self._on_data)
        self.recount()

    def _on_paint(self, *_args) -> None:
        # Once per stroke, as soon as napari has written it (it announces the stroke first), so that a
        # running adaptation's next round has it.
        self._timer.start(0)

    def _on_data(self, *_args) -> None:
        # A little later: the plugin replaces the data before it moves the reference (write_prediction).
        self._timer.start(300)

    def recount(self):
        """Count the corrections now and announce them; return them (core Corrections, or None)."""
        self._timer.stop()
        corr = corrections_of(self._watched) if self._watched is not None else None
        self.n_corrected = 0 if corr is None else corr.n_objects
        self.label.setText(f"{corr.describe()}: used as exact labels" if self.n_corrected else NONE_TEXT)
        self.forget_button.setEnabled(bool(self.n_corrected))
        self.changed.emit(corr)
        return corr

    def forget(self) -> None:
        if self._watched is not None:
            forget_corrections(self._watched)
            self.recount()
            self.status.emit("Corrections forgotten: the next prediction replaces the instances layer.")
