"""The flip agreement, the label-free quality estimate that needs no clicks (core/adapt/flip_check.py)."""

import numpy as np
import pytest

from napari_mito_wda.core.adapt import AdaptSettings, adapt
from napari_mito_wda.core.adapt.flip_check import flip_agreement, mirrored_slices
from napari_mito_wda.core.adapt.heldout import describe_quality
from napari_mito_wda.core.adapt.predict import predict_slices
from napari_mito_wda.core.engine.device import pick_device
from tests.core.test_adapt import FAST, setup  # noqa: F401  (the fixture)


def test_flip_agreement_is_the_dice_of_the_two_foregrounds():
    p = np.zeros((2, 8, 8), np.float32)
    p[0, 1:5, 1:5] = 0.9  # 16 px
    m = np.zeros_like(p)
    m[0, 1:5, 1:3] = 0.8  # 8 px, all inside p's object
    assert flip_agreement(p, p) == 1.0
    assert flip_agreement(p, m) == pytest.approx(2 * 8 / (16 + 8), abs=1e-4)
    assert flip_agreement(p, np.roll(p, 4, axis=2)) == 0.0  # the same object elsewhere: no agreement
    assert flip_agreement(np.zeros_like(p), np.zeros_like(p)) is None  # nothing predicted: no estimate
    with pytest.raises(ValueError, match="differ in shape"):
        flip_agreement(p, p[:1])


def test_the_mirrored_prediction_is_the_prediction_of_the_flipped_slice_flipped_back(tiny_model):
    rng = np.random.default_rng(0)
    images = [rng.random((40, 56)).astype(np.float32) for _ in range(3)]
    dev = pick_device("cpu")
    got = mirrored_slices(tiny_model, images, [0, 2], dev)
    flipped = [np.ascontiguousarray(i[::-1, ::-1]) for i in images]
    want = predict_slices(tiny_model, flipped, [0, 2], dev)[0][:, ::-1, ::-1]
    assert got.shape == (2, 40, 56)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, predict_slices(tiny_model, images, [0, 2], dev)[0], atol=1e-3)  # it did flip


def test_the_adaptation_reports_the_flip_agreement_of_the_start_and_of_the_kept_model(setup):  # noqa: F811
    img, _, loaded, source, clicks = setup
    reports = list(adapt(img, None, loaded, AdaptSettings(**FAST), source_data=source))  # UDA: no clicks at all
    first, done = reports[0].quality, reports[-1].quality
    assert first["flip_agreement"] == first["start_flip_agreement"]  # at the start they are the same model
    assert (reports[-1].prediction["prob"] > 0.5).any()  # something predicted, so there is an estimate
    assert 0.0 <= done["flip_agreement"] <= 1.0 and done["start_flip_agreement"] == first["start_flip_agreement"]
    line = describe_quality(done)
    assert line.startswith(f"quality estimate: flip agreement {done['flip_agreement']:.2f} (start ")
    assert line.endswith("; no centre clicks to hold out")  # nothing held out, and it says why
