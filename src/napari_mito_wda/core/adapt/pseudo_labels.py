"""Instance-aware pseudo-labels (IPL) for one 2D target slice at working resolution.

See shared/docs/method.md ("Instance-aware pseudo-labels" and "Lessons measured here"). Labels are
uint8: 0 = background, 1 = mitochondrion, 255 = ignored by the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..training.targets import instance_centres

IGNORE = 255
_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity, as targets.instance_centres


@dataclass
class IPLResult:
    label: np.ndarray  # (H, W) uint8 in {0, 1, 255}
    centres: np.ndarray  # (M, 2) float (y, x): centroids of the pseudo-instances = detection targets
    n_selected: int  # n_clicked + n_from_peaks + n_click_blobs
    n_clicked: int  # confident components that contain a click
    n_from_peaks: int  # further confident components that contain a kept detection peak
    n_click_blobs: int  # clicks on no confident component, labelled with a blob
    kept_peaks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (K, 2) (y, x)
    n_confident: int = 0  # further confident components taken whole (select_confident)


def pixel_confidence_pseudo_labels(prob: np.ndarray, t_s: float = 0.9) -> np.ndarray:
    """Plain per-pixel baseline (ablation): 1 where p > t_s, 0 where p < 1 - t_s, else 255."""
    prob = np.asarray(prob)
    label = np.full(prob.shape, IGNORE, dtype=np.uint8)
    label[prob < 1.0 - t_s] = 0
    label[prob > t_s] = 1
    return label


def ratio_schedule(stage: int, round: int) -> float:
    """Fraction of the budget anchor N admitted from detection peaks: stage 1 (rounds 0..4) 0.15 r,
    stage 2 (rounds 1..2) 0.35 r; capped at 1.0 so later rounds never exceed the anchor."""
    if round < 0:
        raise ValueError(f"round must be >= 0, got {round}")
    if stage == 1:
        return min(0.15 * round, 1.0)
    if stage == 2:
        return min(0.35 * round, 1.0)
    raise ValueError(f"stage must be 1 or 2, got {stage}")


def budget_anchor(
    n_clicks_on_slice: int, click_fraction: float | None = None, heat_count: int | None = None
) -> int:
    """The count N behind the ratio x N peak budget, from something self-training cannot inflate.

    Measured here: the count from heatmap mass grows once the heatmap is trained on pseudo-instances
    (1,896 -> 3,534 against 1,527 real objects), so a budget re-estimated each round admits ever more
    false instances. Hence, in order of preference:
    1. the user's clicks: if they clicked a known fraction f of the instances of each slice (the
       benchmark protocol: 15%), N = round(n_clicks / f); this depends only on the user's input;
    2. otherwise (fraction unknown, or no clicks on this slice) heat_count: a count estimated ONCE from
       the source (or round-0) model heatmap, which the caller must freeze and pass unchanged every round;
    3. otherwise the clicks alone (budget grows only with user input; 0 in UDA mode without heat_count).
    Never below the number of clicks on the slice.
    """
    n = int(n_clicks_on_slice)
    if n < 0:
        raise ValueError("n_clicks_on_slice must be >= 0")
    if click_fraction is not None:
        if not 0 < click_fraction <= 1:
            raise ValueError(f"click_fraction must be in (0, 1], got {click_fraction}")
        if n > 0:
            return max(n, int(math.floor(n / click_fraction + 0.5)))
    if heat_count is not None:
        return max(n, int(heat_count))
    return n


def _local_peaks(heat: np.ndarray, peak_min: float) -> tuple[np.ndarray, np.ndarray]:
    """3x3 non-maximum suppression; one peak per plateau. Returns ((K, 2) int y, x; (K,) values)."""
    is_max = (heat == ndi.maximum_filter(heat, size=3, mode="constant", cval=-np.inf)) & (heat >= peak_min)
    groups, n = ndi.label(is_max, structure=_EIGHT)
    if n == 0:
        return np.zeros((0, 2), dtype=int), np.zeros(0, dtype=heat.dtype)
    # First pixel (raster order) of each plateau: deterministic, and on the plateau itself.
    flat = groups.ravel()
    order = np.flatnonzero(flat)
    _, first = np.unique(flat[order], return_index=True)
    pix = order[first]
    yx = np.stack(np.unravel_index(pix, heat.shape), axis=1)
    return yx, heat.ravel()[pix]


def _click_pixels(points_yx: np.ndarray, shape) -> np.ndarray:
    """(K, 2) int pixels of (y, x) points, rounded half up and clamped to the slice (clicks scaled to
    working resolution may land half a pixel outside)."""
    pts = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    return np.clip(np.floor(pts + 0.5).astype(int), 0, np.array(shape) - 1)


def _near_pixels(shape, pix: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within `radius` of any of the (K, 2) integer pixel positions (none when K = 0)."""
    if not len(pix):
        return np.zeros(shape, dtype=bool)
    seeds = np.ones(shape, dtype=bool)
    seeds[pix[:, 0], pix[:, 1]] = False
    return ndi.distance_transform_edt(seeds) <= radius


