"""Negative clicks ("not a mitochondrion") and the pseudo-label rules they impose on one slice.

On a new domain the source model's first error is false objects (vesicle clusters, membranes). A
negative click is given like a positive one (points.py: voxel (z, y, x), napari Points CSV) and acts
at working resolution on every labelled slice of a round:

- on its own slice, the predicted object under it (the 8-connected component of p > 0.5 that holds
  it) becomes background, 0 (not ignored: the user has seen it and says what it is); where the model
  predicts nothing at the click, a disk of `radius` around it becomes background;
  with the xz / yz views (cross_views.py) the object is looked for in the blend and in the xy prediction the
  user saw (`rounds.build_round(seen_prob=)`), whichever holds it;
- on slices within `reach_z` (the same reach as a positive click, AdaptSettings.click_reach_z), the
  object under the same (y, x) becomes background too: a false object goes on over nearby slices as a
  mitochondrion does. No disk there: off its slice the click says nothing about empty places;
- such objects are never pseudo-instances (detection peaks on them select nothing, their centres give
  no detection target) and the detector is taught "no centre here" on them;
- the positive click wins: an object that also holds a positive click of that slice stays a
  mitochondrion. Clicking both on one object means a mitochondrion touching something false, and
  teaching the whole object background would undo the positive click; refusing is no option either,
  since clicks arrive while the adaptation runs, where an error could not be shown.

What the user is shown keeps their word as well (`drop_negated`): an instance under a negative click is
left out of the shown instances (previews, predictions, the exported TIFF) by rule, whatever the model
learnt, under the same "the positive click wins" rule. Learning alone removed ~71-75% of the clicked false
objects on the benchmark at the product's settings, and every setting that removed more cost Dice
(docs/journal.md, sessions 23-24); the rule is reported apart from that learnt removal.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .points import validate_points
from .pseudo_labels import _click_pixels, _near_pixels

_EIGHT = np.ones((3, 3), dtype=bool)


def negative_region(prob: np.ndarray, negatives: dict[int, np.ndarray], z: int, reach_z: int, radius: float,
                    positives_yx: np.ndarray | None = None, threshold: float = 0.5) -> np.ndarray:
    """Pixels of slice z (H, W) that the negative clicks make background (module docstring's rules).

    negatives: {slice: (k, 2) (y, x)} at the resolution of `prob`; positives_yx: this slice's positive
    clicks (their objects are spared).
    """
    prob = np.asarray(prob)
    here = _click_pixels(negatives.get(z, np.zeros((0, 2))), prob.shape)
    near = [c for dz, c in negatives.items() if 0 < abs(dz - z) <= reach_z and len(c)]
    near_pix = _click_pixels(np.concatenate(near), prob.shape) if near else np.zeros((0, 2), int)
    if not len(here) and not len(near_pix):
        return np.zeros(prob.shape, dtype=bool)
    comps, _ = ndi.label(prob > threshold, structure=_EIGHT)
    at_here = comps[here[:, 0], here[:, 1]] if len(here) else np.zeros(0, int)
    ids = set(at_here.tolist()) | set(comps[near_pix[:, 0], near_pix[:, 1]].tolist())
    pos = _click_pixels(np.zeros((0, 2)) if positives_yx is None else positives_yx, prob.shape)
    spared = set(comps[pos[:, 0], pos[:, 1]].tolist()) if len(pos) else set()
    ids -= spared | {0}
    mask = np.isin(comps, sorted(ids)) if ids else np.zeros(prob.shape, dtype=bool)
    return mask | _near_pixels(prob.shape, here[at_here == 0], radius)


def apply_negatives(label: np.ndarray, region: np.ndarray, positives_yx: np.ndarray | None = None) -> np.ndarray:
    """Make `region` background in a {0, 1, 255} label map (in place), sparing pseudo-instances that hold
    a positive click (a positive click's blob may reach into a negative disk: the positive wins)."""
    keep = np.zeros(label.shape, dtype=bool)
    pos = _click_pixels(np.zeros((0, 2)) if positives_yx is None else positives_yx, label.shape)
    if len(pos):
        comps, _ = ndi.label(label == 1, structure=_EIGHT)
        ids = set(comps[pos[:, 0], pos[:, 1]].tolist()) - {0}
        if ids:
            keep = np.isin(comps, sorted(ids))
    label[region & ~keep] = 0
    return label


def drop_negated(labels: np.ndarray, negatives, positives=None, linked: bool = False,
                 also: np.ndarray | None = None) -> tuple[int, int, list[int]]:
    """Leave the instances under negative clicks out of an instance map, in place (module docstring).

    labels: (Z, Y, X) or (Y, X) instance ids; negatives / positives: clicks as `validate_points` takes them,
    in the map's voxels. Unlinked (ids of one slice only mean something there): the id under a negative
    click goes on the click's slice, unless a positive click of that slice lies on the same id. linked (ids
    are 3D objects, `link_slices`): the whole object goes, unless a positive click lies anywhere on it.
    also: a map of the same shape whose pixels are zeroed with the dropped ones (a layer's reference copy).
    Returns (objects dropped, objects spared by a positive click, slices changed).
    """
    lab = labels[None] if labels.ndim == 2 else labels
    other = None if also is None else (also[None] if also.ndim == 2 else also)
    neg, _ = validate_points(negatives, lab.shape)
    pos, _ = validate_points(positives, lab.shape)
    if not len(neg):
        return 0, 0, []

    def ids_at(pts: np.ndarray) -> list[tuple[int, int]]:
        v = np.floor(pts + 0.5).astype(int)
        return [(int(z), int(lab[z, y, x])) for z, y, x in v]

    def key(z: int, i: int):
        return i if linked else (z, i)

    positive = {key(z, i) for z, i in ids_at(pos) if i}
    doomed: dict = {}
    spared: set = set()
    for z, i in ids_at(neg):
        if not i:
            continue
        if key(z, i) in positive:
            spared.add(key(z, i))
        else:
            doomed.setdefault(key(z, i), (z, i))
    changed: set[int] = set()

    def zero(z: int, hit: np.ndarray) -> None:
        lab[z][hit] = 0
        if other is not None:
            other[z][hit] = 0
        changed.add(z)

    if linked and doomed:
        ids = np.array(sorted(doomed), dtype=lab.dtype)
        for z in range(len(lab)):
            hit = np.isin(lab[z], ids)
            if hit.any():
                zero(z, hit)
    else:
        for z, i in doomed.values():
            zero(z, lab[z] == i)
    return len(doomed), len(spared), sorted(changed)
