"""Corrections as labels: what the user changed in a predicted instances map, as exact training labels.

The user proofreads the instances the model predicted (paint, erase, split, merge). Comparing the
prediction with the edited map, slice by slice and by pixel sets (ids do not matter):

- an edited object whose pixels are not exactly those of one predicted object (painted, grown, shrunk,
  split, merged, new) is a mitochondrion with its edited mask;
- pixels that were an object and are now 0 (erased) are background;
- an unchanged object is no correction: it is only the model's prediction;
- an ignore band of `band` image pixels along every border of a corrected object or erased region
  (both sides), so the border's exact position is not forced; the rest of the slice is left unknown.

Counted: the corrected mitochondria plus the predicted objects erased whole (a partial erase is part of
the change of the object that remains). In each adaptation round (rounds.py) the corrected region of a
slice overrides the pseudo-labels (the user's masks win over clicks and negative clicks), its slices are
labelled, and its mitochondria are detection targets that no budget can drop.

`keep_corrections` writes a new prediction into an edited map without losing the corrections: the
corrected pixels stay as the user left them, and the reference moves so that the next diff finds the
same corrections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .pseudo_labels import IGNORE

DEFAULT_BAND = 4  # image px: 2 working px at the shipped model's pixel size (downsample 2)


@dataclass
class SliceDiff:
    """What changed on one slice: the corrected objects' ids in the edited map and the erased pixels."""

    mito_ids: np.ndarray   # edited ids that are corrections (their masks are mitochondria)
    erased: np.ndarray     # (H, W) bool: predicted object -> 0
    n_erased: int          # predicted objects erased whole
    footprint: np.ndarray  # (H, W) bool: corrected objects' masks | erased pixels

    @property
    def empty(self) -> bool:
        return not self.footprint.any()


@dataclass
class Corrections:
    """Exact labels from the user's edits, on the corrected slices only (image resolution).

    labels[z]: uint8, 1 = mitochondrion, 0 = background, 255 = ignored (the bands, and where nothing was
    corrected); region[z]: bool, where the labels decide (corrected objects and their bands).
    """

    shape: tuple[int, ...]
    labels: dict[int, np.ndarray] = field(default_factory=dict)
    region: dict[int, np.ndarray] = field(default_factory=dict)
    n_mito: int = 0
    n_erased: int = 0

    @property
    def n_objects(self) -> int:
        return self.n_mito + self.n_erased

    @property
    def slices(self) -> list[int]:
        return sorted(self.labels)

    def describe(self) -> str:
        if not self.n_objects:
            return "no corrected objects"
        z = len(self.labels)
        return (f"{self.n_objects} corrected object{'s' if self.n_objects != 1 else ''} ({self.n_mito} mitochondria, "
                f"{self.n_erased} erased) on {z} slice{'s' if z != 1 else ''}")


def _check_maps(predicted, edited) -> tuple[np.ndarray, np.ndarray]:
    p, e = np.asarray(predicted), np.asarray(edited)
    if p.shape != e.shape:
        raise ValueError(f"the edited labels {e.shape} and the prediction {p.shape} differ in shape; "
                         "give the prediction the edits were made on")
    for name, a in (("prediction", p), ("edited labels", e)):
        if a.dtype.kind not in "iu":
            raise ValueError(f"the {name} must hold integer instance ids, got {a.dtype}")
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise ValueError(f"the {name} holds negative ids; instance ids are 0 (background) or above")
    return p, e


def _pairs(a: np.ndarray, b: np.ndarray):
    """For each id of `a` (> 0): whether all its pixels carry one value of `b`, that value, and its size."""
    on = a > 0
    code = (a[on].astype(np.uint64) << np.uint64(32)) | b[on].astype(np.uint64)
    uc, cnt = np.unique(code, return_counts=True)
    ua, first, npairs = np.unique(uc >> np.uint64(32), return_index=True, return_counts=True)
    sizes = np.add.reduceat(cnt, first) if len(first) else cnt
    return ua, npairs == 1, (uc & np.uint64(0xFFFFFFFF))[first], sizes


def slice_diff(predicted: np.ndarray, edited: np.ndarray) -> SliceDiff:
    """The corrections of one 2D slice (module docstring's rules)."""
    p, e = _check_maps(predicted, edited)
    if p.max(initial=0) >= 2**32 or e.max(initial=0) >= 2**32:
        raise ValueError("instance ids must be below 2**32")
    none = np.zeros(p.shape, bool)
    if np.array_equal(p, e):
        return SliceDiff(np.zeros(0, np.int64), none, 0, none)
    pid, psizes = np.unique(p[p > 0], return_counts=True)
    eid, single, pv, esizes = _pairs(e, p)
    size_of_p = np.zeros(len(eid), np.int64)
    k = np.searchsorted(pid, pv)
    ok = (pv > 0) & (k < len(pid))
    if ok.any():
        size_of_p[ok] = psizes[k[ok]]
    unchanged = single & ok & (size_of_p == esizes)
    mito_ids = eid[~unchanged].astype(np.int64)
    erased = (p > 0) & (e == 0)
    pid2, single_p, ev, _ = _pairs(p, e)
    n_erased = int((single_p & (ev == 0)).sum()) if len(pid2) else 0
    footprint = erased | (np.isin(e, mito_ids) if len(mito_ids) else none)
    return SliceDiff(mito_ids, erased, n_erased, footprint)


