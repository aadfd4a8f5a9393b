"""The interface every tracker in the evaluation runner implements."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from vl_tracker_core.boxes import Box


class TrackState(enum.IntEnum):
    """Values match the STATE_* constants of vl_tracker/TrackedTarget.msg."""

    IDLE = 0
    GROUNDING = 1
    TRACKING = 2
    SEARCHING = 3


@dataclass(frozen=True)
class TrackResult:
    """What a tracker says about one frame.

    ``box`` is set only when ``state`` is TRACKING: a tracker never reports a
    stale box as tracked.
    """

    state: TrackState
    box: Box | None
    confidence: float
    similarity: float = float("nan")
    frames_since_seen: int = 0
    processing_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.box is not None and self.state != TrackState.TRACKING:
            raise ValueError(f"a box was given with state {self.state.name}; boxes are only reported while TRACKING")


@runtime_checkable
class Tracker(Protocol):
    """Initialise from a description and/or a box, then one result per frame.

    Frames are RGB uint8 ``(H, W, 3)`` arrays.
    """

    name: str
    #: True for trackers that cannot start without a box (CSRT, KCF).
    needs_init_box: bool

    def initialize(self, frame: np.ndarray, description: str | None = None, box: Box | None = None) -> TrackResult:
        ...

    def track(self, frame: np.ndarray) -> TrackResult:
        ...
