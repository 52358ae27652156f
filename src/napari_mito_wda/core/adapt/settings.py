"""What the adaptation takes and what it yields: AdaptSettings (with its presets) and AdaptReport."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

SELECTIONS = ("guarded", "score", "last")


@dataclass
class AdaptSettings:
    """The paper's method, its ablation switches and the settings that earned their place.

    Every default was measured on VNC III -> Lucchi (docs/benchmarks.md; the evidence for each setting:
    docs/journal.md, "Settings kept"); the options that measured no gain were removed (docs/journal.md,
    "Options removed in wave 2").
    """

    minutes: float = 8.0             # wall-clock budget of the whole adaptation
    max_iters: int | None = None     # or a budget in iterations (whichever comes first)
    stage1_rounds: int = 1           # rounds with target detection (+ contrastive) only
    stage2_rounds: int = 5           # beat the authors' 2 (Lucchi 0.855 vs 0.836): fresher pseudo-labels
    source_batch: int = 2
    target_batch: int = 4
    focus_share: float = 0.0         # share of target crops that hold a negative click or a corrected object
    # (when there are any). Off: at 0.5 more clicked false objects were gone after the first round (53% vs 7%)
    # but Lucchi Dice fell (0.783 vs 0.818 after 15 negatives, 0.783 vs 0.821 after 30; one seed,
    # bench_annotation "false" arm, docs/journal.md)
    click_focus: float = 0.0         # share of the other target crops that hold a training (positive) click
    # Off: at 0.5 (with the views) suggested answers gained on the whole stack (25: 0.851 vs 0.846) but 25 clicks on
    # 3 slices of a 32-slice crop fell to 0.829 (0.844): crops on a few slices overfit them (docs/journal.md, s22)
    negative_crops: int = 0          # crops per step cut around a negative click, taught only its object
    # Off: with the views and a loss of their own (w_neg_seg 0.03-1) 83-100% of the clicked false objects were
    # gone, but Lucchi Dice fell 0.005-0.05 (two seeds, bench_annotation, docs/journal.md session 24): taught hard,
    # "not this" reaches look-alike mitochondria. Joined to the target crops' loss (sessions 16, 23) they did little.
    w_neg_seg: float = 1.0           # weight of the negative crops' own loss: cross-entropy averaged over their
    # supervised pixels alone, in stage 1 too (joined to the target crops' loss a false object was ~1% of a batch's
    # supervised pixels). Cross-entropy alone, not seg_loss: its Dice term on an empty target pushes to exactly 0;
    # measured no different at weight 1 (docs/journal.md, session 24)
    crop: int = 256                  # working-resolution pixels
    lr: float = 5e-4
    w_src_seg: float = 1.0
    w_src_det: float = 5.0
    w_tgt_det: float = 2.0
    w_tgt_seg: float = 1.0
    w_con: float = 0.1
    t_s1: float = 0.9                # pseudo-label confidence threshold, stage 1 / stage 2
    t_s2: float = 0.8
    sigma: float = 6.0
    augment: float = 1.0
    # Switches for the ablation; the defaults are the full method.
    cross_teaching: bool = True      # detection targets from pseudo-instance centroids (else clicks only)
    contrastive: bool = True
    pseudo: str = "ipl"              # "ipl", "pixel" (plain confidence) or "naive" (click disks; a baseline)
    detection: bool = True           # detection head trained on the target and used to select instances
    adabn: bool = True               # re-estimate BatchNorm statistics on the target once, at the start
    adabn_n0: float | None = 3.2e6   # ... blended with the source's by n/(n + n0), n target working px
    # Settings that earned their place on Lucchi (the evidence: docs/journal.md, "Settings kept").
    detector_trust: float = 0.5      # peaks select only if the start finds the clicks (bad peaks hurt)
    # Detection peaks select pseudo-instances besides the clicked components (the paper's IPL). Off: once the
    # retrained detector passed the trust check, its peaks admitted false objects and Lucchi Dice fell to
    # 0.794, against 0.859 without target detection (390 iterations, 15% clicks; docs/journal.md).
    peak_selection: bool = False
    # Pseudo-labels from the xy probability blended with the xz and yz views predicted once at the start, every
    # component confident in the blend selected (cross_views.py); for near-isotropic stacks of 32+ slices.
    cross_views: bool = False
    target_bn_stats: bool = True     # only target batches update BN statistics (mixing undid AdaBN)
    click_reach_z: int = 8           # a click spares background on slices this near: its object goes on
    click_reach_radius: float = 12.0  # ... within this many working px of the click
    source_veto: float | None = 0.5  # background only where the start, before AdaBN, gave p below this
    source_veto_erode: int = 2       # ... shrunk by this many px first, so borders are still taught
    click_fraction: float | None = None  # fraction of instances the user clicked, when known
    label_slices: int = 40           # target slices (evenly spaced) pseudo-labelled per round
    # Which model to keep: "guarded" = the latest whose answers to the held-out clicks are at most
    # guard_tolerance worse than the start's (clicks or negative clicks given; without any: "score"),
    # "score" = the best label-free score (selection_score), "last" = the last one.
    selection: str = "guarded"
    guard_tolerance: float = 0.2
    heldout_share: float = 0.2       # clicks never trained on: they pick the kept model and estimate quality
    uda_margin: float = 0.5          # no clicks: a trained model must beat AdaBN's score by this (drift)
    report_every: int = 5
    seed: int = 0

    def __post_init__(self):
        # A misspelt choice would otherwise fall through to another rule without a word.
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        if not 0.0 <= self.guard_tolerance <= 1.0:
            raise ValueError(f"guard_tolerance is a share of the held-out clicks in [0, 1], got {self.guard_tolerance}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def preset(cls, name: str, **over) -> AdaptSettings:
        """"quick": minutes on a laptop CPU (default); "thorough": the authors' longer schedule (GPU)."""
        if name == "quick":
            base = cls()
        elif name == "thorough":
            base = cls(minutes=240, stage1_rounds=5, stage2_rounds=2, source_batch=4, target_batch=4,
                       crop=256, label_slices=10_000, lr=2e-4)
        else:
            raise ValueError(f"unknown preset {name!r}; use 'quick' or 'thorough'")
        return dataclasses.replace(base, **over)


