"""The contract between the tracker and an inference backend (torch, onnxruntime, tensorrt).

Inputs are uint8 RGB patches already cropped/letterboxed by ``data.crops``;
outputs are in input pixels. Backends never see full frames and never keep
per-target state: the tracker (and its online model) owns it. Four calls:

- ``encode_text``: once per description;
- ``features``: the trunk's stride-8 and stride-16 maps of square patches, every frame (the online
  model's tracking crop, or its scale-check crops in one batch) and while searching (the re-detection
  window); each patch size / batch is one static graph;
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

    def features(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> stride-8 (N, C8, S/8, S/8) and stride-16 (N, C16, S/16, S/16) float32 maps."""
        ...

    def propose(self, image: np.ndarray) -> Proposals: ...

    def match(self, text: TextFeatures, crops: np.ndarray, geometry: np.ndarray, cand_mask: np.ndarray,
              template_crop: np.ndarray) -> Matches: ...


def image_to_nchw(patch: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 in [0, 1]."""
    return (np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) * (1.0 / 255.0))[None]


def patches_to_nchw(patches: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(patches.transpose(0, 3, 1, 2), dtype=np.float32) * (1.0 / 255.0)


def crops_to_nchw(crops: np.ndarray) -> np.ndarray:
    """(K, C, C, 3) uint8 -> (1, K, 3, C, C) float32 in [0, 1]."""
    return (np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) * (1.0 / 255.0))[None]


def proposals_from_outputs(boxes, scores) -> Proposals:
    return Proposals(np.asarray(boxes, np.float64)[0], np.asarray(scores, np.float64)[0])


def matches_from_outputs(probs, template_sim) -> Matches:
    p = np.asarray(probs, np.float64)[0]
    return Matches(p[:-1], float(p[-1]), np.asarray(template_sim, np.float64)[0])
