"""The contract between the tracker and an inference backend (torch, onnxruntime, tensorrt).

Inputs are uint8 RGB patches already cropped/letterboxed by ``data.crops``;
outputs are in input pixels. Backends never see full frames and never keep
per-target state: the tracker owns it. Five calls:

- ``encode_text``: once per description;
- ``encode_template``: once per target (tracking template tokens);
- ``track``: every frame, a search crop around the last box -> top-k peaks;
- ``propose``: the letterboxed whole frame -> K class-agnostic candidate boxes;
- ``match``: K candidate crops (from the full-resolution frame) with their geometry,
  plus a template crop -> a probability per candidate and for "none of them", and
  each candidate's appearance agreement with the template.
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


@dataclass(frozen=True)
class Proposals:
    """K class-agnostic candidates of the letterboxed frame, best first."""

    boxes: np.ndarray  # (K, 4) xywh in letterbox pixels
    scores: np.ndarray  # (K,) objectness in [0, 1]


@dataclass(frozen=True)
class Matches:
    """The matcher's answer for K candidates."""

    probs: np.ndarray  # (K,) probability that candidate i is the described object
    none: float  # probability that none of them is
    template_sim: np.ndarray  # (K,) appearance agreement with the template crop, [0, 1]


class Engine(Protocol):
    name: str
    config: ModelConfig

    def encode_text(self, description: str) -> TextFeatures: ...

    def encode_template(self, text: TextFeatures, template: np.ndarray) -> np.ndarray: ...

    def track(self, text: TextFeatures, template_tokens: np.ndarray, search: np.ndarray) -> Peaks: ...

    def propose(self, image: np.ndarray) -> Proposals: ...

    def match(self, text: TextFeatures, crops: np.ndarray, geometry: np.ndarray, cand_mask: np.ndarray,
              template_crop: np.ndarray) -> Matches: ...


def image_to_nchw(patch: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return (np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) * (1.0 / 255.0))[None]


def peaks_from_outputs(boxes, scores, confidence, similarity, heat) -> Peaks:
    return Peaks(np.asarray(boxes, np.float64)[0], np.asarray(scores, np.float64)[0],
                 np.asarray(confidence, np.float64)[0], np.asarray(similarity, np.float64)[0],
                 np.asarray(heat, np.float32)[0, 0])


def crops_to_nchw(crops: np.ndarray) -> np.ndarray:
    """(K, C, C, 3) uint8 -> (1, K, 3, C, C) float32 in [0, 1]."""
    return (np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) * (1.0 / 255.0))[None]


def proposals_from_outputs(boxes, scores) -> Proposals:
    return Proposals(np.asarray(boxes, np.float64)[0], np.asarray(scores, np.float64)[0])


def matches_from_outputs(probs, template_sim) -> Matches:
    p = np.asarray(probs, np.float64)[0]
    return Matches(p[:-1], float(p[-1]), np.asarray(template_sim, np.float64)[0])
