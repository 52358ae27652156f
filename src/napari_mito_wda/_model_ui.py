"""The dock widget's "Model" box: which model is current, where it runs, "Load model…" and "Save model…".

:class:`ModelSection` shows the shared :class:`~napari_mito_wda._model_state.ModelState` (it follows
``model_changed`` and ``device_changed``), saves the adapted model with its provenance and loads a
checkpoint in the background through the :class:`~napari_mito_wda._job_runner.JobRunner`. It detects
the device at start and then announces the engine's preset budgets by ``preset_minutes(dict)``.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._job_runner import LOADING
from ._jobs import alive_only


class ModelSection(QGroupBox):
    """The current model, its device, and its files."""

    preset_minutes = Signal(dict)
    status = Signal(str)
    failed = Signal(str)

    def __init__(self, state, jobs, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.state = state
        self.jobs = jobs
        ml = QVBoxLayout(self)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        ml.addWidget(self.model_label)
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
        self.device_label = QLabel()
        self.device_label.setToolTip("Where the network runs (set MITO_WDA_DEVICE=cpu to force the CPU)")
        ml.addWidget(self.device_label)
        state.model_changed.connect(self._show_model)
        state.device_changed.connect(self._show_device)
        self._show_model()
        self._show_device(state.device)

    def _show_model(self, *_args) -> None:
        text, tooltip = self.state.describe()
        self.model_label.setText(text)
        self.model_label.setToolTip(tooltip)

    def _show_device(self, text: str) -> None:
        self.device_label.setText(f"Device: {text}")

    # ------------------------------------------------------------ running jobs
    def on_run_started(self, _what: str) -> None:
        self.model_button.setEnabled(False)
        self.save_model_button.setEnabled(False)

    def on_run_finished(self) -> None:
        self.model_button.setEnabled(True)
        self.save_model_button.setEnabled(True)

    # ------------------------------------------------------------ device
    def detect_device(self) -> None:
        """Fill the persistent device label off the GUI thread (importing torch takes a moment)."""
        from napari.qt.threading import thread_worker

        def describe() -> tuple[str, dict]:
            from .core.adapt import AdaptSettings  # imports torch: here, not on the GUI thread
            from .core.engine.device import pick_device

            minutes = {p: AdaptSettings.preset(p).minutes for p in ("quick", "thorough")}
            return pick_device().describe(), minutes

        worker = thread_worker(describe, start_thread=False, ignore_errors=True)()
        worker.returned.connect(alive_only(self, self._on_device_detected))
        worker.errored.connect(alive_only(self, lambda exc: self.state.set_device(f"unavailable ({exc})")))
        self._device_worker = worker
        worker.start()

    def _on_device_detected(self, info: tuple[str, dict]) -> None:
        text, minutes = info
        self.state.set_device(text)
        self.preset_minutes.emit(minutes)

    # ------------------------------------------------------------ save
    def _on_save_model_clicked(self) -> None:
        if self.state.result is None:
            self.failed.emit("No adapted model to save: press 'Adapt to this dataset' first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the adapted model", "adapted_model.pt", "Checkpoints (*.pt)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.save_model(path, overwrite=False)

    def save_model(self, path, overwrite: bool = False) -> str | None:
        """Write the adapted model with its provenance (never replacing a file unless asked); path or None."""
        state = self.state
        if state.result is None or state.loaded is None:
            self.failed.emit("No adapted model to save: press 'Adapt to this dataset' first.")
            return None
        if self.jobs.is_running:
            self.failed.emit("Adaptation is running; press Stop first (the best model is kept), then save.")
            return None
        from .core.adapt import save_adapted

        path = Path(path)
        if path.suffix.lower() != ".pt":
            path = path.with_name(path.name + ".pt")
        r = state.result
        loaded = dataclasses.replace(state.loaded, meta=dict(state.loaded.meta) | {"napari_runs": state.runs})
        try:
            out = save_adapted(path, loaded, r.settings, r.clicks, r.last, image_path=state.runs[-1]["image"],
                               overwrite=overwrite)
        except (OSError, ValueError) as exc:  # FileExistsError, InputError (no folder), disk full
            self.failed.emit(f"Saving the model failed: {exc}")
            return None
        state.mark_saved(str(out))
        self.status.emit(f"Saved the adapted model to {out}. Load it later with 'Load model…' or "
                         f"`mito-wda predict IMAGE.tif --model {Path(out).name} -o OUT.tif`.")
        return str(out)

    # ------------------------------------------------------------ load
    def _on_load_model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a model checkpoint", "", "Checkpoints (*.pt);;All files (*)")
        if path:
            self.load_model_file(path)

    def load_model_file(self, path):
        """Load and check a checkpoint in the background; it becomes the current model. Returns the worker."""
        from ._adapt_worker import load_iter

        if self.jobs.is_running:
            self.failed.emit("Something is running; press Stop first.")
            return None
        self.status.emit(f"Loading {Path(path).name} …")
        return self.jobs.start(load_iter, (str(path),), {}, partial(self._on_model_loaded, str(path)), what=LOADING,
                               stoppable=False)

    def _on_model_loaded(self, path: str, loaded) -> None:
        self.state.use_file(path, loaded)
        n = len(loaded.meta.get("adaptations", []))
        self.status.emit(f"Model {Path(path).name} loaded" + (f" (adapted {n} time(s) before)." if n else "."))
