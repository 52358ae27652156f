"""napari side of chunked segmentation: run it off the GUI thread, show the result as a lazy Labels layer.

    worker = segment_layer_to_zarr(viewer, viewer.layers["big"], "OUT.zarr")  # started; returns the worker

The engine is `core.volumes.chunked.segment_to_zarr_iter`; this module only picks the source (the file a lazy
layer came from when known, so workers read it themselves, else the layer's array), reports progress
and adds the result, read lazily from the store, with the image layer's scale.
"""

from __future__ import annotations

import os
from types import SimpleNamespace


def layer_source(layer):
    """(source, dataset) for the engine: the layer's file when our reader opened it, else its data."""
    meta = (getattr(layer, "metadata", None) or {}).get("mito_wda", {})
    path = meta.get("source_path")
    if path and os.path.exists(path):
        return path, meta.get("dataset")
    return layer.data, None


def chunked_worker(layer, output, model=None, settings=None, cluster=None, overwrite: bool = False):
    """A napari thread worker (not started) yielding core.volumes.chunked.Progress, returning ChunkedResult."""
    from napari.qt.threading import thread_worker

    from .core.volumes.chunked import segment_to_zarr_iter
    from .core.volumes.runner import ClusterSettings

    source, dataset = layer_source(layer)
    # Inside napari: worker threads of this process by default (no process start-up, no pickling).
    cluster = cluster or ClusterSettings(workers=1, processes=False)

    @thread_worker
    def run():
        return (yield from segment_to_zarr_iter(source, output, model, settings, cluster, dataset, overwrite))

    return run()


def chunked_predict_iter(layer_data, layer_meta, output, model=None, settings=None, cluster=None, stop_event=None,
                         pixel_size=None):
    """The widget's generator for lazy layers: core progress reports, stopping after the chunk in flight.

    A stopped run leaves OUT.zarr.partial with its finished chunks; predicting to the same path resumes it.
    pixel_size: the widget's field in nm (None: the file's metadata, which the field shows when the image is picked).
    """
    from ._worker import Cancelled
    from .core.volumes.chunked import segment_to_zarr_iter
    from .core.volumes.runner import ClusterSettings

    source, dataset = layer_source(SimpleNamespace(data=layer_data, metadata=layer_meta))
    gen = segment_to_zarr_iter(source, output, model, settings, cluster or ClusterSettings(workers=1, processes=False),
                               dataset, pixel_size=pixel_size)
    while True:
        try:
            report = next(gen)
        except StopIteration as done:
            return done.value
        yield report
        if stop_event is not None and stop_event.is_set():
            gen.close()  # shuts the cluster down; finished chunks stay in the .partial store
            raise Cancelled(f"stopped; finished chunks are kept in {output}.partial (predict to it again to resume)")


def segment_layer_to_zarr(viewer, layer, output, model=None, settings=None, cluster=None, overwrite: bool = False,
                          on_done=None):
    """Start a chunked run on `layer`; progress in napari's activity dock; the result appears as lazy Labels."""
    from napari.utils import progress

    bars: dict = {}
    worker = chunked_worker(layer, output, model, settings, cluster, overwrite)

    def on_progress(ev) -> None:
        bar = bars.get(ev.stage)
        if bar is None:
            bar = bars[ev.stage] = progress(total=max(ev.total, 1), desc=f"mito-wda {ev.stage}")
        bar.update(ev.done - bar.n)

    def close_bars(*_):
        for bar in bars.values():
            bar.close()

    def on_returned(result) -> None:
        from ._lazy_reader import labels_on_image

        close_bars()
        data, meta = labels_on_image(result.path, layer.scale)
        added = viewer.add_labels(data, **meta)
        if on_done is not None:
            on_done(result, added)

    worker.yielded.connect(on_progress)
    worker.returned.connect(on_returned)
    worker.errored.connect(close_bars)
    worker.start()
    return worker
