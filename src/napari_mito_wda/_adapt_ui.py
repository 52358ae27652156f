"""The dock widget's "Adapt to this dataset" box: controls, live preview, loss plot, resume.

:class:`AdaptSection` fine-tunes the shared model (:class:`~napari_mito_wda._model_state.ModelState`) on
the clicks of the :class:`~napari_mito_wda._inputs_ui.InputsSection`, through the
:class:`~napari_mito_wda._job_runner.JobRunner`. The engine loop runs in
:func:`napari_mito_wda._adapt_worker.adapt_iter`; this file only turns its updates into layers, a plot
and a progress bar, on the GUI thread. Signals: ``adapted(str)`` (the image whose whole prediction
should follow), ``labels_ready(str)`` (the instances layer it writes, at the start), ``labels_updated(str)``
(after each live preview written into it), ``status(str)``, ``failed(str)``, ``progress(done, total, format)``.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QWidget

from ._corrections_ui import CorrectionsRow
from ._inputs_ui import layer_voxel_size
from ._job_runner import ADAPTATION, RunButton
from ._jobs import alive_only
from ._live_layers import INSTANCES_SUFFIX, get_or_add, show_previews, with_points_on_top
from ._loss_plot import LossPlot
from ._proofread import keep_user_edits, reference, track, watch_edits
from ._shown_negatives import voxel_clicks
from ._util import layer_named, same_layer

ADAPT_TEXT = "Adapt to this dataset"
STAGE_NAMES = {"prepare": "Preparing", "label": "Pseudo-labelling", "train": "Training", "done": "Done"}
# Until the engine's defaults arrive from the background import (torch), show these.
FALLBACK_PRESET_MINUTES = {"quick": 8.0, "thorough": 240.0}
PROGRESS_STEPS = 1000  # the bar shows the fraction of the time (or iteration) budget used
VIEW_CHOICES = ("auto", "on", "off")  # the xz / yz views combo (core.adapt.auto.CROSS_VIEW_CHOICES)


def _fmt_s(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class AdaptSection(QGroupBox):
    """Preset, time budget, maps, the Adapt (Stop) button and the live loss plot."""

    adapted = Signal(str)
    labels_ready = Signal(str)
    labels_updated = Signal(str)
    status = Signal(str)
    failed = Signal(str)
    progress = Signal(int, int, str)

    def __init__(self, viewer, inputs, state, jobs, negatives=None, parent: QWidget | None = None):
        super().__init__(ADAPT_TEXT, parent)
        self.viewer, self.inputs, self.state, self.jobs = viewer, inputs, state, jobs
        self.negatives = negatives       # the "not mitochondria" clicks (_suggest_ui.SuggestSection), or None
        self.adapt_overrides: dict = {}  # extra AdaptSettings fields (tests, screenshots, scripted use)
        self.live_updates = 0            # how many times preview slices were written into layers
        self._feed = None                # ClickFeed of the running adaptation
        self._neg_feed = None            # ... and of its negative clicks
        self._corr_feed = None           # ... and of the user's corrections of the instances layer
        self._job: dict | None = None
        self._view_z: int | None = None
        self._step_offset = 0            # loss plot: steps continue across resumed runs
        self._preset_minutes = dict(FALLBACK_PRESET_MINUTES)
        self._minutes_touched = False
        self._build_ui()
        inputs.clicks_changed.connect(self._feed_clicks)  # a running adaptation takes them up at its next round
        if negatives is not None:
            negatives.negatives_changed.connect(self._feed_clicks)
        viewer.dims.events.current_step.connect(self._on_dims_changed)
        inputs.image_combo.currentTextChanged.connect(self.corrections.watch)
        viewer.layers.events.inserted.connect(self.corrections.watch)

    def _build_ui(self) -> None:
        form = QFormLayout(self)
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
        self.views_combo = QComboBox()
        self.views_combo.addItems(list(VIEW_CHOICES))
        self.views_combo.setToolTip(
            "Pseudo-labels from the xz and yz views as well as the xy slices, for near-isotropic stacks of 32 "
            "slices or more (FIB-SEM). auto: on when the image's voxel size says near-isotropic")
        self.maps_check = QCheckBox("Show what the model trusts (pseudo-labels, centre heatmap)")
        self.adapt_button = RunButton(ADAPT_TEXT, ADAPTATION, self.jobs, self.adapt)
        self.adapt_button.setToolTip(
            "Fine-tune the model to this image from your centre clicks (press again to stop; "
            "pressing it after a run continues from the adapted model)"
        )
        self.loss_plot = LossPlot()
        self.corrections = CorrectionsRow(self._instances_layer)  # what the next adaptation learns exactly
        self.corrections.changed.connect(self._feed_corrections)
        self.corrections.status.connect(self.status)
        form.addRow("Preset:", self.preset_combo)
        form.addRow("Time budget:", self.minutes_spin)
        form.addRow("xz / yz views:", self.views_combo)
        form.addRow(self.maps_check)
        form.addRow(self.corrections)
        form.addRow(self.adapt_button)
        form.addRow(self.loss_plot)

    # ------------------------------------------------------------------ budget
    def set_preset_minutes(self, minutes: dict) -> None:
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

    # ------------------------------------------------------------------ running jobs
    def on_run_started(self, what: str) -> None:
        self.adapt_button.on_run_started(what)

    def on_run_finished(self) -> None:
        self._feed = self._neg_feed = self._corr_feed = None
        self._job = None
        self.adapt_button.on_run_finished()

    # ------------------------------------------------------------------ clicks
    def _valid_clicks(self, image, shape, negative: bool = False) -> tuple[np.ndarray, int, np.ndarray]:
        """(clicks inside the image as (N, 3) voxel coords with duplicates merged, n outside, all raw)."""
        if negative:
            raw = self.negatives.negatives_in_image_coords(image) if self.negatives is not None else []
        else:
            raw = self.inputs.centres_in_image_coords(image)
        return voxel_clicks(raw, shape)

    def _feed_clicks(self) -> None:
        """While adapting: pass the current clicks to the worker (taken up at its next round)."""
        job = self._job
        if self._feed is None or job is None:
            return
        image = layer_named(self.viewer, job["image_name"])
        if image is None:
            return
        pts, n_out, _ = self._valid_clicks(image, job["geom"]["shape"])
        self._feed.set(pts)
        neg, n_neg_out, _ = self._valid_clicks(image, job["geom"]["shape"], negative=True)
        self._neg_feed.set(neg)
        n_out += n_neg_out
        if n_out:
            self.status.emit(f"{n_out} click(s) lie outside {job['image_name']!r} and are ignored.")

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
        if self._job is not None:
            image = layer_named(self.viewer, self._job["image_name"])
            if image is not None:
                self._view_z = self._current_z(image)

    # ------------------------------------------------------------------ corrections
    def _instances_layer(self):
        job = self._job
        image = self.inputs.image_layer if job is None else layer_named(self.viewer, job["image_name"])
        return None if image is None else layer_named(self.viewer, f"{image.name}{INSTANCES_SUFFIX}")

    def _feed_corrections(self, corr) -> None:
        """While adapting: the corrections of the run's instances layer go to the worker (next round)."""
        if self._corr_feed is not None and same_layer(self.corrections.layer, self._job.get("labels")):
            self._corr_feed.set(corr)

    # ------------------------------------------------------------------ run
    def adapt(self):
        """Start (or resume) adapting the current model to the selected image; return the worker or None."""
        from ._adapt_worker import ClickFeed, LatestValue, adapt_iter
        from .core.adapt.points import validate_points
        from .core.data.io import InputError

        if self.jobs.is_running:
            self.failed.emit("Something is already running; press Stop first.")
            return None
        image = self.inputs.checked_image()
        if image is None or self.jobs.refused(image):  # e.g. another dock widget adapts or predicts it
            return None
        points = self.inputs.points_layer
        if points is None or len(points.data) == 0:
            self.failed.emit(
                "No clicks yet: press 'Add centre points layer' and click the centre of a few mitochondria "
                "(on any slices), then press Adapt."
            )
            return None
        data = np.asarray(image.data)
        try:
            pts, n_out, raw = self._valid_clicks(image, data.shape)
            neg, n_neg_out, raw_neg = self._valid_clicks(image, data.shape, negative=True)
            shape3 = data.shape if data.ndim == 3 else (1, *data.shape)
            if n_out:
                validate_points(raw, shape3)  # raises, naming them
            if n_neg_out:
                try:
                    validate_points(raw_neg, shape3)
                except InputError as exc:
                    raise InputError(f"not-mitochondria clicks: {exc}") from None
        except InputError as exc:
            self.failed.emit(f"Cannot adapt: {exc}")
            return None
        if len(pts) == 0:
            self.failed.emit("No click lies on the image; click the centre of a few mitochondria first.")
            return None
        geom = {"shape": data.shape, "scale": tuple(image.scale), "translate": tuple(image.translate),
                "units": getattr(image, "units", None)}
        name = f"{image.name}{INSTANCES_SUFFIX}"
        keep_user_edits(self.viewer, name, data.shape)  # edits that previews cannot merge move aside first
        labels, why = with_points_on_top(self.viewer, points, get_or_add, self.viewer, name, "labels", geom, np.uint32)
        if labels is None:
            self.failed.emit(f"Cannot show the masks: {why}.")
            return None
        if reference(labels) is None:  # not written by the plugin (opened, or new): nothing in it is a correction
            track(labels)
        watch_edits(labels)
        self.labels_ready.emit(labels.name)
        self.corrections.watch()
        corr = self.corrections.recount()

        resume = self.state.can_resume
        overrides, chosen = self._fitted_settings(data.shape, len(pts), layer_voxel_size(image))
        source = getattr(image, "metadata", {}).get("mito_wda", {}).get("source_path")
        job = self._job = {
            "image_name": image.name, "geom": geom, "resume": resume, "max_iters": overrides.get("max_iters"),
            "maps": self.maps_check.isChecked(), "image_path": source or image.name,
            "source_model": self.state.source_name(), "labels": labels,
        }
        self._feed, self._neg_feed, self._corr_feed = ClickFeed(pts), ClickFeed(neg), LatestValue(corr)
        self._view_z = self._current_z(image)
        if not resume:
            self.loss_plot.clear()
            self._step_offset = 0
        kwargs = {
            "model": self.state.loaded, "model_path": self.state.path, "preset": self.preset_combo.currentText(),
            "overrides": overrides, "resume": resume, "view_z": lambda: self._view_z, "with_maps": job["maps"],
            "negatives": self._neg_feed, "corrections": self._corr_feed,
            "pixel_size": self.inputs.pixel_size(),
        }
        self.progress.emit(0, PROGRESS_STEPS, "Starting …")
        verb = "Resuming" if resume else "Starting"
        also = f", {len(neg)} 'not mitochondria' clicks" if len(neg) else ""
        n_corr = 0 if corr is None else corr.n_objects
        also += f", {n_corr} corrected objects" if n_corr else ""
        self.status.emit(f"{verb} adaptation to {image.name!r} ({self.inputs.pixel_size_text()}) with {len(pts)} "
                         f"clicks{also}" + (f"; settings for this image: {'; '.join(chosen)}" if chosen else "")
                         + " …")
        worker = self.jobs.start(
            adapt_iter, (data, self._feed), kwargs, partial(self._on_adapted, job), what=ADAPTATION,
            on_yielded=partial(self._on_adapt_update, job), layer=image,
            stopping="Stopping: the best model so far is kept and applied …",
        )
        # After the runner's own error handler (it reports the failure first).
        worker.errored.connect(alive_only(self, partial(self._keep_best_on_error, job)))
        return worker

    def _fitted_settings(self, shape, n_clicks: int, voxel_size=None) -> tuple[dict, list[str]]:
        """The run's AdaptSettings overrides: the quick preset fitted to the image (core.adapt.auto), with why."""
        from .core.adapt.auto import AUTO_FIELDS, CROSS_VIEW_CHOICES, auto_settings, cross_views_choice

        minutes = float(self.minutes_spin.value())
        views = CROSS_VIEW_CHOICES[self.views_combo.currentText()]
        shape3 = tuple(shape) if len(shape) == 3 else (1, *shape[-2:])
        views_on, why = cross_views_choice(shape3, voxel_size, views)
        chosen: list[str] = [why]
        overrides = {"minutes": minutes, "cross_views": views_on}
        if self.preset_combo.currentText() == "quick":
            model = getattr(self.state.loaded, "model", None)  # None until loaded: the shipped model's geometry
            geometry = (model.config.downsample, model.multiple) if model is not None else ()
            auto, chosen = auto_settings(shape, n_clicks, minutes, *geometry, voxel_size=voxel_size,
                                         cross_views=views)
            overrides = {k: getattr(auto, k) for k in AUTO_FIELDS}
        return overrides | dict(self.adapt_overrides), chosen

    def _on_adapt_update(self, job: dict, update) -> None:
        if update.best is not None:
            job["best"] = update.best  # the best model so far, kept if the run fails later
        rep = update.report
        if rep.stage == "train" and rep.losses:
            self.loss_plot.add(self._step_offset + rep.step, rep.losses)
        self._adapt_progress(job, rep)
        if update.previews:
            why, kept = show_previews(self.viewer, self.inputs.points_layer, job["image_name"], job["geom"],
                                      update.previews, job["maps"])
            if why:
                self.status.emit(f"Live preview paused: {why}.")
            else:
                self.live_updates += 1
                self.labels_updated.emit(f"{job['image_name']}{INSTANCES_SUFFIX}")
            if kept and not job.get("told_kept"):  # once a run: the live masks go around the user's objects
                job["told_kept"] = True
                self.status.emit("The live masks keep your corrected objects as you left them.")
                return
        if self.jobs.stopping:
            return
        if rep.stage == "train":
            self.status.emit(f"Adapting {job['image_name']!r}: round {rep.round}/{rep.n_rounds}, step {rep.step}, "
                             f"{rep.it_per_s:.1f} it/s, {rep.n_clicks} clicks, {rep.n_pseudo} pseudo-instances.")
        elif rep.message:
            from .core.adapt.heldout import describe_quality

            quality = describe_quality(rep.quality) if rep.stage == "label" else ""
            self.status.emit(f"{STAGE_NAMES.get(rep.stage, rep.stage)}: {rep.message}"
                             + (f"; kept model: {quality}" if quality else ""))

    def _adapt_progress(self, job: dict, rep) -> None:
        frac = rep.elapsed_s / rep.budget_s if rep.budget_s else 0.0
        eta = rep.eta_s
        if job.get("max_iters"):
            frac = max(frac, rep.step / job["max_iters"])
            if rep.it_per_s > 0:
                eta = min(eta, (job["max_iters"] - rep.step) / rep.it_per_s)
        if rep.stage == "done":
            frac, eta = 1.0, 0.0
        where = f" · round {rep.round}/{rep.n_rounds}" if rep.n_rounds else ""
        self.progress.emit(int(PROGRESS_STEPS * min(1.0, max(0.0, frac))), PROGRESS_STEPS,
                           f"{STAGE_NAMES.get(rep.stage, rep.stage)}{where} · step {rep.step} · ~{_fmt_s(eta)} left")

    # ------------------------------------------------------------------ results
    def _take_result(self, job: dict, result) -> None:
        """The run's best model becomes the shared current model, with the run in its provenance."""
        from .core.engine.device import release_memory

        last = result.last
        self.state.add_run(result, {
            "image": job["image_path"], "from_model": job["source_model"], "resumed": job["resume"],
            "steps": int(last.step), "seconds": round(float(result.seconds), 1), "n_clicks": int(len(result.clicks)),
            "n_negative": int(last.n_negative), "n_corrected": int(last.n_corrected),
            "best_score": None if last.best_score is None else round(float(last.best_score), 4),
            "stopped": bool(result.stopped), "settings": result.settings.to_dict(), "kept_step": last.kept_step,
            "quality": last.quality,
        })
        release_memory()  # the replaced model's GPU memory goes back now, not when napari closes
        self._step_offset += int(last.step)
        self.loss_plot.flush()
        self.state.set_device(result.device)

    def _on_adapted(self, job: dict, result) -> None:
        if result is None:
            return
        self._take_result(job, result)
        last = result.last
        head = "Stopped: the best model so far is kept" if result.stopped else "Adaptation finished"
        score = f", label-free score {last.best_score:.3f}" if last.best_score is not None else ""
        if last.kept_step is None:  # the user must not wonder why nothing changed
            score += "; no adapted model scored above the starting one, so it is kept"
        if last.quality:  # how good the result is: the held-out clicks it was never trained on
            from .core.adapt.heldout import describe_quality

            score += f"; {describe_quality(last.quality)}"
        if layer_named(self.viewer, job["image_name"]) is None:  # the image was closed meanwhile: nothing to predict
            self.status.emit(f"{head} ({last.step} steps{score}); the image {job['image_name']!r} is gone.")
            return
        self.status.emit(f"{head} ({last.step} steps in {result.seconds:.0f} s{score}). Predicting the whole image …")
        self.adapted.emit(job["image_name"])  # the container has the best model segment every slice

    def _keep_best_on_error(self, job: dict, exc: BaseException) -> None:
        """The run failed after a round: its best model so far becomes the current one (Adapt resumes it)."""
        best = job.get("best")
        if best is None:
            return
        self._take_result(job, best)  # no whole-image prediction after a failure
        # A plain status line: the runner's error handler, connected first, has notified the failure.
        self.status.emit(f"Adaptation failed: {exc}. The best model so far is kept ({best.last.step} "
                         "steps); press Adapt to continue from it.")
