"""Metrics for mitochondria segmentation in EM stacks.

Pure numpy / scipy / scikit-image so that the CLI, the benchmarks and the tests can score results
without torch or a GUI. Instance metrics (AJI, PQ) are defined per 2D slice, as in the EM
mitochondria literature, and averaged over slices by :func:`evaluate_volume`.

All overlap-based metrics go through one contingency table built with ``np.bincount`` (or
``np.unique`` when the table would be too large), so a 768x1024 slice with hundreds of objects
is scored in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skimage.measure import label as _sk_label

__all__ = [
    "dice",
    "iou",
    "aji",
    "panoptic_quality",
    "relabel_2d",
    "centre_detection",
    "evaluate_volume",
    "format_table",
]

# Above this many cells a dense (n_gt+1) x (n_pred+1) table costs more than sorting the pixel pairs.
_DENSE_TABLE_MAX = 4_000_000


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------


def _as_labels(arr, name: str) -> np.ndarray:
    """Return ``arr`` as a non-negative integer array, or raise a ValueError saying what is wrong."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.view(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.signedinteger) and a.size and a.min() < 0:
            raise ValueError(f"{name} contains negative values; labels must be >= 0 (0 = background)")
        return a
    if np.issubdtype(a.dtype, np.floating):
        # Label images saved as float TIFFs are common; probabilities are not labels.
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(
                f"{name} has non-integer float values (dtype {a.dtype}); threshold probabilities "
                "into a mask or pass an integer label image"
            )
        if a.size and a.min() < 0:
            raise ValueError(f"{name} contains negative values; labels must be >= 0 (0 = background)")
        return a.astype(np.int64)
    raise ValueError(f"{name} must be a bool or integer array, got dtype {a.dtype}")


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground-truth shape {gt.shape}")


def _check_2d(a: np.ndarray, name: str) -> None:
    if a.ndim != 2:
        raise ValueError(f"{name} must be a single 2D slice, got an array of shape {a.shape}")


# --------------------------------------------------------------------------------------------------
# semantic (foreground) overlap
# --------------------------------------------------------------------------------------------------


def _fg_counts(pred_mask, gt_mask) -> tuple[int, int, int]:
    p = np.asarray(pred_mask)
    g = np.asarray(gt_mask)
    _check_same_shape(p, g)
    p = p != 0
    g = g != 0
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))


def _dice_from_counts(inter: int, n_pred: int, n_gt: int) -> float:
    total = n_pred + n_gt
    return 1.0 if total == 0 else 2.0 * inter / total


def _iou_from_counts(inter: int, n_pred: int, n_gt: int) -> float:
    union = n_pred + n_gt - inter
    return 1.0 if union == 0 else inter / union


def dice(pred_mask, gt_mask) -> float:
    """Foreground Dice coefficient of two masks of any (equal) shape; non-zero means foreground.

    Pooled over all voxels. Both masks empty gives 1.0 (nothing to find, nothing found).
    """
    return _dice_from_counts(*_fg_counts(pred_mask, gt_mask))


def iou(pred_mask, gt_mask) -> float:
    """Foreground Jaccard index (IoU) of two masks of any (equal) shape. Both empty gives 1.0."""
    return _iou_from_counts(*_fg_counts(pred_mask, gt_mask))


# --------------------------------------------------------------------------------------------------
# instance overlap (contingency table)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# detection of centres (clicks)
# --------------------------------------------------------------------------------------------------


