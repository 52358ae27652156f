"""Crops cut around the positive clicks (AdaptSettings.click_focus): where they land, and the loop's use."""

import copy

import numpy as np

from napari_mito_wda.core.adapt import AdaptSettings, adapt

from .test_adapt import FAST, setup  # noqa: F401 (the fixture)


def _round(shape=(200, 300), n=3):
    from napari_mito_wda.core.adapt.rounds import TargetRound

    zeros = np.zeros(shape, np.float32)
    return TargetRound(list(range(n)), [np.zeros(shape, np.uint8)] * n, [zeros] * n, [zeros] * n, [zeros] * n)


def test_click_points_index_the_rounds_slices_and_skip_slices_outside_it():
    from napari_mito_wda.core.adapt.rounds import click_points

    rnd = _round()
    rnd.z = [0, 4, 9]
    pts = click_points(rnd, {4: np.array([[10.0, 20.0], [30.0, 40.0]]), 5: np.array([[1.0, 1.0]])})
    assert pts == [(1, 10.0, 20.0), (1, 30.0, 40.0)]


def test_crops_at_clicks_hold_the_click_and_a_zero_share_keeps_the_random_stream():
    from napari_mito_wda.core.adapt.rounds import target_batch

    rnd = _round()
    images = [np.random.default_rng(z).random((200, 300)).astype(np.float32) for z in range(3)]
    marked = [im.copy() for im in images]
    marked[2][170, 280] = 5.0  # out of the [0, 1] range: a crop holding it shows a value > 1
    x, *_ = target_batch(np.random.default_rng(0), marked, rnd, 16, 64, 0.0,
                         clicked=[(2, 170.0, 280.0)], click_share=1.0)
    assert all(float(c.max()) > 1.0 for c in x)
    a = target_batch(np.random.default_rng(3), images, rnd, 4, 64, 1.0)
    b = target_batch(np.random.default_rng(3), images, rnd, 4, 64, 1.0, clicked=[(2, 170.0, 280.0)],
                     click_share=0.0)
    assert all(bool((u == v).all()) for u, v in zip(a, b))
    # negative-click focus first: at share 1 it takes every crop, the clicks none
    y, *_ = target_batch(np.random.default_rng(0), marked, rnd, 8, 64, 0.0, focus=[(0, 20.0, 20.0)],
                         focus_share=1.0, clicked=[(2, 170.0, 280.0)], click_share=1.0)
    assert all(float(c.max()) <= 1.0 for c in y)


def test_the_loop_passes_its_training_clicks_to_the_batches_only_when_asked(setup, monkeypatch):  # noqa: F811
    import napari_mito_wda.core.adapt.loop as loop
    from napari_mito_wda.core.adapt.rounds import target_batch

    img, _, loaded, source, clicks = setup
    seen = []  # the clicked points of each of the loop's own calls (the real function runs)

    def watched(*args, **kwargs):
        seen.append(args[8] if len(args) > 8 else kwargs.get("clicked"))
        return target_batch(*args, **kwargs)

    monkeypatch.setattr(loop, "target_batch", watched)
    reps = list(adapt(img, clicks, copy.deepcopy(loaded), AdaptSettings(**FAST, click_focus=0.5, heldout_share=0.0),
                      source_data=source))
    assert reps[-1].stage == "done" and seen
    assert all(sorted((round(y), round(x)) for _, y, x in c) == [(40, 40), (60, 30)] for c in seen)
    seen.clear()
    list(adapt(img, clicks, copy.deepcopy(loaded), AdaptSettings(**FAST), source_data=source))
    assert seen and all(c is None for c in seen)
