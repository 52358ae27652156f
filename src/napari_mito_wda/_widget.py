"""Dock widget "Mitochondria (WDA)": pick an image, click centres, predict instances, export them.

Structure (thin; every computation lives in ``core`` and runs through ``_worker``):

* ``MitoWidget`` (a QWidget) owns the controls and the state: the selected image layer, the centre
  points layer it created, the cached model, the running worker.
* Long work (model loading + ``segment_volume``) runs in a napari ``thread_worker`` wrapping the pure
  generator :func:`napari_mito_wda._worker.predict_iter`. Its ``yielded`` reports drive the progress bar,
  its ``returned`` result adds/updates the Labels layer; only these main-thread callbacks touch layers.
* Every user-facing failure goes through :meth:`MitoWidget._fail`: a status line in the widget plus a
  napari error notification, never a traceback.

* "Adapt to this dataset" (the :class:`~napari_mito_wda._adapt_ui.AdaptSection` mixin) fine-tunes the
  model on the clicked centres with the same start/stop/report plumbing (:meth:`_start_worker`); the
  best model then becomes the widget's current model (used by Predict, saved by "Save model…").
"""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._adapt_ui import ADAPT_TEXT, AdaptSection
from ._jobs import alive_only, hold, refused, reported, stop_on_destroy
from ._util import _unwrap, same_layer  # noqa: F401 (re-exported: tests and older callers import them here)

if TYPE_CHECKING:
    import napari

CENTRES_SUFFIX = " centres"
INSTANCES_SUFFIX = " instances"


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


def _usable_image(layer) -> str | None:
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


EDITED_KEY = "mito_wda_edited"  # layer.metadata flag: the user painted on this instances layer


def _mark_edited(layer, *_args) -> None:
    layer.metadata[EDITED_KEY] = True


