"""The dock widget's "Predict": segment the selected image with the current model, into a Labels layer.

:class:`PredictSection` runs :func:`napari_mito_wda._worker.predict_iter` (an image in memory) or
:func:`napari_mito_wda._chunked_worker.chunked_predict_iter` (a lazy dask/zarr image, written chunk by
chunk into a zarr store) through the :class:`~napari_mito_wda._job_runner.JobRunner`; only its
main-thread callbacks touch layers. It announces the layer it wrote by ``labels_ready(str)``, the
maps behind it by ``predicted(image name, PredictResult)`` (for the suggested clicks), and
reports through ``status(str)``, ``failed(str)`` and ``progress(done, total, format)``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QVBoxLayout, QWidget

from ._inputs_ui import layer_voxel_size
from ._job_runner import PREDICTION, RunButton
from ._live_layers import INSTANCES_SUFFIX
from ._proofread import keep_user_edits, track, watch_edits, write_prediction
from ._shown_negatives import user_clicks
from ._util import layer_named

PREDICT_TEXT = "Predict"


class PredictSection(QWidget):
    """Prediction options and the Predict (Stop) button."""

    labels_ready = Signal(str)
    predicted = Signal(str, object)
    status = Signal(str)
    failed = Signal(str)
    progress = Signal(int, int, str)

    def __init__(self, viewer, inputs, state, jobs, negatives=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer, self.inputs, self.state, self.jobs = viewer, inputs, state, jobs
        self.negatives = negatives  # the "not mitochondria" clicks (_suggest_ui.SuggestSection), or None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.flips_check = QCheckBox("Flip averaging (4x slower, smoother)")
        self.flips_check.setToolTip("Averages 4 flipped predictions: on Lucchi it added 0.006-0.010 Dice to adapted "
                                    "models (docs/benchmarks.md). Worth it for the final export.")
        self.orthoplanes_check = QCheckBox("Orthoplanes (isotropic volumes)")
        self.orthoplanes_check.setToolTip(
            "Also predicts along xz and yz and averages the probabilities (about 3x slower), for near-isotropic stacks "
            "such as FIB-SEM: z spacing within 1.5x of the pixel size, at least 32 voxels a side. Refused for "
            "thick sections and for images larger than memory. What it gains: docs/benchmarks.md.")
        self.link3d_check = QCheckBox("Link instances across slices (3D)")
        self.predict_button = RunButton(PREDICT_TEXT, PREDICTION, jobs, self.predict)
        self.predict_button.setToolTip("Segment every slice of the image (press again to stop)")
        # Ticked by the picked image's voxel size (as `predict --orthoplanes auto`); the user may change it.
        inputs.image_changed.connect(self._auto_orthoplanes)
        options = QHBoxLayout()  # the two ways of averaging predictions, side by side
        options.addWidget(self.flips_check)
        options.addWidget(self.orthoplanes_check)
        layout.addLayout(options)
        for w in (self.link3d_check, self.predict_button):
            layout.addWidget(w)

    # ------------------------------------------------------------ running jobs
    def on_run_started(self, what: str) -> None:
        self.predict_button.on_run_started(what)

    def on_run_finished(self) -> None:
        self.predict_button.on_run_finished()

    # ------------------------------------------------------------ in memory
    def predict(self, output: str | Path | None = None):
        """Start segmenting the selected image in a background worker; return the worker (or None).

        A lazy image (dask/zarr, e.g. a zarr or HDF5 volume opened by this plugin) is segmented chunk by
        chunk into the zarr store `output` (asked for when None) and shown as a lazy Labels layer.
        """
        from ._worker import predict_iter

        if self.jobs.is_running:
            self.failed.emit("A prediction is already running; press Stop first.")
            return None
        image = self.inputs.checked_image()
        if image is None or self.jobs.refused(image):  # e.g. another dock widget adapts it
            return None
        orthoplanes = self.orthoplanes_check.isChecked()
        if not isinstance(image.data, np.ndarray):  # dask/zarr: never load it whole, write a zarr store
            if orthoplanes:
                self.failed.emit(f"Orthoplanes need the whole of {image.name!r} in memory; it is a large (lazy) "
                                 "image, predicted chunk by chunk: untick Orthoplanes.")
                return None
            return self.predict_to_zarr(output)
        voxel_size = layer_voxel_size(image)
        if orthoplanes and (why := self._orthoplanes_refusal(image.data.shape, voxel_size)):
            self.failed.emit(f"{image.name!r}: {why[0].upper()}{why[1:]} (untick Orthoplanes)")
            return None
        data = np.asarray(image.data)  # read on the main thread; the worker only sees the array
        job = {
            "image_name": image.name,
            "scale": tuple(image.scale),
            "translate": tuple(image.translate),
            "units": getattr(image, "units", None),
            "flips": self.flips_check.isChecked(),
            "orthoplanes": orthoplanes,
            "link_3d": self.link3d_check.isChecked(),
            "adaptation": self.state.provenance(),
            # what the worker's reports count: slices, or the planes of all three orientations
            "slices": sum(data.shape) if orthoplanes else 1 if data.ndim == 2 else data.shape[0],
        }
        gen_kwargs = {"model": self.state.loaded, "model_path": self.state.path, "flips": job["flips"],
                      "link_3d": job["link_3d"], "pixel_size": self.inputs.pixel_size(),
                      "orthoplanes": orthoplanes, "voxel_size": voxel_size}
        self.progress.emit(0, job["slices"], "%v/%m planes" if orthoplanes else "%v/%m slices")
        self.status.emit(f"Predicting {image.name!r} ({self.inputs.pixel_size_text()}) …")
        return self.jobs.start(predict_iter, (data,), gen_kwargs, partial(self._on_predicted, job), what=PREDICTION,
                               layer=image)

    def _model_config(self):
        """The current model's geometry; the default network's until a model is loaded."""
        from .core.engine.model import ModelConfig

        loaded = self.state.loaded
        return loaded.model.config if loaded is not None else ModelConfig()

    def _orthoplanes_refusal(self, shape, voxel_size) -> str | None:
        """Why orthoplanes cannot run on this image, checked here before any work (the worker checks again
        with the model it loads, whose depth may ask for more slices than the default network's)."""
        from .core.engine.orthoplanes import refusal

        return refusal(shape, self._model_config(), voxel_size, self.inputs.pixel_size())

    def _auto_orthoplanes(self, _name: str = "") -> None:
        """Tick Orthoplanes for a near-isotropic image in memory whose voxel size is known, untick it otherwise
        (`core.engine.orthoplanes.choice`, the CLI's default)."""
        from .core.engine.orthoplanes import choice

        image = self.inputs.image_layer
        on = image is not None and isinstance(image.data, np.ndarray) and choice(
            image.data.shape, self._model_config(), layer_voxel_size(image), None, self.inputs.pixel_size())[0]
        self.orthoplanes_check.setChecked(bool(on))

    def _on_predicted(self, job: dict, result) -> None:
        from napari.layers import Labels

        if result is None:  # aborted at a yield: nothing to show
            return
        self.state.use_loaded(result.model)
        self.state.set_device(result.device)
        name = f"{job['image_name']}{INSTANCES_SUFFIX}"
        provenance = {
            "model_path": result.model_path,
            "image": job["image_name"],
            "device": result.device,
            "seconds": round(float(result.seconds), 2),
            "flips": job["flips"],
            "orthoplanes": job["orthoplanes"],
            "link_3d": job["link_3d"],
        }
        if job.get("adaptation"):
            provenance["adaptation"] = job["adaptation"]
        left_out = self._leave_out_negated(job, result.labels)
        keep_user_edits(self.viewer, name, result.labels.shape)  # edits that cannot be merged move aside
        layer = layer_named(self.viewer, name)
        kept = 0
        if isinstance(layer, Labels) and layer.ndim == result.labels.ndim:
            kept = write_prediction(layer, result.labels)  # the user's corrected objects stay as they are
            layer.scale = job["scale"]
            layer.translate = job["translate"]
        else:
            kwargs = {"units": job["units"]} if job["units"] is not None else {}
            layer = self.viewer.add_labels(
                result.labels, name=name, scale=job["scale"], translate=job["translate"], **kwargs
            )
            track(layer)
        layer.metadata["mito_wda"] = provenance
        watch_edits(layer)
        self.labels_ready.emit(layer.name)
        self.predicted.emit(job["image_name"], result)
        self.progress.emit(job["slices"], job["slices"], "")
        which = " with the adapted model" if job.get("adaptation") else ""
        kept_text = (f" Your {kept} corrected object(s) were kept as you left them (Forget corrections lets the "
                     "next prediction replace them)." if kept else "")
        neg_text = (f" {left_out} object(s) under your 'not mitochondria' clicks left out." if left_out else "")
        self.status.emit(f"{result.n_instances} instances in {job['image_name']!r}{which} ({result.seconds:.1f} s, "
                         f"{result.device}).{kept_text}{neg_text}")

    def _leave_out_negated(self, job: dict, labels: np.ndarray) -> int:
        """Drop from a whole prediction (in place) the objects under the image's negative clicks (the
        user's word holds in what is shown, _shown_negatives); returns how many."""
        from .core.adapt.negatives import drop_negated

        image = layer_named(self.viewer, job["image_name"])
        if image is None or self.negatives is None:
            return 0
        neg, pos = user_clicks(self.inputs, self.negatives, image, labels.shape)
        return drop_negated(labels, neg, pos, linked=job["link_3d"])[0] if len(neg) else 0

    # ------------------------------------------------------------ larger than memory
    def predict_to_zarr(self, output: str | Path | None = None):
        """Chunked prediction of the selected lazy image into a zarr store (core.volumes.chunked on dask)."""
        from ._chunked_worker import chunked_predict_iter

        image = self.inputs.image_layer
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
            self.failed.emit(f"{output} already exists; choose another name (nothing is overwritten).")
            return None
        job = {"image_name": image.name, "scale": tuple(image.scale), "translate": tuple(image.translate),
               "output": str(output)}
        model = self.state.loaded if self.state.loaded is not None else self.state.path
        self.progress.emit(0, 0, "%v/%m chunks")
        self.status.emit(f"Predicting {image.name!r} ({self.inputs.pixel_size_text()}) chunk by chunk into {output} …")
        return self.jobs.start(chunked_predict_iter, (image.data, dict(image.metadata), output),
                               {"model": model, "pixel_size": self.inputs.pixel_size()},
                               partial(self._on_chunked_done, job), what=PREDICTION,
                               on_yielded=self._on_chunk_progress, layer=image)

    def _on_chunk_progress(self, report) -> None:
        self.progress.emit(min(report.done, report.total), max(1, report.total), "")
        if not self.jobs.stopping:
            self.status.emit(f"{report.stage.capitalize()} … {report.done}/{report.total} chunks")

    def _on_chunked_done(self, job: dict, result) -> None:
        from ._lazy_reader import labels_on_image

        if result is None:
            return
        data, meta = labels_on_image(result.path, job["scale"], job["translate"],
                                     f"{job['image_name']}{INSTANCES_SUFFIX}")
        keep_user_edits(self.viewer, meta["name"])
        old = layer_named(self.viewer, meta["name"])
        if old is not None:
            self.viewer.layers.remove(old)
        layer = self.viewer.add_labels(data, **meta)  # lazy: napari reads only the slices it shows
        layer.metadata.setdefault("mito_wda", {})["zarr"] = job["output"]
        self.labels_ready.emit(layer.name)
        self.status.emit(f"Instances of {job['image_name']!r} written to {job['output']} (opened lazily).")
