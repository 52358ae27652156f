"""The model's view of the labelled target slices at working resolution, and the starting model's
view that the source veto consults.
"""

from __future__ import annotations

import copy

import numpy as np

from ..engine.device import DeviceInfo
from ..engine.inference import predict_working


def predict_slices(model, images: list[np.ndarray], zs: list[int], dev: DeviceInfo):
    """(probability, centre heatmap) of the working-resolution slices `images[z]` for z in zs, (k, h, w)."""
    model.eval()
    probs, heats = [], []
    for z in zs:
        logit, heat = predict_working(model, images[z], dev)
        probs.append(1.0 / (1.0 + np.exp(-logit)))
        heats.append(heat)
    return np.stack(probs).astype(np.float32), np.stack(heats).astype(np.float32)


class StartingProbability(dict):
    """The starting model's probability by slice, for the source veto (see AdaptSettings.source_veto).

    Slices that clicks added mid-run bring in are predicted by a frozen copy of the starting model: the
    model being trained has moved on (AdaBN, training) and would veto what it now believes instead.
    """

    def __init__(self, model, images: list[np.ndarray], zs: list[int], prob: np.ndarray, dev: DeviceInfo,
                 later_slices: bool = True):
        super().__init__(zip(zs, prob))
        self._frozen = copy.deepcopy(model) if later_slices else None
        self._images, self._dev = images, dev

    def cover(self, zs: list[int]) -> None:
        """Predict the slices of `zs` not held yet."""
        new = [z for z in zs if z not in self]
        if new:
            if self._frozen is None:
                raise RuntimeError("made without later_slices: cannot predict new slices")
            self.update(zip(new, predict_slices(self._frozen, self._images, new, self._dev)[0]))
