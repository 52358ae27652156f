"""Instance masks from the mito probability and the centre heatmap.

Per slice: foreground = probability > threshold; heatmap peaks inside the foreground seed a
watershed on the heatmap, so touching mitochondria with two centres are split; foreground blobs with
no peak become one instance each. Optional 3D linking joins overlapping 2D instances of neighbouring
slices into one id.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

# Defaults of the instance step, in pixels at the model's pixel size (sizes_at_scale puts them on an image's grid).
MIN_SIZE = 64
MIN_DISTANCE = 9


def instances_2d(
    prob: np.ndarray,
    heat: np.ndarray | None = None,
    threshold: float = 0.5,
    min_size: int = MIN_SIZE,
    peak_threshold: float = 0.5,
    min_distance: int = MIN_DISTANCE,
    peak_prominence: float = 0.3,
) -> np.ndarray:
    """Instance ids (int32) of one slice; 0 = background.

    Only confident centres (heatmap >= peak_threshold, on a 0..1 scale) split a blob: on the VNC III
    hold-out slices, seeding from weak peaks (0.3) over-split the shipped model's objects (AJI 0.39 vs
    0.54 with 0.5). And only prominent ones: a peak must rise peak_prominence above the saddle to any
    higher peak of its blob, else it joins that peak's instance. A detector that reaches its targets
    has several bumps per object; seeding from each cut VNC III hold-out AJI from 0.57 to 0.27
    (docs/benchmarks.md, "Instance step").
    """
    blobs, n_blobs = ndi.label(prob > threshold, structure=np.ones((3, 3)))
    blobs = _drop_small(blobs, min_size)
    fg = blobs > 0
    if heat is None or not fg.any():
        return blobs
    peaks = peak_local_max(heat, min_distance=min_distance, threshold_abs=peak_threshold, labels=blobs)
    peaks = _prominent(peaks, heat, blobs, peak_prominence)
    if len(peaks) == 0:
        return blobs.astype(np.int32)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    split = watershed(-heat, markers, mask=fg)
    # Blobs without any peak keep their own id after the watershed ids.
    orphan = fg & (split == 0)
    if orphan.any():
        extra, _ = ndi.label(orphan, structure=np.ones((3, 3)))
        split[orphan] = extra[orphan] + len(peaks)
    return _drop_small(split, min_size)  # watershed may cut slivers off a blob


def sizes_at_scale(scale: float, min_size: int = MIN_SIZE, min_distance: int = MIN_DISTANCE) -> dict:
    """min_size (pixels) and min_distance (pixels), meant at the model's pixel size, on an image grid one pixel of
    which spans `scale` model pixels (image nm / model nm, `pixel_size.pixel_scale`; 1.0 when either is unknown).

    The maps come back on the image's own grid, so without this a 10 nm image (scale 2) would drop objects of
    up to 256 model pixels and a 2.5 nm one keep slivers of 16.
    """
    if scale == 1.0:
        return {"min_size": min_size, "min_distance": min_distance}
    return {"min_size": max(1, round(min_size / scale**2)), "min_distance": max(1, round(min_distance / scale))}


def _prominent(peaks: np.ndarray, heat: np.ndarray, blobs: np.ndarray, h: float) -> np.ndarray:
    """The peaks (sorted high to low, as peak_local_max gives them) of dynamic >= h: one per h-maximum.

    Judged blob by blob on the heat of that blob alone (what the chunked path's exactness needs), and only
    for blobs with several peaks; on a 1/255 grid, where h-maxima is fast (float maps took ~1.5 s a slice).
    """
    if h <= 0 or len(peaks) < 2:
        return peaks
    ids = blobs[tuple(peaks.T)]
    uniq, counts = np.unique(ids, return_counts=True)
    keep = np.ones(len(peaks), bool)
    boxes = ndi.find_objects(blobs)
    for b in uniq[counts > 1]:
        box = boxes[b - 1]
        local = np.where(blobs[box] == b, np.clip(heat[box], 0, 1), 0)
        caps, _ = ndi.label(h_maxima(np.round(local * 255).astype(np.uint8), max(1, round(h * 255))),
                            structure=np.ones((3, 3)))
        sel = np.flatnonzero(ids == b)
        seen: set[int] = set()
        for i in sel:  # high to low: the first peak of a cap seeds it, the rest join it
            c = int(caps[peaks[i, 0] - box[0].start, peaks[i, 1] - box[1].start])
            keep[i] = c > 0 and c not in seen
            seen.add(c)
    return peaks[keep]


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Remove instances smaller than min_size pixels and renumber 1..n (int32)."""
    labels = labels.astype(np.int32, copy=False)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lut = np.zeros(sizes.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[labels]


def link_slices(labels: np.ndarray, min_overlap: float = 0.3) -> np.ndarray:
    """Give overlapping 2D instances of consecutive slices one 3D id (greedy by overlap fraction)."""
    out = np.zeros(labels.shape, np.uint32)
    next_id = 1
    prev = None
    for z in range(labels.shape[0]):
        cur = labels[z]
        ids = np.unique(cur)
        ids = ids[ids > 0]
        mapping: dict[int, int] = {}
        if prev is not None and ids.size:
            both = (cur > 0) & (prev > 0)
            pairs, counts = np.unique(np.stack([cur[both], prev[both]]), axis=1, return_counts=True)
            area_cur = np.bincount(cur.ravel())
            area_prev = np.bincount(prev.ravel())
            order = np.argsort(-counts)
            used_prev: set[int] = set()
            for k in order:
                c, p = int(pairs[0, k]), int(pairs[1, k])
                if c in mapping or p in used_prev:
                    continue
                if counts[k] / min(area_cur[c], area_prev[p]) >= min_overlap:
                    mapping[c] = p
                    used_prev.add(p)
        for c in ids:
            if int(c) not in mapping:
                mapping[int(c)] = next_id
                next_id += 1
        lut = np.zeros(int(cur.max()) + 1, np.uint32)
        for c, g in mapping.items():
            lut[c] = g
        layer = lut[cur]
        out[z] = layer
        prev = layer
    return out


def instances_volume(prob: np.ndarray, heat: np.ndarray | None = None, link_3d: bool = False, **kw) -> np.ndarray:
    """Instances for a (Z, Y, X) stack: ids unique over the volume; linked across z when link_3d."""
    per_slice = np.zeros(prob.shape, np.uint32)
    offset = 0
    for z in range(prob.shape[0]):
        lab = instances_2d(prob[z], None if heat is None else heat[z], **kw)
        per_slice[z] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    if link_3d:
        return link_slices(per_slice)
    return per_slice
