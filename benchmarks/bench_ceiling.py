#!/usr/bin/env python
"""What dense labels of the crop would give: the ceiling of the user-like rows.

The shipped source model fine-tuned on *every* label of the crop that bench_user.py adapts on (its central
block of slices; `core.training.supervised.fit`, lr 1e-3 as bench_adaptation.py's supervised row), then scored
on the same test slices as bench_user.py. A click target above this row asks a few clicks to beat dense
masks of the same slices under the same budget.

    .venv/bin/python benchmarks/bench_ceiling.py --domains sbem --crops 16,20 --minutes 3,10 --threads 1
    .venv/bin/python benchmarks/bench_ceiling.py --domains sbem --crops 20 --iters 170    # an iteration budget

Each row runs in a fresh process; results are appended to benchmarks/results/ceiling_results.jsonl as they
come and the section `ceiling` of docs/benchmarks.md is rebuilt from that file (`--render` only rebuilds it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_user import DOMAINS, central_block, n_slices  # noqa: E402
from common import ROOT, SHARED, markdown_table, run_child, stamp, update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ceiling_results.jsonl"


def child(a) -> dict:
    import tifffile
    import torch

    from napari_mito_wda.core.data.checkpoint import load_model
    from napari_mito_wda.core.engine.device import cpu_has_native_bf16, pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume
    from napari_mito_wda.core.training.supervised import FitSettings, fit, prepare_slices

    torch.set_num_threads(a.threads)
    dev = pick_device()
    img_p, lab_p, test_p, test_lab_p, _ = DOMAINS[a.domain]
    block = central_block(n_slices(SHARED / img_p), a.crop)
    vol, vol_lab = tifffile.imread(SHARED / img_p)[block], tifffile.imread(SHARED / lab_p)[block]
    test, test_lab = tifffile.imread(SHARED / test_p), tifffile.imread(SHARED / test_lab_p)
    loaded = load_model(None, device=dev.device)
    planes = prepare_slices(vol, vol_lab, loaded.model.config.downsample, 6.0)
    settings = FitSettings(minutes=a.minutes or 1e6, max_iters=a.iters or 100_000, lr=1e-3, seed=a.seed)
    t0 = time.perf_counter()
    steps = 0
    for rep in fit(planes, settings, model=loaded.model, dev=dev):
        steps = rep.step
    fit_s = time.perf_counter() - t0
    m = evaluate_volume(segment_volume(test, loaded, dev).labels, test_lab, per_slice=False)
    return {k: round(float(m[k]), 4) for k in ("dice", "aji", "pq")} | stamp() | {
        "domain": a.domain, "crop": len(vol), "crop_z0": block.start, "minutes": a.minutes, "iters": a.iters,
        "steps": steps, "fit_s": round(fit_s, 1), "seed": a.seed, "threads": a.threads,
        "test_slices": len(test), "device": dev.describe(), "native_bf16": cpu_has_native_bf16(),
        "precision": "fp32" if dev.amp_dtype is None else str(dev.amp_dtype).removeprefix("torch.")}


def render() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    latest = {}
    for r in rows:  # the newest result of each (domain, crop, budget, seed, CPU kind)
        latest[(r["domain"], r["crop"], r["minutes"], r["iters"], r["seed"], r["precision"])] = r
    body = [[r["domain"], r["crop"], f"{r['minutes']:g} min" if r["minutes"] else f"{r['iters']} it",
             r["steps"], f"{r['dice']:.3f}", f"{r['aji']:.3f}", f"{r['pq']:.3f}", r["seed"],
             f"{r['precision']} ({'native bf16' if r['native_bf16'] else 'no native bf16'})",
             f"{r['date']}, {r['commit']}"]
            for r in sorted(latest.values(), key=lambda r: (r["domain"], r["crop"], r["minutes"] or 0,
                                                              r["iters"] or 0, r["seed"]))]
    cmds = sorted({f"`.venv/bin/python benchmarks/bench_ceiling.py --domains {r['domain']} --crops {r['crop']} "
                   + (f"--minutes {r['minutes']:g}" if r["minutes"] else f"--iters {r['iters']}")
                   + f" --seed {r['seed']} --threads {r['threads']}`" for r in latest.values()})
    update_section("ceiling", f"""## Ceiling of the user-like rows: dense labels of the same crop

The shipped model fine-tuned on every mitochondrion mask of the crop that the user-like rows adapt on
(`benchmarks/bench_ceiling.py`; supervised fit, lr 1e-3, no clicks, no pseudo-labels), scored on the same
test slices. A row of the user-like table that should beat this one asks a few clicks to do better than
dense masks of the same slices under the same budget.

{markdown_table(["domain", "crop (slices)", "budget", "steps", "Dice", "AJI", "PQ", "seed",
                 "precision (CPU)", "measured"], body)}

Reproduce: {"; ".join(cmds) if cmds else "-"}
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--domain", help=argparse.SUPPRESS)
    ap.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--domains", default="sbem")
    ap.add_argument("--crops", default="16,20")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget of each fit")
    ap.add_argument("--iters", type=int, default=None, help="step budget of each fit (instead of --minutes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--render", action="store_true", help="only rebuild the docs section")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return
    if not a.render:
        if (a.minutes is None) == (a.iters is None):
            sys.exit("give one budget: --minutes M or --iters N")
        for domain in a.domains.split(","):
            if domain not in DOMAINS:
                sys.exit(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
            for crop in sorted({min(int(c), n_slices(SHARED / DOMAINS[domain][0])) for c in a.crops.split(",")}):
                args = ["--domain", domain, "--crop", str(crop), "--seed", str(a.seed), "--threads", str(a.threads)]
                args += ["--minutes", str(a.minutes)] if a.minutes else ["--iters", str(a.iters)]
                r = run_child(Path(__file__), args)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with RESULTS.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
                print(f"{domain} crop {crop}: Dice {r['dice']:.3f} AJI {r['aji']:.3f} PQ {r['pq']:.3f} "
                      f"({r['steps']} steps, {r['fit_s']:.0f} s)", flush=True)
    render()


if __name__ == "__main__":
    main()