def _slice_centroids(slice_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (original ids, (n, 2) centroids in (y, x)) of the instances in one 2D slice."""
    flat = slice_labels.reshape(-1).astype(np.int64, copy=False)
    c, n = _compact(flat)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2))
    h, w = slice_labels.shape
    counts = np.bincount(c, minlength=n + 1)[1:]
    ys = np.bincount(c, weights=np.repeat(np.arange(h, dtype=float), w), minlength=n + 1)[1:]
    xs = np.bincount(c, weights=np.tile(np.arange(w, dtype=float), h), minlength=n + 1)[1:]
    ids = np.zeros(n + 1, np.int64)
    ids[c] = flat  # compact -> original id
    return ids[1:], np.stack([ys / counts, xs / counts], axis=1)


def _prf(tp: int, fp: int, fn: int) -> dict:
    if tp + fp + fn == 0:
        return dict(precision=1.0, recall=1.0, f1=1.0, tp=0, fp=0, fn=0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn)
    return dict(precision=precision, recall=recall, f1=f1, tp=tp, fp=fp, fn=fn)


def centre_detection(pred_labels, points, max_distance: float | None = None) -> dict:
    """Score predicted instances against centre points (e.g. the user's clicks).

    ``pred_labels`` is a 2D or 3D instance array; ``points`` is (N, ndim) in voxel coordinates,
    (z, y, x) or (y, x), rounded to the nearest voxel (napari's convention for pixel centres).
    Objects are 2D cross-sections: in 3D each (z, id) pair counts separately.

    A point is a true positive when it lies inside an object that no earlier point claimed (one point
    per object; later points in the same object are false negatives). With ``max_distance``, points
    that lie outside every object may then claim the nearest unclaimed object centroid in their
    slice within that many pixels (closest pairs first). FP = objects without a point,
    FN = unmatched points. Returns ``dict(precision, recall, f1, tp, fp, fn)``; both empty gives 1.0.
    """
    lab = _as_labels(pred_labels, "pred_labels")
    if lab.ndim not in (2, 3):
        raise ValueError(f"pred_labels must be 2D or 3D, got shape {lab.shape}")
    ndim = lab.ndim
    pts = np.asarray(points, dtype=float)
    if pts.size == 0:
        pts = np.zeros((0, ndim))
    elif pts.ndim == 1 and pts.shape[0] == ndim:
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != ndim:
        raise ValueError(
            f"points must have shape (N, {ndim}) to match {ndim}D pred_labels, got shape {pts.shape}"
        )
    if not np.all(np.isfinite(pts)):
        raise ValueError("points contain NaN or infinite coordinates")
    if max_distance is not None and not max_distance >= 0:
        raise ValueError(f"max_distance must be >= 0 or None, got {max_distance}")

    idx = np.round(pts).astype(np.int64)
    outside = np.any((idx < 0) | (idx >= np.asarray(lab.shape)), axis=1)
    if outside.any():
        bad = np.flatnonzero(outside)
        raise ValueError(
            f"{len(bad)} point(s) lie outside the label array of shape {lab.shape}; "
            f"first is point {bad[0]} at {pts[bad[0]].tolist()}"
        )
    if ndim == 2:
        lab = lab[None]
        idx = np.concatenate([np.zeros((len(idx), 1), np.int64), idx], axis=1)

    n_obj = 0
    for z in range(lab.shape[0]):
        n_obj += _compact(lab[z].reshape(-1).astype(np.int64, copy=False))[1]

    hit = lab[idx[:, 0], idx[:, 1], idx[:, 2]] if len(idx) else np.zeros(0, np.int64)
    claimed: set[tuple[int, int]] = set()
    tp = 0
    for z, lid in zip(idx[:, 0].tolist(), hit.tolist()):
        if lid and (z, lid) not in claimed:
            claimed.add((z, lid))
            tp += 1

    if max_distance is not None:
        free = np.flatnonzero(hit == 0)
        for z in np.unique(idx[free, 0]).tolist():
            ids, cents = _slice_centroids(lab[z])
            avail = np.array([(z, int(i)) not in claimed for i in ids], bool)
            ids, cents = ids[avail], cents[avail]
            if len(ids) == 0:
                continue
            here = free[idx[free, 0] == z]
            d = np.linalg.norm(pts[here][:, None, -2:] - cents[None], axis=2)
            pi, oi = np.nonzero(d <= max_distance)
            order = np.lexsort((oi, pi, d[pi, oi]))
            p_done: set[int] = set()
            for k in order.tolist():
                if pi[k] in p_done or (z, int(ids[oi[k]])) in claimed:
                    continue
                p_done.add(int(pi[k]))
                claimed.add((z, int(ids[oi[k]])))
                tp += 1

    return _prf(tp, n_obj - tp, len(pts) - tp)


# --------------------------------------------------------------------------------------------------
# volumes and reporting
# --------------------------------------------------------------------------------------------------


def evaluate_volume(pred_labels, gt, per_slice: bool = True) -> dict:
    """Score a predicted (Z, Y, X) stack against ground truth; 2D input is treated as Z = 1.

    ``pred_labels`` and ``gt`` may each be binary masks or instance labels (3D ids or per-slice
    ids): instance metrics are computed per slice on 8-connected 2D components of both.

    Returns ``dice`` and ``iou`` pooled over the volume; ``dice_mean``, ``iou_mean``, ``aji``,
    ``pq``, ``sq``, ``dq`` as means over slices; ``n_slices``, ``n_pred_objects``, ``n_gt_objects``
    (2D objects summed over slices). A slice empty in both scores 1.0. With ``per_slice`` the
    dict also holds ``per_slice``: a list with one dict of the slice's values per z.
    """
    p = _as_labels(pred_labels, "pred_labels")
    g = _as_labels(gt, "gt")
    _check_same_shape(p, g)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3:
        raise ValueError(f"expected a 2D slice or a (Z, Y, X) stack, got shape {p.shape}")
    n_z = p.shape[0]
    if n_z == 0:
        raise ValueError("the stack has no slices")

    tot_i = tot_p = tot_g = 0
    rows = []
    for z in range(n_z):
        i_z, p_z, g_z = _fg_counts(p[z], g[z])
        tot_i, tot_p, tot_g = tot_i + i_z, tot_p + p_z, tot_g + g_z
        ov = _overlap(relabel_2d(p[z]), relabel_2d(g[z]))
        pq = _pq_from_overlap(ov, 0.5)
        rows.append(
            dict(
                z=z,
                dice=_dice_from_counts(i_z, p_z, g_z),
                iou=_iou_from_counts(i_z, p_z, g_z),
                aji=_aji_from_overlap(ov),
                pq=pq["pq"],
                sq=pq["sq"],
                dq=pq["dq"],
                n_pred_objects=ov.n_pred,
                n_gt_objects=ov.n_gt,
            )
        )

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    out = dict(
        dice=_dice_from_counts(tot_i, tot_p, tot_g),
        iou=_iou_from_counts(tot_i, tot_p, tot_g),
        dice_mean=mean("dice"),
        iou_mean=mean("iou"),
        aji=mean("aji"),
        pq=mean("pq"),
        sq=mean("sq"),
        dq=mean("dq"),
        n_slices=n_z,
        n_pred_objects=int(sum(r["n_pred_objects"] for r in rows)),
        n_gt_objects=int(sum(r["n_gt_objects"] for r in rows)),
    )
    if per_slice:
        out["per_slice"] = rows
    return out


def format_table(metrics: dict) -> str:
    """Render the scalar entries of ``metrics`` as an aligned two-column plain-text table.

    Floats get 4 decimals, integers are printed as they are; nested values (such as the
    ``per_slice`` list of :func:`evaluate_volume`) are left out.
    """
    rows = []
    for key, value in metrics.items():
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (int, np.integer)):
            text = str(int(value))
        elif isinstance(value, (float, np.floating)):
            text = "nan" if math.isnan(value) else f"{float(value):.4f}"
        elif value is None:
            text = "n/a"
        else:
            continue
        rows.append((str(key), text))
    name_w = max([len("metric")] + [len(k) for k, _ in rows])
    val_w = max([len("value")] + [len(v) for _, v in rows])
    lines = [f"{'metric':<{name_w}}  {'value':>{val_w}}", f"{'-' * name_w}  {'-' * val_w}"]
    lines += [f"{k:<{name_w}}  {v:>{val_w}}" for k, v in rows]
    return "\n".join(lines)
