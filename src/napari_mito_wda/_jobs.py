"""The dock widgets' background jobs: one per image layer at a time, and none outliving its widget.

* Two dock widgets (or a widget and a script driving another one) may point at the same image. A second
  adaptation or prediction there would fight the first over the image's instances layer, so every
  widget consults one registry of busy layers and refuses with a message.
* Closing napari deletes the widget (its Qt objects) while its worker may still be running. Its late
  reports are then dropped instead of reaching deleted widgets (the runner, ``_job_runner``, stops it).
* A job that fails with a RuntimeError still reports it (superqt would otherwise drop it silently).

No napari import here: the layers and workers are only used through their attributes and signals.
"""

from __future__ import annotations

from functools import partial, wraps

from ._util import _unwrap

_BUSY: dict = {}  # layer key -> (what runs on it, token of that run)
_VERBS = {"Adaptation": "adapted", "Prediction": "predicted"}


def _key(layer):
    layer = _unwrap(layer)
    return getattr(layer, "unique_id", None) or id(layer)


def busy_message(layer) -> str | None:
    """Why `layer` cannot be worked on now (another run is busy with it), or None."""
    held = _BUSY.get(_key(layer))
    if held is None:
        return None
    return (f"{layer.name!r} is already being {_VERBS.get(held[0], 'processed')} by another run; "
            "stop it first (its Stop button), then try again.")


def hold(layer, what: str, worker) -> None:
    """Mark `layer` busy until `worker` has finished.

    Connect this before the widget's own `finished` handler: that one may start the next job on the
    same layer (the whole-image prediction after an adaptation).
    """
    key, token = _key(layer), object()
    _BUSY[key] = (what, token)
    worker.finished.connect(partial(_release, key, token))


def _release(key, token, *_args) -> None:
    if _BUSY.get(key, (None, None))[1] is token:
        del _BUSY[key]


class JobFailed(Exception):
    """A RuntimeError of a job (most torch errors, CUDA out of memory), under another type: see reported()."""


def reported(gen_func):
    """`gen_func` with its RuntimeErrors raised as JobFailed (same message).

    superqt takes a RuntimeError from a generator for a deleted worker and then emits neither `errored`
    nor `finished`: the widget would stay busy for good, without a message.
    """

    @wraps(gen_func)
    def run(*args, **kwargs):
        try:
            return (yield from gen_func(*args, **kwargs))
        except RuntimeError as exc:
            raise JobFailed(str(exc)) from exc

    return run


def _deleted(widget) -> bool:
    try:
        widget.objectName()  # any call on a deleted Qt object raises
    except RuntimeError:
        return True
    return False


def alive_only(widget, slot):
    """`slot`, skipped once `widget` is deleted (napari closed while the worker still reports)."""

    def call(*args):
        if not _deleted(widget):
            slot(*args)

    return call
