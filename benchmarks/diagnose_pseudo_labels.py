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
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--no-adabn", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, _predict_slices, adabn, build_round, detector_trusted
    from napari_mito_wda.core.checkpoint import load_checkpoint
    from napari_mito_wda.core.device import pick_device
    from napari_mito_wda.core.inference import to_working
    from napari_mito_wda.core.io import normalize_slice
    from napari_mito_wda.core.points import points_by_slice, simulate_clicks
    from napari_mito_wda.core.pseudo_labels import budget_anchor, ratio_schedule
    from napari_mito_wda.core.targets import count_estimate

    torch.set_num_threads(a.threads)
    dev = pick_device()
    img = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
    lab = tifffile.imread(SHARED / "lucchi" / "train_labels.tif")
    loaded = load_checkpoint(a.model, device=dev.device)
    f = loaded.model.config.downsample
    images = [to_working(normalize_slice(s), f).astype(np.float32) for s in img]
    if not a.no_adabn:
        adabn(loaded.model, images, dev, 256)
    clicks = simulate_clicks(lab, 0.15, seed=0)
    cw = points_by_slice(clicks / np.array([1, f, f]))
    zs = np.linspace(0, len(images) - 1, a.slices).round().astype(int).tolist()
    prob, heat = _predict_slices(loaded.model, images, zs, dev)
    gt = np.stack([lab[z][::f, ::f][: prob.shape[1], : prob.shape[2]] for z in zs])
    # What the model itself gets right at p > 0.5, for reference.
    pred = (prob > 0.5).astype(np.uint8)
    rows = [["model p > 0.5 (every pixel labelled)", *[f"{v:.3f}" for v in score(pred, gt).values()]]]
    s0 = AdaptSettings(click_fraction=0.15)
    anchors = {z: budget_anchor(len(cw.get(z, ())), 0.15, count_estimate(heat[k], s0.sigma)) for k, z in enumerate(zs)}
    policies = [
        ("IPL stage 1, round 0", dict(), 1, 0, s0.t_s1),
        ("IPL by detection peaks, stage 2, round 1", dict(detector_trust=0.0), 2, 1, s0.t_s2),
        ("IPL by detection peaks, stage 2, round 2", dict(detector_trust=0.0), 2, 2, s0.t_s2),
        ("IPL ranked by segmentation, stage 2, round 1", dict(detector_trust=1.1, untrusted_ranking="prob"), 2, 1, s0.t_s2),
        ("IPL ranked by segmentation, stage 2, round 2", dict(detector_trust=1.1, untrusted_ranking="prob"), 2, 2, s0.t_s2),
        ("pixel confidence t=0.9", dict(pseudo="pixel"), 2, 1, 0.9),
        ("pixel confidence t=0.8", dict(pseudo="pixel"), 2, 1, 0.8),
        ("naive click disks + p<0.05", dict(pseudo="naive"), 2, 1, 0.8),
    ]
    for name, over, stage, r, t_s in policies:
        s = AdaptSettings(click_fraction=0.15, **over)
        rnd, n_sel = build_round(prob, heat, zs, cw, ratio_schedule(stage, r), t_s, anchors, s,
                                 use_detector=detector_trusted(heat, cw, zs, s))
        m = score(np.stack(rnd.labels), gt)
        rows.append([f"{name} ({n_sel} inst.)", *[f"{v:.3f}" for v in m.values()]])
    heat_at = [heat[k][int(y), int(x)] for k, z in enumerate(zs) for y, x in cw.get(z, ())
               if int(y) < heat.shape[1] and int(x) < heat.shape[2]]
    print(markdown_table(["policy", "fg precision", "fg recall", "bg error", "bg coverage", "labelled"], rows))
    print(f"heat at clicked centres: median {np.median(heat_at):.3f}, max of maps {heat.max():.3f}")


if __name__ == "__main__":
    main()
