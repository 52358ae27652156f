"""Corrections as labels on hand-made maps: what the user's edits of a prediction teach, the ignore band,
that they override the pseudo-labels, survive a new prediction, and are taken up by a running adaptation."""

import numpy as np
import pytest

from napari_mito_wda.core.adapt import AdaptSettings, adapt, build_round
from napari_mito_wda.core.adapt.corrections import (
    corrections_from_edit,
    keep_corrections,
    slice_diff,
    working_corrections,
)
from napari_mito_wda.core.adapt.pseudo_labels import IGNORE
from napari_mito_wda.core.engine.inference import to_working

from .test_adapt import FAST, setup  # noqa: F401 (the fixture)


def _predicted():
    """2 slices of 64 x 64: objects 1 (rows 5-20, cols 5-20) and 2 (rows 30-50, cols 30-50) on each."""
    p = np.zeros((2, 64, 64), np.uint16)
    p[:, 5:20, 5:20] = 1
    p[:, 30:50, 30:50] = 2
    return p


def test_unchanged_objects_are_no_correction_even_renumbered():
    p = _predicted()
    assert corrections_from_edit(p, p.copy()).n_objects == 0
    renumbered = np.where(p == 1, 7, p).astype(np.uint16)  # same pixel set, another id
    c = corrections_from_edit(p, renumbered)
    assert c.n_objects == 0 and c.slices == []


def test_a_painted_object_is_mitochondrion_with_its_mask_and_an_ignore_band():
    p = _predicted()
    e = p.copy()
    e[1, 40:60, 5:25] = 3  # painted on slice 1 (rows 40-59, cols 5-24)
    c = corrections_from_edit(p, e, band=3)
    assert (c.n_mito, c.n_erased, c.slices) == (1, 0, [1])
    lab, reg = c.labels[1], c.region[1]
    assert (lab[44:57, 9:22] == 1).all()  # the inside, 3 px from the border
    assert lab[40, 5] == IGNORE and lab[42, 7] == IGNORE and lab[43, 8] == 1  # the band: 3 px inside ...
    assert reg[38, 10] and lab[38, 10] == IGNORE and not reg[36, 10]  # ... and 3 px outside, then nothing
    assert (lab[~reg] == IGNORE).all() and not reg[10, 10]  # the unchanged objects say nothing
    assert c.describe() == "1 corrected object (1 mitochondria, 0 erased) on 1 slice"


def test_an_erased_object_is_background_and_counted():
    p = _predicted()
    e = p.copy()
    e[0][e[0] == 2] = 0
    c = corrections_from_edit(p, e, band=2)
    assert (c.n_mito, c.n_erased, c.slices) == (0, 1, [0])
    lab = c.labels[0]
    assert (lab[32:48, 32:48] == 0).all() and lab[30, 30] == IGNORE and lab[29, 40] == IGNORE
    assert lab[10, 10] == IGNORE  # object 1 was not touched


def test_split_merge_and_shrink_give_the_edited_masks():
    p = _predicted()
    e = p.copy()
    e[0, 30:50, 40:50] = 5  # object 2 split into 2 (left) and 5 (right)
    e[1, 20:30, 5:20] = 1  # slice 1: object 1 grown down to row 29 ...
    e[1][e[1] == 2] = 1  # ... and merged with 2
    c = corrections_from_edit(p, e, band=2)
    assert c.slices == [0, 1] and c.n_mito == 2 + 1 and c.n_erased == 0
    lab0 = c.labels[0]
    assert lab0[40, 34] == 1 and lab0[40, 46] == 1  # both halves mitochondria
    assert lab0[40, 39] == IGNORE and lab0[40, 40] == IGNORE  # the cut between them is not forced
    assert lab0[10, 10] == IGNORE  # untouched object 1 on slice 0
    assert c.labels[1][25, 10] == 1 and c.labels[1][40, 40] == 1
    # shrinking: the erased part is background, the rest mitochondrion; no object is erased whole
    s = p.copy()
    s[0, 5:20, 12:20] = 0
    d = slice_diff(p[0], s[0])
    assert list(d.mito_ids) == [1] and d.erased[10, 15] and d.n_erased == 0
    lab = corrections_from_edit(p, s, band=1).labels[0]
    assert lab[10, 7] == 1 and lab[10, 17] == 0 and lab[10, 11] == IGNORE


def test_shapes_and_types_are_checked_with_clear_errors():
    p = _predicted()
    with pytest.raises(ValueError, match=r"differ in shape"):
        corrections_from_edit(p, p[:1])
    with pytest.raises(ValueError, match="integer instance ids"):
        corrections_from_edit(p, p.astype(np.float32))
    with pytest.raises(ValueError, match="negative ids"):
        corrections_from_edit(p, p.astype(np.int32) - 1)
    with pytest.raises(ValueError, match="band"):
        corrections_from_edit(p, p, band=-1)
    assert corrections_from_edit(p[0], p[0]).shape == (1, 64, 64)  # a 2D map is one slice


