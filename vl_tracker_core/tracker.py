"""``VLTracker``: ground a description, track, notice loss, search the whole frame, re-acquire.

States (values match vl_tracker/TrackedTarget.msg)::

    IDLE --description--> GROUNDING --found--> TRACKING --lost--> SEARCHING --re-acquired--> TRACKING
    new description (any state) -> GROUNDING; description + box -> TRACKING; reset -> IDLE

Who does what (tracking core v4):

- **grounding** (first frame of a description): class-agnostic proposals on the whole frame and the
  candidate-set matcher (or an open-vocabulary ``grounder``) pick the described object;
- **tracking**: an online discriminative model (``online.OnlineModel``: correlation filters on the
  pretrained trunk's features, learned from the first box) follows it frame by frame;
- **the switch**: every frame scores ``w * quality + (1 - w) * verifier``. ``quality`` is the online
  response's peak and peak-to-sidelobe ratio against their slow running average over the learned frames
  (1 = as sure as usual);
  ``verifier`` is the matcher's view of the tracked box: agreement with the stored template and the
  probability that it is the described object (refreshed every ``verify_interval`` frames). The score is
  smoothed; ``lost_frames`` consecutive frames under ``lost_threshold`` mean lost, and so does a single
  frame under ``drop_threshold`` (a target that left the view is not boxed for N more frames). The online
  model learns only from frames scoring at least ``update_threshold`` (an occluder is not learned);
- **re-search** (SEARCHING): the online model is correlated with a window of the whole frame at the
  target's scale (windows scan the frame when it is larger than one), its best places are checked with a
  tracking pass and the verifier, and accepted at ``accept_threshold`` or above, which is higher than
  ``lost_threshold`` (hysteresis), so a flickering score does not make the state flicker.

No box is ever reported outside TRACKING. The tracker is deterministic: the same frames and calls give the
same results.
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

from vl_tracker_core.boxes import Box, as_box, clip_box
from vl_tracker_core.data.crops import candidate_crops, candidate_geometry, crop_around, letterbox
from vl_tracker_core.engines.base import Engine, TextFeatures
from vl_tracker_core.models.text import clean_description
from vl_tracker_core.online.model import Estimate, OnlineModel, OnlineParams
from vl_tracker_core.trackers.base import TrackResult, TrackState

log = logging.getLogger(__name__)

VARIANTS = ("full", "no_switch", "ground_every_frame")
#: What a box-only start (no language) tracks with: a sentence that names no attribute.
BOX_ONLY_DESCRIPTION = "the object"


class FrameError(ValueError):
    """A frame the tracker cannot use (wrong dtype, shape or size)."""


@dataclass(frozen=True)
class TrackerParams:
    """Switch, verification and search parameters. Defaults: BENCHMARKS.md, "Tracking core v4"."""

    variant: str = "full"
    #: weight of the online model's quality in the per-frame score (the rest is the verifier's)
    confidence_weight: float = 0.7
    #: EMA factor of the smoothed score (weight of the newest frame)
    smoothing: float = 0.6
    #: T_lost and N: lost after N consecutive frames with the smoothed score under T_lost
    lost_threshold: float = 0.3
    lost_frames: int = 3
    #: a single frame scoring under this is lost at once (the target left the view: no box on the next frames)
    drop_threshold: float = 0.15
    #: T_accept: a re-search candidate is accepted at or above this score (> T_lost)
    accept_threshold: float = 0.5
    #: score the first grounding after a new description needs (the operator has just said the target is
    #: in view, so this may be lower than T_accept; a wrong pick scores low while tracking and is dropped)
    ground_threshold: float = 0.5
    #: run the re-search every k-th frame while SEARCHING
    research_interval: int = 1
    #: a searching frame either scans (a re-detection window, or the proposals ranked by the matcher) or checks
    #: the previous frame's best candidates (a tracking pass and the verifier), never both, so on a CPU it costs
    #: about one network pass and a realtime stream drops few frames; False: both on one frame (a GPU has time)
    split_search: bool = True
    #: re-detection candidates checked with a tracking pass and the verifier per searching frame
    verify_candidates: int = 1
    #: the verifier's score: w * agreement with the stored template + (1 - w) * the matcher's probability that
    #: the box is the described object
    research_template_weight: float = 0.5
    #: run the verifier on the tracked box every k-th tracking frame (its last answer holds in between)
    verify_interval: int = 5
    #: the online model learns only from frames whose score reaches this
    update_threshold: float = 0.35
    #: learning rate of the online model (0 = keep the first frame's model)
    learning_rate: float = 0.015
    #: the online model checks the target's size (its crop's maps resampled one step either side) every k-th frame
    scale_interval: int = 1
    #: how fast the online model's reference (the peak and PSR it calls "as sure as usual") follows the learned
    #: frames after the first ten; 0 = fixed. Real cameras need it to follow a changing look
    reference_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} unknown; choose from {VARIANTS}")
        for name in ("confidence_weight", "smoothing", "lost_threshold", "accept_threshold", "ground_threshold",
                     "research_template_weight", "update_threshold", "learning_rate", "drop_threshold",
                     "reference_rate"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0) or math.isnan(value):
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.smoothing <= 0.0:
            raise ValueError("smoothing must be > 0 (1 means no smoothing)")
        if self.drop_threshold > self.lost_threshold:
            raise ValueError(f"drop_threshold ({self.drop_threshold}) must not exceed lost_threshold "
                             f"({self.lost_threshold})")
        if self.accept_threshold <= self.lost_threshold:
            raise ValueError(f"accept_threshold ({self.accept_threshold}) must be greater than lost_threshold "
                             f"({self.lost_threshold}): that gap is the hysteresis")
        if self.lost_frames < 1 or self.research_interval < 1 or self.verify_candidates < 1:
            raise ValueError("lost_frames, research_interval and verify_candidates must be >= 1")
        if self.verify_interval < 1 or self.scale_interval < 1:
            raise ValueError("verify_interval and scale_interval must be >= 1")
        if not isinstance(self.split_search, bool):
            raise ValueError(f"split_search must be true or false, got {self.split_search!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackerParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tracker parameters {unknown}; known: {sorted(known)}")
        return cls(**data)

    def online(self) -> OnlineParams:
        """The online model's recipe with this tracker's learning rate and scale interval."""
        return OnlineParams(learning_rate=self.learning_rate, scale_interval=self.scale_interval,
                            reference_rate=self.reference_rate)


def load_default_params() -> dict[str, Any]:
    """The ``tracker`` section of the packaged ``tracker.yaml`` (the same file the ROS node reads)."""
    from importlib import resources

    import yaml

    text = resources.files("vl_tracker_core").joinpath("resources", "tracker.yaml").read_text()
    data = yaml.safe_load(text) or {}
    return dict(data.get("tracker", {}))


#: Parameter files shipped with the package, by the name ``--params`` also takes.
PARAMS_PRESETS = ("synthetic",)


def params_file_path(spec: str | Path) -> Path:
    """``spec`` as a file: a path, or the name of a packaged preset (``synthetic``: the synthetic world's
    values, vl_tracker_core/resources/synthetic.yaml) when no such file exists."""
    path = Path(spec)
    if str(spec) in PARAMS_PRESETS and not path.exists():
        from importlib import resources

        return Path(str(resources.files("vl_tracker_core").joinpath("resources", f"{spec}.yaml")))
    return path


def load_params_file(path: str | Path) -> dict[str, Any]:
    """The tracker parameters of a YAML file: a ``tracker:`` section at the top (the core's format) or under
    a node's ``ros__parameters`` (a ROS 2 params file such as config/tracker.yaml), or a preset's name
    (``synthetic``). Checked by name."""
    import yaml

    path = params_file_path(path)
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
        self.online = OnlineModel(self.engine.features, self.cfg.online_crop_size, self.params.online(),
                                  scales=self.cfg.online_scales)
        self._template_crop: np.ndarray | None = None
        self._pending_box: Box | None = None
        self._box: Box | None = None
        self._score = 0.0
        self._verified = 1.0
        self._low = 0
        self._since_seen = 0
        self._since_verified = 0
        self._frame_index = 0
        self._frame_shape: tuple[int, int] | None = None
        self._scan = 0
        self._to_check: list[tuple[Box, float | None]] = []

    def set_target(self, description: str | bytes, box: Box | None = None) -> None:
        """A new target. With ``box`` (pixels of the next frame) tracking starts directly (NL+BB)."""
        text = clean_description(description)
        init_box = as_box(box) if box is not None else None
        self.reset()
        self.text = self.engine.encode_text(text)  # once per description, never per frame
        self._pending_box = init_box
        self.state = TrackState.GROUNDING

    def update_params(self, **changes: Any) -> None:
        """Change thresholds at run time (validated; the current state and the learned model are kept)."""
        self.params = dataclasses.replace(self.params, **changes)
        self.online.params = dataclasses.replace(self.online.params, learning_rate=self.params.learning_rate,
                                                 scale_interval=self.params.scale_interval,
                                                 reference_rate=self.params.reference_rate)

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
            self._template_crop = None
            if self.state in (TrackState.TRACKING, TrackState.SEARCHING):
                self.state = TrackState.GROUNDING
        self._frame_shape = shape
        self._frame_index += 1
        if self.state == TrackState.IDLE or self.text is None:
            return self._result(None, 0.0, float("nan"), start)
        if self._pending_box is not None:
            return self._start_from_box(frame, start)
        if self.params.variant == "ground_every_frame":
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
        self._start(frame, box, 1.0)
        return self._result(box, 1.0, float("nan"), start)

    def _grounding(self, frame: np.ndarray, start: float) -> TrackResult:
        box, score, sim = self._best_global(frame)
        threshold = 0.0 if self.params.variant == "no_switch" else self.params.ground_threshold
        if box is not None and score >= threshold:
            self._start(frame, box, score)
            return self._result(box, score, sim, start)
        self._since_seen += 1
        return self._result(None, score, sim, start)

    def _tracking(self, frame: np.ndarray, start: float) -> TrackResult:
        p = self.params
        estimate = self.online.track(frame)
        box = clip_box(estimate.box, frame.shape[1], frame.shape[0])
        self._since_verified += 1
        sim = float("nan")
        if box is not None and (self._since_verified >= p.verify_interval or estimate.quality < p.update_threshold):
            self._verified, sim = self._verify(frame, box)
            self._since_verified = 0
        score = self._frame_score(estimate.quality, self._verified)
        self._score = p.smoothing * score + (1.0 - p.smoothing) * self._score
        if p.variant == "no_switch":
            self._follow(estimate, box, learn=True)
            return self._result(self._box, self._score, sim, start)
        self._low = self._low + 1 if self._score < p.lost_threshold else 0
        if self._low >= p.lost_frames or box is None or score < p.drop_threshold:
            self.state = TrackState.SEARCHING
            self._since_seen = 1
            self._scan = 0
            self._to_check = []
            return self._result(None, self._score, sim, start)
        self._follow(estimate, box, learn=score >= p.update_threshold)
        return self._result(box, self._score, sim, start)

    def _follow(self, estimate: Estimate, box: Box | None, learn: bool) -> None:
        """The target is at ``estimate`` now; learn from this frame only when it is trusted."""
        self.online.accept(estimate)
        if learn:
            self.online.update(estimate)
        if box is not None:
            self._box = box

    def _searching(self, frame: np.ndarray, start: float) -> TrackResult:
        """One re-search step. Scans alternate between the online model correlated with a window of the frame at
        the target's scale (the first window is centred where the target was lost; a frame larger than one
        window is scanned) and the global pass (proposals on the whole frame, ranked by the matcher against the
        text and the stored template). A scan's best candidates are checked by a tracking pass of the online
        model centred on them; the verifier's and the online model's scores must add up to T_accept (the
        verifier is not run on a candidate whose online quality alone rules it out). With ``split_search`` the
        check runs on the next searching frame, so each frame costs one scan or one check."""
        p = self.params
        self._since_seen += 1
        if (self._since_seen - 1) % p.research_interval != 0:
            return self._result(None, 0.0, float("nan"), start)
        if not self._to_check:
            step = self._scan
            self._scan += 1
            if step % 2 == 0:
                found = [(box, None) for box in self._redetect(frame, step // 2)]
            else:
                found = self._global_candidates(frame)
            self._to_check = found[: p.verify_candidates]
            if p.split_search or not self._to_check:
                return self._result(None, 0.0, float("nan"), start)
        candidates, self._to_check = self._to_check, []
        best: tuple[Estimate | None, Box | None, float, float] = (None, None, 0.0, float("nan"))
        for candidate, verified in candidates:
            estimate = self.online.track(frame, around=candidate)
            box = clip_box(estimate.box, frame.shape[1], frame.shape[0])
            if box is None:
                continue
            sim = float("nan")
            if verified is None:
                if self._frame_score(estimate.quality, 1.0) < p.accept_threshold:
                    # Not even a perfect verifier could lift it to T_accept: the matcher's pass is saved.
                    verified = 0.0
                else:
                    verified, sim = self._verify(frame, box)
            score = self._frame_score(estimate.quality, verified)
            if score > best[2]:
                best = (estimate, box, score, sim)
        estimate, box, score, sim = best
        if estimate is not None and score >= p.accept_threshold:
            self.online.relocate(estimate.box)
            self._acquire(box, score)
            return self._result(box, score, sim, start)
        return self._result(None, score, sim, start)

    def _ground_only(self, frame: np.ndarray, start: float) -> TrackResult:
        box, score, sim = self._best_global(frame)
        if box is not None and score >= self.params.accept_threshold:
            self._box = box
            self.state = TrackState.TRACKING
            self._since_seen = 0
            return self._result(box, score, sim, start)
        self.state = TrackState.SEARCHING if self._box is not None else TrackState.GROUNDING
        self._since_seen += 1
        return self._result(None, score, sim, start)

    # ------------------------------------------------------------------ helpers
    def _start(self, frame: np.ndarray, box: Box, score: float) -> None:
        """Learn the target at ``box``: the online model from scratch, and the verifier's template crop."""
        self.online.initialize(frame, box)
        self._template_crop, _ = crop_around(frame, box, self.cfg.candidate_factor, self.cfg.candidate_size)
        self._verified = 1.0
        self._since_verified = 0
        self._acquire(box, score)

    def _acquire(self, box: Box, score: float) -> None:
        self.state = TrackState.TRACKING
        self._box = box
        self._score = max(score, self.params.accept_threshold)
        self._low = 0
        self._since_seen = 0

    def _frame_score(self, quality: float, verified: float) -> float:
        w = self.params.confidence_weight
        return float(w * min(quality, 1.0) + (1.0 - w) * verified)

    def _verify(self, frame: np.ndarray, box: Box) -> tuple[float, float]:
        """The matcher's view of ``box``: (w * template agreement + (1 - w) * text probability, text probability).
        The box is the only candidate (the engines' one-candidate graph); the matcher may still answer "none of
        them"."""
        height, width = frame.shape[:2]
        boxes = np.array([box], np.float64)
        mask = np.ones(1, np.float32)
        crops = candidate_crops(frame, boxes, self.cfg.candidate_factor, self.cfg.candidate_size)
        template = self._template_crop if self._template_crop is not None else crops[0]
        matches = self.engine.match(self.text, crops, candidate_geometry(boxes, width, height), mask, template)
        w = self.params.research_template_weight
        text = float(matches.probs[0])
        return w * float(matches.template_sim[0]) + (1.0 - w) * text, text

    def _redetect(self, frame: np.ndarray, step: int) -> list[Box]:
        """Candidate boxes from the online model correlated with one window of the frame. A frame larger than
        a window (at the target's scale) is scanned over successive steps, nearest the last position first."""
        height, width = frame.shape[:2]
        size = self.cfg.redetect_size
        box = self.online.box
        window = size * self.online.side(box) / self.cfg.online_crop_size  # frame pixels
        last = (box[0] + box[2] / 2.0, box[1] + box[3] / 2.0)
        axes = []
        for extent, anchor in ((width, last[0]), (height, last[1])):
            if extent <= window:
                axes.append([extent / 2.0])
                continue
            count = math.ceil(extent / (0.8 * window))
            grid = np.linspace(window / 2.0, extent - window / 2.0, count)
            axes.append([min(max(anchor, window / 2.0), extent - window / 2.0), *grid])
        positions = sorted({(float(x), float(y)) for x in axes[0] for y in axes[1]},
                           key=lambda c: (c[0] - last[0]) ** 2 + (c[1] - last[1]) ** 2)
        centre = positions[step % len(positions)]
        return [b for b, _ in self.online.redetect(frame, centre, size)]

    def _global_candidates(self, frame: np.ndarray) -> list[tuple[Box, float]]:
        """The global pass while searching: proposals (or the grounder's boxes) scored by the matcher as
        ``w * template agreement + (1 - w) * probability of being the described object``, best first."""
        boxes, crops, geometry, mask, detector_scores = self._candidates(frame)
        template = self._template_crop if self._template_crop is not None else crops[0]
        matches = self.engine.match(self.text, crops, geometry, mask, template)
        probs = matches.probs if detector_scores is None else detector_scores
        w = self.params.research_template_weight
        scores = np.where(mask > 0, w * matches.template_sim + (1.0 - w) * probs, -1.0)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if mask[i] > 0]
        return [(tuple(float(v) for v in boxes[i]), float(scores[i])) for i in order]

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

    def _best_global(self, frame: np.ndarray) -> tuple[Box | None, float, float]:
        """Global pass: proposals (or the grounder's boxes), their full-resolution crops, the candidate-set
        matcher; the most probable candidate with its probability."""
        boxes, crops, geometry, mask, detector_scores = self._candidates(frame)
        if detector_scores is not None:
            probs = np.where(mask > 0, detector_scores, 0.0)  # a grounder's scores alone decide
        else:
            matches = self.engine.match(self.text, crops, geometry, mask, crops[0])
            probs = np.where(mask > 0, matches.probs, 0.0)
        order = [int(i) for i in np.argsort(-probs, kind="stable") if mask[i] > 0]
        if not order:
            return None, 0.0, float("nan")
        i = order[0]
        return tuple(float(v) for v in boxes[i]), float(probs[i]), float(probs[i])

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
