"""Big volumes in napari: zarr/HDF5 open lazily; chunked prediction writes zarr and shows lazy Labels."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import zarr

from napari_mito_wda._chunked_worker import chunked_worker, layer_source, segment_layer_to_zarr
from napari_mito_wda._lazy_reader import get_reader, read_lazy
from napari_mito_wda.core.volumes.chunked import ChunkSettings, read_labels
from napari_mito_wda.core.volumes.runner import ClusterSettings

SETTINGS = dict(chunks=(2, 48, 48), instance_halo=32, device="cpu", precision="fp32")


@pytest.fixture
def em_zarr(tmp_path, small_volume):
    image, _ = small_volume
    arr = zarr.create_array(str(tmp_path / "em.zarr"), shape=image.shape, chunks=(1, 48, 48), dtype=image.dtype)
    arr[...] = image
    arr.attrs["voxel_size_nm"] = [40.0, 6.0, 6.0]
    return tmp_path / "em.zarr"


def test_reader_takes_zarr_and_hdf5_only(tmp_path):
    assert get_reader(str(tmp_path / "a.zarr")) is read_lazy
    assert get_reader(str(tmp_path / "a.h5")) is read_lazy
    assert get_reader(str(tmp_path / "a.tif")) is None
    assert get_reader([str(tmp_path / "a.zarr"), str(tmp_path / "a.png")]) is None


def test_zarr_and_hdf5_open_as_lazy_images(em_zarr, tmp_path, small_volume):
    import dask.array as da

    image, _ = small_volume
    ((data, meta, kind),) = read_lazy(str(em_zarr))
    assert kind == "image" and isinstance(data, da.Array) and meta["scale"] == (40.0, 6.0, 6.0)
    assert meta["metadata"]["mito_wda"]["source_path"] == str(em_zarr)
    np.testing.assert_array_equal(data[1].compute(), image[1])
    with h5py.File(tmp_path / "em.h5", "w") as fh:
        fh.create_dataset("raw", data=image, chunks=(1, 32, 32))
    ((data, meta, kind),) = read_lazy(str(tmp_path / "em.h5"))
    assert isinstance(data, da.Array) and data.chunksize == (1, 32, 32)


def test_worker_without_viewer_uses_the_file_and_reports_progress(em_zarr, random_model_file, tmp_path):
    ((data, meta, _),) = read_lazy(str(em_zarr))

    class Layer:  # what the worker reads from a layer: its data and metadata
        pass

    layer = Layer()
    layer.data, layer.metadata = data, meta["metadata"]
    assert layer_source(layer) == (str(em_zarr), None)  # workers read the file themselves
    worker = chunked_worker(layer, tmp_path / "out.zarr", str(random_model_file), ChunkSettings(**SETTINGS),
                            ClusterSettings(scheduler="sync"))
    events = []
    worker.yielded.connect(events.append)
    result = worker.work()  # runs the generator in this thread, emitting yielded
    stages = [e.stage for e in events]
    assert {"normalise", "predict", "instances", "stitch", "relabel"} <= set(stages)
    assert read_labels(result.path)[0].shape == data.shape


@pytest.mark.gui
def test_predict_in_viewer_adds_lazy_labels(make_napari_viewer, qtbot, em_zarr, random_model_file, tmp_path):
    import dask.array as da

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(em_zarr), plugin="napari-mito-wda")
    assert isinstance(layer.data, da.Array) and tuple(layer.scale) == (40.0, 6.0, 6.0)
    done = {}
    worker = segment_layer_to_zarr(viewer, layer, tmp_path / "out.zarr", str(random_model_file),
                                   ChunkSettings(**SETTINGS), ClusterSettings(scheduler="sync"),
                                   on_done=lambda result, added: done.update(result=result, layer=added))
    qtbot.waitUntil(lambda: "layer" in done, timeout=60000)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10000)
    labels = done["layer"]
    assert isinstance(labels.data, da.Array)  # lazy: napari reads the slices it shows
    assert labels.data.shape == layer.data.shape and tuple(labels.scale) == tuple(layer.scale)
    stored = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["labels"]
    viewer.dims.set_current_step(0, 2)
    np.testing.assert_array_equal(np.asarray(labels.data[2]), stored[2])
    # the store also opens by itself as a lazy Labels layer
    (again,) = viewer.open(str(tmp_path / "out.zarr"), plugin="napari-mito-wda")
    assert again.__class__.__name__ == "Labels" and isinstance(again.data, da.Array)


@pytest.mark.gui
def test_widget_predict_on_a_lazy_layer_writes_zarr_and_shows_it_lazily(viewer_and_widget, em_zarr, random_model_file,
                                                                        wait_worker, tmp_path):
    import dask.array as da

    viewer, widget = viewer_and_widget
    (layer,) = viewer.open(str(em_zarr), plugin="napari-mito-wda")
    widget.set_model_path(random_model_file)
    assert widget.predict(output=tmp_path / "inst") is not None  # ".zarr" is added
    wait_worker(widget, 120000)
    labels = viewer.layers[f"{layer.name} instances"]
    assert isinstance(labels.data, da.Array), "the result must stay lazy, not be loaded whole"
    assert labels.data.shape == layer.data.shape and tuple(labels.scale) == tuple(layer.scale)
    stored, _ = read_labels(tmp_path / "inst.zarr")
    np.testing.assert_array_equal(np.asarray(labels.data), stored[...])
    assert stored[...].max() > 0 and "written to" in widget.status_label.text()
    # Predicting to the same store again is refused: nothing is overwritten.
    assert widget.predict(output=tmp_path / "inst.zarr") is None
    assert "already exists" in widget.status_label.text()
