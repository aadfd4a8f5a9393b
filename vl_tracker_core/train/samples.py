"""Training samples, from the synthetic world or from annotated folders.

- A tracking sample is a template crop (target at frame t0) and a search crop at
  frame t1, with the target box in input pixels or ``None`` when the target is not
  in the input: the real negatives the confidence head learns from (target absent,
  crop centred on a distractor, crop somewhere else).
- A frame sample serves global grounding: the letterboxed frame with every
  object's box (class-agnostic proposals), K candidate crops re-cropped from the
  full-resolution frame (every object's box jittered as a proposal would be, plus
  proposal-like false candidates), and several *sets*: a description naming one
  object of the frame (the scene's own, or another object by its own attributes or
  a relation that holds in this frame), which candidates show it, and a template
  crop of that object from another frame. One rendered frame gives many sets.
  Some sets mask out the described object's candidates: "none of them" is the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vl_tracker_core.boxes import Box, box_iou, clip_box
from vl_tracker_core.data.crops import (
    CropTransform,
    candidate_crops,
    candidate_geometry,
    crop_around,
    crop_side,
    crop_square,
    letterbox,
)
from vl_tracker_core.models.config import ModelConfig


@dataclass
class Sample:
    mode: str  # "track" or "ground"
    image: np.ndarray  # (S, S, 3) search crop or (G, G, 3) letterboxed frame, RGB uint8
    template: np.ndarray | None  # (T, T, 3) or None for grounding
    description: str
    box: Box | None  # target in image pixels, None when not in the image
    distractors: list[tuple[float, float]] = field(default_factory=list)  # centres of other objects


class FrameSource:
    """What a sampler needs from a sequence: frames, the target box, the other objects' boxes."""

    description: str

    def __len__(self) -> int: ...
    def frame(self, t: int) -> np.ndarray: ...
    def target_box(self, t: int) -> Box | None: ...
    def other_boxes(self, t: int) -> list[Box]: ...
    def other_weights(self, t: int) -> list[float]:
        """How much each of ``other_boxes(t)`` looks like the target (for picking hard negatives)."""
        return [1.0] * len(self.other_boxes(t))

    def groundable(self, t: int) -> bool:
        """Whether the description still identifies the target at frame t."""
        return True

    def all_boxes(self, t: int) -> list[Box | None]:
        """Every object's box at frame t (None where not visible); ``target_index`` is the described one."""
        return [self.target_box(t)]

    target_index: int = 0

    def describe_object(self, t: int, j: int, rng: np.random.Generator, relation_prob: float = 0.0) -> str | None:
        """A description of object j as it is at frame t, unique among the objects then in view; None where
        the source cannot say one."""
        return self.description if j == self.target_index and self.groundable(t) else None


class SceneSource(FrameSource):
    """A synthetic scene; caches the last rendered frames (a sample looks at a frame several times)."""

    def __init__(self, scene) -> None:
        self.scene = scene
        self.description = scene.description
        self._frames: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.scene)

    def frame(self, t: int) -> np.ndarray:
        if t not in self._frames:
            if len(self._frames) > 4:
                self._frames.pop(next(iter(self._frames)))
            self._frames[t] = self.scene.render(t)
        return self._frames[t]

    def target_box(self, t: int) -> Box | None:
        return self.scene.target_box(t)

    def other_boxes(self, t: int) -> list[Box]:
        boxes = self.scene.object_boxes(t)
        return [b for i, b in enumerate(boxes) if b is not None and i != self.scene.target_index]

    def other_weights(self, t: int) -> list[float]:
        # 1 + the attributes shared with the target: a look-alike is the negative the tracker fails on
        # (most false boxes were the tracker carrying on onto one after the target left).
        objs, ti = self.scene.objects, self.scene.target_index
        target = objs[ti]
        return [1.0 + sum(getattr(objs[i], a) == getattr(target, a) for a in ("shape", "colour", "size", "pattern"))
                for i, b in enumerate(self.scene.object_boxes(t)) if b is not None and i != ti]

    def groundable(self, t: int) -> bool:
        # Relations ("left of the green circle") are only guaranteed on the first frame.
        return t == 0 or self.scene.relation_anchor is None

    @property
    def target_index(self) -> int:  # type: ignore[override]
        return self.scene.target_index

    def all_boxes(self, t: int) -> list[Box | None]:
        return self.scene.object_boxes(t)

    def describe_object(self, t: int, j: int, rng: np.random.Generator, relation_prob: float = 0.0) -> str | None:
        """Object j by its attributes, unique among the objects in view at frame t, or (with
        ``relation_prob``, or where attributes cannot tell it apart) by a relation that holds in frame t.
        The same picture with different sentences pointing at different objects is what forces the
        network to read them."""
        from vl_tracker_core.data.synthetic import language as lang

        if j == self.scene.target_index and self.groundable(t) and rng.random() < 0.5:
            return self.description
        boxes = self.all_boxes(t)
        visible = [i for i, b in enumerate(boxes) if b is not None]
        if j not in visible:
            return None
        specs = [self.scene.objects[i] for i in visible]
        me = visible.index(j)
        others = [sp for i, sp in enumerate(specs) if i != me]

        def relation() -> tuple[str, object] | None:
            options = lang.find_relations(me, specs, [boxes[i] for i in visible])
            if not options:
                return None
            rel, anchor = options[int(rng.integers(len(options)))]
            return rel, specs[anchor]

        rel = relation() if rng.random() < relation_prob else None
        try:
            return lang.describe_structured(specs[me], others, rng, self.scene.paraphrases, rel).text
        except lang.AmbiguousTargetError:
            rel = rel or relation()
            if rel is None:
                return None
            try:
                return lang.describe_structured(specs[me], others, rng, self.scene.paraphrases, rel).text
            except lang.AmbiguousTargetError:
                return None