def test_the_working_grid_keeps_pure_pixels_and_ignores_mixed_ones():
    p = _predicted()
    e = p.copy()
    e[1, 40:60, 5:25] = 3
    e[1][e[1] == 2] = 0
    c = corrections_from_edit(p, e, band=2)
    lab, reg = working_corrections(c, lambda m: to_working(m, 2))[1]
    assert lab.shape == (32, 32) and reg.shape == (32, 32)
    assert lab[25, 7] == 1 and lab[20, 20] == 0 and lab[2, 2] == IGNORE and not reg[5, 5]
    assert set(np.unique(lab).tolist()) <= {0, 1, IGNORE}


def test_corrections_override_pseudo_labels_clicks_and_negative_clicks():
    prob = np.full((1, 64, 64), 0.02, np.float32)
    prob[0, 5:20, 5:20] = 0.99  # a confident object the user erased
    heat = np.zeros_like(prob)
    heat[0, 12, 12] = 1.0
    p = np.zeros((1, 64, 64), np.uint16)
    p[0, 5:20, 5:20] = 1
    e = np.zeros_like(p)
    e[0, 35:55, 35:55] = 2  # ... and one the model missed, painted
    corr = working_corrections(corrections_from_edit(p, e, band=2), lambda m: m)
    s = AdaptSettings(click_reach_z=0)
    args = (prob, heat, [0], {0: np.array([[12.0, 12.0]])}, 1.0, 0.8, {0: 2}, s)
    plain, _ = build_round(*args)
    assert plain.labels[0][12, 12] == 1 and plain.labels[0][45, 45] == 0
    rnd, _ = build_round(*args, negatives={0: np.array([[45.0, 45.0]])}, corrections=corr)
    lab = rnd.labels[0]
    assert (lab[8:17, 8:17] == 0).all()  # erased beats the positive click on it
    assert (lab[38:52, 38:52] == 1).all()  # painted beats the negative click and the confident background
    assert lab[35, 45] == IGNORE and lab[60, 60] == 0  # its band; the rest stays pseudo-labelled
    assert rnd.det_targets[0][45, 45] > 0.9 and rnd.det_targets[0][12, 12] < 0.01  # detection: the user's object
    assert (rnd.det_weights[0][38:52, 38:52] >= 1).all()


def test_a_new_prediction_keeps_the_corrections_and_the_next_diff_finds_the_same():
    p = _predicted()[0]
    e = p.copy()
    e[e == 2] = 0  # erased
    e[40:60, 5:25] = 3  # painted
    e[5:20, 12:20] = 0  # object 1 shrunk
    new = np.zeros_like(p)
    new[30:50, 30:50] = 1  # the new model predicts the erased object again
    new[45:64, 0:10] = 2  # and an object that overlaps the painted one
    new[0:4, 60:64] = 3  # and a new one elsewhere
    merged, ref = keep_corrections(p, e, new, first_id=10)
    assert (merged[30:50, 30:50] == 0).all() and (merged[40:60, 5:25] > 0).all()  # the user's masks win
    assert len(np.unique(merged[40:60, 5:25])) == 1 and merged[40, 5] >= 10  # renumbered past the new ids
    assert (merged[0:4, 60:64] == 3).all() and (merged[62, 2] == 2)  # elsewhere the new prediction
    before, after = corrections_from_edit(p, e), corrections_from_edit(ref, merged)
    assert (after.n_mito, after.n_erased) == (before.n_mito, before.n_erased) == (2, 1)
    assert np.array_equal(after.labels[0], before.labels[0]) and np.array_equal(after.region[0], before.region[0])
    untouched, same = keep_corrections(p, p, new, first_id=10)
    assert np.array_equal(untouched, new) and np.array_equal(same, new)


def test_corrections_reach_the_adaptation_and_new_ones_are_taken_up_mid_run(setup):  # noqa: F811
    img, inst, loaded, source, clicks = setup
    pred = np.zeros(img.shape, np.uint16)
    edited = pred.copy()
    edited[0][inst[0] == inst[0].max()] = 1  # one object painted on slice 0
    current = {"c": corrections_from_edit(pred, edited)}
    seen = []
    settings = AdaptSettings(**dict(FAST, label_slices=1))
    for rep in adapt(img, clicks, loaded, settings, source_data=source, corrections=current["c"],
                     get_corrections=lambda: current["c"]):
        if rep.stage == "prepare":
            assert rep.n_corrected == 1 and "1 corrected objects" in rep.message
        if rep.stage == "label":
            seen.append((rep.n_corrected, list(rep.prediction["slices"])))
            more = edited.copy()
            more[2][inst[2] == inst[2].max()] = 1  # another one, painted while it runs
            current["c"] = corrections_from_edit(pred, more)
    assert [n for n, _ in seen] == [1, 2] and 0 in seen[0][1] and 2 in seen[1][1]
    assert rep.stage == "done" and rep.n_corrected == 2
    with pytest.raises(ValueError, match="not the image's"):
        next(adapt(img, clicks, loaded, settings, source_data=source,
                   corrections=corrections_from_edit(pred[:, :50], edited[:, :50])))
