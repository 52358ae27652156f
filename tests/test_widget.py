"""The "Mitochondria (WDA)" dock widget in a real napari viewer (Xvfb), plus its worker without a viewer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import tifffile

from napari_mito_wda._widget import clicks_text, count_clicks, same_layer
from napari_mito_wda._worker import Cancelled, PredictResult, Progress, predict_iter, run_to_end

SCALE = (40.0, 6.0, 6.0)


# --------------------------------------------------------------------------- worker (no viewer)


def test_predict_iter_reports_every_slice(small_volume, random_model_file):
    image, _ = small_volume
    reports, result = run_to_end(predict_iter(image, model_path=str(random_model_file)))
    assert all(isinstance(r, Progress) for r in reports)
    done = [r.done for r in reports if r.stage == "predicting"]
    assert done[-3:] == [1, 2, 3] and reports[-1].fraction == 1.0
    assert isinstance(result, PredictResult)
    assert result.labels.shape == image.shape and result.labels.dtype in (np.uint16, np.uint32)
    assert result.model.path == str(random_model_file)
    assert result.device  # e.g. "CPU, fp32, 2 threads"

    # a 2D image gives 2D labels, and a loaded model is reused (no "loading model" step)
    reports, result2 = run_to_end(predict_iter(image[0], model=result.model))
    assert result2.labels.shape == image.shape[1:]
    assert "loading model" not in {r.stage for r in reports}


def test_predict_iter_stops_after_current_slice(small_volume, random_model_file):
    image, _ = small_volume
    stop = threading.Event()
    gen = predict_iter(image, model_path=str(random_model_file), stop_event=stop)
    seen = []
    with pytest.raises(Cancelled):
        for report in gen:
            seen.append(report)
            if report.done >= 1:
                stop.set()
    assert max(r.done for r in seen) < image.shape[0]


def test_predict_iter_rejects_bad_input(random_model_file):
    from napari_mito_wda.core.data.io import InputError

    with pytest.raises(InputError, match="RGB"):
        next(predict_iter(np.zeros((64, 64, 3), np.uint8), model_path=str(random_model_file)))


def test_click_counter_text():
    assert count_clicks(np.empty((0, 3))) == (0, 0)
    assert count_clicks(np.array([[0, 5, 5], [0.2, 9, 9], [2, 1, 1]])) == (3, 2)
    assert count_clicks(np.array([[5, 5]])) == (1, 1)
    assert clicks_text(3, 2) == "3 clicks on 2 slices"
    assert clicks_text(1, 1) == "1 click on 1 slice"


# --------------------------------------------------------------------------- widget in a viewer


@pytest.mark.gui
def test_predict_and_export_on_lucchi_sample(
    viewer_and_widget, default_model_file, wait_worker, tmp_path, captured_errors
):
    from napari.layers import Image, Labels

    viewer, widget = viewer_and_widget
    assert widget.device_label.text().startswith("Device: ")
    # The real EM sample: the shipped model is meant for EM, not for the synthetic look-alike.
    viewer.open_sample("napari-mito-wda", "lucchi")
    image = next(ly for ly in viewer.layers if isinstance(ly, Image))
    image.scale = SCALE
    assert widget.image_combo.currentText() == image.name

    widget.predict_button.click()
    assert widget.is_running and widget.predict_button.text() == "Stop"
    wait_worker(widget)
    assert "fail" not in widget.status_label.text().lower(), widget.status_label.text()

    layer = viewer.layers[f"{image.name} instances"]
    assert isinstance(layer, Labels)
    assert layer.data.shape == image.data.shape
    assert tuple(layer.scale) == SCALE
    assert layer.data.max() >= 1, "the default model found no instance"
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == image.data.shape[0]
    assert widget.predict_button.text() == "Predict"
    assert widget.labels_combo.currentText() == layer.name

    # export: 16-bit TIFF equal to the layer, sidecar with provenance and the clicks
    pts = widget.add_points_layer()
    pts.add([[1, 20, 20], [3, 40, 50]])
    out = tmp_path / "instances.tif"
    written = widget.export_labels(out)
    assert written is not None, widget.status_label.text()
    saved = tifffile.imread(out)
    assert saved.dtype == np.uint16 and saved.shape == layer.data.shape
    np.testing.assert_array_equal(saved, layer.data)
    side = json.loads((tmp_path / "instances.json").read_text())
    assert side["plugin_version"] and side["model_path"].endswith(default_model_file.name)
    assert side["n_clicks"] == 2 and side["n_click_slices"] == 2
    assert side["centres_image_coords"] == [[1.0, 20.0, 20.0], [3.0, 40.0, 50.0]]
    assert side["voxel_size_nm_zyx"] == list(SCALE)
    assert not captured_errors

    # a second export to the same path is refused, visibly, and leaves the file unchanged
    before = out.read_bytes()
    layer.data = np.zeros_like(layer.data)
    assert widget.export_labels(out) is None
    assert "already exists" in widget.status_label.text()
    assert captured_errors and "already exists" in captured_errors[-1]
    assert out.read_bytes() == before


@pytest.mark.gui
def test_predict_updates_existing_layer_in_place(viewer_and_widget, small_volume, random_model_file, wait_worker):
    from napari.layers import Labels

    viewer, widget = viewer_and_widget
    image_data, _ = small_volume
    viewer.add_image(image_data, name="em", scale=SCALE)
    widget.set_model_path(random_model_file)

    widget.predict_button.click()
    wait_worker(widget)
    layer = viewer.layers["em instances"]
    assert isinstance(layer, Labels) and tuple(layer.scale) == SCALE
    assert layer.data.shape == image_data.shape
    layer.data = np.zeros_like(layer.data) + 9  # user edits, then predicts again
    n_layers = len(viewer.layers)

    widget.predict_button.click()
    wait_worker(widget)
    assert len(viewer.layers) == n_layers
    assert same_layer(viewer.layers["em instances"], layer)
    assert not np.all(layer.data == 9)
    assert layer.metadata["mito_wda"]["model_path"] == str(random_model_file)


@pytest.mark.gui
def test_points_layer_and_click_counter(viewer_and_widget, small_volume):
    from napari.layers import Points

    viewer, widget = viewer_and_widget
    viewer.add_image(small_volume[0], name="em", scale=SCALE)
    assert widget.clicks_label.text() == "0 clicks on 0 slices"

    widget.add_points_button.click()
    pts = viewer.layers["em centres"]
    assert isinstance(pts, Points) and same_layer(widget.points_layer, pts)
    assert str(pts.mode) == "add" and tuple(pts.scale) == SCALE
    assert same_layer(viewer.layers.selection.active, pts)

    pts.add([[0, 10, 10], [0, 30, 30], [2, 50, 50]])
    assert widget.clicks_label.text() == "3 clicks on 2 slices"
    pts.data = pts.data[:1]
    assert widget.clicks_label.text() == "1 click on 1 slice"

    widget.add_points_button.click()  # re-uses the layer instead of adding another
    assert sum(isinstance(ly, Points) for ly in viewer.layers) == 1
    viewer.layers.remove(pts)
    assert widget.points_layer is None and widget.clicks_label.text() == "0 clicks on 0 slices"


@pytest.mark.gui
def test_errors_shown_in_widget_not_raised(viewer_and_widget, tmp_path, captured_errors, wait_worker):
    viewer, widget = viewer_and_widget

    widget.predict_button.click()
    assert "No image layer" in widget.status_label.text() and not widget.is_running

    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="photo", rgb=True)
    assert widget.image_combo.count() == 0  # RGB is not offered
    widget.predict_button.click()
    assert "RGB" in widget.status_label.text()

    assert widget.export_labels(tmp_path / "x.tif") is None
    assert "No labels layer" in widget.status_label.text()
    assert not (tmp_path / "x.tif").exists()

    # a broken model file: the worker's error reaches the status line, not a traceback
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    viewer.add_image(np.zeros((2, 64, 64), np.uint8), name="em")
    widget.set_model_path(bad)
    widget.predict_button.click()
    wait_worker(widget)
    assert "Prediction failed" in widget.status_label.text() and "broken.pt" in widget.status_label.text()
    assert "em instances" not in viewer.layers
    assert len(captured_errors) == 4


@pytest.mark.gui
def test_stop_leaves_layers_unchanged(viewer_and_widget, small_volume, random_model_file, wait_worker):
    viewer, widget = viewer_and_widget
    viewer.add_image(small_volume[0], name="em")
    widget.set_model_path(random_model_file)
    widget.predict_button.click()  # Predict ...
    assert widget.predict_button.text() == "Stop"
    widget.predict_button.click()  # ... and Stop at once: the job ends at its next check
    wait_worker(widget)
    assert "Stopped" in widget.status_label.text()
    assert "em instances" not in viewer.layers
    assert widget.predict_button.text() == "Predict" and widget.export_button.isEnabled()


@pytest.mark.gui
def test_proofread_labels_are_kept_when_predicting_again(
    viewer_and_widget, small_volume, random_model_file, wait_worker
):
    viewer, widget = viewer_and_widget
    viewer.add_image(small_volume[0], name="em", scale=SCALE)
    widget.set_model_path(random_model_file)
    widget.predict_button.click()
    wait_worker(widget)
    layer = viewer.layers["em instances"]
    layer.selected_label = 999
    layer.paint((1, 10, 10), 999)  # the user proofreads with napari's brush
    painted = layer.data[1] == 999

    widget.predict_button.click()
    wait_worker(widget)
    # The same layer, the new prediction around the painted object (a correction), which is kept as it was
    assert same_layer(viewer.layers["em instances"], layer) and "em instances (proofread)" not in viewer.layers
    assert len(np.unique(layer.data[1][painted])) == 1 and (layer.data[1][painted] > 0).all()
    assert (np.unique(layer.data[1][~painted]) != layer.data[1, 10, 10]).all()
    assert "corrected object(s) were kept" in widget.status_label.text() and tuple(layer.scale) == SCALE

