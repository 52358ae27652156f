"""Held-out clicks: a seeded share of the user's clicks that the adaptation never trains on, to pick the
model to keep and to tell the user how good it is (the share of held-out objects it finds). Negative
("not mitochondria") clicks are split the same way: a held-out one must stay background.

The selection used to score each model on the clicks it trained on, so the score rose where test Dice
fell. A held-out click is an object the model was not told about, like the thousands the user did not
click: whether the prediction holds it, centred, estimates how the unclicked objects fare.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage as ndi

MIN_CLICKS = 5  # below this every click trains: one held-out click would cost a fifth of them


def held_out_count(n: int, share: float) -> int:
    """How many of n clicks to hold out: round(share * n), at least 1 from MIN_CLICKS clicks, none below."""
    if share <= 0 or n < MIN_CLICKS:
        return 0
    return min(n - 1, max(1, int(round(share * n))))


def _rank(point: np.ndarray, seed: int) -> int:
    """A seeded pseudo-random rank of a click that depends on nothing but its position."""
    key = f"{seed}:" + ",".join(f"{v:.1f}" for v in point)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class ClickSplit:
    """Splits clicks into training and held-out ones, deterministically (seed) and for good.

    Called again with more clicks (the widget's clicks arrive while it runs), a click keeps the role it
    was given: a click trained on is never held out later, and a held-out one never trains. New clicks
    are held out, in seeded order, until the held-out share is reached again.
    """

    def __init__(self, share: float = 0.2, seed: int = 0):
        if not 0.0 <= share < 1.0:
            raise ValueError(f"the held-out share of the clicks must lie in [0, 1), got {share}")
        self.share, self.seed = share, seed
        self._role: dict[tuple, bool] = {}  # click -> held out

    def split(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(training clicks, held-out clicks) of the (N, 3) clicks, each in the order given."""
        pts = np.asarray(points, np.float64).reshape(-1, 3)
        keys = [tuple(np.round(p, 1)) for p in pts]
        present = set(keys)
        self._role = {k: v for k, v in self._role.items() if k in present}  # deleted clicks free their role
        want = held_out_count(len(present), self.share)
        held = sum(self._role.values())
        for k in sorted((k for k in present if k not in self._role), key=lambda k: _rank(np.array(k), self.seed)):
            self._role[k] = held < want
            held += self._role[k]
        mask = np.array([self._role[k] for k in keys], bool)
        return pts[~mask], pts[mask]


def click_hits(prob: np.ndarray, clicks: dict[int, np.ndarray], zs: list[int]) -> tuple[float, float, int]:
    """(share of clicks inside a predicted object, mean centring, n clicks) on the predicted slices zs.

    Centring: distance to background at the click / the largest such distance in its object (1 = at the
    object's centre, 0 = off the foreground); a click is a centre, so an object merged with neighbours or
    spread over the background scores low.
    """
    hit, centred, n = 0, 0.0, 0
    for k, z in enumerate(zs):
        cz = clicks.get(z, ())
        if not len(cz):
            continue
        fg = prob[k] > 0.5
        lab, n_obj = ndi.label(fg)
        dist = ndi.distance_transform_edt(fg)
        deepest = ndi.maximum(dist, lab, np.arange(1, n_obj + 1)) if n_obj else []
        for y, x in cz:
            yi, xi = min(int(round(y)), fg.shape[0] - 1), min(int(round(x)), fg.shape[1] - 1)
            if lab[yi, xi]:
                hit += 1
                centred += dist[yi, xi] / deepest[lab[yi, xi] - 1]
            n += 1
    return (hit / n if n else 0.0), (centred / n if n else 0.0), n


def negatives_spared(prob: np.ndarray, negatives: dict[int, np.ndarray], zs: list[int]) -> tuple[int, int]:
    """(negative clicks off the predicted foreground, negative clicks) on the predicted slices zs."""
    spared = n = 0
    for k, z in enumerate(zs):
        fg = prob[k] > 0.5
        for y, x in negatives.get(z, ()):
            spared += int(not fg[min(int(round(y)), fg.shape[0] - 1), min(int(round(x)), fg.shape[1] - 1)])
            n += 1
    return spared, n


def heldout_quality(prob: np.ndarray, zs: list[int], held: dict[int, np.ndarray],
                    start_prob: dict[int, np.ndarray] | None = None,
                    held_negatives: dict[int, np.ndarray] | None = None, n_clicks: int | None = None) -> dict:
    """The quality estimate the user sees: the share of held-out clicks the model's prediction holds, and
    of held-out "not mitochondria" clicks it leaves as background.

    start_prob: the starting model's probability by slice, for the same share before adaptation (on the
    held-out clicks of the slices it holds). n_clicks: the clicks in all, for the note when none is held
    out (0: unsupervised, nothing to hold out).
    """
    hit, centred, n = click_hits(prob, held, zs)
    spared, n_neg = negatives_spared(prob, held_negatives or {}, zs)
    negative = {"n_heldout_negative": n_neg, "heldout_negative_spared": round(spared / n_neg, 4) if n_neg else None}
    if not n:
        return {"n_heldout": 0, "heldout_hit_rate": None, "heldout_centring": None, "start_hit_rate": None,
                "note": ("no centre clicks to hold out" if n_clicks == 0
                         else f"no estimate: with fewer than {MIN_CLICKS} clicks every click trains")} | negative
    q = {"n_heldout": n, "heldout_hit_rate": round(float(hit), 4), "heldout_centring": round(float(centred), 4),
         "start_hit_rate": None} | negative
    if start_prob:
        zs0 = [z for z in held if z in start_prob]
        if zs0:
            q["start_hit_rate"] = round(float(click_hits(np.stack([start_prob[z] for z in zs0]), held, zs0)[0]), 4)
    return q


def describe_quality(q: dict | None) -> str:
    """One line for the CLI and the widget: 'flip agreement 0.90 (start 0.87); held-out clicks inside a
    predicted object: 7/9 (...)'. The flip agreement (flip_check.py) where it was measured, then the
    held-out clicks, or why there are none."""
    if not q:
        return ""
    parts = []
    if q.get("flip_agreement") is not None:
        start = q.get("start_flip_agreement")
        parts.append(f"flip agreement {q['flip_agreement']:.2f}" + ("" if start is None else f" (start {start:.2f})"))
    if q.get("n_heldout"):
        n = q["n_heldout"]
        found = round(q["heldout_hit_rate"] * n)
        start = "" if q.get("start_hit_rate") is None else f", starting model {q['start_hit_rate']:.0%}"
        parts.append(f"held-out clicks inside a predicted object: {found}/{n} ({q['heldout_hit_rate']:.0%}{start}); "
                     f"centring {q['heldout_centring']:.2f}")
    elif q.get("note"):
        parts.append(q["note"])
    if q.get("n_heldout_negative"):
        n_neg = q["n_heldout_negative"]
        parts.append(f"held-out 'not mitochondria' clicks left as background: "
                     f"{round(q['heldout_negative_spared'] * n_neg)}/{n_neg}")
    return "quality estimate: " + ("; ".join(parts) or "none")
