"""Worker-side generators for the napari widget: pure functions of arrays that yield report objects.

No napari and no Qt here, so they run (and are tested) without a viewer. The widget wraps them in
``napari.qt.threading.thread_worker``; the GUI thread receives the reports through ``yielded`` and the
final result through ``returned`` and is the only one that touches layers.

Later workflows (fine-tuning from clicks) follow the same pattern: a generator yielding reports.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Cancelled(Exception):
    """Raised inside the computation when the user pressed Stop."""


@dataclass
class Progress:
    """One step of a long job: `done` of `total` units (slices), and what is happening."""

    done: int
    total: int
    stage: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class PredictResult:
    """Returned once at the end of prediction (generator return value -> worker.returned)."""

    labels: np.ndarray
    prob: np.ndarray | None
    heat: np.ndarray | None
    model: Any  # core.data.checkpoint.LoadedModel, cached by the widget for the next run
    model_path: str | None
    device: str
    seconds: float
    extras: dict = field(default_factory=dict)

    @property
    def n_instances(self) -> int:
        return int(np.unique(self.labels[self.labels > 0]).size)


def _n_slices(image: np.ndarray) -> int:
    return 1 if np.ndim(image) == 2 else int(np.shape(image)[0])


def predict_iter(
    image: np.ndarray,
    model=None,
    model_path: str | None = None,
    flips: bool = False,
    link_3d: bool = False,
    stop_event: threading.Event | None = None,
    poll_s: float = 0.05,
    pixel_size: float | None = None,
):
    """Segment `image` (2D/3D raw array), yielding :class:`Progress` per slice; return :class:`PredictResult`.

    `model` is a ready LoadedModel (reused between runs) or None to load `model_path` (None = the shipped
    default model). `segment_volume` is blocking and reports through a callback, so it runs on a helper
    thread and this generator relays each callback as a yield: the caller (napari's worker) can then
    abort at any yield, and setting `stop_event` makes the computation stop after the current slice.
    pixel_size: the image's in-plane nm per pixel (None = unknown), for `segment_volume`.
    """
    from .core.data.checkpoint import load_model
    from .core.data.io import validate_image
    from .core.engine.device import pick_device
    from .core.engine.segment import segment_volume

    stop = stop_event or threading.Event()
    image = np.asarray(image)
    validate_image(image, name="image")  # clear InputError before any model work
    total = _n_slices(image)
    t0 = time.perf_counter()

    dev = pick_device()
    if model is None:
        yield Progress(0, total, "loading model")
        model = load_model(model_path, device=dev.device)
    if stop.is_set():
        raise Cancelled("prediction stopped before it started")

    # Handshake: after each report the helper waits until this generator has relayed it and been
    # resumed, so a stop requested on seeing slice k's report is honoured before slice k + 1 is
    # reported (without it a fast model finished every slice before the first report was read).
    reports: queue.Queue = queue.Queue()
    relayed = threading.Semaphore(0)
    closing = threading.Event()  # the generator is gone: the helper must not wait for it any more
    box: dict[str, Any] = {}

    def progress(done: int, n: int) -> None:
        reports.put(Progress(int(done), int(n), "predicting"))
        while not closing.is_set() and not relayed.acquire(timeout=poll_s):
            pass
        if stop.is_set():
            raise Cancelled("prediction stopped by the user")

    def run() -> None:
        try:
            box["seg"] = segment_volume(
                image, model=model, device=dev, progress=progress, flips=flips, link_3d=link_3d,
                pixel_size=pixel_size,
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the generator's thread
            box["error"] = exc
        finally:
            reports.put(None)

    yield Progress(0, total, "predicting")
    helper = threading.Thread(target=run, name="mito-wda-predict", daemon=True)
    helper.start()
    try:
        while True:
            try:
                item = reports.get(timeout=poll_s)
            except queue.Empty:
                continue
            if item is None:
                break
            yield item
            relayed.release()
    finally:
        # Reached on normal exit, on an error and when the generator is closed (worker aborted).
        if helper.is_alive():
            stop.set()
            closing.set()
            helper.join()
        from .core.engine.device import release_memory

        release_memory()  # the tiles' GPU memory goes back now, not when napari closes
    if "error" in box:
        raise box["error"]
    seg = box["seg"]
    labels = np.asarray(seg.labels)
    if image.ndim == 2 and labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    yield Progress(total, total, "done")
    return PredictResult(
        labels=labels,
        prob=getattr(seg, "prob", None),
        heat=getattr(seg, "heat", None),
        model=model,
        model_path=getattr(model, "path", None),
        device=dev.describe(),
        seconds=time.perf_counter() - t0,
    )


def run_to_end(gen):
    """Drive a report generator to completion without a GUI: (list of reports, return value)."""
    reports = []
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            return reports, stop.value
