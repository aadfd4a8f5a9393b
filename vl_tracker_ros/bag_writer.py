"""``vl-tracker make-bag``: a rosbag2 of a sequence, as a robot's camera and its operator would have recorded it.

The bag holds the frames on an image topic (``sensor_msgs/Image`` rgb8, or ``sensor_msgs/CompressedImage``
jpeg on ``<topic>/compressed``) and the description once on the description topic, just before the first
frame. The ground truth is kept beside the bag data, inside the bag folder, in LaSOT layout
(``groundtruth.txt``, ``nlp.txt``, ``full_occlusion.txt``, ``out_of_view.txt``): line ``i`` belongs to the
``i``-th message of the image topic. rosbag2 only reads what ``metadata.yaml`` lists, so ``ros2 bag play``
ignores these files, and ``vl-tracker bag-eval`` finds them without ``--gt``.

The bag is written into a hidden sibling folder and renamed into place when complete: an interrupted run
leaves no bag that looks whole.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from vl_tracker_core.boxes import Box
from vl_tracker_core.data.readers import write_lasot_annotations
from vl_tracker_core.progress import progress as progress_bar
from vl_tracker_ros.image_conversion import rgb_to_image_fields
from vl_tracker_ros.rosbags_types import RosbagsMessageFactory, typestore

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_DESCRIPTION_TOPIC = "/target_description"
DEFAULT_FRAME_ID = "camera"
#: Stamps start here (2026-01-01T00:00:00Z) so that the same input gives the same bag, byte for byte.
DEFAULT_START_NS = 1_767_225_600 * 1_000_000_000
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
#: rosbag2 metadata version written (Jazzy writes 9).
BAG_VERSION = 9


class BagWriteError(RuntimeError):
    """The bag cannot be written (bad options, existing output, unreadable input)."""


@dataclass
class FrameAnnotation:
    """Ground truth of one frame: the box (None when absent) and LaSOT's two absence flags."""

    box: Box | None
    full_occlusion: bool = False
    out_of_view: bool = False


@dataclass
class BagSource:
    """What goes into a bag: frames (RGB uint8) with their ground truth, a description, a frame rate."""

    name: str
    description: str
    count: int
    frames: Iterator[tuple[np.ndarray, FrameAnnotation]]


def source_from_sequence(path: Path) -> BagSource:
    """A LaSOT / TNL2K / OTB-layout sequence folder (frames must be decodable)."""
    from vl_tracker_core.data.readers import DatasetError, load_sequence
    from vl_tracker_core.data.sequence import FrameReadError

    try:
        seq = load_sequence(path)
    except DatasetError as exc:
        raise BagWriteError(str(exc)) from None
    if len(seq) == 0:
        raise BagWriteError(f"sequence {path} has no frames")
    if len(seq.gt) != len(seq):
        raise BagWriteError(f"sequence {path}: {len(seq.gt)} ground-truth lines for {len(seq)} frames")

    def frames() -> Iterator[tuple[np.ndarray, FrameAnnotation]]:
        for i in range(len(seq)):
            try:
                frame = seq.read_frame(i)
            except FrameReadError as exc:
                raise BagWriteError(f"{exc}: a bag needs every frame (fix or remove it)") from None
            box = tuple(float(v) for v in seq.gt[i]) if seq.visible[i] else None
            yield frame, FrameAnnotation(box, out_of_view=not seq.visible[i])

    return BagSource(seq.name, seq.description, len(seq), frames())


