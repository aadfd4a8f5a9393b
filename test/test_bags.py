"""make-bag and bag-eval: bags written and read back, the real rosbag2 / ROS 1 fixtures, damaged bags,
offline and realtime replay through the node's processing path, atomic outputs, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from engines_for_tests import BlobEngine
from rosbags.rosbag2 import Writer

from vl_tracker_core.cli import main
from vl_tracker_core.data.readers import load_sequence
from vl_tracker_core.tracker import TrackerParams, VLTracker
from vl_tracker_core.trackers.base import TrackState
from vl_tracker_ros.bag_reader import BagDamagedError, BagError, open_bag
from vl_tracker_ros.bag_replay import (
    BagEvalOptions,
    FrameRecord,
    Replayer,
    TopicChoice,
    bag_eval,
    choose_topics,
    held_results,
)
from vl_tracker_ros.bag_writer import BagSource, BagWriteError, FrameAnnotation, source_from_sequence, write_bag
from vl_tracker_ros.image_conversion import message_to_rgb, rgb_to_image_fields
from vl_tracker_ros.processing import TrackerPipeline
from vl_tracker_ros.rosbags_types import RosbagsMessageFactory, typestore

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
OTB = DATA / "otb_Crossing"
TALKER = DATA / "rosbag2_talker"
ROS1 = DATA / "ros1_compressed_image_bags"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is not checked out beside the repository")

W, H = 160, 120


def blob_frames(n: int, absent: range = range(0, 0)) -> Iterator[tuple[np.ndarray, FrameAnnotation]]:
    """A bright 16x16 square moving right; gone (out of view) on the frames in ``absent``."""
    for t in range(n):
        frame = np.full((H, W, 3), 20, np.uint8)
        if t in absent:
            yield frame, FrameAnnotation(None, out_of_view=True)
            continue
        x, y = 20 + t, 50
        frame[y:y + 16, x:x + 16] = 250
        yield frame, FrameAnnotation((float(x), float(y), 16.0, 16.0))


def blob_bag(tmp_path: Path, n: int = 40, absent: range = range(0, 0), **kwargs) -> Path:
    source = BagSource("blob", "the bright square", n, blob_frames(n, absent))
    out = tmp_path / kwargs.pop("name", "blob_bag")
    write_bag(source, out, progress=False, **kwargs)
    return out


def blob_pipeline(**params) -> TrackerPipeline:
    return TrackerPipeline(VLTracker(BlobEngine(), TrackerParams(**params)), RosbagsMessageFactory())


def options(bag: Path, out: Path, **kwargs) -> BagEvalOptions:
    return BagEvalOptions(bag, out, progress=False, **kwargs)


# ----------------------------------------------------------------------------------------------- make-bag
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_make_bag_round_trip(tmp_path, storage, compressed):
    bag = blob_bag(tmp_path, 12, storage=storage, compressed=compressed)
    with open_bag(bag) as reader:
        topics = {t.name: (t.msgtype, t.count) for t in reader.topics}
        image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
        assert topics == {"/target_description": ("std_msgs/msg/String", 1),
                          image_topic: (f"sensor_msgs/msg/{'CompressedImage' if compressed else 'Image'}", 12)}
        messages = list(reader.messages(topics))
    assert messages[0].topic == "/target_description" and messages[0].msg.data == "the bright square"
    images = [m for m in messages if m.topic == image_topic]
    assert [m.log_ns for m in images] == sorted(m.log_ns for m in images)
    for (frame, _), m in zip(blob_frames(12), images):
        stamp = m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec
        assert stamp == m.log_ns  # header stamp = recording time, as a camera driver stamps
        decoded = message_to_rgb(m.msg)
        if compressed:
            assert np.abs(decoded.astype(int) - frame).mean() < 3
        else:
            np.testing.assert_array_equal(decoded, frame)
    seq = load_sequence(bag, require_frames=False)
    assert len(seq.gt) == 12 and seq.description == "the bright square"
    np.testing.assert_allclose(seq.gt[3], (23, 50, 16, 16))
    assert not list(tmp_path.glob(".*partial*"))  # no staging folder left behind


@needs_data
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_zstd_bag_is_smaller_reads_back_exactly_and_replays(tmp_path, storage):
    """The demo writes its bags with zstd message compression: lossless, a fraction of the raw size, and
    bag-eval replays it like any other."""
    plain = blob_bag(tmp_path, 40, absent=range(15, 22), storage=storage, name="plain")
    packed = blob_bag(tmp_path, 40, absent=range(15, 22), storage=storage, name="packed", zstd=True)

    def size(folder: Path) -> int:
        return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())

    assert size(packed) < size(plain) / 5
    with open_bag(plain) as a, open_bag(packed) as b:
        for m_a, m_b in zip(a.messages(["/camera/image_raw"]), b.messages(["/camera/image_raw"]), strict=True):
            np.testing.assert_array_equal(message_to_rgb(m_a.msg), message_to_rgb(m_b.msg))
    reports = [bag_eval(options(bag, tmp_path / f"out-{bag.name}", video=False), blob_pipeline())
               for bag in (plain, packed)]
    assert reports[0]["accuracy"] == reports[1]["accuracy"] and reports[1]["processed"] == 40


def test_make_bag_from_a_real_otb_sequence(tmp_path):
    source = source_from_sequence(OTB)
    source.description = "the person crossing the road"
    summary = write_bag(source, tmp_path / "crossing", compressed=True, fps=25, progress=False)
    assert summary["frames"] == 120 and summary["size"] == (360, 240)
    seq = load_sequence(OTB)
    bagged = load_sequence(tmp_path / "crossing", require_frames=False)
    np.testing.assert_allclose(bagged.gt, seq.gt)
    with open_bag(tmp_path / "crossing") as reader:
        first = next(m for m in reader.messages(["/camera/image_raw/compressed"]))
    assert np.abs(message_to_rgb(first.msg).astype(int) - seq.read_frame(0)).mean() < 4


def test_make_bag_refuses_to_overwrite_and_cleans_up_on_failure(tmp_path):
    bag = blob_bag(tmp_path, 3)
    with pytest.raises(BagWriteError, match="exists"):
        blob_bag(tmp_path, 3)

    def broken() -> Iterator[tuple[np.ndarray, FrameAnnotation]]:
        yield from blob_frames(2)
        raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError, match="unplugged"):
        write_bag(BagSource("x", "y", 5, broken()), tmp_path / "broken", progress=False)
    assert not (tmp_path / "broken").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [bag.name]


# ----------------------------------------------------------------------------------------------- real fixtures
@needs_data
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_real_rosbag2_fixtures_are_read(storage):
    # Written by rosbag2 itself (metadata version 4): rosbags alone yields no message from these, because
    # their metadata.yaml and their storage disagree on the QoS text; our reader matches by topic and type.
    with open_bag(TALKER / storage / "talker") as reader:
        topics = {t.name: (t.msgtype, t.count) for t in reader.topics}
        assert topics["/topic"] == ("std_msgs/msg/String", 10)
        texts = [m.msg.data for m in reader.messages(["/topic"])]
    assert texts == [f"Hello, world! {i}" for i in range(10)]


@needs_data
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_without_images_gets_an_error_listing_its_topics(tmp_path, storage):
    with pytest.raises(BagError) as info:
        bag_eval(options(TALKER / storage / "talker", tmp_path / "out", text="x"), blob_pipeline())
    message = str(info.value)
    assert "no image topic" in message
    assert "/topic [std_msgs/msg/String] (10 msgs)" in message and "/rosout [rcl_interfaces/msg/Log]" in message
    assert not (tmp_path / "out").exists()


@needs_data
@pytest.mark.parametrize("name", ["aruco_marker.bag", "aruco_images.bag", "fiducial_board_611.bag"])
def test_real_ros1_compressed_image_bags_replay(tmp_path, name):
    report = bag_eval(options(ROS1 / name, tmp_path / "out", text="the marker", video=True), blob_pipeline())
    assert report["image_topic"].endswith("image/compressed")  # found without --image-topic
    assert report["frames"] == 1 and report["processed"] == 1 and report["accuracy"] is None
    assert report["video_frames"] == 1
    with open_bag(tmp_path / "out" / "bag") as out:
        (target,) = [m.msg for m in out.messages(["/target"])]
    with open_bag(ROS1 / name) as src:
        (image,) = [m.msg for m in src.messages([report["image_topic"]])]
    assert (target.header.stamp.sec, target.header.stamp.nanosec) == (image.header.stamp.sec,
                                                                       image.header.stamp.nanosec)
    assert target.description == "the marker"


# ----------------------------------------------------------------------------------------------- damaged bags
def _truncate_copy(bag: Path, dest: Path, fraction: float) -> Path:
    shutil.copytree(bag, dest)
    (data,) = [p for p in dest.iterdir() if p.suffix in (".db3", ".mcap")]
    renamed = data.with_name(dest.name + data.suffix)
    data.rename(renamed)
    meta = dest / "metadata.yaml"
    meta.write_text(meta.read_text().replace(data.name, renamed.name))
    os.truncate(renamed, int(renamed.stat().st_size * fraction))
    return dest


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_truncated_rosbag2_yields_the_frames_before_the_damage(tmp_path, storage):
    bag = _truncate_copy(blob_bag(tmp_path, 40, storage=storage), tmp_path / "cut", 0.5)
    report = bag_eval(options(bag, tmp_path / "out"), blob_pipeline())
    assert report["damage"] and "damaged" in report["damage"]
    assert 10 <= report["frames"] < 40 and report["processed"] == report["frames"]
    assert report["accuracy"]["auc"] > 0.5  # the frames that survived are tracked and scored
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["damage"] == report["damage"]
    assert "damaged" in (tmp_path / "out" / "report.md").read_text()
    # the CLI reports it and exits 1, after writing the results
    code = main(["bag-eval", str(bag), "--out", str(tmp_path / "cli"), "--no-video", "--backend", "torch"])
    assert code == 1 and (tmp_path / "cli" / "report.json").is_file()


@pytest.mark.parametrize("compression", [None, "BZ2", "LZ4"])
def test_a_truncated_ros1_bag_yields_the_frames_before_the_damage(tmp_path, compression):
    from rosbags.rosbag1 import Writer as Writer1

    store = typestore()
    path = tmp_path / "cut.bag"
    factory = RosbagsMessageFactory(store)
    writer = Writer1(path)
    if compression:
        writer.set_compression(getattr(Writer1.CompressionFormat, compression))
    writer.chunk_threshold = 500  # many small chunks, as a long recording has
    with writer:
        conn = writer.add_connection("/cam/image/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        for t, (frame, _) in enumerate(blob_frames(30)):
            ok, png = cv2.imencode(".png", frame)
            msg = factory.make("sensor_msgs/msg/CompressedImage", format="png", data=png,
                               header=factory.make("std_msgs/msg/Header",
                                                   stamp=factory.make("builtin_interfaces/msg/Time", sec=100 + t)))
            writer.write(conn, (100 + t) * 10**9, store.serialize_ros1(msg, "sensor_msgs/msg/CompressedImage"))
    os.truncate(path, path.stat().st_size // 2)
    with open_bag(path) as reader:
        assert reader.salvaged
        got = []
        with pytest.raises(BagDamagedError):
            for m in reader.messages(["/cam/image/compressed"]):
                got.append(m.msg.header.stamp.sec)
    assert 5 <= len(got) < 30 and got == list(range(100, 100 + len(got)))  # a cut chunk is lost whole
    report = bag_eval(options(path, tmp_path / "out", text="the bright square"), blob_pipeline())
    assert report["damage"] and report["frames"] == len(got)


def test_an_unknown_encoding_gets_a_clear_error(tmp_path):
    store = typestore()
    factory = RosbagsMessageFactory(store)
    with Writer(tmp_path / "odd", version=9) as writer:
        conn = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
        for t in range(3):
            msg = factory.make("sensor_msgs/msg/Image", height=4, width=4, encoding="32FC7", step=16,
                               data=np.zeros(64, np.uint8))
            writer.write(conn, t, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(BagError) as info:
        bag_eval(options(tmp_path / "odd", tmp_path / "out", text="x"), blob_pipeline())
    assert "32FC7" in str(info.value) and "/cam [sensor_msgs/msg/Image] (3 msgs)" in str(info.value)


# ----------------------------------------------------------------------------------------------- replay
def test_offline_replay_tracks_loses_and_reacquires_and_writes_the_node_messages(tmp_path):
    bag = blob_bag(tmp_path, 60, absent=range(20, 35))
    report = bag_eval(options(bag, tmp_path / "out"), blob_pipeline())
    assert report["frames"] == report["processed"] == 60 and report["dropped"] == 0
    acc = report["accuracy"]
    # absent frames stay in the denominator, so the best possible AUC is 0.75
    assert acc["auc"] > 0.6 and acc["reacquisition_rate"] == 1.0 and acc["false_box_rate"] < 0.3
    assert report["states"]["SEARCHING"] > 5
    out = tmp_path / "out"
    for name in ("report.json", "report.md", "frames.csv", "success.png", "precision.png", "video.mp4"):
        assert (out / name).is_file(), name
    capture = cv2.VideoCapture(str(out / "video.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    with open_bag(out / "bag") as result, open_bag(bag) as source:
        targets = [m.msg for m in result.messages(["/target"])]
        detections = [m.msg for m in result.messages(["/detections"])]
        stamps = [(m.msg.header.stamp.sec, m.msg.header.stamp.nanosec)
                  for m in source.messages(["/camera/image_raw"])]
        assert {t.name for t in result.topics} == {"/target", "/detections", "/diagnostics"}
    # One /target per image, stamped with it. The output bag is in log-time order (receive time plus
    # processing), in which a slow searching frame's answer may come after the next frame's.
    assert sorted((t.header.stamp.sec, t.header.stamp.nanosec) for t in targets) == stamps
    for target, array in zip(targets, detections):
        assert len(array.detections) == (1 if target.state == TrackState.TRACKING else 0)
    assert all(t.description == "the bright square" for t in targets)


class FakeTime:
    """Wall clock for the realtime replay: sleeping and processing move it forward, nothing else."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _realtime(pipeline: TrackerPipeline, bag: Path, seconds_per_frame: float, rate: float = 1.0):
    fake = FakeTime()
    original = pipeline.on_image

    def slow(msg, **kwargs):
        fake.now += seconds_per_frame
        return original(msg, **kwargs)

    pipeline.on_image = slow
    with open_bag(bag) as reader:
        topics = choose_topics(reader)
        replayer = Replayer(pipeline, topics, mode="realtime", rate=rate, clock=fake.clock, sleep=fake.sleep)
        return replayer.run(reader.messages([topics.image, topics.description])), fake


