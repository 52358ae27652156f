#!/usr/bin/env python
"""AdaBN from little target data: Lucchi test Dice of the source model, plain AdaBN and AdaBN blended with
the source statistics (weight w on the target) for target crops of 1, 4, 16 and 80 Lucchi train slices and
the shipped sample crop (each also scored on the sample's ground truth). Picks AdaptSettings.adabn_n0.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_adabn_blend.py --test-step 4 --threads 1

Prints one line per (crop, w) and appends them to benchmarks/results/adabn_blend_results.jsonl.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "adabn_blend_results.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test-step", type=int, default=4, help="score every Nth of the 80 test slices")
    ap.add_argument("--weights", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--crops", default="1,4,16,80,sample")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    import tifffile
    import torch

    from napari_mito_wda.core.adapt.batchnorm import adabn, blend_bn_stats
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.data.provenance import provenance
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume
    from napari_mito_wda.sample import load_lucchi_sample

    torch.set_num_threads(a.threads)
    dev = pick_device()
    train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
    test = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[:: a.test_step]
    test_lab = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[:: a.test_step]
    sample, sample_gt, _, _ = load_lucchi_sample()
    source = load_checkpoint(None, device=dev.device)
    f = source.model.config.downsample
    src_stats = [(m.running_mean.clone(), m.running_var.clone())
                 for m in source.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    commit = provenance()["commit"]
    for crop in a.crops.split(","):
        if crop == "sample":
            vol = sample
        else:  # a contiguous block from the middle of Lucchi train
            n = int(crop)
            z0 = (train.shape[0] - n) // 2
            vol = train[z0 : z0 + n]
        images = [to_working(normalize_slice(s), f).astype("float32") for s in vol]
        n_px = sum(im.size for im in images)
        target = copy.deepcopy(source)
        adabn(target.model, images, dev, 256, seed=0)
        for w in (float(x) for x in a.weights.split(",")):
            model = copy.deepcopy(target)
            blend_bn_stats(model.model, src_stats, w)  # the target statistics: the model's own
            m = evaluate_volume(segment_volume(test, model, dev).labels, test_lab, per_slice=False)
            row = {"crop": crop, "slices": len(vol), "target_px": int(n_px), "w": w, "dice_test": m["dice"],
                   "aji_test": m["aji"], "test_step": a.test_step, "device": dev.describe(), "threads": a.threads,
                   "commit": commit}
            # The sample scored with every crop's statistics: are its own the problem, or its size?
            ms = evaluate_volume(segment_volume(sample, model, dev).labels, sample_gt, per_slice=False)
            row |= {"dice_sample": ms["dice"], "aji_sample": ms["aji"]}
            print(json.dumps(row), flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