def source_from_synthetic(seed: int, frames: int, width: int = 640, height: int = 480,
                          paraphrases: str = "unseen") -> BagSource:
    """A scene of the synthetic world with distractors and (always) an out-of-view episode of the target."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene

    scene = SyntheticScene(seed, frames, SceneConfig(width=width, height=height, force_out_of_view=True),
                           paraphrases=paraphrases)

    def render() -> Iterator[tuple[np.ndarray, FrameAnnotation]]:
        for t in range(len(scene)):
            full, oov = scene.flags(t)
            yield scene.render(t), FrameAnnotation(scene.target_box(t), bool(full), bool(oov))

    return BagSource(f"synthetic-{seed}", scene.description, len(scene), render())


def _write_init_box(writer: Writer, store: Any, factory: RosbagsMessageFactory, topic: str, box: Box,
                    description: str, log_ns: int, frame_id: str) -> None:
    x, y, w, h = box
    make = factory.make
    msgtype = "vision_msgs/msg/Detection2D"
    hypothesis = make("vision_msgs/msg/ObjectHypothesisWithPose",
                      hypothesis=make("vision_msgs/msg/ObjectHypothesis", class_id=description, score=1.0))
    msg = make(msgtype, header=make("std_msgs/msg/Header", frame_id=frame_id,
                                    stamp=make("builtin_interfaces/msg/Time", sec=log_ns // 10**9,
                                               nanosec=log_ns % 10**9)),
               results=[hypothesis],
               bbox=make("vision_msgs/msg/BoundingBox2D", size_x=float(w), size_y=float(h),
                         center=make("vision_msgs/msg/Pose2D",
                                     position=make("vision_msgs/msg/Point2D", x=x + w / 2, y=y + h / 2))))
    connection = writer.add_connection(topic, msgtype, typestore=store)
    writer.write(connection, log_ns, store.serialize_cdr(msg, msgtype))


def write_bag(source: BagSource, out: Path, *, storage: str = "sqlite3", compressed: bool = False,
              fps: float = 30.0, image_topic: str = DEFAULT_IMAGE_TOPIC,
              description_topic: str = DEFAULT_DESCRIPTION_TOPIC, frame_id: str = DEFAULT_FRAME_ID,
              start_ns: int = DEFAULT_START_NS, jpeg_quality: int = 90, overwrite: bool = False,
              init_box_topic: str | None = None, progress: bool = True, zstd: bool = False) -> dict:
    """Write ``source`` as a rosbag2 folder ``out``; returns a summary (topics, counts, duration).

    ``zstd``: every message compressed with zstd (rosbag2's message compression; ``ros2 bag play`` and
    ``bag-eval`` read it). Lossless, unlike ``compressed`` (JPEG images on ``<topic>/compressed``).

    With ``init_box_topic``, the first frame's ground-truth box is also recorded there as a
    vision_msgs/Detection2D (class_id = the description), as if the operator had clicked the target:
    a replay then starts from description + box (NL+BB).
    """
    if storage not in STORAGES:
        raise BagWriteError(f"storage {storage!r} unknown; choose from {', '.join(STORAGES)}")
    if not (fps > 0 and np.isfinite(fps)):
        raise BagWriteError(f"--fps must be a positive number, got {fps}")
    for topic in (image_topic, description_topic, *([init_box_topic] if init_box_topic else [])):
        if not topic.startswith("/") or topic.endswith("/") or " " in topic:
            raise BagWriteError(f"topic {topic!r} must be an absolute ROS name like /camera/image_raw")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise BagWriteError(f"{out} exists; choose another path or pass --overwrite")
        if not (out / "metadata.yaml").is_file():
            raise BagWriteError(f"{out} exists and is not a rosbag2 folder; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # rosbags names the data file after the folder, so the staging folder has the final name, one level down.
    staging_root = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging_root, ignore_errors=True)
    staging_root.mkdir()
    staging = staging_root / out.name

    store = typestore()
    factory = RosbagsMessageFactory(store)
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    topic = f"{image_topic}/compressed" if compressed else image_topic
    period_ns = int(round(1e9 / fps))
    annotations: list[FrameAnnotation] = []
    size: tuple[int, int] | None = None
    try:
        writer = Writer(staging, version=BAG_VERSION, storage_plugin=STORAGES[storage])
        if zstd:
            writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
        with writer:
            text_conn = writer.add_connection(description_topic, "std_msgs/msg/String", typestore=store)
            image_conn = writer.add_connection(topic, image_type, typestore=store)
            # The operator's description arrives 1 ms before the first frame.
            writer.write(text_conn, start_ns - 1_000_000,
                         store.serialize_cdr(factory.make("std_msgs/msg/String", data=source.description),
                                             "std_msgs/msg/String"))
            for index, (frame, annotation) in enumerate(progress_bar(source.frames, total=source.count, unit="frame",
                                                                     desc="make-bag", enabled=progress)):
                if size is None:
                    size = (frame.shape[1], frame.shape[0])
                    if init_box_topic:
                        if annotation.box is None:
                            raise BagWriteError("--init-box needs the target on the first frame; it is absent")
                        _write_init_box(writer, store, factory, init_box_topic, annotation.box,
                                        source.description, start_ns - 500_000, frame_id)
                stamp_ns = start_ns + index * period_ns
                header = factory.make("std_msgs/msg/Header", frame_id=frame_id,
                                      stamp=factory.make("builtin_interfaces/msg/Time", sec=stamp_ns // 10**9,
                                                         nanosec=stamp_ns % 10**9))
                if compressed:
                    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                            [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
                    if not ok:
                        raise BagWriteError(f"frame {index + 1}: JPEG encoding failed")
                    msg = factory.make(image_type, header=header, format="rgb8; jpeg compressed bgr8", data=jpeg)
                else:
                    msg = factory.make(image_type, header=header, **rgb_to_image_fields(frame))
                writer.write(image_conn, stamp_ns, store.serialize_cdr(msg, image_type))
                annotations.append(annotation)
        if not annotations:
            raise BagWriteError(f"{source.name}: no frames to write")
        write_lasot_annotations(staging, source.description, [a.box for a in annotations],
                                [a.full_occlusion for a in annotations], [a.out_of_view for a in annotations],
                                decimals=2)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
    oov = np.array([a.out_of_view for a in annotations])
    return {
        "bag": str(out), "storage": storage, "image_topic": topic, "image_type": image_type,
        "description_topic": description_topic, "description": source.description, "frames": len(annotations),
        "size": size, "fps": fps, "duration_s": len(annotations) / fps,
        "out_of_view_events": int(np.sum(~oov[:-1] & oov[1:])) if len(oov) > 1 else 0,
        "absent_frames": int(sum(a.box is None for a in annotations)),
        "zstd": zstd, "megabytes": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6,
    }
