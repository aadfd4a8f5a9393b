"""OpenCV CSRT and KCF, initialised from a box: the classical baselines every result is compared with."""

from __future__ import annotations

import time

import cv2
import numpy as np

from vl_tracker_core.boxes import Box, as_box, clip_box
from vl_tracker_core.trackers.base import TrackResult, TrackState

_FACTORIES = {
    "csrt": ("TrackerCSRT", "TrackerCSRT_create"),
    "kcf": ("TrackerKCF", "TrackerKCF_create"),
}


def _create_cv_tracker(kind: str) -> object:
    cls_name, legacy_name = _FACTORIES[kind]
    if hasattr(cv2, cls_name) and hasattr(getattr(cv2, cls_name), "create"):
        return getattr(cv2, cls_name).create()
    if hasattr(cv2, legacy_name):
        return getattr(cv2, legacy_name)()
    raise RuntimeError(
        f"OpenCV {cv2.__version__} has no {cls_name}; install opencv-contrib-python-headless for the {kind} baseline"
    )


class OpenCVTracker:
    """Wraps cv2's CSRT/KCF in the core Tracker interface.

    These trackers have no notion of language and no calibrated confidence:
    confidence is 1 while OpenCV reports success and 0 when it reports failure
    (then no box is given and the state is SEARCHING).
    """

    needs_init_box = True

    def __init__(self, kind: str) -> None:
        if kind not in _FACTORIES:
            raise ValueError(f"unknown OpenCV tracker {kind!r}; choose from {sorted(_FACTORIES)}")
        self.name = kind
        self._kind = kind
        self._tracker: object | None = None
        self._since_seen = 0

    def initialize(self, frame: np.ndarray, description: str | None = None, box: Box | None = None) -> TrackResult:
        if box is None:
            raise ValueError(f"the {self.name} baseline needs an initial box")
        start = time.perf_counter()
        height, width = frame.shape[:2]
        clipped = clip_box(as_box(box), width, height)
        if clipped is None:
            raise ValueError(f"initial box {box} lies outside the {width}x{height} frame")
        self._tracker = _create_cv_tracker(self._kind)
        x, y, w, h = clipped
        self._tracker.init(_to_bgr(frame), (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))))
        self._since_seen = 0
        ms = (time.perf_counter() - start) * 1000.0
        return TrackResult(TrackState.TRACKING, clipped, 1.0, processing_ms=ms)

    def track(self, frame: np.ndarray) -> TrackResult:
        if self._tracker is None:
            raise RuntimeError("track() called before initialize()")
        start = time.perf_counter()
        ok, raw = self._tracker.update(_to_bgr(frame))
        ms = (time.perf_counter() - start) * 1000.0
        box = clip_box(tuple(float(v) for v in raw), frame.shape[1], frame.shape[0]) if ok else None
        if box is None or box[2] <= 0 or box[3] <= 0:
            self._since_seen += 1
            return TrackResult(TrackState.SEARCHING, None, 0.0, frames_since_seen=self._since_seen, processing_ms=ms)
        self._since_seen = 0
        return TrackResult(TrackState.TRACKING, box, 1.0, processing_ms=ms)


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, ::-1])