def test_realtime_replay_drops_frames_like_the_node_when_busy(tmp_path):
    bag = blob_bag(tmp_path, 60)  # 30 fps
    replay, fake = _realtime(blob_pipeline(), bag, seconds_per_frame=0.1)
    processed = [f for f in replay.frames if f.processed]
    dropped = [f for f in replay.frames if f.dropped]
    assert len(replay.frames) == 60 and len(processed) + len(dropped) == 60
    # 100 ms per frame at 30 fps: about one frame in three is processed, always the newest one waiting
    assert 17 <= len(processed) <= 23
    gaps = np.diff([f.index for f in processed])
    assert set(gaps.tolist()) <= {1, 2, 3, 4}
    assert all(f.latency_ms >= 100.0 - 1e-6 for f in processed)
    assert fake.now == pytest.approx(59 / 30 + 0.1, abs=0.11)  # it took the bag's duration, not longer
    # what the robot had on a dropped frame is the last published output
    held = held_results(replay.frames)
    last = None
    for record, (result, _, was_held) in zip(replay.frames, held):
        assert was_held == (not record.processed)
        last = record.result if record.processed else last
        assert result is last


def test_realtime_replay_of_a_fast_tracker_drops_nothing_and_honours_the_rate(tmp_path):
    bag = blob_bag(tmp_path, 30)
    replay, fake = _realtime(blob_pipeline(), bag, seconds_per_frame=0.005)
    assert all(f.processed for f in replay.frames)
    assert fake.now == pytest.approx(29 / 30 + 0.005, abs=0.01)
    replay, fake = _realtime(blob_pipeline(), bag, seconds_per_frame=0.005, rate=2.0)
    assert fake.now == pytest.approx(29 / 60 + 0.005, abs=0.01)


