"""The user's proofreading of an instances layer: followed, used as corrections, never overwritten.

For each instances layer the plugin writes (a prediction, the adaptation's live previews) it keeps a
copy of what it wrote, the reference. What the user changed since then (painted, erased, split, merged;
core/adapt/corrections.py) are their corrections: counted in the adapt section, passed to the
adaptation as exact labels, and kept when the plugin writes there again: the new masks go around the
corrected objects, in the same layer, and the user is told. Of the two ways not to lose them (this, or
moving the edited layer aside and writing a fresh one), this one is the less surprising while an
adaptation runs: the live previews would otherwise fill a new layer on top of the one being corrected,
and corrections made there would be overwritten by the next preview. "Forget corrections" makes the
layer's current state the reference (nothing is a correction any more).

A layer the plugin did not write (opened from a file) that the user painted, and edits that cannot be
merged (a prediction of another shape, a lazy layer replaced by a chunked prediction), are moved aside
under a new name instead.
"""

from __future__ import annotations

import weakref
from functools import partial

import numpy as np

from ._util import _unwrap, layer_named

EDITED_KEY = "mito_wda_edited"  # layer.metadata flag: the user painted on this instances layer
# Instances layers whose paint events are followed (connected once); weak: ids of closed layers are reused.
_WATCHED: weakref.WeakSet = weakref.WeakSet()
# Layer -> (Z, Y, X) uint32 copy of what the plugin last wrote there (the corrections are the difference).
_REFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _mark_edited(layer, *_args) -> None:
    layer.metadata[EDITED_KEY] = True


def watch_edits(layer) -> None:
    """Follow napari's paint/fill/erase on an instances layer the plugin writes to."""
    original = _unwrap(layer)
    if original not in _WATCHED:
        _WATCHED.add(original)
        layer.events.paint.connect(partial(_mark_edited, layer))


def _stack(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a


def _in_memory(layer) -> bool:
    return isinstance(layer.data, np.ndarray)


def reference(layer) -> np.ndarray | None:
    """What the plugin last wrote into `layer` as (Z, Y, X), when it still fits the layer's data."""
    ref = _REFERENCE.get(_unwrap(layer))
    if ref is None or not _in_memory(layer) or ref.shape != _stack(layer.data).shape:
        return None
    return ref


def track(layer, data=None) -> None:
    """`data` (default: the layer's own) is what the plugin wrote: the corrections are measured from it."""
    if _in_memory(layer):
        _REFERENCE[_unwrap(layer)] = _stack(np.asarray(layer.data if data is None else data)).astype(np.uint32)


def corrections_of(layer):
    """The user's corrections of `layer` (core Corrections), or None when the plugin did not write it."""
    from .core.adapt.corrections import corrections_from_edit

    ref = reference(layer) if layer is not None else None
    return None if ref is None else corrections_from_edit(ref, _stack(np.asarray(layer.data)))


def forget_corrections(layer) -> None:
    """The layer as it is becomes the reference: its corrections are no longer used, nor kept."""
    track(layer)
    layer.metadata[EDITED_KEY] = False


def merge_planes(layer, planes: dict[int, np.ndarray], first_id: int | None = None) -> tuple[dict, int]:
    """New prediction slices {z: (Y, X)} for `layer`, with the user's corrections on those slices kept.

    Returns (the planes to write, how many corrected objects were kept); updates the reference. The kept
    objects are renumbered from `first_id` (default: past the new planes' ids).
    """
    from .core.adapt.corrections import keep_corrections, slice_diff

    ref = reference(layer)
    if ref is None:
        return planes, 0
    data = _stack(np.asarray(layer.data))
    first = first_id or (max(int(p.max(initial=0)) for p in planes.values()) + 1 if planes else 1)
    out, kept = {}, 0
    for z, new in planes.items():
        d = slice_diff(ref[z], data[z])
        if d.empty:
            out[z], ref[z] = new, new
            continue
        out[z], ref[z] = keep_corrections(ref[z], data[z], new, first)
        kept += len(d.mito_ids) + d.n_erased
        first = int(out[z].max()) + 1
    return out, kept


def write_prediction(layer, labels: np.ndarray) -> int:
    """A whole prediction into `layer` (same shape), its corrections kept; returns how many were kept."""
    ref = reference(layer)
    if ref is None or ref.shape != _stack(labels).shape:
        layer.data = labels
        track(layer)
        return 0
    data = _stack(np.asarray(layer.data))
    changed = np.flatnonzero((ref != data).reshape(len(ref), -1).any(axis=1))
    merged, kept = merge_planes(layer, {int(z): _stack(labels)[z] for z in changed}, int(labels.max(initial=0)) + 1)
    top = max([int(labels.max(initial=0))] + [int(p.max(initial=0)) for p in merged.values()])
    out = np.array(labels, dtype=np.uint32 if top > np.iinfo(labels.dtype).max else labels.dtype)
    new_ref = _stack(out).astype(np.uint32)
    for z, plane in merged.items():
        _stack(out)[z] = plane
        new_ref[z] = _REFERENCE[_unwrap(layer)][z]
    layer.data = out
    _REFERENCE[_unwrap(layer)] = new_ref
    return kept


def keep_user_edits(viewer, name: str, shape=None) -> None:
    """Before a run writes the layer `name`: if the user painted on it and their edits cannot be merged as
    corrections (an untracked layer, or a prediction of another `shape`; None = not merged), move it aside."""
    from napari.utils.notifications import show_info

    layer = layer_named(viewer, name)
    if layer is None or not layer.metadata.get(EDITED_KEY):
        return
    ref = reference(layer)
    if ref is not None and shape is not None and ref.shape == (tuple(shape) if len(shape) == 3 else (1, *shape)):
        return  # merged: write_prediction / merge_planes keep the corrected objects in place
    layer.name = f"{name} (proofread)"  # napari appends a number if that name is taken
    layer.metadata[EDITED_KEY] = False
    show_info(f"Mitochondria (WDA): your edits were kept in the layer {layer.name!r}.")
