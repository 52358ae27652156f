"""Scoring results against ground truth without torch: Dice/IoU, AJI and PQ per 2D slice, centre
detection against clicks, ``evaluate_volume`` for a whole stack and its plain-text table, and the
comparison figures of the demo.
"""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".foreground": ["dice", "iou"],
    ".instance_metrics": ["aji", "panoptic_quality", "relabel_2d"],
    ".detection": ["centre_detection"],
    ".metrics": ["evaluate_volume", "format_table"],
    ".figures": ["save_comparison"],
})
