"""Instance metrics of one 2D slice, AJI and PQ, through one sparse contingency table.

The table is built with ``np.bincount`` (or ``np.unique`` when it would be too large), so a 768x1024
slice with hundreds of objects is scored in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label as _sk_label

from .foreground import _as_labels, _check_2d, _check_same_shape

# Above this many cells a dense (n_gt+1) x (n_pred+1) table costs more than sorting the pixel pairs.
_DENSE_TABLE_MAX = 4_000_000


def _compact(flat: np.ndarray) -> tuple[np.ndarray, int]:
    """Map the ids in ``flat`` to 0..n with 0 kept as background; returns (compact ids, n)."""
    if flat.size == 0:
        return flat.astype(np.int64), 0
    mx = int(flat.max())
    if mx == 0:
        return np.zeros(flat.shape, np.int64), 0
    if mx <= max(4 * flat.size, 1 << 16):
        # A look-up table is linear time; np.unique would sort every pixel.
        present = np.bincount(flat, minlength=mx + 1) > 0
        present[0] = True
        lut = np.cumsum(present) - 1
        return lut[flat], int(lut[-1])
    ids, inv = np.unique(flat, return_inverse=True)
    inv = inv.reshape(-1).astype(np.int64)
    if ids[0] != 0:
        inv += 1
        return inv, len(ids)
    return inv, len(ids) - 1


@dataclass
class _Overlap:
    """Sparse overlap of GT instances (rows) and predicted instances (columns), 0-based ids."""

    area_gt: np.ndarray  # (n_gt,)
    area_pred: np.ndarray  # (n_pred,)
    gi: np.ndarray  # (k,) GT index of each overlapping pair
    pi: np.ndarray  # (k,) prediction index of each overlapping pair
    inter: np.ndarray  # (k,) intersection areas
    union: np.ndarray  # (k,) union areas

    @property
    def n_gt(self) -> int:
        return len(self.area_gt)

    @property
    def n_pred(self) -> int:
        return len(self.area_pred)

    @property
    def pair_iou(self) -> np.ndarray:
        return self.inter / self.union


def _overlap(pred_labels: np.ndarray, gt_labels: np.ndarray) -> _Overlap:
    p, n_p = _compact(pred_labels.reshape(-1).astype(np.int64, copy=False))
    g, n_g = _compact(gt_labels.reshape(-1).astype(np.int64, copy=False))
    width = n_p + 1
    if (n_g + 1) * width <= max(_DENSE_TABLE_MAX, p.size):
        table = np.bincount(g * width + p, minlength=(n_g + 1) * width).reshape(n_g + 1, width)
        area_gt = table[1:].sum(axis=1)
        area_pred = table[:, 1:].sum(axis=0)
        gi, pi = np.nonzero(table[1:, 1:])
        inter = table[1:, 1:][gi, pi]
    else:
        area_gt = np.bincount(g, minlength=n_g + 1)[1:]
        area_pred = np.bincount(p, minlength=n_p + 1)[1:]
        both = (g > 0) & (p > 0)
        keys, inter = np.unique(g[both] * width + p[both], return_counts=True)
        gi, pi = keys // width - 1, keys % width - 1
    gi = gi.astype(np.int64)
    pi = pi.astype(np.int64)
    inter = inter.astype(np.int64)
    union = area_gt[gi] + area_pred[pi] - inter
    return _Overlap(area_gt, area_pred, gi, pi, inter, union)


def _aji_from_overlap(ov: _Overlap) -> float:
    if ov.n_gt == 0:
        return 1.0 if ov.n_pred == 0 else 0.0
    if len(ov.gi) == 0:
        return 0.0
    # Best prediction per GT: sort by GT, then IoU descending, then prediction id (lowest wins ties).
    order = np.lexsort((ov.pi, -ov.pair_iou, ov.gi))
    g_sorted = ov.gi[order]
    first = np.ones(len(order), bool)
    first[1:] = g_sorted[1:] != g_sorted[:-1]
    best = order[first]
    c = ov.inter[best].sum()
    u = ov.union[best].sum()
    has_pair = np.zeros(ov.n_gt, bool)
    has_pair[ov.gi[best]] = True
    u += ov.area_gt[~has_pair].sum()
    used = np.zeros(ov.n_pred, bool)
    used[ov.pi[best]] = True
    u += ov.area_pred[~used].sum()
    return float(c / u)


def _pq_from_overlap(ov: _Overlap, iou_threshold: float) -> dict:
    if ov.n_gt == 0 and ov.n_pred == 0:
        return dict(pq=1.0, sq=1.0, dq=1.0, tp=0, fp=0, fn=0)
    ious = ov.pair_iou
    cand = np.flatnonzero(ious > iou_threshold)
    if iou_threshold >= 0.5:
        # IoU > 0.5 can hold for at most one partner on each side, so no assignment is needed.
        matched = cand
    else:
        # Below 0.5 pairs can compete; keep a one-to-one greedy matching, best IoU first.
        cand = cand[np.argsort(-ious[cand], kind="stable")]
        g_used, p_used, keep = set(), set(), []
        for k in cand:
            g, p = int(ov.gi[k]), int(ov.pi[k])
            if g not in g_used and p not in p_used:
                g_used.add(g)
                p_used.add(p)
                keep.append(k)
        matched = np.asarray(keep, dtype=np.int64)
    tp = int(len(matched))
    fp = ov.n_pred - tp
    fn = ov.n_gt - tp
    sq = float(ious[matched].mean()) if tp else 0.0
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    return dict(pq=sq * dq, sq=sq, dq=float(dq), tp=tp, fp=fp, fn=fn)


def aji(pred_labels, gt_labels) -> float:
    """Aggregated Jaccard Index of one 2D slice of instance ids (0 = background).

    HoVer-Net definition: every GT instance is paired with the overlapping prediction of highest
    IoU (intersection into C, union into U; a GT with no overlap adds only its area to U), and the
    area of every prediction never paired is added to U. AJI = C / U. A prediction may be paired with
    several GT instances, so over-merging is penalised through repeated unions.

    Both empty gives 1.0; empty GT with a non-empty prediction gives 0.0.
    """
    p = _as_labels(pred_labels, "pred_labels")
    g = _as_labels(gt_labels, "gt_labels")
    _check_same_shape(p, g)
    _check_2d(p, "pred_labels")
    return _aji_from_overlap(_overlap(p, g))


def panoptic_quality(pred_labels, gt_labels, iou_threshold: float = 0.5) -> dict:
    """Panoptic quality of one 2D slice of instance ids (0 = background).

    A GT/prediction pair is a true positive when its IoU is strictly above ``iou_threshold``
    (unique for thresholds >= 0.5; below that a greedy one-to-one matching by IoU is used).
    SQ is the mean IoU of the matches, DQ = TP / (TP + FP/2 + FN/2), PQ = SQ * DQ.

    Returns ``dict(pq, sq, dq, tp, fp, fn)``. Both empty gives pq = sq = dq = 1.0; no match at all
    gives sq = 0.0.
    """
    if not 0.0 <= float(iou_threshold) < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    p = _as_labels(pred_labels, "pred_labels")
    g = _as_labels(gt_labels, "gt_labels")
    _check_same_shape(p, g)
    _check_2d(p, "pred_labels")
    return _pq_from_overlap(_overlap(p, g), float(iou_threshold))


def relabel_2d(labels_2d) -> np.ndarray:
    """Split a binary mask or instance slice into 8-connected components, numbered 1..n.

    Touching instances with different ids stay separate; one id in two disjoint pieces becomes two
    objects, which is what a per-slice instance metric should see for a 3D label cut by the slice.
    """
    a = _as_labels(labels_2d, "labels_2d")
    _check_2d(a, "labels_2d")
    return _sk_label(a, background=0, connectivity=2).astype(np.int32, copy=False)
