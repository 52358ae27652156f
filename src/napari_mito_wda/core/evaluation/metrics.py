"""Scores of a whole stack: every metric per slice and over the volume (evaluate_volume), as a table.

Pure numpy / scipy / scikit-image so that the CLI, the benchmarks and the tests can score results
without torch or a GUI. Instance metrics (AJI, PQ; instance_metrics.py) are defined per 2D slice, as in
the EM mitochondria literature, and averaged over slices; Dice and IoU (foreground.py) are pooled.
"""

from __future__ import annotations

import math

import numpy as np

from .foreground import _as_labels, _check_same_shape, _dice_from_counts, _fg_counts, _iou_from_counts
from .instance_metrics import _aji_from_overlap, _overlap, _pq_from_overlap, relabel_2d


def evaluate_volume(pred_labels, gt, per_slice: bool = True) -> dict:
    """Score a predicted (Z, Y, X) stack against ground truth; 2D input is treated as Z = 1.

    ``pred_labels`` and ``gt`` may each be binary masks or instance labels (3D ids or per-slice
    ids): instance metrics are computed per slice on 8-connected 2D components of both.

    Returns ``dice`` and ``iou`` pooled over the volume; ``dice_mean``, ``iou_mean``, ``aji``,
    ``pq``, ``sq``, ``dq`` as means over slices; ``n_slices``, ``n_pred_objects``, ``n_gt_objects``
    (2D objects summed over slices). A slice empty in both scores 1.0. With ``per_slice`` the
    dict also holds ``per_slice``: a list with one dict of the slice's values per z.
    """
    p = _as_labels(pred_labels, "pred_labels")
    g = _as_labels(gt, "gt")
    _check_same_shape(p, g)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3:
        raise ValueError(f"expected a 2D slice or a (Z, Y, X) stack, got shape {p.shape}")
    n_z = p.shape[0]
    if n_z == 0:
        raise ValueError("the stack has no slices")

    tot_i = tot_p = tot_g = 0
    rows = []
    for z in range(n_z):
        i_z, p_z, g_z = _fg_counts(p[z], g[z])
        tot_i, tot_p, tot_g = tot_i + i_z, tot_p + p_z, tot_g + g_z
        ov = _overlap(relabel_2d(p[z]), relabel_2d(g[z]))
        pq = _pq_from_overlap(ov, 0.5)
        rows.append(
            dict(
                z=z,
                dice=_dice_from_counts(i_z, p_z, g_z),
                iou=_iou_from_counts(i_z, p_z, g_z),
                aji=_aji_from_overlap(ov),
                pq=pq["pq"],
                sq=pq["sq"],
                dq=pq["dq"],
                n_pred_objects=ov.n_pred,
                n_gt_objects=ov.n_gt,
            )
        )

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in rows]))

    out = dict(
        dice=_dice_from_counts(tot_i, tot_p, tot_g),
        iou=_iou_from_counts(tot_i, tot_p, tot_g),
        dice_mean=mean("dice"),
        iou_mean=mean("iou"),
        aji=mean("aji"),
        pq=mean("pq"),
        sq=mean("sq"),
        dq=mean("dq"),
        n_slices=n_z,
        n_pred_objects=int(sum(r["n_pred_objects"] for r in rows)),
        n_gt_objects=int(sum(r["n_gt_objects"] for r in rows)),
    )
    if per_slice:
        out["per_slice"] = rows
    return out


def format_table(metrics: dict) -> str:
    """Render the scalar entries of ``metrics`` as an aligned two-column plain-text table.

    Floats get 4 decimals, integers are printed as they are; nested values (such as the
    ``per_slice`` list of :func:`evaluate_volume`) are left out.
    """
    rows = []
    for key, value in metrics.items():
        if isinstance(value, (bool, np.bool_)):
            text = str(bool(value))
        elif isinstance(value, (int, np.integer)):
            text = str(int(value))
        elif isinstance(value, (float, np.floating)):
            text = "nan" if math.isnan(value) else f"{float(value):.4f}"
        elif value is None:
            text = "n/a"
        else:
            continue
        rows.append((str(key), text))
    name_w = max([len("metric")] + [len(k) for k, _ in rows])
    val_w = max([len("value")] + [len(v) for _, v in rows])
    lines = [f"{'metric':<{name_w}}  {'value':>{val_w}}", f"{'-' * name_w}  {'-' * val_w}"]
    lines += [f"{k:<{name_w}}  {v:>{val_w}}" for k, v in rows]
    return "\n".join(lines)
