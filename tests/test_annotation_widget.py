"""The annotation loop in a real napari viewer (Xvfb): 'not mitochondria' clicks, suggested clicks and the
buttons that answer them, also while an adaptation runs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda._suggest_ui import _camera
from napari_mito_wda._widget import same_layer

from .conftest import TINY_ADAPT

SCALE = (40.0, 6.0, 6.0)


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
    widget.annotator.flip_check.setChecked(False)  # filled at once (the flip-checked path: the next test)
    widget.predict_button.click()
    wait_worker(widget)
    widget.suggest_button.click()
    sug = viewer.layers["em suggested clicks"]
    assert 2 <= len(sug.data) <= 4, widget.status_label.text()
    assert tuple(sug.scale) == SCALE and widget.keep_button.isEnabled()
    pts = np.asarray(sug.data).copy()

    def in_view(p):  # the slice shown and the camera centre are those of point p (data coordinates)
        world = image.data_to_world(p)
        return (np.isclose(viewer.dims.point[0], world[0]) and np.allclose(_camera(viewer).center[-2:], world[-2:]))

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


@pytest.mark.gui
def test_flip_checked_suggestions_come_from_a_mirrored_pass_in_the_background(
    viewer_and_widget, target, default_model_file, qtbot, wait_worker
):
    from napari_mito_wda.core.adapt.suggest import mirrored_prob, suggest_points

    viewer, widget = viewer_and_widget
    viewer.add_image(target, name="em", scale=SCALE)
    annotator = widget.annotator
    annotator.n_spin.setValue(6)
    assert annotator.flip_check.isChecked()  # on by default
    widget.predict_button.click()
    wait_worker(widget)
    with qtbot.waitSignal(annotator.suggested, timeout=60000) as done:
        worker = annotator.suggest()
        assert worker is not None and annotator.is_suggesting and not widget.suggest_button.isEnabled()
        assert "mirrored image" in widget.status_label.text()
    qtbot.waitUntil(lambda: not annotator.is_suggesting, timeout=10000)  # the worker's `finished` comes next
    assert widget.suggest_button.isEnabled()
    layer = done.args[0]
    assert same_layer(layer, viewer.layers["em suggested clicks"]) and layer.metadata["suggestions"]["flip_checked"]
    # the summary says how they were ranked and stays in view with the first one's prompt
    text = widget.status_label.text()
    assert "flip-checked" in text and f"Suggestion 1 of {len(layer.data)}" in text, text
    # the same ranking as the core's, given the mirrored probability of the prediction's own model
    maps = annotator._maps
    pixel_size = annotator.inputs.pixel_size()
    flipped = (np.clip(mirrored_prob(target, maps["model"], pixel_size=pixel_size), 0, 1) * 255).astype(np.uint8)
    shown = np.asarray(viewer.layers["em instances"].data)  # ranked over the instances the user sees
    expected = suggest_points(maps["prob"] / 255.0, maps["heat"] / 255.0, 6, flipped_prob=flipped / 255.0,
                              labels=shown)
    plain = suggest_points(maps["prob"] / 255.0, maps["heat"] / 255.0, 6, labels=shown)
    assert len(expected) and np.allclose(layer.data, expected.points)
    assert not np.allclose(expected.scores, plain.scores)  # the mirrored pass changed the scores


def _empty_spot(plane: np.ndarray, radius: int) -> tuple[int, int]:
    """(y, x) farthest from every object and from the border of a 2D labels plane (room for a painted disk)."""
    from scipy import ndimage as ndi

    free = np.pad(plane == 0, 1)  # the border counts as occupied
    dist = ndi.distance_transform_edt(free)[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    assert dist[y, x] > radius + 2, "no room for a painted object"
    return int(y), int(x)


@pytest.mark.gui
def test_corrections_painted_and_erased_are_counted_taken_up_mid_run_and_kept(
    viewer_and_widget, target, default_model_file, qtbot, wait_worker
):
    viewer, widget = viewer_and_widget
    viewer.add_image(target, name="em", scale=SCALE)
    widget.predict_button.click()
    wait_worker(widget)
    layer = viewer.layers["em instances"]
    row = widget.adapter.corrections
    assert row.n_corrected == 0 and not row.forget_button.isEnabled()
    pred = layer.data.copy()
    ids, sizes = np.unique(pred[0][pred[0] > 0], return_counts=True)
    assert len(ids), "the shipped model finds no object on slice 0"
    victim = int(ids[np.argmax(sizes)])
    erased = pred[0] == victim
    yx = np.argwhere(erased)[len(np.argwhere(erased)) // 2]
    layer.fill((0, *yx), 0)  # erase a (false, say) object with napari's fill tool
    layer.brush_size = 9
    spot = _empty_spot(pred[2], 5)
    layer.paint((2, *spot), int(pred.max()) + 1)  # and paint one it missed
    assert (layer.data[0][erased] == 0).all()
    qtbot.waitUntil(lambda: row.n_corrected == 2, timeout=5000)
    assert "2 corrected objects (1 mitochondria, 1 erased) on 2 slices" in row.label.text()
    assert row.forget_button.isEnabled()
    painted = layer.data[2] == int(pred.max()) + 1

    widget.add_points_layer().add([[1, 40, 40]])
    widget.adapt_overrides = dict(TINY_ADAPT, max_iters=12)
    worker = widget.adapt()
    assert worker is not None, widget.status_label.text()
    assert "2 corrected objects" in widget.status_label.text()
    seen: list[int] = []
    spot1 = _empty_spot(pred[1], 5)

    def on_update(update):
        if update.report.stage == "label":
            seen.append(update.report.n_corrected)
            if len(seen) == 1:
                layer.paint((1, *spot1), int(pred.max()) + 2)  # one more, painted while it runs

    worker.yielded.connect(on_update)
    wait_worker(widget, timeout=180000)  # adaptation, then the whole-image prediction
    assert seen[:2] == [2, 3], (seen, widget.status_label.text())
    assert viewer.layers["em instances"] is layer and "em instances (proofread)" not in viewer.layers
    runs = layer.metadata["mito_wda"]["adaptation"]["runs"]
    assert runs[-1]["n_corrected"] == 3
    # the new masks went around the user's objects: still as they were left
    assert (layer.data[0][erased] == 0).all()
    assert len(np.unique(layer.data[2][painted])) == 1 and (layer.data[2][painted] > 0).all()
    assert row.n_corrected == 3 and "kept" in widget.status_label.text()
    row.forget_button.click()  # and they can be dropped
    assert row.n_corrected == 0 and "forgotten" in widget.status_label.text()


def _largest_objects(plane: np.ndarray, k: int) -> list[tuple[int, tuple[int, int]]]:
    """The k largest objects of a labels slice: (id, innermost pixel)."""
    from napari_mito_wda.core.adapt.points import innermost_point

    ids, sizes = np.unique(plane[plane > 0], return_counts=True)
    return [(int(i), innermost_point(plane == i)) for i in ids[np.argsort(-sizes)][:k]]


@pytest.mark.gui
def test_a_negative_click_takes_its_object_out_of_the_shown_instances_and_later_predictions(
    viewer_and_widget, default_model_file, wait_worker, tmp_path
):
    import tifffile

    from napari_mito_wda._proofread import corrections_of
    from napari_mito_wda.core.data.synthetic import TARGET, make_volume

    viewer, widget = viewer_and_widget
    image, _ = make_volume((3, 96, 96), n_objects=8, domain=TARGET, seed=4)
    viewer.add_image(image, name="em", scale=SCALE)
    widget.predict_button.click()
    wait_worker(widget)
    layer = viewer.layers["em instances"]
    (false_id, at), (kept_id, at_kept), (edited_id, at_edited) = _largest_objects(np.asarray(layer.data)[1], 3)
    expected = np.asarray(layer.data).copy()
    expected[1][expected[1] == false_id] = 0
    widget.add_points_layer().add([[1, *at_kept]])  # the user says this one is a mitochondrion ...
    neg = widget.add_negative_layer()
    neg.add([[1, *at]])                      # ... and this one is not
    assert np.array_equal(layer.data, expected), "the clicked object is still shown, or others went with it"
    assert "1 object(s) under your 'not mitochondria' clicks left out" in widget.status_label.text()
    assert corrections_of(layer).n_objects == 0  # the plugin dropped it: no correction to learn from
    neg.add([[1, *at_kept]])                 # a negative on the positively clicked object: the positive wins
    assert np.array_equal(layer.data, expected)
    edited = np.asarray(layer.data)
    rows = np.flatnonzero((edited[1] == edited_id).any(axis=1))
    edited[1][rows[0], edited[1][rows[0]] == edited_id] = 0  # the user trims that object: a correction
    layer.data = edited
    expected = edited.copy()
    neg.add([[1, *at_edited]])               # a negative on a corrected object: the user's mask wins
    assert np.array_equal(layer.data, expected) and corrections_of(layer).n_mito == 1

    widget.predict_button.click()            # the next prediction keeps the user's word
    wait_worker(widget)
    data = np.asarray(layer.data)
    assert data[1][at] == 0 and data[1][at_kept] > 0 and data[1][at_edited] > 0
    assert "left out" in widget.status_label.text()
    out = tmp_path / "instances.tif"
    assert widget.export_labels(out) is not None
    assert tifffile.imread(out)[1][at] == 0   # and so does the exported TIFF
