"""Negative clicks ("not a mitochondrion") on hand-made maps: what becomes background, what stays, and
that a running adaptation takes them up at its next round."""

import copy

import numpy as np

from napari_mito_wda.core.adapt import AdaptSettings, adapt, build_round, selection_score
from napari_mito_wda.core.adapt.negatives import negative_region
from napari_mito_wda.core.adapt.pseudo_labels import IGNORE, instance_aware_pseudo_labels

from .test_adapt import FAST, setup  # noqa: F401 (the fixture)


def _maps():
    """4 slices: a confident object A (a false one, say) at rows 5-15 and an unsure one B (p 0.7) at rows
    25-35 on slices 0-3; the detector peaks on both."""
    prob = np.full((4, 48, 48), 0.02, np.float32)
    prob[:, 5:15, 5:15] = 0.99
    prob[:, 25:35, 25:35] = 0.7
    heat = np.zeros_like(prob)
    heat[:, 10, 10] = 1.0
    heat[:, 30, 30] = 0.5
    return prob, heat


def _round(prob, heat, clicks, negatives, s, zs=(0, 1, 2, 3), **kw):
    anchors = {z: 2 for z in zs}
    return build_round(prob, heat, list(zs), clicks, 1.0, 0.8, anchors, s, use_detector=True,
                       negatives=negatives, **kw)


def test_the_object_under_a_negative_click_becomes_background_not_ignored():
    prob, heat = _maps()
    s = AdaptSettings(click_reach_z=0)
    plain, n_plain = _round(prob, heat, {}, {}, s)
    assert plain.labels[0][10, 10] == 1 and plain.labels[0][30, 30] == IGNORE  # A selected by its peak
    neg, n_neg = _round(prob, heat, {}, {0: np.array([[8.0, 12.0]])}, s)  # off-centre, on A
    assert (neg.labels[0][5:15, 5:15] == 0).all() and n_neg == n_plain - 1
    # on its slice only (reach 0); the confident false object is no detection target but "no centre here"
    assert neg.labels[1][10, 10] == 1
    assert neg.det_targets[0][10, 10] < 0.01 < plain.det_targets[0][10, 10]
    assert (neg.det_weights[0][5:15, 5:15] >= 1).all()
    # an unsure object (ignored so far) becomes background too: the user has looked at it
    unsure, _ = _round(prob, heat, {}, {0: np.array([[30.0, 30.0]])}, s)
    assert (unsure.labels[0][25:35, 25:35] == 0).all()


def test_with_the_views_blended_the_object_the_user_saw_becomes_background_whole():
    """The xz / yz views pulled the xy object A below 0.5 in the blend: the negative click still names A, the
    object of the xy prediction the user saw (seen_prob), not just a disk around the click."""
    prob, heat = _maps()
    blend = prob.copy()
    blend[:, 5:15, 5:15] = 0.45  # the views disagree with xy there
    s = AdaptSettings(click_reach_z=0, click_reach_radius=2)
    click = {0: np.array([[8.0, 8.0]])}
    disk, _ = _round(blend, heat, {}, click, s)
    assert disk.labels[0][13, 13] == IGNORE  # from the blend alone: only a disk of radius 2 around the click
    whole, _ = _round(blend, heat, {}, click, s, seen_prob=prob)
    assert (whole.labels[0][5:15, 5:15] == 0).all()
    assert whole.labels[0][30, 30] == disk.labels[0][30, 30]  # other objects as the blend makes them


def test_negative_wins_over_the_source_veto_and_the_reach_of_a_positive_click_elsewhere():
    prob, heat = _maps()
    veto = {z: np.full((48, 48), 0.9, np.float32) for z in range(4)}  # the source model saw mito everywhere
    s = AdaptSettings(click_reach_z=2)
    rnd, _ = _round(prob, heat, {1: np.array([[30.0, 30.0]])}, {0: np.array([[10.0, 10.0]])}, s, source_prob=veto)
    assert (rnd.labels[0][5:15, 5:15] == 0).all() and rnd.labels[0][40, 40] == IGNORE


def test_with_no_object_under_it_a_disk_of_the_click_reach_radius_becomes_background():
    prob = np.full((3, 48, 48), 0.5, np.float32)  # unsure everywhere: all ignored
    region = negative_region(prob[0] * 0, {0: np.array([[24.0, 24.0]])}, 0, reach_z=2, radius=6)
    assert region[24, 24] and region[24, 30] and not region[24, 31] and region.sum() < 150
    # and no disk on nearby slices: off its slice the click says nothing about empty places
    assert not negative_region(prob[0] * 0, {0: np.array([[24.0, 24.0]])}, 1, reach_z=2, radius=6).any()


