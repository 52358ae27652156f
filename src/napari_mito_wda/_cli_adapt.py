"""The `mito-wda` commands that adapt a model: `adapt` (your volume, your clicks) and `demo` (the shipped sample)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import sys
import time
from pathlib import Path

from ._cli_common import (
    check_output,
    check_pixel_size_flag,
    model_and_device,
    pixel_size_for,
    read_clicks,
    read_corrections,
)
from ._cli_progress import Progress


def cmd_adapt(args) -> int:
    import signal

    from . import (
        AdaptSettings,
        CheckpointError,
        adapt,
        load_model,
        pick_device,
        read_volume,
        save_adapted,
    )
    from .core.adapt import with_state
    from .core.adapt.auto import AUTO_FIELDS, CROSS_VIEW_CHOICES, auto_settings, cross_views_choice
    from .core.adapt.heldout import describe_quality

    out = Path(args.output)
    # Continuing an interrupted run in place (--resume OUT.pt -o OUT.pt) replaces the run's own file.
    overwrite = args.overwrite or bool(args.resume and Path(args.resume).resolve() == out.resolve())
    check_output(out, (".pt",), "adapted model", overwrite)
    # Settings are checked before the volume and model are read: a typo fails at once.
    if args.source_veto is not None and not 0.0 <= args.source_veto <= 1.0:
        raise ValueError(f"--source-veto takes a probability between 0 and 1 (0 = off), got {args.source_veto}")
    if args.click_reach is not None and args.click_reach < 0:
        raise ValueError(f"--click-reach takes a number of slices, 0 (off) or more, got {args.click_reach}")
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes takes a time budget above 0, got {args.minutes}")
    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max-iters takes a number of iterations, 1 or more, got {args.max_iters}")
    flag_nm = check_pixel_size_flag(args)
    dev = pick_device(args.device, args.precision)  # a bad --device fails here, before anything is read
    vol = read_volume(args.image)
    clicks = read_clicks(args.points, vol.data.shape)  # named, one line, before the model is loaded
    negatives = read_clicks(args.negative_points, vol.data.shape, "--negative-points")
    corrections = read_corrections(args.corrections, args.predicted, vol.data.shape)
    loaded = load_model(args.resume or args.model, device=dev.device)
    if "replay_images" not in loaded.extras:
        raise CheckpointError(f"{loaded.path}: this model carries no source replay set, so it cannot be adapted; "
                              "start from the shipped model (leave out --model) or one made by `mito-wda pretrain`.")
    n_clicks = 0 if clicks is None else len(clicks)
    over, chosen = {"seed": args.seed}, []
    views = CROSS_VIEW_CHOICES[args.cross_views]
    if args.preset == "quick":  # fitted to this volume and its clicks; the reasons are printed below
        auto, chosen = auto_settings(vol.data.shape, n_clicks, args.minutes, loaded.model.config.downsample,
                                     loaded.model.multiple, voxel_size=vol.voxel_size, cross_views=views)
        over |= {k: getattr(auto, k) for k in AUTO_FIELDS}
    else:
        over["cross_views"], why = cross_views_choice(vol.data.shape, vol.voxel_size, views)
        chosen = [why] if over["cross_views"] or views is not None else []  # the preset's own schedule otherwise
        if args.minutes is not None:
            over["minutes"] = args.minutes
    if args.max_iters:
        over["max_iters"] = args.max_iters
    for flag in ("contrastive", "cross_teaching", "detection", "adabn"):
        if getattr(args, f"no_{flag}"):
            over[flag] = False
    if args.resume:
        over["adabn"] = False  # the checkpoint already carries target statistics
    if args.pixel_pseudo_labels:
        over["pseudo"] = "pixel"
    if args.click_reach is not None:
        over["click_reach_z"] = args.click_reach
    if args.source_veto is not None:
        over["source_veto"] = args.source_veto or None
    settings = AdaptSettings.preset(args.preset, **over)
    n_neg = 0 if negatives is None else len(negatives)
    print(f"{vol.path}: {vol.data.shape}; {n_clicks} clicks"
          + (f", {n_neg} negative clicks" if n_neg else "") + f"; start {loaded.path}; "
          f"{dev.describe()}; budget {settings.minutes} min", file=sys.stderr)
    if corrections is not None and corrections.n_objects:
        print(f"mito-wda: {corrections.describe()} in {args.corrections}, used as exact labels", file=sys.stderr)
    elif corrections is not None:
        print(f"mito-wda: note: {args.corrections} equals {args.predicted}: no corrected objects to use",
              file=sys.stderr)
    pixel_size, said = pixel_size_for(flag_nm, vol.voxel_size, loaded.pixel_size_nm)
    print(said, file=sys.stderr)
    if chosen:
        print("settings for this volume: " + "; ".join(chosen), file=sys.stderr)
    if n_clicks == 0 and settings.cross_views:
        print("no clicks: unsupervised adaptation, its pseudo-labels checked against the xz and yz views "
              "(Lucchi, 80 slices, 390 steps: AdaBN alone 0.800, this 0.866 Dice).", file=sys.stderr)
    elif n_clicks == 0:
        # Measured on VNC III -> Lucchi (docs/benchmarks.md): UDA 0.779 < AdaBN alone 0.800 < 15% clicks 0.855.
        print("no clicks: unsupervised adaptation. On the benchmark its training drifted below re-estimating "
              "BatchNorm alone, so that model is kept unless a trained one scores clearly higher; clicking the "
              "centres of a few objects per slice (--points) gave the gains.", file=sys.stderr)
    stop = {"n": 0}

    def on_sigint(signum, frame):  # first Ctrl-C: finish the current step and keep the best model
        stop["n"] += 1
        if stop["n"] > 1:
            raise KeyboardInterrupt
        print("\nstopping: saving the best model so far (Ctrl-C again to abort)", file=sys.stderr)

    print(f"the best model so far is written to {out} at each round (marked unfinished); if this run dies, "
          f"continue it with the same command plus --resume {out}", file=sys.stderr)
    previous = signal.signal(signal.SIGINT, on_sigint)
    last = None
    try:
        for rep in adapt(vol.data, clicks, loaded, settings, dev=dev, stop=lambda: stop["n"] > 0,
                         negative_points=negatives, pixel_size=pixel_size, corrections=corrections):
            last = rep
            if rep.best_state is not None:  # a new best at a round start: a hard kill loses one round at most
                save_adapted(out, with_state(loaded, rep.best_state), settings, clicks, rep,
                             image_path=str(vol.path), overwrite=overwrite, negatives=negatives)
                overwrite = True  # later writes replace this run's own file
            if rep.stage in ("prepare", "label", "done"):
                extra = f" score {rep.score:.3f}" if rep.score is not None else ""
                quality = describe_quality(rep.quality)
                print(f"[{rep.elapsed_s / 60:5.1f}/{rep.budget_s / 60:.1f} min] {rep.stage}: {rep.message}{extra}"
                      + (f"\n    kept model: {quality}" if quality else ""), file=sys.stderr)
            elif rep.step % (settings.report_every * 10) == 0:
                losses = " ".join(f"{k} {v:.4f}" for k, v in rep.losses.items())
                print(f"[{rep.elapsed_s / 60:5.1f}/{rep.budget_s / 60:.1f} min] round {rep.round}/{rep.n_rounds} "
                      f"step {rep.step}: {losses} ({rep.it_per_s:.2f} it/s, ~{rep.eta_s / 60:.1f} min left)",
                      file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    save_adapted(out, loaded, settings, clicks, last, image_path=str(vol.path), overwrite=overwrite,
                 negatives=negatives)
    print(f"wrote {out} (best label-free score {last.best_score:.3f}; {describe_quality(last.quality)}); "
          f"segment with: mito-wda predict IMAGE.tif --model {out} -o INSTANCES.tif"
          + (f" --pixel-size {pixel_size:g}" if args.pixel_size is not None else ""))
    return 0


def cmd_demo(args) -> int:
    """The whole mission on the shipped sample: source model, short adaptation from its clicks, adapted model."""
    from . import (
        adapt,
        evaluate_volume,
        format_table,
        read_points,
        save_adapted,
        segment_volume,
        write_labels_tiff,
    )
    from .core.data import write_json
    from .core.data.provenance import provenance
    from .core.evaluation import save_comparison
    from .sample import CITATION, load_lucchi_sample, sample_paths

    run = Path(args.out) / _dt.datetime.now().strftime("run-%Y%m%d-%H%M%S")
    run.mkdir(parents=True, exist_ok=False)  # a new folder per run: earlier results are never replaced
    image, gt, voxel, _ = load_lucchi_sample()
    clicks = read_points(sample_paths()["clicks"])
    loaded, dev = model_and_device(args)
    print(f"sample: {image.shape} voxels of mouse CA1 FIB-SEM ({CITATION})")
    print(f"model: {loaded.path}\ndevice: {dev.describe()}")

    def segment_and_score(name: str) -> tuple:
        t0 = time.perf_counter()
        seg = segment_volume(image, loaded, dev, progress=Progress(f"segment ({name})"))
        dt = time.perf_counter() - t0
        write_labels_tiff(run / f"{name}_instances.tif", seg.labels, voxel,
                          metadata=provenance() | {"model": name, "image": "lucchi_sample.tif"})
        m = evaluate_volume(seg.labels, gt, per_slice=False) | {"seconds": round(dt, 2)}
        print(f"{name} model:\n{format_table(m)}")
        return seg.labels, m

    source_labels, source_m = segment_and_score("source")
    panels = {"ground truth": gt, "source model": source_labels}
    results = {"source_model": source_m, "model": loaded.path, "clicks": len(clicks)}
    if args.adapt:
        from .core.adapt.auto import auto_settings
        from .core.adapt.heldout import describe_quality

        settings, chosen = auto_settings(image.shape, len(clicks), args.minutes, loaded.model.config.downsample,
                                         loaded.model.multiple)
        settings = dataclasses.replace(settings, max_iters=args.max_iters)
        print(f"adapting to the sample from its {len(clicks)} shipped centre clicks "
              f"({settings.minutes:g} min budget{'' if not args.max_iters else f', {args.max_iters} iterations'}; "
              f"{'; '.join(chosen)})")
        last = None
        for rep in adapt(image, clicks, loaded, settings, dev=dev):
            last = rep
            if rep.stage in ("prepare", "label", "done"):
                print(f"  [{rep.elapsed_s / 60:4.1f} min] {rep.stage}: {rep.message}", flush=True)
        save_adapted(run / "adapted_model.pt", loaded, settings, clicks, last, image_path="lucchi_sample.tif")
        adapted_labels, adapted_m = segment_and_score("adapted")
        adapted_m["adapt_seconds"] = round(last.elapsed_s, 1)
        adapted_m["iterations"] = last.step
        results["adapted_model"] = adapted_m
        panels["adapted model"] = adapted_labels
        adapted_m["kept"] = last.message
        adapted_m["quality"] = last.quality
        print(f"{last.message}\n{describe_quality(last.quality)}")
        print(f"against the sample's ground truth: Dice {source_m['dice']:.3f} -> {adapted_m['dice']:.3f}, "
              f"AJI {source_m['aji']:.3f} -> {adapted_m['aji']:.3f}, PQ {source_m['pq']:.3f} -> {adapted_m['pq']:.3f}")
    write_json(run / "metrics.json", results | provenance())
    save_comparison(run / "demo.png", image, panels,
                    title="Lucchi CA1 crop: shipped source model (VNC III) and the model adapted from centre clicks")
    print(f"results in {run}/: {', '.join(sorted(p.name for p in run.iterdir()))}")
    return 0
