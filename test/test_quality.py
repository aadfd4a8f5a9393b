"""The shipped weights and tracking core v4 on generated data and one real video, with honest thresholds.

Scenes are generated with seeds outside every training, validation and benchmark range, in the test
split's unseen wording, or composed here (a textured background, a target, a look-alike or an occluder).
Each threshold sits below what the shipped model measures here and on the benchmarks (BENCHMARKS.md),
with room for the small sample. The synthetic scenes run with the ``synthetic`` preset, the real video
with the defaults (the real-camera values), as README says to use them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vl_tracker_core.boxes import box_iou
from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
from vl_tracker_core.eval.metrics import evaluate_sequence, roc_auc
from vl_tracker_core.models.checkpoint import shipped_checkpoint_dir
from vl_tracker_core.tracker import load_params_file
from vl_tracker_core.trackers.base import TrackState
from vl_tracker_core.trackers.registry import create_tracker

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"
SYNTHETIC = load_params_file("synthetic")

pytestmark = pytest.mark.skipif(not (shipped_checkpoint_dir() / "model.safetensors").is_file(),
                                reason="the shipped weights are not in this checkout")


def _scene(seed: int, frames: int, out_of_view: bool = False) -> SyntheticScene:
    return SyntheticScene(seed, frames, SceneConfig(force_out_of_view=out_of_view), paraphrases="unseen")


def _run(scene: SyntheticScene, variant: str, with_box: bool):
    tracker = create_tracker("vl", variant, params=SYNTHETIC)
    pred, conf = [], []
    for t in range(len(scene)):
        frame = scene.render(t)
        if t == 0:
            r = tracker.initialize(frame, scene.description, scene.target_box(0) if with_box else None)
        else:
            r = tracker.track(frame)
        pred.append(r.box if r.box is not None else (np.nan,) * 4)
        conf.append(r.confidence)
    gt = np.array([b if b is not None else (np.nan,) * 4 for b in (scene.target_box(t) for t in range(len(scene)))])
    return np.array(pred), np.array(conf), gt, np.all(np.isfinite(gt), axis=1)


def test_first_frame_grounding_finds_the_described_object():
    tracker = create_tracker("vl", "no_switch")
    hits = 0
    for seed in range(881_000, 881_040):
        scene = _scene(seed, 1)
        r = tracker.initialize(scene.render(0), scene.description)
        hits += r.box is not None and box_iou(r.box, scene.target_box(0)) > 0.5
    # Measured with the shipped weights (model v3): 19/40 here in the unseen wording (46 % of 200 fresh scenes
    # by `vl-tracker ground-check`, 76 % in the seen wording, 77 % in canonical words); model v2 also 19/40.
    # A pick at random among the K = 10 candidates would find it on about 4/40; the model-v1 weights 10/40.
    assert hits >= 13


@pytest.fixture(scope="module")
def box_started_runs():
    return [_run(_scene(seed, 100, out_of_view=True), "full", with_box=True) for seed in range(882_000, 882_008)]


def test_tracking_from_a_box_follows_the_target_and_its_confidence_knows_when(box_started_runs):
    aucs = [evaluate_sequence(pred, gt, visible, conf).auc for pred, conf, gt, visible in box_started_runs]
    scores = np.concatenate([conf for _, conf, _, _ in box_started_runs])
    on_target = np.concatenate([evaluate_sequence(pred, gt, visible).iou > 0.5 for pred, _, gt, visible in
                                box_started_runs])
    # Measured (tracking core v4, synthetic preset): mean AUC 0.342 (absent frames count), confidence ROC-AUC
    # 0.898; v3's learned head: 0.277 and 0.828.
    assert np.mean(aucs) >= 0.30, np.mean(aucs)
    assert roc_auc(scores, on_target) >= 0.80, roc_auc(scores, on_target)


def test_frames_without_a_box_never_carry_an_accepting_score(box_started_runs):
    accept = SYNTHETIC["accept_threshold"]
    lost_frames = 0
    for pred, conf, _, _ in box_started_runs:
        lost = np.isnan(pred).all(axis=1)
        lost_frames += lost.sum()
        # "Absent" is only said when no candidate reached T_accept: the robot can trust it.
        assert not np.any(conf[lost] >= accept)
    assert lost_frames > 0  # the scenes force the target out of view: the tracker must notice


def test_deterministic_for_the_same_frames():
    scene = _scene(883_000, 40, out_of_view=True)
    a = _run(scene, "full", with_box=False)
    b = _run(scene, "full", with_box=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ---------------------------------------------------------------- composed scenes (issue 21's cases)
W, H = 480, 360


def _background() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(60, 200, (H, W, 3), dtype=np.uint8), (0, 0), 3)


def _disc(image: np.ndarray, centre: tuple[int, int]) -> None:
    """A red disc with a white core: the target, and its look-alike."""
    cv2.circle(image, centre, 22, (200, 40, 40), -1)
    cv2.circle(image, centre, 10, (255, 255, 255), -1)


def _box(centre: tuple[int, int]) -> tuple[float, float, float, float]:
    return (centre[0] - 22.0, centre[1] - 22.0, 44.0, 44.0)


def _composed(draw, frames: int = 60, params: dict | None = None):
    """Run the tracker from the first box over frames drawn by ``draw(t) -> (image, target centre)``."""
    tracker = create_tracker("vl", params=params or {})
    out = []
    for t in range(frames):
        image, centre = draw(t)
        r = tracker.initialize(image, "the red circle", _box(centre)) if t == 0 else tracker.track(image)
        out.append((r, box_iou(r.box, _box(centre)) if r.box is not None else 0.0))
    return out


def test_a_look_alike_crossing_the_target_does_not_take_the_track():
    background = _background()

    def draw(t):
        image = background.copy()
        target, twin = (100 + 5 * t, 180), (400 - 5 * t, 170)  # they cross at t = 30
        _disc(image, twin)
        _disc(image, target)  # the target passes in front
        return image, target

    runs = _composed(draw)
    # Measured: TRACKING on every frame, IoU >= 0.96 throughout (the confidence dips to 0.53 while they overlap).
    assert all(r.state == TrackState.TRACKING for r, _ in runs)
    assert min(iou for _, iou in runs[36:]) > 0.8  # after the crossing it is still on the target


def test_an_occluder_is_reported_absent_and_not_learned():
    background = _background()

    def draw(t):
        image = background.copy()
        centre = (100 + 5 * t, 180)
        _disc(image, centre)
        if 25 <= t < 35:  # a green square covers the target for ten frames
            cv2.rectangle(image, (centre[0] - 30, centre[1] - 30), (centre[0] + 30, centre[1] + 30), (40, 160, 40), -1)
        return image, centre

    for params in ({}, SYNTHETIC):
        runs = _composed(draw, params=params)
        # Measured, both sets: lost on frame 25 (defaults) or 27 (synthetic); no box while it is covered; back
        # on it on frame 35, the first frame it shows again, at IoU 0.96-0.98: the occluder was not learned.
        hidden = [r for r, _ in runs[28:35]]
        assert all(r.state == TrackState.SEARCHING and r.box is None for r in hidden)
        assert all(r.state == TrackState.TRACKING and iou > 0.8 for r, iou in runs[37:])


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")
def test_a_real_video_from_the_true_box():
    """otb_Couple (real-val: never used to choose a value), with the defaults."""
    from vl_tracker_core.data.readers import load_sequence

    seq = load_sequence(REAL_DEV / "otb_Couple")
    tracker = create_tracker("vl")
    pred = []
    for i in range(len(seq)):
        frame = seq.read_frame(i)
        r = tracker.initialize(frame, box=tuple(seq.gt[0])) if i == 0 else tracker.track(frame)
        pred.append(r.box if r.box is not None else (np.nan,) * 4)
    auc = evaluate_sequence(np.array(pred), seq.gt, seq.visible).auc
    # Measured: 0.745 (`vl-tracker eval --split real-val`); CSRT 0.375, v3's learned head 0.102.
    assert auc >= 0.6, auc
