"""``VLTracker``: ground a description, track, notice loss, search the whole frame, re-acquire.

States (values match vl_tracker/TrackedTarget.msg)::

    IDLE --description--> GROUNDING --found--> TRACKING --lost--> SEARCHING --re-acquired--> TRACKING
    new description (any state) -> GROUNDING; description + box -> TRACKING; reset -> IDLE

The switch: every frame gives a score ``w * confidence + (1 - w) * similarity``
for the chosen candidate, smoothed by an exponential moving average. The
target is declared lost after ``lost_frames`` consecutive frames with the
smoothed score under ``lost_threshold``; while SEARCHING (or GROUNDING) a
candidate is accepted only at ``accept_threshold`` or above, which is higher
than ``lost_threshold`` (hysteresis), so a flickering score does not make the
state flicker. No box is ever reported outside TRACKING.

The tracker is deterministic: the same frames and calls give the same results.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vl_tracker_core.boxes import Box, as_box, box_iou, clip_box
from vl_tracker_core.data.crops import (
    CropTransform,
    candidate_crops,
    candidate_geometry,
    crop_around,
    letterbox,
)
from vl_tracker_core.engines.base import Engine, Peaks, TextFeatures
from vl_tracker_core.models.text import clean_description
from vl_tracker_core.trackers.base import TrackResult, TrackState

log = logging.getLogger(__name__)

VARIANTS = ("full", "no_switch", "ground_every_frame")
#: What a box-only start (no language) tracks with: a sentence that names no attribute.
BOX_ONLY_DESCRIPTION = "the object"


class FrameError(ValueError):
    """A frame the tracker cannot use (wrong dtype, shape or size)."""


@dataclass(frozen=True)
class TrackerParams:
    """Switch and search parameters. Defaults come from a sweep on synth-val (see BENCHMARKS.md)."""

    variant: str = "full"
    #: weight of the network confidence in the per-frame score (the rest is the VL similarity)
    confidence_weight: float = 0.5
    #: EMA factor of the smoothed score (weight of the newest frame)
    smoothing: float = 0.6
    #: T_lost and N: lost after N consecutive frames with the smoothed score under T_lost
    lost_threshold: float = 0.65
    lost_frames: int = 3
    #: T_accept: a re-search candidate is accepted at or above this score (> T_lost)
    accept_threshold: float = 0.8
    #: score the first grounding after a new description needs (the operator has just said the target is
    #: in view, so this may be lower than T_accept; a wrong pick scores low while tracking and is dropped)
    ground_threshold: float = 0.5
    #: run the global re-search every k-th frame while SEARCHING
    research_interval: int = 1
    #: candidates of the global pass verified with a tracking pass while SEARCHING
    verify_candidates: int = 3
    #: while SEARCHING, weight of the template's appearance agreement in a candidate's score (the rest is
    #: the matcher's probability that it is the described object): the text and the template must agree
    research_template_weight: float = 0.5
    #: refine the first grounding's box with a tracking pass centred on the chosen candidate (proposal boxes
    #: come from a 256-px letterbox; the tracking head regresses the box on a full-resolution crop)
    refine_grounding: bool = True
    #: refresh the template only on frames scoring at least this (>= 1.01 disables refresh)
    template_refresh_threshold: float = 1.01
    template_refresh_interval: int = 30
    #: largest box size change accepted between two frames (factor)
    max_scale_change: float = 1.6
    #: motion prior of a tracking pass: a peak's rank is ``(1 - w) * heat + w * window``, the window being a
    #: raised cosine over the search crop centred where the target was (0 = the strongest peak always wins)
    window_influence: float = 0.0
    #: weight of the new box size while TRACKING (the rest is the previous size; 1 = take the new size)
    size_update: float = 1.0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} unknown; choose from {VARIANTS}")
        for name in ("confidence_weight", "smoothing", "lost_threshold", "accept_threshold", "ground_threshold",
                     "research_template_weight", "window_influence", "size_update"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0) or math.isnan(value):
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.smoothing <= 0.0:
            raise ValueError("smoothing must be > 0 (1 means no smoothing)")
        if self.size_update <= 0.0:
            raise ValueError("size_update must be > 0 (1 means the new size is taken as it is)")
        if self.accept_threshold <= self.lost_threshold:
            raise ValueError(f"accept_threshold ({self.accept_threshold}) must be greater than lost_threshold "
                             f"({self.lost_threshold}): that gap is the hysteresis")
        if self.lost_frames < 1 or self.research_interval < 1 or self.verify_candidates < 0:
            raise ValueError("lost_frames and research_interval must be >= 1, verify_candidates >= 0")
        if self.max_scale_change < 1.0:
            raise ValueError("max_scale_change must be >= 1")
        if self.refine_grounding not in (True, False):  # 0 / 1 from a sweep grid are fine
            raise ValueError(f"refine_grounding must be true or false, got {self.refine_grounding!r}")
        object.__setattr__(self, "refine_grounding", bool(self.refine_grounding))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackerParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tracker parameters {unknown}; known: {sorted(known)}")
        return cls(**data)


def load_default_params() -> dict[str, Any]:
    """The ``tracker`` section of the packaged ``tracker.yaml`` (the same file the ROS node reads)."""
    from importlib import resources

    import yaml

    text = resources.files("vl_tracker_core").joinpath("resources", "tracker.yaml").read_text()
    data = yaml.safe_load(text) or {}
    return dict(data.get("tracker", {}))


def load_params_file(path: str | Path) -> dict[str, Any]:
    """The tracker parameters of a YAML file: a ``tracker:`` section at the top (the core's format) or under
    a node's ``ros__parameters`` (a ROS 2 params file such as config/real_camera.yaml). Checked by name."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read parameters file {path}: {exc}") from None
    found: dict[str, Any] | None = None
    if isinstance(data, dict) and isinstance(data.get("tracker"), dict):
        found = data["tracker"]
    elif isinstance(data, dict):
        for section in data.values():
            ros = section.get("ros__parameters") if isinstance(section, dict) else None
            if isinstance(ros, dict) and isinstance(ros.get("tracker"), dict):
                found = {**(found or {}), **ros["tracker"]}
    if found is None:
        raise ValueError(f"{path}: no 'tracker:' section (at the top, or under '<node>: ros__parameters:')")
    known = {f.name for f in dataclasses.fields(TrackerParams)}
    unknown = sorted(set(found) - known)
    if unknown:
        raise ValueError(f"{path}: unknown tracker parameters {unknown}; known: {sorted(known)}")
    return dict(found)


def prepare_frame(frame: np.ndarray) -> np.ndarray:
    """Accept RGB uint8 (H, W, 3); also grayscale (H, W) / (H, W, 1) and RGBA (H, W, 4). Raise FrameError else."""
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FrameError(f"frames must be uint8 RGB; got dtype {frame.dtype} (convert or scale to uint8 first)")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise FrameError(f"frame shape {frame.shape} is not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
    if frame.shape[0] < 16 or frame.shape[1] < 16:
        raise FrameError(f"frame {frame.shape[1]}x{frame.shape[0]} is too small (at least 16x16)")
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


class VLTracker:
    """One target at a time. ``set_target`` (or ``initialize``), then ``step`` once per frame."""

    needs_init_box = False

    def __init__(self, engine: Engine, params: TrackerParams | None = None, grounder: Any = None) -> None:
        """``grounder``: None (our network's proposals and matcher find the target in the whole frame) or an
        open-vocabulary detector (``vl_tracker_core.grounders``) whose boxes and scores take their place."""
        self.engine = engine
        self.grounder = grounder
        self.params = params or TrackerParams()
        self.cfg = engine.config
        self.name = "vl"
        self.reset()

    # ------------------------------------------------------------------ control
    def reset(self) -> None:
        """Forget the target: IDLE until the next description."""
        self.state = TrackState.IDLE
        self.text: TextFeatures | None = None
        self._template: np.ndarray | None = None
        self._template_crop: np.ndarray | None = None
        self._pending_box: Box | None = None
        self._box: Box | None = None
        self._score = 0.0
        self._low = 0
        self._since_seen = 0
        self._frame_index = 0
        self._frame_shape: tuple[int, int] | None = None
        self._last_refresh = 0

    def set_target(self, description: str | bytes, box: Box | None = None) -> None:
        """A new target. With ``box`` (pixels of the next frame) tracking starts directly (NL+BB)."""
        text = clean_description(description)
        init_box = as_box(box) if box is not None else None
        self.reset()
        self.text = self.engine.encode_text(text)  # once per description, never per frame
        self._pending_box = init_box
        self.state = TrackState.GROUNDING

    def update_params(self, **changes: Any) -> None:
        """Change thresholds at run time (validated; the current state is kept)."""
        self.params = dataclasses.replace(self.params, **changes)

    # ------------------------------------------------------------------ Tracker interface (evaluation runner)
    def initialize(self, frame: np.ndarray, description: str | None = None, box: Box | None = None) -> TrackResult:
        """Start on ``frame`` from a description, a box, or both. A box alone (sequences without language,
        ``--init bb``) tracks with the neutral description ``BOX_ONLY_DESCRIPTION``."""
        if description is None or not str(description).strip():
            if box is None:
                raise ValueError("the vl tracker needs a description or a box (or both)")
            description = BOX_ONLY_DESCRIPTION
        self.set_target(description, box)
        return self.step(frame)

    def track(self, frame: np.ndarray) -> TrackResult:
        return self.step(frame)

    # ------------------------------------------------------------------ per frame
    def step(self, frame: np.ndarray) -> TrackResult:
        start = time.perf_counter()
        frame = prepare_frame(frame)
        shape = frame.shape[:2]
        if self._frame_shape is not None and shape != self._frame_shape and self.state != TrackState.IDLE:
            # A box from another resolution means nothing here: look for the target again.
            log.warning("frame size changed from %s to %s: grounding the target again", self._frame_shape, shape)
            self._box = None
            self._template = None
            self._template_crop = None
            if self.state in (TrackState.TRACKING, TrackState.SEARCHING):
                self.state = TrackState.GROUNDING
        self._frame_shape = shape
        self._frame_index += 1
        if self.state == TrackState.IDLE or self.text is None:
            return self._result(None, 0.0, float("nan"), start)
        if self._pending_box is not None:
            return self._start_from_box(frame, start)
        variant = self.params.variant
        if variant == "ground_every_frame":
            return self._ground_only(frame, start)
        if self.state == TrackState.GROUNDING:
            return self._grounding(frame, start)
        if self.state == TrackState.TRACKING:
            return self._tracking(frame, start)
        return self._searching(frame, start)

    # ------------------------------------------------------------------ states
    def _start_from_box(self, frame: np.ndarray, start: float) -> TrackResult:
        box = clip_box(self._pending_box, frame.shape[1], frame.shape[0])
        self._pending_box = None
        if box is None or box[2] < 1 or box[3] < 1:
            log.warning("initial box lies outside the %dx%d frame; grounding from the description instead",
                        frame.shape[1], frame.shape[0])
            self.state = TrackState.GROUNDING
            return self._grounding(frame, start)
        self._set_template(frame, box)
        self._acquire(box, 1.0)
        return self._result(box, 1.0, float("nan"), start)

    def _grounding(self, frame: np.ndarray, start: float) -> TrackResult:
        box, score, sim = self._best_global(frame, verify=False)
        threshold = 0.0 if self.params.variant == "no_switch" else self.params.ground_threshold
        if box is not None and score >= threshold:
            self._set_template(frame, box)
            if self.params.refine_grounding:
                box = self._refine(frame, box)
            self._acquire(box, score)
            return self._result(box, score, sim, start)
        self._since_seen += 1
        return self._result(None, score, sim, start)

    def _refine(self, frame: np.ndarray, box: Box) -> Box:
        """The box of a tracking pass centred on ``box`` (template just taken from it), when it lands on the
        same object (IoU > 0.3); the template is then taken again from the refined box."""
        local_box, _, _ = self._local(frame, box)
        if local_box is None or box_iou(local_box, box) <= 0.3:
            return box
        self._set_template(frame, local_box)
        return local_box

    def _tracking(self, frame: np.ndarray, start: float) -> TrackResult:
        box, score, sim = self._local(frame, self._box)
        p = self.params
        self._score = p.smoothing * score + (1.0 - p.smoothing) * self._score
        if box is not None and p.size_update < 1.0:
            box = self._damp_size(box, self._box, frame)
        if p.variant == "no_switch":
            if box is not None:
                self._follow(frame, box, score)
            return self._result(self._box, self._score, sim, start)
        self._low = self._low + 1 if self._score < p.lost_threshold else 0
        if self._low >= p.lost_frames or box is None:
            self.state = TrackState.SEARCHING
            self._since_seen = 1
            return self._result(None, self._score, sim, start)
        self._follow(frame, box, score)
        return self._result(box, self._score, sim, start)

    def _follow(self, frame: np.ndarray, box: Box, score: float) -> None:
        """The target is at ``box`` now; the template is taken again there on a confident frame when the last
        refresh is ``template_refresh_interval`` frames old."""
        p = self.params
        self._box = box
        if (score >= p.template_refresh_threshold
                and self._frame_index - self._last_refresh >= p.template_refresh_interval):
            self._set_template(frame, box)

    def _searching(self, frame: np.ndarray, start: float) -> TrackResult:
        p = self.params
        self._since_seen += 1
        best: tuple[Box | None, float, float] = (None, 0.0, float("nan"))
        # Near where it was last seen (cheap; catches short occlusions) ...
        if self._box is not None:
            best = self._local(frame, self._box)
        # ... and the whole frame every k-th frame.
        if (self._since_seen - 1) % p.research_interval == 0:
            candidate = self._best_global(frame, verify=True)
            if candidate[0] is not None and candidate[1] > best[1]:
                best = candidate
        box, score, sim = best
        if box is not None and score >= p.accept_threshold:
            self._acquire(box, score)
            return self._result(box, score, sim, start)
        return self._result(None, score, sim, start)

    def _ground_only(self, frame: np.ndarray, start: float) -> TrackResult:
        box, score, sim = self._best_global(frame, verify=False)
        if box is not None and score >= self.params.accept_threshold:
            self._box = box
            self.state = TrackState.TRACKING
            self._since_seen = 0
            return self._result(box, score, sim, start)
        self.state = TrackState.SEARCHING if self._box is not None else TrackState.GROUNDING
        self._since_seen += 1
        return self._result(None, score, sim, start)

    # ------------------------------------------------------------------ helpers
    def _acquire(self, box: Box, score: float) -> None:
        self.state = TrackState.TRACKING
        self._box = box
        self._score = max(score, self.params.accept_threshold)
        self._low = 0
        self._since_seen = 0

    def _set_template(self, frame: np.ndarray, box: Box) -> None:
        patch, _ = crop_around(frame, box, self.cfg.template_factor, self.cfg.template_size)
        self._template = self.engine.encode_template(self.text, patch)
        # What a re-search compares candidates with: the target's appearance, cropped as candidates are.
        self._template_crop, _ = crop_around(frame, box, self.cfg.candidate_factor, self.cfg.candidate_size)
        self._last_refresh = self._frame_index

    def _combine(self, peaks: Peaks, i: int) -> float:
        w = self.params.confidence_weight
        return float(w * peaks.confidence[i] + (1.0 - w) * peaks.similarity[i])

    def _to_frame(self, peaks: Peaks, i: int, transform: CropTransform, frame: np.ndarray) -> Box | None:
        box = transform.box_to_frame(tuple(float(v) for v in peaks.boxes[i]))
        if not all(math.isfinite(v) for v in box):
            return None
        box = clip_box(box, frame.shape[1], frame.shape[0])
        return box if box is not None and box[2] >= 1 and box[3] >= 1 else None

    def _limit_scale(self, box: Box, previous: Box) -> Box:
        """Damp implausible size jumps between consecutive frames, keeping the new centre."""
        m = self.params.max_scale_change
        w = min(max(box[2], previous[2] / m), previous[2] * m)
        h = min(max(box[3], previous[3] / m), previous[3] * m)
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        return (cx - w / 2, cy - h / 2, w, h)

    def _damp_size(self, box: Box, previous: Box, frame: np.ndarray) -> Box:
        """The new centre with a size between the previous and the new one (``size_update``)."""
        lr = self.params.size_update
        w = lr * box[2] + (1.0 - lr) * previous[2]
        h = lr * box[3] + (1.0 - lr) * previous[3]
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        return clip_box((cx - w / 2, cy - h / 2, w, h), frame.shape[1], frame.shape[0]) or box

    def _pick_peak(self, peaks: Peaks) -> int:
        """The peak a tracking pass follows: the strongest, or with ``window_influence`` the best of heat and
        nearness to the crop's centre (where the target was on the previous frame)."""
        w = self.params.window_influence
        if w <= 0.0 or len(peaks.scores) < 2:
            return 0
        half = self.cfg.search_size / 2.0
        boxes = np.asarray(peaks.boxes, np.float64)
        d = np.stack([boxes[:, 0] + boxes[:, 2] / 2 - half, boxes[:, 1] + boxes[:, 3] / 2 - half], axis=1) / half
        window = np.prod(0.5 * (1.0 + np.cos(np.pi * np.clip(np.abs(d), 0.0, 1.0))), axis=1)
        rank = (1.0 - w) * np.asarray(peaks.scores, np.float64) + w * window
        rank = np.where(np.isfinite(rank), rank, -np.inf)
        return int(np.argmax(rank))

    def _local(self, frame: np.ndarray, around: Box) -> tuple[Box | None, float, float]:
        """Tracking-mode pass on a search crop around ``around``."""
        search, transform = crop_around(frame, around, self.cfg.search_factor, self.cfg.search_size)
        peaks = self.engine.track(self.text, self._template, search)
        i = self._pick_peak(peaks)
        box = self._to_frame(peaks, i, transform, frame)
        if box is not None:
            box = clip_box(self._limit_scale(box, around), frame.shape[1], frame.shape[0])
        return box, self._combine(peaks, i), float(peaks.similarity[i])

    def _candidates(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray | None]:
        """Proposals on the letterboxed frame (or the grounder's detections), as frame boxes (K, 4), their
        full-resolution crops, geometry, validity mask (a box outside the frame or under 2 px is masked out)
        and, from a grounder, its scores (None for our proposals: the matcher scores them)."""
        height, width = frame.shape[:2]
        k = self.cfg.candidates
        scores = None
        if self.grounder is not None:
            found = self.grounder.detect(frame, self.text.description, k)
            boxes = np.zeros((k, 4), np.float64)
            scores = np.zeros(k, np.float64)
            boxes[: len(found.scores)] = found.boxes
            scores[: len(found.scores)] = found.scores
            boxes[len(found.scores):] = np.nan  # no detection: masked out below
        else:
            image, transform = letterbox(frame, self.cfg.ground_size)
            proposals = self.engine.propose(image)
            boxes = transform.boxes_to_frame(proposals.boxes)
        mask = np.ones(len(boxes), np.float32)
        for i, raw in enumerate(boxes):
            box = clip_box(tuple(float(v) for v in raw), width, height) if np.isfinite(raw).all() else None
            if box is None or box[2] < 2 or box[3] < 2:
                mask[i] = 0.0
                box = (width / 2 - 8.0, height / 2 - 8.0, 16.0, 16.0)  # a placeholder crop, never chosen
            boxes[i] = box
        crops = candidate_crops(frame, boxes, self.cfg.candidate_factor, self.cfg.candidate_size)
        return boxes, crops, candidate_geometry(boxes, width, height), mask, scores

    def _best_global(self, frame: np.ndarray, verify: bool) -> tuple[Box | None, float, float]:
        """Global pass: proposals, their full-resolution crops, the candidate-set matcher. With ``verify``
        (re-search) a candidate's score mixes the matcher's probability with its agreement with the stored
        template, and the best few are re-scored by a tracking pass centred on them (both must agree)."""
        boxes, crops, geometry, mask, detector_scores = self._candidates(frame)
        use_template = verify and self._template_crop is not None
        template = self._template_crop if use_template else crops[0]
        if detector_scores is not None and not use_template:
            matches = None  # a grounder's scores alone decide the first grounding
            probs = np.where(mask > 0, detector_scores, 0.0)
        else:
            matches = self.engine.match(self.text, crops, geometry, mask, template)
            probs = np.where(mask > 0, matches.probs if detector_scores is None else detector_scores, 0.0)
        if use_template:
            w = self.params.research_template_weight
            scores = w * np.where(mask > 0, matches.template_sim, 0.0) + (1.0 - w) * probs
        else:
            scores = probs
        order = [int(i) for i in np.argsort(-scores, kind="stable") if mask[i] > 0]
        best: tuple[Box | None, float, float] = (None, 0.0, float("nan"))
        if not order:
            return best
        if not (verify and self._template is not None):
            i = order[0]
            return tuple(float(v) for v in boxes[i]), float(scores[i]), float(probs[i])
        for i in order[: max(1, self.params.verify_candidates)]:
            box, score, sim = tuple(float(v) for v in boxes[i]), float(scores[i]), float(probs[i])
            local_box, local_score, _ = self._local(frame, box)
            if local_box is not None:
                box, score = local_box, min(score, local_score)
            if score > best[1]:
                best = (box, score, sim)
        return best

    def _result(self, box: Box | None, confidence: float, similarity: float, start: float) -> TrackResult:
        conf = float(np.clip(confidence, 0.0, 1.0)) if math.isfinite(confidence) else 0.0
        return TrackResult(
            state=self.state,
            box=box if self.state == TrackState.TRACKING else None,
            confidence=conf,
            similarity=float(similarity),
            frames_since_seen=self._since_seen,
            processing_ms=(time.perf_counter() - start) * 1000.0,
        )
