"""The one place where frames become network inputs and network boxes become frame boxes.

Two operations, both plain affine warps so a box maps back exactly:

- ``crop_around``: a square crop of side ``factor * sqrt(w * h)`` centred on a box,
  resized to ``out_size`` (template and search crops, as in OSTrack);
- ``letterbox``: the whole frame scaled to fit ``size x size`` and padded (grounding).

Regions outside the frame are filled with the frame's mean colour so padding
does not look like a black object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vl_tracker_core.boxes import Box


@dataclass(frozen=True)
class CropTransform:
    """Maps crop pixels to frame pixels: ``frame = crop / scale + offset``."""

    scale: float
    offset_x: float
    offset_y: float

    def box_to_frame(self, box: Box) -> Box:
        x, y, w, h = box
        return (x / self.scale + self.offset_x, y / self.scale + self.offset_y, w / self.scale, h / self.scale)

    def box_to_crop(self, box: Box) -> Box:
        x, y, w, h = box
        return ((x - self.offset_x) * self.scale, (y - self.offset_y) * self.scale, w * self.scale, h * self.scale)

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` xywh in crop pixels to frame pixels."""
        out = np.asarray(boxes, dtype=np.float64) / self.scale
        out[..., 0] += self.offset_x
        out[..., 1] += self.offset_y
        return out


def _warp(image: np.ndarray, transform: CropTransform, out_size: int) -> np.ndarray:
    s = transform.scale
    matrix = np.array([[s, 0.0, -transform.offset_x * s], [0.0, s, -transform.offset_y * s]], dtype=np.float64)
    fill = tuple(float(v) for v in image.reshape(-1, image.shape[-1])[:: max(1, image.size // 3 // 4096)].mean(0))
    return cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


def crop_side(box: Box, factor: float) -> float:
    """Side of the square context region for ``box`` (at least 8 px so tiny boxes stay usable)."""
    return max(8.0, factor * math.sqrt(max(box[2], 1e-3) * max(box[3], 1e-3)))


def crop_square(image: np.ndarray, center: tuple[float, float], side: float,
                out_size: int) -> tuple[np.ndarray, CropTransform]:
    """Square region of ``side`` frame pixels centred on ``center``, resized to ``out_size``."""
    cx, cy = center
    transform = CropTransform(out_size / side, cx - side / 2.0, cy - side / 2.0)
    return _warp(image, transform, out_size), transform


def crop_around(image: np.ndarray, box: Box, factor: float, out_size: int,
                center: tuple[float, float] | None = None) -> tuple[np.ndarray, CropTransform]:
    """Square crop of side ``factor * sqrt(w*h)`` centred on ``center`` (default: the box centre)."""
    cx, cy = center if center is not None else (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)
    return crop_square(image, (cx, cy), crop_side(box, factor), out_size)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, CropTransform]:
    """The whole frame scaled to fit ``size x size``, centred, padded with its mean colour."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    # Offsets are in frame pixels: the padding is split evenly on both sides.
    offset_x = -(size / scale - width) / 2.0
    offset_y = -(size / scale - height) / 2.0
    transform = CropTransform(scale, offset_x, offset_y)
    return _warp(image, transform, size), transform


def to_chw_float(patch: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 in [0, 1] (normalisation happens inside the network)."""
    return np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) * (1.0 / 255.0)


def candidate_crops(image: np.ndarray, boxes: np.ndarray, factor: float, size: int) -> np.ndarray:
    """``(K, size, size, 3)`` crops of the full-resolution frame around each candidate box (grounding
    and re-search re-crop every proposal from the frame itself, not from the letterboxed copy)."""
    return np.stack([crop_around(image, tuple(float(v) for v in box), factor, size)[0] for box in boxes])


def candidate_geometry(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(K, 6)`` float32 geometry of candidate boxes in the frame, what the matcher needs to decide
    relations and relative size: centre x / W, centre y / H, w / W, h / H, log aspect ratio, and log size
    relative to the frame (shifted to lie near 0)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(b[:, 2], 1.0)
    h = np.maximum(b[:, 3], 1.0)
    geometry = np.stack([
        (b[:, 0] + w / 2) / width, (b[:, 1] + h / 2) / height, w / width, h / height,
        np.log(w / h), 0.5 * np.log(w * h / (width * height)) + 2.5,
    ], axis=1)
    return geometry.astype(np.float32)
