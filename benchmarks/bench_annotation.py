#!/usr/bin/env python
"""The annotation loop with a simulated user: suggested clicks answered from ground truth (VNC III -> Lucchi).

Start: `--start-clicks` clicks simulated on Lucchi train (round-robin over 5 slices), one adaptation.
Then `--rounds` times: the current model predicts Lucchi train, `suggest_points` proposes `-n` places and
an oracle answers them from the train labels (inside a mitochondrion: a positive click at its innermost
pixel, as a user clicks the centre; elsewhere: a negative click where it was suggested), and the model
adapts further (resumed, AdaBN off) on all the answers so far. A negative click that landed on a predicted
object is "removed" once the adapted model predicts no object under it (the issue's target: >= 80%).
The "random" arm spends the same number of clicks on random objects (positive only), the answers a user
gives without suggestions; the "false" arm spends them as "not mitochondria" clicks on false objects (a
predicted object of which less than 10% is a true mitochondrion, at its innermost pixel), what a user
proofreading the prediction does. Each state is scored on Lucchi test: Dice against the number of answered clicks.

    .venv/bin/python benchmarks/bench_annotation.py --iters 130 --rounds 3 -n 20 --threads 2 [--arms suggest,random]

`--orthoplane-check` also scores each state on all 80 test slices, as xy slices and with orthoplane inference
(the product's default where the voxel size is known to be near-isotropic). Each row records the removal split
by the negative click's role in the run (trained on, or held out to pick the kept model).

Results are appended to benchmarks/results/annotation_results.jsonl as they come; the table of
docs/benchmarks.md (section `annotation`) is rebuilt from that file (`--render` only rebuilds it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, markdown_table, pyplot, save_figure, stamp, update_section  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "annotation_results.jsonl"
CURVE = ROOT / "docs" / "images" / "annotation_curve.png"


def oracle(points, gt):
    """(positives, negatives) answers of the suggested (z, y, x) points from instance labels."""
    from scipy import ndimage as ndi

    from napari_mito_wda.core.adapt.points import innermost_point

    pos, neg = [], []
    for z, y, x in points.astype(int):
        if gt[z, y, x] > 0:
            comp, _ = ndi.label(gt[z] > 0)
            pos.append((z, *innermost_point(comp == comp[y, x])))
        else:
            neg.append((z, y, x))
    return pos, neg


def false_object_clicks(labels, gt, n: int, seed: int, existing: list[tuple]) -> list[tuple]:
    """n negative clicks (z, y, x) at the innermost pixel of random false predicted 2D objects (< 10% of it
    on a true mitochondrion), none on an object that already holds a click."""
    import numpy as np
    from scipy import ndimage as ndi

    from napari_mito_wda.core.adapt.points import innermost_point

    taken = {(int(z), int(labels[int(z), int(y), int(x)])) for z, y, x in existing}
    cands = []
    for z in range(labels.shape[0]):
        ids = np.unique(labels[z][labels[z] > 0])
        if not len(ids):
            continue
        on_true = ndi.mean(gt[z] > 0, labels[z], ids)
        cands += [(z, int(i)) for i, share in zip(ids, on_true) if share < 0.1 and (z, int(i)) not in taken]
    rng = np.random.default_rng(seed)
    picked = [cands[k] for k in rng.permutation(len(cands))[:n]]
    return [(z, *innermost_point(labels[z] == i)) for z, i in picked]


def removal_now(points: list[tuple], image, loaded, dev, negatives=(), positives=(), gt=None) -> tuple:
    """(learnt, shown, rule) for the negative clicks `points` (z, y, x) that landed on a predicted object.

    learnt: no object under each click in the model's prediction; shown: none in the instances the user is
    shown, where `drop_negated` leaves out the objects under all `negatives` (a positive click of `positives`
    on one spares it); rule: what the rule cost on those slices (the share of the true mitochondrion pixels,
    from `gt`, that it dropped; the objects it spared)."""
    import numpy as np

    from napari_mito_wda.core.adapt.negatives import drop_negated
    from napari_mito_wda.core.engine.segment import segment_volume

    if not points:
        return [], [], {}
    zs = sorted({p[0] for p in points})
    labels = segment_volume(image[zs], loaded, dev).labels  # only the slices that hold a negative click
    at = {z: k for k, z in enumerate(zs)}
    learnt = [bool(labels[at[z], y, x] == 0) for z, y, x in points]

    def local(clicks):  # the clicks of those slices, re-indexed to them
        return np.array([(at[c[0]], c[1], c[2]) for c in clicks if c[0] in at], float).reshape(-1, 3)

    shown = labels.copy()
    _, n_spared, _ = drop_negated(shown, local(negatives), local(positives))
    rule = {"n_spared": n_spared}
    if gt is not None:
        true = gt[zs] > 0
        rule["rule_true_lost"] = round(float((true & (labels > 0) & (shown == 0)).sum() / max(1, true.sum())), 4)
    return learnt, [bool(shown[at[z], y, x] == 0) for z, y, x in points], rule


def neighbours(points: list[tuple], labels, gt, reach: int = 1) -> list[tuple[tuple, float]]:
    """The same (y, x) of each negative click (z, y, x) on the slices within `reach` of its own, where the
    prediction at click time has an object: (place, that object's share on a true mitochondrion). A false
    object goes on over nearby slices, where the user sees it again as they scroll and the rule does not
    reach; the shares say how often a rule that dropped the object at the same place there would be wrong."""
    places = [(zz, y, x) for z, y, x in points for zz in range(max(0, z - reach), min(len(labels), z + reach + 1))
              if zz != z and labels[zz, y, x] > 0]
    return list(zip(places, true_shares(places, labels, gt)))


def gone_share(flags: list[bool]) -> float | None:
    """The share of True in `flags` (3 decimals), None when there are none."""
    return round(sum(flags) / len(flags), 3) if flags else None


def removal_by_role(on_object: list[tuple], gone: list[bool], negatives: list[tuple], settings, shape) -> dict:
    """The removal split by the role the adaptation gave each negative click: trained on, or held out (never
    trained on: it picks the kept model; `ClickSplit` with the loop's seed, so the same split as the run's)."""
    import numpy as np

    from napari_mito_wda.core.adapt.heldout import ClickSplit
    from napari_mito_wda.core.adapt.points import validate_points

    if not negatives:
        return {}
    pts, _ = validate_points(np.array(negatives, float), shape)  # as the loop reads them (duplicates merged)
    _, held = ClickSplit(settings.heldout_share, settings.seed + 1).split(pts)
    held_keys = {tuple(np.round(p, 1)) for p in held}
    out = {}
    for role, want in (("trained", False), ("heldout", True)):
        mine = [g for c, g in zip(on_object, gone) if (tuple(np.round(np.array(c, float), 1)) in held_keys) is want]
        out |= {f"n_false_{role}": len(mine), f"false_removed_{role}": gone_share(mine)}
    return out


def true_shares(points: list[tuple], labels, gt) -> list[float]:
    """For each negative click (z, y, x) on a predicted object: the share of that 2D object on a true
    mitochondrion, at click time. The oracle answers "not one" from the clicked pixel alone, so a click at
    the innermost pixel of two merged mitochondria, or on an over-grown edge, lands on an object that is
    mostly mitochondrion: the model is right to keep it."""
    out = []
    for z, y, x in points:
        obj = labels[z] == labels[z, y, x]
        out.append(round(float((gt[z][obj] > 0).mean()), 3))
    return out


def removal_by_kind(gone: list[bool], shares: list[float], false_below: float = 0.1) -> dict:
    """The removal split by what the clicked object was: false (< 10% on a true mitochondrion, the "false"
    arm's definition) or partly a mitochondrion."""
    out = {}
    for kind, want in (("false_obj", True), ("mixed_obj", False)):
        mine = [g for g, sh in zip(gone, shares) if (sh < false_below) is want]
        out |= {f"n_{kind}": len(mine), f"removed_{kind}": gone_share(mine)}
    return out


def click_totals(args) -> list[int]:
    """Answered clicks after each round: `--schedule`, else the start and `-n` more per round."""
    if args.schedule:
        totals = [int(v) for v in args.schedule.split(",")]
        if totals != sorted(set(totals)) or totals[0] < 1:
            sys.exit(f"--schedule must rise from at least 1: {args.schedule}")
        return totals
    return [args.start_clicks + k * args.n for k in range(args.rounds + 1)]


def orthoplane_scores(test, test_gt, loaded, dev) -> dict:
    """The same model on the whole test stack, as xy slices and with orthoplane inference (xy, xz and yz
    planes combined; Lucchi's voxels are about 5 nm in every axis): Dice, AJI and PQ of each."""
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    out = {}
    for key, planes in (("xy", False), ("op", True)):
        labels = segment_volume(test, loaded, dev, orthoplanes=planes, voxel_size=(5.0, 5.0, 5.0)).labels
        m = evaluate_volume(labels, test_gt, per_slice=False)
        out |= {f"{k}_{key}80": round(float(m[k]), 4) for k in ("dice", "aji", "pq")}
    return out


def run(args, arm: str) -> None:
    import numpy as np
    import tifffile
    import torch

    from napari_mito_wda.core.adapt import AdaptSettings, adapt, simulate_clicks
    from napari_mito_wda.core.adapt.suggest import mirrored_prob, suggest_points
    from napari_mito_wda.core.data.checkpoint import load_model
    from napari_mito_wda.core.engine.device import pick_device
    from napari_mito_wda.core.engine.segment import segment_volume
    from napari_mito_wda.core.evaluation.metrics import evaluate_volume

    torch.set_num_threads(args.threads)
    lucchi = SHARED / "lucchi"
    train, train_gt = tifffile.imread(lucchi / "train_image.tif"), tifffile.imread(lucchi / "train_instances.tif")
    test_all, test_gt_all = tifffile.imread(lucchi / "test_image.tif"), tifffile.imread(lucchi / "test_labels.tif")
    test, test_gt = test_all[: args.test_slices], test_gt_all[: args.test_slices]
    dev = pick_device()
    loaded = load_model(device=dev.device)
    totals = click_totals(args)
    slices = np.linspace(0, len(train) - 1, 5).round().astype(int)
    pos = [tuple(p) for p in simulate_clicks(train_gt, slices=slices, max_total=totals[0], seed=args.seed)]
    neg: list[tuple] = []
    answered = len(pos)  # every answer the user gave, a skipped suggestion too
    on_object: list[tuple] = []  # negative clicks that landed on a predicted object (a false object)
    shares: list[float] = []  # each such object's share on a true mitochondrion, at click time
    near: list[tuple] = []  # the same places on the next slices, where a false object lay at click time
    near_shares: list[float] = []  # the true share of every object at those places, false or not
    rng = np.random.default_rng(args.seed)
    # settings of the resumed adaptations (every round after the first) that the flags override
    resumed = {k: v for k, v in (("stage1_rounds", args.resumed_stage1), ("lr", args.resumed_lr)) if v is not None}
    for r in range(len(totals)):
        t0 = time.perf_counter()
        s = AdaptSettings(max_iters=args.iters, minutes=120, seed=args.seed + r, adabn=(r == 0),
                          focus_share=args.focus_share, negative_crops=args.negative_crops,
                          selection=args.selection, cross_views=args.cross_views,
                          click_focus=args.click_focus, w_neg_seg=args.w_neg_seg, **(resumed if r > 0 else {}))
        judged = {"scores": []}  # the judge's view: the start's score, each round's candidate's, what it kept
        for rep in adapt(train, np.array(pos, float), loaded, s, dev=dev,
                         negative_points=np.array(neg, float).reshape(-1, 3)):
            if rep.stage == "prepare":
                judged["start_score"] = round(float(rep.best_score), 4)
            elif rep.stage == "label":
                judged["scores"].append(round(float(rep.score), 4))
            elif rep.stage == "done":
                judged |= {"best_score": round(float(rep.best_score), 4), "kept_step": rep.kept_step}
        m = evaluate_volume(segment_volume(test, loaded, dev).labels, test_gt, per_slice=False)
        whole = orthoplane_scores(test_all, test_gt_all, loaded, dev) if args.orthoplane_check else {}
        gone, shown, rule = removal_now(on_object, train, loaded, dev, neg, pos, train_gt)
        near_gone = removal_now(near, train, loaded, dev)[0]
        row = {"arm": arm, "round": r, "n_pos": len(pos), "n_neg": len(neg), "answered": answered,
               "dice": m["dice"], "aji": m["aji"], "judge": judged,
               "n_false_clicked": len(on_object), "false_removed": gone_share(gone),
               **removal_by_role(on_object, gone, neg, s, train.shape),
               **(removal_by_kind(gone, shares) if gone else {}),
               "clicked_true_shares": shares, "clicked_gone": gone,
               # the same clicks in the shown instances, where the rule drops the objects under negative clicks
               "shown_removed": gone_share(shown), "clicked_shown_gone": shown, **rule,
               "n_near_false": len(near), "near_removed": gone_share(near_gone),  # the next slices, learnt only
               "near_true_shares": near_shares,
               "seconds": round(time.perf_counter() - t0, 1), "iters": args.iters, "n": args.n, "seed": args.seed,
               "rounds": len(totals) - 1, "start_clicks": totals[0], "test_slices": args.test_slices,
               "schedule": args.schedule,
               "threads": args.threads, "flip_check": args.flip_check, "focus_share": args.focus_share,
               "negative_crops": args.negative_crops, "selection": args.selection,
               # the negative crops' own loss (from session 24; before, joined to the target crops' loss)
               **({"w_neg_seg": args.w_neg_seg, "neg_loss": "bce"} if args.negative_crops else {}),
               "ranking": "blobs" if args.old_ranking else "instances",
               "resumed_stage1": args.resumed_stage1, "resumed_lr": args.resumed_lr,
               "cross_views": args.cross_views, "click_focus": args.click_focus,
               "device": dev.describe()} | whole | stamp()
        print(json.dumps(row), flush=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if r == len(totals) - 1:
            break
        n = totals[r + 1] - answered
        if arm == "false":  # the user marks false objects of the current prediction
            seg = segment_volume(train, loaded, dev)
            q = false_object_clicks(seg.labels, train_gt, n, args.seed + r, pos + neg)
            on_object += q
            shares += true_shares(q, seg.labels, train_gt)
            neg = neg + q
            answered += len(q)
        elif arm in ("suggest", "suggest-positive"):
            seg = segment_volume(train, loaded, dev)
            flipped = mirrored_prob(train, loaded, dev) if args.flip_check else None
            sug = suggest_points(seg.prob, seg.heat, n, existing_points=np.array(pos + neg, float),
                                 flipped_prob=flipped, labels=None if args.old_ranking else seg.labels)
            p, q = oracle(sug.points, train_gt)
            answered += len(sug.points)
            pos = pos + p
            if arm == "suggest":  # "suggest-positive" skips the suggestions that are not mitochondria
                hit = [c for c in q if seg.labels[c] > 0]
                on_object += hit
                shares += true_shares(hit, seg.labels, train_gt)
                found = neighbours(hit, seg.labels, train_gt)
                near += [c for c, share in found if share < 0.1]
                near_shares += [share for _, share in found]
                neg = neg + q
        else:  # the same number of answers, on random objects of random slices
            more = simulate_clicks(train_gt, slices=rng.choice(len(train), 5, replace=False), max_total=n,
                                   seed=args.seed + r + 1)
            pos += [tuple(c) for c in more.astype(int)]
            answered += len(more)


def _old_ranking(r: dict) -> bool:
    """A suggested arm that ranked p > 0.5 blobs as objects (rows before 5028a8a, or --old-ranking), not the
    shown instances."""
    return r["arm"].startswith("suggest") and r.get("ranking", "blobs") == "blobs"


SELECTION_LABELS = {"score": "best score kept", "last": "last model kept"}


def _selection(r: dict) -> str:
    """How a row's rounds kept their model: "guarded" (the product from session 18), "score" (before)."""
    return r.get("selection", "score")


def _neg_loss(r: dict) -> str:
    """How a row's negative crops were taught: a loss of their own (session 24 on; cross-entropy + Dice, then
    cross-entropy alone), or joined to the target crops'."""
    if "w_neg_seg" not in r:
        return ", joined loss"
    kind = "own cross-entropy" if r.get("neg_loss") == "bce" else "own loss"  # own loss: cross-entropy + Dice
    return f", {kind}" + (f" x{r['w_neg_seg']:g}" if r["w_neg_seg"] != 1.0 else "")


def _arm_label(r: dict) -> str:
    flip = r.get("flip_check") and r["arm"].startswith("suggest")  # the flip check ranks suggestions only
    return (r["arm"] + (" + flip check" if flip else "")
            + (f" + focused crops {r['focus_share']:g}" if r.get("focus_share") else "")
            + (f" + negative crops ({r['negative_crops']} a step{_neg_loss(r)})" if r.get("negative_crops") else "")
            + (" + xz / yz views" if r.get("cross_views") else "")
            + (f" + crops at clicks {r['click_focus']:g}" if r.get("click_focus") else "")
            + (f" + {SELECTION_LABELS[_selection(r)]}" if _selection(r) != "guarded" else "")
            + (f" + {r['resumed_stage1']} stage-1 rounds when resumed" if r.get("resumed_stage1") is not None else "")
            + (f" + lr {r['resumed_lr']:g} when resumed" if r.get("resumed_lr") is not None else "")
            + (" (ranking p > 0.5 blobs)" if _old_ranking(r) else "")
            + (f", seed {r['seed']}" if r.get("seed") else ""))


def _flags(r: dict) -> str:
    """The options of a row as the command-line flags that measure it again (defaults left out)."""
    return ((" --flip-check" if r.get("flip_check") else "")
            + (f" --focus-share {r['focus_share']:g}" if r.get("focus_share") else "")
            + (f" --negative-crops {r['negative_crops']}" if r.get("negative_crops") else "")
            + (f" --w-neg-seg {r['w_neg_seg']:g}" if r.get("w_neg_seg", 1.0) != 1.0 else "")
            + (f" --selection {_selection(r)}" if _selection(r) != "guarded" else "")
            + (" --old-ranking" if _old_ranking(r) else "")
            + (" --cross-views" if r.get("cross_views") else "")
            + (f" --click-focus {r['click_focus']:g}" if r.get("click_focus") else "")
            + (" --orthoplane-check" if "dice_op80" in r else "")
            + (f" --resumed-stage1 {r['resumed_stage1']}" if r.get("resumed_stage1") is not None else "")
            + (f" --resumed-lr {r['resumed_lr']:g}" if r.get("resumed_lr") is not None else "")
            + (f" --seed {r['seed']}" if r.get("seed") else ""))


ARM_NAMES = {"random": "random positive clicks", "suggest-positive": "suggested, positive answers only",
             "suggest": "suggested, positive + negative answers", "false": "negative clicks on false objects"}


def _current(runs: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The runs of the current protocol (with the xz / yz views, no extra crops), suggested and random arms."""
    return {label: rs for label, rs in runs.items() if rs[0].get("cross_views") and not rs[0].get("click_focus")
            and not rs[0].get("negative_crops") and rs[0]["arm"] in ("suggest", "random")}


def curve_figure(runs: dict[str, list[dict]], checked: dict[str, list[dict]]) -> None:
    """The current protocol's arms, each the mean over its seeds: on the first test slices as xy slices (the
    latest runs), and on all 80 with orthoplane inference (the latest runs scored so, `checked`)."""
    import numpy as np

    current, current_checked = _current(runs), _current(checked)
    fig, ax = pyplot().subplots(figsize=(6, 4.6))
    for arm, colour in (("suggest", "tab:orange"), ("random", "tab:blue")):
        for key, style, pool in (("dice", "-o", current), ("dice_op80", "--s", current_checked)):
            mine = [rs for rs in pool.values() if rs[0]["arm"] == arm]
            if not mine:
                continue
            totals = sorted({r["answered"] for rs in mine for r in rs})
            what = f"first {mine[0][0]['test_slices']} slices, xy" if key == "dice" else "80 slices, orthoplanes"
            pts = [(t, [r[key] for rs in mine for r in rs if r["answered"] == t]) for t in totals]
            pts = [(t, v) for t, v in pts if v]
            seeds = len({rs[0]["seed"] for rs in mine})
            ax.plot([t for t, _ in pts], [np.mean(v) for _, v in pts], style, color=colour,
                    label=f"{ARM_NAMES.get(arm, arm)}: {what} ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.axhline(0.87, color="grey", lw=0.8, ls=":", label="issue 21's target at 50 clicks (0.87)")
    ax.set_xscale("log")
    ticks = sorted({r["answered"] for rows in current.values() for r in rows}) or [10]
    ax.minorticks_off()
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("answered clicks on Lucchi train")
    ax.set_ylabel("Dice on Lucchi test (mean over seeds)")
    ax.set_title("The annotation loop with a simulated user (pseudo-labels with the xz / yz views)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))  # below: the lines stay visible
    fig.tight_layout()
    save_figure(fig, CURVE)


def render_curve(rows: list[dict]) -> None:
    """The clicks-against-Dice curve of the `--schedule` runs: the latest run of each arm, a table and a plot."""
    runs: dict[str, list[dict]] = {}
    checked: dict[str, list[dict]] = {}  # the latest run of each arm scored with --orthoplane-check
    for r in rows:  # a run starts at round 0; a later run of the same arm replaces the earlier one
        label = _arm_label(r).replace(r["arm"], ARM_NAMES.get(r["arm"], r["arm"]), 1)
        if r["round"] == 0:
            runs[label] = []
        runs.setdefault(label, []).append(r)
        if "dice_op80" in r:
            if r["round"] == 0 or label not in checked:
                checked[label] = []
            checked[label].append(r)
    if not runs:
        return
    totals = sorted({r["answered"] for rs in runs.values() for r in rs})

    def cell(rs, t):
        hit = [r for r in rs if r["answered"] == t]
        if not hit:
            return "-"
        r = hit[-1]
        gone = ("" if r.get("false_removed") is None
                else f"; {r['false_removed']:.0%} of {r['n_false_clicked']} gone")
        if r.get("false_removed_trained") is not None:  # runs that record the split by the clicks' role
            gone += f" (trained on: {r['false_removed_trained']:.0%} of {r['n_false_trained']})"
        if r.get("n_false_obj"):  # runs that record what the clicked objects were
            gone += f"; false objects: {r['removed_false_obj']:.0%} of {r['n_false_obj']}"
        if r.get("shown_removed") is not None:  # runs that record the instances shown with the rule
            gone += f"; shown: {r['shown_removed']:.0%}, {r['rule_true_lost']:.2%} of true px lost"
        if r.get("near_removed") is not None:
            gone += f"; next slices: {r['near_removed']:.0%} of {r['n_near_false']}"
        return f"{r['dice']:.3f} ({r['n_pos']}+/{r['n_neg']}-{gone})"

    table = markdown_table(["arm"] + [f"{t} clicks" for t in totals],
                           [[label] + [cell(rs, t) for t in totals] for label, rs in runs.items()])

    def whole(rs, t):  # the --orthoplane-check scores: all 80 test slices, xy only -> with orthoplanes
        hit = [r for r in rs if r["answered"] == t and "dice_op80" in r]
        return "-" if not hit else (f"{hit[-1]['dice_xy80']:.3f} -> **{hit[-1]['dice_op80']:.3f}** "
                                    f"(AJI {hit[-1]['aji_xy80']:.3f} -> {hit[-1]['aji_op80']:.3f})")

    planes = "" if not checked else f"""
The runs with `--orthoplane-check`: the same models on all 80 Lucchi test slices, Dice (AJI) as xy slices ->
with orthoplane inference (xy, xz and yz planes combined, `predict --orthoplanes`, the default where the voxel
size is known to be near-isotropic):

{markdown_table(["arm"] + [f"{t} clicks" for t in totals],
                [[label] + [whole(rs, t) for t in totals] for label, rs in checked.items()])}
"""
    curve_figure(runs, checked)
    flat = [r for rs in runs.values() for r in rs]
    r0 = flat[0]
    by_options: dict[str, list[str]] = {}  # the arms of each set of options: one command each
    for rs in runs.values():
        r = rs[0]
        opts = (f"--schedule {r['schedule']} --iters {r['iters']} --test-slices {r['test_slices']} "
                f"--threads {r['threads']}{_flags(r)}")
        by_options.setdefault(opts, []).append(r["arm"])
    cmd = "; ".join(f"`.venv/bin/python benchmarks/bench_annotation.py {opts} --arms {','.join(arms)}`"
                    for opts, arms in by_options.items())
    update_section("annotation-curve", f"""## The annotation loop: Dice against answered clicks

The simulated user of the section above, on the issue's schedule: {r0['schedule']} answered clicks, each round
{r0['iters']} adaptation iterations (resumed; the first round from the source model with AdaBN). All arms start
from the same {totals[0]} random positive clicks. Each cell: Lucchi test Dice (first {r0['test_slices']} slices)
and the positive / negative clicks trained on; "gone": the share of the negative clicks on a predicted object
with no object under them after that round. A suggestion answered "not a mitochondrion" counts as an
answered click in both suggested arms; "positive answers only" skips it, as a user who only keeps the
suggestions that are mitochondria. "shown" (runs from session 25): the same share in the instances the user is
shown, where the objects under the negative clicks are left out by rule (`drop_negated`, unless a positive
click lies on the object), and the share of the true mitochondrion pixels of those slices that the rule
dropped with them; "next slices": the same places on the slices either side, where a false object lay at click
time, with no object there after the round (learnt only: the rule acts on the clicked slice).
Seed 0 unless the arm names another. The negative-crop rows marked "joined
loss" (before 0ff83e1) or "own loss" (cross-entropy + Dice, 0ff83e1) were measured with a loss since replaced: their
commands now run the negative crops' own cross-entropy (9ef730c on).

{table}
{planes}
The plot: the arms of the current protocol (pseudo-labels with the xz / yz views, no extra crops), each the mean
over its seeds, on the first test slices as xy slices (solid) and on all 80 with orthoplane inference (dashed).

![Dice against answered clicks](images/annotation_curve.png)

Measured {', '.join(sorted({r['date'] for r in flat}))} at commit {', '.join(sorted({r['commit'] for r in flat}))}
on {r0['machine']} ({'; '.join(sorted({r.get('device', 'precision not recorded') for r in flat}))}). Reproduce: {cmd}
""")


def render() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    render_curve([r for r in rows if r.get("schedule")])
    rows = [r for r in rows if not r.get("schedule")]
    if not rows:
        return
    def removed(r):
        if r.get("false_removed") is None:
            return "-"
        return f"{r['false_removed']:.0%} of {r['n_false_clicked']}"

    table = markdown_table(["arm", "round", "positive clicks", "negative clicks", "Lucchi test Dice", "AJI",
                            "false objects removed", "s", "commit"],
                           [[_arm_label(r), r["round"],
                             r["n_pos"], r["n_neg"], r["dice"], r["aji"], removed(r), r["seconds"],
                             r["commit"].replace("+dirty", "")]
                            for r in rows])
    r0 = rows[0]
    runs = sorted({(r["arm"], r["threads"], _flags(r)) for r in rows})
    cmd = "; ".join(
        f"`.venv/bin/python benchmarks/bench_annotation.py --iters {r0['iters']} --rounds {r0['rounds']} "
        f"-n {r0['n']} --start-clicks {r0['start_clicks']} --test-slices {r0['test_slices']} --threads {t} "
        f"--arms {arm}{flags}`"
        for arm, t, flags in runs)
    update_section("annotation", f"""## The annotation loop (simulated user)

Start: {r0['start_clicks']} clicks on Lucchi train, one adaptation of {r0['iters']} iterations; then each round
{r0['n']} more answered clicks and {r0['iters']} more iterations (resumed). "suggest": the model's suggestions,
answered by an oracle from the train labels (positive inside a mitochondrion, else negative); "random": the
same number of positive clicks on random objects; "false": as many "not mitochondria" clicks on false
objects of the current prediction (less than 10% of the object on a true mitochondrion); "+ flip check": the
suggestions also ranked by how much the prediction changes when the image is mirrored (`--flip-check`);
"+ focused crops": that share of the target crops cut around the negative clicks (`--focus-share`);
"+ crops at clicks": that share of the target crops cut around the positive clicks (`--click-focus`).
Scored on the first {r0['test_slices']} Lucchi test slices. "False objects removed": of the negative clicks that
landed on a predicted object, the share with no object under them after that round's adaptation (target
>= 80%; "-": none yet, or a row measured before this column existed).
One seed ({r0['seed']}); threads per run in its command below; runs of this session shared the 2 cores with
other work. The rows of one arm are in order of its rounds; the commit column tells the runs apart (the
held-out negative clicks came in at c60c38b).

{table}

Measured {', '.join(sorted({r['date'] for r in rows}))} at commit {', '.join(sorted({r['commit'] for r in rows}))}
on {r0['machine']}. Reproduce (one process per arm): {cmd}
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", default="suggest,random")
    ap.add_argument("--start-clicks", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=20, help="suggestions answered per round")
    ap.add_argument("--iters", type=int, default=130, help="adaptation iterations per round")
    ap.add_argument("--test-slices", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flip-check", action="store_true", help="flip disagreement in the suggestions' score")
    ap.add_argument("--focus-share", type=float, default=0.0,
                    help="share of target crops around negative clicks (AdaptSettings.focus_share)")
    ap.add_argument("--negative-crops", type=int, default=0,
                    help="crops per step around a negative click (AdaptSettings.negative_crops)")
    ap.add_argument("--w-neg-seg", type=float, default=1.0,
                    help="weight of the negative crops' own segmentation loss (AdaptSettings.w_neg_seg)")
    ap.add_argument("--selection", default="guarded", choices=("guarded", "score", "last"),
                    help="which model each round keeps (AdaptSettings.selection; guarded: the product)")
    ap.add_argument("--schedule", default=None,
                    help="answered clicks after each round, e.g. 10,25,50,100 (replaces --start-clicks/-n/--rounds)")
    ap.add_argument("--old-ranking", action="store_true",
                    help="rank p > 0.5 blobs as objects, not the shown instances (the ranking before session 17)")
    ap.add_argument("--resumed-stage1", type=int, default=None,
                    help="stage-1 rounds of the resumed adaptations (rounds after the first; default: the setting's)")
    ap.add_argument("--resumed-lr", type=float, default=None,
                    help="learning rate of the resumed adaptations (rounds after the first; default: the setting's)")
    ap.add_argument("--click-focus", type=float, default=0.0,
                    help="share of target crops around the positive clicks (AdaptSettings.click_focus)")
    ap.add_argument("--cross-views", action="store_true",
                    help="pseudo-labels from the xy slices and the xz / yz views (AdaptSettings.cross_views)")
    ap.add_argument("--orthoplane-check", action="store_true",
                    help="also score each state on all 80 test slices, xy only and with orthoplane inference")
    ap.add_argument("--render", action="store_true", help="only rebuild the docs table")
    args = ap.parse_args()
    if not args.render:
        if not (SHARED / "lucchi" / "train_image.tif").exists():
            sys.exit(f"needs the Lucchi data in {SHARED / 'lucchi'}")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        for arm in args.arms.split(","):
            run(args, arm)
    render()


if __name__ == "__main__":
    main()
