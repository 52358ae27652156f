"""The dock widget's "Teach the model" box: negative clicks, and suggested clicks to answer one by one.

:class:`SuggestSection` owns the image's ``<image> not mitochondria`` Points layer (red crosses: the objects
under them become background in the adaptation, core/adapt/negatives.py) and its ``<image> suggested clicks``
layer, filled by "Suggest clicks" from the last whole-image prediction (core/adapt/suggest.py), with the flip
check by default: the model of that prediction segments the mirrored image once more in a worker thread, and
objects whose probability changes rank first. "Next suggestion" moves the view to the next one and selects it;
"Keep as mitochondrion" / "Not a mitochondrion" move it into the centres or the negative layer. All of it
works while an adaptation runs: the running adaptation takes the clicks up at its next round. Signals:
``negatives_changed()``, ``labels_updated(str)`` (a negative click took an object out of that instances layer,
_shown_negatives), ``suggested(layer)`` (the suggestions are in), ``status(str)``, ``failed(str)``.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QPushButton, QSpinBox, QWidget

from ._inputs_ui import points_layer_on
from ._jobs import alive_only
from ._live_layers import INSTANCES_SUFFIX
from ._shown_negatives import leave_out_in_layer, user_clicks
from ._util import layer_named, points_in_image_coords, same_layer

NEGATIVE_SUFFIX = " not mitochondria"
SUGGESTED_SUFFIX = " suggested clicks"


class SuggestSection(QGroupBox):
    """'Not mitochondria' clicks, suggested clicks and the buttons that answer them."""

    negatives_changed = Signal()
    labels_updated = Signal(str)
    suggested = Signal(object)
    status = Signal(str)
    failed = Signal(str)

    def __init__(self, viewer, inputs, parent: QWidget | None = None):
        super().__init__("Teach the model", parent)
        self.viewer, self.inputs = viewer, inputs
        self._maps: dict | None = None   # the last prediction: image name, uint8 maps, the model behind them
        self._flip_worker = None         # the mirrored pass of "Suggest clicks", while it runs
        self._current: int | None = None  # index of the suggestion in view
        self._watched = None             # the negative layer whose edits are announced
        form = QFormLayout(self)
        self.add_negative_button = QPushButton("Add 'not mitochondria' layer")
        self.add_negative_button.setToolTip("Click false objects (vesicles, membranes...): the model learns they are "
                                            "background at the next adaptation round")
        self.add_negative_button.clicked.connect(self.add_negative_layer)
        self.n_spin = QSpinBox()
        self.n_spin.setRange(1, 500)
        self.n_spin.setValue(10)
        self.suggest_button = QPushButton("Suggest clicks")
        self.suggest_button.setToolTip("After Predict: the places where a click would teach the model most (unsure "
                                       "objects, the two heads disagreeing), spread over the image")
        self.suggest_button.clicked.connect(self.suggest)
        self.flip_check = QCheckBox("Check the mirrored image too (one more pass)")
        self.flip_check.setChecked(True)
        self.flip_check.setToolTip("Segments the mirrored image with the model of the last prediction (in the "
                                   "background) and ranks first the objects whose probability changes: the model "
                                   "is unsure of them")
        self.next_button = QPushButton("Next suggestion")
        self.next_button.clicked.connect(self.next_suggestion)
        self.keep_button = QPushButton("Keep as mitochondrion")
        self.keep_button.clicked.connect(lambda: self.answer(True))
        self.reject_button = QPushButton("Not a mitochondrion")
        self.reject_button.clicked.connect(lambda: self.answer(False))
        row = QHBoxLayout()
        for b in (self.keep_button, self.reject_button):
            row.addWidget(b)
        form.addRow(self.add_negative_button)
        form.addRow("Suggestions:", self.n_spin)
        form.addRow(self.flip_check)
        form.addRow(self.suggest_button)
        form.addRow(self.next_button)
        form.addRow(row)
        self._enable_answers()
        inputs.image_combo.currentTextChanged.connect(self._watch_negatives)
        viewer.layers.events.inserted.connect(self._watch_negatives)

    # ------------------------------------------------------------ layers
    def _layer(self, suffix: str, image=None):
        image = image if image is not None else self.inputs.image_layer
        return None if image is None else layer_named(self.viewer, f"{image.name}{suffix}")

    @property
    def negative_layer(self):
        return self._layer(NEGATIVE_SUFFIX)

    @property
    def suggested_layer(self):
        return self._layer(SUGGESTED_SUFFIX)

    def add_negative_layer(self):
        """Create (or re-select) the image's 'not mitochondria' Points layer in add mode; return it."""
        image = self.inputs.checked_image()
        if image is None:
            return None
        layer = points_layer_on(self.viewer, image, f"{image.name}{NEGATIVE_SUFFIX}", face_color="red",
                                border_color="white", symbol="x")
        self._watch_negatives()
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.emit(f"Click false objects in {image.name!r} (vesicles, membranes): they become background.")
        return layer

    def _watch_negatives(self, *_args) -> None:
        """Announce edits of the current image's negative layer (a running adaptation takes them up)."""
        layer = self.negative_layer
        if same_layer(layer, self._watched):
            return
        if self._watched is not None:
            try:
                self._watched.events.data.disconnect(self._on_negatives_edited)
            except (TypeError, ValueError, RuntimeError):
                pass
        self._watched = layer
        if layer is not None:
            layer.events.data.connect(self._on_negatives_edited)
        self.negatives_changed.emit()

    def _on_negatives_edited(self, *_args) -> None:
        self._leave_out_negated()
        self.negatives_changed.emit()

    def _leave_out_negated(self) -> None:
        """A new negative click takes the object under it out of the image's shown instances at once."""
        from napari.layers import Labels

        image = self.inputs.image_layer
        layer = self._layer(INSTANCES_SUFFIX, image) if image is not None else None
        if not isinstance(layer, Labels) or np.shape(layer.data) != np.shape(image.data):
            return
        neg, pos = user_clicks(self.inputs, self, image, np.shape(image.data))
        n = leave_out_in_layer(layer, neg, pos, bool(layer.metadata.get("mito_wda", {}).get("link_3d", False)))
        if n:
            self.labels_updated.emit(layer.name)
            self.status.emit(f"{n} object(s) under your 'not mitochondria' clicks left out of {layer.name!r}.")

    def negatives_in_image_coords(self, image) -> list[list[float]]:
        return points_in_image_coords(self._layer(NEGATIVE_SUFFIX, image), image)

    # ------------------------------------------------------------ suggestions
    def on_predicted(self, image_name: str, result) -> None:
        """Keep the maps of a whole-image prediction, as uint8 (a quarter of float32's memory), and the
        probability of the one before it of the same image (after an adaptation: what changed)."""
        if result.prob is None or result.heat is None:
            return
        prob = (np.clip(result.prob, 0, 1) * 255).astype(np.uint8)
        old = self._maps
        previous = old["prob"] if old and old["image"] == image_name and old["prob"].shape == prob.shape else None
        self._maps = {"image": image_name, "prob": prob, "previous": previous, "model": result.model,
                      "heat": (np.clip(result.heat, 0, 1) * 255).astype(np.uint8)}

    @property
    def is_suggesting(self) -> bool:
        """The mirrored pass of "Suggest clicks" is running."""
        return self._flip_worker is not None

    def suggest(self):
        """Suggest clicks in the selected image from its last prediction.

        Without the flip check the layer is filled at once and returned; with it, the mirrored pass starts
        in a worker thread and that worker is returned: the layer follows (``suggested``).
        """
        image = self.inputs.checked_image()
        if image is None:
            return None
        if self._maps is None or self._maps["image"] != image.name:
            self.failed.emit(f"No prediction of {image.name!r} yet: press Predict first, then Suggest clicks.")
            return None
        if self._flip_worker is not None:
            self.failed.emit("Suggestions are already being computed; wait for them.")
            return None
        if not self.flip_check.isChecked() or self._maps["model"] is None:
            return self._fill(image, None)
        return self._start_flip_pass(image)

    def _start_flip_pass(self, image):
        from napari.qt.threading import thread_worker

        from .core.adapt.suggest import mirrored_prob

        maps = self._maps
        data = np.asarray(image.data)  # read here: the worker never touches a layer
        pixel_size = self.inputs.pixel_size()

        def mirrored():  # the model of the maps: a running adaptation trains a copy, never this one
            return (np.clip(mirrored_prob(data, maps["model"], pixel_size=pixel_size), 0, 1) * 255).astype(np.uint8)

        worker = thread_worker(mirrored, start_thread=False, ignore_errors=True)()
        name = image.name
        worker.returned.connect(alive_only(self, lambda flipped: self._on_mirrored(name, maps, flipped)))
        worker.errored.connect(alive_only(self, lambda exc: self.failed.emit(f"Suggesting clicks failed: {exc}")))
        worker.finished.connect(alive_only(self, self._on_flip_finished))
        self._flip_worker = worker
        self.suggest_button.setEnabled(False)
        self.status.emit(f"Suggesting clicks in {name!r}: segmenting the mirrored image …")
        worker.start()
        return worker

    def _on_mirrored(self, name: str, maps: dict, flipped: np.ndarray) -> None:
        image = layer_named(self.viewer, name)
        if image is None or maps is not self._maps:  # the image went, or a new prediction came meanwhile
            self.status.emit(f"The suggestions for {name!r} were dropped: the image or its prediction changed "
                             "meanwhile; press Suggest clicks again.")
            return
        self._fill(image, flipped)

    def _on_flip_finished(self) -> None:
        self._flip_worker = None
        self.suggest_button.setEnabled(True)

    def _fill(self, image, flipped):
        """Rank the candidates (flipped: uint8 mirrored probability, or None), fill the layer, return it."""
        from .core.adapt.suggest import suggest_points

        given = [np.asarray(p, float) for p in (self.inputs.centres_in_image_coords(image),
                                                self.negatives_in_image_coords(image)) if len(p)]
        existing = np.concatenate(given) if given else np.zeros((0, image.ndim))
        if image.ndim == 2:
            existing = np.column_stack([np.zeros(len(existing)), existing])
        m = self._maps
        shown = layer_named(self.viewer, f"{image.name}{INSTANCES_SUFFIX}")  # what the user sees, corrections too
        labels = None if shown is None or np.shape(shown.data) != m["prob"].shape else np.asarray(shown.data)
        sug = suggest_points(m["prob"] / 255.0, m["heat"] / 255.0, int(self.n_spin.value()), existing_points=existing,
                             previous_prob=None if m["previous"] is None else m["previous"] / 255.0,
                             flipped_prob=None if flipped is None else flipped / 255.0, labels=labels)
        pts = sug.points if image.ndim == 3 else sug.points[:, 1:]
        layer = points_layer_on(self.viewer, image, f"{image.name}{SUGGESTED_SUFFIX}", face_color="transparent",
                                border_color="cyan", symbol="diamond")
        layer.data = pts
        # what ranked them, for the user (layer info) and for scripts
        layer.metadata["suggestions"] = {"flip_checked": flipped is not None, "kinds": list(sug.kinds),
                                         "scores": [round(float(v), 4) for v in sug.scores]}
        self._current = None
        self._enable_answers()
        note = f" ({sug.message})" if sug.message else ""
        how = ", flip-checked" if flipped is not None else ""
        summary = f"{len(sug)} suggested clicks in {image.name!r}{how}{note}"
        if len(sug):  # the first one in view; the summary leads its prompt, which would hide it otherwise
            self._current = 0
            self._show(layer, 0, lead=f"{summary}. ")
        else:
            self.status.emit(f"{summary}.")
        self.suggested.emit(layer)
        return layer

    def next_suggestion(self) -> int | None:
        """Centre the view on the next suggestion and select it; return its index (None: none left)."""
        layer = self.suggested_layer
        n = 0 if layer is None else len(layer.data)
        if n == 0:
            self._current = None
            self._enable_answers()
            self.status.emit("No suggestion left: press Suggest clicks (after Predict or an adaptation).")
            return None
        self._current = 0 if self._current is None else (self._current + 1) % n
        self._show(layer, self._current)
        return self._current

    def _show(self, layer, i: int, lead: str = "") -> None:
        world = np.asarray(layer.data_to_world(layer.data[i]), float)
        if len(world) == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[0])
        _camera(self.viewer).center = tuple(world[-2:])
        layer.selected_data = {i}
        self._enable_answers()
        self.status.emit(f"{lead}Suggestion {i + 1} of {len(layer.data)}: is it a mitochondrion? Keep it, mark it "
                         "'not a mitochondrion', or go to the next one.")

    def answer(self, is_mito: bool):
        """Move the suggestion in view into the centres (True) or the negative layer (False), show the next."""
        layer, i = self.suggested_layer, self._current
        if layer is None or i is None or i >= len(layer.data):
            self.failed.emit("No suggestion in view: press Next suggestion first.")
            return None
        point = np.asarray(layer.data[i], float)
        active = self.viewer.layers.selection.active
        if is_mito:
            target = self.inputs.points_layer or self.inputs.add_points_layer()
        else:
            target = self.negative_layer or self.add_negative_layer()
        if target is None:
            return None
        target.add(target.world_to_data(layer.data_to_world(point)))
        layer.selected_data = {i}
        layer.remove_selected()
        if active is not None:
            self.viewer.layers.selection.active = active  # answering must not switch the user's tool
        if len(layer.data):
            self._current = i % len(layer.data)
            self._show(layer, self._current)
        else:
            self._current = None
            self._enable_answers()
            self.status.emit("All suggestions answered: adapt (or keep adapting) to teach them to the model.")
        return target

    def _enable_answers(self) -> None:
        on = self._current is not None
        self.keep_button.setEnabled(on)
        self.reject_button.setEnabled(on)


def _camera(viewer):
    """The viewer's camera: napari 0.9 moved it to viewer.scene (viewer.camera warns there)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera
