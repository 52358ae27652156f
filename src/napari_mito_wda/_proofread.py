"""The user's proofreading of an instances layer: followed, and never overwritten by a later run.

Prediction and the adaptation's live previews both write the image's instances layer; whoever painted
on it keeps their edits under a new name before the plugin writes there again.
"""

from __future__ import annotations

import weakref
from functools import partial

from ._util import _unwrap, layer_named

EDITED_KEY = "mito_wda_edited"  # layer.metadata flag: the user painted on this instances layer
# Instances layers whose paint events are followed (connected once); weak: ids of closed layers are reused.
_WATCHED: weakref.WeakSet = weakref.WeakSet()


def _mark_edited(layer, *_args) -> None:
    layer.metadata[EDITED_KEY] = True


def watch_edits(layer) -> None:
    """Follow napari's paint/fill/erase on an instances layer the plugin writes to."""
    original = _unwrap(layer)
    if original not in _WATCHED:
        _WATCHED.add(original)
        layer.events.paint.connect(partial(_mark_edited, layer))


def keep_user_edits(viewer, name: str) -> None:
    """Before a run overwrites the layer `name`: if the user proofread it, keep it under a new name."""
    from napari.utils.notifications import show_info

    layer = layer_named(viewer, name)
    if layer is None or not layer.metadata.get(EDITED_KEY):
        return
    layer.name = f"{name} (proofread)"  # napari appends a number if that name is taken
    layer.metadata[EDITED_KEY] = False
    show_info(f"Mitochondria (WDA): your edits were kept in the layer {layer.name!r}.")
