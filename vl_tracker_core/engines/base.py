"""The contract between the tracker and an inference backend (torch, onnxruntime, tensorrt).

Inputs are uint8 RGB patches already cropped/letterboxed by ``data.crops``;
outputs are top-k peaks in input pixels. Backends never see full frames and
never keep per-target state: the tracker owns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vl_tracker_core.models.config import ModelConfig


@dataclass(frozen=True)
class TextFeatures:
    """Token features ``(1, L, H)`` float32 and mask ``(1, L)`` float32 of one description."""

    description: str
    tokens: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Peaks:
    """Top-k candidates of one forward pass, best first."""

    boxes: np.ndarray  # (k, 4) xywh in input pixels
    scores: np.ndarray  # (k,) heat-map peak values in [0, 1]
    confidence: np.ndarray  # (k,) target present and correctly localised, [0, 1]
    similarity: np.ndarray  # (k,) vision-language similarity, [0, 1]
    heat: np.ndarray  # (H, W) heat-map logits at stride 8


class Engine(Protocol):
    name: str
    config: ModelConfig

    def encode_text(self, description: str) -> TextFeatures: ...

    def encode_template(self, text: TextFeatures, template: np.ndarray) -> np.ndarray: ...

    def track(self, text: TextFeatures, template_tokens: np.ndarray, search: np.ndarray) -> Peaks: ...

    def ground(self, text: TextFeatures, image: np.ndarray) -> Peaks: ...


def image_to_nchw(patch: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return (np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) * (1.0 / 255.0))[None]


def peaks_from_outputs(boxes, scores, confidence, similarity, heat) -> Peaks:
    return Peaks(np.asarray(boxes, np.float64)[0], np.asarray(scores, np.float64)[0],
                 np.asarray(confidence, np.float64)[0], np.asarray(similarity, np.float64)[0],
                 np.asarray(heat, np.float32)[0, 0])
