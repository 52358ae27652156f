#!/usr/bin/env python
"""Segmentation quality and speed on the Lucchi test stack (80 slices of 768 x 1024).

Rows: the shipped source model (trained on VNC III only) and a supervised upper bound trained on Lucchi
train with the same script, settings and wall-clock budget. Each model is scored in a fresh process
(so peak memory is its own): Dice/IoU pooled and per-slice mean, AJI and PQ on 2D instances, inference
wall time, voxels/s and peak resident memory.

    .venv/bin/python benchmarks/bench_segmentation.py [--slices 80] [--threads 2]

The supervised model is made by
    .venv/bin/python scripts/make_source_model.py --image ../shared/data/lucchi/train_image.tif \
        --labels ../shared/data/lucchi/train_labels.tif --voxel-size 5,5,5 \
        --out benchmarks/cache/supervised_lucchi.pt --minutes 45 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, markdown_table, peak_rss_mb, run_child, update_section  # noqa: E402

SUPERVISED = ROOT / "benchmarks" / "cache" / "supervised_lucchi.pt"


def child(model: str, slices: int, threads: int, flips: bool, data: str) -> dict:
    import tifffile
    import torch

    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    torch.set_num_threads(threads)
    if data == "vnc3-holdout":  # the source slices the shipped model never trained on
        img = tifffile.imread(SHARED / "vnc3" / "image.tif")[17:]
        gt = tifffile.imread(SHARED / "vnc3" / "labels.tif")[17:]
    else:
        img = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[:slices]
        gt = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[:slices]
    dev = pick_device()
    loaded = load_checkpoint(None if model == "shipped" else model, device=dev.device)
    segment_volume(img[:1], loaded, dev)  # warm-up: first-call allocations are not throughput
    t0 = time.perf_counter()
    seg = segment_volume(img, loaded, dev, flips=flips)
    dt = time.perf_counter() - t0
    m = evaluate_volume(seg.labels, gt, per_slice=False)
    return m | {
        "infer_s": dt, "voxels_per_s": img.size / dt, "peak_rss_mb": peak_rss_mb(), "device": dev.describe(),
        "train_s": loaded.meta.get("wall_time_s"), "train_steps": loaded.meta.get("steps"),
        "total_train_s": loaded.meta.get("total_wall_time_s", loaded.meta.get("wall_time_s")),
        "total_steps": loaded.meta.get("total_steps", loaded.meta.get("steps")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", default="shipped", help=argparse.SUPPRESS)
    ap.add_argument("--data", default="lucchi", help=argparse.SUPPRESS)
    ap.add_argument("--slices", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flips", action="store_true")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.model, a.slices, a.threads, a.flips, a.data)))
        return
    if not (SHARED / "lucchi" / "test_image.tif").exists():
        sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
    from napari_mito_wda.core.data.provenance import provenance

    rows, raw = [], {}
    runs = [("shipped VNC III model on VNC III hold-out (slices 17-19)", "shipped", "vnc3-holdout"),
            ("source only: shipped VNC III model on Lucchi test", "shipped", "lucchi")]
    if SUPERVISED.exists():
        runs.append(("supervised upper bound: trained on Lucchi train", str(SUPERVISED), "lucchi"))
    else:
        print(f"(no {SUPERVISED}: the supervised row is skipped; see this script's docstring)")
    for name, model, data in runs:
        args = ["--model", model, "--data", data, "--slices", str(a.slices), "--threads", str(a.threads)] + (["--flips"] if a.flips else [])
        r = run_child(Path(__file__), args)
        raw[name] = r
        rows.append([name, r["dice"], r["iou"], r["dice_mean"], r["iou_mean"], r["aji"], r["pq"],
                     f"{(r['total_train_s'] or 0) / 60:.0f} ({r['total_steps']} steps)", f"{r['infer_s']:.1f}",
                     f"{r['voxels_per_s'] / 1e6:.2f}", f"{r['peak_rss_mb']:.0f}"])
        print(name, json.dumps({k: r[k] for k in ("dice", "iou", "aji", "pq", "infer_s", "peak_rss_mb")}))
    prov = provenance()
    table = markdown_table(
        ["model", "Dice", "IoU", "Dice (slice mean)", "IoU (slice mean)", "AJI", "PQ", "training min",
         "inference s", "Mvoxel/s", "peak MB"], rows)
    body = f"""## Segmentation on Lucchi test: source model and supervised upper bound

Lucchi test stack, first {a.slices} slices of 768 x 1024 (`../shared/data/lucchi`), and the 3 VNC III slices
held out of the source training (`../shared/data/vnc3`, 1024 x 1024); instances = 2D
components of probability > 0.5, split by a watershed at confident centre-heatmap peaks (>= 0.5); AJI/PQ per slice on 2D components, averaged.
Inference: {raw[runs[0][0]]['device']}, torch threads {a.threads}, {"4-flip averaging" if a.flips else "no flip averaging"},
one slice at a time (tiles of 512 at the network's half resolution); peak MB = peak resident memory of the
measuring process (data + model + outputs). Training: `scripts/make_source_model.py`, batch 4 of 256 x 256 at
half resolution, AdamW, 1 torch thread, on this 2-core machine while other work ran beside it. The supervised
model had one 45-minute run; the shipped model a 45-minute run plus a 35-minute continuation (`--init`, lr
1e-3) that raised its VNC III hold-out Dice from 0.727 to 0.732 (model cards: `src/napari_mito_wda/data/
source_vnc3.json`, `benchmarks/cache/`). The two models' budgets therefore differ: 80 vs 45 minutes.

{table}

Measured {prov['date']} at commit {prov['commit']} on {prov['machine']}. Reproduce:
`.venv/bin/python benchmarks/bench_segmentation.py --slices {a.slices} --threads {a.threads}`
"""
    update_section("segmentation", body)
    print(body)


if __name__ == "__main__":
    main()
