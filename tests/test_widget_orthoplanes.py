"""The predict section's Orthoplanes check box in a real napari viewer: it runs on a near-isotropic stack and
returns a Labels layer of the image's shape; it refuses, with a clear status and no job, stacks too short
across a side or with thick sections."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda.core.data.synthetic import make_volume


@pytest.mark.gui
def test_orthoplanes_predict_an_isotropic_stack(viewer_and_widget, random_model_file, wait_worker, captured_errors):
    from napari.layers import Labels

    viewer, widget = viewer_and_widget
    image, _ = make_volume((32, 40, 48), n_objects=5, seed=4)
    viewer.add_image(image, name="fib", scale=(5.0, 5.0, 5.0))
    widget.set_model_path(random_model_file)
    assert widget.orthoplanes_check.isChecked()  # ticked by the image's voxel size, as the CLI's auto
    widget.predict_button.click()
    assert widget.progress_bar.maximum() == sum(image.shape) and "planes" in widget.progress_bar.format()
    wait_worker(widget)
    layer = viewer.layers["fib instances"]
    assert isinstance(layer, Labels) and layer.data.shape == image.shape
    assert layer.metadata["mito_wda"]["orthoplanes"] is True
    assert not captured_errors


@pytest.mark.gui
@pytest.mark.parametrize("shape, scale, words", [
    ((32, 40, 48), (50.0, 4.6, 4.6), "near-isotropic"),  # thick sections (VNC III-like)
    ((8, 40, 48), (5.0, 5.0, 5.0), "at least 32 voxels"),
])
def test_orthoplanes_refuse_anisotropic_or_short_stacks(viewer_and_widget, random_model_file, captured_errors,
                                                         shape, scale, words):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros(shape, np.uint8), name="em", scale=scale)
    widget.set_model_path(random_model_file)
    widget.orthoplanes_check.setChecked(True)
    assert widget.predict() is None and not widget.is_running
    assert words in widget.status_label.text() and "untick Orthoplanes" in widget.status_label.text()
    assert captured_errors and words in captured_errors[-1]
    assert "em instances" not in [ly.name for ly in viewer.layers]


@pytest.mark.gui
@pytest.mark.parametrize("shape, scale, ticked", [
    ((32, 40, 48), (5.0, 5.0, 5.0), True),
    ((32, 40, 48), (1.0, 1.0, 1.0), False),    # no voxel size: the user ticks it for FIB-SEM
    ((32, 40, 48), (50.0, 4.6, 4.6), False),   # thick sections
    ((8, 40, 48), (5.0, 5.0, 5.0), False),     # too short across z
])
def test_orthoplanes_box_follows_the_picked_image(viewer_and_widget, shape, scale, ticked):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros(shape, np.uint8), name="a", scale=scale)
    viewer.add_image(np.zeros((32, 40, 48), np.uint8), name="iso", scale=(5.0, 5.0, 5.0))
    widget.inputs.select_image("a")
    assert widget.orthoplanes_check.isChecked() is ticked
    widget.inputs.select_image("iso")
    assert widget.orthoplanes_check.isChecked()
