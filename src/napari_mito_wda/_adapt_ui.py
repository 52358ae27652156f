"""The "Adapt to this dataset" part of the dock widget: controls, live preview, resume (save/load model:
:mod:`napari_mito_wda._model_files`).

A mixin of :class:`napari_mito_wda._widget.MitoWidget` (it uses the widget's pickers, status line and
``_start_worker``). The engine loop runs in :func:`napari_mito_wda._adapt_worker.adapt_iter`; this file
only turns its updates into layers, a plot and a progress bar, on the GUI thread.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QPushButton

from ._jobs import alive_only, refused
from ._live_layers import (
    HEAT_SUFFIX,
    TRUSTED_SUFFIX,
    get_or_add,
    heat_planes,
    instance_planes,
    trusted_colormap,
    trusted_planes,
    write_slices,
)
from ._loss_plot import LossPlot
from ._model_files import ModelFiles
from ._util import same_layer

ADAPT_TEXT = "Adapt to this dataset"
STAGE_NAMES = {"prepare": "Preparing", "label": "Pseudo-labelling", "train": "Training", "done": "Done"}
# Until the engine's defaults arrive from the background import (torch), show these.
FALLBACK_PRESET_MINUTES = {"quick": 8.0, "thorough": 240.0}


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class AdaptSection(ModelFiles):
    """Mixin: needs viewer, _model, model_path, _points_layer, _stop_event, _start_worker, _info, _fail."""

    def _init_adapt_state(self) -> None:
        self.adapt_overrides: dict = {}  # extra AdaptSettings fields (tests, screenshots, scripted use)
        self.live_updates = 0            # how many times preview slices were written into layers
        self._feed = None                # ClickFeed of the running adaptation
        self._adapt_job: dict | None = None
        self._adapt_runs: list[dict] = []  # the runs that produced the current model (provenance)
        self._adapt_result = None
        self._saved_model_path: str | None = None
        self._view_z: int | None = None
        self._step_offset = 0            # loss plot: steps continue across resumed runs
        self._preset_minutes = dict(FALLBACK_PRESET_MINUTES)
        self._minutes_touched = False

    # ------------------------------------------------------------------ UI
    def _build_adapt_ui(self, layout) -> None:
        box = QGroupBox("Adapt to this dataset")
        form = QFormLayout(box)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(["quick", "thorough"])
        self.preset_combo.setToolTip("quick: minutes on a laptop CPU; thorough: the paper's long schedule (GPU)")
        self.preset_combo.currentTextChanged.connect(self._on_preset_changed)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.1, 24 * 60)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSuffix(" min")
        self.minutes_spin.setValue(self._preset_minutes["quick"])
        self.minutes_spin.setToolTip("Wall-clock budget of one adaptation run (Stop ends it earlier)")
        self.minutes_spin.valueChanged.connect(self._on_minutes_edited)
        self.maps_check = QCheckBox("Show what the model trusts (pseudo-labels, centre heatmap)")
        self.adapt_button = QPushButton(ADAPT_TEXT)
        self.adapt_button.setToolTip(
            "Fine-tune the model to this image from your centre clicks (press again to stop; "
            "pressing it after a run continues from the adapted model)"
        )
        self.adapt_button.clicked.connect(self._on_adapt_clicked)
        self.loss_plot = LossPlot()
        form.addRow("Preset:", self.preset_combo)
        form.addRow("Time budget:", self.minutes_spin)
        form.addRow(self.maps_check)
        form.addRow(self.adapt_button)
        form.addRow(self.loss_plot)
        layout.addWidget(box)

    def _set_preset_minutes(self, minutes: dict) -> None:
        """Engine defaults arrived (from a background import): show them unless the user typed a value."""
        self._preset_minutes.update(minutes)
        if not self._minutes_touched:
            self._show_preset_minutes(self.preset_combo.currentText())

    def _show_preset_minutes(self, preset: str) -> None:
        self.minutes_spin.blockSignals(True)
        self.minutes_spin.setValue(float(self._preset_minutes.get(preset, self.minutes_spin.value())))
        self.minutes_spin.blockSignals(False)

    def _on_preset_changed(self, preset: str) -> None:
        self._minutes_touched = False
        self._show_preset_minutes(preset)

    def _on_minutes_edited(self, _value) -> None:
        self._minutes_touched = True

    # ------------------------------------------------------------------ clicks
    def _valid_clicks(self, image, shape) -> tuple[np.ndarray, int, np.ndarray]:
        """(clicks inside the image as (N, 3) voxel coords with duplicates merged, n outside, all raw)."""
        from .core.adapt.points import validate_points

        raw = np.asarray(self._centres_in_image_coords(image), dtype=np.float64)
        shape3 = tuple(shape) if len(shape) == 3 else (1, *shape)
        if raw.size == 0:
            return np.zeros((0, 3)), 0, np.zeros((0, 3))
        raw = raw.reshape(len(raw), -1)[:, -len(shape):]
        full = raw if raw.shape[1] == 3 else np.column_stack([np.zeros(len(raw)), raw])
        vox = np.floor(full + 0.5)
        inside = ((vox >= 0) & (vox < np.asarray(shape3))).all(axis=1)
        pts, _ = validate_points(full[inside], shape3)
        return pts, int((~inside).sum()), full

    def _feed_clicks(self) -> None:
        """While adapting: pass the current clicks to the worker (taken up at its next round)."""
        job = self._adapt_job
        if self._feed is None or job is None:
            return
        image = self._layer(job["image_name"])
        if image is None:
            return
        pts, n_out, _ = self._valid_clicks(image, job["geom"]["shape"])
        self._feed.set(pts)
        if n_out:
            self._info(f"{n_out} click(s) lie outside {job['image_name']!r} and are ignored.")

    def _current_z(self, image) -> int | None:
        """The image slice shown in the viewer (previews favour it)."""
        if image.ndim == 2:
            return 0
        try:
            coords = image.world_to_data(tuple(self.viewer.dims.point[-image.ndim:]))
            return int(np.clip(round(float(coords[0])), 0, image.data.shape[0] - 1))
        except (ValueError, IndexError, TypeError):
            return None

    def _on_dims_changed(self, *_args) -> None:
        if self._adapt_job is not None:
            image = self._layer(self._adapt_job["image_name"])
            if image is not None:
                self._view_z = self._current_z(image)

    # ------------------------------------------------------------------ run
    def _on_adapt_clicked(self) -> None:
        if self.is_running:
            self.stop()
        else:
            self.adapt()

    def adapt(self):
        """Start (or resume) adapting the current model to the selected image; return the worker or None."""
        from ._adapt_worker import ClickFeed, adapt_iter
        from .core.adapt.points import validate_points
        from .core.data.io import InputError

        if self.is_running:
            self._fail("Something is already running; press Stop first.")
            return None
        image = self._checked_image()
        if image is None or refused(self, image):  # e.g. another dock widget adapts or predicts it
            return None
        if self._points_layer is None or len(self._points_layer.data) == 0:
            self._fail(
                "No clicks yet: press 'Add centre points layer' and click the centre of a few mitochondria "
                "(on any slices), then press Adapt."
            )
            return None
        data = np.asarray(image.data)
        try:
            pts, n_out, raw = self._valid_clicks(image, data.shape)
            if n_out:
                validate_points(raw, data.shape if data.ndim == 3 else (1, *data.shape))  # raises, naming them
        except InputError as exc:
            self._fail(f"Cannot adapt: {exc}")
            return None
        if len(pts) == 0:
            self._fail("No click lies on the image; click the centre of a few mitochondria first.")
            return None
        geom = {"shape": data.shape, "scale": tuple(image.scale), "translate": tuple(image.translate),
                "units": getattr(image, "units", None)}
        name = f"{image.name}{self.INSTANCES_SUFFIX}"
        self._keep_user_edits(name)  # previews overwrite slices: proofread labels move aside first
        labels, why = self._with_points_on_top(get_or_add, self.viewer, name, "labels", geom, np.uint32)
        if labels is None:
            self._fail(f"Cannot show the masks: {why}.")
            return None
        self._watch_edits(labels)
        self.labels_combo.setCurrentText(labels.name)

        resume = bool(self._adapt_runs) and self._model is not None
        overrides = {"minutes": float(self.minutes_spin.value())} | dict(self.adapt_overrides)
        source = getattr(image, "metadata", {}).get("mito_wda", {}).get("source_path")
        self._adapt_job = {
            "image_name": image.name, "geom": geom, "resume": resume, "max_iters": overrides.get("max_iters"),
            "maps": self.maps_check.isChecked(), "image_path": source or image.name,
            "source_model": self._source_model_name(),
        }
        self._feed = ClickFeed(pts)
        self._view_z = self._current_z(image)
        self._new_stop_event()
        if not resume:
            self.loss_plot.clear()
            self._step_offset = 0
        kwargs = {
            "model": self._model, "model_path": self.model_path, "preset": self.preset_combo.currentText(),
            "overrides": overrides, "resume": resume, "stop_event": self._stop_event,
            "view_z": lambda: self._view_z, "with_maps": self._adapt_job["maps"],
        }
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Starting …")
        self._info(f"{'Resuming' if resume else 'Starting'} adaptation to {image.name!r} with {len(pts)} clicks …")
        job = self._adapt_job
        worker = self._start_worker(
            adapt_iter, (data, self._feed), kwargs, partial(self._on_adapted, job),
            button=self.adapt_button, on_yielded=partial(self._on_adapt_update, job), what="Adaptation", layer=image,
        )
        worker.errored.connect(alive_only(self, partial(self._keep_best_on_error, job)))
        return worker

    def _source_model_name(self) -> str:
        if self._model is not None and getattr(self._model, "path", None):
            return str(self._model.path)
        return self.model_path or "default (shipped)"

    def _with_points_on_top(self, func, *args, **kwargs):
        """Run func (which may add layers); keep the clicks layer on top and active so clicking goes on."""
        before = len(self.viewer.layers)
        active = self.viewer.layers.selection.active
        out = func(*args, **kwargs)
        pts = self._points_layer
        if len(self.viewer.layers) != before and pts is not None:
            index = [i for i, ly in enumerate(self.viewer.layers) if same_layer(ly, pts)]
            if index and index[0] != len(self.viewer.layers) - 1:
                self.viewer.layers.move(index[0], len(self.viewer.layers))
            if active is not None and any(same_layer(active, ly) for ly in self.viewer.layers):
                self.viewer.layers.selection.active = active
        return out

    def _on_adapt_update(self, job: dict, update) -> None:
        if update.best is not None:
            job["best"] = update.best  # the best model so far, kept if the run fails later
        rep = update.report
        if rep.stage == "train" and rep.losses:
            self.loss_plot.add(self._step_offset + rep.step, rep.losses)
        self._adapt_progress(job, rep)
        if update.previews:
            self._show_previews(job, update.previews)
        if self._stop_event.is_set():
            return
        if rep.stage == "train":
            self._info(f"Adapting {job['image_name']!r}: round {rep.round}/{rep.n_rounds}, step {rep.step}, "
                       f"{rep.it_per_s:.1f} it/s, {rep.n_clicks} clicks, {rep.n_pseudo} pseudo-instances.")
        elif rep.message:
            self._info(f"{STAGE_NAMES.get(rep.stage, rep.stage)}: {rep.message}")

    def _adapt_progress(self, job: dict, rep) -> None:
        frac = rep.elapsed_s / rep.budget_s if rep.budget_s else 0.0
        eta = rep.eta_s
        if job.get("max_iters"):
            frac = max(frac, rep.step / job["max_iters"])
            if rep.it_per_s > 0:
                eta = min(eta, (job["max_iters"] - rep.step) / rep.it_per_s)
        if rep.stage == "done":
            frac, eta = 1.0, 0.0
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(int(1000 * min(1.0, max(0.0, frac))))
        where = f" · round {rep.round}/{rep.n_rounds}" if rep.n_rounds else ""
        self.progress_bar.setFormat(
            f"{STAGE_NAMES.get(rep.stage, rep.stage)}{where} · step {rep.step} · ~{_fmt_s(eta)} left"
        )

    def _show_previews(self, job: dict, previews) -> None:
        """Write the slices the worker converted into the instances layer (and the optional maps)."""
        geom, name = job["geom"], job["image_name"]
        layer, why = self._with_points_on_top(get_or_add, self.viewer, f"{name}{self.INSTANCES_SUFFIX}", "labels",
                                              geom, np.uint32)
        if layer is None:
            self._info(f"Live preview paused: {why}.")
            return
        write_slices(layer, instance_planes(previews))
        if job["maps"]:
            heat, _ = self._with_points_on_top(get_or_add, self.viewer, f"{name}{HEAT_SUFFIX}", "image", geom,
                                               np.uint8, colormap="magma", blending="additive",
                                               contrast_limits=(0, 255), opacity=0.6)
            trusted, _ = self._with_points_on_top(get_or_add, self.viewer, f"{name}{TRUSTED_SUFFIX}", "labels",
                                                  geom, np.uint8, colormap=trusted_colormap(), opacity=0.4,
                                                  visible=False)
            if heat is not None:
                write_slices(heat, heat_planes(previews))
            if trusted is not None:
                write_slices(trusted, trusted_planes(previews))
        self.live_updates += 1

    def _on_adapted(self, job: dict, result) -> None:
        if result is None:
            return
        from .core.engine.device import release_memory

        last = result.last
        self._model = result.model
        release_memory()  # the replaced model's GPU memory goes back now, not when napari closes
        self._adapt_result = result
        self._saved_model_path = None
        self._adapt_runs.append({
            "image": job["image_path"], "from_model": job["source_model"], "resumed": job["resume"],
            "steps": int(last.step), "seconds": round(float(result.seconds), 1), "n_clicks": int(len(result.clicks)),
            "best_score": None if last.best_score is None else round(float(last.best_score), 4),
            "stopped": bool(result.stopped), "settings": result.settings.to_dict(), "kept_step": last.kept_step,
        })
        self._step_offset += int(last.step)
        self.loss_plot.flush()
        self._set_device_text(result.device)
        self._update_model_label()
        head = "Stopped: the best model so far is kept" if result.stopped else "Adaptation finished"
        score = f", label-free score {last.best_score:.3f}" if last.best_score is not None else ""
        if last.kept_step is None:  # the user must not wonder why nothing changed
            score += "; no adapted model scored above the starting one, so it is kept"
        if self._layer(job["image_name"]) is None:  # the image was closed meanwhile: nothing to predict
            self._info(f"{head} ({last.step} steps{score}); the image {job['image_name']!r} is gone.")
            return
        self._info(f"{head} ({last.step} steps in {result.seconds:.0f} s{score}). Predicting the whole image …")
        self.image_combo.setCurrentText(job["image_name"])
        self._then = self.predict  # after `finished`: the best model segments every slice

    def _keep_best_on_error(self, job: dict, exc: BaseException) -> None:
        """The run failed after a round: its best model so far becomes the current one (Adapt resumes it)."""
        best = job.get("best")
        if best is None:
            return
        self._on_adapted(job, best)
        self._then = None  # no whole-image prediction after a failure
        # The status line only (still red): _on_worker_error, connected first, has notified the failure.
        self.status_label.setText(f"Adaptation failed: {exc}. The best model so far is kept ({best.last.step} "
                                  "steps); press Adapt to continue from it.")

    def adaptation_provenance(self) -> dict | None:
        """What made the current model (for the labels' metadata and the export sidecar)."""
        if not self._adapt_runs:
            return None
        return {"saved_as": self._saved_model_path, "runs": list(self._adapt_runs)}

    def _update_model_label(self) -> None:
        if not self._adapt_runs:
            return
        steps = sum(r["steps"] for r in self._adapt_runs)
        base = Path(self._adapt_runs[0]["from_model"]).name
        saved = f"saved as {Path(self._saved_model_path).name}" if self._saved_model_path else "not saved yet"
        self.model_label.setText(f"{base}, adapted ({len(self._adapt_runs)} run(s), {steps} steps; {saved})")
        self.model_label.setToolTip(self._saved_model_path or "")

    def _reset_adaptation(self) -> None:
        """A different model was chosen: forget the runs that built the previous one."""
        self._adapt_runs = []
        self._adapt_result = None
        self._saved_model_path = None
        self._step_offset = 0
