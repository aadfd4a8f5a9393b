"""The shipped weights on freshly generated synthetic data, with honest thresholds.

Scenes are generated with seeds outside every training, validation and
benchmark range, in the test split's unseen wording. Each threshold sits below
what the shipped model measures here and on synth-test (BENCHMARKS.md), with
room for the small sample, and well above what an untrained network scores
(measured with random weights on the same scenes: see the comments).
"""

from __future__ import annotations

import numpy as np
import pytest

from vl_tracker_core.boxes import box_iou
from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
from vl_tracker_core.eval.metrics import evaluate_sequence, roc_auc
from vl_tracker_core.models.checkpoint import shipped_checkpoint_dir
from vl_tracker_core.trackers.registry import create_tracker

pytestmark = pytest.mark.skipif(not (shipped_checkpoint_dir() / "model.safetensors").is_file(),
                                reason="the shipped weights are not in this checkout")


def _scene(seed: int, frames: int, out_of_view: bool = False) -> SyntheticScene:
    return SyntheticScene(seed, frames, SceneConfig(force_out_of_view=out_of_view), paraphrases="unseen")


def _run(scene: SyntheticScene, variant: str, with_box: bool):
    tracker = create_tracker("vl", variant)
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
    # Measured with the shipped weights (model v3): mean AUC 0.277, confidence ROC-AUC 0.828 (target present
    # and the box on it, vs not); model v2 0.262 and 0.835, model v1 0.264 and 0.901; random weights 0.014 AUC.
    assert np.mean(aucs) >= 0.18
    assert roc_auc(scores, on_target) >= 0.72


def test_frames_without_a_box_never_carry_an_accepting_score(box_started_runs):
    accept = create_tracker("vl").params.accept_threshold
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
