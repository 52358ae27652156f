"""Suggested clicks: where a click ("a mitochondrion" or "not one") would teach the model most.

Candidates, per slice, from the two heads' maps (probability p, centre heatmap):
- objects, at their innermost pixel: the instances the user sees when their label map is given
  (`labels`), else 8-connected p > threshold;
- near misses: regions of p > `near` that hold no object (the model hesitates; with `labels` this includes
  blobs of p > threshold too small to become an instance, which the user never sees);
- centres without an object: detection peaks where the segmentation sees nothing.
Give `labels` where there is a prediction: on Lucchi train after one adaptation, 18 of the 25 p > threshold
components ranked first without them lay on no shown instance and no mitochondrion (faint blobs the
instance step had dropped): answered "not a mitochondrion" about things absent from the output, while a
third of the shown instances were false.
Score = mean uncertainty over the candidate (1 - |2p - 1|: 1 at p = 0.5, 0 where sure)
      + DISAGREE when the heads disagree (an object with no peak, a near miss or background with one)
      + mean |p - previous p| when the previous round's probability is given (what is still moving)
      + mean |p - mirrored p| when the probability of the mirrored image is given (`mirrored_prob`):
        a prediction that changes when the image is flipped rests on nothing the model is sure of.
Candidates holding a click (positive or negative), or near one within `min_dz` slices, are skipped;
a greedy pick by score keeps the picks `min_distance` apart and at most `per_slice` on a slice, so the
top N are spread over the volume. Deterministic: ties go to the lower (z, y, x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

DISAGREE = 0.5  # weight of a disagreement of the heads, against the mean uncertainty (0..1)
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class Suggestions:
    points: np.ndarray   # (k, 3) float (z, y, x) voxel coordinates, best first
    scores: np.ndarray   # (k,) float
    kinds: list[str]     # "unsure object", "object without a centre", "near miss", "centre without an object"
    message: str = ""    # why there are fewer than asked ("" when n were found)

    def __len__(self) -> int:
        return len(self.points)


def _components(mask):
    """Candidate regions of a boolean mask: (label map, count, distance to the region's edge)."""
    lab, n = ndi.label(mask, structure=_EIGHT)
    return lab, n, ndi.distance_transform_edt(mask)


def _instances(lab):
    """Candidate regions of one slice's instance labels, touching instances kept apart."""
    ids = np.unique(lab[lab > 0])
    regions = np.where(lab > 0, np.searchsorted(ids, lab) + 1, 0).astype(np.int32)
    inside = (ndi.maximum_filter(lab, size=3) == lab) & (ndi.minimum_filter(lab, size=3) == lab) & (lab > 0)
    return regions, len(ids), ndi.distance_transform_edt(inside)


def _slice_candidates(p, h, prev, threshold, near, peak_thresh, min_size, mirrored=None, labels=None):
    """(list of (score, y, x, kind), label map of the candidate regions) of one slice."""
    unsure = 1.0 - np.abs(2.0 * p - 1.0)
    change = np.abs(p - prev) if prev is not None else None
    if mirrored is not None:  # both moving and flip-unstable pixels say "unsettled": their sum scores
        flip = np.abs(p - mirrored)
        change = flip if change is None else change + flip
    out = []
    regions = np.zeros(p.shape, np.int32)
    n_regions = 0
    hot = (h == ndi.maximum_filter(h, size=5)) & (h > peak_thresh)
    objects = _components(p > threshold) if labels is None else _instances(labels)
    maybe = _components(p > near)
    for (lab, n, depth), is_object in ((objects, True), (maybe, False)):
        if n == 0:
            continue
        ids = np.arange(1, n + 1)
        size = ndi.sum(np.ones_like(p), lab, ids)
        top = ndi.maximum(p, lab, ids)
        peaked = ndi.maximum(hot.astype(np.uint8), lab, ids) > 0
        mean_unsure = ndi.mean(unsure, lab, ids)
        mean_change = ndi.mean(change, lab, ids) if change is not None else np.zeros(n)
        where = ndi.maximum_position(depth, lab, ids)
        # a near-miss region holding an object is that object's rim; a shown instance is never dropped
        if labels is None:
            keep = (size >= min_size) & (is_object | (top <= threshold))
        elif is_object:
            keep = np.ones(n, bool)
        else:  # with the instances given, a blob above threshold but too small to be one is a near miss
            keep = (size >= min_size) & (ndi.maximum((labels > 0).astype(np.uint8), lab, ids) == 0)
        mapping = np.zeros(n + 1, np.int32)
        mapping[ids[keep]] = n_regions + 1 + np.arange(int(keep.sum()))
        n_regions += int(keep.sum())
        regions = np.where(mapping[lab] > 0, mapping[lab], regions)
        for i in np.flatnonzero(keep):
            disagree = bool((not peaked[i]) if is_object else peaked[i])
            kind = ("object without a centre" if disagree else "unsure object") if is_object else "near miss"
            score = float(mean_unsure[i] + DISAGREE * disagree + mean_change[i])
            out.append((score, int(where[i][0]), int(where[i][1]), kind))
    background = p <= near if labels is None else (p <= near) & (regions == 0)
    for y, x in np.argwhere(hot & background):
        out.append((DISAGREE + float(unsure[y, x]), int(y), int(x), "centre without an object"))
    return out, regions


def mirrored_prob(image, model, device=None, pixel_size: float | None = None) -> np.ndarray:
    """The probability of the image flipped in y and x, flipped back: `suggest_points`' flipped_prob.

    image: raw (Z, Y, X) or (Y, X) array; model: a LoadedModel; pixel_size: the image's nm per pixel, as
    given to `segment_volume`. One more prediction of the image.
    """
    from ..data.pixel_size import pixel_scale
    from ..engine.device import pick_device
    from ..engine.inference import predict_volume

    arr = np.asarray(image)
    vol = arr if arr.ndim == 3 else arr[None]
    prob, _ = predict_volume(model.model, np.ascontiguousarray(vol[:, ::-1, ::-1]), device or pick_device(),
                             scale=pixel_scale(pixel_size, model.pixel_size_nm))
    prob = np.ascontiguousarray(prob[:, ::-1, ::-1])
    return prob if arr.ndim == 3 else prob[0]


def suggest_points(prob: np.ndarray, heat: np.ndarray, n: int, existing_points=None, previous_prob=None,
                   threshold: float = 0.5, near: float = 0.3, peak_thresh: float = 0.3, min_size: int = 16,
                   min_distance: float = 32.0, min_dz: int = 2, per_slice: int | None = None,
                   flipped_prob=None, labels=None) -> Suggestions:
    """The n places (z, y, x) where a click would teach most (module docstring), from (Z, Y, X) maps.

    prob, heat: probability and centre heatmap (peak ~1) of a (Z, Y, X) or (Y, X) image; points come
    back in their coordinates (for a 2D image z = 0). existing_points: (M, 3) clicks already given
    (positive and negative). min_distance: in-plane pixels kept between two picks, and between a pick
    and a click, within min_dz slices. flipped_prob: `mirrored_prob` of the image (flip disagreement).
    labels: the (Z, Y, X) instance labels shown to the user (`segment_volume(...).labels`): the objects
    to rank are then those instances (module docstring). per_slice: picks per slice before the others get theirs
    (default ceil(2 n / Z)); when too few are left the cap is lifted, never the distances.
    """
    prob = np.asarray(prob, dtype=np.float32)
    heat = np.asarray(heat, dtype=np.float32)
    if prob.ndim == 2:
        prob, heat = prob[None], heat[None]
        previous_prob = None if previous_prob is None else np.asarray(previous_prob)[None]
        flipped_prob = None if flipped_prob is None else np.asarray(flipped_prob)[None]
    if prob.ndim != 3 or prob.shape != heat.shape:
        raise ValueError(f"prob {prob.shape} and heat {heat.shape} must be the same 2D or 3D shape")
    if labels is not None:
        labels = np.asarray(labels)
        labels = labels[None] if labels.ndim == 2 else labels
    for name, other in (("previous_prob", previous_prob), ("flipped_prob", flipped_prob), ("labels", labels)):
        if other is not None and np.shape(other) != prob.shape:
            raise ValueError(f"{name} {np.shape(other)} must have prob's shape {prob.shape}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    ex = np.zeros((0, 3)) if existing_points is None or np.size(existing_points) == 0 else \
        np.asarray(existing_points, dtype=np.float64).reshape(-1, 3)
    ex_z = np.floor(ex[:, 0] + 0.5).astype(int)
    cands, n_found, n_clicked = [], 0, 0
    for z in range(prob.shape[0]):
        prev = None if previous_prob is None else np.asarray(previous_prob[z], np.float32)
        mirrored = None if flipped_prob is None else np.asarray(flipped_prob[z], np.float32)
        found, regions = _slice_candidates(prob[z], heat[z], prev, threshold, near, peak_thresh, min_size, mirrored,
                                           None if labels is None else labels[z])
        n_found += len(found)
        on = ex[ex_z == z, 1:]
        pix = np.clip(np.floor(on + 0.5).astype(int), 0, np.array(prob.shape[1:]) - 1)
        clicked = set(regions[pix[:, 0], pix[:, 1]].tolist()) - {0}
        for score, y, x, kind in found:
            if regions[y, x] in clicked:
                n_clicked += 1
                continue  # an object (or near miss) the user already clicked
            cands.append((-score, z, y, x, kind))
    cands.sort(key=lambda c: c[:4])
    cap = per_slice if per_slice is not None else max(1, math.ceil(2 * n / prob.shape[0]))
    picked: list[tuple] = []

    def free(z, y, x, others) -> bool:
        return all(abs(z - oz) > min_dz or math.hypot(y - oy, x - ox) >= min_distance for oz, oy, ox in others)

    for capped in (True, False):
        for c in cands:
            if len(picked) >= n:
                break
            _, z, y, x, _ = c
            if c in picked or (capped and sum(p[1] == z for p in picked) >= cap):
                continue
            if free(z, y, x, [p[1:4] for p in picked]) and free(z, y, x, [tuple(e) for e in ex]):
                picked.append(c)
    picked.sort(key=lambda c: c[:4])
    message = ""
    if len(picked) < n:
        message = ("the prediction holds no object, no uncertain region and no centre peak: nothing to suggest"
                   if n_found == 0 else
                   f"{len(picked)} of {n} suggested: the prediction has {n_found} candidate(s), {n_clicked} "
                   "already clicked, the rest near a click or a better suggestion")
    return Suggestions(
        points=np.array([c[1:4] for c in picked], dtype=np.float64).reshape(-1, 3),
        scores=np.array([-c[0] for c in picked], dtype=np.float64),
        kinds=[c[4] for c in picked], message=message,
    )
