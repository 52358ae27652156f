"""Weakly supervised domain adaptation from sparse centre clicks (method.md; arXiv 2510.16450).

`adapt` is a generator. It yields an AdaptReport every few iterations (losses, speed, time left) and,
at the start of every self-training round, the current prediction of the target; it stops at the next
iteration when `stop()` turns true and always ends with the kept model loaded (AdaptSettings.selection: by
default the latest that answers the held-out clicks about as well as the start did).

Each round: predict the target with the current model -> instance-aware pseudo-labels (IPL: the clicked
components; with AdaptSettings.peak_selection also the top detection peaks, budget = ratio x a frozen
count anchor) -> train on
  source: L_seg^s + w L_det^s                     (labelled source data, or the replay set in the checkpoint)
  target: L_det^t on pseudo-instance centres      (cross-teaching: segmentation -> detection)
          L_seg^t on IPL pseudo-labels            (stage 2; detection -> segmentation)
          L_con class-focused contrastive         (source + target mito prototypes as the positive)
Zero clicks (UDA) runs the same path.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..data.checkpoint import LoadedModel
from ..data.io import normalize_slice, validate_image
from ..data.pixel_size import image_and_pixel_size, pixel_scale
from ..engine.device import DeviceInfo, pick_device
from ..engine.inference import to_working
from ..training.supervised import SlicePlanes, bce_loss, detection_loss, sample_batch, seg_loss
from ..training.targets import count_estimate
from .batchnorm import adabn, frozen_bn_stats
from .corrections import Corrections, check_corrections, working_corrections
from .cross_views import combine, cross_view_probability, cross_view_refusal
from .flip_check import model_flip_agreement
from .heldout import ClickSplit, heldout_quality
from .losses import class_focused_contrastive, partial_weighted_mse
from .points import points_by_slice, validate_points
from .predict import StartingProbability, predict_slices
from .pseudo_labels import budget_anchor, ratio_schedule
from .rounds import (
    build_round,
    click_points,
    focus_points,
    labelled_slices,
    negative_batch,
    negative_click_sites,
    round_prototypes,
    target_batch,
)
from .saving import replay_planes
from .selection import detector_trusted, guard_holds, heat_at_clicks, selection_score
from .settings import AdaptReport, AdaptSettings


def adapt(
    target: np.ndarray,
    clicks: np.ndarray | None,
    source: LoadedModel,
    settings: AdaptSettings | None = None,
    source_data: SlicePlanes | None = None,
    dev: DeviceInfo | None = None,
    stop: Callable[[], bool] | None = None,
    get_clicks: Callable[[], np.ndarray] | None = None,
    negative_points: np.ndarray | None = None,
    get_negative_points: Callable[[], np.ndarray] | None = None,
    pixel_size: float | None = None,
    corrections: Corrections | None = None,
    get_corrections: Callable[[], Corrections | None] | None = None,
) -> Iterator[AdaptReport]:
    """Adapt `source.model` in place to the raw target stack (Z, Y, X); deep-copy it first to keep it.

    clicks: (N, 3) voxel coordinates (z, y, x) of mitochondria centres, or None/empty for UDA.
    get_clicks: optional callable returning the current clicks, read again at the start of each round
    (clicks added while it runs are taken up). negative_points / get_negative_points: the same for
    "not a mitochondrion" clicks, whose objects become background (negatives.py). corrections /
    get_corrections: the user's corrected objects (`corrections_from_edit`), exact labels on their
    slices, re-read at each round in the same way (corrections.py).
    When the generator ends, `source.model` holds the kept model (settings.selection: the latest that passes
    the held-out guard, the best label-free score, or the last one).
    target may be a `Volume` or a TIFF path too; pixel_size: its in-plane nm per pixel (default: a
    Volume's or file's metadata). The slices are then trained on at the model's pixel size, as
    `segment_volume` predicts them, so the adapted model keeps the source's pixel size on its card.
    """
    s = settings or AdaptSettings()
    dev = dev or pick_device()
    target, pixel_size = image_and_pixel_size(target, pixel_size)
    target = validate_image(target, "target image")
    t0 = time.perf_counter()
    budget = s.minutes * 60.0
    rng = np.random.default_rng(s.seed)
    torch.manual_seed(s.seed)
    model = source.model
    model.to(dev.device).to(memory_format=torch.channels_last)
    f = model.config.downsample
    scale = pixel_scale(pixel_size, source.pixel_size_nm)  # image pixels per model pixel: f / scale a working one
    images = [to_working(normalize_slice(target[z]), f, scale).astype(np.float32) for z in range(target.shape[0])]
    src = source_data if source_data is not None else replay_planes(source.extras, s.sigma)
    src_protos = source.extras.get("source_prototypes")

    split = ClickSplit(s.heldout_share, s.seed)
    neg_split = ClickSplit(s.heldout_share, s.seed + 1)  # negative evidence is held out the same way

    def by_working_slice(pts: np.ndarray) -> dict[int, np.ndarray]:
        return points_by_slice(pts.astype(np.float32) / np.array([1, f / scale, f / scale], np.float32))

    def working_clicks(raw) -> tuple[dict[int, np.ndarray], int, dict[int, np.ndarray]]:
        """(training clicks by slice, n clicks in all, held-out clicks by slice), working resolution."""
        pts, _ = validate_points(raw, target.shape)
        train, held = split.split(pts)
        return by_working_slice(train), len(pts), by_working_slice(held)

    def working_negatives(raw) -> tuple[dict[int, np.ndarray], int, dict[int, np.ndarray]]:
        """(training negative clicks by slice, n in all, held-out ones by slice), working resolution."""
        pts, _ = validate_points(raw, target.shape)
        train, held = neg_split.split(pts)
        return by_working_slice(train), len(pts), by_working_slice(held)

    def working_corr(raw) -> tuple[dict, int]:
        c = check_corrections(raw, target.shape)
        return working_corrections(c, lambda m: to_working(m, f, scale)), 0 if c is None else c.n_objects

    def judge(prob, heat) -> float:
        # Held-out clicks, positive and negative, alone where there are any: clicks trained on flatter (on
        # the sample, 16 trained-on negatives let a model of Dice 0.63 outscore the start's 0.69). Their
        # centring alone (without the heads' agreement) kept the unadapted start on Lucchi (v18): the
        # agreement stays. Without held-out negatives a model that learnt to drop false objects scored as
        # its start (the annotation loop kept each round's start).
        if held_w or held_negs:
            return selection_score(prob, heat, held_w, zs, negatives=held_negs)
        return selection_score(prob, heat, clicks_w, zs, negatives=negs_w)

    def guard(prob) -> bool:
        # The same clicks as the judge's, on the slices the starting model's probability covers.
        pos, neg = (held_w, held_negs) if held_w or held_negs else (clicks_w, negs_w)
        ks = [k for k, z in enumerate(zs) if z in start_prob]
        if not ks:
            return True
        return guard_holds(prob[ks], np.stack([start_prob[zs[k]] for k in ks]), [zs[k] for k in ks], pos, neg,
                           s.guard_tolerance)

    def quality(prob, flip: float | None = None) -> dict:
        # The flip agreement costs a pass over the slices: measured for the start and the kept model only.
        q = heldout_quality(prob, zs, held_w, start_prob, held_negatives=held_negs, n_clicks=n_clicks)
        return q | {"flip_agreement": flip, "start_flip_agreement": start_flip}

    clicks_w, n_clicks, held_w = working_clicks(clicks)
    negs_w, n_neg, held_negs = working_negatives(negative_points)
    corr_w, n_corr = working_corr(corrections)
    zs = sorted(set(labelled_slices(len(images), s.label_slices)) | set(clicks_w) | set(held_w) | set(negs_w)
                | set(held_negs) | set(corr_w))
    rounds = [("stage1", r) for r in range(s.stage1_rounds)] + [("stage2", r + 1) for r in range(s.stage2_rounds)]
    # The starting model is the first candidate: adaptation never returns a model that scores below it.
    prob, heat = predict_slices(model, images, zs, dev)
    live = any(g is not None for g in (get_clicks, get_negative_points, get_corrections))  # new slices may come
    source_prob = (StartingProbability(model, images, zs, prob, dev, later_slices=live)
                   if s.source_veto is not None else None)
    start_prob = source_prob if source_prob is not None else dict(zip(zs, prob))
    best_score, best_state = judge(prob, heat), copy.deepcopy(model.state_dict())
    start_flip = model_flip_agreement(model, images, zs, dev, prob)
    best_quality = quality(prob, start_flip)
    # The kept model's prediction, reused at the end when its slices are still the ones labelled.
    best_pred = {"slices": list(zs), "prob": prob, "heat": heat}
    best_from, kept_step, new_best = "the starting model", None, True
    bn_note = ""
    if s.adabn:
        w_bn = adabn(model, images, dev, s.crop, seed=s.seed, n0=s.adabn_n0)
        bn_note = f"; AdaBN weight on the target statistics {w_bn:.2f}"
    cross = None
    if s.cross_views:  # once, after AdaBN: the fixed half of every round's pseudo-label probability
        why = cross_view_refusal(target.shape, model.config)
        if why:
            bn_note += "; no cross views: " + why.split(";")[0]
        else:
            cross = cross_view_probability(model, target, dev, f, scale)
            bn_note += "; pseudo-labels from the xy, xz and yz views"
    n_held = sum(len(v) for v in held_w.values()) + sum(len(v) for v in held_negs.values())
    yield AdaptReport("prepare", 0, len(rounds), 0, time.perf_counter() - t0, budget, n_clicks=n_clicks,
                      best_score=best_score, quality=best_quality, n_negative=n_neg, n_corrected=n_corr,
                      message=f"{len(images)} slices, {n_clicks} clicks"
                              + (f" ({n_held} held out to judge the result)" if n_held else "")
                              + (f", {n_neg} negative clicks" if n_neg else "")
                              + (f", {n_corr} corrected objects" if n_corr else "")
                              + f", {dev.describe()}{bn_note}")

    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=1e-4)
    step = 0
    anchors: dict[int, int] | None = None
    trusted: bool | None = None
    heat_start: float | None = None
    for r_idx, (stage, r) in enumerate(rounds + [("final", 0)]):
        if live:
            if get_clicks is not None:
                clicks_w, n_clicks, held_w = working_clicks(get_clicks())
            if get_negative_points is not None:
                negs_w, n_neg, held_negs = working_negatives(get_negative_points())
            if get_corrections is not None:
                corr_w, n_corr = working_corr(get_corrections())
            zs = sorted(set(zs) | set(clicks_w) | set(held_w) | set(negs_w) | set(held_negs) | set(corr_w))
            if source_prob is not None:
                source_prob.cover(zs)
        prob, heat = predict_slices(model, images, zs, dev)
        score = judge(prob, heat)
        pred = {"slices": list(zs), "prob": prob, "heat": heat}
        # Without clicks the score is the heads' agreement alone, which rose while Lucchi Dice fell in every
        # measured UDA run (docs/journal.md): a trained model must beat the AdaBN one (step 0) by a margin.
        margin = s.uda_margin if n_clicks == 0 and step > 0 else 0.0
        # A model fresh from stage 1 is no candidate: that stage trains no target segmentation, while its
        # detection training lifts the heads' agreement (Lucchi, v17: kept at Dice 0.764 over a stage-2 0.855).
        after_stage1 = r_idx > 0 and rounds[r_idx - 1][0] == "stage1" and stage != "final"
        if s.selection == "guarded" and (n_clicks or n_neg):
            take = not after_stage1 and guard(prob)
        elif s.selection != "last" and n_clicks == 0 and cross is not None:
            # UDA with the cross views: the latest model. The fixed xz / yz half of every pseudo-label is what
            # keeps it from drifting (Lucchi, no clicks: 32-slice crop AdaBN 0.790, 3 min 0.843, 10 min 0.853;
            # 80 train slices, 390 steps AdaBN 0.800, 0.866),
            # and the heads' agreement, which the margin above asks of a trained model, is not a measure of it.
            take = not after_stage1
        else:
            take = (score > best_score + margin and not after_stage1) or s.selection == "last"
        if take:
            best_score, best_state, best_pred = score, copy.deepcopy(model.state_dict()), pred
            best_quality = quality(prob)
            best_from, kept_step, new_best = f"step {step}", step, True
        if stage == "final" or (stop is not None and stop()):
            break
        if anchors is None:  # frozen once from the starting model: the budget must not grow by itself
            frac = s.click_fraction
            anchors = {z: budget_anchor(len(clicks_w.get(z, ())), frac, count_estimate(heat[k], s.sigma))
                       for k, z in enumerate(zs)}
        for z in zs:
            anchors.setdefault(z, budget_anchor(len(clicks_w.get(z, ())), s.click_fraction, 0))
        ratio = ratio_schedule(1 if stage == "stage1" else 2, r)
        t_s = s.t_s1 if stage == "stage1" else s.t_s2
        if trusted is None:
            # Judged once, on the starting model: once trained on the clicked centres, the detector finds
            # those same clicks (on the sample, median heat 0.5 after 50 steps) without being any better
            # elsewhere, and admitting its peaks then grew the foreground from 0.18 to 0.29 (GT 0.12).
            trusted = s.peak_selection and detector_trusted(heat, clicks_w, zs, s)
            heat_start = heat_at_clicks(heat, clicks_w, zs)
        rnd, n_sel = build_round(combine(prob, cross, zs), heat, zs, clicks_w, ratio, t_s, anchors, s,
                                 use_detector=trusted,
                                 source_prob=source_prob, negatives=negs_w, corrections=corr_w,
                                 seen_prob=prob if cross is not None else None)
        protos = round_prototypes(model, images, rnd, clicks_w, src_protos, dev) if s.contrastive else None
        focus = focus_points(rnd, negs_w, corr_w) if s.focus_share > 0 else None  # off by default
        clicked = click_points(rnd, clicks_w) if s.click_focus > 0 else None
        neg_points = negative_click_sites(rnd, negs_w) if s.negative_crops > 0 else None
        yield AdaptReport("label", r_idx + 1, len(rounds), step, time.perf_counter() - t0, budget,
                          score=score, best_score=best_score, n_clicks=n_clicks, n_negative=n_neg, n_pseudo=n_sel,
                          n_corrected=n_corr, prediction=pred, quality=best_quality,
                          kept_step=kept_step, best_state=best_state if new_best else None,
                          heat_at_clicks=heat_at_clicks(heat, clicks_w, zs),
                          message=f"{stage} round {r}: ratio {ratio:.2f}, {n_sel} pseudo-instances"
                                  + _trust_note(heat_start, trusted, s, first=r_idx == 0))
        new_best = False
        # Training share of this round: the remaining budget split over the remaining rounds.
        now = time.perf_counter()
        round_end = now + (budget - (now - t0)) / (len(rounds) - r_idx)
        iters_left = None if s.max_iters is None else max(0, s.max_iters - step) // (len(rounds) - r_idx)
        model.train()
        window: dict[str, list[float]] = {}
        t_win, it_round = time.perf_counter(), 0
        while time.perf_counter() < round_end and (iters_left is None or it_round < iters_left):
            if stop is not None and stop():
                break
            # Schedule progress: whichever budget (time or iterations) is closer to running out.
            frac = min(1.0, max((time.perf_counter() - t0) / budget, step / s.max_iters if s.max_iters else 0.0))
            for g in opt.param_groups:
                g["lr"] = s.lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * frac))
            # The source losses stay in stage 2 as well: without them (the authors' stage 2) Lucchi scored lower.
            losses = {}
            xs, ys, hs = sample_batch(rng, src, s.source_batch, s.crop, s.augment)
            with dev.autocast(), frozen_bn_stats(model, s.target_bn_stats):
                out_s = model(xs.to(dev.device).contiguous(memory_format=torch.channels_last))
            losses["src_seg"] = seg_loss(out_s["seg"].float(), ys.to(dev.device))
            losses["src_det"] = detection_loss(out_s["det"].float(), hs.to(dev.device), source.det_pos_weight)
            total = s.w_src_seg * losses["src_seg"] + s.w_src_det * losses["src_det"]
            batch = target_batch(rng, images, rnd, s.target_batch, s.crop, s.augment, focus, s.focus_share,
                                 clicked, s.click_focus)
            extra = negative_batch(rng, images, rnd, neg_points, s.negative_crops, s.crop, s.augment)
            n_tgt = len(batch[0])  # the negative crops come after the target crops
            if extra is not None:
                batch = tuple(torch.cat(pair) for pair in zip(batch, extra))
            xt, yt, tt, wt, ct = (v.to(dev.device) for v in batch)
            with dev.autocast():
                out_t = model(xt.contiguous(memory_format=torch.channels_last), with_proj=s.contrastive)
            if s.detection:
                losses["tgt_det"] = partial_weighted_mse(out_t["det"].float(), tt, wt)
                total = total + s.w_tgt_det * losses["tgt_det"]
            if stage == "stage2" and (yt[:n_tgt] == 1).any():
                losses["tgt_seg"] = seg_loss(out_t["seg"][:n_tgt].float(), yt[:n_tgt])
                total = total + s.w_tgt_seg * losses["tgt_seg"]
            if len(yt) > n_tgt:  # the user's answers, exact in both stages: a term of their own (see settings)
                losses["neg_seg"] = bce_loss(out_t["seg"][n_tgt:].float(), yt[n_tgt:])
                total = total + s.w_neg_seg * losses["neg_seg"]
            if s.contrastive and protos is not None:
                emb = out_t["proj"].float()
                stride = xt.shape[-1] // emb.shape[-1]
                lab_small = yt[:, 0, ::stride, ::stride]
                conf_small = ct[:, 0, ::stride, ::stride]
                losses["con"] = class_focused_contrastive(emb, lab_small, conf_small, protos)
                total = total + s.w_con * losses["con"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            it_round += 1
            for k, v in losses.items():
                window.setdefault(k, []).append(float(v.detach()))
            if step % s.report_every == 0:
                now = time.perf_counter()
                yield AdaptReport("train", r_idx + 1, len(rounds), step, now - t0, budget,
                                  losses={k: float(np.mean(v)) for k, v in window.items()},
                                  it_per_s=s.report_every / max(now - t_win, 1e-9), best_score=best_score,
                                  n_clicks=n_clicks, n_pseudo=n_sel)
                window, t_win = {}, now
        model.eval()
    model.load_state_dict(best_state)
    model.eval()
    pred = best_pred
    if pred["slices"] != list(zs):  # clicks on new slices came in after the kept model's prediction
        prob, heat = predict_slices(model, images, zs, dev)
        pred = {"slices": list(zs), "prob": prob, "heat": heat}
    heat_end = heat_at_clicks(pred["heat"], clicks_w, zs)
    yield AdaptReport("done", len(rounds), len(rounds), step, time.perf_counter() - t0, budget,
                      score=judge(pred["prob"], pred["heat"]), best_score=best_score,
                      n_clicks=n_clicks, n_negative=n_neg, n_corrected=n_corr, prediction=pred, kept_step=kept_step,
                      quality=quality(pred["prob"], model_flip_agreement(model, images, zs, dev, pred["prob"])),
                      heat_at_clicks=heat_end,
                      message=("stopped" if stop is not None and stop() else "finished")
                      + f": kept {_kept_why(s, n_clicks or n_neg, cross is not None)} ({best_from})"
                      + ("" if heat_start is None or heat_end is None
                         else f"; detector heat at the clicks {heat_start:.2f} at the start, {heat_end:.2f} kept"))


def _kept_why(s: AdaptSettings, any_clicks: int, cross_views: bool = False) -> str:
    if s.selection == "guarded" and any_clicks:
        return "the latest model that answers the held-out clicks about as well as the start"
    if s.selection != "last" and cross_views and not any_clicks:
        return "the latest model (no clicks; the xz / yz views guard the pseudo-labels)"
    return "the last model" if s.selection == "last" else "the best-scoring model"


def _trust_note(heat: float | None, trusted: bool | None, s: AdaptSettings, first: bool) -> str:
    """What a round says about the detector: in the first, its heat at the clicks, the trust level and
    whether its peaks select; later, only that it missed the clicks, when it did."""
    if not s.detection or heat is None:
        return ""
    missed = s.peak_selection and not trusted
    if not first:
        return " (the detector missed the clicks: not used to select)" if missed else ""
    verdict = ("its peaks select pseudo-instances" if trusted
               else "the detector missed the clicks: not used to select" if missed
               else "peaks do not select (peak_selection off)")
    return f" (detector heat at the clicks {heat:.2f}, trust level {s.detector_trust:g}: {verdict})"
