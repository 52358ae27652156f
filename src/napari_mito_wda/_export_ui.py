"""The dock widget's "Export" box: a Labels layer as a 16-bit instance TIFF + JSON sidecar.

:class:`ExportSection` picks the Labels layer (the one a run just wrote arrives by :meth:`select_labels`)
and writes it with what made it: the image, the model and device (the shared
:class:`~napari_mito_wda._model_state.ModelState`), the clicks (the
:class:`~napari_mito_wda._inputs_ui.InputsSection`). Reports through ``status(str)`` / ``failed(str)``.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QGroupBox, QPushButton, QWidget

from ._inputs_ui import refill
from ._util import layer_named

NO_LABELS = "No labels layer to export: press Predict first (or open a labels layer)."


class ExportSection(QGroupBox):
    """Labels picker and "Export instances…"."""

    status = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer, inputs, state, parent: QWidget | None = None):
        super().__init__("Export", parent)
        self.viewer, self.inputs, self.state = viewer, inputs, state
        el = QFormLayout(self)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Labels layer to export as a 16-bit instance TIFF + JSON sidecar")
        el.addRow("Labels:", self.labels_combo)
        self.export_button = QPushButton("Export instances…")
        self.export_button.clicked.connect(self._on_export_clicked)
        el.addRow(self.export_button)
        ev = viewer.layers.events
        for event in (ev.inserted, ev.removed, ev.reordered, getattr(ev, "renamed", None)):
            if event is not None:
                event.connect(self.refresh_layers)

    def refresh_layers(self, *_args) -> None:
        from napari.layers import Labels

        refill(self.labels_combo, [ly.name for ly in self.viewer.layers if isinstance(ly, Labels)])

    @property
    def labels_layer(self):
        return layer_named(self.viewer, self.labels_combo.currentText())

    def select_labels(self, name: str) -> None:
        self.labels_combo.setCurrentText(name)

    def on_run_started(self, _what: str) -> None:
        self.export_button.setEnabled(False)

    def on_run_finished(self) -> None:
        self.export_button.setEnabled(True)

    def _on_export_clicked(self) -> None:
        layer = self.labels_layer
        if layer is None:
            self.failed.emit(NO_LABELS)
            return
        # Exports never replace files (the TIFF or its JSON sidecar): Qt's own "replace?" question is
        # switched off so the user is not asked to confirm something that will then be refused;
        # export_labels() reports an existing file clearly and the user picks another name.
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export instances",
            f"{layer.name}.tif",
            "TIFF (*.tif *.tiff)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.export_labels(path, overwrite=False)

    def export_labels(self, path: str | Path, overwrite: bool = False) -> list[str] | None:
        """Write the chosen labels layer as TIFF + JSON sidecar; return the paths, or None on error."""
        from ._writer import save_labels_with_sidecar

        layer = self.labels_layer
        if layer is None:
            self.failed.emit(NO_LABELS)
            return None
        meta = dict(layer.metadata.get("mito_wda", {}))
        image = layer_named(self.viewer, meta.get("image", "")) or self.inputs.image_layer
        points = self.inputs.points_layer
        n, m = self.inputs.click_counts()
        extra = {
            "source": "Mitochondria (WDA) widget",
            "image": meta.get("image", image.name if image is not None else None),
            "model_path": meta.get("model_path", self.state.path),
            "device": meta.get("device", self.state.device),
            "prediction": {k: meta[k] for k in ("seconds", "flips", "link_3d") if k in meta},
            "adaptation": meta.get("adaptation"),
            "n_clicks": n,
            "n_click_slices": m,
            "points_layer": points.name if points is not None else None,
            "centres_image_coords": self.inputs.centres_in_image_coords(image),
        }
        try:
            written = save_labels_with_sidecar(
                path,
                layer.data,
                scale=layer.scale,
                units=getattr(layer, "units", None),
                layer_name=layer.name,
                extra=extra,
                overwrite=overwrite,
            )
        except (OSError, ValueError) as exc:  # FileExistsError, InputError (no folder), disk full ...
            self.failed.emit(f"Export failed: {exc}")
            return None
        self.status.emit(f"Exported {layer.name!r} to {written[0]} (+ {Path(written[1]).name}).")
        return written
