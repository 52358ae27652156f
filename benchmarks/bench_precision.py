#!/usr/bin/env python
"""What bf16 costs against fp32, for inference and for adaptation, measured in one run on one machine.

Each precision runs in a fresh process with MITO_WDA_PRECISION forced (as a user would force it), one after
the other, on the same data and seed:
  inference:  the shipped model on the Lucchi test stack: Dice / AJI / PQ and Mvoxel/s of segment_volume;
  adaptation: the default adaptation (WDA, 15% clicks) on Lucchi train for a fixed number of iterations:
              iterations/s of the loop and the Dice / AJI of the adapted model on Lucchi test.

    .venv/bin/python benchmarks/bench_precision.py [--iters 120] [--slices 80] [--threads 2]

bf16 on a CPU without native support (no AMX / AVX512-BF16) is emulated and slower than fp32; the table
says which kind of CPU it was measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, markdown_table, run_child, update_section  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "precision_results.jsonl"


def child(iters: int, slices: int, threads: int, seed: int) -> dict:
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adapt
    from napari_mito_wda.core.adapt.points import simulate_clicks
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    torch.set_num_threads(threads)
    dev = pick_device()
    test = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[:slices]
    test_lab = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[:slices]
    loaded = load_checkpoint(None, device=dev.device)
    segment_volume(test[:1], loaded, dev)  # warm-up: first-call allocations are not throughput
    t0 = time.perf_counter()
    seg = segment_volume(test, loaded, dev)
    infer_s = time.perf_counter() - t0
    source = evaluate_volume(seg.labels, test_lab, per_slice=False)

    train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
    train_lab = tifffile.imread(SHARED / "lucchi" / "train_labels.tif")
    clicks = simulate_clicks(train_lab, 0.15, seed=seed)
    settings = AdaptSettings(minutes=600, max_iters=iters, seed=seed, click_fraction=0.15)
    train_s, steps = 0.0, 0
    t_last = time.perf_counter()
    for rep in adapt(train, clicks, loaded, settings, dev=dev):
        now = time.perf_counter()
        if rep.stage == "train":  # time of the training steps only: labelling rounds are inference
            train_s += now - t_last
            steps = rep.step
        t_last = now
    adapted = evaluate_volume(segment_volume(test, loaded, dev).labels, test_lab, per_slice=False)
    return {"device": dev.describe(), "infer_s": infer_s, "mvox_s": test.size / infer_s / 1e6,
            "source": {k: source[k] for k in ("dice", "aji", "pq")}, "steps": steps, "train_s": train_s,
            "it_s": steps / train_s if train_s else 0.0, "adapted": {k: adapted[k] for k in ("dice", "aji", "pq")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--iters", type=int, default=120)
    ap.add_argument("--slices", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.iters, a.slices, a.threads, a.seed)))
        return
    if not (SHARED / "lucchi" / "test_image.tif").exists():
        sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
    from napari_mito_wda.core.data.provenance import provenance
    from napari_mito_wda.core.engine.device import cpu_has_native_bf16

    prov = provenance()
    args = ["--iters", str(a.iters), "--slices", str(a.slices), "--threads", str(a.threads), "--seed", str(a.seed)]
    results = {}
    for precision in ("fp32", "bf16"):
        os.environ["MITO_WDA_PRECISION"] = precision  # the child inherits it
        r = run_child(Path(__file__), args) | {"precision": precision, "commit": prov["commit"],
                                               "date": prov["date"][:10], "native_bf16": cpu_has_native_bf16()}
        results[precision] = r
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as fh:  # as they come: a stopped run keeps what it measured
            fh.write(json.dumps(r | {"args": args}) + "\n")
        print(precision, json.dumps(r), flush=True)
    f32, b16 = results["fp32"], results["bf16"]
    rows = [[p, r["device"], r["source"]["dice"], r["source"]["aji"], f"{r['mvox_s']:.2f}", r["adapted"]["dice"],
             r["adapted"]["aji"], f"{r['it_s']:.2f}"] for p, r in results.items()]
    rows.append(["bf16 / fp32", "", b16["source"]["dice"] - f32["source"]["dice"],
                 b16["source"]["aji"] - f32["source"]["aji"], f"{b16['mvox_s'] / f32['mvox_s']:.2f}x",
                 b16["adapted"]["dice"] - f32["adapted"]["dice"], b16["adapted"]["aji"] - f32["adapted"]["aji"],
                 f"{b16['it_s'] / f32['it_s']:.2f}x"])
    table = markdown_table(["precision", "device", "source Dice", "source AJI", "inference Mvoxel/s",
                            f"adapted Dice ({a.iters} it)", "adapted AJI", "adaptation it/s"], rows)
    kind = "with native bf16 (AMX)" if cpu_has_native_bf16() else "without native bf16 (bf16 emulated)"
    body = f"""## Precision: bf16 against fp32 (inference and adaptation)

The engine picks bf16 autocast on CPUs with native bf16 and fp32 elsewhere (`MITO_WDA_PRECISION` forces
one). Both measured here in one run, one after the other, on a CPU {kind}: the shipped model on the first
{a.slices} Lucchi test slices (inference), and the default adaptation (15% clicks, seed {a.seed}) for
{a.iters} iterations on Lucchi train scored on the same test slices. it/s counts the training steps only
(the labelling rounds are inference); the last row gives differences (quality) and ratios (speed).

{table}

Measured {prov['date'][:10]} at commit {prov['commit']} on {prov['machine']}, {a.threads} torch threads. Reproduce:
`.venv/bin/python benchmarks/bench_precision.py --iters {a.iters} --slices {a.slices} --threads {a.threads}`
"""
    update_section("precision", body)
    print(body)


if __name__ == "__main__":
    main()
