"""Worker side of "Adapt to this dataset": drives core.adapt.adapt and turns its reports into previews.

No napari and no Qt here (tested without a viewer). The widget wraps :func:`adapt_iter` in a napari
``thread_worker``; every yielded :class:`AdaptUpdate` reaches the GUI thread, which alone writes layers.
Clicks (centres, and "not mitochondria") travel the other way through :class:`ClickFeed` objects that the
GUI thread refills whenever the points change, the user's corrections through a :class:`LatestValue`; the
engine re-reads them at each round.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ClickFeed:
    """The latest clicks (image voxel coordinates), written by the GUI thread, read by the worker."""

    def __init__(self, points=None, ndim: int = 3):
        self._lock = threading.Lock()
        self._ndim = ndim
        self._pts = np.zeros((0, ndim))
        self.set(points)

    def set(self, points) -> None:
        arr = np.zeros((0, self._ndim)) if points is None else np.array(points, dtype=np.float64)
        arr = arr.reshape(-1, self._ndim) if arr.size else np.zeros((0, self._ndim))
        with self._lock:
            self._pts = arr

    def get(self) -> np.ndarray:
        with self._lock:
            return self._pts.copy()


class LatestValue:
    """The latest value of something the GUI thread updates (the user's corrections), read by the worker."""

    def __init__(self, value=None):
        self._lock = threading.Lock()
        self._value = value

    def set(self, value) -> None:
        with self._lock:
            self._value = value

    def get(self):
        with self._lock:
            return self._value


@dataclass
class AdaptUpdate:
    """One engine report (its big prediction arrays dropped) plus full-resolution slice previews."""

    report: Any                      # core.adapt.AdaptReport with prediction=None
    previews: list = field(default_factory=list)  # core.adapt.live.SlicePreview
    best: Any = None                 # AdaptResult of the best model so far, when it changed (at a round start)


@dataclass
class AdaptResult:
    model: Any                       # core.data.checkpoint.LoadedModel holding the best adapted weights
    settings: Any                    # core.adapt.AdaptSettings actually used
    clicks: np.ndarray               # the clicks of the last round (voxel coordinates)
    last: Any                        # the final AdaptReport ("done")
    device: str
    seconds: float
    stopped: bool


def adapt_iter(
    image: np.ndarray,
    clicks: ClickFeed,
    model=None,
    model_path: str | None = None,
    preset: str = "quick",
    overrides: dict | None = None,
    resume: bool = False,
    stop_event: threading.Event | None = None,
    view_z: Callable[[], int | None] | None = None,
    n_preview: int = 8,
    with_maps: bool = False,
    preview_every_s: float = 4.0,
    negatives: ClickFeed | None = None,
    pixel_size: float | None = None,
    corrections: LatestValue | None = None,
):
    """Adapt a copy of `model` (a LoadedModel; None = load `model_path`, None = shipped) to `image`.

    Yields AdaptUpdate; returns AdaptResult. The caller's model is never modified (a copy is trained),
    so an error half-way leaves the widget's current model intact. resume=True skips AdaBN (the model
    already carries this dataset's statistics), as `mito-wda adapt --resume` does.
    `view_z()` names the slice in view; the previews are the predicted slices closest to it. Rounds
    can take minutes, so during training the slice in view is also predicted with the network as it
    is, every `preview_every_s` seconds (a single slice: a few percent of the training time).
    negatives: the "not mitochondria" clicks, re-read at each round like `clicks`; the previews leave out the
    objects under them (core.adapt.live.leave_out_negated).
    pixel_size: the image's in-plane nm per pixel (None = unknown), rescaled to the model's as `adapt` does.
    corrections: the user's corrected objects (core Corrections, or None), re-read at each round.
    """
    from .core.adapt import AdaptReport, AdaptSettings, adapt, with_state
    from .core.adapt.live import current_preview, leave_out_negated, nearest_slices, preview_slices
    from .core.data.checkpoint import load_model
    from .core.data.io import validate_image
    from .core.data.pixel_size import pixel_scale
    from .core.engine.device import pick_device
    from .core.engine.instances import sizes_at_scale

    stop = stop_event or threading.Event()
    volume = validate_image(np.asarray(image), "image")  # (Z, Y, X); a 2D image becomes one slice
    over = dict(overrides or {})
    if resume:
        over.setdefault("adabn", False)
    settings = AdaptSettings.preset(preset, **over)
    t0 = time.perf_counter()
    dev = pick_device()
    budget = settings.minutes * 60.0
    try:
        if model is None:
            yield AdaptUpdate(AdaptReport("prepare", 0, 0, 0, 0.0, budget, message="loading the model"))
            model = load_model(model_path, device=dev.device)
        work = copy.deepcopy(model)
        last = None
        # Next in-training preview not before this time; at most ~10% of the time goes to previews
        # (a large slice can take seconds to predict on a CPU).
        next_preview = time.perf_counter() + preview_every_s
        scale = pixel_scale(pixel_size, work.pixel_size_nm)
        sizes = sizes_at_scale(scale)  # the previews' objects sized like segment_volume's
        neg = negatives or ClickFeed(ndim=3)
        corr = corrections or LatestValue()
        for rep in adapt(volume, clicks.get(), work, settings, dev=dev, stop=stop.is_set, get_clicks=clicks.get,
                         negative_points=neg.get(), get_negative_points=neg.get, pixel_size=pixel_size,
                         corrections=corr.get(), get_corrections=corr.get):
            previews = []
            z_view = view_z() if view_z else None
            if rep.prediction is not None:
                zs = nearest_slices(rep.prediction["slices"], z_view, n_preview)
                previews = preview_slices(rep.prediction, volume.shape[1:], zs, with_maps=with_maps, **sizes)
                next_preview = time.perf_counter() + preview_every_s
            elif (rep.stage == "train" and z_view is not None and not stop.is_set()
                  and time.perf_counter() >= next_preview):
                z = int(np.clip(z_view, 0, volume.shape[0] - 1))
                t_prev = time.perf_counter()
                previews = [current_preview(work.model, volume[z], z, dev, with_maps=with_maps, scale=scale, **sizes)]
                cost = time.perf_counter() - t_prev
                next_preview = time.perf_counter() + max(preview_every_s, 9.0 * cost)
            leave_out_negated(previews, neg.get(), clicks.get())  # the user's "not this" holds in what is shown
            last = dataclasses.replace(rep, prediction=None, best_state=None)
            best = None
            if rep.best_state is not None:  # a copy: the widget keeps it if the run fails later
                best = AdaptResult(model=with_state(work, rep.best_state), settings=settings, clicks=clicks.get(),
                                   last=last, device=dev.describe(), seconds=time.perf_counter() - t0, stopped=True)
            yield AdaptUpdate(last, previews, best)
    finally:
        # Also reached when the worker is aborted at a yield: the optimiser and activations go now.
        from .core.engine.device import release_memory

        release_memory()
    return AdaptResult(
        model=work, settings=settings, clicks=clicks.get(), last=last, device=dev.describe(),
        seconds=time.perf_counter() - t0, stopped=stop.is_set(),
    )


def load_iter(path: str):
    """Load and check a checkpoint off the GUI thread (CheckpointError says what is wrong with it)."""
    from ._worker import Progress
    from .core.data.checkpoint import load_model

    yield Progress(0, 1, "loading model")
    loaded = load_model(path)
    yield Progress(1, 1, "done")
    return loaded