def test_on_nearby_slices_within_reach_the_object_at_the_same_place_becomes_background():
    prob, heat = _maps()
    negs = {0: np.array([[10.0, 10.0]])}
    rnd, _ = _round(prob, heat, {}, negs, AdaptSettings(click_reach_z=2))
    assert [int(lab[10, 10]) for lab in rnd.labels] == [0, 0, 0, 1]  # slices 0-2 reached, 3 beyond
    assert all(lab[30, 30] == IGNORE for lab in rnd.labels)  # the other object is untouched


def test_a_positive_click_on_the_same_object_wins():
    prob, heat = _maps()
    s = AdaptSettings(click_reach_z=0)
    both, _ = _round(prob, heat, {0: np.array([[10.0, 10.0]])}, {0: np.array([[6.0, 6.0]])}, s)
    assert (both.labels[0][5:15, 5:15] == 1).all()
    assert both.det_targets[0][10, 10] > 0.5  # still the object's detection target
    # a negative disk that reaches a positive click's blob does not eat into it
    empty = np.full((1, 64, 64), 0.02, np.float32)
    blob, _ = build_round(empty, np.zeros_like(empty), [0], {0: np.array([[30.0, 30.0]])}, 1.0, 0.8, {0: 1}, s,
                          negatives={0: np.array([[30.0, 48.0]])})
    assert blob.labels[0][30, 30] == 1 and blob.labels[0][30, 46] == 1 and blob.labels[0][30, 56] == 0


def test_a_detection_peak_on_a_negative_object_selects_nothing_and_the_budget_goes_to_the_next():
    prob, heat = _maps()
    prob[0, 25:35, 25:35] = 0.95  # B confident now; A's peak (1.0) ranks first, B's (0.5) second
    excluded = negative_region(prob[0], {0: np.array([[10.0, 10.0]])}, 0, 0, 12.0)
    res = instance_aware_pseudo_labels(prob[0], heat[0], None, ratio=1.0, count=1, t_s=0.8, exclude=excluded)
    assert res.n_from_peaks == 1 and res.label[30, 30] == 1 and res.label[10, 10] == IGNORE


def test_the_selection_score_counts_a_false_object_under_a_negative_click_like_a_missed_click():
    prob, heat = _maps()
    zs = [0, 1, 2, 3]
    off = selection_score(prob, heat, {}, zs, negatives={0: np.array([[45.0, 45.0]])})
    on = selection_score(prob, heat, {}, zs, negatives={0: np.array([[10.0, 10.0]])})
    assert on < off and selection_score(prob, heat, {}, zs) == selection_score(prob, heat, {}, zs, negatives={})


def test_negative_clicks_added_while_running_are_taken_up_at_the_next_round(setup):  # noqa: F811
    img, _, loaded, source, clicks = setup
    current = {"neg": np.zeros((0, 3))}
    seen = []
    for rep in adapt(img, clicks, loaded, AdaptSettings(**FAST), source_data=source,
                     negative_points=np.zeros((0, 3)), get_negative_points=lambda: current["neg"]):
        if rep.stage == "label":
            seen.append((rep.n_negative, list(rep.prediction["slices"])))
            current["neg"] = np.array([[0, 10, 10], [2, 80, 80]])  # the user marks two false objects
    assert [n for n, _ in seen] == [0, 2] and rep.stage == "done" and rep.n_negative == 2


def test_focused_crops_hold_the_negative_clicks_and_leave_runs_without_them_unchanged():
    from napari_mito_wda.core.adapt.rounds import TargetRound, focus_points, target_batch
    from napari_mito_wda.core.training.augment import random_crop

    plane = np.zeros((200, 300), np.float32)
    plane[150, 40] = 1.0  # a marked pixel: the crop must hold it
    for seed in range(20):
        out = random_crop(np.random.default_rng(seed), [plane], 64, scale=(1.0, 1.0), around=(150, 40))[0]
        assert out.max() == 1.0
    images = [np.random.default_rng(z).random((200, 300)).astype(np.float32) for z in range(3)]
    lab = np.zeros((200, 300), np.uint8)
    rnd = TargetRound([0, 1, 2], [lab] * 3, [np.zeros((200, 300), np.float32)] * 3,
                      [np.zeros((200, 300), np.float32)] * 3, [np.zeros((200, 300), np.float32)] * 3)
    region = np.zeros((200, 300), bool)
    region[20:40, 250:270] = True
    focus = focus_points(rnd, {1: np.array([[150.0, 40.0]])}, {2: (lab, region)})
    assert focus == [(1, 150.0, 40.0), (2, 29.5, 259.5)]
    # every crop on a focus point (share 1): it shows that slice's pixels around the point
    marked = [im.copy() for im in images]
    marked[1][150, 40] = 5.0  # out of the [0, 1] range: survives resizing as a value > 1
    x, *_ = target_batch(np.random.default_rng(0), marked, rnd, 16, 64, 0.0,
                         focus=focus[:1], focus_share=1.0)
    assert all(float(c.max()) > 1.0 for c in x)  # with augment 0 the crops keep the marked pixel
    # no focus points: the same crops as without the option (the random stream is untouched)
    a = target_batch(np.random.default_rng(3), images, rnd, 4, 64, 1.0)
    b = target_batch(np.random.default_rng(3), images, rnd, 4, 64, 1.0, focus=[], focus_share=0.5)
    assert all(bool((u == v).all()) for u, v in zip(a, b))


