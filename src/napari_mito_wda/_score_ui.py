"""The dock widget's "Score" box: Dice, AJI and PQ of the current instances against a ground truth.

:class:`ScoreSection` compares an instances Labels layer (the one Predict or an adaptation last wrote
arrives by :meth:`on_labels_ready`) with the ground-truth Labels layer the user picks, with
:func:`napari_mito_wda.core.evaluation.metrics.evaluate_volume` in a thread of its own: not through the
JobRunner, so that it also scores while an adaptation runs, and off the GUI thread, so that a big volume
does not freeze the viewer. Once a ground truth is chosen, every new prediction and every live update of
an adaptation (:meth:`on_labels_updated`) is scored again: one scoring at a time, and one more after it
when the layers changed meanwhile. Announces each scoring shown by ``scored(dict)`` (evaluate_volume's
dict) and reports through ``status(str)`` / ``failed(str)``; the problems of an automatic re-score show in
the section only (no notification at every live update).
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton, QWidget

from ._inputs_ui import refill
from ._jobs import alive_only
from ._util import layer_named, same_layer

NO_GT = "(none)"
IDLE_TEXT = "Choose a ground-truth Labels layer, then press Score."
READY_TEXT = "Press Score (then every Predict and live update is scored again)."


def scores_text(m: dict) -> str:
    """One line of evaluate_volume's main numbers, e.g. 'Dice 0.812 · AJI 0.655 · PQ 0.501 — 16 slices, …'."""
    n = int(m["n_slices"])
    return (f"Dice {m['dice']:.3f} · AJI {m['aji']:.3f} · PQ {m['pq']:.3f} — {n} slice{'' if n == 1 else 's'}, "
            f"{m['n_pred_objects']} predicted / {m['n_gt_objects']} true objects")


def _evaluate(pred_data, gt_data) -> dict:
    """The worker thread's job (arrays in memory, or lazy ones read here rather than on the GUI thread)."""
    from .core.evaluation.metrics import evaluate_volume

    return evaluate_volume(pred_data, gt_data, per_slice=False)


