"""The synthetic vision-language tracking world: vocabulary, scenes, ground truth, LaSOT writer."""

from __future__ import annotations

import itertools
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vl_tracker_core.boxes import parse_box
from vl_tracker_core.data.synthetic import (
    BENCHMARKS,
    COLOURS,
    SHAPES,
    SYNONYMS,
    TEMPLATES,
    AmbiguousTargetError,
    ObjectSpec,
    SceneConfig,
    SyntheticScene,
    canonical_description,
    describe,
    make_benchmark,
    make_scene,
    make_synthetic,
    sequence_seed,
    write_sequence,
)
from vl_tracker_core.data.synthetic import language as lang

SMALL = dict(width=320, height=240)


@pytest.fixture(scope="module")
def scenes() -> list[SyntheticScene]:
    """Single-frame scenes are cheap: enough of them to exercise the description logic."""
    return [SyntheticScene(seed, 1, paraphrases="unseen" if seed % 2 else "seen") for seed in range(60)]


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


# ---------------------------------------------------------------- vocabulary
def test_vocabulary_sizes_and_distinct_colours() -> None:
    assert len(SHAPES) >= 8
    assert len(COLOURS) >= 10
    assert set(lang.PATTERNS) >= {"plain", "striped", "dotted", "checkered"}
    rgb = np.array(list(COLOURS.values()), dtype=float)
    gaps = [np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2)]
    assert min(gaps) > 60, "named colours must be visually distinct"


def test_seen_and_unseen_share_only_canonical_words() -> None:
    for category, table in SYNONYMS["seen"].items():
        for value, seen_words in table.items():
            unseen_words = SYNONYMS["unseen"][category][value]
            assert set(seen_words) & set(unseen_words) == {value}, (category, value)
            assert len(seen_words) >= 2 and len(unseen_words) >= 2, (category, value)
    assert set(TEMPLATES["seen"]) & set(TEMPLATES["unseen"]) == {"the {target}"}
    assert set(lang.RELATION_CONNECTORS["seen"]) & set(lang.RELATION_CONNECTORS["unseen"]) == {""}


def test_every_surface_word_names_one_value() -> None:
    owners: dict[str, set[tuple[str, str]]] = {}
    for mode in lang.PARAPHRASE_MODES:
        for category, table in SYNONYMS[mode].items():
            for value, words in table.items():
                for word in words:
                    owners.setdefault(word, set()).add((category, value))
    ambiguous = {w: o for w, o in owners.items() if len(o) > 1}
    assert not ambiguous


def test_describe_api() -> None:
    rng = np.random.default_rng(0)
    target = ObjectSpec.make("triangle", "red", "small", "striped")
    assert canonical_description(target) == "the small striped red triangle"
    assert canonical_description(ObjectSpec.make("circle", "blue")) == "the blue circle"
    others = [ObjectSpec.make("circle", "red", "small", "striped"),
              ObjectSpec.make("triangle", "blue", "small", "striped")]
    text = describe(target, others, rng, paraphrases="canonical")
    assert "red" in text and "triangle" in text
    twin = ObjectSpec.make("triangle", "red", "small", "striped")
    with pytest.raises(AmbiguousTargetError):
        describe(target, [twin], rng)
    anchor = ObjectSpec.make("star", "green")
    text = describe(target, [twin, anchor], rng, paraphrases="canonical", relation=("left of", anchor))
    assert "left of the" in text and text.endswith("star")


# ------------------------------------------------------------- descriptions
def test_descriptions_identify_the_target_in_frame0(scenes: list[SyntheticScene]) -> None:
    relations = 0
    for scene in scenes:
        info, ti, objs = scene.description_info, scene.target_index, scene.objects
        text = scene.description
        assert text.isascii() and 0 < len(text) < 120, text
        assert lang.matches(objs[ti], info.attributes)
        # Each mentioned attribute is actually put into words.
        for category, value in info.attributes.items():
            words = SYNONYMS[scene.paraphrases][category][value]
            assert any(_has_phrase(text, w) for w in words), (text, category, value)
        confusers = [i for i, s in enumerate(objs) if i != ti and lang.matches(s, info.attributes)]
        if info.relation is None:
            assert not confusers, (text, objs)
            continue
        relations += 1
        boxes = scene.extent_boxes(0)
        anchor = scene.relation_anchor
        assert anchor is not None and info.anchor_attributes is not None
        assert [i for i, s in enumerate(objs) if lang.matches(s, info.anchor_attributes)] == [anchor], text
        assert lang.relation_holds(boxes[ti], boxes[anchor], info.relation), text
        for c in confusers:
            assert not lang.relation_plausible(boxes[c], boxes[anchor], info.relation), text
    assert relations >= 3, "relations should show up regularly"


