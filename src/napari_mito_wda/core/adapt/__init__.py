"""The weakly supervised domain adaptation of arXiv 2510.16450 from sparse centre clicks: the clicks
(read, checked, simulated), the losses (partial detection, class-focused contrastive), the
instance-aware pseudo-labels, the ``adapt`` loop with its settings, and the live previews the widget
shows while it trains.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".loop": ["AdaptSettings", "AdaptReport", "TargetRound", "adapt", "save_adapted", "replay_planes", "adabn",
              "frozen_bn_stats", "selection_score", "predict_slices", "StartingProbability", "heat_at_clicks",
              "detector_trusted", "build_round", "naive_click_labels"],
    ".points": ["validate_points", "read_points", "points_by_slice", "innermost_point", "simulate_clicks"],
    ".losses": ["partial_weighted_mse", "detection_weights", "class_focused_contrastive", "cosine_kmeans",
                "build_prototypes"],
    ".pseudo_labels": ["IPLResult", "instance_aware_pseudo_labels", "pixel_confidence_pseudo_labels",
                       "ratio_schedule", "budget_anchor", "spare_background_near"],
    ".live": ["SlicePreview", "TRUSTED_MITO", "UNSURE", "nearest_slices", "slice_preview", "preview_slices",
              "current_preview"],
})
