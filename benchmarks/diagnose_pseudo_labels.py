#!/usr/bin/env python
"""How good are the pseudo-labels? Precision/recall of each labelling policy against Lucchi train labels.

Development tool (not a benchmark row): loads a model (default: the shipped source model + AdaBN on
Lucchi train), predicts evenly spaced train slices at working resolution and scores the labels each
policy would train on:
  fg precision   share of pixels labelled mito that are mito
  fg recall      share of true mito pixels labelled mito
  bg error       share of true mito pixels labelled background (what hurt the naive baseline)
  bg coverage    share of true background pixels labelled background
  labelled       share of all pixels that are not ignored

    .venv/bin/python benchmarks/diagnose_pseudo_labels.py [--model CKPT] [--slices 20] [--no-adabn]
        [--stage1-iters 130]

--stage1-iters N first runs stage 1 of the adaptation (target detection + contrastive, 15% clicks,
seed 0) for N iterations, to see what it taught the detector. The second table asks whether the
detector generalises from the clicks: its heat at the clicked centres against the centres of the
objects nobody clicked, and how well it (or the segmentation) ranks the unclicked confident components
into real objects and false ones (ROC AUC; 0.5 = chance).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table  # noqa: E402


def score(label: np.ndarray, gt: np.ndarray) -> dict:
    fg, bg, mito = label == 1, label == 0, gt > 0
    return {
        "fg_prec": (fg & mito).sum() / max(fg.sum(), 1),
        "fg_rec": (fg & mito).sum() / max(mito.sum(), 1),
        "bg_err": (bg & mito).sum() / max(mito.sum(), 1),
        "bg_cov": (bg & ~mito).sum() / max((~mito).sum(), 1),
        "labelled": (label != 255).mean(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--slices", type=int, default=20, help="evenly spaced train slices (80: all)")
    ap.add_argument("--no-adabn", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stage1-iters", type=int, default=0)
    a = ap.parse_args()

    import tifffile
    import torch

    from napari_mito_wda.core.adapt import (
        AdaptSettings,
        adabn,
        adapt,
        build_round,
        detector_trusted,
        predict_slices,
    )
    from napari_mito_wda.core.adapt.points import points_by_slice, simulate_clicks
    from napari_mito_wda.core.adapt.pseudo_labels import budget_anchor, ratio_schedule
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.training.targets import count_estimate

    torch.set_num_threads(a.threads)
    dev = pick_device()
    img = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
    lab = tifffile.imread(SHARED / "lucchi" / "train_labels.tif")
    loaded = load_checkpoint(a.model, device=dev.device)
    f = loaded.model.config.downsample
    images = [to_working(normalize_slice(s), f).astype(np.float32) for s in img]
    clicks = simulate_clicks(lab, 0.15, seed=0)
    zs = np.linspace(0, len(images) - 1, a.slices).round().astype(int).tolist()
    # The starting model's own view, before AdaBN: what AdaptSettings.source_veto consults.
    source_prob = dict(zip(zs, predict_slices(loaded.model, images, zs, dev)[0]))
    if a.stage1_iters:
        s1 = AdaptSettings(minutes=600, max_iters=a.stage1_iters, stage1_rounds=1, stage2_rounds=0,
                           click_fraction=0.15, adabn=not a.no_adabn)
        for rep in adapt(img, clicks, loaded, s1, dev=dev):
            if rep.stage != "train" or rep.step % 50 == 0:
                print(rep.stage, rep.step, f"{rep.elapsed_s:.0f}s", rep.message, flush=True)
    elif not a.no_adabn:
        adabn(loaded.model, images, dev, 256)
    cw = points_by_slice(clicks / np.array([1, f, f]))
    prob, heat = predict_slices(loaded.model, images, zs, dev)
    gt = np.stack([lab[z][::f, ::f][: prob.shape[1], : prob.shape[2]] for z in zs])
    # What the model itself gets right at p > 0.5, for reference.
    pred = (prob > 0.5).astype(np.uint8)
    rows = [["model p > 0.5 (every pixel labelled)", *[f"{v:.3f}" for v in score(pred, gt).values()]]]
    s0 = AdaptSettings(click_fraction=0.15)
    anchors = {z: budget_anchor(len(cw.get(z, ())), 0.15, count_estimate(heat[k], s0.sigma)) for k, z in enumerate(zs)}
    policies = [
        ("IPL stage 1, round 0, clicks spare background on their own slice only (v6)", dict(click_reach_z=0),
         1, 0, s0.t_s1),
        ("IPL stage 2, round 1, clicks spare background on their own slice only (v6)", dict(click_reach_z=0),
         2, 1, s0.t_s2),
        ("IPL stage 1, round 0 (default: clicks spare background 8 slices either side)", dict(), 1, 0, s0.t_s1),
        ("IPL stage 2, round 1 (default: clicks spare background 8 slices either side)", dict(), 2, 1, s0.t_s2),
        ("IPL stage 1, round 0, background only where the source model gave p < 0.5 (source_veto)",
         dict(source_veto=0.5), 1, 0, s0.t_s1),
        ("IPL stage 2, round 1, background only where the source model gave p < 0.5 (source_veto)",
         dict(source_veto=0.5), 2, 1, s0.t_s2),
        ("IPL by detection peaks, stage 2, round 1", dict(detector_trust=0.0), 2, 1, s0.t_s2),
        ("IPL by detection peaks, stage 2, round 2", dict(detector_trust=0.0), 2, 2, s0.t_s2),
        ("pixel confidence t=0.9", dict(pseudo="pixel"), 2, 1, 0.9),
        ("pixel confidence t=0.8", dict(pseudo="pixel"), 2, 1, 0.8),
        ("naive click disks + p<0.05", dict(pseudo="naive"), 2, 1, 0.8),
    ]
    for name, over, stage, r, t_s in policies:
        s = AdaptSettings(click_fraction=0.15, **over)
        rnd, n_sel = build_round(prob, heat, zs, cw, ratio_schedule(stage, r), t_s, anchors, s,
                                 use_detector=detector_trusted(heat, cw, zs, s), source_prob=source_prob)
        m = score(np.stack(rnd.labels), gt)
        rows.append([f"{name} ({n_sel} inst.)", *[f"{v:.3f}" for v in m.values()]])
    print(markdown_table(["policy", "fg precision", "fg recall", "bg error", "bg coverage", "labelled"], rows))
    checks = detector_rows(prob, heat, gt_full(lab, zs, f, prob.shape), cw, zs)
    print(markdown_table(["detector check", "value"], checks))


def gt_full(lab, zs, f, shape):
    """Instance labels of the chosen slices at working resolution (nearest), one id per 2D component."""
    from scipy import ndimage as ndi

    return np.stack([ndi.label(lab[z][::f, ::f][: shape[1], : shape[2]] > 0)[0] for z in zs])


def _auc(pos: list[float], neg: list[float]) -> float:
    """ROC AUC by pairwise comparison (ties count half)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def detector_rows(prob, heat, gt, cw, zs) -> list[list[str]]:
    """Heat at clicked vs unclicked true centres; ranking of unclicked components by heat and by prob."""
    from scipy import ndimage as ndi

    from napari_mito_wda.core.adapt import heat_at_clicks
    from napari_mito_wda.core.adapt.points import innermost_point

    clicked, unclicked = {}, {}
    pos_h, neg_h, pos_p, neg_p = [], [], [], []
    for k, z in enumerate(zs):
        cz = [(min(int(round(y)), gt.shape[1] - 1), min(int(round(x)), gt.shape[2] - 1)) for y, x in cw.get(z, ())]
        clicked_ids = {int(gt[k][y, x]) for y, x in cz} - {0}
        for i in range(1, int(gt[k].max()) + 1):
            obj = gt[k] == i
            if obj.sum() >= 20:
                (clicked if i in clicked_ids else unclicked).setdefault(z, []).append(innermost_point(obj))
        comps, n = ndi.label(prob[k] > 0.5)
        for c in range(1, n + 1):
            m = comps == c
            if m.sum() < 20 or np.any([m[y, x] for y, x in cz]):
                continue
            real = (gt[k][m] > 0).mean() > 0.5
            (pos_h if real else neg_h).append(float(heat[k][m].max()))
            (pos_p if real else neg_p).append(float(prob[k][m].mean()))
    count = lambda d: sum(map(len, d.values()))  # noqa: E731
    return [
        ["max of the heat maps", f"{heat.max():.3f}"],
        ["heat at clicked centres, median (max within 3 px)",
         f"{heat_at_clicks(heat, clicked, zs):.3f} (n={count(clicked)})"],
        ["heat at unclicked true centres, median", f"{heat_at_clicks(heat, unclicked, zs):.3f} (n={count(unclicked)})"],
        ["unclicked p > 0.5 components: real / false", f"{len(pos_h)} / {len(neg_h)}"],
        ["AUC real vs false, by peak heat", f"{_auc(pos_h, neg_h):.3f}"],
        ["AUC real vs false, by mean probability", f"{_auc(pos_p, neg_p):.3f}"],
    ]


if __name__ == "__main__":
    main()
