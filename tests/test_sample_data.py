"""Sample data contributions: layer types, shapes and physical scale."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda._sample_data import make_lucchi_sample, make_synthetic_sample


def test_synthetic_sample_layers():
    (img, img_meta, img_kind), (lab, lab_meta, lab_kind) = make_synthetic_sample(shape=(3, 64, 64), n_objects=4)
    assert (img_kind, lab_kind) == ("image", "labels")
    assert img.shape == lab.shape == (3, 64, 64)
    assert img.dtype == np.uint8 and lab.dtype == np.uint16
    assert lab.max() >= 1
    assert img_meta["name"] != lab_meta["name"]


def test_lucchi_sample_layers(lucchi_available):
    (img, img_meta, img_kind), (lab, lab_meta, lab_kind) = make_lucchi_sample()
    assert (img_kind, lab_kind) == ("image", "labels")
    assert img.ndim == 3 and img.shape == lab.shape
    assert img.dtype == np.uint8 and np.issubdtype(lab.dtype, np.integer)
    assert lab.max() >= 1
    assert tuple(img_meta["scale"]) == tuple(lab_meta["scale"])
    assert len(img_meta["scale"]) == 3 and all(s > 1 for s in img_meta["scale"])  # nm, not pixels
    assert "Lucchi" in img_meta["metadata"]["mito_wda"]["citation"]


@pytest.mark.gui
def test_open_samples_in_viewer(make_napari_viewer, request):
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    viewer.open_sample("napari-mito-wda", "synthetic")
    assert [type(ly) for ly in viewer.layers] == [Image, Labels]
    viewer.layers.clear()
    request.getfixturevalue("lucchi_available")  # skips the rest while the sample is not shipped
    viewer.open_sample("napari-mito-wda", "lucchi")
    image, gt = viewer.layers
    assert isinstance(image, Image) and isinstance(gt, Labels)
    assert tuple(image.scale) == tuple(gt.scale) and image.scale[0] > 1
