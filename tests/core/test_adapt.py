"""The adaptation loop on small synthetic data: reports, stop, clicks arriving mid-run, saving, gain."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_mito_wda.core.adapt import AdaptSettings, adapt, predict_slices, save_adapted, selection_score
from napari_mito_wda.core.data.checkpoint import LoadedModel, load_checkpoint
from napari_mito_wda.core.data.io import InputError, normalize_slice
from napari_mito_wda.core.data.synthetic import TARGET, make_volume
from napari_mito_wda.core.engine.device import pick_device
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet
from napari_mito_wda.core.training.supervised import prepare_slices

FAST = dict(minutes=5, max_iters=6, stage1_rounds=1, stage2_rounds=1, source_batch=1, target_batch=2, crop=64,
            label_slices=3, report_every=1)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = MultiTaskUNet(ModelConfig(base=4, depth=2, proj_dim=8, downsample=1))
    img, inst = make_volume((3, 96, 96), n_objects=6, domain=TARGET, seed=3)
    src_img, src_inst = make_volume((2, 96, 96), n_objects=6, seed=4)
    source = prepare_slices(src_img, src_inst > 0, 1, sigma=3.0)
    loaded = LoadedModel(model=model, config=model.config.to_dict(), meta={}, path="tiny",
                         extras={"source_prototypes": torch.nn.functional.normalize(torch.randn(2, 8), dim=1)})
    clicks = np.array([[1, 40, 40], [2, 60, 30]], float)
    return img, inst, loaded, source, clicks


def test_reports_cover_every_stage_and_iteration_budget(setup, precision):
    img, _, loaded, source, clicks = setup
    reports = list(adapt(img, clicks, loaded, AdaptSettings(**FAST), source_data=source))
    stages = [r.stage for r in reports]
    assert stages[0] == "prepare" and stages[-1] == "done" and stages.count("label") == 2
    train = [r for r in reports if r.stage == "train"]
    assert [r.step for r in train] == [1, 2, 3, 4, 5, 6]
    assert {"src_seg", "src_det", "tgt_det"} <= set(train[0].losses) and "tgt_seg" in train[-1].losses
    assert reports[-1].prediction["prob"].shape[1:] == (96, 96) and reports[-1].n_clicks == 2
    assert all(np.isfinite(v) for r in train for v in r.losses.values())


def test_stop_is_honoured_at_once_and_keeps_a_model(setup):
    img, _, loaded, source, clicks = setup
    seen = []

    def stop():
        return len([r for r in seen if r.stage == "train"]) >= 2

    for rep in adapt(img, clicks, loaded, AdaptSettings(**FAST | {"max_iters": 1000}), source_data=source, stop=stop):
        seen.append(rep)
    assert seen[-1].stage == "done" and seen[-1].message.startswith("stopped")
    assert max(r.step for r in seen) == 2


def test_clicks_added_while_running_are_taken_up(setup):
    img, _, loaded, source, clicks = setup
    current = {"pts": clicks[:1]}
    gen = adapt(img, None, loaded, AdaptSettings(**FAST), source_data=source, get_clicks=lambda: current["pts"])
    counts = []
    for rep in gen:
        if rep.stage == "label":
            counts.append(rep.n_clicks)
            current["pts"] = clicks  # the user clicks once more during the first round
    assert counts == [1, 2]


def test_uda_with_zero_clicks_runs_the_same_path(setup):
    img, _, loaded, source, _ = setup
    reports = list(adapt(img, np.zeros((0, 3)), loaded, AdaptSettings(**FAST), source_data=source))
    assert reports[-1].stage == "done" and reports[-1].n_clicks == 0


def test_bad_clicks_are_refused_with_a_message(setup):
    img, _, loaded, source, _ = setup
    with pytest.raises(InputError, match="outside"):
        list(adapt(img, np.array([[0, 500, 10]]), loaded, AdaptSettings(**FAST), source_data=source))


def test_adapted_model_saves_with_provenance_and_reloads(setup, tmp_path):
    img, _, loaded, source, clicks = setup
    last = list(adapt(img, clicks, loaded, AdaptSettings(**FAST), source_data=source))[-1]
    path = save_adapted(tmp_path / "a.pt", loaded, AdaptSettings(**FAST), clicks, last, image_path="t.tif")
    back = load_checkpoint(path)
    info = back.meta["adaptations"][-1]
    assert info["n_clicks"] == 2 and info["steps"] == 6 and info["clicks_zyx"][1] == [2, 60, 30]
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.model(x)["seg"], loaded.model.cpu()(x)["seg"])


def test_selection_score_rewards_agreeing_heads_and_covered_clicks():
    prob = np.zeros((1, 40, 40), np.float32)
    prob[0, 5:15, 5:15] = 1
    heat = np.zeros_like(prob)
    heat[0, 10, 10] = 1.0
    clicks = {0: np.array([[10.0, 10.0]])}
    good = selection_score(prob, heat, clicks, [0])
    assert good == pytest.approx(1.0)
    heat_off = np.zeros_like(prob)
    heat_off[0, 30, 30] = 1.0  # the detector disagrees with the segmentation
    assert selection_score(prob, heat_off, clicks, [0]) == pytest.approx(0.5)
    assert selection_score(prob, heat, {0: np.array([[35.0, 35.0]])}, [0]) == pytest.approx(0.5)


def test_short_adaptation_beats_the_source_model_on_shifted_synthetic_data():
    """Source model trained on one synthetic 'microscope', adapted from 30% clicks on a blurrier,
    noisier, lower-contrast one with bigger objects: instance quality must improve clearly."""
    from napari_mito_wda.core.adapt.points import simulate_clicks
    from napari_mito_wda.core.data.synthetic import SOURCE, Domain
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume
    from napari_mito_wda.core.training.pretrain import class_prototypes
    from napari_mito_wda.core.training.supervised import FitSettings, fit

    torch.manual_seed(0)
    dev = pick_device("cpu", precision="fp32")
    cfg = ModelConfig(base=8, depth=3, proj_dim=8, downsample=1)
    src_img, src_inst = make_volume((6, 128, 128), n_objects=14, domain=SOURCE, seed=0)
    src = prepare_slices(src_img, src_inst > 0, 1, 3.0)
    model = MultiTaskUNet(cfg)
    fit_settings = FitSettings(minutes=5, max_iters=150, batch=4, crop=96, sigma=3.0, augment=0.3)
    for _ in fit(src, fit_settings, model=model, dev=dev):
        pass
    shifted = Domain(contrast=0.5, noise=0.12, blur=2.0, texture=0.8, object_radius=18)
    img, inst = make_volume((6, 128, 128), n_objects=10, domain=shifted, seed=1)

    def quality(m):
        seg = segment_volume(img, LoadedModel(m, cfg.to_dict(), {}, "x"), dev, min_size=10)
        return evaluate_volume(seg.labels, inst, per_slice=False)

    before = quality(model)
    loaded = LoadedModel(copy.deepcopy(model), cfg.to_dict(), {}, "x",
                         {"source_prototypes": class_prototypes(model, src, dev)})
    settings = AdaptSettings(minutes=5, max_iters=150, crop=96, sigma=3.0, label_slices=6)
    for _ in adapt(img, simulate_clicks(inst, 0.3, seed=0), loaded, settings, source_data=src, dev=dev):
        pass
    after = quality(loaded.model)
    assert after["aji"] > before["aji"] + 0.1 and after["pq"] > before["pq"] + 0.1, (before, after)
    assert after["dice"] > before["dice"]


def test_source_batches_can_leave_running_batchnorm_statistics_alone():
    from napari_mito_wda.core.adapt import frozen_bn_stats

    model = MultiTaskUNet(ModelConfig(base=4, depth=2)).train()
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    with frozen_bn_stats(model, True):
        model(torch.rand(2, 1, 32, 32) * 5)
    assert torch.equal(before, bn.running_mean) and bn.momentum == 0.1
    with frozen_bn_stats(model, False):
        model(torch.rand(2, 1, 32, 32) * 5)
    assert not torch.equal(before, bn.running_mean)


def test_detector_is_trusted_only_where_it_finds_the_clicks():
    from napari_mito_wda.core.adapt import detector_trusted, heat_at_clicks

    heat = np.zeros((2, 40, 40), np.float32)
    heat[0, 10, 12] = 0.9  # two pixels from the first click: inside the search window
    heat[1, 30, 30] = 0.2
    clicks = {0: np.array([[10.0, 10.0]]), 1: np.array([[30.0, 30.0], [10.0, 10.0]]), 5: np.array([[1.0, 1.0]])}
    assert heat_at_clicks(heat, clicks, [0, 1]) == pytest.approx(0.2)  # median of 0.9, 0.2, 0; slice 5 unused
    assert heat_at_clicks(heat, {}, [0, 1]) is None
    s = AdaptSettings()
    assert not detector_trusted(heat, clicks, [0, 1], s)
    assert detector_trusted(heat, {0: clicks[0]}, [0, 1], s)
    assert detector_trusted(heat, {}, [0, 1], s)  # UDA: nothing to check the detector against
    assert not detector_trusted(heat, {0: clicks[0]}, [0, 1], AdaptSettings(detection=False))
    assert detector_trusted(heat, clicks, [0, 1], AdaptSettings(detector_trust=0.0))


def test_detector_trust_is_judged_once_on_the_starting_model(setup, precision):
    from napari_mito_wda.core.adapt import predict_slices
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.device import pick_device

    img, _, loaded, source, _ = setup
    with torch.no_grad():  # an untrained detector is ReLU-dead: lift it so its heat varies over the image,
        loaded.model.det_head[-1].bias.fill_(0.5)
        # by far more than bf16's step near 0.5 (2**-8): with the untrained weights alone the bf16 heatmap
        # was flat to the last bit and "coldest" and "hottest" were the same value
        loaded.model.det_head[-1].weight.mul_(50.0)
    # No AdaBN and no training steps: the heatmap is the same in every round, only the clicks move,
    # from where the detector is coldest (round 1) to where it is hottest (round 2).
    images = [normalize_slice(s) for s in img]  # as adapt() sees them (downsample 1)
    _, heat = predict_slices(loaded.model, images, [1], pick_device("cpu"))
    win = ndi.maximum_filter(heat[0], size=7)
    cold, hot = np.unravel_index(win.argmin(), win.shape), np.unravel_index(win.argmax(), win.shape)
    assert win[hot] > win[cold]
    rounds_seen = []

    def get_clicks():  # asked once at the start of every round
        rounds_seen.append(1)
        return np.array([[1, *(cold if len(rounds_seen) == 1 else hot)]], float)

    settings = AdaptSettings(**FAST | {"max_iters": 0}, adabn=False, peak_selection=True,
                             detector_trust=float(win[cold] + win[hot]) / 2)
    reports = [r for r in adapt(img, np.array([[1, *cold]], float), loaded, settings, source_data=source,
                                get_clicks=get_clicks) if r.stage in ("label", "done")]
    labels = [r.message for r in reports if r.stage == "label"]
    assert len(labels) == 2 and "missed the clicks" in labels[0]
    assert "missed the clicks" in labels[1]
    # Each report carries the heat at the clicks: below the trust level at the start, above it in round 2
    # (the clicks moved), and the first round says what it measured.
    assert reports[0].heat_at_clicks < settings.detector_trust < reports[1].heat_at_clicks
    assert f"detector heat at the clicks {reports[0].heat_at_clicks:.2f}" in labels[0]
    assert "detector heat at the clicks" in reports[-1].message and reports[-1].heat_at_clicks is not None
    # By default the peaks never select, even where the detector finds the clicks (the clicks at its hottest).
    default = dataclasses.replace(settings, peak_selection=AdaptSettings().peak_selection)
    first = next(r for r in adapt(img, np.array([[1, *hot]], float), loaded, default, source_data=source)
                 if r.stage == "label")
    assert first.heat_at_clicks > settings.detector_trust and "peaks do not select" in first.message


def test_untrusted_detector_vetoes_no_background():
    from napari_mito_wda.core.adapt import build_round

    prob = np.full((1, 60, 60), 0.02, np.float32)
    prob[0, 5:15, 5:15] = 0.99
    heat = np.zeros_like(prob)
    heat[0, 45, 45] = 0.3  # some heat on confidently background pixels, far from the click
    clicks = {0: np.array([[10.0, 10.0]])}
    plain, _ = build_round(prob, heat, [0], clicks, 0.5, 0.9, {0: 2}, AdaptSettings(), use_detector=False)
    assert plain.labels[0][45, 45] == 0
    assert plain.labels[0][55, 5] == 0
    trusted, _ = build_round(prob, heat, [0], clicks, 0.0, 0.9, {0: 2}, AdaptSettings(), use_detector=True)
    assert trusted.labels[0][45, 45] == 255  # a trusted detector always vetoes


def test_untrusted_detector_selects_nothing_beyond_the_clicked_objects():
    from napari_mito_wda.core.adapt import build_round

    prob = np.full((1, 60, 60), 0.02, np.float32)
    prob[0, 5:15, 5:15] = 0.99    # clicked object
    prob[0, 40:50, 40:50] = 0.92  # unclicked, less confident, with a strong detection peak
    prob[0, 5:15, 40:50] = 0.99   # unclicked, confident, no peak
    heat = np.zeros_like(prob)
    heat[0, 45, 45] = 0.9
    clicks = {0: np.array([[10.0, 10.0]])}
    s = AdaptSettings()
    # budget ceil(0.5 x 2) = 1 unclicked instance
    trusted, n_t = build_round(prob, heat, [0], clicks, 0.5, 0.9, {0: 2}, s, use_detector=True)
    clicked_only, n_c = build_round(prob, heat, [0], clicks, 0.5, 0.9, {0: 2}, s, use_detector=False)
    assert n_c == 1 and clicked_only.labels[0][45, 45] == 255 and clicked_only.labels[0][10, 45] == 255
    assert n_t == 2
    assert trusted.labels[0][45, 45] == 1 and trusted.labels[0][10, 45] == 255


def test_a_click_keeps_background_off_its_spot_on_nearby_slices_within_reach():
    from napari_mito_wda.core.adapt import build_round

    # The model sees the clicked object on slice 0 only; it continues unseen on slices 1-3.
    prob = np.full((4, 40, 40), 0.02, np.float32)
    prob[0, 5:15, 5:15] = 0.99
    heat = np.zeros_like(prob)
    clicks = {0: np.array([[10.0, 10.0]])}
    args = (prob, heat, [0, 1, 2, 3], clicks, 0.0, 0.8, {0: 1, 1: 0, 2: 0, 3: 0})
    off, _ = build_round(*args, AdaptSettings(click_reach_z=0), use_detector=False)
    assert [lab[10, 10] for lab in off.labels] == [1, 0, 0, 0]
    on, n = build_round(*args, AdaptSettings(click_reach_z=2, click_reach_radius=4), use_detector=False)
    assert n == 1 and [lab[10, 10] for lab in on.labels] == [1, 255, 255, 0]
    assert on.labels[1][10, 15] == 0 and on.labels[1][10, 14] == 255  # only within the radius
    assert (on.det_targets[1] == off.det_targets[1]).all()  # no new detection target: nothing is mito


def test_the_source_veto_keeps_background_off_where_the_starting_model_saw_mito():
    from napari_mito_wda.core.adapt import build_round

    # The current model lost an object (8:16) that the starting model saw with p 0.7 on slice 0 only.
    prob = np.full((2, 30, 30), 0.02, np.float32)
    heat = np.zeros_like(prob)
    source = {0: np.full((30, 30), 0.02, np.float32)}
    source[0][8:16, 8:16] = 0.7
    args = (prob, heat, [0, 1], {}, 0.0, 0.8, {0: 0, 1: 0})
    s = AdaptSettings(click_reach_z=0, source_veto=None, source_veto_erode=0)
    off, _ = build_round(*args, s, use_detector=False, source_prob=source)
    assert off.labels[0][12, 12] == 0
    on, _ = build_round(*args, dataclasses.replace(s, source_veto=0.5), use_detector=False, source_prob=source)
    assert on.labels[0][12, 12] == 255 and on.labels[0][20, 20] == 0
    assert (on.labels[0][8:16, 8:16] == 255).all()  # the whole object is ignored, rim included
    assert on.labels[1][12, 12] == 0  # slice 1 has no source prediction: not vetoed
    strict, _ = build_round(*args, dataclasses.replace(s, source_veto=0.8), use_detector=False, source_prob=source)
    assert strict.labels[0][12, 12] == 0
    # the default shrinks the veto by 2 px: the object's 2-px rim is taught background again, its core stays ignored
    core, _ = build_round(*args, AdaptSettings(click_reach_z=0), use_detector=False, source_prob=source)
    assert (core.labels[0][8:10, 8:16] == 0).all() and (core.labels[0][9:15, 9] == 0).all()
    assert (core.labels[0][10:14, 10:14] == 255).all()


def test_slices_clicked_mid_run_are_vetoed_by_the_starting_model_not_the_trained_one(setup):
    from napari_mito_wda.core.adapt import StartingProbability

    img, _, loaded, _, _ = setup
    dev = pick_device("cpu")
    images = [normalize_slice(s) for s in img]
    start = copy.deepcopy(loaded.model)
    prob, _ = predict_slices(loaded.model, images, [0], dev)
    held = StartingProbability(loaded.model, images, [0], prob, dev)
    with torch.no_grad():  # the model being adapted moves on: here its segmentation now calls everything mito
        loaded.model.seg_head.bias.fill_(50.0)
    held.cover([0, 2])
    np.testing.assert_allclose(held[2], predict_slices(start, images, [2], dev)[0][0], atol=1e-6)
    assert held[2].mean() < 0.99 and predict_slices(loaded.model, images, [2], dev)[0].min() > 0.99
    assert set(held) == {0, 2}
    with pytest.raises(RuntimeError, match="later_slices"):
        StartingProbability(loaded.model, images, [0], prob, dev, later_slices=False).cover([1])


def test_selection_by_score_never_returns_a_model_scoring_below_the_starting_model(setup, precision):
    img, _, loaded, source, clicks = setup
    reports = list(adapt(img, clicks, loaded, AdaptSettings(**FAST | {"selection": "score"}), source_data=source))
    start = reports[0].best_score
    seen = [start] + [r.score for r in reports if r.stage == "label"]
    # (the end-of-training prediction is a candidate too, without a report of its own)
    assert start is not None and reports[-1].best_score >= max(seen) - 1e-9
    assert reports[-1].score == pytest.approx(reports[-1].best_score, abs=1e-6)
    # the report names the kept model: the starting one exactly when nothing scored above it
    beaten = reports[-1].best_score > start + 1e-9
    assert (reports[-1].kept_step is not None) == beaten
    assert ("the starting model" in reports[-1].message) == (not beaten)


@pytest.mark.parametrize("late_click", [False, True])
def test_the_final_prediction_is_that_of_the_returned_model(setup, late_click, precision):
    # The end reuses the kept model's prediction unless clicks on new slices arrived after it.
    img, _, loaded, source, clicks = setup
    current = {"pts": clicks[:1]}

    def get_clicks():
        return current["pts"]

    s = AdaptSettings(**FAST | {"label_slices": 1})
    reports = []
    for rep in adapt(img, clicks[:1], loaded, s, source_data=source, get_clicks=get_clicks):
        reports.append(rep)
        if late_click and rep.stage == "train" and rep.step == s.max_iters:
            current["pts"] = clicks  # a click on slice 2, which no round has labelled yet
    final = reports[-1].prediction
    assert final["slices"] == ([0, 1, 2] if late_click else [0, 1])
    prob, heat = predict_slices(loaded.model, [normalize_slice(img[z]) for z in range(3)],
                                 final["slices"], pick_device("cpu"))
    np.testing.assert_allclose(final["prob"], prob, atol=1e-5)
    np.testing.assert_allclose(final["heat"], heat, atol=1e-5)


def test_selection_score_prefers_clicks_at_object_centres_over_foreground_everywhere():
    prob = np.zeros((1, 60, 60), np.float32)
    prob[0, 5:15, 5:15] = 1
    heat = np.zeros_like(prob)
    heat[0, 10, 10] = 1.0
    clicks = {0: np.array([[10.0, 10.0]])}
    good = selection_score(prob, heat, clicks, [0])
    blob = prob.copy()
    blob[0, 5:55, 5:55] = 1  # the object swallowed by a large false region: the click is off-centre
    everywhere = np.ones_like(prob)
    assert good == pytest.approx(1.0)
    assert selection_score(blob, heat, clicks, [0]) < 0.75
    assert selection_score(everywhere, heat, clicks, [0]) < selection_score(blob, heat, clicks, [0])
