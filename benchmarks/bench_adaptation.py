#!/usr/bin/env python
"""Adaptation VNC III -> Lucchi: adapt on Lucchi train (clicks simulated), score on Lucchi test.

Every row runs in a fresh process with the same wall-clock budget on this machine: source only,
source + AdaBN, UDA (0 clicks), WDA with 15% clicks (authors' protocol), WDA with 50 clicks on 5
slices, the naive click baseline, and the ablations (one component off at a time).

    .venv/bin/python benchmarks/bench_adaptation.py --minutes 8 [--rows wda15,uda,...] [--seeds 0,1,2]
    .venv/bin/python benchmarks/bench_adaptation.py --quick      # 2-minute budget, 20 test slices

Results are appended to benchmarks/results/adaptation_results.jsonl as they come (a stopped run loses
nothing) and the table in docs/benchmarks.md is rebuilt from that file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, markdown_table, peak_rss_mb, run_child, update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "adaptation_results.jsonl"
CACHE = ROOT / "benchmarks" / "cache"
# Bumped when the adaptation code changes what a row measures; results without it are version 1.
# 2: the detector selects instances only once it finds the clicks (before that: clicked objects only);
#    AdaBN and every round are kept only when the label-free score does not fall below the starting model's.
# 3: when the starting model's detector does not find the clicks, the segmentation's confidence ranks the
#    instances IPL admits for the whole run (judged once: trained on the clicks, it finds them anyway).
# 4: the label-free selection score measures how well the clicks sit at the centres of their
#    components instead of whether they are covered; AdaBN is always kept again (the v2-v3 check is off).
# 5: back to clicked objects only while the detector misses the clicks (v3-v4 ranking by segmentation
#    over-segmented: now the "seg_rank" ablation).
# 6: while the detector misses the clicks, its heat no longer vetoes background (as in v2, whose higher
#    scores came from this, not from its selection score: the v5 traces show both scores pick alike).
# 7-9 were measured as defaults and became an option (link_3d, off), stored under the rows linked_fg,
#    unreached_any and unreached_bg; the default went back to what v6 did.
#    7: clicks vouch for their object across slices; every linked object mito, unreached ones background;
#    8: linked objects not labelled mito; 9: unreached objects background only if they cross >= 5 clicked slices.
# 10: a click also keeps background off its spot (12 working px) on the 8 slices either side
#    (AdaptSettings.click_reach_z); measured first as the option rows reach8 / reach8_50 / reach8_15min,
#    whose results are stored under wda15 / wda50 / wda15_15min (same settings as this default).
# 11: IPL background only where the starting model, before AdaBN, gave p < 0.5 (AdaptSettings.source_veto);
#    measured first as the option row src_veto, whose results are stored under wda15 (same settings).
# 12: the source veto shrunk by 2 working px (AdaptSettings.source_veto_erode=2), so object borders are taught
#    background again; measured first as the option row veto_core2, whose results are stored under wda15.
# 13: 3 stage-2 rounds instead of 2 (AdaptSettings.stage2_rounds=3): stage 1 gets a quarter of the budget and the
#    pseudo-labels are renewed once more; measured first as the option row s2x3, stored under wda15.
# 14: 5 stage-2 rounds instead of 3 (AdaptSettings.stage2_rounds=5): stage 1 gets a sixth of the budget;
#    measured first as the option row s2x5, stored under wda15.
# The rows of options that measured no gain (seg_rank, src_off_s2, heat_veto, trust_rounds, unreached_bg,
# unreached_any, linked_fg, bg005) left ROWS with their options (docs/journal.md, "Options removed in wave 2");
# their results stay in the raw results file.
# 15: 20% of the clicks (none below 5) held out: never trained on, they alone judge the kept model
#    (AdaptSettings.heldout_share); AdaBN statistics blended with the source's by n / (n + 3.2e6) target
#    working px (adabn_n0; 80 Lucchi slices: weight 0.83); without clicks a trained model must beat AdaBN's
#    score by 0.5 (uda_margin). Issue 20; the evidence: benchmarks/bench_adabn_blend.py, docs/journal.md.
# 16: the shipped model's centre head retrained on frozen features (make_source_model.py --det-head-only,
#    detection loss weighted 1 + 20 * target): its heat at the clicks reaches the trust level, so its peaks
#    select pseudo-instances and cross-teaching runs; the source replay keeps that detection loss; instances
#    split a blob only at peaks prominent by 0.3. Source, AdaBN and supervised rows count per version from
#    here too (the shipped model changed).
# 17: detection peaks no longer select pseudo-instances (AdaptSettings.peak_selection off): with the v16
#    detector trusted, the full method (row wda15 at v16, stored under ipl_peaks since) scored 0.794 against
#    0.859 without target detection (no_det). IPL = the clicked components, as it ran before v16 while the
#    detector missed the clicks. Rows marked [v16 code] ran with peaks selecting where the detector passed.
# 18: with held-out clicks the kept model is judged on their centring alone, not with the heads' agreement
#    (v17, seed 0: the agreement kept a stage-1 model, Dice 0.761, over a stage-2 one of 0.855).
# 19: back to v17's judge (held-out centring alone kept the unadapted start, v18: Dice 0.747), and a model
#    fresh from stage 1 is no candidate (it trains no target segmentation; v17 kept one at 0.761).
METHOD_VERSION = 19

# Rows measured under the issue's own budget (15 minutes, alone on the machine), whatever the table's.
OWN_BUDGET = ("wda15_15min", "crop192_15min", "wda15_cv_15min")
OWN_COMMAND = "--rows ROW --minutes 15 --threads 2"

# name -> (clicks, settings overrides, description)
ROWS = {
    "source": (None, None, "source only (shipped VNC III model)"),
    "adabn": ("none", {"adabn_only": True}, "source + AdaBN (BatchNorm statistics of the target, no training)"),
    "uda": ("none", {}, "UDA: full method, 0 clicks"),
    "wda15": ("15%", {}, "WDA: full method, 15% clicks"),
    "wda15_15min": ("15%", {}, "WDA: full method, 15% clicks, 15-minute budget, alone on the machine (2 threads)"),
    "wda15_600": ("15%", {"max_iters": 600}, "WDA: full method, 15% clicks, 600 iterations instead of 390"),
    "wda50": ("50", {}, "WDA: full method, 50 clicks on 5 slices"),
    # Smaller crops make an iteration cheaper (2 threads: 256 px 1.38 s, 192 px 0.80 s, 160 px 0.63 s);
    # these rows give each crop the iterations that fit the 15-minute budget alone on this machine.
    "crop192_1000": ("15%", {"crop": 192, "max_iters": 1000},
                     "variant: crops of 192 px, 1000 iterations (what fits 15 minutes at that crop), 15%"),
    "crop192_15min": ("15%", {"crop": 192},
                      "variant: crops of 192 px, 15-minute budget, alone on the machine (2 threads), 15%"),
    "crop160_1300": ("15%", {"crop": 160, "max_iters": 1300},
                     "variant: crops of 160 px, 1300 iterations (what fits 15 minutes at that crop), 15%"),
    "supervised": ("labels", {}, "supervised upper bound: source model fine-tuned on all Lucchi train labels"),
    "naive": ("15%", {"pseudo": "naive", "cross_teaching": False, "contrastive": False, "stage1_rounds": 0,
                      "stage2_rounds": 3}, "naive: click disks = mito, p < 0.05 = background, 15% clicks"),
    "no_con": ("15%", {"contrastive": False}, "ablation: no contrastive loss, 15%"),
    "no_ct": ("15%", {"cross_teaching": False}, "ablation: no cross-teaching (detection targets = clicks), 15%"),
    "pixel": ("15%", {"pseudo": "pixel"}, "ablation: pixel-confidence pseudo-labels instead of IPL, 15%"),
    "ipl_peaks": ("15%", {"peak_selection": True},
                  "variant: detection peaks select pseudo-instances too (the paper's IPL, the default of v16), 15%"),
    "no_det": ("15%", {"detection": False}, "ablation: no target detection (IPL = clicked components only), 15%"),
    "s2only": ("15%", {"stage1_rounds": 0, "stage2_rounds": 3},
               "variant: no stage 1 (3 rounds of stage 2: segmentation pseudo-labels from the start), 15%"),
    "veto03": ("15%", {"source_veto": 0.3},
               "variant: IPL background only where the starting model (before AdaBN) gave p < 0.3 (default 0.5), 15%"),
    "veto_core2": ("15%", {"source_veto_erode": 2},
                   "variant: the source veto shrunk by 2 working px (object borders still taught background), 15%"),
    "s2x2": ("15%", {"stage2_rounds": 2},
             "variant: 2 stage-2 rounds (the authors'; stage 1 gets a third of the budget), 15%"),
    "s2x3": ("15%", {"stage2_rounds": 3},
             "variant: 3 stage-2 rounds (v13; stage 1 gets a quarter of the budget), 15%"),
    "s2x4": ("15%", {"stage2_rounds": 4},
             "variant: 4 stage-2 rounds (stage 1 gets a fifth of the budget), 15%"),
    "s2x5": ("15%", {"stage2_rounds": 5},
             "variant: 5 stage-2 rounds (stage 1 gets a sixth of the budget), 15%"),
    "lr1e3": ("15%", {"lr": 1e-3}, "variant: learning rate 1e-3 instead of 5e-4, 15%"),
    "uda_cv": ("none", {"cross_views": True},
               "variant: UDA with pseudo-labels from the xy, xz and yz views (cross_views), 0 clicks"),
    "wda15_cv": ("15%", {"cross_views": True},
                 "variant: pseudo-labels from the xy, xz and yz views (cross_views), 15%"),
    "wda15_cv_15min": ("15%", {"cross_views": True},
                       "variant: cross_views, 15% clicks, 15-minute budget, alone on the machine (2 threads)"),
    "no_adabn": ("15%", {"adabn": False}, "ablation: no AdaBN at the start, 15%"),
    "wda15_mixed_bn": ("15%", {"target_bn_stats": False},
                       "ablation: BatchNorm running statistics from source and target batches, 15%"),
    "naive_mixed_bn": ("15%", {"pseudo": "naive", "cross_teaching": False, "contrastive": False,
                               "stage1_rounds": 0, "stage2_rounds": 3, "target_bn_stats": False},
                       "naive, BatchNorm running statistics from source and target batches"),
}


def child(row: str, minutes: float, seed: int, test_slices: int, threads: int, concurrent: int,
          iters: int | None = None) -> dict:
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adabn, adapt
    from napari_mito_wda.core.adapt.points import simulate_clicks
    from napari_mito_wda.core.data.checkpoint import load_checkpoint
    from napari_mito_wda.core.data.io import normalize_slice
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.inference import to_working
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    torch.set_num_threads(threads)
    dev = pick_device()
    clicks_kind, over, _ = ROWS[row]
    train = tifffile.imread(SHARED / "lucchi" / "train_image.tif")
    train_lab = tifffile.imread(SHARED / "lucchi" / "train_labels.tif")
    test = tifffile.imread(SHARED / "lucchi" / "test_image.tif")[:test_slices]
    test_lab = tifffile.imread(SHARED / "lucchi" / "test_labels.tif")[:test_slices]
    loaded = load_checkpoint(None, device=dev.device)
    clicks = None
    if clicks_kind == "15%":
        clicks = simulate_clicks(train_lab, 0.15, seed=seed)
    elif clicks_kind == "50":
        zs = list(range(5, train.shape[0], train.shape[0] // 5))[:5]
        clicks = simulate_clicks(train_lab, seed=seed, slices=zs, max_total=50)
    t0 = time.perf_counter()
    steps, probe_s, kept_step, candidates = 0, 0.0, None, []

    def probe(rep) -> float:
        """Score the model at a selection point on every 2nd test slice (time excluded from adapt_s)."""
        t = time.perf_counter()
        was_training = loaded.model.training
        m = evaluate_volume(segment_volume(test[::2], loaded, dev).labels, test_lab[::2], per_slice=False)
        loaded.model.train(was_training)
        candidates.append({"stage": rep.stage, "step": rep.step, "score": rep.score,
                           "dice": m["dice"], "aji": m["aji"], "pq": m["pq"]})
        print("candidate", json.dumps(candidates[-1]), flush=True)
        return time.perf_counter() - t
    if clicks_kind is None:
        pass
    elif clicks_kind == "labels":
        from napari_mito_wda.core.training.supervised import FitSettings, fit, prepare_slices

        planes = prepare_slices(train, train_lab, loaded.model.config.downsample, 6.0)
        fit_settings = FitSettings(minutes=minutes, lr=1e-3, seed=seed, max_iters=iters or 100_000)
        for rep in fit(planes, fit_settings, model=loaded.model, dev=dev):
            steps = rep.step
    elif over.get("adabn_only"):
        f = loaded.model.config.downsample
        adabn(loaded.model, [to_working(normalize_slice(s), f) for s in train], dev, 256, seed=seed)
    else:
        settings = AdaptSettings(**{"minutes": minutes, "seed": seed, "max_iters": iters,
                                    "click_fraction": 0.15 if clicks_kind == "15%" else None} | over)
        for rep in adapt(train, clicks, loaded, settings, dev=dev):
            steps = rep.step
            # Probes only under an iteration budget: under a time budget their time would be taken from training.
            if iters and (rep.stage == "label" or (rep.stage == "train" and rep.step == settings.max_iters)):
                probe_s += probe(rep)
            elif rep.stage == "done":
                kept_step = rep.kept_step
    adapt_s = time.perf_counter() - t0 - probe_s
    seg = segment_volume(test, loaded, dev)
    m = evaluate_volume(seg.labels, test_lab, per_slice=False)
    # The same model with flip averaging at inference (the widget's and CLI's option; 4x the inference time).
    m_flips = evaluate_volume(segment_volume(test, loaded, dev, flips=True).labels, test_lab, per_slice=False)
    # Kept for later analysis of the adapted model without adapting again (benchmarks/cache is not committed).
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(loaded.model.state_dict(), CACHE / f"adapted_{row}_seed{seed}.pt")
    from napari_mito_wda.core.data.provenance import provenance

    prov = provenance()
    return m | {"commit": prov["commit"], "date": prov["date"][:10], "row": row, "seed": seed, "minutes": minutes,
                "adapt_s": adapt_s, "steps": steps,
                "n_clicks": 0 if clicks is None else len(clicks), "test_slices": test_slices,
                "peak_rss_mb": peak_rss_mb(), "device": dev.describe(), "threads": threads,
                "concurrent": concurrent, "max_iters": iters, "method": METHOD_VERSION,
                "kept_step": kept_step, "candidates": candidates,
                "flips": {k: m_flips[k] for k in ("dice", "iou", "aji", "pq")}}


def _table_row(label: str, rs: list[dict]) -> list:
    import numpy as np

    def cell(k):
        v = np.array([r[k] for r in rs], float)
        return f"{v.mean():.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else "")

    flips = [r["flips"]["dice"] for r in rs if "flips" in r]
    return [label, cell("dice"), cell("iou"), cell("dice_mean"), cell("aji"), cell("pq"),
            f"{np.mean(flips):.3f} ({len(flips)})" if flips else "-",
            f"{np.mean([r['adapt_s'] for r in rs]) / 60:.1f}", int(np.mean([r["steps"] for r in rs])),
            rs[0]["n_clicks"], len(rs)]


def render(results: list[dict]) -> str:

    from napari_mito_wda.core.data.provenance import provenance

    rows, own_rows, shown = [], [], []
    for name, (_, _, desc) in ROWS.items():
        # A row that adapts shows its latest measurement only: the runs of the newest code version that
        # measured it (older versions' rows: the raw results and docs/journal.md). Source, AdaBN-only and
        # supervised do not run the adaptation loop: up to version 15 all their runs count whatever the
        # version; from 16 (a new shipped model) their latest version only.
        mine = [r for r in results if r["row"] == name]
        if not mine:
            continue
        ver = max(r.get("method", 1) for r in mine)
        if name in ("source", "adabn", "supervised") and ver < 16:
            ver = None
        rs = [r for r in mine if ver is None or r.get("method", 1) == ver]
        label = (f"{desc} [the shipped model before v16]" if ver is None and METHOD_VERSION >= 16
                 else desc if ver == METHOD_VERSION else f"{desc} [v{ver} code]")
        (own_rows if name in OWN_BUDGET else rows).append(_table_row(label, rs))
        shown += rs
    prov = provenance()
    # The shared budget is that of the rows not measured under their own.
    r0 = next((r for r in results if r["row"] not in OWN_BUDGET), results[0])
    # Older versions ran at many commits: name those of the current code, the rest are in the raw results.
    commits = ", ".join(sorted({r.get("commit", "?") for r in shown if r.get("method") == METHOD_VERSION}))
    dates = ", ".join(sorted({r.get("date", "?") for r in shown}))
    if r0.get("max_iters"):
        budget = (f"{r0['max_iters']} training iterations per row (an iteration budget, so that CPU contention "
                  f"cannot shrink it; the wall time it took is in the table), on {r0['device']}")
        cmd_budget = f"--iters {r0['max_iters']} --minutes {r0['minutes']:g}"
        budget_short = f"{r0['max_iters']} iterations"
    else:
        budget = f"{r0['minutes']} min of adaptation per row on {r0['device']}"
        cmd_budget = f"--minutes {r0['minutes']:g}"
        budget_short = f"{r0['minutes']:g} minutes"
    own = f"`.venv/bin/python benchmarks/bench_adaptation.py {OWN_COMMAND}`, one row at a time"
    head = ["run (Lucchi test)", "Dice", "IoU", "Dice (slice mean)", "AJI", "PQ",
            "Dice, flip-averaged inference (runs)", "adapt min", "iterations", "clicks", "runs"]
    table, own_table = markdown_table(head, rows), markdown_table(head, own_rows)
    return f"""## Adaptation VNC III -> Lucchi (adapt on train, score on test)

