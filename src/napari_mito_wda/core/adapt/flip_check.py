"""Flip agreement: a label-free quality estimate that needs no clicks.

The model predicts the labelled slices twice, as they are and flipped in y and x (flipped back after), and
the estimate is the Dice between the two foregrounds. A model that has learnt what a mitochondrion looks
like in this data answers the same either way; one that guesses from position or texture it never saw
changes its answer. Held-out clicks (heldout.py) say whether the objects the user marked are found, and
with 2-10 of them that is a coarse number (1.00 in most runs); the flip agreement grades every predicted
object, and works without clicks (UDA).

Measured before it was adopted (Lucchi 32-slice crop and SBEM 20-slice crop; source, AdaBN, one adapted
model each): flip agreement 0.869 / 0.877 / 0.899 at Lucchi test Dice 0.745 / 0.783 / 0.803, and 0.802 /
0.794 / 0.824 at SBEM Dice 0.618 / 0.589 / 0.654 (docs/journal.md, session 20).
"""

from __future__ import annotations

import numpy as np

from ..engine.device import DeviceInfo
from .predict import predict_slices


def mirrored_slices(model, images: list[np.ndarray], zs: list[int], dev: DeviceInfo) -> np.ndarray:
    """The probability of the working slices images[z] (z in zs) flipped in y and x, flipped back, (k, h, w)."""
    flipped = {z: np.ascontiguousarray(images[z][::-1, ::-1]) for z in zs}
    prob, _ = predict_slices(model, flipped, zs, dev)
    return np.ascontiguousarray(prob[:, ::-1, ::-1])


def flip_agreement(prob: np.ndarray, mirrored: np.ndarray, threshold: float = 0.5) -> float | None:
    """Dice of the foregrounds (p > threshold) of a prediction and of its mirrored twin; None where both
    are empty (nothing predicted: nothing to agree on)."""
    prob, mirrored = np.asarray(prob), np.asarray(mirrored)
    if prob.shape != mirrored.shape:
        raise ValueError(f"prediction {prob.shape} and mirrored prediction {mirrored.shape} differ in shape")
    a, b = prob > threshold, mirrored > threshold
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else round(2.0 * float((a & b).sum()) / total, 4)


def model_flip_agreement(model, images: list[np.ndarray], zs: list[int], dev: DeviceInfo,
                         prob: np.ndarray) -> float | None:
    """The flip agreement of `model` on slices zs, given its prediction `prob` of them (one more pass)."""
    return flip_agreement(prob, mirrored_slices(model, images, zs, dev))
