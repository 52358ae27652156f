"""Dock widget "Mitochondria (WDA)": pick an image, click centres, predict instances, adapt, export them.

:class:`MitoWidget` is a thin container. Its child widgets each do one job and talk only through Qt
signals, wired here in one place:

* :class:`~napari_mito_wda._inputs_ui.InputsSection`: the image picker and the centre clicks;
* :class:`~napari_mito_wda._model_ui.ModelSection`: the current model, its device, "Load/Save model…";
* :class:`~napari_mito_wda._predict_ui.PredictSection`: Predict (in memory, or chunked into zarr);
* :class:`~napari_mito_wda._suggest_ui.SuggestSection`: "not mitochondria" clicks and suggested clicks;
* :class:`~napari_mito_wda._adapt_ui.AdaptSection`: "Adapt to this dataset" with its live loss plot;
* :class:`~napari_mito_wda._export_ui.ExportSection`: a Labels layer as TIFF + JSON sidecar;
* :class:`~napari_mito_wda._score_ui.ScoreSection`: Dice, AJI and PQ of the instances against a ground truth,
  scored again after each prediction and live update (in its own thread: also while a job runs).

What they share is explicit and handed to them in their constructors: the current model
(:class:`~napari_mito_wda._model_state.ModelState`) and the one runner of background jobs
(:class:`~napari_mito_wda._job_runner.JobRunner`, which tells every section when a run starts and
ends). The container owns the progress bar and the status line: every user-facing failure becomes a
red status line plus a napari error notification, never a traceback.

The attributes and methods below the wiring (``predict_button``, ``adapt()``, ``save_model()``...) reach
into the sections, for scripts and tests that drive the widget as one object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ._adapt_ui import AdaptSection
from ._export_ui import ExportSection
from ._inputs_ui import InputsSection, clicks_text, count_clicks  # noqa: F401 (tests import them here)
from ._job_runner import JobRunner
from ._model_state import ModelState
from ._model_ui import ModelSection
from ._predict_ui import PredictSection
from ._score_ui import ScoreSection
from ._suggest_ui import SuggestSection
from ._util import same_layer  # noqa: F401 (re-exported: tests import it here)

if TYPE_CHECKING:
    import napari


def _reach(section: str, name: str, doc: str = "") -> property:
    """A read-only attribute of the container that is `name` of its child `section`."""
    return property(lambda self: getattr(getattr(self, section), name), doc=doc or f"``{section}.{name}``")


class MitoWidget(QWidget):
    """Segment mitochondria in the selected EM image, adapt the model to it, export the instances."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.model_state = ModelState(self)
        self.jobs = JobRunner(self)  # closing napari (deleting this widget) stops its running job
        self.inputs = InputsSection(napari_viewer)
        self.model_section = ModelSection(self.model_state, self.jobs)
        self.annotator = SuggestSection(napari_viewer, self.inputs)
        self.predictor = PredictSection(napari_viewer, self.inputs, self.model_state, self.jobs, self.annotator)
        self.adapter = AdaptSection(napari_viewer, self.inputs, self.model_state, self.jobs, self.annotator)
        self.exporter = ExportSection(napari_viewer, self.inputs, self.model_state)
        self.scorer = ScoreSection(napari_viewer)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        for w in (self.inputs, self.model_section, self.predictor, self.annotator, self.adapter, self.progress_bar,
                  self.exporter, self.scorer, self.status_label):
            layout.addWidget(w)
        layout.addStretch(1)
        self._wire()
        self.refresh_layers()
        self.model_section.detect_device()

    def _wire(self) -> None:
        sections = (self.inputs, self.model_section, self.predictor, self.adapter, self.exporter)
        for source in (self.jobs, *sections, self.annotator, self.scorer):  # these two work while jobs run too
            source.status.connect(self._info)
            source.failed.connect(self._fail)
        for source in (self.jobs, self.predictor, self.adapter):
            source.progress.connect(self._show_progress)
        for section in sections:  # every section locks its own controls while a job runs
            self.jobs.started.connect(section.on_run_started)
            self.jobs.finished.connect(section.on_run_finished)
        self.predictor.labels_ready.connect(self.exporter.select_labels)
        self.predictor.predicted.connect(self.annotator.on_predicted)
        self.adapter.labels_ready.connect(self.exporter.select_labels)
        for source in (self.predictor, self.adapter):
            source.labels_ready.connect(self.scorer.on_labels_ready)
        self.adapter.labels_updated.connect(self.scorer.on_labels_updated)
        self.adapter.adapted.connect(self._predict_after_adapting)
        self.model_section.preset_minutes.connect(self.adapter.set_preset_minutes)
        self.annotator.labels_updated.connect(self.scorer.on_labels_updated)

    def _predict_after_adapting(self, image_name: str) -> None:
        """The adapted model segments every slice of its image once the adaptation's worker is done."""
        self.inputs.select_image(image_name)
        self.jobs.run_after(self.predictor.predict)

    # ------------------------------------------------------------ status line and progress bar
    def _info(self, msg: str) -> None:
        self.status_label.setStyleSheet("")
        self.status_label.setText(msg)

    def _fail(self, msg: str) -> None:
        """Show a problem to the user: widget status line + napari notification (no traceback)."""
        from napari.utils.notifications import show_error

        self.status_label.setStyleSheet("color: #e04040;")
        self.status_label.setText(msg)
        show_error(f"Mitochondria (WDA): {msg}")

    def _show_progress(self, done: int, total: int, fmt: str) -> None:
        if total > 0:  # 0: keep the range (a run that does not know its total yet)
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
        if fmt:
            self.progress_bar.setFormat(fmt)

    # ------------------------------------------------------------ the sections, reached as one widget
    def refresh_layers(self, *_args) -> None:
        """Re-fill the pickers from the viewer's layers, keeping the current choices where possible."""
        self.inputs.refresh_layers()
        self.exporter.refresh_layers()
        self.scorer.refresh_layers()

    @property
    def is_running(self) -> bool:
        return self.jobs.is_running

    @property
    def model_path(self) -> str | None:
        return self.model_state.path

    @property
    def adapt_overrides(self) -> dict:
        """Extra AdaptSettings fields of the next adaptation (tests, screenshots, scripted use)."""
        return self.adapter.adapt_overrides

    @adapt_overrides.setter
    def adapt_overrides(self, value: dict) -> None:
        self.adapter.adapt_overrides = value

    def set_model_path(self, path: str | None) -> None:
        """Use another checkpoint (None = shipped default); it is loaded on the next Predict."""
        self.model_state.use_path(path)

    def stop(self) -> None:
        self.jobs.stop()

    image_combo = _reach("inputs", "image_combo")
    add_points_button = _reach("inputs", "add_points_button")
    clicks_label = _reach("inputs", "clicks_label")
    pixel_size_spin = _reach("inputs", "pixel_size_spin")
    image_layer = _reach("inputs", "image_layer")
    points_layer = _reach("inputs", "points_layer")
    add_points_layer = _reach("inputs", "add_points_layer")
    model_label = _reach("model_section", "model_label")
    model_button = _reach("model_section", "model_button")
    save_model_button = _reach("model_section", "save_model_button")
    device_label = _reach("model_section", "device_label")
    save_model = _reach("model_section", "save_model")
    load_model_file = _reach("model_section", "load_model_file")
    flips_check = _reach("predictor", "flips_check")
    orthoplanes_check = _reach("predictor", "orthoplanes_check")
    link3d_check = _reach("predictor", "link3d_check")
    predict_button = _reach("predictor", "predict_button")
    predict = _reach("predictor", "predict")
    predict_to_zarr = _reach("predictor", "predict_to_zarr")
    preset_combo = _reach("adapter", "preset_combo")
    minutes_spin = _reach("adapter", "minutes_spin")
    maps_check = _reach("adapter", "maps_check")
    adapt_button = _reach("adapter", "adapt_button")
    loss_plot = _reach("adapter", "loss_plot")
    live_updates = _reach("adapter", "live_updates")
    adapt = _reach("adapter", "adapt")
    add_negative_layer = _reach("annotator", "add_negative_layer")
    suggest_button = _reach("annotator", "suggest_button")
    next_button = _reach("annotator", "next_button")
    keep_button = _reach("annotator", "keep_button")
    reject_button = _reach("annotator", "reject_button")
    labels_combo = _reach("exporter", "labels_combo")
    labels_layer = _reach("exporter", "labels_layer")
    export_button = _reach("exporter", "export_button")
    export_labels = _reach("exporter", "export_labels")
    gt_combo = _reach("scorer", "gt_combo")
    score_instances_combo = _reach("scorer", "instances_combo")
    score_button = _reach("scorer", "score_button")
    score_label = _reach("scorer", "score_label")
    score = _reach("scorer", "score")
    is_scoring = _reach("scorer", "is_scoring")
    last_scores = _reach("scorer", "last_metrics")
