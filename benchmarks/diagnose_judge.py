#!/usr/bin/env python
"""Does the label-free judge track the true Dice? Every candidate model of one adaptation, scored both ways.

Development tool (not a benchmark section): runs one user-like adaptation (bench_user's crop and clicks,
`auto_settings` for its budget) with selection "last", so every round's model is a candidate, and at each
round's start (and at the end) scores the current model on the domain's test block. Per candidate it prints
the judge's score as the loop computes it, its two halves (the heads' agreement; the held-out clicks'
centring and hit rate), the flip agreement (flip_check.py) and the foreground share of the labelled slices,
beside the test Dice and AJI.
Rows are appended to benchmarks/results/judge_results.jsonl.

    .venv/bin/python benchmarks/diagnose_judge.py --domain lucchi --crop 32 --clicks 25 --minutes 3 \\
        [--seed 0] [--threads 1] [--test-slices 40] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_user import DOMAINS, central_block, clicked_slices, n_slices, parse_overrides  # noqa: E402
from common import ROOT, SHARED, markdown_table, stamp  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "judge_results.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", default="lucchi", choices=sorted(DOMAINS))
    ap.add_argument("--crop", type=int, default=32)
    ap.add_argument("--clicks", type=int, default=25)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-slices", type=int, default=40)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="an AdaptSettings override")
    a = ap.parse_args()

    import numpy as np
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adapt, simulate_clicks
    from napari_mito_wda.core.adapt.auto import AUTO_FIELDS, auto_settings
    from napari_mito_wda.core.adapt.flip_check import model_flip_agreement
    from napari_mito_wda.core.adapt.heldout import ClickSplit, click_hits
    from napari_mito_wda.core.adapt.points import points_by_slice
    from napari_mito_wda.core.adapt.selection import selection_score
    from napari_mito_wda.core.data.checkpoint import load_model
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.device import cpu_has_native_bf16, pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    torch.set_num_threads(a.threads)
    dev = pick_device()
    img_p, lab_p, test_p, test_lab_p, _ = DOMAINS[a.domain]
    block = central_block(n_slices(SHARED / img_p), a.crop)
    vol, vol_lab = tifffile.imread(SHARED / img_p)[block], tifffile.imread(SHARED / lab_p)[block]
    test = tifffile.imread(SHARED / test_p)[: a.test_slices]
    test_lab = tifffile.imread(SHARED / test_lab_p)[: a.test_slices]
    loaded = load_model(None, device=dev.device)
    zs = clicked_slices(a.clicks, len(vol))
    clicks = simulate_clicks(vol_lab, seed=a.seed, slices=zs, max_total=a.clicks) if zs else None
    auto, _ = auto_settings(vol.shape, 0 if clicks is None else len(clicks), a.minutes,
                            loaded.model.config.downsample, loaded.model.multiple)
    variant = parse_overrides(a.set)
    settings = AdaptSettings.preset("quick", **({"seed": a.seed, "selection": "last"}
                                                | {k: getattr(auto, k) for k in AUTO_FIELDS} | variant))
    f = loaded.model.config.downsample
    images = [to_working(normalize_slice(s), f).astype(np.float32) for s in vol]  # the loop's view (no pixel size)
    held = {}
    if clicks is not None:  # the loop's own split (same share and seed), at working resolution
        _, held_pts = ClickSplit(settings.heldout_share, settings.seed).split(clicks)
        held = points_by_slice(held_pts.astype(np.float32) / np.array([1, f, f], np.float32))

    rows, t0 = [], time.perf_counter()
    for rep in adapt(vol, clicks, loaded, settings, dev=dev):
        if rep.stage not in ("label", "done"):
            continue
        pred = rep.prediction
        prob, heat, pz = pred["prob"], pred["heat"], pred["slices"]
        hit, centring, n_held = click_hits(prob, held, pz)
        m = evaluate_volume(segment_volume(test, loaded, dev).labels, test_lab, per_slice=False)
        row = {"stage": rep.stage, "round": rep.round, "step": rep.step, "judge": rep.score,
               "agreement": selection_score(prob, heat, {}, pz), "heldout_hit": hit if n_held else None,
               "heldout_centring": centring if n_held else None, "fg_share": float((prob > 0.5).mean()),
               "flip": model_flip_agreement(loaded.model, images, pz, dev, prob),
               "dice": m["dice"], "aji": m["aji"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = markdown_table(["stage", "round", "step", "judge", "agreement", "held-out hit", "held-out centring",
                            "flip agreement", "fg share", "test Dice", "test AJI"],
                           [[r["stage"], r["round"], r["step"], r["judge"], r["agreement"], r["heldout_hit"],
                             r["heldout_centring"], r["flip"], r["fg_share"], r["dice"], r["aji"]] for r in rows])
    print(table)
    out = {"domain": a.domain, "crop": len(vol), "clicks": a.clicks, "minutes": a.minutes, "seed": a.seed,
           "threads": a.threads, "test_slices": len(test), "overrides": variant, "rows": rows,
           "native_bf16": cpu_has_native_bf16(), "wall_s": round(time.perf_counter() - t0, 1)} | stamp()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as fh:
        fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