class MitoWidget(AdaptSection, QWidget):
    """Segment mitochondria in the selected EM image, adapt the model to it, export the instances."""

    INSTANCES_SUFFIX = INSTANCES_SUFFIX

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.model_path: str | None = None  # None = the shipped default model
        self._model = None  # LoadedModel cached between runs (set from the worker's result)
        self._points_layer = None
        self._worker = None
        self._worker_what = "Prediction"
        self._running_button = None
        self._then = None  # callable run once the current worker has finished (e.g. predict after adapt)
        self._watched: set[int] = set()  # instances layers whose paint events we follow
        self._stop_event = threading.Event()
        self._device_text = "detecting…"
        self._init_adapt_state()
        self._build_ui()
        self._connect_viewer()
        stop_on_destroy(self)  # closing napari stops the running job
        self.refresh_layers()
        self._detect_device()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)

        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Single-channel 2D or 3D EM image to segment")
        self.image_combo.currentTextChanged.connect(self._on_image_changed)
        form.addRow("Image:", self.image_combo)
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

        model = QGroupBox("Model")
        ml = QVBoxLayout(model)
        row = QHBoxLayout()
        self.model_label = QLabel("default (shipped)")
        self.model_label.setWordWrap(True)
        row.addWidget(self.model_label, 1)
        ml.addLayout(row)
        buttons = QHBoxLayout()
        self.model_button = QPushButton("Load model…")
        self.model_button.setToolTip("Use a checkpoint (.pt): the shipped source model or one adapted before")
        self.model_button.clicked.connect(self._on_load_model_clicked)
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.setToolTip("Save the adapted model (with its provenance) to reuse it here or in the CLI")
        self.save_model_button.clicked.connect(self._on_save_model_clicked)
        buttons.addWidget(self.model_button)
        buttons.addWidget(self.save_model_button)
        ml.addLayout(buttons)
        self.device_label = QLabel(f"Device: {self._device_text}")
        self.device_label.setToolTip("Where the network runs (set MITO_WDA_DEVICE=cpu to force the CPU)")
        ml.addWidget(self.device_label)
        self.flips_check = QCheckBox("Flip averaging (4x slower, smoother)")
        self.flips_check.setToolTip("Averages 4 flipped predictions: on Lucchi it added 0.006-0.010 Dice to adapted "
                                    "models (docs/benchmarks.md). Worth it for the final export.")
        self.link3d_check = QCheckBox("Link instances across slices (3D)")
        ml.addWidget(self.flips_check)
        ml.addWidget(self.link3d_check)
        layout.addWidget(model)

        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Segment every slice of the image (press again to stop)")
        self.predict_button.clicked.connect(self._on_predict_clicked)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        layout.addWidget(self.predict_button)
        self._build_adapt_ui(layout)
        layout.addWidget(self.progress_bar)

        export = QGroupBox("Export")
        el = QFormLayout(export)
        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("Labels layer to export as a 16-bit instance TIFF + JSON sidecar")
        el.addRow("Labels:", self.labels_combo)
        self.export_button = QPushButton("Export instances…")
        self.export_button.clicked.connect(self._on_export_clicked)
        el.addRow(self.export_button)
        layout.addWidget(export)

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        ev.inserted.connect(self.refresh_layers)
        ev.removed.connect(self._on_layer_removed)
        ev.reordered.connect(self.refresh_layers)
        if hasattr(ev, "renamed"):
            ev.renamed.connect(self.refresh_layers)
        self.viewer.dims.events.current_step.connect(self._on_dims_changed)

    # ------------------------------------------------------------ status
    def _info(self, msg: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(msg)

    def _fail(self, msg: str) -> None:
        """Show a problem to the user: widget status line + napari notification (no traceback)."""
        from napari.utils.notifications import show_error

        self.status_label.setStyleSheet("color: #e04040;")
        self.status_label.setText(msg)
        show_error(f"Mitochondria (WDA): {msg}")

    # ------------------------------------------------------------ layers
    def refresh_layers(self, *_args) -> None:
        """Re-fill the pickers from the viewer's layers, keeping the current choices where possible."""
        from napari.layers import Labels

        self._refill(self.image_combo, [ly.name for ly in self.viewer.layers if _usable_image(ly) is None])
        self._refill(self.labels_combo, [ly.name for ly in self.viewer.layers if isinstance(ly, Labels)])

    @staticmethod
    def _refill(combo: QComboBox, names: list[str]) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current in names:
            combo.setCurrentText(current)
        combo.blockSignals(False)
        if combo.currentText() != current:
            combo.currentTextChanged.emit(combo.currentText())

    def _on_layer_removed(self, event=None) -> None:
        removed = getattr(event, "value", None)
        if same_layer(removed, self._points_layer):
            self._set_points_layer(None)
        self.refresh_layers()

    def _layer(self, name: str):
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    @property
    def image_layer(self):
        return self._layer(self.image_combo.currentText())

    @property
    def labels_layer(self):
        return self._layer(self.labels_combo.currentText())

    @property
    def points_layer(self):
        return self._points_layer

    def _checked_image(self):
        """The selected image layer, or None after reporting why there is none usable."""
        layer = self.image_layer
        if layer is not None and _usable_image(layer) is None:
            return layer
        reasons = [r for ly in self.viewer.layers if (r := _usable_image(ly)) and "not an image" not in r]
        if reasons:
            self._fail("No usable image: " + "; ".join(reasons) + ".")
        else:
            self._fail("No image layer: open a 2D/3D EM image (File > Open, or a sample) first.")
        return None

    def _watch_edits(self, layer) -> None:
        """Follow napari's paint/fill/erase on an instances layer the plugin writes to."""
        key = id(_unwrap(layer))
        if key not in self._watched:
            self._watched.add(key)
            layer.events.paint.connect(partial(_mark_edited, layer))

    def _keep_user_edits(self, name: str) -> None:
        """Before a run overwrites the layer `name`: if the user proofread it, keep it under a new name."""
        from napari.utils.notifications import show_info

        layer = self._layer(name)
        if layer is None or not layer.metadata.get(EDITED_KEY):
            return
        layer.name = f"{name} (proofread)"  # napari appends a number if that name is taken
        layer.metadata[EDITED_KEY] = False
        show_info(f"Mitochondria (WDA): your edits were kept in the layer {layer.name!r}.")

    def _on_image_changed(self, name: str) -> None:
        """Follow the image's centre points layer (if it has one) when the image changes."""
        from napari.layers import Points

        candidate = self._layer(f"{name}{CENTRES_SUFFIX}") if name else None
        self._set_points_layer(candidate if isinstance(candidate, Points) else None)

    # ------------------------------------------------------------ points
    def add_points_layer(self):
        """Create (or re-select) the image's centre Points layer in add mode; return it."""
        from napari.layers import Points

        image = self._checked_image()
        if image is None:
            return None
        name = f"{image.name}{CENTRES_SUFFIX}"
        layer = self._layer(name)
        if not isinstance(layer, Points):
            shape = image.data.shape[-2:]
            size = max(5.0, min(shape) / 30.0)  # in the layer's data units (pixels): napari applies the scale
            # Same units as the image: napari drops the scale bar's units when layers disagree.
            units = getattr(image, "units", None)
            layer = self.viewer.add_points(
                np.empty((0, image.ndim)),
                ndim=image.ndim,
                name=name,
                scale=image.scale,
                translate=image.translate,
                size=size,
                face_color="yellow",
                border_color="black",
                **({"units": units} if units is not None else {}),
            )
        self._set_points_layer(layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self._info(f"Click the centre of mitochondria on a few slices of {image.name!r}.")
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
        data = self._points_layer.data if self._points_layer is not None else np.empty((0, 3))
        self.clicks_label.setText(clicks_text(*count_clicks(data)))
        self._feed_clicks()  # a running adaptation takes them up at its next round

    def _centres_in_image_coords(self, image) -> list[list[float]]:
        """Centre points as image voxel coordinates (z, y, x) or (y, x), via world coordinates."""
        pts = self._points_layer
        if pts is None or len(pts.data) == 0:
            return []
        out = []
        for p in np.asarray(pts.data):
            world = pts.data_to_world(p)
            coords = image.world_to_data(world) if image is not None else p
            out.append([round(float(c), 3) for c in coords])
        return out

    # ------------------------------------------------------------ model / device
    def set_model_path(self, path: str | None) -> None:
        """Use another checkpoint (None = shipped default); it is loaded on the next Predict."""
        self.model_path = str(path) if path else None
        self._model = None
        self._reset_adaptation()
        self.model_label.setText(Path(path).name if path else "default (shipped)")
        self.model_label.setToolTip(str(path) if path else "")

    def _detect_device(self) -> None:
        """Fill the persistent device label off the GUI thread (importing torch takes a moment)."""
        from napari.qt.threading import thread_worker

        def describe() -> tuple[str, dict]:
            from .core.adapt import AdaptSettings  # imports torch: here, not on the GUI thread
            from .core.engine.device import pick_device

            minutes = {p: AdaptSettings.preset(p).minutes for p in ("quick", "thorough")}
            return pick_device().describe(), minutes

        worker = thread_worker(describe, start_thread=False, ignore_errors=True)()
        worker.returned.connect(self._on_device_detected)
        worker.errored.connect(lambda exc: self._set_device_text(f"unavailable ({exc})"))
        self._device_worker = worker
        worker.start()

    def _on_device_detected(self, info: tuple[str, dict]) -> None:
        text, minutes = info
        self._set_device_text(text)
        try:
            self._set_preset_minutes(minutes)
        except RuntimeError:  # widget already deleted
            pass

    def _set_device_text(self, text: str) -> None:
        self._device_text = text
        try:
            self.device_label.setText(f"Device: {text}")
        except RuntimeError:  # widget already deleted
            pass

    # ------------------------------------------------------------ predict
    @property
    def is_running(self) -> bool:
        return self._worker is not None

    def _on_predict_clicked(self) -> None:
        if self.is_running:
            self.stop()
        else:
            self.predict()

    def predict(self, output: str | Path | None = None):
        """Start segmenting the selected image in a background worker; return the worker (or None).

        A lazy image (dask/zarr, e.g. a zarr or HDF5 volume opened by this plugin) is segmented chunk by
        chunk into the zarr store `output` (asked for when None) and shown as a lazy Labels layer.
        """
        from ._worker import predict_iter

        if self.is_running:
            self._fail("A prediction is already running; press Stop first.")
            return None
        image = self._checked_image()
        if image is None or refused(self, image):  # e.g. another dock widget adapts it
            return None
        if not isinstance(image.data, np.ndarray):  # dask/zarr: never load it whole, write a zarr store
            return self.predict_to_zarr(output)
        data = np.asarray(image.data)  # read on the main thread; the worker only sees the array
        self._new_stop_event()
        job = {
            "image_name": image.name,
            "scale": tuple(image.scale),
            "translate": tuple(image.translate),
            "units": getattr(image, "units", None),
            "flips": self.flips_check.isChecked(),
            "link_3d": self.link3d_check.isChecked(),
            "adaptation": self.adaptation_provenance(),
        }
        gen_kwargs = {
            "model": self._model,
            "model_path": self.model_path,
            "flips": job["flips"],
            "link_3d": job["link_3d"],
            "stop_event": self._stop_event,
        }
        self.progress_bar.setRange(0, 1 if data.ndim == 2 else data.shape[0])
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v/%m slices")
        self._info(f"Predicting {image.name!r} …")
        return self._start_worker(predict_iter, (data,), gen_kwargs, partial(self._on_predicted, job),
                                  button=self.predict_button, layer=image)

    def predict_to_zarr(self, output: str | Path | None = None):
        """Chunked prediction of the selected lazy image into a zarr store (core.chunked on dask)."""
        from ._chunked_worker import chunked_predict_iter

        image = self.image_layer
        if output is None:
            from qtpy.QtWidgets import QFileDialog

            output, _ = QFileDialog.getSaveFileName(self, "Write the instances of a large volume to",
                                                    f"{image.name}_instances.zarr", "Zarr store (*.zarr)")
            if not output:
                return None
        output = Path(output)
        if output.suffix.lower() != ".zarr":
            output = output.with_name(output.name + ".zarr")
        if output.exists():
            self._fail(f"{output} already exists; choose another name (nothing is overwritten).")
            return None
        self._new_stop_event()
        job = {"image_name": image.name, "scale": tuple(image.scale), "translate": tuple(image.translate),
               "output": str(output)}
        gen_kwargs = {"model": self._model if self._model is not None else self.model_path,
                      "stop_event": self._stop_event}
        self.progress_bar.setFormat("%v/%m chunks")
        self._info(f"Predicting {image.name!r} chunk by chunk into {output} …")
        return self._start_worker(chunked_predict_iter, (image.data, dict(image.metadata), output), gen_kwargs,
                                  partial(self._on_chunked_done, job), button=self.predict_button,
                                  on_yielded=self._on_chunk_progress, layer=image)

    def _on_chunk_progress(self, report) -> None:
        self.progress_bar.setRange(0, max(1, report.total))
        self.progress_bar.setValue(min(report.done, report.total))
        if not self._stop_event.is_set():
            self._info(f"{report.stage.capitalize()} … {report.done}/{report.total} chunks")

    def _on_chunked_done(self, job: dict, result) -> None:
        from ._lazy_reader import labels_on_image

        if result is None:
            return
        data, meta = labels_on_image(result.path, job["scale"], job["translate"],
                                     f"{job['image_name']}{INSTANCES_SUFFIX}")
        self._keep_user_edits(meta["name"])
        old = self._layer(meta["name"])
        if old is not None:
            self.viewer.layers.remove(old)
        layer = self.viewer.add_labels(data, **meta)  # lazy: napari reads only the slices it shows
        layer.metadata.setdefault("mito_wda", {})["zarr"] = job["output"]
        self.labels_combo.setCurrentText(layer.name)
        self._info(f"Instances of {job['image_name']!r} written to {job['output']} (opened lazily).")

    def _new_stop_event(self) -> None:
        self._stop_event = threading.Event()

    @property
    def _action_buttons(self) -> list:
        return [self.predict_button, self.adapt_button, self.export_button, self.model_button,
                self.save_model_button]

    def _start_worker(self, gen_func, args, kwargs, on_returned, button=None, on_yielded=None,
                      what: str = "Prediction", layer=None):
        """Run a report generator (``_worker``/``_adapt_worker``) in a napari thread_worker wired to this widget.

        `button` turns into Stop while it runs; the other actions are disabled until `finished`.
        `layer` (the image worked on) is marked busy for every widget until then.
        """
        from napari.qt.threading import thread_worker

        # ignore_errors: our errored handler reports the problem; napari would otherwise re-raise it.
        worker = thread_worker(reported(gen_func), start_thread=False, ignore_errors=True)(*args, **kwargs)
        if layer is not None:
            hold(layer, what, worker)
        for signal, slot in ((worker.yielded, on_yielded or self._on_progress), (worker.returned, on_returned),
                             (worker.errored, self._on_worker_error), (worker.finished, self._on_worker_finished)):
            signal.connect(alive_only(self, slot))  # napari may be closed while it still reports
        self._worker = worker
        self._worker_what = what
        self._running_button = button
        for b in self._action_buttons:
            b.setEnabled(b is button)
        self.image_combo.setEnabled(False)  # the running job's image and clicks must not change under it
        if button is not None:
            button.setText("Stop")
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the running job to stop: prediction after the current slice, adaptation at its next step."""
        if self._worker is not None:
            # The generators check the event (prediction raises Cancelled -> "Stopped"; adaptation ends
            # with its best model); not using worker.quit() lets them finish cleanly before `finished`.
            self._stop_event.set()
            if self._worker_what == "Adaptation":
                self._info("Stopping: the best model so far is kept and applied …")
            else:
                self._info("Stopping after the current slice …")

    def _on_progress(self, report) -> None:
        total = max(1, int(getattr(report, "total", 1)))
        if self.progress_bar.maximum() != total:
            self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(int(report.done), total))
        stage = getattr(report, "stage", "")
        if stage and stage != "done" and not self._stop_event.is_set():
            self._info(f"{stage.capitalize()} … {report.done}/{report.total} slices")

    def _on_predicted(self, job: dict, result) -> None:
        from napari.layers import Labels

        if result is None:  # aborted at a yield: nothing to show
            return
        self._model = result.model
        self._set_device_text(result.device)
        name = f"{job['image_name']}{INSTANCES_SUFFIX}"
        provenance = {
            "model_path": result.model_path,
            "image": job["image_name"],
            "device": result.device,
            "seconds": round(float(result.seconds), 2),
            "flips": job["flips"],
            "link_3d": job["link_3d"],
        }
        if job.get("adaptation"):
            provenance["adaptation"] = job["adaptation"]
        self._keep_user_edits(name)
        layer = self._layer(name)
        if isinstance(layer, Labels) and layer.ndim == result.labels.ndim:
            layer.data = result.labels
            layer.scale = job["scale"]
            layer.translate = job["translate"]
        else:
            kwargs = {}
            if job["units"] is not None:
                kwargs["units"] = job["units"]
            layer = self.viewer.add_labels(
                result.labels, name=name, scale=job["scale"], translate=job["translate"], **kwargs
            )
        layer.metadata["mito_wda"] = provenance
        self._watch_edits(layer)
        self.labels_combo.setCurrentText(layer.name)
        self.progress_bar.setValue(self.progress_bar.maximum())
        which = " with the adapted model" if job.get("adaptation") else ""
        self._info(
            f"{result.n_instances} instances in {job['image_name']!r}{which} ({result.seconds:.1f} s, {result.device})."
        )

    def _on_worker_error(self, exc: BaseException) -> None:
        from ._worker import Cancelled

        self._then = None
        if isinstance(exc, Cancelled):
            self._info(f"Stopped: {exc}" if str(exc) else "Stopped; no layer was changed.")
        else:
            self._fail(f"{self._worker_what} failed: {exc}")

    def _on_worker_finished(self) -> None:
        self._worker = None
        self._feed = None
        self._adapt_job = None
        self._running_button = None
        self.predict_button.setText("Predict")
        self.adapt_button.setText(ADAPT_TEXT)
        for b in self._action_buttons:
            b.setEnabled(True)
        self.image_combo.setEnabled(True)
        then, self._then = self._then, None
        if then is not None:
            then()

    # ------------------------------------------------------------ export
    def _on_export_clicked(self) -> None:
        layer = self.labels_layer
        if layer is None:
            self._fail("No labels layer to export: press Predict first (or open a labels layer).")
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
            self._fail("No labels layer to export: press Predict first (or open a labels layer).")
            return None
        meta = dict(layer.metadata.get("mito_wda", {}))
        image = self._layer(meta.get("image", "")) or self.image_layer
        centres = self._centres_in_image_coords(image)
        n, m = count_clicks(self._points_layer.data) if self._points_layer is not None else (0, 0)
        extra = {
            "source": "Mitochondria (WDA) widget",
            "image": meta.get("image", image.name if image is not None else None),
            "model_path": meta.get("model_path", self.model_path),
            "device": meta.get("device", self._device_text),
            "prediction": {k: meta[k] for k in ("seconds", "flips", "link_3d") if k in meta},
            "adaptation": meta.get("adaptation"),
            "n_clicks": n,
            "n_click_slices": m,
            "points_layer": self._points_layer.name if self._points_layer is not None else None,
            "centres_image_coords": centres,
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
        except (OSError, ValueError) as exc:  # FileExistsError, InputError, disk full ...
            self._fail(f"Export failed: {exc}")
            return None
        self._info(f"Exported {layer.name!r} to {written[0]} (+ {Path(written[1]).name}).")
        return written
