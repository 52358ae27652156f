"""Detection of centres: predicted instances scored against centre points such as the user's clicks."""

from __future__ import annotations

import numpy as np

from .foreground import _as_labels
from .instance_metrics import _compact


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