Two tables: the issue's own budget (15 minutes of adaptation, each row alone on this machine with 2
threads: {own}), then every row under one budget of {budget}. Scored on the first {r0['test_slices']}
Lucchi test slices (pooled Dice/IoU; AJI/PQ per slice on 2D components; the flip column scores the same
adapted model with the 4-flip averaging that `mito-wda predict --flips` and the widget offer; "-" where
it was not measured). Clicks simulated at the innermost
pixel of 15% of the 2D objects of every train slice (fixed seed), or 50 clicks on 5 slices. ± is the standard
deviation over runs (seeds 0, 1, 2; a seed run twice counts twice); rows with one run are single measurements.
Every adapting row starts with AdaBN and lets only target batches update the BatchNorm running statistics.
The naive row (click disks = mito) trains with the same loop, AdaBN and source replay; only its pseudo-labels
differ. Each row shows its latest measurement: the current adaptation is version {METHOD_VERSION}, and a row
marked [vN code] was last measured with version N (METHOD_VERSION in the script says what changed; the
rows of earlier versions are in `docs/journal.md` and the raw results).

**The issue's budget: 15 minutes alone on this machine.**

{own_table}

**One budget for every row: {budget_short}.**

{table}

Measured {dates} on {prov['machine']}, the rows of the current code (v{METHOD_VERSION}) at commits {commits or '-'}
(each result's commit is in the raw results); the second table with {r0.get('threads', 2)} torch
thread(s) per row, {r0.get('concurrent', 1)} row(s) running side by side \
(the iterations column shows what the budget bought).
Reproduce:
`.venv/bin/python benchmarks/bench_adaptation.py {cmd_budget} --test-slices {r0['test_slices']} \
--threads {r0.get('threads', 2)}`
(raw results: `benchmarks/results/adaptation_results.jsonl`).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--row", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true", help="only rebuild the docs table from the saved results")
    ap.add_argument("--rows", default="source,adabn,uda,wda15,wda50,naive,no_con,no_ct,pixel,no_det")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--test-slices", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrent", type=int, default=1,
                    help="how many benchmark processes run side by side (recorded with the results)")
    ap.add_argument("--iters", type=int, default=None,
                    help="also cap every row at this many iterations (a budget that CPU contention cannot shrink)")
    ap.add_argument("--quick", action="store_true", help="2-minute budget, 20 test slices")
    a = ap.parse_args()
    if a.quick:
        a.minutes, a.test_slices = 2.0, 20
    if a.child:
        print(json.dumps(child(a.row, a.minutes, a.seed, a.test_slices, a.threads, a.concurrent, a.iters)))
        return
    if not (SHARED / "lucchi" / "train_image.tif").exists():
        sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for row in [] if a.render else a.rows.split(","):
        if row not in ROWS:
            sys.exit(f"unknown row {row!r}; choose from {', '.join(ROWS)}")
        for seed in (int(s) for s in a.seeds.split(",")):
            r = run_child(Path(__file__), ["--row", row, "--minutes", str(a.minutes), "--seed", str(seed),
                                           "--test-slices", str(a.test_slices), "--threads", str(a.threads),
                                           "--concurrent", str(a.concurrent)]
                          + (["--iters", str(a.iters)] if a.iters else []))
            with open(RESULTS, "a") as fh:
                fh.write(json.dumps(r) + "\n")
            print(f"{row} seed {seed}: Dice {r['dice']:.3f} AJI {r['aji']:.3f} PQ {r['pq']:.3f} "
                  f"({r['adapt_s'] / 60:.1f} min, {r['steps']} steps)", flush=True)
    results = [json.loads(line) for line in open(RESULTS)]
    iters, minutes, threads = a.iters, a.minutes, a.threads
    if not a.render and all(row in OWN_BUDGET for row in a.rows.split(",")):
        # Only rows under their own budget ran: the shared table keeps the budget it was last written with.
        last = next((r for r in reversed(results) if r["row"] not in OWN_BUDGET), None)
        if last is not None:
            iters, minutes, threads = last.get("max_iters"), last["minutes"], last.get("threads", 2)
    # One table per budget: an iteration cap when given (contention cannot shrink it), else the minutes.
    same = [r for r in results if r["test_slices"] == a.test_slices and (r["row"] in OWN_BUDGET or (
            r.get("max_iters") == iters and (iters or (r["minutes"] == minutes and r.get("threads", 2) == threads))))]
    body = render(same)
    update_section("adaptation", body)
    print(body)


if __name__ == "__main__":
    main()
