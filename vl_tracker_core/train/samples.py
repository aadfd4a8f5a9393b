"""Training samples for both modes, from the synthetic world or from annotated folders.

A tracking sample is a template crop (target at frame t0) and a search crop at
frame t1; a grounding sample is a letterboxed whole frame. Both carry the
target box in input pixels or ``None`` when the target is not in the input:
those are the real negatives the confidence head learns from (target absent,
crop centred on a distractor, crop somewhere else).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from vl_tracker_core.boxes import Box, clip_box
from vl_tracker_core.data.crops import CropTransform, crop_around, crop_side, crop_square, letterbox
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
    def groundable(self, t: int) -> bool:
        """Whether the description still identifies the target at frame t."""
        return True

    def alternate_target(self, t: int, rng: np.random.Generator) -> tuple[str, Box, list[Box]] | None:
        """Another object in view at frame t with a description of its own: (description, its box, the
        other objects' boxes), or None where the source cannot say one."""
        return None


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

    def groundable(self, t: int) -> bool:
        # Relations ("left of the green circle") are only guaranteed on the first frame.
        return t == 0 or self.scene.relation_anchor is None

    def alternate_target(self, t: int, rng: np.random.Generator) -> tuple[str, Box, list[Box]] | None:
        """One of the other objects in view, described by its attributes alone (they hold on every frame),
        unique among all the scene's objects; None when no such object is in view. Grounding the same
        frame from different sentences to different objects is what forces the network to read them."""
        from vl_tracker_core.data.synthetic import language as lang

        boxes = self.scene.object_boxes(t)
        specs = self.scene.objects
        candidates = [i for i, b in enumerate(boxes) if b is not None and i != self.scene.target_index]
        if not candidates:
            return None
        j = candidates[int(rng.integers(0, len(candidates)))]
        others = [spec for i, spec in enumerate(specs) if i != j]
        try:
            said = lang.describe_structured(specs[j], others, rng, self.scene.paraphrases)
        except lang.AmbiguousTargetError:
            return None
        return said.text, boxes[j], [b for i, b in enumerate(boxes) if b is not None and i != j]


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
    if box1 is not None and r < 0.75:
        centre = (ref[0] + ref[2] / 2, ref[1] + ref[3] / 2)
        side = crop_side(ref, cfg.search_factor) * float(np.exp(rng.normal(0, 0.2)))
        shift = rng.uniform(-0.22, 0.22, 2) * side
        centre = (centre[0] + shift[0], centre[1] + shift[1])
    else:
        others = source.other_boxes(t1)
        if others and r < 0.85:
            # Centred on a distractor: the target is usually not in view, or not at the centre.
            other = others[int(rng.integers(0, len(others)))]
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
    return Sample("track", search, template, source.description, target, distractors)


def grounding_sample(source: FrameSource, rng: np.random.Generator, cfg: ModelConfig,
                     alternate_prob: float = 0.0) -> Sample:
    """A whole frame and the source's description; with probability ``alternate_prob`` another object of
    the frame is the target, named by a description of its own (where the source has one)."""
    t = 0 if rng.random() < 0.5 else int(rng.integers(0, len(source)))
    if not source.groundable(t):
        t = 0
    alternate = source.alternate_target(t, rng) if alternate_prob > 0.0 and rng.random() < alternate_prob else None
    description, box, others = alternate or (source.description, source.target_box(t), source.other_boxes(t))
    frame = source.frame(t)
    image, transform = letterbox(frame, cfg.ground_size)
    target = _box_in_input(box, transform, cfg.ground_size)
    distractors = _centres_in_input(others, transform, cfg.ground_size)
    return Sample("ground", image, None, description, target, distractors)


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


def sample_stream(make_source: Callable[[int], FrameSource], cfg: ModelConfig, seed: int, start_batch: int,
                  track_batch: int, ground_batch: int, window: int = 16, new_per_batch: int = 2,
                  ground_alternate: float = 0.0) -> Iterator[tuple[list[Sample], list[Sample]]]:
    """Batches of (tracking samples, grounding samples).

    Batch ``k`` draws from the sources ``[new_per_batch * k, new_per_batch * k + window)``: a sliding window,
    so each source serves several batches (building a scene costs far more than rendering a frame) and
    batch ``k`` is fully determined by (seed, k) -- a resumed run sees the same data.
    """
    cache: dict[int, FrameSource] = {}
    batch = start_batch
    while True:
        rng = np.random.default_rng([seed, 7, batch])
        first = new_per_batch * batch
        for index in [i for i in cache if i < first]:
            del cache[index]
        for index in range(first, first + window):
            if index not in cache:
                cache[index] = make_source(index)
        sources = [cache[i] for i in range(first, first + window)]
        track: list[Sample] = []
        ground: list[Sample] = []
        attempts = 0
        while len(track) < track_batch and attempts < 20 * track_batch:
            sample = tracking_sample(sources[int(rng.integers(0, window))], rng, cfg)
            attempts += 1
            if sample is not None:
                track.append(sample)
        for _ in range(ground_batch):
            ground.append(grounding_sample(sources[int(rng.integers(0, window))], rng, cfg, ground_alternate))
        yield track, ground
        batch += 1
