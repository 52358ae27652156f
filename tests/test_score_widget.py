"""The widget's "Score against ground truth" box in a real napari viewer (Xvfb): Dice, AJI and PQ shown."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda.core.evaluation.metrics import evaluate_volume


def _three_objects(shape=(4, 64, 64)) -> np.ndarray:
    """Ground truth: three boxes through every slice, of 100, 100 and 200 pixels per slice."""
    gt = np.zeros(shape, np.uint16)
    gt[:, 5:15, 5:15] = 1
    gt[:, 30:40, 30:40] = 2
    gt[:, 45:55, 10:30] = 3
    return gt


def _wait_scored(qtbot, widget, n_before: int) -> None:
    qtbot.waitUntil(lambda: widget.scorer.n_scored > n_before and not widget.is_scoring, timeout=60000)


@pytest.mark.gui
def test_score_button_shows_the_metrics_of_evaluate_volume(viewer_and_widget, qtbot, captured_errors):
    viewer, widget = viewer_and_widget
    gt = _three_objects()
    pred = gt.copy()
    pred[pred == 2] = 0  # one of the three objects missed, the other two exact
    viewer.add_image(np.zeros(gt.shape, np.uint8), name="em")
    viewer.add_labels(gt, name="em ground truth")
    assert widget.gt_combo.currentText() == "em ground truth"  # a "... ground truth" layer is picked once
    widget.gt_combo.setCurrentText("(none)")
    viewer.add_labels(pred, name="em instances")
    assert widget.gt_combo.currentText() == "(none)"  # the user's "(none)" stays
    assert [widget.gt_combo.itemText(i) for i in range(widget.gt_combo.count())] == [
        "(none)", "em ground truth", "em instances"]

    widget.gt_combo.setCurrentText("em ground truth")
    widget.score_instances_combo.setCurrentText("em instances")
    assert "Dice" not in widget.score_label.text()  # nothing scored on choosing alone
    widget.score_button.click()
    _wait_scored(qtbot, widget, 0)

    # By hand: per slice 400 true pixels, 300 found, all of them right. Dice 600/700; AJI 300/400; PQ: two
    # exact matches (IoU 1), one miss: 2 / (2 + 0.5) = 0.8.
    expected = evaluate_volume(pred, gt, per_slice=False)
    assert expected["dice"] == pytest.approx(6 / 7) and expected["aji"] == pytest.approx(0.75)
    assert expected["pq"] == pytest.approx(0.8)
    assert widget.last_scores == expected
    assert widget.score_label.text() == "Dice 0.857 · AJI 0.750 · PQ 0.800 — 4 slices, 8 predicted / 12 true objects"
    assert "Dice 0.857" in widget.status_label.text() and not captured_errors

    # the prediction edited by hand, scored again: the numbers follow the layer
    viewer.layers["em instances"].data = gt.copy()
    widget.score_button.click()
    _wait_scored(qtbot, widget, 1)
    assert widget.score_label.text().startswith("Dice 1.000 · AJI 1.000 · PQ 1.000 — 4 slices, 12 predicted / 12")


@pytest.mark.gui
def test_score_refuses_clearly_without_crashing(viewer_and_widget, captured_errors):
    viewer, widget = viewer_and_widget
    gt = _three_objects()
    widget.score_button.click()  # no layers at all
    assert "no ground truth chosen" in widget.status_label.text() and not widget.is_scoring
    viewer.add_labels(gt, name="truth")
    widget.gt_combo.setCurrentText("truth")
    widget.score_instances_combo.setCurrentText("truth")
    widget.score_button.click()
    assert "same layer" in widget.status_label.text() and not widget.is_scoring

    viewer.add_labels(gt[:, :, :60], name="cropped instances")
    widget.score_instances_combo.setCurrentText("cropped instances")
    assert widget.score() is False
    text = widget.status_label.text()
    assert text.startswith("Cannot score:") and "(4, 64, 60)" in text and "(4, 64, 64)" in text, text
    assert "Not scored" in widget.score_label.text() and "shape" in widget.score_label.text()
    assert not widget.is_scoring and widget.last_scores is None
    assert len(captured_errors) == 3 and "(4, 64, 60)" in captured_errors[-1]

    viewer.layers.remove("truth")  # the chosen ground truth is gone: back to (none)
    assert widget.gt_combo.currentText() == "(none)"


def _em_with_ground_truth(viewer, widget, small_volume):
    """An image 'em' and its true instances, chosen as the ground truth; returns the instances."""
    image, instances = small_volume
    viewer.add_image(image, name="em")
    viewer.add_labels(np.asarray(instances), name="em ground truth")
    widget.gt_combo.setCurrentText("em ground truth")
    return instances


@pytest.mark.gui
def test_predict_scores_again_once_a_ground_truth_is_chosen(
    viewer_and_widget, qtbot, small_volume, default_model_file, wait_worker, captured_errors
):
    viewer, widget = viewer_and_widget
    instances = _em_with_ground_truth(viewer, widget, small_volume)
    assert widget.scorer.n_scored == 0 and "Dice" not in widget.score_label.text()

    widget.predict_button.click()  # the shipped model, no Score pressed
    wait_worker(widget)
    _wait_scored(qtbot, widget, 0)
    layer = viewer.layers["em instances"]
    assert widget.score_instances_combo.currentText() == "em instances"
    expected = evaluate_volume(layer.data, instances, per_slice=False)
    assert widget.last_scores == expected
    assert widget.score_label.text().startswith(f"Dice {expected['dice']:.3f} · AJI {expected['aji']:.3f} · ")
    assert f"3 slices, {expected['n_pred_objects']} predicted / {expected['n_gt_objects']} true" in (
        widget.score_label.text())
    assert not captured_errors


@pytest.mark.gui
def test_live_updates_of_an_adaptation_are_scored(
    viewer_and_widget, qtbot, small_volume, adaptable_model_file, wait_worker, captured_errors
):
    from .conftest import TINY_ADAPT

    viewer, widget = viewer_and_widget
    instances = _em_with_ground_truth(viewer, widget, small_volume)
    widget.set_model_path(adaptable_model_file)
    widget.add_points_layer().add([[0, 40, 40], [1, 30, 60], [2, 50, 50]])
    # each scoring shown: (the job running then, live updates written before it)
    shown = []
    widget.scorer.scored.connect(lambda _m: shown.append((widget.jobs.what if widget.is_running else None,
                                                          widget.live_updates)))
    widget.adapt_overrides = dict(TINY_ADAPT)
    assert widget.adapt() is not None, widget.status_label.text()
    wait_worker(widget, timeout=180000)  # the adaptation, then its whole-image prediction
    qtbot.waitUntil(lambda: not widget.is_scoring, timeout=60000)
    assert widget.live_updates >= 2
    assert any(what == "Adaptation" and n >= 1 for what, n in shown), shown  # scored while it adapted
    layer = viewer.layers["em instances"]
    assert widget.last_scores == evaluate_volume(layer.data, instances, per_slice=False)  # the final prediction's
    assert not captured_errors
