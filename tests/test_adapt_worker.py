"""The adaptation worker without a viewer: previews, the caller's model left intact, stop, clicks feed."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_mito_wda._adapt_worker import AdaptResult, AdaptUpdate, ClickFeed, adapt_iter, load_iter
from napari_mito_wda._worker import run_to_end
from napari_mito_wda.core.data.checkpoint import CheckpointError, load_checkpoint

from .conftest import TINY_ADAPT


def test_adapt_iter_yields_previews_and_trains_a_copy(target, adaptable_model_file):
    loaded = load_checkpoint(adaptable_model_file)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    feed = ClickFeed([[1, 40, 40], [2, 30, 60]])
    reports, result = run_to_end(adapt_iter(target, feed, model=loaded, overrides=TINY_ADAPT, view_z=lambda: 2,
                                            n_preview=1, with_maps=True))
    assert all(isinstance(u, AdaptUpdate) and u.report.prediction is None for u in reports)
    stages = [u.report.stage for u in reports]
    assert stages[0] == "prepare" and stages[-1] == "done" and "train" in stages
    with_previews = [u for u in reports if u.previews]
    assert with_previews and all(len(u.previews) == 1 and u.previews[0].z == 2 for u in with_previews)
    p = with_previews[0].previews[0]
    assert p.labels.shape == target.shape[1:] and p.heat.shape == target.shape[1:] and p.trusted is not None

    # rounds are long in real runs: the slice in view is also refreshed between training steps
    updates, _ = run_to_end(adapt_iter(target, ClickFeed([[1, 40, 40]]), model=loaded, overrides=TINY_ADAPT,
                                       view_z=lambda: 1, preview_every_s=0.0))
    train_previews = [u.previews for u in updates if u.report.stage == "train" and u.previews]
    assert train_previews and all(len(p) == 1 and p[0].z == 1 for p in train_previews)
    assert train_previews[0][0].labels.shape == target.shape[1:]

    assert isinstance(result, AdaptResult) and not result.stopped and result.last.stage == "done"
    # the best model so far travels at the first round start (and whenever it changes): kept if the run fails
    first = next(u.best for u in reports if u.report.stage == "label")
    assert isinstance(first, AdaptResult) and first.stopped and first.last.stage == "label"
    assert first.model is not result.model and first.last.best_state is None  # a copy; no weights in reports
    assert result.settings.max_iters == TINY_ADAPT["max_iters"] and result.clicks.shape == (2, 3)
    # the caller's model is untouched; the returned one was trained
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in result.model.model.state_dict().items()
               if v.is_floating_point())


def test_adapt_iter_stop_and_resume_without_adabn(target, adaptable_model_file):
    stop = threading.Event()
    gen = adapt_iter(target, ClickFeed([[0, 40, 40]]), model_path=str(adaptable_model_file),
                     overrides=TINY_ADAPT | {"max_iters": 10_000}, stop_event=stop)
    steps = []
    try:
        while True:
            u = next(gen)
            steps.append(u.report.step)
            if u.report.stage == "train" and u.report.step >= 2:
                stop.set()
    except StopIteration as end:
        result = end.value
    assert result.stopped and result.last.message.startswith("stopped") and max(steps) <= 3
    _, again = run_to_end(adapt_iter(target, ClickFeed([[0, 40, 40]]), model=result.model, overrides=TINY_ADAPT,
                                     resume=True))
    assert again.settings.adabn is False and not again.stopped


def test_click_feed_and_load_errors(tmp_path):
    feed = ClickFeed()
    assert feed.get().shape == (0, 3)
    pts = [[1.0, 2.0, 3.0]]
    feed.set(pts)
    got = feed.get()
    got[0, 0] = 99  # a copy: the worker cannot change the GUI's clicks
    assert feed.get().tolist() == pts and ClickFeed(None, ndim=2).get().shape == (0, 2)

    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        run_to_end(load_iter(str(bad)))


def test_previews_leave_out_the_objects_under_negative_clicks(target, adaptable_model_file):
    import numpy as np

    loaded = load_checkpoint(adaptable_model_file)
    grid = np.array([[2, y, x] for y in range(4, target.shape[1], 6) for x in range(4, target.shape[2], 6)], float)
    plain, _ = run_to_end(adapt_iter(target, ClickFeed([[1, 40, 40]]), model=loaded, overrides=TINY_ADAPT,
                                     view_z=lambda: 2, n_preview=1))
    shown = [p for u in plain for p in u.previews]
    at = tuple(grid[:, 1:].astype(int).T)
    assert shown and any((p.labels[at] > 0).any() for p in shown)  # without them, objects lie under the grid
    updates, _ = run_to_end(adapt_iter(target, ClickFeed([[1, 40, 40]]), model=loaded, overrides=TINY_ADAPT,
                                       view_z=lambda: 2, n_preview=1, negatives=ClickFeed(grid)))
    shown = [p for u in updates for p in u.previews]
    assert shown and all(p.z == 2 and not (p.labels[at] > 0).any() for p in shown)
