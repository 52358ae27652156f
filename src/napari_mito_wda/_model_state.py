"""The dock widget's current model: which checkpoint, the loaded network, the adaptation runs behind it.

One explicit object, shared by the sections that use the model (predict, adapt, save/load) and handed
to them in their constructors; every change is announced by ``model_changed(object)`` (the loaded
model, or None when it will be loaded at the next run) and the device by ``device_changed(str)``.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QObject, Signal

DEFAULT_MODEL = "default (shipped)"


class ModelState(QObject):
    model_changed = Signal(object)
    device_changed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.path: str | None = None  # None = the shipped default model
        self.loaded = None            # LoadedModel cached between runs (None: load `path` at the next run)
        self.runs: list[dict] = []    # the adaptation runs that produced `loaded` (provenance)
        self.result = None            # AdaptResult of the last run: what "Save model…" writes
        self.saved_path: str | None = None
        self.device = "detecting…"
        self._adapted_before = 0      # adaptations recorded in a checkpoint loaded from a file

    def use_path(self, path: str | None) -> None:
        """Another checkpoint (None = shipped default), loaded at the next run; forgets the adaptation."""
        self._forget(path)
        self.model_changed.emit(None)

    def use_file(self, path: str, loaded) -> None:
        """A checkpoint loaded (and checked) from `path` becomes the current model."""
        self._forget(path)
        self.loaded = loaded
        self._adapted_before = len(loaded.meta.get("adaptations", []))
        self.model_changed.emit(loaded)

    def use_loaded(self, loaded) -> None:
        """The model a run loaded from `path`, kept for the next runs."""
        self.loaded = loaded
        self.model_changed.emit(loaded)

    def add_run(self, result, run: dict) -> None:
        """An adaptation run ended: its best model (`result.model`) is now the current one."""
        self.loaded = result.model
        self.result = result
        self.saved_path = None
        self.runs.append(run)
        self.model_changed.emit(self.loaded)

    def mark_saved(self, path: str) -> None:
        self.saved_path = str(path)
        self.model_changed.emit(self.loaded)

    def set_device(self, text: str) -> None:
        self.device = text
        self.device_changed.emit(text)

    def _forget(self, path: str | None) -> None:
        self.path = str(path) if path else None
        self.loaded = None
        self.runs = []
        self.result = None
        self.saved_path = None
        self._adapted_before = 0

    @property
    def can_resume(self) -> bool:
        """Adapt again continues from the adapted model instead of starting over."""
        return bool(self.runs) and self.loaded is not None

    def source_name(self) -> str:
        """The checkpoint an adaptation starts from (for its provenance)."""
        if self.loaded is not None and getattr(self.loaded, "path", None):
            return str(self.loaded.path)
        return self.path or DEFAULT_MODEL

    def provenance(self) -> dict | None:
        """What made the current model (for the labels' metadata and the export sidecar)."""
        if not self.runs:
            return None
        return {"saved_as": self.saved_path, "runs": list(self.runs)}

    def describe(self) -> tuple[str, str]:
        """(label text, tooltip) that name the current model in the widget."""
        if self.runs:
            steps = sum(r["steps"] for r in self.runs)
            base = Path(self.runs[0]["from_model"]).name
            saved = f"saved as {Path(self.saved_path).name}" if self.saved_path else "not saved yet"
            return f"{base}, adapted ({len(self.runs)} run(s), {steps} steps; {saved})", self.saved_path or ""
        name = Path(self.path).name if self.path else DEFAULT_MODEL
        return name + (" (adapted)" if self._adapted_before else ""), self.path or ""
