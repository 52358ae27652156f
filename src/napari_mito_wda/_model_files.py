"""Save and load the widget's model ("Save model…", "Load model…"): a mixin of the adaptation section.

Split from :mod:`napari_mito_wda._adapt_ui` to keep files short; it uses the same widget state
(_model, _adapt_result, _adapt_runs, _saved_model_path) and helpers (_fail, _info, _start_worker).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from qtpy.QtWidgets import QFileDialog


class ModelFiles:
    """Mixin: save the adapted model with its provenance; load a checkpoint in the background."""

    def _on_save_model_clicked(self) -> None:
        if self._adapt_result is None:
            self._fail("No adapted model to save: press 'Adapt to this dataset' first.")
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the adapted model", "adapted_model.pt", "Checkpoints (*.pt)",
            options=QFileDialog.Option.DontConfirmOverwrite,
        )
        if path:
            self.save_model(path, overwrite=False)

    def save_model(self, path, overwrite: bool = False) -> str | None:
        """Write the adapted model with its provenance (never replacing a file unless asked); path or None."""
        if self._adapt_result is None or self._model is None:
            self._fail("No adapted model to save: press 'Adapt to this dataset' first.")
            return None
        if self.is_running:
            self._fail("Adaptation is running; press Stop first (the best model is kept), then save.")
            return None
        from .core.adapt import save_adapted

        path = Path(path)
        if path.suffix.lower() != ".pt":
            path = path.with_name(path.name + ".pt")
        r = self._adapt_result
        loaded = dataclasses.replace(self._model, meta=dict(self._model.meta) | {"napari_runs": self._adapt_runs})
        try:
            out = save_adapted(path, loaded, r.settings, r.clicks, r.last, image_path=self._adapt_runs[-1]["image"],
                               overwrite=overwrite)
        except (OSError, ValueError) as exc:  # FileExistsError, InputError (no folder), disk full
            self._fail(f"Saving the model failed: {exc}")
            return None
        self._saved_model_path = str(out)
        self._update_model_label()
        self._info(f"Saved the adapted model to {out}. Load it later with 'Load model…' or "
                   f"`mito-wda predict IMAGE.tif --model {Path(out).name} -o OUT.tif`.")
        return str(out)

    def _on_load_model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a model checkpoint", "", "Checkpoints (*.pt);;All files (*)")
        if path:
            self.load_model_file(path)

    def load_model_file(self, path):
        """Load and check a checkpoint in the background; it becomes the current model. Returns the worker."""
        from ._adapt_worker import load_iter

        if self.is_running:
            self._fail("Something is running; press Stop first.")
            return None
        self._info(f"Loading {Path(path).name} …")
        return self._start_worker(load_iter, (str(path),), {}, partial(self._on_model_loaded, str(path)),
                                  what="Loading the model")

    def _on_model_loaded(self, path: str, loaded) -> None:
        self.set_model_path(path)
        self._model = loaded
        n = len(loaded.meta.get("adaptations", []))
        self._info(f"Model {Path(path).name} loaded" + (f" (adapted {n} time(s) before)." if n else "."))
        self.model_label.setText(Path(path).name + (" (adapted)" if n else ""))
