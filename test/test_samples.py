"""Training samples: candidate sets for the matcher, naming the scene's own target and other objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.boxes import box_iou
from vl_tracker_core.data.crops import candidate_geometry, letterbox
from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
from vl_tracker_core.data.synthetic import language as lang
from vl_tracker_core.models.config import preset
from vl_tracker_core.train import samples as S

CFG = preset("tiny")


def _sources(n: int, frames: int = 30) -> list[S.SceneSource]:
    return [S.SceneSource(SyntheticScene(640_000 + i, frames, SceneConfig())) for i in range(n)]


def test_objects_are_described_uniquely_among_the_objects_in_view():
    rng = np.random.default_rng(0)
    said = relations = 0
    for source in _sources(12):
        scene = source.scene
        boxes = scene.object_boxes(0)
        visible = [i for i, b in enumerate(boxes) if b is not None]
        for j in visible:
            text = source.describe_object(0, j, rng, relation_prob=0.5)
            if text is None:
                continue
            said += 1
            if text == scene.description:
                assert j == scene.target_index
                continue
            # The words name some of object j's own attributes (in the seen vocabulary).
            spec = scene.objects[j]
            words = [w for key, value in (("colour", spec.colour), ("shape", spec.shape), ("pattern", spec.pattern))
                     for w in lang.SYNONYMS["seen"][key][value]]
            words += lang.SYNONYMS["seen"]["size"].get(spec.size, [])
            assert any(w in text for w in words), text
            relations += any(w in text for r in lang.RELATIONS for w in lang.SYNONYMS["seen"]["relation"][r])
    assert said >= 40 and relations >= 5


def test_frame_samples_mark_the_candidates_of_the_described_object():
    rng = np.random.default_rng(4)
    sets = nones = 0
    for source in _sources(8):
        sample = S.frame_sample(source, rng, CFG, sets=6)
        assert sample is not None
        k, c = CFG.candidates, CFG.candidate_size
        assert sample.crops.shape == (k, c, c, 3) and sample.geometry.shape == (k, 6)
        assert sample.image.shape == (CFG.ground_size, CFG.ground_size, 3)
        for m in sample.sets:
            sets += 1
            assert m.positives.shape == (k,) and m.cand_mask.shape == (k,)
            if m.cand_mask.min() == 0.0:  # "none of them": the described object's candidates are hidden
                nones += 1
                assert not m.positives.any()
            else:
                assert 1 <= m.positives.sum() <= 2, m.description
            assert not (m.positives & (m.cand_mask == 0)).any()
    assert sets >= 40 and 1 <= nones <= sets // 2


def test_candidate_crops_come_from_the_full_resolution_frame():
    """A positive candidate's crop shows the object at full resolution: its geometry gives the object's
    place in the frame, and the proposal targets are the visible objects in letterbox pixels."""
    source = _sources(1)[0]
    rng = np.random.default_rng(9)
    sample = S.frame_sample(source, rng, CFG, sets=6)
    t = sample.frame_index
    frame_boxes = [b for b in source.scene.object_boxes(t) if b is not None]
    _, transform = letterbox(source.frame(t), CFG.ground_size)
    ground = [transform.box_to_crop(b) for b in frame_boxes]
    assert len(sample.objects) == len(ground)
    for got in sample.objects:
        assert max(box_iou(got, g) for g in ground) > 0.9
    # Each real object has a candidate centred near it (candidates are placed in frame pixels).
    centres = sample.geometry[:, :2] * np.array(source.frame(t).shape[1::-1])
    for b in frame_boxes:
        assert min(np.hypot(*(c - (b[0] + b[2] / 2, b[1] + b[3] / 2))) for c in centres) < 0.3 * max(b[2], b[3])
    h, w = source.frame(0).shape[:2]
    g = candidate_geometry(np.array([[10.0, 20.0, 40.0, 30.0]]), w, h)[0]
    np.testing.assert_allclose(g[:4], [30 / w, 35 / h, 40 / w, 30 / h], rtol=1e-6)


def test_the_sample_stream_is_a_function_of_seed_and_batch_index():
    make = S.synthetic_sources(3, frames=40)
    a = list(zip(range(2), S.sample_stream(make, CFG, 3, iter([5, 6]), 4, 2, 3), strict=False))
    b = list(zip(range(1), S.sample_stream(make, CFG, 3, iter([6]), 4, 2, 3), strict=False))
    (_, (track_a, frames_a)), (_, (track_b, frames_b)) = a[1], b[0]
    assert [s.description for s in track_a] == [s.description for s in track_b]
    np.testing.assert_array_equal(frames_a[0].crops, frames_b[0].crops)
    assert [m.description for m in frames_a[0].sets] == [m.description for m in frames_b[0].sets]


# ------------------------------------------------------------------ mixing data sources
def test_weighted_interleave_gives_each_source_its_share_in_every_cycle():
    from vl_tracker_core.train.trainer import interleave, parse_data_spec

    assert parse_data_spec("synthetic") == ("synthetic", 1)
    assert parse_data_spec("synthetic=3") == ("synthetic", 3)
    assert parse_data_spec("/data/real_dev=1") == ("/data/real_dev", 1)
    for bad in ("synthetic=0", "synthetic=x", "=2"):
        with pytest.raises(ValueError):
            parse_data_spec(bad)
    which = interleave([3, 1])
    picks = [which(i) for i in range(12)]
    assert [m for m, _ in picks].count(0) == 9 and [m for m, _ in picks].count(1) == 3
    # Each source's own indices run 0, 1, 2, ... without gaps or repeats.
    assert [own for m, own in picks if m == 0] == list(range(9))
    assert [own for m, own in picks if m == 1] == list(range(3))


REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")
def test_real_train_sequences_give_tracking_and_frame_samples():
    from vl_tracker_core.data.readers import load_dataset
    from vl_tracker_core.data.splits import apply_split, project_descriptions, split_members

    sequences, _ = load_dataset(REAL_DEV)
    train, _ = apply_split(sequences, "real-train", project_descriptions())
    assert {s.name for s in train} == set(split_members("real-train"))
    make = S.folder_sources(train)
    cfg = CFG
    rng = np.random.default_rng(0)
    tracks = [S.tracking_sample(make(i), rng, cfg) for i in range(30)]
    tracks = [t for t in tracks if t is not None]
    assert len(tracks) >= 25
    assert any(t.box is None for t in tracks) and any(t.box is not None for t in tracks)  # negatives too
    assert all(t.description for t in tracks)
    frames = [S.frame_sample(make(i), rng, cfg, sets=4) for i in range(10)]
    frames = [f for f in frames if f is not None]
    assert frames and all(not f.complete for f in frames)  # only the target is annotated in real video


def test_photometric_changes_light_not_geometry():
    rng = np.random.default_rng(1)
    patch = np.zeros((32, 32, 3), np.uint8)
    patch[8:24, 8:24] = (200, 60, 30)
    outs = [S.photometric(patch, rng, blur=1.0) for _ in range(8)]
    assert all(o.shape == patch.shape and o.dtype == np.uint8 for o in outs)
    assert len({o.tobytes() for o in outs}) == 8  # a different look each time
    for o in outs:
        # The object stays where it was: the inside is still redder than the outside.
        assert o[12:20, 12:20, 0].mean() > o[:4, :4, 0].mean() + 50
    assert np.array_equal(S.photometric(patch, np.random.default_rng(5)),
                          S.photometric(patch, np.random.default_rng(5)))  # a function of the generator
