"""The annotation loop in a real napari viewer (Xvfb): 'not mitochondria' clicks, suggested clicks and the
buttons that answer them, also while an adaptation runs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda._widget import same_layer

from .conftest import TINY_ADAPT

SCALE = (40.0, 6.0, 6.0)


@pytest.fixture
def target():
    from napari_mito_wda.core.data.synthetic import TARGET, make_volume

    image, _ = make_volume((3, 80, 96), n_objects=5, domain=TARGET, seed=2)
    return image


@pytest.mark.gui
def test_negative_clicks_reach_the_adaptation_and_new_ones_are_taken_up_mid_run(
    viewer_and_widget, target, adaptable_model_file, qtbot, wait_worker
):
    viewer, widget = viewer_and_widget
    viewer.add_image(target, name="em", scale=SCALE)
    widget.set_model_path(adaptable_model_file)
    widget.add_points_layer().add([[1, 40, 40]])
    neg = widget.add_negative_layer()
    assert neg.name == "em not mitochondria" and tuple(neg.scale) == SCALE and neg.mode == "add"
    assert same_layer(viewer.layers.selection.active, neg)
    neg.add([[0, 20, 70]])
    assert neg.symbol[0].value == "x" and np.allclose(neg.face_color[0], [1, 0, 0, 1])  # red crosses
    widget.adapt_overrides = dict(TINY_ADAPT, max_iters=12)
    worker = widget.adapt()
    assert worker is not None, widget.status_label.text()
    assert "1 'not mitochondria' clicks" in widget.status_label.text()
    seen: list[int] = []

    def on_update(update):
        if update.report.stage == "label":
            seen.append(update.report.n_negative)
            if len(seen) == 1:
                neg.add([[2, 60, 20]])  # one more false object, clicked while it runs

    worker.yielded.connect(on_update)
    wait_worker(widget, timeout=120000)
    assert seen[:2] == [1, 2], seen
    runs = viewer.layers["em instances"].metadata["mito_wda"]["adaptation"]["runs"]
    assert runs[-1]["n_negative"] == 2


@pytest.mark.gui
def test_suggest_next_keep_and_reject_move_the_view_and_the_points(
    viewer_and_widget, target, default_model_file, wait_worker
):
    viewer, widget = viewer_and_widget
    image = viewer.add_image(target, name="em", scale=SCALE)  # the shipped model: objects to suggest
    widget.suggest_button.click()  # before any prediction: a message, no layer
    assert "press Predict first" in widget.status_label.text() and "em suggested clicks" not in viewer.layers
    widget.annotator.n_spin.setValue(4)
    widget.predict_button.click()
    wait_worker(widget)
    widget.suggest_button.click()
    sug = viewer.layers["em suggested clicks"]
    assert 2 <= len(sug.data) <= 4, widget.status_label.text()
    assert tuple(sug.scale) == SCALE and widget.keep_button.isEnabled()
    pts = np.asarray(sug.data).copy()

    def in_view(p):  # the slice shown and the camera centre are those of point p (data coordinates)
        world = image.data_to_world(p)
        return (np.isclose(viewer.dims.point[0], world[0]) and np.allclose(viewer.camera.center[-2:], world[-2:]))

    assert sug.selected_data == {0} and in_view(pts[0])  # the first is shown at once
    widget.next_button.click()
    assert sug.selected_data == {1} and in_view(pts[1])

    widget.keep_button.click()  # suggestion 1 is a mitochondrion
    centres = widget.points_layer
    assert centres is not None and np.allclose(centres.data, pts[1:2])
    assert len(sug.data) == len(pts) - 1 and in_view(np.asarray(sug.data)[sug.selected_data.pop()])
    widget.reject_button.click()  # the next one (formerly 2) is not
    neg = viewer.layers["em not mitochondria"]
    assert np.allclose(neg.data, pts[2:3]) and len(sug.data) == len(pts) - 2

    # answered clicks are never suggested again
    widget.suggest_button.click()
    again = np.asarray(viewer.layers["em suggested clicks"].data)
    assert not any(np.allclose(a, p) for a in again for p in pts[1:3])