def test_descriptions_in_the_bag_apply_at_their_times_and_text_overrides_them(tmp_path):
    store = typestore()
    factory = RosbagsMessageFactory(store)
    with Writer(tmp_path / "talk", version=9) as writer:
        text = writer.add_connection("/robot/target_description", "std_msgs/msg/String", typestore=store)
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=store)
        for t, (frame, _) in enumerate(blob_frames(20)):
            if t in (0, 10, 15):
                words = {0: "first target", 10: "second target", 15: ""}[t]
                writer.write(text, t * 10**8 - 1, store.serialize_cdr(factory.make("std_msgs/msg/String", data=words),
                                                                      "std_msgs/msg/String"))
            msg = factory.make("sensor_msgs/msg/Image", **rgb_to_image_fields(frame))
            writer.write(cam, t * 10**8, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    report = bag_eval(options(tmp_path / "talk", tmp_path / "out", video=False), blob_pipeline())
    assert report["description_topic"] == "/robot/target_description" and report["descriptions_applied"] == 3
    rows = (tmp_path / "out" / "frames.csv").read_text().splitlines()[1:]
    states = [r.split(",")[3] for r in rows]
    assert states[:10] == ["TRACKING"] * 10 and states[15:] == ["IDLE"] * 5  # "" stops tracking
    with open_bag(tmp_path / "out" / "bag") as out:
        descriptions = [m.msg.description for m in out.messages(["/target"])]
    assert descriptions[:10] == ["first target"] * 10 and descriptions[10:15] == ["second target"] * 5
    report = bag_eval(options(tmp_path / "talk", tmp_path / "out2", video=False, text="my own words"),
                      blob_pipeline())
    assert report["descriptions_applied"] == 1 and report["descriptions_ignored"] == 3
    assert report["states"]["IDLE"] == 0


def test_an_interrupted_run_leaves_no_report_and_keeps_the_previous_one(tmp_path):
    bag = blob_bag(tmp_path, 20)
    bag_eval(options(bag, tmp_path / "out", video=False), blob_pipeline())
    before = (tmp_path / "out" / "report.json").read_text()
    pipeline = blob_pipeline()
    original, calls = pipeline.on_image, []

    def interrupted(msg, **kwargs):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return original(msg, **kwargs)

    pipeline.on_image = interrupted
    with pytest.raises(KeyboardInterrupt):
        bag_eval(options(bag, tmp_path / "out", video=False), pipeline)
    assert (tmp_path / "out" / "report.json").read_text() == before
    with pytest.raises(KeyboardInterrupt):
        pipeline2 = blob_pipeline()
        pipeline2.on_image = interrupted
        calls.clear()
        bag_eval(options(bag, tmp_path / "fresh", video=False), pipeline2)
    assert not (tmp_path / "fresh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_out_must_not_be_someone_elses_folder(tmp_path):
    bag = blob_bag(tmp_path, 5)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    with pytest.raises(BagError, match="refusing"):
        bag_eval(options(bag, precious), blob_pipeline())
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_ground_truth_given_as_a_file_and_length_mismatch(tmp_path):
    bag = blob_bag(tmp_path, 20)
    lines = [f"{20 + t},50,16,16" for t in range(15)]
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    report = bag_eval(options(bag, tmp_path / "out", gt=tmp_path / "gt.txt", video=False), blob_pipeline())
    assert "15 ground-truth lines for 20 image messages" in report["gt_warning"]
    assert report["accuracy"]["auc"] > 0.7


def test_held_results_hold_the_last_processed_output():
    from vl_tracker_core.trackers.base import TrackResult

    r1 = TrackResult(TrackState.TRACKING, (1.0, 2.0, 3.0, 4.0), 0.9)
    frames = [FrameRecord(0, 0, 0), FrameRecord(1, 1, 1, processed=True, result=r1, description="a"),
              FrameRecord(2, 2, 2, dropped=True)]
    assert held_results(frames) == [(None, "", True), (r1, "a", False), (r1, "a", True)]


def test_replayer_validates_mode_and_rate():
    topics = TopicChoice("/cam", "sensor_msgs/msg/Image", None, None)
    with pytest.raises(ValueError, match="mode"):
        Replayer(blob_pipeline(), topics, mode="fast")
    with pytest.raises(ValueError, match="rate"):
        Replayer(blob_pipeline(), topics, rate=0.0)


# ----------------------------------------------------------------------------------------------- CLI
def test_cli_make_bag_and_bag_eval_with_the_shipped_model(tmp_path, capsys):
    bag = tmp_path / "synthetic_bag"
    assert main(["make-bag", "--synthetic", "5", "--frames", "12", "--out", str(bag), "--storage", "mcap"]) == 0
    assert "wrote 12 frames" in capsys.readouterr().out
    assert main(["make-bag", "--synthetic", "5", "--out", str(bag)]) == 2  # exists
    assert main(["make-bag", "--out", str(tmp_path / "x")]) == 2  # neither SEQ nor --synthetic
    code = main(["bag-eval", str(bag), "--out", str(tmp_path / "eval"), "--mode", "realtime", "--no-video"])
    out = capsys.readouterr().out
    assert code == 0 and "| frames | processed | dropped |" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["frames"] == 12 and report["processed"] + report["dropped"] == 12
    assert report["accuracy"] is not None and report["text"] is None  # the bag's own description was used
    assert main(["bag-eval", str(tmp_path / "nope"), "--out", str(tmp_path / "e2")]) == 2
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "e3"), "--params", str(tmp_path / "none.yaml")]) == 2


def test_a_recorded_init_box_starts_the_replay_from_description_and_box(tmp_path):
    # A dim blob: grounding alone (BlobEngine: confidence = brightness) would not accept it at 0.5.
    def dim() -> Iterator[tuple[np.ndarray, FrameAnnotation]]:
        for frame, annotation in blob_frames(10):
            frame[frame == 250] = 90
            yield frame, annotation

    bag = tmp_path / "nlbb"
    write_bag(BagSource("dim", "the dim square", 10, dim()), bag, init_box_topic="/init_box", progress=False)
    with open_bag(bag) as reader:
        assert choose_topics(reader).init_box == "/init_box"
    report = bag_eval(options(bag, tmp_path / "out", video=False), blob_pipeline(lost_frames=50))
    rows = (tmp_path / "out" / "frames.csv").read_text().splitlines()[1:]
    assert rows[0].split(",")[3] == "TRACKING"
    assert report["accuracy"]["first_frame_success"] == 1.0
    plain = tmp_path / "nl"
    write_bag(BagSource("dim", "the dim square", 10, dim()), plain, progress=False)
    assert bag_eval(options(plain, tmp_path / "out2", video=False), blob_pipeline())["states"]["TRACKING"] == 0