def _as_stack(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a


def slice_labels(edited: np.ndarray, diff: SliceDiff, band: int = DEFAULT_BAND) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 {0, 1, 255}, region bool) of one slice from its diff."""
    e = np.asarray(edited)
    things = np.zeros(e.shape, np.int64)  # corrected objects by id, erased region as one more id
    if len(diff.mito_ids):
        things = np.where(np.isin(e, diff.mito_ids), e.astype(np.int64), 0)
    things[diff.erased] = things.max(initial=0) + 1
    border = np.zeros(e.shape, bool)  # pixels whose 4-neighbour belongs to another thing (or to nothing)
    for axis in (0, 1):
        step = np.diff(things, axis=axis) != 0
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        border[tuple(lo)] |= step
        border[tuple(hi)] |= step
    in_band = (ndi.distance_transform_edt(~border) < band) if band > 0 and border.any() else border
    region = diff.footprint | in_band
    labels = np.full(e.shape, IGNORE, np.uint8)
    labels[diff.footprint & ~diff.erased & ~in_band] = 1
    labels[diff.erased & ~in_band] = 0
    return labels, region


def corrections_from_edit(predicted: np.ndarray, edited: np.ndarray, band: int = DEFAULT_BAND) -> Corrections:
    """The user's corrections of a (Z, Y, X) or (Y, X) prediction: `edited` is the same map after proofreading.

    band: width in image pixels of the ignored band along the corrected objects' borders (0 = none).
    """
    p, e = _check_maps(predicted, edited)
    if band < 0:
        raise ValueError(f"band must be 0 or more pixels, got {band}")
    p3, e3 = _as_stack(p), _as_stack(e)
    out = Corrections(shape=tuple(p3.shape))
    for z in np.flatnonzero((p3 != e3).reshape(len(p3), -1).any(axis=1)):
        d = slice_diff(p3[z], e3[z])
        if d.empty:
            continue
        out.labels[int(z)], out.region[int(z)] = slice_labels(e3[z], d, band)
        out.n_mito += len(d.mito_ids)
        out.n_erased += d.n_erased
    return out


def check_corrections(corr: Corrections | None, shape: tuple[int, ...]) -> Corrections | None:
    """`corr` when it fits a (Z, Y, X) image; a clear error otherwise."""
    if corr is None or not corr.labels:
        return None
    if tuple(corr.shape) != tuple(shape):
        raise ValueError(f"the corrections were made on labels of shape {tuple(corr.shape)}, "
                         f"not the image's {tuple(shape)}")
    return corr


def working_corrections(corr: Corrections | None, to_working) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{slice: (labels, region)} on the working grid; `to_working(float map)` resamples as the images.

    A working pixel is mitochondrion (background) only if every image pixel it covers is; mixed pixels
    are ignored; the region is every working pixel that touches it.
    """
    out = {}
    for z in ([] if corr is None else corr.slices):
        lab, reg = corr.labels[z], corr.region[z]
        mito = to_working((lab == 1).astype(np.float32))
        bg = to_working(((lab == 0) & reg).astype(np.float32))
        region = to_working(reg.astype(np.float32)) > 1e-3
        w = np.full(region.shape, IGNORE, np.uint8)
        w[mito > 0.999] = 1
        w[bg > 0.999] = 0
        out[z] = (w, region)
    return out


def apply_corrections(label: np.ndarray, labels_w: np.ndarray, region_w: np.ndarray) -> np.ndarray:
    """The corrected region overrides a {0, 1, 255} pseudo-label map (in place)."""
    label[region_w] = labels_w[region_w]
    return label


def keep_corrections(reference: np.ndarray, edited: np.ndarray, new: np.ndarray,
                     first_id: int) -> tuple[np.ndarray, np.ndarray]:
    """A new prediction `new` of one slice written over the user's edits of `reference` (what was shown).

    Returns (merged, new reference): merged is `new` with the corrected pixels as the user left them
    (corrected objects renumbered from `first_id`, erased pixels 0); the new reference is `new` with
    the old reference's objects in that footprint (renumbered after them), so
    slice_diff(new reference, merged) finds the same corrections (the predicted objects that lay wholly
    in the footprint are the changed or erased ones; those of `new` there are dropped or cut: the
    user's masks win).
    """
    d = slice_diff(reference, edited)
    if d.empty:
        return new.copy(), new.copy()
    fp = d.footprint
    dtype = np.result_type(new.dtype, np.uint32)

    def renumber(a: np.ndarray, start: int) -> tuple[np.ndarray, int]:
        ids, inv = np.unique(a[fp], return_inverse=True)
        vals = np.where(ids > 0, start + np.cumsum(ids > 0) - 1, 0)
        out = new.astype(dtype, copy=True)
        out[fp] = vals[inv.ravel()]
        return out, start + int((ids > 0).sum())

    merged, nxt = renumber(edited, int(first_id))
    ref, _ = renumber(reference, nxt)
    return merged, ref
