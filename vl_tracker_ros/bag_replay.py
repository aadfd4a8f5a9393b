"""``vl-tracker bag-eval``: replay a recorded bag through exactly the node's processing path and measure it.

The replay feeds the bag's messages to ``processing.TrackerPipeline`` (what the node runs) in the order
they were recorded: images from the image topic, descriptions from the description topic (applied at their
times), init boxes from the init-box topic.

- ``offline``: every frame is processed, as fast as the machine goes.
- ``realtime``: the bag's timestamps are honoured (``rate`` times real time). Frames arrive while the
  tracker is busy and only the newest one waits in a ``LatestFrameSlot``, the node's own class, so frames
  are dropped exactly as the node drops them on this machine. Latency is measured from a frame's arrival
  to its outputs.

Scoring: the image messages are the frames, in order; line ``i`` of the ground truth belongs to the
``i``-th image message. A frame that was dropped (or could not be used) is scored with the output the
robot had at that moment, the last one published; ``metrics_processed`` scores the processed frames only.

Everything goes into a staging folder renamed to OUT at the end, so an interrupted run leaves no
half-written report. A bag cut short is replayed up to the damage; the report says so and the command
exits non-zero.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from vl_tracker_core.engines.base import Engine
from vl_tracker_core.progress import progress as progress_bar
from vl_tracker_core.trackers.base import TrackResult, TrackState
from vl_tracker_core.visualize import draw_overlay
from vl_tracker_ros.bag_reader import BagDamagedError, BagError, BagMessage, BagReader, describe_topics, open_bag
from vl_tracker_ros.bag_writer import BAG_VERSION, STORAGES
from vl_tracker_ros.image_conversion import ImageConversionError, message_to_rgb
from vl_tracker_ros.processing import LatestFrameSlot, Outputs, TrackerPipeline
from vl_tracker_ros.rosbags_types import RosbagsMessageFactory, typestore

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
DESCRIPTION_TYPE = "std_msgs/msg/String"
INIT_BOX_TYPE = "vision_msgs/msg/Detection2D"
#: The node's output topics (relative names; recorded here under the root namespace).
OUTPUT_TOPICS = {"target": ("/target", "vl_tracker/msg/TrackedTarget"),
                 "detections": ("/detections", "vision_msgs/msg/Detection2DArray"),
                 "diagnostics": ("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray")}
MODES = ("offline", "realtime")
CSV_FIELDS = ("frame", "stamp", "processed", "state", "x", "y", "w", "h", "confidence", "similarity",
              "latency_ms", "processing_ms", "note")


@dataclass
class TopicChoice:
    image: str
    image_type: str
    description: str | None
    init_box: str | None


@dataclass
class FrameRecord:
    """One image message of the bag and what became of it."""

    index: int
    log_ns: int
    stamp_ns: int
    processed: bool = False
    dropped: bool = False
    error: str = ""
    result: TrackResult | None = None
    description: str = ""
    latency_ms: float = float("nan")  # arrival -> outputs ready (wall clock)
    processing_ms: float = float("nan")


@dataclass
class ReplayResult:
    frames: list[FrameRecord]
    mode: str
    rate: float
    wall_s: float
    descriptions_applied: int = 0
    descriptions_ignored: int = 0
    message_errors: list[str] = field(default_factory=list)
    damage: str = ""


# ------------------------------------------------------------------------------------------- topics
def choose_topics(bag: BagReader, image_topic: str | None = None, description_topic: str | None = None,
                  init_box_topic: str | None = None) -> TopicChoice:
    """The image, description and init-box topics; a clear error naming every topic when there is no
    usable image topic or a named topic is missing."""
    topics = {t.name: t.msgtype for t in bag.topics}
    listing = describe_topics(bag.topics)
    if image_topic:
        if image_topic not in topics:
            raise BagError(f"{bag.path}: no topic {image_topic!r}; topics found: {listing}")
        if topics[image_topic] not in IMAGE_TYPES:
            raise BagError(f"{bag.path}: {image_topic} is a {topics[image_topic]}, not a sensor_msgs/Image or "
                           f"CompressedImage; topics found: {listing}")
    else:
        images = [name for name, msgtype in topics.items() if msgtype in IMAGE_TYPES]
        if not images:
            raise BagError(f"{bag.path}: no image topic (sensor_msgs/msg/Image or CompressedImage); topics "
                           f"found: {listing}")
        if len(images) > 1:
            raw = [name for name in images if topics[name] == IMAGE_TYPES[0]]
            if len(raw) != 1:
                raise BagError(f"{bag.path}: several image topics ({', '.join(images)}); choose one with "
                               "--image-topic")
            images = raw
        image_topic = images[0]

    def pick(given: str | None, msgtype: str, suffix: str, option: str) -> str | None:
        if given:
            if topics.get(given) != msgtype:
                raise BagError(f"{bag.path}: {option} {given!r} is not a {msgtype} topic in this bag; topics "
                               f"found: {listing}")
            return given
        matches = [name for name, t in topics.items() if t == msgtype and name.rstrip("/").endswith(suffix)]
        return matches[0] if len(matches) == 1 else None

    return TopicChoice(image_topic, topics[image_topic],
                       pick(description_topic, DESCRIPTION_TYPE, "target_description", "--description-topic"),
                       pick(init_box_topic, INIT_BOX_TYPE, "init_box", "--init-box-topic"))


# ------------------------------------------------------------------------------------------- ground truth
@dataclass
class GroundTruth:
    boxes: np.ndarray  # (N, 4)
    visible: np.ndarray  # (N,)
    description: str
    source: str
    warnings: list[str] = field(default_factory=list)


def load_ground_truth(gt: Path | None, bag_path: Path) -> GroundTruth | None:
    """From ``--gt`` (a sequence folder or an x,y,w,h file) or, without it, the files make-bag keeps in the bag
    folder. None when there is no ground truth (the replay still measures latency and drops)."""
    from vl_tracker_core.data.readers import DatasetError, load_sequence, read_groundtruth, visible_from_boxes

    if gt is None:
        if bag_path.is_dir() and (bag_path / "groundtruth.txt").is_file():
            gt = bag_path
        else:
            return None
    try:
        if gt.is_dir():
            readers_log = logging.getLogger("vl_tracker_core.data.readers")
            level = readers_log.level
            readers_log.setLevel(logging.ERROR)  # "no frames": expected, the frames are in the bag
            try:
                seq = load_sequence(gt, require_frames=False)
            finally:
                readers_log.setLevel(level)
            warnings = [w for w in seq.warnings if "loaded annotations only" not in w]
            return GroundTruth(seq.gt, seq.visible, seq.description, str(gt), warnings)
        boxes, warnings = read_groundtruth(gt)
    except DatasetError as exc:
        raise BagError(f"ground truth: {exc}") from None
    return GroundTruth(boxes, visible_from_boxes(boxes), "", str(gt), warnings)


# ------------------------------------------------------------------------------------------- output bag
class OutputBag:
    """The node's messages, recorded as a rosbag2 (at the time they would have been published)."""

    def __init__(self, path: Path, storage: str = "sqlite3") -> None:
        from rosbags.rosbag2 import Writer

        self.store = typestore()
        self._writer = Writer(path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections = {key: self._writer.add_connection(topic, msgtype, typestore=self.store)
                             for key, (topic, msgtype) in OUTPUT_TOPICS.items()}
        self.counts = dict.fromkeys(OUTPUT_TOPICS, 0)

    def write(self, key: str, msg: Any, log_ns: int) -> None:
        self._writer.write(self._connections[key], int(log_ns),
                           self.store.serialize_cdr(msg, OUTPUT_TOPICS[key][1]))
        self.counts[key] += 1

    def close(self) -> None:
        self._writer.close()


# ------------------------------------------------------------------------------------------- replay
def _stamp_ns(msg: Any) -> int:
    try:
        return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    except (AttributeError, TypeError, ValueError):
        return -1


class Replayer:
    """Drives a ``TrackerPipeline`` with the messages of a bag (see the module docstring)."""

    def __init__(self, pipeline: TrackerPipeline, topics: TopicChoice, *, mode: str = "offline", rate: float = 1.0,
                 text: str | None = None, output: OutputBag | None = None, diagnostics_period_s: float = 1.0,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep,
                 progress: tqdm | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} unknown; choose from {', '.join(MODES)}")
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number, got {rate}")
        self.pipeline, self.topics, self.mode, self.rate = pipeline, topics, mode, rate
        self.text, self.output, self.clock, self.sleep = text, output, clock, sleep
        self.diagnostics_period_ns = int(diagnostics_period_s * 1e9)
        self.progress = progress
        self.frames: list[FrameRecord] = []
        self.applied = self.ignored = 0
        self.message_errors: list[str] = []
        self._next_diagnostics_ns: int | None = None

    # -- command messages, applied when they arrive
    def _command(self, item: BagMessage) -> None:
        if item.msg is None:
            self.message_errors.append(f"{item.topic} at {item.log_ns}: {item.error}")
            return
        if item.topic == self.topics.description:
            if self.text is not None:
                self.ignored += 1  # --text replaces the bag's descriptions
                return
            if self.pipeline.on_description(item.msg):
                self.applied += 1
        elif item.topic == self.topics.init_box:
            self.pipeline.on_init_box(item.msg)

    def _image_record(self, item: BagMessage) -> FrameRecord:
        record = FrameRecord(len(self.frames), item.log_ns, _stamp_ns(item.msg) if item.msg is not None else -1)
        self.frames.append(record)
        self.pipeline.note_received()
        return record

    def _process(self, record: FrameRecord, msg: Any, arrival_wall: float, publish_ns: Callable[[], int]) -> None:
        if self.progress is not None:
            self.progress.update(1)
        if msg is None:
            record.error = "message does not deserialise"
            self.pipeline.report_error("image", f"frame {record.index + 1}: {record.error}")
            return
        start = self.clock()
        outputs: Outputs | None = self.pipeline.on_image(msg)
        done = self.clock()
        if outputs is None:
            record.error = self.pipeline.stats.last_error
            return
        record.processed = True
        record.result = outputs.result
        record.description = self.pipeline.description if outputs.result.state != TrackState.IDLE else ""
        record.processing_ms = (done - start) * 1000.0
        record.latency_ms = (done - arrival_wall) * 1000.0
        if self.output is not None:
            at = publish_ns()
            self.output.write("target", outputs.target, at)
            self.output.write("detections", outputs.detections, at)

    def _diagnostics(self, bag_ns: int) -> None:
        if self.output is None:
            return
        if self._next_diagnostics_ns is None:
            self._next_diagnostics_ns = bag_ns + self.diagnostics_period_ns
        while bag_ns >= self._next_diagnostics_ns:
            stamp = self._next_diagnostics_ns
            self.output.write("diagnostics", self.pipeline.diagnostics((stamp // 10**9, stamp % 10**9)), stamp)
            self._next_diagnostics_ns += self.diagnostics_period_ns

    def _start(self, first_ns: int) -> None:
        if self.text is not None:
            factory = self.pipeline.factory
            if self.pipeline.on_description(factory.make("std_msgs/msg/String", data=self.text)):
                self.applied += 1
        self._diagnostics(first_ns)

    def run(self, messages: Iterator[BagMessage]) -> ReplayResult:
        start_wall = self.clock()
        damage = ""
        try:
            if self.mode == "offline":
                self._offline(messages)
            else:
                self._realtime(messages)
        except BagDamagedError as exc:
            damage = str(exc)
        return ReplayResult(self.frames, self.mode, self.rate, self.clock() - start_wall, self.applied,
                            self.ignored, self.message_errors, damage)

    def _offline(self, messages: Iterator[BagMessage]) -> None:
        started = False
        for item in messages:
            if not started:
                self._start(item.log_ns)
                started = True
            self._diagnostics(item.log_ns)
            if item.topic != self.topics.image:
                self._command(item)
                continue
            record = self._image_record(item)
            arrival = self.clock()
            self._process(record, item.msg, arrival,
                          lambda log_ns=item.log_ns, t=arrival: log_ns + int((self.clock() - t) * 1e9))

    def _realtime(self, messages: Iterator[BagMessage]) -> None:
        """Single-threaded model of the node: messages are delivered when their bag time has come
        (``rate`` times real time), images into a LatestFrameSlot; whenever the tracker is free it takes the
        newest frame. A frame replaced in the slot before it was taken is dropped, as in the node."""
        slot = LatestFrameSlot()
        pending: BagMessage | None = None
        iterator = iter(messages)
        t0_wall: float | None = None
        t0_bag = 0

        def bag_now() -> int:
            return t0_bag + int((self.clock() - t0_wall) * self.rate * 1e9)

        def wall_of(log_ns: int) -> float:
            return t0_wall + (log_ns - t0_bag) / self.rate / 1e9

        while True:
            if pending is None:
                pending = next(iterator, None)
                if pending is not None and t0_wall is None:
                    t0_wall, t0_bag = self.clock(), pending.log_ns
                    self._start(t0_bag)
            now = bag_now() if t0_wall is not None else 0
            # deliver everything whose time has come
            while pending is not None and pending.log_ns <= now:
                if pending.topic == self.topics.image:
                    record = self._image_record(pending)
                    previous = slot.take()
                    if previous is not None:
                        previous[0][0].dropped = True
                        self.pipeline.note_dropped()
                        if self.progress is not None:
                            self.progress.update(1)
                    slot.put((record, pending.msg), wall_of(pending.log_ns))
                else:
                    self._command(pending)
                pending = next(iterator, None)
            self._diagnostics(now)
            item = slot.take()
            if item is not None:
                (record, msg), arrival = item
                self._process(record, msg, arrival, bag_now)
                continue
            if pending is None:
                break
            wait = (pending.log_ns - bag_now()) / self.rate / 1e9
            if wait > 0:
                self.sleep(wait)


# ------------------------------------------------------------------------------------------- scoring
def held_results(frames: list[FrameRecord]) -> list[tuple[TrackResult | None, str, bool]]:
    """Per frame: the result the robot had (its own, or the last published one), its description, held?"""
    out, last, description = [], None, ""
    for record in frames:
        if record.processed:
            last, description = record.result, record.description
            out.append((last, description, False))
        else:
            out.append((last, description, True))
    return out


def _latency_summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    arr = np.asarray(values)
    return {"count": int(arr.size), "mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


def score_replay(replay: ReplayResult, gt: GroundTruth | None, title: str) -> dict:
    """The report: counts, latency, and (with ground truth) accuracy of what the robot had on every frame."""
    from vl_tracker_core.data.sequence import Sequence
    from vl_tracker_core.eval.runner import SequenceRun, score_runs

    frames = replay.frames
    processed = [f for f in frames if f.processed]
    report: dict = {
        "title": title, "mode": replay.mode, "rate": replay.rate, "frames": len(frames),
        "processed": len(processed), "dropped": sum(f.dropped for f in frames),
        "unusable": sum(bool(f.error) and not f.dropped for f in frames),
        "wall_s": replay.wall_s,
        "throughput_fps": len(processed) / replay.wall_s if replay.wall_s > 0 else float("nan"),
        "latency_ms": _latency_summary([f.latency_ms for f in processed]),
        "processing_ms": _latency_summary([f.processing_ms for f in processed]),
        "descriptions_applied": replay.descriptions_applied, "descriptions_ignored": replay.descriptions_ignored,
        "states": {s.name: sum(1 for f in processed if f.result.state == s) for s in TrackState},
        "errors": sorted({f.error for f in frames if f.error})[:20] + replay.message_errors[:20],
        "damage": replay.damage,
    }
    if gt is None or not frames:
        report["accuracy"] = None
        return report
    n = min(len(gt.boxes), len(frames))
    if len(gt.boxes) != len(frames):
        report["gt_warning"] = (f"{len(gt.boxes)} ground-truth lines for {len(frames)} image messages; scoring the "
                                f"first {n}")
    held = held_results(frames[:n])

    def run_of(rows: list[int], name: str) -> SequenceRun:
        boxes = np.full((len(rows), 4), np.nan)
        conf, sim, ms, states = np.zeros(len(rows)), np.full(len(rows), np.nan), np.zeros(len(rows)), []
        for k, i in enumerate(rows):
            result = held[i][0]
            states.append(result.state.name if result is not None else "IDLE")
            if result is not None:
                conf[k], sim[k] = result.confidence, result.similarity
                ms[k] = frames[i].processing_ms if frames[i].processed else 0.0
                if result.state == TrackState.TRACKING and result.box is not None:
                    boxes[k] = result.box
        return SequenceRun(name, boxes, states, conf, sim, ms)

    def score(rows: list[int], name: str) -> dict:
        seq = Sequence(name, [], gt.boxes[rows], gt.visible[rows], gt.description)
        scored = score_runs([run_of(rows, name)], {name: seq})
        return scored

    everything = score(list(range(n)), title)
    report["_metrics"] = everything.pop("_metrics", None)
    keys = ("auc", "precision", "norm_precision", "op50", "op75", "lt_precision", "lt_recall", "lt_f",
            "reacquisition_rate", "false_box_rate", "first_frame_success", "confidence_roc_auc",
            "total_reappearances", "total_reacquired", "total_absent_frames", "total_false_boxes")
    report["accuracy"] = {k: everything.get(k) for k in keys}
    report["accuracy"]["curves"] = everything.get("curves")
    rows = [i for i in range(n) if frames[i].processed]
    if rows and len(rows) < n:
        only = score(rows, title)
        report["accuracy_processed_only"] = {k: only.get(k) for k in keys[:8]}
    report["ground_truth"] = gt.source
    return report


def format_report(report: dict, bag: str) -> str:
    lines = [f"# bag-eval: {report['title']}", "", f"Bag: `{bag}`, mode **{report['mode']}**"
             + (f" at rate {report['rate']:g}" if report["mode"] == "realtime" else ""), ""]
    if report.get("damage"):
        lines += [f"**The bag is damaged**: {report['damage']}. Results cover the frames before the damage.", ""]
    lat, proc = report["latency_ms"], report["processing_ms"]
    lines += ["| frames | processed | dropped | unusable | latency p50 / p90 / p99 / max (ms) | processing mean (ms) | "
              "throughput (fps) |", "|---|---|---|---|---|---|---|"]
    lat_text = (f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f}" if lat["count"]
                else "n/a")
    lines.append(f"| {report['frames']} | {report['processed']} | {report['dropped']} | {report['unusable']} | "
                 f"{lat_text} | {proc['mean']:.1f} | {report['throughput_fps']:.1f} |" if proc["count"] else
                 f"| {report['frames']} | 0 | {report['dropped']} | {report['unusable']} | n/a | n/a | 0 |")
    lines += ["", "States on processed frames: " + ", ".join(f"{k} {v}" for k, v in report["states"].items()), ""]
    acc = report.get("accuracy")
    if acc:
        def cell(v: Any) -> str:
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

        lines += ["Accuracy of what the robot had on every frame (dropped frames keep the last output):", "",
                  "| AUC | P@20 | NP | LT-F | re-acq@15 | false-box | 1st-frame | conf ROC |",
                  "|---|---|---|---|---|---|---|---|",
                  "| " + " | ".join(cell(acc[k]) for k in ("auc", "precision", "norm_precision", "lt_f",
                                                           "reacquisition_rate", "false_box_rate",
                                                           "first_frame_success", "confidence_roc_auc")) + " |", ""]
        if report.get("accuracy_processed_only"):
            only = report["accuracy_processed_only"]
            lines += [f"Processed frames only: AUC {cell(only['auc'])}, P@20 {cell(only['precision'])}, "
                      f"LT-F {cell(only['lt_f'])}", ""]
        if report.get("gt_warning"):
            lines += [f"Note: {report['gt_warning']}", ""]
    else:
        lines += ["No ground truth: accuracy not measured (pass --gt).", ""]
    if report["errors"]:
        lines += ["## Errors", ""] + [f"- {e}" for e in report["errors"]] + [""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- outputs
def write_csv(path: Path, frames: list[FrameRecord]) -> None:
    held = held_results(frames)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        for record, (result, _, was_held) in zip(frames, held):
            box = result.box if result is not None and result.state == TrackState.TRACKING else None
            note = "dropped" if record.dropped else record.error if record.error else ""
            if was_held and result is not None:
                note = (note + "; " if note else "") + "held last output"
            writer.writerow({
                "frame": record.index + 1, "stamp": f"{record.stamp_ns / 1e9:.9f}" if record.stamp_ns >= 0 else "",
                "processed": int(record.processed), "state": result.state.name if result is not None else "",
                **{k: f"{v:.2f}" if box is not None else "" for k, v in zip("xywh", box or (0, 0, 0, 0))},
                "confidence": f"{result.confidence:.4f}" if result is not None else "",
                "similarity": "" if result is None or math.isnan(result.similarity) else f"{result.similarity:.4f}",
                "latency_ms": "" if math.isnan(record.latency_ms) else f"{record.latency_ms:.2f}",
                "processing_ms": "" if math.isnan(record.processing_ms) else f"{record.processing_ms:.2f}",
                "note": note,
            })


def write_video(path: Path, bag_path: Path, topic: str, frames: list[FrameRecord], gt: GroundTruth | None,
                fps: float, progress: bool = True) -> int:
    """Every frame of the image topic with the output the robot had then (a second pass over the bag, so the
    replay itself is not slowed down). Returns the number of frames written."""
    held = held_results(frames)
    writer: cv2.VideoWriter | None = None
    size = None
    written = 0
    idle = TrackResult(TrackState.IDLE, None, 0.0)
    try:
        with open_bag(bag_path) as bag:
            messages = bag.messages([topic])
            for i, item in enumerate(progress_bar(messages, total=len(frames), desc="video", unit="frame",
                                                  enabled=progress)):
                if i >= len(frames):
                    break
                try:
                    frame = message_to_rgb(item.msg) if item.msg is not None else None
                except ImageConversionError:
                    frame = None
                if frame is None:
                    continue
                result, description, was_held = held[i]
                gt_box = None
                if gt is not None and i < len(gt.boxes) and gt.visible[i]:
                    gt_box = tuple(float(v) for v in gt.boxes[i])
                note = ""
                if frames[i].dropped:
                    note = "frame dropped (busy): last output shown"
                elif frames[i].error:
                    note = "frame unusable: last output shown"
                overlay = draw_overlay(frame, result or idle, description, gt_box=gt_box, note=note)
                if writer is None:
                    size = (overlay.shape[1], overlay.shape[0])
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                if (overlay.shape[1], overlay.shape[0]) != size:
                    overlay = cv2.resize(overlay, size)
                writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                written += 1
    except BagDamagedError:
        pass  # the replay already reported the damage
    finally:
        if writer is not None:
            writer.release()
    return written


def _frame_rate(frames: list[FrameRecord]) -> float:
    stamps = np.array([f.log_ns for f in frames], dtype=np.float64)
    if len(stamps) < 2:
        return 30.0
    step = float(np.median(np.diff(stamps))) / 1e9
    return float(min(max(1.0 / step, 1.0), 120.0)) if step > 0 else 30.0


@dataclass
class BagEvalOptions:
    bag: Path
    out: Path
    gt: Path | None = None
    mode: str = "offline"
    rate: float = 1.0
    text: str | None = None
    image_topic: str | None = None
    description_topic: str | None = None
    init_box_topic: str | None = None
    video: bool = True
    plots: bool = True
    output_storage: str = "sqlite3"
    title: str = ""
    progress: bool = True


def bag_eval(options: BagEvalOptions, pipeline: TrackerPipeline) -> dict:
    """Replay, score and write OUT (see the module docstring). Returns the report (with ``out`` set).

    Raises BagError for unusable input (nothing written); a damaged bag still gets its report, with
    ``report["damage"]`` set.
    """
    from vl_tracker_core.atomic import OutputDirError, check_replaceable, replacing_dir, write_text_atomic
    from vl_tracker_core.eval.plots import plot_curves

    if options.mode not in MODES:
        raise BagError(f"--mode {options.mode!r}: choose from {', '.join(MODES)}")
    if options.output_storage not in STORAGES:
        raise BagError(f"output storage {options.output_storage!r}: choose from {', '.join(STORAGES)}")
    gt = load_ground_truth(options.gt, options.bag)
    with open_bag(options.bag) as bag:
        topics = choose_topics(bag, options.image_topic, options.description_topic, options.init_box_topic)
        text = options.text
        if text is None and topics.description is None:
            if gt is not None and gt.description.strip():
                text = gt.description  # the sequence's own description (nlp.txt / language.txt)
            elif topics.init_box is None:
                raise BagError(f"{options.bag}: no description: no std_msgs/String topic named *target_description "
                               f"(topics found: {describe_topics(bag.topics)}); pass --text or "
                               "--description-topic")
        image_count = next((t.count for t in bag.topics if t.name == topics.image), None)
        try:
            check_replaceable(options.out, "report.json", "bag-eval output")
        except OutputDirError as exc:
            raise BagError(f"--out {exc}") from None
        with replacing_dir(options.out, "report.json", "bag-eval output") as staging:
            output = OutputBag(staging / "bag", options.output_storage)
            bar = progress_bar(total=image_count, desc=f"bag-eval {options.mode}", unit="frame",
                               enabled=options.progress)
            try:
                replayer = Replayer(pipeline, topics, mode=options.mode, rate=options.rate, text=text,
                                    output=output, progress=bar)
                wanted = [t for t in (topics.image, topics.description, topics.init_box) if t]
                replay = replayer.run(bag.messages(wanted))
            finally:
                bar.close()
                output.close()
            if not any(f.processed for f in replay.frames) and replay.frames and not replay.damage:
                first = next((f.error for f in replay.frames if f.error), "")
                raise BagError(f"{options.bag}: no frame of {topics.image} [{topics.image_type}] could be used "
                               f"({first}); topics found: {describe_topics(bag.topics)}")
            title = options.title or options.bag.name
            report = score_replay(replay, gt, title)
            report.update({"bag": str(options.bag), "image_topic": topics.image,
                           "description_topic": topics.description, "text": text,
                           "output_bag": {"path": "bag", "messages": output.counts}})
            metrics = report.pop("_metrics", None)
            write_csv(staging / "frames.csv", replay.frames)
            if options.plots and metrics is not None:
                plot_curves({title: metrics}, staging)
            if options.video and replay.frames:
                written = write_video(staging / "video.mp4", options.bag, topics.image, replay.frames, gt,
                                      _frame_rate(replay.frames), options.progress)
                report["video_frames"] = written
            write_text_atomic(staging / "report.md", format_report(report, str(options.bag)))
            write_text_atomic(staging / "report.json", json.dumps(report, indent=2, allow_nan=True) + "\n")
    report["out"] = str(options.out)
    return report


def make_pipeline(params_file: Path | None = None, overrides: dict[str, Any] | None = None,
                  engine: Engine | None = None) -> TrackerPipeline:
    """A TrackerPipeline built the way the node builds its own: node parameters (defaults, then a ROS params
    file, then ``overrides``), the same engine options and tracker parameters, rosbags output messages.
    ``engine``: reuse one already built (from the same parameters) instead of loading the model again."""
    from vl_tracker_core.engines import create_engine
    from vl_tracker_core.grounders import create_grounder
    from vl_tracker_core.tracker import VLTracker
    from vl_tracker_ros.launch_helpers import check_parameters, load_node_parameters
    from vl_tracker_ros.params import (
        check_choice,
        default_values,
        engine_options,
        grounder_options,
        tracker_params_from_values,
    )

    values = default_values()
    if params_file is not None:
        values.update(load_node_parameters(params_file))
    if overrides:
        values.update(check_parameters(overrides, "command line"))
    for name, value in values.items():
        reason = check_choice(name, value)
        if reason:
            raise ValueError(reason)
    params = tracker_params_from_values(values)
    if engine is None:
        engine = create_engine(**engine_options(values))
    grounder = create_grounder(**grounder_options(values))
    return TrackerPipeline(VLTracker(engine, params, grounder=grounder), RosbagsMessageFactory(),
                           on_error=lambda kind, message: log.debug("%s: %s", kind, message))
