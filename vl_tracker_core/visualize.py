"""Overlay of a tracking result on a frame: the annotated video, the ROS debug image and plots share it."""

from __future__ import annotations

import cv2
import numpy as np

from vl_tracker_core.trackers.base import TrackResult, TrackState

# RGB colours per state
STATE_COLOURS = {
    TrackState.IDLE: (160, 160, 160),
    TrackState.GROUNDING: (255, 200, 0),
    TrackState.TRACKING: (0, 220, 0),
    TrackState.SEARCHING: (255, 60, 60),
}


def draw_overlay(frame: np.ndarray, result: TrackResult, description: str = "",
                 gt_box: tuple[float, float, float, float] | None = None, note: str = "") -> np.ndarray:
    """A copy of the RGB ``frame`` with the box (only while TRACKING), state, confidence and description;
    ``gt_box`` is drawn thin and white, ``note`` as a second line under the state."""
    image = np.ascontiguousarray(frame.copy())
    height, width = image.shape[:2]
    thickness = max(1, round(min(height, width) / 240))
    scale = max(0.4, min(height, width) / 800)
    colour = STATE_COLOURS.get(result.state, (255, 255, 255))
    if gt_box is not None and all(np.isfinite(gt_box)):
        x, y, w, h = (int(round(v)) for v in gt_box)
        cv2.rectangle(image, (x, y), (x + w, y + h), (255, 255, 255), 1, cv2.LINE_AA)
    if result.box is not None:
        x, y, w, h = (int(round(v)) for v in result.box)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness + 1, cv2.LINE_AA)
    status = f"{result.state.name}  conf {result.confidence:.2f}"
    if result.state == TrackState.SEARCHING:
        status += f"  lost {result.frames_since_seen} frames"
    top = int(22 * scale / 0.5)
    _label(image, status, (6, top), scale, colour, thickness)
    if note:
        _label(image, note, (6, 2 * top + 4), scale, (255, 255, 255), thickness)
    if description:
        text = description if len(description) <= 70 else description[:67] + "..."
        _label(image, f'"{text}"', (6, height - 8), scale, (255, 255, 255), thickness)
    return image


def _label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple[int, int, int],
           thickness: int) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x, y = origin
    cv2.rectangle(image, (x - 3, y - th - 4), (x + tw + 3, y + base), (0, 0, 0), -1)
    cv2.putText(image, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
