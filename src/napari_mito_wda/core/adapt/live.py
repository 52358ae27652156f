"""Live previews during adaptation: a report's working-resolution prediction -> full-resolution slices.

`adapt` yields {"slices", "prob", "heat"} at the network's working resolution for the slices it
pseudo-labels. A viewer wants instance masks at the image's resolution, for the slices the user is
looking at, without converting the whole list every round (the conversion eats into the training
budget); hence `nearest_slices` and a cap. Rounds can last minutes, so `current_preview` also predicts
the slice in view with the network as it trains, between two steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.instances import instances_2d
from .pseudo_labels import IGNORE, pixel_confidence_pseudo_labels

# Values of the "trusted" map shown to the user (a Labels layer): what the model is sure about.
TRUSTED_MITO = 1
UNSURE = 2


@dataclass
class SlicePreview:
    z: int
    labels: np.ndarray           # (Y, X) instance ids (int32, 1..n per slice)
    heat: np.ndarray | None      # (Y, X) centre heatmap, float32, full resolution
    trusted: np.ndarray | None   # (Y, X) uint8: 0 confident background, 1 confident mito, 2 unsure


def nearest_slices(available, near: int | None, k: int) -> list[int]:
    """Up to k slices of `available`, those closest to `near` first (all in order when near is None)."""
    avail = [int(z) for z in available]
    if near is None:
        return avail[:k]
    return sorted(avail, key=lambda z: (abs(z - int(near)), z))[:k]


def slice_preview(z: int, prob: np.ndarray, heat: np.ndarray, t_trust: float = 0.9, with_maps: bool = False,
                  **instance_kw) -> SlicePreview:
    """Instances (and optionally the heatmap and trusted map) of one slice from full-resolution maps."""
    labels = instances_2d(prob, heat, **instance_kw)
    trusted = None
    if with_maps:
        pl = pixel_confidence_pseudo_labels(prob, t_trust)
        trusted = np.where(pl == IGNORE, UNSURE, np.where(pl == 1, TRUSTED_MITO, 0)).astype(np.uint8)
    return SlicePreview(int(z), labels, heat.astype(np.float32) if with_maps else None, trusted)


def preview_slices(prediction: dict, shape_yx: tuple[int, int], zs, t_trust: float = 0.9,
                   with_maps: bool = False, **instance_kw) -> list[SlicePreview]:
    """Instances (and optionally heatmap + trusted map) at full resolution for the slices zs.

    prediction: an AdaptReport.prediction; zs must be among prediction["slices"].
    instance_kw goes to instances_2d (threshold, min_size, ...), as in segment_volume.
    """
    from ..engine.inference import to_full

    index = {int(z): k for k, z in enumerate(prediction["slices"])}
    shape_yx = (int(shape_yx[0]), int(shape_yx[1]))
    out = []
    for z in zs:
        k = index[int(z)]
        prob = to_full(np.asarray(prediction["prob"][k], np.float32), shape_yx)
        heat = to_full(np.asarray(prediction["heat"][k], np.float32), shape_yx)
        out.append(slice_preview(z, prob, heat, t_trust, with_maps, **instance_kw))
    return out


def current_preview(model, image_2d: np.ndarray, z: int, dev=None, with_maps: bool = False, scale: float = 1.0,
                    **instance_kw) -> SlicePreview:
    """Preview one raw slice with a network in the middle of training (between two optimiser steps).

    Predicts in eval mode (BatchNorm running statistics used, not updated; no gradients) and puts the
    network back in the mode it was in, so the training loop goes on unaffected. scale: the image's
    pixel size over the model's, as in `adapt`.
    """
    from ..engine.inference import predict_slice

    was_training = model.training
    model.eval()
    try:
        prob, heat = predict_slice(model, image_2d, dev, scale=scale)
    finally:
        model.train(was_training)
    return slice_preview(z, prob, heat, with_maps=with_maps, **instance_kw)


def leave_out_negated(previews: list[SlicePreview], negatives=None, positives=None) -> int:
    """Drop from each preview (in place) the objects under the negative clicks of its slice, a positive
    click of that slice on one sparing it (negatives.drop_negated); clicks are image voxels (z, y, x).
    Returns how many objects were left out."""
    from .negatives import drop_negated

    def of_slice(pts, z: int) -> np.ndarray:
        pts = np.zeros((0, 3)) if pts is None else np.asarray(pts, np.float64).reshape(-1, 3)
        return pts[np.floor(pts[:, 0] + 0.5) == z][:, 1:]

    n = 0
    for p in previews:
        neg = of_slice(negatives, p.z)
        if len(neg):
            n += drop_negated(p.labels, neg, of_slice(positives, p.z))[0]
    return n