class SequenceSource(FrameSource):
    """An annotated real sequence (LaSOT / TNL2K / OTB-Lang layout with a description)."""

    def __init__(self, seq) -> None:
        self.seq = seq
        self.description = seq.description

    def __len__(self) -> int:
        return len(self.seq)

    def frame(self, t: int) -> np.ndarray:
        return self.seq.read_frame(t)

    def target_box(self, t: int) -> Box | None:
        if not self.seq.visible[t]:
            return None
        return tuple(float(v) for v in self.seq.gt[t])

    def other_boxes(self, t: int) -> list[Box]:
        return []

    def groundable(self, t: int) -> bool:
        return t < 10  # real descriptions are written for the first frame


def _box_in_input(box: Box | None, transform: CropTransform, size: int) -> Box | None:
    """The target box in input pixels, clipped; None if its centre is outside the input."""
    if box is None:
        return None
    b = transform.box_to_crop(box)
    cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
    if not (0 <= cx < size and 0 <= cy < size):
        return None
    clipped = clip_box(b, size, size)
    return clipped if clipped is not None and clipped[2] >= 2 and clipped[3] >= 2 else None


def _centres_in_input(boxes: list[Box], transform: CropTransform, size: int) -> list[tuple[float, float]]:
    out = []
    for box in boxes:
        b = transform.box_to_crop(box)
        cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
        if 0 <= cx < size and 0 <= cy < size:
            out.append((cx, cy))
    return out


def _visible_frame(source: FrameSource, rng: np.random.Generator, tries: int = 8) -> tuple[int, Box] | None:
    n = len(source)
    for _ in range(tries):
        t = int(rng.integers(0, n))
        box = source.target_box(t)
        if box is not None:
            return t, box
    box = source.target_box(0)
    return (0, box) if box is not None else None


#: Shares of tracking samples centred near the visible target, and centred on another object (the rest
#: are centred where the target was last seen, or anywhere). Model v2 used 0.75 / 0.10.
POSITIVE_SHARE = 0.7
DISTRACTOR_SHARE = 0.18


def tracking_sample(source: FrameSource, rng: np.random.Generator, cfg: ModelConfig,
                    max_gap: int = 40) -> Sample | None:
    found = _visible_frame(source, rng)
    if found is None:
        return None
    t0, box0 = found
    jitter = rng.normal(0, 0.03, 4)
    tbox = (box0[0] + jitter[0] * box0[2], box0[1] + jitter[1] * box0[3],
            box0[2] * np.exp(jitter[2]), box0[3] * np.exp(jitter[3]))
    template, _ = crop_around(source.frame(t0), tbox, cfg.template_factor, cfg.template_size)
    t1 = int(np.clip(t0 + rng.integers(-max_gap, max_gap + 1), 0, len(source) - 1))
    frame = source.frame(t1)
    box1 = source.target_box(t1)
    ref = box1 if box1 is not None else box0
    r = rng.random()
    if box1 is not None and r < POSITIVE_SHARE:
        centre = (ref[0] + ref[2] / 2, ref[1] + ref[3] / 2)
        side = crop_side(ref, cfg.search_factor) * float(np.exp(rng.normal(0, 0.2)))
        shift = rng.uniform(-0.22, 0.22, 2) * side
        centre = (centre[0] + shift[0], centre[1] + shift[1])
    else:
        others = source.other_boxes(t1)
        if others and r < POSITIVE_SHARE + DISTRACTOR_SHARE:
            # Centred on a distractor, look-alikes more often: the target is usually not in view, or not at
            # the centre.
            weights = np.asarray(source.other_weights(t1), dtype=np.float64)
            other = others[int(rng.choice(len(others), p=weights / weights.sum()))]
            centre = (other[0] + other[2] / 2, other[1] + other[3] / 2)
        elif box1 is None:
            centre = (box0[0] + box0[2] / 2, box0[1] + box0[3] / 2)  # where it was last seen
        else:
            h, w = frame.shape[:2]
            centre = (float(rng.uniform(0, w)), float(rng.uniform(0, h)))
        side = crop_side(ref, cfg.search_factor) * float(np.exp(rng.normal(0, 0.2)))
    # At least 8 px, like every crop (crop_side's floor), also after the scale jitter.
    search, transform = crop_square(frame, centre, max(8.0, side), cfg.search_size)
    target = _box_in_input(box1, transform, cfg.search_size)
    distractors = _centres_in_input(source.other_boxes(t1), transform, cfg.search_size)
    if isinstance(source, SequenceSource):
        # A real sequence has few frames: the same target under other light and focus is a new sample.
        template, search = photometric(template, rng), photometric(search, rng, blur=0.25)
    return Sample("track", search, template, source.description, target, distractors)


