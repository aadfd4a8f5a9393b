"""Every state transition of VLTracker, and its handling of bad input.

The engine (BlobEngine, test/engines_for_tests.py) is a small deterministic implementation of the Engine
interface: its proposals find bright square blobs, its matcher scores a crop by the brightness of the blob
in it, and its "trunk" is the frame pooled to stride 8 and 16, on which the tracker's real online model runs.
With ``confidence_weight`` 0.3 a frame's score is 0.3 * (online quality, about 1 on a blob) + 0.7 * (blob
brightness), so a dim blob scores between T_lost and T_accept. The shipped network is tested through the
same class in test_quality.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from engines_for_tests import BlobEngine

from vl_tracker_core.boxes import InvalidBoxError, box_iou
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


PARAMS = TrackerParams(confidence_weight=0.3, smoothing=1.0, lost_threshold=0.35, lost_frames=3,
                       accept_threshold=0.55, verify_interval=1, update_threshold=0.6, scale_interval=1)
#: a blob this bright scores about 0.3 + 0.7 * 0.3 = 0.51: between T_lost (0.35) and T_accept (0.55)
DIM = int(0.3 * 255)


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
    for i in range(30):
        box = (40 + 6 * i, 60 + 3 * i, 20, 20)
        r = tracker.step(frame(box))
        assert r.state == TrackState.TRACKING
        assert box_iou(r.box, box) > 0.7, i
        assert r.confidence > PARAMS.accept_threshold


def test_lost_after_n_frames_then_no_box_while_searching(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    # A blob too faint for the matcher (verifier 0) but still seen by the online model scores about 0.3:
    # under T_lost (0.35), above drop_threshold (0.2).
    states = [tracker.step(frame((100, 100, 20, 20), level=40)) for _ in range(3)]
    states += [tracker.step(frame()) for _ in range(3)]
    # Two frames under T_lost are tolerated (N = 3), the third declares the target lost.
    assert [r.state for r in states[:3]] == [TrackState.TRACKING, TrackState.TRACKING, TrackState.SEARCHING]
    assert all(r.box is None for r in states[2:])
    assert [r.frames_since_seen for r in states[2:]] == [1, 2, 3, 4]


def test_a_target_that_vanishes_is_dropped_at_once(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    r = tracker.step(frame())  # nothing left: the frame scores under drop_threshold
    assert r.state == TrackState.SEARCHING and r.box is None


def _lose(tracker, box=(20, 20, 20, 20)):
    tracker.set_target("the white square")
    tracker.step(frame(box))
    tracker.step(frame())  # gone: dropped at once
    assert tracker.state == TrackState.SEARCHING


def test_reacquired_elsewhere_by_the_re_detection_scan(tracker):
    """The re-detection window (at the target's scale) is smaller than this frame: it scans the frame over
    successive searching frames and finds the target far from where it was lost."""
    _lose(tracker)
    far = (260, 180, 20, 20)
    for _ in range(12):  # 4 x 3 windows cover this 320 x 240 frame at this target size
        r = tracker.step(frame(far))
        if r.state == TrackState.TRACKING:
            break
        assert r.box is None
    assert r.state == TrackState.TRACKING, "not found within one scan of the frame"
    assert box_iou(r.box, far) > 0.7
    assert r.frames_since_seen == 0


def test_reacquired_at_once_near_where_it_was_lost(tracker):
    """split_search (the default): the first searching frame scans the window centred on the last position,
    the next checks its best candidate and re-acquires; without it both happen on the first frame."""
    _lose(tracker, (100, 100, 20, 20))
    target = (112, 104, 20, 20)
    r = tracker.step(frame(target))
    assert r.state == TrackState.SEARCHING and r.box is None and r.confidence == 0.0
    r = tracker.step(frame(target))
    assert r.state == TrackState.TRACKING and box_iou(r.box, target) > 0.7
    at_once = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, split_search=False))
    _lose(at_once, (100, 100, 20, 20))
    r = at_once.step(frame(target))
    assert r.state == TrackState.TRACKING and box_iou(r.box, target) > 0.7


def test_split_search_runs_one_scan_or_one_check_per_frame():
    """Per searching frame with the target out of view: scans and the checks of their candidates alternate. A
    window scan and a check each make one trunk call; a global scan makes none (proposals and matcher). Without
    split_search a frame does a scan and its check: window + check, then global + check."""
    for split, calls_per_frame in ((True, [1, 1, 0, 1]), (False, [2, 1])):
        t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, split_search=split))
        _lose(t, (100, 100, 20, 20))
        calls = []
        for _ in calls_per_frame:
            before = t.engine.feature_calls
            t.step(frame())
            calls.append(t.engine.feature_calls - before)
        assert calls == calls_per_frame, split


def test_hysteresis_a_middling_score_neither_loses_nor_reacquires(tracker):
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    for _ in range(5):
        r = tracker.step(frame((100, 100, 20, 20), level=DIM))
        assert r.state == TrackState.TRACKING  # kept while tracking
        assert PARAMS.lost_threshold < r.confidence < PARAMS.accept_threshold
    for _ in range(3):
        tracker.step(frame())
    assert tracker.state == TrackState.SEARCHING
    for _ in range(5):
        r = tracker.step(frame((100, 100, 20, 20), level=DIM))
        assert r.state == TrackState.SEARCHING and r.box is None  # not enough to re-acquire
        assert r.confidence < PARAMS.accept_threshold  # "absent" never carries an accepting score
    # Within a scan and its check (a global candidate carries the verifier's score of its scan frame: one more
    # scan and check when that frame was the dim one).
    states = [tracker.step(frame((100, 100, 20, 20))).state for _ in range(4)]
    assert TrackState.TRACKING in states


def test_the_online_model_learns_only_from_trusted_frames(tracker, monkeypatch):
    """A frame under update_threshold (here: the blob dimmed, as an occluder would) is followed, not learned."""
    learned = []
    tracker.set_target("the white square")
    tracker.step(frame((100, 100, 20, 20)))
    original = tracker.online.update
    monkeypatch.setattr(tracker.online, "update", lambda e, rate=None: (learned.append(e), original(e, rate)))
    levels = [255, 255, DIM, DIM, DIM, 255]
    for level in levels:
        tracker.step(frame((100, 100, 20, 20), level=level))
    assert len(learned) == levels.count(255)


def test_research_interval_skips_re_detection():
    t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, research_interval=3))
    _lose(t, (100, 100, 20, 20))
    calls = []
    for _ in range(6):
        before = t.engine.feature_calls
        t.step(frame())
        calls.append(t.engine.feature_calls - before)
    # The re-detection ran on the first searching frame (while losing it); then on every third.
    assert [c > 0 for c in calls] == [False, False, True, False, False, True]


def test_searching_skips_the_verifier_where_the_online_model_rules_a_candidate_out():
    """With the online quality weighing 0.8, an empty window's candidate cannot reach T_accept even with a
    perfect verifier: the re-detection steps then run no matcher pass at all (the global steps run one, to rank
    the proposals). When the target is back, its candidate is verified and accepted."""
    t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, confidence_weight=0.8))
    _lose(t, (100, 100, 20, 20))
    per_step = []
    for _ in range(8):
        before = t.engine.match_calls
        r = t.step(frame())
        per_step.append(t.engine.match_calls - before)
        assert r.state == TrackState.SEARCHING and r.box is None
    # Frames alternate scan and check; scans alternate re-detection window (no matcher) and global pass (the
    # ranking only); no check runs the verifier.
    assert per_step == [0, 0, 1, 0] * 2
    before = t.engine.match_calls
    states = [t.step(frame((104, 100, 20, 20))) for _ in range(2)]  # a window scan, then its check
    assert states[-1].state == TrackState.TRACKING and box_iou(states[-1].box, (104, 100, 20, 20)) > 0.7
    assert t.engine.match_calls - before == 1  # the returned candidate was verified


def test_scale_follows_a_growing_target(tracker):
    tracker.set_target("the white square", box=(140, 100, 20, 20))
    tracker.step(frame((140, 100, 20, 20)))
    tracker.engine.feature_batches.clear()
    for i in range(1, 25):
        side = 20 + i
        r = tracker.step(frame((150 - side // 2, 110 - side // 2, side, side)))
    # The true side grows 5 % a frame to 44; the estimate moves in 4 % steps halved by the smoothing (2 % a
    # frame at most, 32 px after 24 frames): it must have followed nearly all the way.
    assert r.box[2] > 28
    # Every frame checked the size (scale_interval 1) with one crop through the trunk: the other sizes are its
    # maps resampled.
    assert tracker.engine.feature_batches == [1] * 24
    still = VLTracker(BlobEngine(), PARAMS)
    still.set_target("the white square", box=(140, 100, 20, 20))
    for _ in range(25):
        r = still.step(frame((140, 100, 20, 20)))
    assert r.box[2] == pytest.approx(20, rel=0.1)  # and a target that keeps its size keeps it


def test_scale_follows_a_shrinking_target():
    t = VLTracker(BlobEngine(), PARAMS)
    t.set_target("the white square", box=(130, 90, 40, 40))
    t.step(frame((130, 90, 40, 40)))
    for i in range(1, 25):
        side = 40 - i
        r = t.step(frame((150 - side // 2, 110 - side // 2, side, side)))
    assert r.state == TrackState.TRACKING and r.box[2] < 32  # true side 16; 2 % a frame at most: 24.6 px


def test_description_and_box_start_tracking_directly(tracker):
    tracker.set_target("the white square", box=(100, 80, 24, 24))
    r = tracker.step(frame((100, 80, 24, 24)))
    assert r.state == TrackState.TRACKING and r.box == (100.0, 80.0, 24.0, 24.0)


def test_new_description_restarts_grounding_and_reset_goes_idle(tracker):
    engine = tracker.engine
    tracker.set_target("the white square")
    tracker.step(frame((100, 80, 24, 24)))
    assert engine.text_calls == 1
    calls = engine.feature_calls
    tracker.step(frame((102, 80, 24, 24)))
    tracker.step(frame((104, 80, 24, 24)))
    assert engine.text_calls == 1  # once per description, not per frame
    assert engine.feature_calls == calls + 2  # one trunk call per tracking frame
    tracker.set_target("another square")
    assert tracker.state == TrackState.GROUNDING and engine.text_calls == 2
    tracker.step(frame((50, 50, 24, 24)))
    assert tracker.state == TrackState.TRACKING
    tracker.reset()
    r = tracker.step(frame((50, 50, 24, 24)))
    assert r.state == TrackState.IDLE and r.box is None


def test_no_switch_variant_never_searches():
    t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, variant="no_switch"))
    t.set_target("x")
    t.step(frame((100, 100, 20, 20)))
    for _ in range(10):
        r = t.step(frame())
        assert r.state == TrackState.TRACKING and r.box is not None


def test_ground_every_frame_variant_reports_only_found_boxes():
    t = VLTracker(BlobEngine(), dataclasses.replace(PARAMS, variant="ground_every_frame"))
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
    t.update_params(lost_frames=5, learning_rate=0.05)
    assert t.params.lost_frames == 5
    assert t.online.params.learning_rate == 0.05  # the online model follows
    with pytest.raises(ValueError, match="verify_interval"):
        TrackerParams(verify_interval=0)


def test_params_files_in_both_formats(tmp_path):
    from vl_tracker_core.tracker import load_params_file

    core = tmp_path / "core.yaml"
    core.write_text("tracker:\n  lost_threshold: 0.3\n  learning_rate: 0.02\n")
    assert load_params_file(core) == {"lost_threshold": 0.3, "learning_rate": 0.02}
    ros = tmp_path / "ros.yaml"
    ros.write_text("vl_tracker_node:\n  ros__parameters:\n    backend: onnxruntime\n    tracker:\n"
                   "      scale_interval: 3\n")
    assert load_params_file(ros) == {"scale_interval": 3}
    bad = tmp_path / "bad.yaml"
    for text, reason in (("tracker:\n  lost_treshold: 0.3\n", "unknown tracker parameters"),
                         ("backend: torch\n", "no 'tracker:' section"),
                         ("tracker: [1\n", "cannot read")):
        bad.write_text(text)
        with pytest.raises(ValueError, match=reason):
            load_params_file(bad)
    with pytest.raises(ValueError, match="cannot read"):
        load_params_file(tmp_path / "missing.yaml")
