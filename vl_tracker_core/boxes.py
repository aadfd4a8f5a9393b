"""Box helpers.

One convention inside the core: ``(x, y, w, h)`` in pixels of the frame, x/y the
top-left corner, floats. Conversions to other conventions happen at the edges
(ROS messages, network outputs) and nowhere else.

"Absent" is represented by ``None`` for a single box and by a row of NaNs in an
``(N, 4)`` array.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]


class InvalidBoxError(ValueError):
    """A box that cannot be used (NaN, non-positive size, outside the frame)."""


def as_box(values: Sequence[float] | np.ndarray) -> Box:
    """Return ``values`` as an ``(x, y, w, h)`` tuple of floats; raise on bad input."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (4,):
        raise InvalidBoxError(f"a box needs 4 numbers (x, y, w, h), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise InvalidBoxError(f"box {arr.tolist()} contains NaN or infinity")
    if arr[2] <= 0 or arr[3] <= 0:
        raise InvalidBoxError(f"box {arr.tolist()} has non-positive width or height")
    return (float(arr[0]), float(arr[1]), float(arr[2]), float(arr[3]))


def parse_box(text: str) -> Box:
    """Parse ``"x,y,w,h"`` (commas, tabs or spaces) into a box."""
    parts = [p for p in text.replace("\t", ",").replace(" ", ",").split(",") if p]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidBoxError(f"box {text!r} is not four numbers 'x,y,w,h'") from None
    return as_box(numbers)


def clip_box(box: Box, width: int, height: int) -> Box | None:
    """Intersect ``box`` with the frame; ``None`` if nothing of it is inside."""
    x, y, w, h = box
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def box_center(box: Box) -> tuple[float, float]:
    x, y, w, h = box
    return (x + 0.5 * w, y + 0.5 * h)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    out[..., 2] = boxes[..., 0] + boxes[..., 2]
    out[..., 3] = boxes[..., 1] + boxes[..., 3]
    return out


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def iou(pred: np.ndarray, gt: np.ndarray, pixel_inclusive: bool = True) -> np.ndarray:
    """Row-wise IoU of two ``(N, 4)`` xywh arrays.

    ``pixel_inclusive=True`` is how pytracking/OSTrack write it: a box covers
    the pixels ``x .. x + w - 1``, so far corners are ``x + w - 1`` and ``+1`` is
    added back to the intersection size. ``False`` is the continuous form of the
    got10k toolkit. The -1 and +1 cancel and both use ``w * h`` for the areas,
    so the two give the same value (up to float rounding; tested); the switch
    exists so each toolkit's formula can be checked as written. Rows with a NaN
    on either side give NaN.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if pixel_inclusive else 0.0
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - one, gt[:, :2] + gt[:, 2:] - one)
    size = np.clip(br - tl + one, 0.0, None)
    inter = size[:, 0] * size[:, 1]
    union = pred[:, 2] * pred[:, 3] + gt[:, 2] * gt[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    out[np.isnan(pred).any(axis=1) | np.isnan(gt).any(axis=1)] = np.nan
    return out


def box_iou(a: Box, b: Box, pixel_inclusive: bool = False) -> float:
    """IoU of two single boxes (continuous by default, as used inside the tracker)."""
    return float(iou(np.array([a]), np.array([b]), pixel_inclusive=pixel_inclusive)[0])


def is_valid_box(box: Box | None) -> bool:
    return box is not None and all(math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0
