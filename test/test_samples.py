"""Training samples: grounding samples with the scene's own target and with another object named."""

from __future__ import annotations

import numpy as np

from vl_tracker_core.boxes import box_iou
from vl_tracker_core.data.crops import letterbox
from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
from vl_tracker_core.data.synthetic import language as lang
from vl_tracker_core.models.config import preset
from vl_tracker_core.train import samples as S

CFG = preset("tiny")


def _sources(n: int, frames: int = 30) -> list[S.SceneSource]:
    return [S.SceneSource(SyntheticScene(640_000 + i, frames, SceneConfig())) for i in range(n)]


def test_alternate_target_names_another_object_uniquely():
    rng = np.random.default_rng(0)
    found = 0
    for source in _sources(12):
        scene = source.scene
        alternate = source.alternate_target(0, rng)
        if alternate is None:
            continue
        found += 1
        text, box, others = alternate
        boxes = scene.object_boxes(0)
        j = next(i for i, b in enumerate(boxes) if b == box)
        assert j != scene.target_index
        assert text and text != scene.description
        # Its attributes alone separate it from every other object of the scene.
        assert lang.distinguishing_sets(scene.objects[j], [s for i, s in enumerate(scene.objects) if i != j])
        # The scene's own target is now one of the distractors.
        assert scene.target_box(0) in others and box not in others
    assert found >= 9


def test_grounding_samples_without_alternates_are_the_scenes_own():
    sources = _sources(6)
    a = [S.grounding_sample(s, np.random.default_rng([5, i]), CFG) for i, s in enumerate(sources)]
    b = [S.grounding_sample(s, np.random.default_rng([5, i]), CFG, alternate_prob=0.0) for i, s in enumerate(sources)]
    for sample, again, source in zip(a, b, sources):
        assert sample.description == again.description == source.description
        assert sample.box == again.box


def test_alternate_grounding_samples_put_the_box_on_the_named_object():
    rng = np.random.default_rng(3)
    changed = 0
    for source in _sources(10):
        sample = S.grounding_sample(source, rng, CFG, alternate_prob=1.0)
        if sample.description == source.description:
            continue
        changed += 1
        assert sample.box is not None
        # The box is one of the scene's objects (not the target) mapped into the letterboxed frame.
        _, transform = letterbox(source.frame(0), CFG.ground_size)  # one frame size for the whole scene
        matched = [(t, i) for t in range(len(source)) for i, b in enumerate(source.scene.object_boxes(t))
                   if b is not None and box_iou(transform.box_to_crop(b), sample.box) > 0.9]
        assert matched and all(i != source.scene.target_index for _, i in matched), sample.description
    assert changed >= 7
