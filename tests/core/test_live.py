"""Live previews: working-resolution predictions become full-resolution instances of the chosen slices."""

import numpy as np
import pytest

from napari_mito_wda.core.adapt import TRUSTED_MITO, UNSURE, current_preview, nearest_slices, preview_slices


def test_nearest_slices_prefers_the_view():
    assert nearest_slices([0, 4, 8, 12], 9, 2) == [8, 12]
    assert nearest_slices([0, 4, 8, 12], 6, 3) == [4, 8, 0]  # tie 4/8 broken by index
    assert nearest_slices([3, 1, 2], None, 2) == [3, 1]
    assert nearest_slices([], 5, 3) == []


def _disk_prediction(slices, shape=(32, 48), centre=(12, 20), r=6):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    prob = np.where(d2 <= r * r, 0.97, 0.02).astype(np.float32)
    prob[0, :4] = 0.5  # an unsure patch
    heat = np.exp(-d2 / 8.0).astype(np.float32)
    k = len(slices)
    return {"slices": list(slices), "prob": np.stack([prob] * k), "heat": np.stack([heat] * k)}


def test_preview_upsamples_to_the_image_and_finds_the_object():
    pred = _disk_prediction([2, 5])
    (p,) = preview_slices(pred, (64, 96), [5], with_maps=True, min_size=16)
    assert p.z == 5 and p.labels.shape == (64, 96) and p.heat.shape == (64, 96)
    ids = np.unique(p.labels[p.labels > 0])
    assert ids.tolist() == [1]
    ys, xs = np.nonzero(p.labels == 1)
    assert abs(ys.mean() - 24.5) < 2 and abs(xs.mean() - 40.5) < 2  # centre (12, 20) x 2, pixel-centred
    assert p.trusted[24, 40] == TRUSTED_MITO and p.trusted[60, 90] == 0 and p.trusted[0, 0] == UNSURE


def test_preview_without_maps_and_unknown_slice():
    pred = _disk_prediction([1])
    (p,) = preview_slices(pred, (32, 48), [1], min_size=16)
    assert p.heat is None and p.trusted is None and p.labels.max() == 1
    with pytest.raises(KeyError):
        preview_slices(pred, (32, 48), [7])


def test_current_preview_leaves_a_training_network_as_it_was(tiny_model):
    import torch

    tiny_model.train()
    bn = [m for m in tiny_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in bn]
    img = (np.random.default_rng(0).random((40, 56)) * 255).astype(np.uint8)
    p = current_preview(tiny_model, img, 3, with_maps=True)
    assert p.z == 3 and p.labels.shape == p.heat.shape == p.trusted.shape == (40, 56)
    assert tiny_model.training  # back in training mode
    assert all(torch.equal(m.running_mean, s) for m, s in zip(bn, stats))  # statistics untouched
    tiny_model.eval()
    current_preview(tiny_model, img, 0)
    assert not tiny_model.training
