"""The xz and yz views of a near-isotropic target as a second opinion for the pseudo-labels.

On a FIB-SEM stack the network sees each voxel in three planes through it; orthoplane inference
(`engine/orthoplanes.py`) averages them. For self-training the same views are a teacher the xy model
cannot drift with: they are predicted once, at the start (after AdaBN), and every round's pseudo-labels
are made from the mean of the current xy probability and that fixed cross-view probability. Where the
views agree an object is confident and becomes a pseudo-instance, clicked or not; where only the xy
model sees it, it is left out (ignored). This gives UDA the positive targets that the detector's peaks
were meant to give (Lucchi, 80 train slices, no clicks, 390 steps: AdaBN 0.800, with the views 0.866).
Measured on a 32-slice Lucchi train crop, shipped model after AdaBN: xy alone Dice 0.706, xy + xz + yz
(1/2, 1/4, 1/4) 0.746; of the 2D components above 0.7, 60% (xy) against 78% (combined) lie on a true
mitochondrion (docs/journal.md, session 21).
"""

from __future__ import annotations

import numpy as np

from ..data.io import normalize_slices
from ..engine.device import DeviceInfo
from ..engine.inference import to_working
from ..engine.orthoplanes import plane_maps, refusal

# 8 planes a call: an xz plane of a 32-slice stack is 16 working px tall, mostly padding one by one
# (32 x 768 x 1024, 2 threads: 13 s for both views against 30 s).
PER_CALL = 8
XY_WEIGHT = 0.5  # of the current xy probability; the xz and yz views share the rest (orthoplanes.WEIGHTS)


def cross_view_probability(model, target: np.ndarray, dev: DeviceInfo, factor: int, scale: float) -> np.ndarray:
    """Mean of the xz and yz probabilities of the raw (Z, Y, X) target, each xy slice on the working grid
    (Z, h, w) as the adaptation's images (`to_working(slice, factor, scale)`)."""
    norm = normalize_slices(target)
    if scale == 1.0 and factor > 1:
        return _on_working_rows(model, norm, dev, factor)
    cross = None
    for _, prob, _ in plane_maps(model, norm, dev, planes=("xz", "yz"), scale=scale, slices_per_call=PER_CALL):
        cross = prob if cross is None else (cross + prob) / 2.0
    return np.stack([to_working(cross[z], factor, scale) for z in range(cross.shape[0])]).astype(np.float32)


def _on_working_rows(model, norm: np.ndarray, dev: DeviceInfo, f: int) -> np.ndarray:
    """cross_view_probability without rescaling: only the xz planes through the middle of each working row
    (every f-th y) and the yz planes through each working column are predicted, then averaged f-fold
    along the other in-plane axis: half the network work of predicting every plane (f = 2)."""
    Z, Y, X = norm.shape
    h, w = Y // f, X // f  # the working grid of to_working (area averaging, floored)
    rows = np.ascontiguousarray(norm[:, f // 2 : h * f : f, :])   # (Z, h, X)
    cols = np.ascontiguousarray(norm[:, :, f // 2 : w * f : f])   # (Z, Y, w)
    (_, xz, _), = plane_maps(model, rows, dev, planes=("xz",), slices_per_call=PER_CALL)
    (_, yz, _), = plane_maps(model, cols, dev, planes=("yz",), slices_per_call=PER_CALL)
    xz = xz[:, :, : w * f].reshape(Z, h, w, f).mean(-1)
    yz = yz[:, : h * f, :].reshape(Z, h, f, w).mean(2)
    return ((xz + yz) / 2.0).astype(np.float32)


def cross_view_refusal(shape, config) -> str | None:
    """Why the cross views cannot be predicted on a stack of this shape (too few slices), or None."""
    return refusal(shape, config)


def combine(prob: np.ndarray, cross: np.ndarray | None, zs: list[int]) -> np.ndarray:
    """The pseudo-labels' probability of slices zs: the xy probability (k, h, w) blended with the cross views."""
    if cross is None:
        return prob
    return (XY_WEIGHT * prob + (1.0 - XY_WEIGHT) * cross[zs]).astype(np.float32)