def photometric(patch: np.ndarray, rng: np.random.Generator, blur: float = 0.0) -> np.ndarray:
    """``patch`` with its brightness, contrast and saturation changed (each within +-25 %), and with
    probability ``blur`` a light blur (defocus, motion). Geometry is untouched: boxes stay valid."""
    import cv2

    out = patch.astype(np.float32)
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * float(rng.uniform(0.75, 1.25))  # saturation
    mean = float(out.mean())
    out = (out - mean) * float(rng.uniform(0.75, 1.25)) + mean * float(rng.uniform(0.75, 1.25))
    if blur > 0.0 and rng.random() < blur:
        k = int(rng.choice([3, 5]))
        out = cv2.blur(out, (k, 1) if rng.random() < 0.5 else (k, k))
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class MatchSet:
    """One description over the K candidates of a frame sample."""

    description: str
    positives: np.ndarray  # (K,) bool: candidates showing the described object (IoU > 0.5)
    cand_mask: np.ndarray  # (K,) float32: 0 for candidates hidden from this set
    template: np.ndarray | None  # (C, C, 3) crop of the described object in another frame, or None


@dataclass
class FrameSample:
    image: np.ndarray  # (G, G, 3) letterboxed frame
    objects: list[Box]  # every visible object in letterbox pixels (class-agnostic proposal targets)
    crops: np.ndarray  # (K, C, C, 3) candidate crops from the full-resolution frame
    geometry: np.ndarray  # (K, 6) float32
    sets: list[MatchSet]
    #: whether every object of the frame is annotated (synthetic); real sequences annotate the target only
    complete: bool = True
    frame_index: int = 0


def _jitter(box: Box, rng: np.random.Generator, shift: float, scale: float) -> Box:
    j = rng.normal(0.0, 1.0, 4)
    w, h = box[2] * float(np.exp(scale * j[2])), box[3] * float(np.exp(scale * j[3]))
    cx = box[0] + box[2] / 2 + shift * j[0] * box[2]
    cy = box[1] + box[3] / 2 + shift * j[1] * box[3]
    return (cx - w / 2, cy - h / 2, w, h)


def _false_candidate(boxes: list[Box], rng: np.random.Generator, width: int, height: int) -> Box:
    """A proposal-like box that shows no object well: next to an object (a near miss) or on background."""
    if boxes and rng.random() < 0.35:
        b = boxes[int(rng.integers(len(boxes)))]
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.6, 1.1)
        return (b[0] + np.cos(angle) * dist * b[2], b[1] + np.sin(angle) * dist * b[3], b[2], b[3])
    unit = min(width / 640.0, height / 480.0)
    for _ in range(6):
        side = float(np.exp(rng.uniform(np.log(20.0), np.log(100.0)))) * unit
        w, h = side * float(np.exp(rng.normal(0, 0.15))), side * float(np.exp(rng.normal(0, 0.15)))
        box = (float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h)
        if all(box_iou(box, o) < 0.3 for o in boxes):
            return box
    return box


