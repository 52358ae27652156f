"""Input checks shared by the metrics, and foreground overlap: Dice and IoU of two masks."""

from __future__ import annotations

import numpy as np


def _as_labels(arr, name: str) -> np.ndarray:
    """Return ``arr`` as a non-negative integer array, or raise a ValueError saying what is wrong."""
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.view(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.signedinteger) and a.size and a.min() < 0:
            raise ValueError(f"{name} contains negative values; labels must be >= 0 (0 = background)")
        return a
    if np.issubdtype(a.dtype, np.floating):
        # Label images saved as float TIFFs are common; probabilities are not labels.
        if a.size and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(
                f"{name} has non-integer float values (dtype {a.dtype}); threshold probabilities "
                "into a mask or pass an integer label image"
            )
        if a.size and a.min() < 0:
            raise ValueError(f"{name} contains negative values; labels must be >= 0 (0 = background)")
        return a.astype(np.int64)
    raise ValueError(f"{name} must be a bool or integer array, got dtype {a.dtype}")


def _check_same_shape(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match ground-truth shape {gt.shape}")


def _check_2d(a: np.ndarray, name: str) -> None:
    if a.ndim != 2:
        raise ValueError(f"{name} must be a single 2D slice, got an array of shape {a.shape}")


def _fg_counts(pred_mask, gt_mask) -> tuple[int, int, int]:
    p = np.asarray(pred_mask)
    g = np.asarray(gt_mask)
    _check_same_shape(p, g)
    p = p != 0
    g = g != 0
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))


def _dice_from_counts(inter: int, n_pred: int, n_gt: int) -> float:
    total = n_pred + n_gt
    return 1.0 if total == 0 else 2.0 * inter / total


def _iou_from_counts(inter: int, n_pred: int, n_gt: int) -> float:
    union = n_pred + n_gt - inter
    return 1.0 if union == 0 else inter / union


def dice(pred_mask, gt_mask) -> float:
    """Foreground Dice coefficient of two masks of any (equal) shape; non-zero means foreground.

    Pooled over all voxels. Both masks empty gives 1.0 (nothing to find, nothing found).
    """
    return _dice_from_counts(*_fg_counts(pred_mask, gt_mask))


def iou(pred_mask, gt_mask) -> float:
    """Foreground Jaccard index (IoU) of two masks of any (equal) shape. Both empty gives 1.0."""
    return _iou_from_counts(*_fg_counts(pred_mask, gt_mask))
