"""The user's "not a mitochondrion" clicks hold in the instances they are shown.

The adaptation learns from a negative click (core/adapt/negatives.py), but learning alone took only ~71-75%
of the clicked false objects away on the benchmark. So the plugin also keeps the user's word by rule
(`drop_negated`): the object under a negative click leaves the instances layer as soon as the click is made,
and stays out of every later prediction and live preview, hence out of the exported TIFF. A positive click
on the same object spares it (as in training), and so does the user's own correction of it (their mask
wins, as in training). Deleting the negative click brings the object back at the next prediction.
"""

from __future__ import annotations

import numpy as np


def voxel_clicks(raw, shape) -> tuple[np.ndarray, int, np.ndarray]:
    """(clicks inside an image of `shape` as (N, 3) voxel coords with duplicates merged, n outside, all raw
    as (N, 3)) from points in image coordinates, (z, y, x) or (y, x)."""
    from .core.adapt.points import validate_points

    raw = np.asarray(raw, dtype=np.float64)
    shape3 = tuple(shape) if len(shape) == 3 else (1, *shape)
    if raw.size == 0:
        return np.zeros((0, 3)), 0, np.zeros((0, 3))
    raw = raw.reshape(len(raw), -1)[:, -len(shape):]
    full = raw if raw.shape[1] == 3 else np.column_stack([np.zeros(len(raw)), raw])
    vox = np.floor(full + 0.5)
    inside = ((vox >= 0) & (vox < np.asarray(shape3))).all(axis=1)
    pts, _ = validate_points(full[inside], shape3)
    return pts, int((~inside).sum()), full


def user_clicks(inputs, negatives, image, shape) -> tuple[np.ndarray, np.ndarray]:
    """(negative, positive) clicks of `image` inside `shape`, as (N, 3) voxels; negatives: SuggestSection or None."""
    neg = negatives.negatives_in_image_coords(image) if negatives is not None else []
    return voxel_clicks(neg, shape)[0], voxel_clicks(inputs.centres_in_image_coords(image), shape)[0]


def leave_out_in_layer(layer, negatives: np.ndarray, positives: np.ndarray, linked: bool = False) -> int:
    """Drop the objects under `negatives` from an instances layer the plugin wrote (in place; untracked
    layers are the user's and are left alone). The reference moves with them, so a dropped object is no
    correction; an object the user corrected stays. Returns how many objects were dropped."""
    from ._live_layers import writable_data
    from ._proofread import reference
    from .core.adapt.corrections import slice_diff
    from .core.adapt.negatives import drop_negated

    ref = reference(layer)
    if ref is None or not len(negatives):
        return 0
    data = writable_data(layer)
    data3 = data[None] if data.ndim == 2 else data
    corrected: dict[int, np.ndarray] = {}  # per slice, once: the ids of the objects the user corrected
    keep = []
    for z, y, x in np.floor(negatives + 0.5).astype(int):
        on = data3[z, y, x]
        if on and z not in corrected:
            corrected[z] = slice_diff(ref[z], data3[z]).mito_ids
        keep.append(on == 0 or on not in corrected[z])
    dropped = drop_negated(data3, negatives[np.array(keep, bool)], positives, linked=linked, also=ref)[0]
    if dropped:
        layer.refresh()
    return dropped