def test_negative_crops_hold_the_click_and_teach_only_the_object_the_user_called_false():
    from napari_mito_wda.core.adapt.rounds import TargetRound, negative_batch, negative_click_sites
    from napari_mito_wda.core.training.supervised import IGNORE

    images = [np.full((200, 300), 0.5, np.float32) for _ in range(2)]
    images[1][90:110, 40:60] = 5.0  # the false object, out of the [0, 1] range: survives resizing
    region = np.zeros((200, 300), bool)
    region[90:110, 40:60] = True
    ones = [np.ones((200, 300), np.float32)] * 2
    rnd = TargetRound([0, 1], [np.zeros((200, 300), np.uint8)] * 2, ones, ones, ones, negative=[None, region])
    sites = negative_click_sites(rnd, {0: np.array([[10.0, 10.0]]), 1: np.array([[100.0, 50.0]])})
    assert sites == [(1, 100.0, 50.0)]  # slice 0 holds a click but no region: nothing to teach there
    x, lab, target, weight, _ = negative_batch(np.random.default_rng(0), images, rnd, sites, 6, 64, 0.0)
    assert x.shape == (6, 1, 64, 64)
    for xi, li, wi in zip(x, lab, weight):
        on_object = xi > 1.0
        assert on_object.any()  # every crop holds the clicked object
        assert set(np.unique(li[on_object].numpy())) <= {0, IGNORE} and (li[on_object] == 0).any()
        assert (li[xi < 1.0] == IGNORE).float().mean() > 0.95  # elsewhere nothing is taught
        assert float(wi[xi < 1.0].max()) < 0.5 and float(wi[on_object].max()) > 0.5  # "no centre" there only
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state
    assert negative_batch(rng, images, rnd, [], 6, 64, 0.0) is None
    assert rng.bit_generator.state == before  # no negative clicks: not one random draw, runs keep their stream
    assert negative_batch(np.random.default_rng(0), images, rnd, sites, 0, 64, 0.0) is None


def test_an_adaptation_appends_negative_crops_to_its_target_batches_only_when_there_are_negative_clicks(
    setup, monkeypatch  # noqa: F811
):
    import napari_mito_wda.core.adapt.loop as loop
    from napari_mito_wda.core.adapt.rounds import negative_batch

    img, _, loaded, source, clicks = setup
    made = []  # what the real negative_batch returned at each step (the loop's own call, only watched)

    def watched(*args, **kwargs):
        out = negative_batch(*args, **kwargs)
        made.append(None if out is None else tuple(out[0].shape))
        return out

    monkeypatch.setattr(loop, "negative_batch", watched)
    s = AdaptSettings(**FAST, negative_crops=2)
    reps = list(adapt(img, clicks, copy.deepcopy(loaded), s, source_data=source,
                      negative_points=np.array([[0, 10, 10], [2, 80, 80]])))
    assert reps[-1].stage == "done" and made and all(m == (2, 1, 64, 64) for m in made)
    # the negative crops have a loss of their own, taught from the first (detection-only) round on
    by_round = {}
    for r in reps:
        if r.stage == "train":
            by_round.setdefault(r.round, set()).update(r.losses)
    assert len(by_round) == 2 and all("neg_seg" in keys for keys in by_round.values())
    assert "tgt_seg" not in by_round[min(by_round)]  # stage 1 still trains no segmentation on pseudo-labels
    made.clear()
    reps = list(adapt(img, clicks, copy.deepcopy(loaded), s, source_data=source, negative_points=np.zeros((0, 3))))
    assert made and all(m is None for m in made)
    assert not any("neg_seg" in r.losses for r in reps if r.stage == "train")