def test_unseen_descriptions_avoid_seen_only_words(scenes: list[SyntheticScene]) -> None:
    def phrases(mode: str) -> set[str]:
        words = {w for table in SYNONYMS[mode].values() for ws in table.values() for w in ws}
        return words | set(lang._NOUNS[mode])

    unseen, seen_only = phrases("unseen"), phrases("seen") - phrases("unseen")
    for scene in scenes:
        if scene.paraphrases != "unseen":
            continue
        text = scene.description
        for phrase in sorted(unseen, key=len, reverse=True):  # drop held-out phrases such as "six-sided shape"
            text = re.sub(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", " ", text)
        assert not [w for w in seen_only if _has_phrase(text, w)], scene.description


def test_paraphrase_mode_changes_words_not_videos() -> None:
    differ = 0
    for seed in range(6):
        seen = SyntheticScene(seed, 5, paraphrases="seen")
        unseen = SyntheticScene(seed, 5, paraphrases="unseen")
        assert seen.description_info.attributes == unseen.description_info.attributes
        assert seen.description_info.relation == unseen.description_info.relation
        assert np.array_equal(seen.render(4), unseen.render(4))
        assert [seen.target_box(t) for t in range(5)] == [unseen.target_box(t) for t in range(5)]
        differ += seen.description != unseen.description
    assert differ >= 3


# -------------------------------------------------------------------- world
def test_same_seed_same_frames_and_boxes() -> None:
    a, b = SyntheticScene(11, 30), SyntheticScene(11, 30)
    assert a.description == b.description
    for t in (0, 7, 29, 13):  # out of order on purpose: rendering is stateless
        assert np.array_equal(a.render(t), b.render(t))
    assert [a.target_box(t) for t in range(30)] == [b.target_box(t) for t in range(30)]
    assert [a.object_boxes(t) for t in range(30)] == [b.object_boxes(t) for t in range(30)]
    c = SyntheticScene(12, 30)
    assert not np.array_equal(a.render(0), c.render(0))


def test_frames_are_rgb_uint8() -> None:
    scene = SyntheticScene(3, 4)
    frame = scene.render(2)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    assert len(scene) == 4
    with pytest.raises(IndexError):
        scene.render(4)


def test_distractors_share_shape_and_colour(scenes: list[SyntheticScene]) -> None:
    for scene in scenes:
        target, others = scene.target, [s for i, s in enumerate(scene.objects) if i != scene.target_index]
        assert 4 <= len(scene.objects) <= 8
        assert any(o.shape == target.shape and o.colour != target.colour for o in others)
        assert any(o.colour == target.colour and o.shape != target.shape for o in others)


def test_forced_out_of_view_leaves_and_comes_back() -> None:
    for seed in range(4):
        scene = SyntheticScene(seed, 120, SceneConfig(force_out_of_view=True))
        flags = np.array([scene.flags(t) for t in range(len(scene))])
        boxes = [scene.target_box(t) for t in range(len(scene))]
        assert boxes[0] is not None
        gone = np.flatnonzero(flags[:, 1])
        assert len(gone) > 0, f"seed {seed}: no out-of-view frame"
        assert any(b is not None for b in boxes[gone[0]:]), f"seed {seed}: the target never came back"
        # A box exactly when no flag is raised.
        assert all((b is None) == bool(f.any()) for b, f in zip(boxes, flags, strict=True))


def test_events_produce_absences() -> None:
    """Occlusions and exits really hide the target in a good share of scenes (not a benchmark claim)."""
    hidden = 0
    for seed in range(8):
        scene = SyntheticScene(100 + seed, 150)
        hidden += any(scene.target_box(t) is None for t in range(len(scene)))
    assert hidden >= 3


def test_boxes_inside_frame_and_tight_on_render() -> None:
    checked_colour = 0
    for seed in range(12):
        scene = SyntheticScene(seed, 40, SceneConfig(photometric=False))
        ti = scene.target_index
        for t in range(0, 40, 3):
            for box in scene.object_boxes(t):
                if box is not None:
                    x, y, w, h = box
                    assert x >= 0 and y >= 0 and w > 0 and h > 0
                    assert x + w <= scene.width and y + h <= scene.height
            box = scene.target_box(t)
            in_frame, visible = scene.visibility(t)
            if box is None or in_frame[ti] < 1.0 or visible[ti] < 1.0:
                continue
            mask = scene.label_map(t) == ti
            ys, xs = np.nonzero(mask)
            assert box == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            if scene.target.pattern == "plain" and mask.sum() > 150:
                core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                mean = scene.render(t)[core].mean(axis=0)
                assert np.abs(mean - np.array(scene.target.rgb)).max() < 30, (mean, scene.target)
                checked_colour += 1
    assert checked_colour > 0


def test_small_frames_scale_objects() -> None:
    scene = SyntheticScene(5, 10, SceneConfig(**SMALL))
    assert scene.render(9).shape == (240, 320, 3)
    assert max(t.base_radius for t in scene.tracks) <= 25.0


# ------------------------------------------------------------------- writer
def _read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_write_sequence_lasot_layout(tmp_path: Path) -> None:
    scene = SyntheticScene(0, 60, SceneConfig(force_out_of_view=True, **SMALL))
    seq = write_sequence(scene, tmp_path, "synth-demo-0001")
    frames = sorted((seq / "img").glob("*.jpg"))
    assert [f.name for f in frames] == [f"{i:08d}.jpg" for i in range(1, 61)]
    gt = _read_lines(seq / "groundtruth.txt")
    assert len(gt) == 60
    for t, line in enumerate(gt):
        if line == "0,0,0,0":
            assert scene.target_box(t) is None
        else:
            assert parse_box(line) == pytest.approx(scene.target_box(t), abs=0.05)
    assert "0,0,0,0" in gt
    assert _read_lines(seq / "nlp.txt") == [scene.description]
    for name, column in (("full_occlusion.txt", 0), ("out_of_view.txt", 1)):
        lines = _read_lines(seq / name)
        assert len(lines) == 1
        values = lines[0].split(",")
        assert values == [str(int(scene.flags(t)[column])) for t in range(60)]
    # JPEG holds BGR: decoded back to RGB it matches the render.
    decoded = cv2.cvtColor(cv2.imread(str(frames[5])), cv2.COLOR_BGR2RGB).astype(float)
    assert np.abs(decoded - scene.render(5)).mean() < 8


def test_make_synthetic_and_registry(tmp_path: Path) -> None:
    paths = make_synthetic(tmp_path, "val", sequences=2, frames=6, seed=3, progress=False, **SMALL)
    assert [p.name for p in paths] == ["synth-val-0001", "synth-val-0002"]
    assert all(len(list((p / "img").glob("*.jpg"))) == 6 for p in paths)
    assert sequence_seed(3, "val", 0) == sequence_seed(3, "val", 0)
    assert len({sequence_seed(3, s, i) for s in ("train", "val", "test") for i in range(3)}) == 9
    assert make_scene("test", 1, 2, seed=3).paraphrases == "unseen"
    assert make_scene("train", 1, 2, seed=3).paraphrases == "seen"
    assert make_scene("test", 0, 2, seed=3).config.force_out_of_view
    assert not make_scene("test", 1, 2, seed=3).config.force_out_of_view
    test, seen = BENCHMARKS["synth-test"], BENCHMARKS["synth-test-seen"]
    same = ("split", "sequences", "frames", "seed")
    assert {k: test[k] for k in same} == {k: seen[k] for k in same}
    assert (test["paraphrases"], seen["paraphrases"]) == ("unseen", "seen")
    assert BENCHMARKS["synth-val"]["seed"] != test["seed"]
    assert test["sequences"] == 50 and test["frames"] == 300
    with pytest.raises(KeyError):
        make_benchmark("synth-nope", tmp_path, progress=False)


# -------------------------------------------------------------------- speed
def test_render_speed_report() -> None:
    """Prints timings (no assertion: the machine's load is not ours to judge)."""
    start = time.perf_counter()
    scene = SyntheticScene(42, 300)
    built = time.perf_counter() - start
    scene.render(0)
    start = time.perf_counter()
    for t in range(1, 31):
        scene.render(t)
    per_frame = (time.perf_counter() - start) / 30
    start = time.perf_counter()
    for t in range(1, 31):
        scene.target_box(t)
        scene.object_boxes(t)
    gt = (time.perf_counter() - start) / 30
    print(f"\nsynthetic 640x480: scene build {built * 1e3:.1f} ms, render {per_frame * 1e3:.2f} ms/frame, "
          f"ground truth {gt * 1e3:.2f} ms/frame")
