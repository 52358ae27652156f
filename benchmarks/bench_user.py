#!/usr/bin/env python
"""The user-like table (issue 20): small crops, a few clicks on a few slices, the product's one-button defaults.

For each target domain and crop (a contiguous block of whole slices from the middle of the adaptation
volume): the source model, source + AdaBN (as the adaptation starts), then one adaptation per number of
clicks x time budget, run as `mito-wda adapt` runs it (settings from `auto_settings` for the crop, its
clicks and budget; 0 clicks = UDA, the same path). Clicks are simulated as a user gives them: n clicks on
min(5, ceil(n / 10)) slices spread evenly over the crop (10 on 1, 25 on 3, 50 on 5), each at the innermost
pixel of a randomly chosen true object (`simulate_clicks`). Every row is scored on the domain's test
block and records the label-free quality estimate from the held-out clicks beside the true Dice.

  lucchi: adapt on train_image.tif (80 slices), score on test_*.
  sbem:   adapt on cdeep3m_sbem/image.tif (20 slices: larger crops are capped at 20), score on val_*
          (10 slices). Sections of ~40 nm, so a click reaches fewer slices of its object.

--cross-views on: pseudo-labels from the xy, xz and yz views, as a user of a near-isotropic stack (Lucchi's
FIB-SEM) chooses them (the files carry no voxel size, so `auto` leaves them off).

    .venv/bin/python benchmarks/bench_user.py --domains lucchi,sbem --crops 16,32,80 --clicks 0,10,25,50 \\
        --minutes 3,10 --threads 2
    .venv/bin/python benchmarks/bench_user.py --render      # rebuild the docs from the saved results only

Each row runs in a fresh process and is appended to benchmarks/results/user_results.jsonl when it ends;
the section `user-like` of docs/benchmarks.md and docs/images/estimate_vs_dice.png are rebuilt from that file
(benchmarks/user_report.py).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, run_child, stamp  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "user_results.jsonl"
FIGURE = ROOT / "docs" / "images" / "estimate_vs_dice.png"
# name -> (adaptation image, labels, test image, test labels, description), paths under SHARED
DOMAINS = {
    "lucchi": ("lucchi/train_image.tif", "lucchi/train_labels.tif", "lucchi/test_image.tif",
               "lucchi/test_labels.tif", "Lucchi (FIB-SEM, ~5 nm isotropic): adapt on train, score on test"),
    "sbem": ("cdeep3m_sbem/image.tif", "cdeep3m_sbem/labels.tif", "cdeep3m_sbem/val_image.tif",
             "cdeep3m_sbem/val_labels.tif",
             "CDeep3M SBEM (5.9 nm in-plane, ~40 nm sections): adapt on image.tif, score on val_*"),
}
MAX_CLICKED_SLICES = 5


def clicked_slices(n_clicks: int, depth: int) -> list[int]:
    """The slices a user clicks n_clicks on: min(5, ceil(n / 10)) of the crop's depth, at the centres of
    equal parts of it (1 slice: the middle one)."""
    k = min(MAX_CLICKED_SLICES, math.ceil(n_clicks / 10), depth) if n_clicks > 0 else 0
    return [int((i + 0.5) * depth / k) for i in range(k)]


def central_block(depth: int, n: int) -> slice:
    """A contiguous block of n slices (at most depth) from the middle of a volume of depth slices."""
    n = min(n, depth)
    z0 = (depth - n) // 2
    return slice(z0, z0 + n)


def parse_overrides(pairs: list[str] | None) -> dict:
    """--set KEY=VALUE pairs -> AdaptSettings overrides (values read as JSON, else kept as text)."""
    from napari_mito_wda.core.adapt import AdaptSettings

    out = {}
    for pair in pairs or []:
        key, sep, val = pair.partition("=")
        if not sep or key not in AdaptSettings.__dataclass_fields__:
            sys.exit(f"--set takes KEY=VALUE with KEY an AdaptSettings field, got {pair!r}")
        try:
            out[key] = json.loads(val)
        except json.JSONDecodeError:
            out[key] = val
    return out


def n_slices(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return len(tif.series[0].pages)


def child(a) -> dict:
    import numpy as np
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adabn, adapt, simulate_clicks
    from napari_mito_wda.core.adapt.auto import AUTO_FIELDS, CROSS_VIEW_CHOICES, auto_settings
    from napari_mito_wda.core.adapt.flip_check import model_flip_agreement
    from napari_mito_wda.core.adapt.predict import predict_slices
    from napari_mito_wda.core.adapt.rounds import labelled_slices
    from napari_mito_wda.core.data.checkpoint import file_sha256, load_model
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.data.pixel_size import pixel_scale
    from napari_mito_wda.core.engine.device import cpu_has_native_bf16, pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    t_start = time.perf_counter()
    a.clicks = int(a.clicks)  # one number in a child (the parent's --clicks is a list)
    torch.set_num_threads(a.threads)
    dev = pick_device()
    img_p, lab_p, test_p, test_lab_p, _ = DOMAINS[a.domain]
    block = central_block(n_slices(SHARED / img_p), a.crop)
    vol, vol_lab = tifffile.imread(SHARED / img_p)[block], tifffile.imread(SHARED / lab_p)[block]
    n = a.test_slices
    test, test_lab = tifffile.imread(SHARED / test_p)[:n], tifffile.imread(SHARED / test_lab_p)[:n]
    loaded = load_model(None, device=dev.device)
    zs = clicked_slices(a.clicks, len(vol)) if a.kind == "adapt" else []
    clicks = simulate_clicks(vol_lab, seed=a.seed, slices=zs, max_total=a.clicks) if zs else None
    n_clicks = 0 if clicks is None else len(clicks)
    # As `mito-wda adapt --preset quick` builds its settings (the files carry no pixel size, none is given).
    minutes = float(a.minutes) if a.kind == "adapt" else None  # source and AdaBN: no budget
    auto, chosen = auto_settings(vol.shape, n_clicks, minutes, loaded.model.config.downsample,
                                 loaded.model.multiple, cross_views=CROSS_VIEW_CHOICES[a.cross_views])
    over = {"seed": a.seed} | {k: getattr(auto, k) for k in AUTO_FIELDS}
    if a.iters:
        over["max_iters"] = a.iters
    variant = parse_overrides(a.set)
    over |= variant
    settings = AdaptSettings.preset("quick", **over)
    out = {"kind": a.kind, "clicks_asked": a.clicks if a.kind == "adapt" else 0, "n_clicks": n_clicks,
           "clicked_slices": [int(z) + block.start for z in zs],
           "n_clicked_slices": len(zs), "steps": 0, "kept_step": None, "quality": None, "estimate": None,
           "centring": None, "flip_agreement": None, "message": "", "settings": settings.to_dict(), "chosen": chosen,
           "overrides": variant}
    t0 = time.perf_counter()
    f = loaded.model.config.downsample
    images = [to_working(normalize_slice(s), f, pixel_scale(None, loaded.pixel_size_nm)).astype(np.float32)
              for s in vol]
    if a.kind == "adabn":  # what the adaptation does first (loop.py), and keeps without clicks unless beaten
        out["adabn_weight"] = adabn(loaded.model, images, dev, settings.crop, seed=settings.seed,
                                    n0=settings.adabn_n0)
    if a.kind in ("source", "adabn"):  # the label-free estimate the adaptation reports, on its labelled slices
        label_zs = labelled_slices(len(images), settings.label_slices)
        out["flip_agreement"] = model_flip_agreement(loaded.model, images, label_zs, dev,
                                                     predict_slices(loaded.model, images, label_zs, dev)[0])
    elif a.kind == "adapt":
        last = None
        for rep in adapt(vol, clicks, loaded, settings, dev=dev):
            last = rep
        q = last.quality or {}
        out |= {"steps": last.step, "kept_step": last.kept_step, "quality": last.quality,
                "estimate": q.get("heldout_hit_rate"), "centring": q.get("heldout_centring"),
                "flip_agreement": q.get("flip_agreement"),
                "message": last.message}
    adapt_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    m = evaluate_volume(segment_volume(test, loaded, dev).labels, test_lab, per_slice=False)
    return out | {k: m[k] for k in ("dice", "iou", "aji", "pq")} | stamp() | {
        "domain": a.domain, "crop": len(vol), "crop_z0": block.start, "seed": a.seed,
        "minutes": minutes, "max_iters": a.iters if a.kind == "adapt" else None,
        "test_slices": len(test), "adapt_s": round(adapt_s, 1), "score_s": round(time.perf_counter() - t1, 1),
        "child_s": round(time.perf_counter() - t_start, 1), "threads": a.threads, "concurrent": a.concurrent,
        "run_iters": a.iters, "device": dev.describe(), "native_bf16": cpu_has_native_bf16(),
        "model": Path(loaded.path).name, "model_sha256": file_sha256(loaded.path)}


def jobs(a) -> list[dict]:
    """The rows asked for, in order: per domain and crop, source and AdaBN, then clicks x budgets."""
    out = []
    for domain in a.domains.split(","):
        depth = n_slices(SHARED / DOMAINS[domain][0])
        asked = [int(c) for c in a.crops.split(",")]
        for crop in sorted({min(c, depth) for c in asked}):
            base = {"domain": domain, "crop": crop, "crops_asked": [c for c in asked if min(c, depth) == crop]}
            if not a.no_baselines:
                out += [base | {"kind": "source"}, base | {"kind": "adabn"}]
            out += [base | {"kind": "adapt", "clicks": int(n), "minutes": float(m)}
                    for n in a.clicks.split(",") for m in a.minutes.split(",")]
    return out


def run_rows(a) -> list[dict]:
    """Run the rows asked for; returns the jobs that failed."""
    lock = threading.Lock()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    def one(job: dict) -> None:
        args = ["--domain", job["domain"], "--crop", str(job["crop"]), "--kind", job["kind"],
                "--clicks", str(job.get("clicks", 0)), "--seed", str(a.seed), "--threads", str(a.threads),
                "--concurrent", str(a.concurrent)]
        if job["kind"] == "adapt":
            args += ["--minutes", str(job["minutes"])]
        if a.iters:  # recorded with every row of the run (it caps the adapting ones)
            args += ["--iters", str(a.iters)]
        if a.test_slices:
            args += ["--test-slices", str(a.test_slices)]
        for pair in a.set or []:
            args += ["--set", pair]
        args += ["--cross-views", a.cross_views]
        t0 = time.perf_counter()
        r = run_child(Path(__file__), args) | {"crops_asked": job["crops_asked"]}
        r["row_s"] = round(time.perf_counter() - t0, 1)  # end to end: process start, adaptation, scoring
        with lock:
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            est = "-" if r["estimate"] is None else f"{r['estimate']:.2f}"
            if r.get("flip_agreement") is not None:
                est += f", flip agreement {r['flip_agreement']:.3f}"
            print(f"{r['domain']} crop {r['crop']} {r['kind']} {r['n_clicks']} clicks on {r['n_clicked_slices']} "
                  f"slices, {r['minutes'] or '-'} min: Dice {r['dice']:.3f} AJI {r['aji']:.3f} PQ {r['pq']:.3f}, "
                  f"estimate {est} ({r['steps']} it, adapt {r['adapt_s']:.0f} s, score {r['score_s']:.0f} s, "
                  f"row {r['row_s']:.0f} s)", flush=True)

    failed = []

    def guarded(job: dict) -> None:  # a failed row is said at once; the other rows still run
        try:
            one(job)
        except RuntimeError as exc:
            print(exc, file=sys.stderr, flush=True)
            failed.append(job)

    with ThreadPoolExecutor(max_workers=max(1, a.concurrent)) as pool:
        list(pool.map(guarded, jobs(a)))
    return failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--domain", help=argparse.SUPPRESS)
    ap.add_argument("--crop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=("source", "adabn", "adapt"), help=argparse.SUPPRESS)
    ap.add_argument("--domains", default="lucchi,sbem", help="lucchi and/or sbem")
    ap.add_argument("--crops", default="16,32,80", help="slices per crop (capped at the volume's depth)")
    ap.add_argument("--clicks", default="0,10,25,50", help="clicks per adaptation (0 = UDA)")
    ap.add_argument("--minutes", default="3,10", help="time budgets of the adaptation, one row each")
    ap.add_argument("--seed", type=int, default=0, help="seed of the clicks and of the adaptation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per row")
    ap.add_argument("--concurrent", type=int, default=1, help="rows running side by side")
    ap.add_argument("--test-slices", type=int, default=None, help="score on the first N test slices (default all)")
    ap.add_argument("--iters", type=int, default=None, help="also cap each adaptation at N iterations (smoke tests)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the source and AdaBN rows of each crop")
    ap.add_argument("--cross-views", choices=("auto", "on", "off"), default="auto",
                    help="as `mito-wda adapt --cross-views` (auto: off here, the files carry no voxel size; on: "
                         "the user says the stack is near-isotropic)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="an AdaptSettings override for every adapting row (a variant: kept out of the main table)")
    ap.add_argument("--render", action="store_true", help="only rebuild the docs from the saved results")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return
    failed: list[dict] = []
    if not a.render:
        if (min(int(c) for c in a.crops.split(",")) < 1 or min(int(n) for n in a.clicks.split(",")) < 0
                or min(float(m) for m in a.minutes.split(",")) <= 0):
            sys.exit("--crops takes slice counts of 1 or more, --clicks counts of 0 or more, --minutes budgets above 0")
        for d in a.domains.split(","):
            if d not in DOMAINS:
                sys.exit(f"unknown domain {d!r}; choose from {', '.join(DOMAINS)}")
            missing = [p for p in DOMAINS[d][:4] if not (SHARED / p).exists()]
            if missing:
                sys.exit(f"needs {', '.join(str(SHARED / p) for p in missing)}")
        parse_overrides(a.set)  # a bad pair stops here, before any row runs
        failed = run_rows(a)
    from user_report import render

    render()
    if not a.render and failed:
        sys.exit(f"{len(failed)} row(s) failed: " + "; ".join(f"{j['domain']} crop {j['crop']} {j['kind']} "
                                                            f"{j.get('clicks', '')}" for j in failed))


if __name__ == "__main__":
    main()