def _ellipse(shape, cy, cx, ry, rx) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def instance_aware_pseudo_labels(
    prob: np.ndarray,
    heat: np.ndarray,
    clicks_yx: np.ndarray | None,
    ratio: float,
    count: int,
    t_s: float = 0.9,
    min_size: int = 4,
    peak_min: float = 0.05,
    blob_radius: tuple[float, float] = (15, 18),
    ignore_ring: int = 6,
    bg_from_heat: bool = True,
    heat_bg_thresh: float = 0.05,
    click_exclusion_radius: float | None = None,
    peaks_on_components_only: bool = False,
    exclude: np.ndarray | None = None,
    select_confident: bool = False,
) -> IPLResult:
    """IPL of one slice from mito probability `prob` and centre heatmap `heat` (both (H, W), peak 1).

    clicks_yx: (k, 2) clicks on this slice at the same resolution (None/empty: UDA mode).
    count: the budget anchor N (see budget_anchor); ceil(ratio x N) detection peaks are admitted.
    peak_min: smallest heat value counted as a peak (the weak source heatmap peaks at ~0.05 at true
    centres, so this is low; ranking and the budget do the selection).
    Background (0) = p < 1 - t_s and, with bg_from_heat, also heat < heat_bg_thresh and farther than
    click_exclusion_radius (default: max(blob_radius) + ignore_ring) from every click: the uncorrected
    segmentation alone put 34-42% of true mito pixels in the background (method.md lessons).
    peaks_on_components_only: rank only peaks lying on an unclicked confident component, so the budget is
    not spent on peaks that cannot select anything (default False: the authors' ranking over all peaks).
    exclude: (H, W) bool, pixels no peak may select from (negative clicks' objects: negatives.py), so the
    budget goes to the next peaks instead.
    select_confident: every confident component is selected, not only clicked or peaked ones (for a
    probability that several views agree on: cross_views.py); none that touches `exclude`.
    """
    prob = np.asarray(prob, dtype=np.float32)
    heat = np.asarray(heat, dtype=np.float32)
    if prob.ndim != 2 or prob.shape != heat.shape:
        raise ValueError(f"prob {prob.shape} and heat {heat.shape} must be the same 2D shape")
    shape = prob.shape
    cpix = _click_pixels(np.zeros((0, 2)) if clicks_yx is None else clicks_yx, shape)

    # Confident-mito components, tiny ones dropped (they stay ignored, not background).
    comps, n = ndi.label(prob > t_s, structure=_EIGHT)
    if n:
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        comps[sizes[comps] < min_size] = 0
    comp_ids = comps > 0

    at_click = comps[cpix[:, 0], cpix[:, 1]] if len(cpix) else np.zeros(0, dtype=int)
    clicked = set(int(c) for c in at_click if c > 0)
    missed = cpix[at_click == 0]

    budget = max(0, math.ceil(ratio * count - 1e-9))  # 1e-9: (0.1 * 3) * 10 is 3.0000000000000004
    # Peaks outside clicked components, best first; the budget grows with the round (ratio).
    peaks, values = _local_peaks(heat, peak_min)
    on = comps[peaks[:, 0], peaks[:, 1]] if len(peaks) else np.zeros(0, dtype=int)
    cand = np.array([c not in clicked for c in on], dtype=bool)
    if peaks_on_components_only:
        cand &= on > 0
    if exclude is not None and len(peaks):
        cand &= ~exclude[peaks[:, 0], peaks[:, 1]]
    peaks, values, on = peaks[cand], values[cand], on[cand]
    keep = np.argsort(-values, kind="stable")[:budget]
    kept_peaks = peaks[keep].astype(np.float64)
    from_peaks = set(int(c) for c in on[keep] if c > 0) - clicked
    selected = clicked | from_peaks
    confident: set[int] = set()
    if select_confident:
        confident = set(np.unique(comps[comp_ids]).tolist()) - selected
        if exclude is not None:
            confident -= set(np.unique(comps[exclude & comp_ids]).tolist())
        selected = selected | confident

    label = np.full(shape, IGNORE, dtype=np.uint8)
    background = prob < 1.0 - t_s
    if bg_from_heat:
        background &= heat < heat_bg_thresh
        radius = max(blob_radius) + ignore_ring if click_exclusion_radius is None else click_exclusion_radius
        background &= ~_near_pixels(shape, cpix, radius)
    label[background] = 0

    # A missed click: the segmentation did not see that object, so paint an elliptical blob as mito and
    # ignore a ring around it (the object's true extent is unknown), overriding background only.
    ry, rx = blob_radius
    blobs = np.zeros(shape, dtype=bool)
    ring = np.zeros(shape, dtype=bool)
    for cy, cx in missed:
        blobs |= _ellipse(shape, cy, cx, ry, rx)
        ring |= _ellipse(shape, cy, cx, ry + ignore_ring, rx + ignore_ring)
    label[ring & (label == 0)] = IGNORE

    if selected:
        label[np.isin(comps, sorted(selected)) & comp_ids] = 1
    label[blobs] = 1

    return IPLResult(
        label=label,
        centres=instance_centres(label == 1, min_size=min_size).astype(np.float64),
        n_selected=len(clicked) + len(from_peaks) + len(missed) + len(confident),
        n_clicked=len(clicked),
        n_from_peaks=len(from_peaks),
        n_click_blobs=len(missed),
        kept_peaks=kept_peaks,
        n_confident=len(confident),
    )


def spare_background_near(label: np.ndarray, clicks_yx: np.ndarray, radius: float) -> np.ndarray:
    """Background pixels within `radius` of any of the given (y, x) points become ignored (in place).

    For clicks on neighbouring slices: the clicked mitochondrion most likely continues at the same
    place, even where the model does not see it there, so it must not be taught as background.
    """
    label[(label == 0) & _near_pixels(label.shape, _click_pixels(clicks_yx, label.shape), radius)] = IGNORE
    return label
