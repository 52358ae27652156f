"""Tests for napari_mito_wda.core.evaluation on tiny hand-made arrays with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_mito_wda.core.evaluation import (
    aji,
    centre_detection,
    dice,
    evaluate_volume,
    format_table,
    iou,
    panoptic_quality,
    relabel_2d,
)

approx = pytest.approx


def _box(shape, y0, y1, x0, x1, value=1, dtype=np.uint16, out=None):
    """Fill rows y0..y1-1, cols x0..x1-1 with value (into out, or a new zero array)."""
    a = np.zeros(shape, dtype) if out is None else out
    a[y0:y1, x0:x1] = value
    return a


# ------------------------------------------------------------------------------------------------
# Dice / IoU
# ------------------------------------------------------------------------------------------------


def test_dice_iou_two_squares_offset_diagonally():
    # A: rows 0-3, cols 0-3 (16 px); B: rows 1-4, cols 1-4 (16 px); overlap rows 1-3 x cols 1-3 = 9.
    a = _box((6, 6), 0, 4, 0, 4, dtype=bool)
    b = _box((6, 6), 1, 5, 1, 5, dtype=bool)
    assert dice(a, b) == approx(2 * 9 / 32)  # 0.5625
    assert iou(a, b) == approx(9 / 23)  # union 16 + 16 - 9


def test_dice_iou_offset_by_one_column_and_labels_count_as_foreground():
    # A: rows 0-3, cols 0-3; B: rows 0-3, cols 1-4 with instance ids 3 and 9: overlap 4 x 3 = 12.
    a = _box((4, 6), 0, 4, 0, 4)
    b = _box((4, 6), 0, 4, 1, 3, value=3)
    b[:, 3:5] = 9
    assert dice(a, b) == approx(24 / 32)  # 0.75
    assert iou(a, b) == approx(12 / 20)  # 0.6


def test_dice_iou_empty_and_disjoint():
    z = np.zeros((3, 4, 4), np.uint8)
    assert dice(z, z) == 1.0
    assert iou(z, z) == 1.0
    one = z.copy()
    one[1, 1, 1] = 1
    assert dice(one, z) == 0.0
    assert iou(z, one) == 0.0


def test_dice_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))


# ------------------------------------------------------------------------------------------------
# AJI
# ------------------------------------------------------------------------------------------------


def test_aji_split_gt_plus_false_positive():
    shape = (10, 12)
    # GT g (id 4): rows 0-3, cols 0-7 -> 32 px.
    gt = _box(shape, 0, 4, 0, 8, value=4)
    # p1 (id 10): rows 0-3, cols 0-3 -> 16 px, all inside g: IoU 16/32 = 0.5.
    # p2 (id 20): rows 0-3, cols 4-8 -> 20 px, 16 inside g: IoU 16/(32+20-16) = 16/36.
    # p3 (id 30): rows 7-8, cols 9-10 -> 4 px, touches no GT (false positive).
    pred = _box(shape, 0, 4, 0, 4, value=10)
    _box(shape, 0, 4, 4, 9, value=20, out=pred)
    _box(shape, 7, 9, 9, 11, value=30, out=pred)
    # g picks p1: C = 16, U = 32. Unused p2 (20) and p3 (4) go into U: U = 32 + 20 + 4 = 56.
    assert aji(pred, gt) == approx(16 / 56)


def test_aji_merged_prediction_and_missed_gt():
    shape = (6, 10)
    # g1: rows 0-1, cols 0-3 (8 px); g2: rows 0-1, cols 5-8 (8 px); g3: rows 4-5, cols 0-2 (6 px).
    gt = _box(shape, 0, 2, 0, 4, value=1)
    _box(shape, 0, 2, 5, 9, value=2, out=gt)
    _box(shape, 4, 6, 0, 3, value=3, out=gt)
    # One prediction covering rows 0-1, cols 0-8 (18 px) merges g1 and g2.
    pred = _box(shape, 0, 2, 0, 9, value=5)
    # g1 -> p: +8 to C, +18 to U; g2 -> p: +8 to C, +18 to U; g3 no overlap: +6 to U.
    assert aji(pred, gt) == approx(16 / 42)


def test_aji_empty_cases():
    z = np.zeros((5, 5), np.uint8)
    obj = _box((5, 5), 1, 3, 1, 3)
    assert aji(z, z) == 1.0
    assert aji(obj, z) == 0.0  # GT empty, prediction not
    assert aji(z, obj) == 0.0  # C = 0, U = 4


def _aji_reference(pred, gt):
    """Plain loop over objects, straight from the HoVer-Net definition."""
    g_ids = [i for i in np.unique(gt) if i]
    p_ids = [i for i in np.unique(pred) if i]
    if not g_ids:
        return 1.0 if not p_ids else 0.0
    c = u = 0
    used = set()
    for g in g_ids:
        gm = gt == g
        best, best_iou = None, -1.0
        for p in p_ids:
            pm = pred == p
            inter = np.count_nonzero(gm & pm)
            if inter == 0:
                continue
            val = inter / np.count_nonzero(gm | pm)
            if val > best_iou:
                best, best_iou = p, val
        if best is None:
            u += np.count_nonzero(gm)
        else:
            pm = pred == best
            c += np.count_nonzero(gm & pm)
            u += np.count_nonzero(gm | pm)
            used.add(best)
    for p in p_ids:
        if p not in used:
            u += np.count_nonzero(pred == p)
    return c / u


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aji_matches_reference_loop_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    # Coarse random blocks (upsampled) give overlapping objects of various sizes; sparse big ids.
    gt = np.kron(rng.integers(0, 6, (6, 6)), np.ones((4, 4), int)) * 1000
    pred = np.kron(rng.integers(0, 5, (8, 8)), np.ones((3, 3), int))
    assert aji(pred, gt) == approx(_aji_reference(pred, gt))


def test_aji_rejects_3d_and_negative():
    with pytest.raises(ValueError, match="2D"):
        aji(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match="negative"):
        aji(-np.ones((4, 4), int), np.zeros((4, 4), int))


# ------------------------------------------------------------------------------------------------
# Panoptic quality
# ------------------------------------------------------------------------------------------------


def test_pq_one_tp_one_fp_one_fn():
    shape = (10, 10)
    # TP: GT rows 0-1 cols 0-4 (10 px) vs pred rows 0-1 cols 0-3 (8 px): IoU 8/10 = 0.8.
    gt = _box(shape, 0, 2, 0, 5, value=7)
    pred = _box(shape, 0, 2, 0, 4, value=300)
    # FN: GT rows 5-6, cols 0-1 with nothing predicted there.
    _box(shape, 5, 7, 0, 2, value=8, out=gt)
    # FP: pred rows 8-9, cols 7-9 with no GT there.
    _box(shape, 8, 10, 7, 10, value=301, out=pred)
    r = panoptic_quality(pred, gt)
    # SQ = 0.8, DQ = 1 / (1 + 0.5 + 0.5) = 0.5, PQ = 0.4.
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["sq"] == approx(0.8)
    assert r["dq"] == approx(0.5)
    assert r["pq"] == approx(0.4)


def test_pq_iou_exactly_half_is_not_a_match():
    # GT 8 px, pred 4 px inside it: IoU = 4/8 = 0.5, not > 0.5 -> FP + FN, no TP.
    gt = _box((4, 6), 0, 2, 0, 4)
    pred = _box((4, 6), 0, 2, 0, 2)
    r = panoptic_quality(pred, gt)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 1)
    assert (r["pq"], r["sq"], r["dq"]) == (0.0, 0.0, 0.0)


def test_pq_low_threshold_stays_one_to_one():
    # GT rows 0, cols 0-3 (4 px) split into two 2 px predictions, each IoU 2/4 = 0.5.
    gt = _box((2, 4), 0, 1, 0, 4)
    pred = _box((2, 4), 0, 1, 0, 2, value=1)
    _box((2, 4), 0, 1, 2, 4, value=2, out=pred)
    r = panoptic_quality(pred, gt, iou_threshold=0.3)
    # Only one prediction may take the GT: TP 1, FP 1, FN 0; SQ 0.5, DQ 1/1.5, PQ 1/3.
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 0)
    assert r["sq"] == approx(0.5)
    assert r["dq"] == approx(2 / 3)
    assert r["pq"] == approx(1 / 3)


def test_pq_empty_and_bad_threshold():
    z = np.zeros((4, 4), np.uint8)
    r = panoptic_quality(z, z)
    assert (r["pq"], r["sq"], r["dq"], r["tp"], r["fp"], r["fn"]) == (1.0, 1.0, 1.0, 0, 0, 0)
    r = panoptic_quality(_box((4, 4), 0, 2, 0, 2), z)
    assert (r["pq"], r["dq"], r["fp"], r["fn"]) == (0.0, 0.0, 1, 0)
    with pytest.raises(ValueError, match="iou_threshold"):
        panoptic_quality(z, z, iou_threshold=1.0)


# ------------------------------------------------------------------------------------------------
# relabel_2d
# ------------------------------------------------------------------------------------------------


def test_relabel_2d_components():
    # Binary: two squares touching only at a corner are one object with 8-connectivity.
    m = np.zeros((5, 5), bool)
    m[0:2, 0:2] = True
    m[2:4, 2:4] = True
    m[4, 0] = True  # isolated pixel -> second object
    r = relabel_2d(m)
    assert r.max() == 2
    assert r[0, 0] == r[3, 3] != r[4, 0]
    # Instances: touching different ids stay apart; one id in two pieces becomes two objects.
    lab = np.array([[1, 1, 2, 0, 1], [1, 1, 2, 0, 1]], np.uint32)
    r = relabel_2d(lab)
    assert len(np.unique(r[r > 0])) == 3
    assert r[0, 0] != r[0, 4]
    assert r[0, 0] != r[0, 2]


# ------------------------------------------------------------------------------------------------
# centre detection
# ------------------------------------------------------------------------------------------------


def _three_instances():
    lab = _box((10, 10), 0, 3, 0, 3, value=1)  # centroid (1, 1)
    _box((10, 10), 5, 8, 5, 8, value=2, out=lab)  # centroid (6, 6)
    _box((10, 10), 0, 2, 8, 10, value=3, out=lab)  # centroid (0.5, 8.5)
    return lab


def test_detection_inside_outside_duplicate():
    lab = _three_instances()
    # (1,1) in inst 1 -> TP; (2,2) in inst 1 again -> FN (duplicate); (6,6) in inst 2 -> TP;
    # (9,0) in background -> FN. Inst 3 has no point -> FP.
    pts = np.array([[1, 1], [2, 2], [6, 6], [9, 0]])
    r = centre_detection(lab, pts)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 2)
    assert r["precision"] == approx(2 / 3)
    assert r["recall"] == approx(2 / 4)
    assert r["f1"] == approx(4 / 7)  # 2TP / (2TP + FP + FN)


def test_detection_max_distance():
    lab = _three_instances()
    # (4,4) is in background: sqrt(8) = 2.83 px from the centroid of inst 2, sqrt(18) = 4.24 from inst 1.
    pts = np.array([[1, 1], [4, 4]])
    r = centre_detection(lab, pts, max_distance=3)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    r = centre_detection(lab, pts, max_distance=2)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 1)
    assert centre_detection(lab, pts) == r
    # Once (6,6) has claimed inst 2, (4,4) cannot take it; inst 1 is too far at 4.24 px.
    r = centre_detection(lab, np.array([[4, 4], [6, 6]]), max_distance=3)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 1)


def test_detection_3d_counts_each_slice_and_rounds_points():
    lab = np.zeros((2, 6, 6), np.uint16)
    lab[:, 1:3, 1:3] = 5  # one 3D id -> two 2D objects (z=0 and z=1)
    lab[1, 4:6, 4:6] = 9  # third object, no point -> FP
    # (0.4, 1.4, 0.6) rounds to (0, 1, 1).
    pts = np.array([[0.4, 1.4, 0.6], [1, 2, 2]])
    r = centre_detection(lab, pts)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 0)
    assert r["precision"] == approx(2 / 3)
    assert r["recall"] == 1.0


def test_detection_empty_and_errors():
    z = np.zeros((4, 4), np.uint8)
    r = centre_detection(z, np.zeros((0, 2)))
    assert (r["precision"], r["recall"], r["f1"]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="outside"):
        centre_detection(z, np.array([[4, 0]]))
    with pytest.raises(ValueError, match="outside"):
        centre_detection(z, np.array([[0, -0.6]]))  # rounds to -1
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        centre_detection(z, np.array([[0, 0, 0]]))


# ------------------------------------------------------------------------------------------------
# evaluate_volume
# ------------------------------------------------------------------------------------------------


def _stack():
    """3 slices of 6x6: perfect slice, empty slice, under-segmented slice."""
    gt = np.zeros((3, 6, 6), bool)
    pred = np.zeros((3, 6, 6), np.uint16)
    gt[0, 0:2, 0:2] = True  # 4 px
    pred[0, 0:2, 0:2] = 7  # same 4 px, 3D id 7
    gt[2, 0:2, 0:4] = True  # 8 px
    pred[2, 0:2, 0:2] = 7  # 4 px inside it
    return pred, gt


def test_evaluate_volume_three_slices_with_empty_slice():
    pred, gt = _stack()
    r = evaluate_volume(pred, gt)
    # Pooled: I = 4 + 4 = 8, |P| = 8, |G| = 12 -> Dice 16/20, IoU 8/12.
    assert r["dice"] == approx(0.8)
    assert r["iou"] == approx(2 / 3)
    # Per slice: z0 all 1.0; z1 empty -> all 1.0; z2 Dice 8/12, IoU 4/8, AJI 4/8,
    # PQ: IoU exactly 0.5 is no match -> pq = sq = dq = 0.
    assert r["dice_mean"] == approx((1 + 1 + 2 / 3) / 3)
    assert r["iou_mean"] == approx((1 + 1 + 0.5) / 3)
    assert r["aji"] == approx((1 + 1 + 0.5) / 3)
    assert r["pq"] == approx(2 / 3)
    assert r["sq"] == approx(2 / 3)
    assert r["dq"] == approx(2 / 3)
    assert (r["n_slices"], r["n_pred_objects"], r["n_gt_objects"]) == (3, 2, 2)
    assert [row["dice"] for row in r["per_slice"]] == approx([1.0, 1.0, 2 / 3])
    assert "per_slice" not in evaluate_volume(pred, gt, per_slice=False)


def test_evaluate_volume_splits_3d_ids_into_2d_components():
    # One 3D id appearing as two separate pieces in one slice counts as two 2D objects.
    pred = np.zeros((1, 4, 7), np.int32)
    pred[0, 0:2, 0:2] = 3
    pred[0, 0:2, 5:7] = 3
    gt = (pred > 0).astype(np.uint8)
    r = evaluate_volume(pred, gt)
    assert (r["n_pred_objects"], r["n_gt_objects"]) == (2, 2)
    assert (r["aji"], r["pq"], r["dice"]) == (approx(1.0), approx(1.0), approx(1.0))


def test_evaluate_volume_2d_prediction_without_gt():
    pred = _box((4, 4), 0, 2, 0, 2, dtype=np.uint32)
    gt = np.zeros((4, 4), np.uint8)
    r = evaluate_volume(pred, gt)
    assert r["n_slices"] == 1
    assert (r["dice"], r["iou"], r["aji"], r["pq"], r["dq"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert (r["n_pred_objects"], r["n_gt_objects"]) == (1, 0)


def test_evaluate_volume_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 6, 6\).*\(3, 6, 5\)"):
        evaluate_volume(np.zeros((3, 6, 6), np.uint8), np.zeros((3, 6, 5), np.uint8))


# ------------------------------------------------------------------------------------------------
# format_table
# ------------------------------------------------------------------------------------------------


def test_format_table():
    text = format_table({"dice": 0.75, "n_slices": 3, "aji": np.float32(1 / 3), "per_slice": [{}]})
    assert text.splitlines() == [
        "metric     value",
        "--------  ------",
        "dice      0.7500",
        "n_slices       3",
        "aji       0.3333",
    ]
