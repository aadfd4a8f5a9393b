"""What a grounder gives the tracker: boxes in frame pixels and a score per box for one description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Grounder choices (``joint`` is the tracker's own network; the rest are transformers detectors).
GROUNDERS = ("joint", "owlv2", "owlvit", "grounding-dino")


class GrounderError(RuntimeError):
    """A grounder that cannot be built or run (names the folder or file)."""


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (N, 4) float64 x, y, w, h in frame pixels, best score first
    scores: np.ndarray  # (N,) float64 in [0, 1]

    def __post_init__(self) -> None:
        if self.boxes.shape != (len(self.scores), 4):
            raise ValueError(f"detections: boxes {self.boxes.shape} do not match {len(self.scores)} scores")


class Grounder(Protocol):
    name: str
    model_dir: str

    def detect(self, frame: np.ndarray, description: str, top_k: int) -> Detections:
        """The ``top_k`` best boxes for ``description`` in the RGB ``frame``."""
        ...
