"""The dock widget's inputs: which image to work on, its pixel size, and the centre clicks on it.

:class:`InputsSection` owns the image picker, the pixel-size field (filled from the image layer's
metadata or scale when the image changes, editable; predict and adapt rescale the image from it to the
model's pixel size) and the image's centre Points layer (``<image> centres``, followed when the image
changes). The other sections ask it for the checked image, its pixel size and the clicks in image
coordinates; it announces ``clicks_changed()`` (a running adaptation takes the new clicks up) and
reports through ``status(str)`` / ``failed(str)``.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._util import layer_named, points_in_image_coords, same_layer

CENTRES_SUFFIX = " centres"


def count_clicks(points_data: np.ndarray) -> tuple[int, int]:
    """(number of points, number of distinct slices they lie on) for (N, 2) or (N, 3) data coordinates."""
    data = np.asarray(points_data)
    n = int(data.shape[0]) if data.ndim == 2 else 0
    if n == 0:
        return 0, 0
    if data.shape[1] < 3:
        return n, 1
    return n, int(np.unique(np.round(data[:, -3]).astype(np.int64)).size)


def clicks_text(n: int, m: int) -> str:
    return f"{n} click{'' if n == 1 else 's'} on {m} slice{'' if m == 1 else 's'}"


def points_layer_on(viewer, image, name: str, **style):
    """The Points layer `name` when there is one, else a new empty one on the image's grid (scale, translation,
    units) with a point size that suits the image."""
    from napari.layers import Points

    layer = layer_named(viewer, name)
    if isinstance(layer, Points):
        return layer
    shape = image.data.shape[-2:]
    size = max(5.0, min(shape) / 30.0)  # in the layer's data units (pixels): napari applies the scale
    # Same units as the image: napari drops the scale bar's units when layers disagree.
    units = getattr(image, "units", None)
    return viewer.add_points(np.empty((0, image.ndim)), ndim=image.ndim, name=name, scale=image.scale,
                             translate=image.translate, size=size, **style,
                             **({"units": units} if units is not None else {}))


def usable_image(layer) -> str | None:
    """None if the layer can be segmented, else why not (used for the picker and for error messages)."""
    from napari.layers import Image

    if not isinstance(layer, Image):
        return f"{layer.name!r} is not an image layer"
    if getattr(layer, "rgb", False):
        return f"{layer.name!r} is an RGB image; convert it to a single-channel (grayscale) image first"
    if getattr(layer, "multiscale", False):
        return f"{layer.name!r} is a multiscale image; open the full-resolution level as a plain image"
    if layer.ndim not in (2, 3):
        return (
            f"{layer.name!r} has {layer.ndim} dimensions; only single-channel 2D (Y, X) or 3D (Z, Y, X) "
            "images are supported (split channels/time points first)"
        )
    return None


def layer_voxel_size(layer):
    """(z, y, x) nm of an image layer: what this plugin's readers recorded, else its scale and units; or None."""
    from ._writer import voxel_size_from_layer

    recorded = (getattr(layer, "metadata", None) or {}).get("mito_wda", {}).get("voxel_size_nm")
    return recorded or voxel_size_from_layer(layer.scale, getattr(layer, "units", None))


def layer_pixel_size(layer) -> float | None:
    """In-plane nm per pixel of an image layer (`layer_voxel_size`)."""
    from .core.data.pixel_size import in_plane

    return in_plane(layer_voxel_size(layer))