def frame_sample(source: FrameSource, rng: np.random.Generator, cfg: ModelConfig, sets: int = 4,
                 none_prob: float = 0.15, relation_prob: float = 0.3) -> FrameSample | None:
    """A frame for proposals and candidate-set matching (see the module docstring); None when no object
    of the frame can be described."""
    t = 0 if rng.random() < 0.4 else int(rng.integers(0, len(source)))
    frame = source.frame(t)
    height, width = frame.shape[:2]
    boxes = source.all_boxes(t)
    visible = [i for i, b in enumerate(boxes) if b is not None]
    if not visible:
        return None
    image, transform = letterbox(frame, cfg.ground_size)
    objects = [b for b in (_box_in_input(boxes[i], transform, cfg.ground_size) for i in visible) if b is not None]
    k = cfg.candidates
    cands: list[Box] = [_jitter(boxes[i], rng, 0.07, 0.12) for i in visible][:k]
    if len(cands) < k and rng.random() < 0.5:  # two proposals on one object happen
        cands.append(_jitter(boxes[visible[int(rng.integers(len(visible)))]], rng, 0.07, 0.12))
    real = [boxes[i] for i in visible]
    while len(cands) < k:
        cands.append(_false_candidate(real, rng, width, height))
    cand_arr = np.array([cands[i] for i in rng.permutation(k)], dtype=np.float64)
    crops = candidate_crops(frame, cand_arr, cfg.candidate_factor, cfg.candidate_size)
    geometry = candidate_geometry(cand_arr, width, height)
    # Templates come from one other frame (where the object is visible), as the tracker stores one.
    t0 = int(np.clip(t + rng.integers(-60, 61), 0, len(source) - 1))
    boxes0 = source.all_boxes(t0)
    frame0 = source.frame(t0) if any(b is not None for b in boxes0) else None
    out: list[MatchSet] = []
    for _ in range(sets):
        j = visible[int(rng.integers(len(visible)))]
        description = source.describe_object(t, j, rng, relation_prob)
        if description is None:
            continue
        positives = np.array([box_iou(tuple(c), boxes[j]) > 0.5 for c in cand_arr])
        mask = np.ones(k, np.float32)
        if rng.random() < none_prob:
            mask[positives] = 0.0
            positives[:] = False
        template = None
        if frame0 is not None and j < len(boxes0) and boxes0[j] is not None:
            template, _ = crop_around(frame0, _jitter(boxes0[j], rng, 0.04, 0.06), cfg.candidate_factor,
                                      cfg.candidate_size)
        out.append(MatchSet(description, positives, mask, template))
    if not out:
        return None
    return FrameSample(image, objects, crops, geometry, out, complete=len(boxes) > 1, frame_index=t)


def synthetic_sources(seed: int, frames: int = 150) -> Callable[[int], FrameSource]:
    """Scene ``i`` of the training stream: seeded by (seed, i), so a resumed run sees the same data."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene

    def make(index: int) -> FrameSource:
        scene_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        config = SceneConfig(force_out_of_view=bool(index % 3 == 0))
        return SceneSource(SyntheticScene(scene_seed, frames, config, paraphrases="seen"))

    return make


def folder_sources(sequences: list) -> Callable[[int], FrameSource]:
    usable = [s for s in sequences if s.description.strip() and np.any(s.visible)]
    if not usable:
        raise ValueError("no sequence with a description and a visible target to train on")

    def make(index: int) -> FrameSource:
        return SequenceSource(usable[index % len(usable)])

    return make


def sample_stream(make_source: Callable[[int], FrameSource], cfg: ModelConfig, seed: int,
                  batches: Iterable[int], track_batch: int, frame_batch: int, sets_per_frame: int = 4,
                  window: int = 16, new_per_batch: int = 2) -> Iterator[tuple[list[Sample], list[FrameSample]]]:
    """Batches of (tracking samples, frame samples), for the batch indices ``batches``.

    Batch ``k`` draws from the sources ``[new_per_batch * k, new_per_batch * k + window)``: a sliding window,
    so each source serves several batches (building a scene costs far more than rendering a frame) and
    batch ``k`` is fully determined by (seed, k) -- a resumed run, or a data-parallel rank that takes
    every n-th batch, sees exactly the data it would have seen.
    """
    cache: dict[int, FrameSource] = {}
    for batch in batches:
        rng = np.random.default_rng([seed, 7, batch])
        first = new_per_batch * batch
        for index in [i for i in cache if i < first]:
            del cache[index]
        for index in range(first, first + window):
            if index not in cache:
                cache[index] = make_source(index)
        sources = [cache[i] for i in range(first, first + window)]
        track: list[Sample] = []
        frames: list[FrameSample] = []
        attempts = 0
        while len(track) < track_batch and attempts < 20 * track_batch:
            sample = tracking_sample(sources[int(rng.integers(0, window))], rng, cfg)
            attempts += 1
            if sample is not None:
                track.append(sample)
        attempts = 0
        while len(frames) < frame_batch and attempts < 10 * max(frame_batch, 1):
            sample = frame_sample(sources[int(rng.integers(0, window))], rng, cfg, sets_per_frame)
            attempts += 1
            if sample is not None:
                frames.append(sample)
        yield track, frames