class ScoreSection(QGroupBox):
    """Ground-truth and instances pickers, "Score" and the scores of the last scoring."""

    scored = Signal(dict)
    status = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer, parent: QWidget | None = None):
        super().__init__("Score against ground truth", parent)
        self.viewer = viewer
        self.last_metrics: dict | None = None  # evaluate_volume's dict of the last scoring shown
        self.n_scored = 0                      # how many scorings were shown (tests, scripted use)
        self._worker = None
        self._job: tuple[str, str] | None = None  # (instances, ground truth) names of the running scoring
        self._again: str | None = None            # None, "auto" or "manual": score again when it ends
        self._offered: set[str] = set()           # "... ground truth" layers already picked once
        form = QFormLayout(self)
        self.gt_combo = QComboBox()
        self.gt_combo.setToolTip("Labels layer with the true instances (e.g. the sample's ground truth), of the "
                                 "same shape as the instances")
        self.instances_combo = QComboBox()
        self.instances_combo.setToolTip("Labels layer to score: the one Predict or the adaptation last wrote")
        self.score_button = QPushButton("Score")
        self.score_button.setToolTip("Dice (pooled over the volume), AJI and PQ (means over the 2D slices), as in "
                                     "docs/benchmarks.md")
        self.score_button.clicked.connect(lambda *_: self.score())
        self.score_label = QLabel(IDLE_TEXT)
        self.score_label.setWordWrap(True)
        self.score_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Ground truth:", self.gt_combo)
        form.addRow("Instances:", self.instances_combo)
        form.addRow(self.score_button)
        form.addRow(self.score_label)
        self.gt_combo.currentTextChanged.connect(self._on_choice_changed)
        self.instances_combo.currentTextChanged.connect(self._on_choice_changed)
        ev = viewer.layers.events
        for event in (ev.inserted, ev.removed, ev.reordered, getattr(ev, "renamed", None)):
            if event is not None:
                event.connect(self.refresh_layers)

    # ------------------------------------------------------------ layers
    def refresh_layers(self, *_args) -> None:
        from napari.layers import Labels

        names = [ly.name for ly in self.viewer.layers if isinstance(ly, Labels)]
        refill(self.gt_combo, [NO_GT, *names])
        refill(self.instances_combo, names)
        # A layer named "... ground truth" (the samples open one) is picked once, when it appears; a user
        # who then chooses "(none)" keeps that choice.
        fresh = [n for n in names if n.lower().endswith("ground truth") and n not in self._offered]
        self._offered.update(fresh)
        if fresh and self.gt_combo.currentText() == NO_GT:
            self.gt_combo.setCurrentText(fresh[0])

    @property
    def gt_layer(self):
        name = self.gt_combo.currentText()
        return None if name == NO_GT else layer_named(self.viewer, name)

    @property
    def instances_layer(self):
        return layer_named(self.viewer, self.instances_combo.currentText())

    @property
    def is_scoring(self) -> bool:
        return self._worker is not None

    def select_gt(self, name: str) -> None:
        self.gt_combo.setCurrentText(name)

    def on_labels_ready(self, name: str) -> None:
        """Predict (or an adaptation) wrote the instances `name`: pick them, score them if a ground truth is chosen."""
        self.instances_combo.setCurrentText(name)
        self.rescore()

    def on_labels_updated(self, name: str) -> None:
        """A live update of an adaptation changed the instances `name`: score them again if they are the chosen ones."""
        if name == self.instances_combo.currentText():
            self.rescore()

    def rescore(self, *_args) -> None:
        """Score again, quietly, when a ground truth is chosen."""
        if self.gt_combo.currentText() != NO_GT:
            self.score(manual=False)

    def _on_choice_changed(self, *_args) -> None:
        self.last_metrics = None  # the scores shown were those of other layers
        if not self.is_scoring:
            self.score_label.setText(IDLE_TEXT if self.gt_layer is None else READY_TEXT)

    # ------------------------------------------------------------ scoring
    def _problem(self, pred, gt) -> str | None:
        if gt is None:
            return "no ground truth chosen: pick its Labels layer under Ground truth."
        if pred is None:
            return "no instances to score: press Predict first (or open a labels layer)."
        if same_layer(pred, gt):
            return (f"the ground truth and the instances are the same layer ({gt.name!r}); pick the predicted "
                    "instances under Instances.")
        for layer in (pred, gt):
            if getattr(layer, "multiscale", False):
                return f"{layer.name!r} is a multiscale labels layer; open its full-resolution level as a plain layer."
        if tuple(pred.data.shape) != tuple(gt.data.shape):
            return (f"the instances {pred.name!r} have shape {tuple(pred.data.shape)}, the ground truth {gt.name!r} "
                    f"has {tuple(gt.data.shape)}; they must cover the same voxels.")
        return None

    def score(self, manual: bool = True) -> bool:
        """Score the chosen instances against the chosen ground truth in a background thread.

        Returns True when a scoring started (or will run once the current one ends), False after saying why
        not (`manual`: through ``failed``, else only in the section's label).
        """
        from napari.qt.threading import thread_worker

        if self._worker is not None:  # one at a time: the next one runs on what the layers hold then
            self._again = "manual" if manual or self._again == "manual" else "auto"
            return True
        pred, gt = self.instances_layer, self.gt_layer
        problem = self._problem(pred, gt)
        if problem:
            self.score_label.setText(f"Not scored: {problem}")
            if manual:
                self.failed.emit(f"Cannot score: {problem}")
            return False
        # The worker reads the layers' arrays as they are; a live update writing them meanwhile asks for
        # another scoring (is_scoring), so the scores shown last are those of the layers' last state.
        worker = thread_worker(_evaluate, start_thread=False, ignore_errors=True)(pred.data, gt.data)
        job = (pred.name, gt.name)
        worker.returned.connect(alive_only(self, lambda m: self._on_scored(job, manual, m)))
        worker.errored.connect(alive_only(self, lambda exc: self._on_error(manual, exc)))
        worker.finished.connect(alive_only(self, self._on_finished))
        self._worker, self._job = worker, job
        if manual or self.last_metrics is None:
            self.score_label.setText(f"Scoring {pred.name!r} against {gt.name!r} …")
        worker.start()
        return True

    def _on_scored(self, job: tuple[str, str], manual: bool, metrics: dict) -> None:
        if job != (self.instances_combo.currentText(), self.gt_combo.currentText()):
            self.score_label.setText(READY_TEXT)  # the user picked other layers meanwhile: not theirs
            return
        self.last_metrics = metrics
        self.n_scored += 1
        text = scores_text(metrics)
        self.score_label.setText(text)
        self.score_label.setToolTip(f"{job[0]!r} against the ground truth {job[1]!r}")
        self.scored.emit(metrics)
        if manual:
            self.status.emit(f"{job[0]!r} against {job[1]!r}: {text}.")

    def _on_error(self, manual: bool, exc: BaseException) -> None:
        self.score_label.setText(f"Not scored: {exc}")
        if manual:
            self.failed.emit(f"Scoring failed: {exc}")

    def _on_finished(self) -> None:
        self._worker = self._job = None
        again, self._again = self._again, None
        if again is not None:
            self.score(manual=again == "manual")
