"""Label-free judgements of a model on the target: the score that picks the model to keep, and
whether the detector finds the user's clicks well enough to select pseudo-instances.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .heldout import click_hits, negatives_spared
from .settings import AdaptSettings


def selection_score(prob: np.ndarray, heat: np.ndarray, clicks: dict[int, np.ndarray], zs: list[int],
                    peak_thresh: float = 0.3, negatives: dict[int, np.ndarray] | None = None) -> float:
    """Label-free model score in [0, 1]: agreement of the two heads and how well the clicks are centred.

    The loop passes the held-out clicks (heldout.ClickSplit) where there are any: scored on the clicks
    it trains on, the score rose where test Dice fell.

    Agreement = fraction of foreground components that hold a detection peak, times the fraction of
    peaks that lie on foreground. Centring = mean over the clicks of (distance to background at the
    click) / (largest such distance in the click's component), 0 off the foreground: a click is a
    centre, so a component that merges it with neighbours or spreads over the background scores low
    (mere coverage rewarded a model that calls everything mitochondria). Without clicks the score is
    the agreement alone. A negative click ("not a mitochondrion") counts as one more click, 1 off the
    foreground and 0 on it: a false object left under it costs as much as a missed positive click.
    """
    hits = comps = peaks_on = peaks = 0
    for k in range(len(zs)):
        fg = prob[k] > 0.5
        lab, n = ndi.label(fg)
        mx = ndi.maximum_filter(heat[k], size=5)
        pk = (heat[k] == mx) & (heat[k] > peak_thresh)
        comps += n
        if n:
            hits += len(np.unique(lab[pk & fg]))
        peaks += int(pk.sum())
        peaks_on += int((pk & fg).sum())
    agree = (hits / comps if comps else 0.0) * (peaks_on / peaks if peaks else 0.0)
    _, centred, n_pos = click_hits(prob, clicks, zs)
    spared, n_neg = negatives_spared(prob, negatives or {}, zs)
    n_clicks = n_pos + n_neg
    return float(agree if n_clicks == 0 else 0.5 * agree + 0.5 * (centred * n_pos + spared) / n_clicks)


def heat_at_clicks(heat: np.ndarray, clicks: dict[int, np.ndarray], zs: list[int], radius: int = 3) -> float | None:
    """Median over the clicks of the detector's largest heat within `radius` working px (None: no clicks)."""
    vals = []
    for k, z in enumerate(zs):
        h, w = heat[k].shape
        for y, x in clicks.get(z, ()):
            yi, xi = int(round(float(y))), int(round(float(x)))
            win = heat[k][max(0, yi - radius): min(h, yi + radius + 1), max(0, xi - radius): min(w, xi + radius + 1)]
            if win.size:
                vals.append(float(win.max()))
    return float(np.median(vals)) if vals else None


def detector_trusted(heat: np.ndarray, clicks: dict[int, np.ndarray], zs: list[int], s: AdaptSettings) -> bool:
    """Whether detection peaks may select pseudo-instances this round (see AdaptSettings.detector_trust)."""
    if not s.detection:
        return False
    at = heat_at_clicks(heat, clicks, zs)
    return at is None or at >= s.detector_trust