def refill(combo: QComboBox, names: list[str]) -> None:
    """Re-fill a layer picker, keeping the current choice where possible (announced only if it changed)."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)
    if combo.currentText() != current:
        combo.currentTextChanged.emit(combo.currentText())


class InputsSection(QWidget):
    """Image picker and centre clicks."""

    clicks_changed = Signal()
    image_changed = Signal(str)  # after the pixel size field shows the new image's
    status = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self._points_layer = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Single-channel 2D or 3D EM image to segment")
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        form.addRow("Image:", self.image_combo)
        self.pixel_size_spin = QDoubleSpinBox()
        self.pixel_size_spin.setRange(0.0, 1000.0)  # core.data.io.MAX_PIXEL_NM; 0 shows "unknown"
        self.pixel_size_spin.setDecimals(2)
        self.pixel_size_spin.setSuffix(" nm")
        self.pixel_size_spin.setSpecialValueText("unknown")
        self.pixel_size_spin.setToolTip(
            "In-plane nm per pixel of the image, read from its file (or layer scale) when the image is picked; "
            "correct it if wrong. The image is rescaled to the model's pixel size for the network and the "
            "results come back on the image's own grid. 0 = unknown: the image is used as it is.")
        form.addRow("Pixel size:", self.pixel_size_spin)
        layout.addLayout(form)

        clicks = QGroupBox("Mitochondria centres")
        cl = QVBoxLayout(clicks)
        self.add_points_button = QPushButton("Add centre points layer")
        self.add_points_button.setToolTip("Create a Points layer in add mode; click the centre of mitochondria")
        self.add_points_button.clicked.connect(self.add_points_layer)
        self.clicks_label = QLabel(clicks_text(0, 0))
        cl.addWidget(self.add_points_button)
        cl.addWidget(self.clicks_label)
        layout.addWidget(clicks)

        ev = viewer.layers.events
        for event in (ev.inserted, ev.reordered, getattr(ev, "renamed", None)):
            if event is not None:
                event.connect(self.refresh_layers)
        ev.removed.connect(self._on_layer_removed)

    # ------------------------------------------------------------ running jobs
    def on_run_started(self, _what: str) -> None:
        self.image_combo.setEnabled(False)  # the running job's image and clicks must not change under it
        self.pixel_size_spin.setEnabled(False)

    def on_run_finished(self) -> None:
        self.image_combo.setEnabled(True)
        self.pixel_size_spin.setEnabled(True)

    # ------------------------------------------------------------ pixel size
    def pixel_size(self) -> float | None:
        """The image's in-plane nm per pixel as the field shows it; None when unknown (0)."""
        value = float(self.pixel_size_spin.value())
        return value if value >= 0.1 else None  # below core.data.io.MIN_PIXEL_NM: no EM image's

    def pixel_size_text(self) -> str:
        nm = self.pixel_size()
        return f"at {nm:g} nm per pixel" if nm else "pixel size unknown: used at the scale it arrives in"

    # ------------------------------------------------------------ image
    def refresh_layers(self, *_args) -> None:
        refill(self.image_combo, [ly.name for ly in self.viewer.layers if usable_image(ly) is None])

    def _on_layer_removed(self, event=None) -> None:
        if same_layer(getattr(event, "value", None), self._points_layer):
            self._set_points_layer(None)
        self.refresh_layers()

    @property
    def image_layer(self):
        return layer_named(self.viewer, self.image_combo.currentText())

    def select_image(self, name: str) -> None:
        self.image_combo.setCurrentText(name)

    def checked_image(self):
        """The selected image layer, or None after reporting why there is none usable."""
        layer = self.image_layer
        if layer is not None and usable_image(layer) is None:
            return layer
        reasons = [r for ly in self.viewer.layers if (r := usable_image(ly)) and "not an image" not in r]
        if reasons:
            self.failed.emit("No usable image: " + "; ".join(reasons) + ".")
        else:
            self.failed.emit("No image layer: open a 2D/3D EM image (File > Open, or a sample) first.")
        return None

    def _on_image_changed(self, name: str) -> None:
        """Show the new image's pixel size; follow its centre points layer (if it has one)."""
        from napari.layers import Points

        image = layer_named(self.viewer, name) if name else None
        self.pixel_size_spin.setValue((layer_pixel_size(image) if image is not None else None) or 0.0)
        candidate = layer_named(self.viewer, f"{name}{CENTRES_SUFFIX}") if name else None
        self._set_points_layer(candidate if isinstance(candidate, Points) else None)
        self.image_changed.emit(name)

    # ------------------------------------------------------------ clicks
    @property
    def points_layer(self):
        return self._points_layer

    def add_points_layer(self):
        """Create (or re-select) the image's centre Points layer in add mode; return it."""
        image = self.checked_image()
        if image is None:
            return None
        layer = points_layer_on(self.viewer, image, f"{image.name}{CENTRES_SUFFIX}", face_color="yellow",
                                border_color="black")
        self._set_points_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.emit(f"Click the centre of mitochondria on a few slices of {image.name!r}.")
        return layer

    def _set_points_layer(self, layer) -> None:
        if self._points_layer is not None:
            try:
                self._points_layer.events.data.disconnect(self._update_clicks)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._points_layer = layer
        if layer is not None:
            layer.events.data.connect(self._update_clicks)
        self._update_clicks()

    def _update_clicks(self, *_args) -> None:
        self.clicks_label.setText(clicks_text(*self.click_counts()))
        self.clicks_changed.emit()

    def click_counts(self) -> tuple[int, int]:
        """(clicks, slices they lie on) of the centre points layer."""
        return count_clicks(self._points_layer.data) if self._points_layer is not None else (0, 0)

    def centres_in_image_coords(self, image) -> list[list[float]]:
        """Centre points as image voxel coordinates (z, y, x) or (y, x), via world coordinates."""
        return points_in_image_coords(self._points_layer, image)
