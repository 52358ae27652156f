"""The weakly supervised domain adaptation of arXiv 2510.16450 from sparse centre clicks.

The ``adapt`` generator (loop) with its settings and reports (settings) and the settings fitted to a
volume's size (auto); what each self-training round trains on (rounds: pseudo-labels, detection targets,
batches, prototypes) and its parts: the clicks (points: read, checked, written, simulated), what negative
clicks make background (negatives), the user's corrected objects as exact labels (corrections), where a
click would teach most (suggest), the instance-aware pseudo-labels (pseudo_labels), the losses (partial
detection, class-focused contrastive), AdaBN and the BatchNorm statistics (batchnorm), the label-free
model selection and detector check (selection), the held-out clicks that judge it (heldout), the
predictions of the labelled slices (predict), the replay set and the adapted checkpoint (saving); and the
live previews the widget shows while it trains (live).
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".settings": ["AdaptSettings", "AdaptReport"],
    ".auto": ["auto_settings"],
    ".heldout": ["ClickSplit", "heldout_quality", "describe_quality"],
    ".loop": ["adapt"],
    ".rounds": ["TargetRound", "build_round", "naive_click_labels", "target_batch", "round_prototypes"],
    ".selection": ["selection_score", "heat_at_clicks", "detector_trusted"],
    ".predict": ["predict_slices", "StartingProbability"],
    ".batchnorm": ["adabn", "frozen_bn_stats"],
    ".saving": ["save_adapted", "replay_planes", "with_state"],
    ".points": ["validate_points", "read_points", "points_by_slice", "innermost_point", "simulate_clicks",
                "write_points_csv"],
    ".losses": ["partial_weighted_mse", "detection_weights", "class_focused_contrastive", "cosine_kmeans",
                "build_prototypes"],
    ".pseudo_labels": ["IPLResult", "instance_aware_pseudo_labels", "pixel_confidence_pseudo_labels",
                       "ratio_schedule", "budget_anchor", "spare_background_near"],
    ".negatives": ["negative_region", "apply_negatives", "drop_negated"],
    ".corrections": ["Corrections", "corrections_from_edit", "keep_corrections", "slice_diff", "working_corrections",
                     "apply_corrections"],
    ".suggest": ["Suggestions", "suggest_points"],
    ".live": ["SlicePreview", "TRUSTED_MITO", "UNSURE", "nearest_slices", "slice_preview", "preview_slices",
              "current_preview", "leave_out_negated"],
})
