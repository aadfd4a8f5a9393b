"""Every state transition of VLTracker, and its handling of bad input.

The engine (BlobEngine, test/engines_for_tests.py) is a small deterministic implementation of the Engine
interface: it "sees" bright square blobs in the patch it is given, with a
confidence equal to the blob's brightness. That makes each transition
controllable (a dim blob scores between T_lost and T_accept) while the real
cropping, letterboxing and box mapping of the tracker are exercised. The
shipped network is tested through the same class in test_quality.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engines_for_tests import BlobEngine

from vl_tracker_core.boxes import InvalidBoxError, box_iou
from vl_tracker_core.engines.base import Peaks
from vl_tracker_core.models.text import DescriptionError
from vl_tracker_core.tracker import FrameError, TrackerParams, VLTracker
from vl_tracker_core.trackers.base import TrackState

W, H = 320, 240


def frame(box=None, level=255, shape=(H, W)) -> np.ndarray:
    image = np.zeros((*shape, 3), np.uint8)
    if box is not None:
        x, y, w, h = box
        image[y:y + h, x:x + w] = level
    return image


PARAMS = TrackerParams(confidence_weight=0.5, smoothing=1.0, lost_threshold=0.35, lost_frames=3,
                       accept_threshold=0.55)


@pytest.fixture
def tracker() -> VLTracker:
    return VLTracker(BlobEngine(), PARAMS)


def test_idle_until_a_description_arrives(tracker):
    r = tracker.step(frame((50, 50, 20, 20)))
    assert r.state == TrackState.IDLE and r.box is None


def test_grounding_waits_then_tracks_without_a_box_until_found(tracker):
    tracker.set_target("the white square")
    assert tracker.state == TrackState.GROUNDING
    r = tracker.step(frame())  # nothing there: stays GROUNDING, reports no box
    assert r.state == TrackState.GROUNDING and r.box is None and r.frames_since_seen == 1
    r = tracker.step(frame((100, 80, 24, 24)))
    assert r.state == TrackState.TRACKING
    assert box_iou(r.box, (100, 80, 24, 24)) > 0.8


def test_tracking_follows_a_moving_target(tracker):
    tracker.set_target("the white square")
    for i in range(20):
        box = (40 + 6 * i, 60 + 3 * i, 20, 20)
        r = tracker.step(frame(box))
        assert r.state == TrackState.TRACKING
        assert box_iou(r.box, box) > 0.7, i


def test_lost_after_n_frames_then_no_box_while_searching(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    states = [tracker.step(frame()) for _ in range(6)]
    # Two frames under T_lost are tolerated (N = 3), the third declares the target lost.
    assert [r.state for r in states[:3]] == [TrackState.TRACKING, TrackState.TRACKING, TrackState.SEARCHING]
    assert all(r.box is None for r in states[2:])
    assert [r.frames_since_seen for r in states[2:]] == [1, 2, 3, 4]


def test_reacquired_elsewhere_by_the_global_search(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((20, 20, 20, 20)))
    for _ in range(4):
        tracker.step(frame())
    assert tracker.state == TrackState.SEARCHING
    r = tracker.step(frame((260, 180, 30, 30)))  # far from the last box, outside its search crop
    assert r.state == TrackState.TRACKING
    assert box_iou(r.box, (260, 180, 30, 30)) > 0.7
    assert r.frames_since_seen == 0


def test_hysteresis_a_middling_score_neither_loses_nor_reacquires(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    dim = int(0.45 * 255)  # between T_lost (0.35) and T_accept (0.55)
    for _ in range(5):
        r = tracker.step(frame((100, 100, 20, 20), level=dim))
        assert r.state == TrackState.TRACKING  # kept while tracking
    for _ in range(3):
        tracker.step(frame())
    assert tracker.state == TrackState.SEARCHING
    for _ in range(5):
        r = tracker.step(frame((100, 100, 20, 20), level=dim))
        assert r.state == TrackState.SEARCHING and r.box is None  # not enough to re-acquire
    r = tracker.step(frame((100, 100, 20, 20)))
    assert r.state == TrackState.TRACKING


def test_research_interval_skips_global_passes():
    t = VLTracker(BlobEngine(), TrackerParams(**{**PARAMS.__dict__, "research_interval": 3}))
    t.set_target("x")
    t.step(frame((20, 20, 20, 20)))
    for _ in range(3):
        t.step(frame())
    assert t.state == TrackState.SEARCHING  # the global pass ran on this first SEARCHING frame
    results = [t.step(frame((260, 180, 30, 30))) for _ in range(3)]
    # Far from the last box, only the global pass can find it: on the 3rd frame after the last global pass.
    assert [r.state for r in results] == [TrackState.SEARCHING, TrackState.SEARCHING, TrackState.TRACKING]


def test_description_and_box_start_tracking_directly(tracker):
    tracker.set_target("the white square", box=(100, 80, 24, 24))
    r = tracker.step(frame((100, 80, 24, 24)))
    assert r.state == TrackState.TRACKING and r.box == (100.0, 80.0, 24.0, 24.0)


def test_new_description_restarts_grounding_and_reset_goes_idle(tracker):
    engine = tracker.engine
    tracker.set_target("the white square")
    tracker.step(frame((100, 80, 24, 24)))
    # The first grounding encodes the template from the proposal box, then again from the refined box.
    assert engine.text_calls == 1 and engine.template_calls == 2
    tracker.step(frame((102, 80, 24, 24)))
    tracker.step(frame((104, 80, 24, 24)))
    assert engine.text_calls == 1 and engine.template_calls == 2  # once per target, not per frame
    tracker.set_target("another square")
    assert tracker.state == TrackState.GROUNDING and engine.text_calls == 2
    tracker.step(frame((50, 50, 24, 24)))
    assert tracker.state == TrackState.TRACKING
    tracker.reset()
    r = tracker.step(frame((50, 50, 24, 24)))
    assert r.state == TrackState.IDLE and r.box is None


def test_no_switch_variant_never_searches():
    t = VLTracker(BlobEngine(), TrackerParams(**{**PARAMS.__dict__, "variant": "no_switch"}))
    t.set_target("x")
    t.step(frame((100, 100, 20, 20)))
    for _ in range(10):
        r = t.step(frame())
        assert r.state == TrackState.TRACKING and r.box is not None


def test_ground_every_frame_variant_reports_only_found_boxes():
    t = VLTracker(BlobEngine(), TrackerParams(**{**PARAMS.__dict__, "variant": "ground_every_frame"}))
    t.set_target("x")
    assert t.step(frame((10, 10, 20, 20))).state == TrackState.TRACKING
    r = t.step(frame())
    assert r.state == TrackState.SEARCHING and r.box is None
    r = t.step(frame((280, 200, 20, 20)))
    assert r.state == TrackState.TRACKING and box_iou(r.box, (280, 200, 20, 20)) > 0.7


def test_deterministic_for_the_same_inputs():
    def run():
        t = VLTracker(BlobEngine(), PARAMS)
        t.set_target("x")
        out = []
        for i in range(30):
            box = None if 10 <= i < 16 else (30 + 5 * (i % 10), 40 + 4 * (i % 7), 22, 18)
            r = t.step(frame(box))
            out.append((r.state, r.box, round(r.confidence, 9), r.frames_since_seen))
        return out

    assert run() == run()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   ", "empty"), ("y" * 1001, "limit"), (b"\xc3\x28 ball", "UTF-8"),
])
def test_bad_descriptions_are_refused_and_state_is_kept(tracker, text, reason):
    tracker.set_target("the white square")
    tracker.step(frame((100, 80, 24, 24)))
    with pytest.raises(DescriptionError, match=reason):
        tracker.set_target(text)
    assert tracker.state == TrackState.TRACKING  # a bad message does not drop the current target


@pytest.mark.parametrize("box", [(float("nan"), 0, 10, 10), (10, 10, 0, 5), (1, 2, 3)])
def test_nan_or_zero_size_init_boxes_are_refused(tracker, box):
    with pytest.raises(InvalidBoxError):
        tracker.set_target("the white square", box=box)


def test_init_box_outside_the_frame_falls_back_to_grounding(tracker, caplog):
    tracker.set_target("the white square", box=(1000, 1000, 20, 20))
    r = tracker.step(frame((100, 80, 24, 24)))
    assert "outside" in caplog.text
    assert r.state == TrackState.TRACKING and box_iou(r.box, (100, 80, 24, 24)) > 0.8


def test_init_box_partly_outside_is_clipped(tracker):
    tracker.set_target("the white square", box=(-10, -10, 40, 40))
    r = tracker.step(frame((0, 0, 30, 30)))
    assert r.box == (0.0, 0.0, 30.0, 30.0)


def test_grayscale_and_rgba_frames_are_accepted(tracker):
    tracker.set_target("the white square")
    gray = frame((100, 80, 24, 24))[:, :, 0]
    assert tracker.step(gray).state == TrackState.TRACKING
    rgba = np.dstack([frame((104, 80, 24, 24)), np.full((H, W), 255, np.uint8)])
    r = tracker.step(rgba)
    assert box_iou(r.box, (104, 80, 24, 24)) > 0.8


@pytest.mark.parametrize("bad, reason", [
    (np.zeros((H, W, 3), np.float32), "uint8"), (np.zeros((H, W, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.uint8), "too small"), ([[1, 2]], "numpy array"),
])
def test_unusable_frames_raise_a_clear_error(tracker, bad, reason):
    tracker.set_target("x")
    with pytest.raises(FrameError, match=reason):
        tracker.step(bad)


def test_frame_size_change_restarts_grounding(tracker, caplog):
    tracker.set_target("the white square")
    tracker.step(frame((100, 80, 24, 24)))
    r = tracker.step(frame((10, 10, 24, 24), shape=(480, 640)))
    assert "frame size changed" in caplog.text
    assert r.state == TrackState.TRACKING and box_iou(r.box, (10, 10, 24, 24)) > 0.8


def test_parameters_are_validated():
    with pytest.raises(ValueError, match="hysteresis"):
        TrackerParams(lost_threshold=0.6, accept_threshold=0.5)
    with pytest.raises(ValueError, match="variant"):
        TrackerParams(variant="fast")
    with pytest.raises(ValueError, match="unknown tracker parameters"):
        TrackerParams.from_dict({"lost_treshold": 0.2})
    t = VLTracker(BlobEngine(), PARAMS)
    with pytest.raises(ValueError):
        t.update_params(lost_threshold=float("nan"))
    t.update_params(lost_frames=5)
    assert t.params.lost_frames == 5


class _BlobsEngine(BlobEngine):
    """One peak per blob in the search crop, the brightest first (as the network's top-k peaks come)."""

    def track(self, text, template_tokens, search):
        import cv2

        gray = search.max(axis=2)
        n, _, stats, _ = cv2.connectedComponentsWithStats((gray > 60).astype(np.uint8))
        peaks = []
        for x, y, w, h, _area in stats[1:n]:
            peaks.append((gray[y:y + h, x:x + w].max() / 255.0, (x, y, w, h)))
        if not peaks:
            return super().track(text, template_tokens, search)
        peaks.sort(key=lambda p: -p[0])
        conf = np.array([p[0] for p in peaks])
        return Peaks(np.array([p[1] for p in peaks], float), conf, conf, conf, np.zeros((4, 4), np.float32))


def _two_blobs(target, distractor):
    image = frame(target, level=150)
    x, y, w, h = distractor
    image[y:y + h, x:x + w] = 255
    return image


@pytest.mark.parametrize("influence, stays", [(0.0, False), (0.8, True)])
def test_window_influence_keeps_the_target_near_where_it_was(influence, stays):
    """A brighter look-alike enters the search crop beside the target: the strongest peak alone jumps to it;
    with the motion prior the tracker stays on the target, the peak near where the target was."""
    params = dataclasses.replace(PARAMS, window_influence=influence)
    t = VLTracker(_BlobsEngine(), params)
    target = (150, 110, 20, 20)
    t.initialize(frame(target, level=150), "the grey square", box=target)
    r = t.step(_two_blobs(target, (180, 110, 20, 20)))
    assert r.state == TrackState.TRACKING
    assert (box_iou(r.box, target) > 0.7) is stays


def test_size_update_damps_a_sudden_size_change():
    target = (150, 110, 20, 20)
    grown = (140, 100, 40, 40)
    sizes = {}
    for lr in (1.0, 0.5):
        t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, size_update=lr, max_scale_change=4.0))
        t.initialize(frame(target), "the white square", box=target)
        sizes[lr] = t.step(frame(grown)).box[2]
    assert sizes[1.0] == pytest.approx(40, abs=1.5)
    assert sizes[0.5] == pytest.approx(30, abs=1.5)  # halfway between the previous and the new size
    with pytest.raises(ValueError, match="size_update"):
        TrackerParams(size_update=0.0)
    with pytest.raises(ValueError, match="window_influence"):
        TrackerParams(window_influence=1.5)


def test_params_files_in_both_formats(tmp_path):
    from vl_tracker_core.tracker import load_params_file

    core = tmp_path / "core.yaml"
    core.write_text("tracker:\n  lost_threshold: 0.3\n  window_influence: 0.5\n")
    assert load_params_file(core) == {"lost_threshold": 0.3, "window_influence": 0.5}
    ros = tmp_path / "ros.yaml"
    ros.write_text("vl_tracker_node:\n  ros__parameters:\n    backend: onnxruntime\n    tracker:\n"
                   "      size_update: 0.6\n")
    assert load_params_file(ros) == {"size_update": 0.6}
    bad = tmp_path / "bad.yaml"
    for text, reason in (("tracker:\n  lost_treshold: 0.3\n", "unknown tracker parameters"),
                         ("backend: torch\n", "no 'tracker:' section"),
                         ("tracker: [1\n", "cannot read")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=reason):
            load_params_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_params_file(tmp_path / "missing.yaml")