@dataclass
class AdaptReport:
    stage: str                       # "prepare", "label", "train", "done"
    round: int
    n_rounds: int
    step: int
    elapsed_s: float
    budget_s: float
    losses: dict = field(default_factory=dict)
    it_per_s: float = 0.0
    score: float | None = None       # label-free model-selection score of the latest prediction
    best_score: float | None = None
    n_clicks: int = 0
    n_negative: int = 0              # negative ("not a mitochondrion") clicks taken up
    n_corrected: int = 0             # the user's corrected objects taken up (corrections.py)
    n_pseudo: int = 0                # pseudo-instances selected in this round
    prediction: dict | None = None   # {"slices": z indices, "prob": (k,h,w), "heat": (k,h,w)} working res
    message: str = ""
    kept_step: int | None = None     # "label"/"done": the step whose model is kept; None = the starting model
    # "label" only, when the kept model changed since the previous "label" report (always on the first):
    # its weights, for checkpoints written while it runs. Not a copy: read it, don't modify it.
    best_state: dict | None = None
    # The kept model on the held-out clicks (heldout.heldout_quality): n_heldout, heldout_hit_rate, ...
    quality: dict | None = None
    # "label"/"done": the detector's median heat at the training clicks (selection.heat_at_clicks) of that
    # round's prediction / of the kept model; the first round's decides whether its peaks select (trust).
    heat_at_clicks: float | None = None

    @property
    def eta_s(self) -> float:
        return max(0.0, self.budget_s - self.elapsed_s)
