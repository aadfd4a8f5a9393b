"""The node's message-in, message-out logic, without rclpy.

``TrackerPipeline`` turns input messages (sensor_msgs/Image or CompressedImage,
std_msgs/String, vision_msgs/Detection2D) into output messages
(vl_tracker/TrackedTarget, vision_msgs/Detection2DArray, a debug
sensor_msgs/Image, diagnostic_msgs/DiagnosticArray). Input messages are
duck-typed on their field names; output messages are built by a
``MessageFactory``, so the same code makes rclpy messages in the node and
``rosbags`` dataclasses in tests and bag replay.

Bad input never raises: it is counted (see ``PipelineStats``), reported to the
``on_error`` callback, and the frame or command is skipped with the tracker's
state unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vl_tracker_core.boxes import Box, InvalidBoxError, clip_box
from vl_tracker_core.engines.base import Engine
from vl_tracker_core.models.text import DescriptionError, clean_description
from vl_tracker_core.tracker import FrameError, TrackerParams, VLTracker
from vl_tracker_core.trackers.base import TrackResult, TrackState
from vl_tracker_core.visualize import draw_overlay
from vl_tracker_ros.image_conversion import ImageConversionError, message_to_rgb, rgb_to_image_fields

log = logging.getLogger(__name__)

# diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN, DIAG_ERROR = 0, 1, 2

#: Error kinds counted separately in the diagnostics.
ERROR_KINDS = ("image", "description", "init_box", "tracker")


class MessageFactory(Protocol):
    """Builds a message from its type (``"pkg/msg/Name"``) and fields; missing fields keep their defaults.

    Fields are given as Python scalars, strings, lists of messages, and uint8 numpy arrays for byte
    sequences; an implementation converts them to what its message classes expect.
    """

    def make(self, msgtype: str, **fields: Any) -> Any: ...


@dataclass
class Outputs:
    """What one processed frame produces."""

    target: Any  # vl_tracker/msg/TrackedTarget
    detections: Any  # vision_msgs/msg/Detection2DArray
    debug_image: Any | None  # sensor_msgs/msg/Image, only when asked for
    result: TrackResult
    frame_size: tuple[int, int]  # (width, height)


@dataclass
class PipelineStats:
    """Counters since start (totals) for diagnostics and bag replay reports."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    errors: Counter = field(default_factory=Counter)
    last_error: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class LatestFrameSlot:
    """Holds only the newest unprocessed frame: a slow model never builds a queue.

    ``put`` replaces an older frame that was not taken yet (returns True: that frame was dropped).
    Thread-safe; the image callback puts, the inference worker takes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._item: tuple[Any, float] | None = None

    def put(self, msg: Any, received_at: float) -> bool:
        with self._lock:
            dropped = self._item is not None
            self._item = (msg, received_at)
        return dropped

    def take(self) -> tuple[Any, float] | None:
        with self._lock:
            item, self._item = self._item, None
        return item

    def pending(self) -> bool:
        with self._lock:
            return self._item is not None


def box_from_detection(msg: Any) -> tuple[Box, str | bytes]:
    """(x, y, w, h) and the class_id of the first hypothesis ('' if none) from a vision_msgs/Detection2D.

    vision_msgs 4.x (Humble, Jazzy) has ``bbox.center.position.x``; 3.x (Foxy) had ``bbox.center.x``.
    A rotated box (theta != 0) is used axis-aligned with the same centre and size.
    """
    try:
        bbox = msg.bbox
        center = getattr(bbox.center, "position", bbox.center)
        cx, cy, w, h = float(center.x), float(center.y), float(bbox.size_x), float(bbox.size_y)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidBoxError(f"init_box is not a vision_msgs/Detection2D with a bbox: {exc}") from None
    class_id = ""
    results = getattr(msg, "results", None) or []
    if len(results):
        hypothesis = getattr(results[0], "hypothesis", results[0])
        class_id = getattr(hypothesis, "class_id", "") or ""
    if not isinstance(class_id, (str, bytes)):
        class_id = str(class_id)
    return (cx - w / 2.0, cy - h / 2.0, w, h), class_id


def _printable(text: str) -> str:
    """Text safe for a ROS string (UTF-8 encodable) and a log line."""
    return text.encode("utf-8", "replace").decode("utf-8")


class TrackerPipeline:
    """One tracker behind message callbacks. Thread-safe: callbacks may come from different threads.

    ``on_image`` returns the output messages for the frame, or None when the frame was unusable
    (counted in ``stats``). ``diagnostics`` summarises the time since its previous call.
    """

    def __init__(self, tracker: VLTracker, factory: MessageFactory,
                 on_error: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = tracker
        self.factory = factory
        self._on_error = on_error or (lambda kind, message: log.warning("%s error: %s", kind, message))
        self._clock = clock
        self._lock = threading.RLock()  # tracker state: commands vs. frames
        self._stats_lock = threading.Lock()  # counters: never waits for inference
        self._description = ""
        self.stats = PipelineStats()
        # window since the last diagnostics() call
        self._window_start = clock()
        self._window: Counter = Counter()
        self._latency_ms: deque[float] = deque(maxlen=1000)
        self._processing_ms: deque[float] = deque(maxlen=1000)
        self._last_state = TrackState.IDLE
        self._frame_size: tuple[int, int] | None = None  # (width, height) of the last usable frame

    # ------------------------------------------------------------------ commands
    @property
    def description(self) -> str:
        return self._description

    def on_description(self, msg: Any) -> bool:
        """std_msgs/String: a new target; empty (or only whitespace) stops tracking. True if applied."""
        data = getattr(msg, "data", msg)
        if isinstance(data, (bytes, bytearray)):
            is_empty = not bytes(data).strip()
        else:
            is_empty = isinstance(data, str) and not data.strip()
        if is_empty:
            self.reset()
            return True
        try:
            text = clean_description(data)
        except DescriptionError as exc:
            self._error("description", f"description refused, keeping the current target: {exc}")
            return False
        with self._lock:
            if text == self._description and self.tracker.state != TrackState.IDLE:
                # Re-sent description (e.g. `ros2 topic pub` repeating at 1 Hz): keep tracking, do not restart.
                return True
            try:
                self.tracker.set_target(text)
            except Exception as exc:  # the engine's text encoder failed: keep running, report it
                self._error("description", f"could not encode the description {_printable(text)!r}: {exc}")
                return False
            self._description = text
        return True

    def on_init_box(self, msg: Any) -> bool:
        """vision_msgs/Detection2D: start tracking this box on the next frame (NL+BB mode).

        The description is the first hypothesis' class_id if given, else the current description.
        """
        try:
            box, class_id = box_from_detection(msg)
            size = self._frame_size
            # Only a well-formed box can lie outside the last frame; a non-positive or NaN box (or one before
            # any frame) is refused below by set_target with its own reason.
            if size is not None and all(map(math.isfinite, box)) and box[2] > 0 and box[3] > 0:
                inside = clip_box(box, *size)
                if inside is None or inside[2] < 1 or inside[3] < 1:
                    raise InvalidBoxError(f"init_box {tuple(round(v, 1) for v in box)} lies outside the last "
                                          f"{size[0]}x{size[1]} frame")
            with self._lock:
                text = clean_description(class_id) if class_id.strip() else self._description
                if not text:
                    raise DescriptionError("init_box needs a description: publish one on target_description "
                                           "first, or put it in results[0].hypothesis.class_id")
                self.tracker.set_target(text, box)
                self._description = text
        except (InvalidBoxError, DescriptionError) as exc:
            self._error("init_box", f"init_box refused, keeping the current target: {exc}")
            return False
        except Exception as exc:
            self._error("init_box", f"init_box failed: {exc}")
            return False
        return True

    def reset(self) -> None:
        """Forget the target (IDLE)."""
        with self._lock:
            self.tracker.reset()
            self._description = ""

    def update_params(self, params: TrackerParams) -> None:
        """New thresholds; the current target and state are kept."""
        with self._lock:
            self.tracker.params = params

    def replace_engine(self, engine: Engine) -> None:
        """Use a new (already built) engine. The current target is grounded again with it, since text
        features and templates from one engine mean nothing to another. If the new engine cannot encode
        the description, the error propagates and the old tracker is kept."""
        with self._lock:
            tracker = VLTracker(engine, self.tracker.params, grounder=self.tracker.grounder)
            if self._description:
                tracker.set_target(self._description)
            self.tracker = tracker

    def replace_grounder(self, grounder: Any) -> None:
        """Use another grounder (None: the engine's own proposals and matcher) from the next whole-frame
        pass on; the current target, template and state are kept. The previous one is released."""
        with self._lock:
            previous, self.tracker.grounder = self.tracker.grounder, grounder
        close = getattr(previous, "close", None)
        if previous is not None and previous is not grounder and callable(close):
            close()

    def close(self) -> None:
        """Release the engine (device buffers of a TensorRT engine); safe to call more than once."""
        with self._lock:
            engine = self.tracker.engine
            close = getattr(engine, "close", None)
            if callable(close) and not getattr(self, "_closed", False):
                close()
            self._closed = True

    # ------------------------------------------------------------------ frames
    def note_received(self) -> None:
        with self._stats_lock:
            self.stats.received += 1
            self._window["received"] += 1

    def note_dropped(self, count: int = 1) -> None:
        """Frames replaced by a newer one before they were processed (latest-frame-only)."""
        with self._stats_lock:
            self.stats.dropped += count
            self._window["dropped"] += count

    def on_image(self, msg: Any, *, debug: bool = False, received_at: float | None = None) -> Outputs | None:
        """Process one Image / CompressedImage; None when it is unusable (counted as an error)."""
        start = self._clock()
        try:
            header = self._header(msg)
            frame = message_to_rgb(msg)
        except ImageConversionError as exc:
            self._error("image", str(exc))
            return None
        with self._lock:
            try:
                result = self.tracker.step(frame)
            except FrameError as exc:
                self._error("image", str(exc))
                return None
            except Exception as exc:  # an engine failure must not kill the node: report, skip the frame
                log.debug("tracker step failed", exc_info=True)
                self._error("tracker", f"{type(exc).__name__}: {exc}")
                return None
            description = self._description if result.state != TrackState.IDLE else ""
        self._frame_size = (frame.shape[1], frame.shape[0])
        outputs = self._outputs(header, frame, result, description, debug, start)
        done = self._clock()
        with self._stats_lock:
            self.stats.processed += 1
            self._window["processed"] += 1
            self._processing_ms.append((done - start) * 1000.0)
            self._latency_ms.append((done - (start if received_at is None else received_at)) * 1000.0)
            self._last_state = result.state
        return outputs

    def _header(self, msg: Any) -> Any:
        try:
            stamp = msg.header.stamp
            sec, nanosec, frame_id = int(stamp.sec), int(stamp.nanosec), str(msg.header.frame_id)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ImageConversionError(f"image has no usable header: {exc}") from None
        if not (-(2**31) <= sec < 2**31 and 0 <= nanosec < 2**32):
            raise ImageConversionError(f"image stamp {sec}.{nanosec} is out of range")
        make = self.factory.make
        return make("std_msgs/msg/Header", stamp=make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec),
                    frame_id=_printable(frame_id))

    def _bbox(self, box: Box | None) -> Any:
        make = self.factory.make
        x, y, w, h = box if box is not None else (0.0, 0.0, 0.0, 0.0)
        cx, cy = (x + w / 2.0, y + h / 2.0) if box is not None else (0.0, 0.0)
        center = make("vision_msgs/msg/Pose2D", position=make("vision_msgs/msg/Point2D", x=float(cx), y=float(cy)),
                      theta=0.0)
        return make("vision_msgs/msg/BoundingBox2D", center=center, size_x=float(w), size_y=float(h))

    def _outputs(self, header: Any, frame: np.ndarray, result: TrackResult, description: str, debug: bool,
                 start: float) -> Outputs:
        make = self.factory.make
        similarity = float(result.similarity)
        target = make("vl_tracker/msg/TrackedTarget", header=header, state=int(result.state),
                      description=description, bbox=self._bbox(result.box),
                      confidence=float(result.confidence), similarity=similarity if math.isfinite(similarity)
                      else float("nan"), frames_since_seen=int(min(max(result.frames_since_seen, 0), 2**32 - 1)),
                      processing_ms=float((self._clock() - start) * 1000.0))
        detections = []
        if result.state == TrackState.TRACKING and result.box is not None:
            hypothesis = make("vision_msgs/msg/ObjectHypothesisWithPose",
                              hypothesis=make("vision_msgs/msg/ObjectHypothesis", class_id=description,
                                              score=float(result.confidence)))
            detections.append(make("vision_msgs/msg/Detection2D", header=header, results=[hypothesis],
                                   bbox=self._bbox(result.box), id=""))
        array = make("vision_msgs/msg/Detection2DArray", header=header, detections=detections)
        debug_image = None
        if debug:
            overlay = draw_overlay(frame, result, description)
            debug_image = make("sensor_msgs/msg/Image", header=header, **rgb_to_image_fields(overlay))
        return Outputs(target, array, debug_image, result, (frame.shape[1], frame.shape[0]))

    # ------------------------------------------------------------------ errors and diagnostics
    def report_error(self, kind: str, message: str) -> None:
        """Count an error found outside the pipeline (e.g. a message that did not deserialise)."""
        self._error(kind, message)

    def _error(self, kind: str, message: str) -> None:
        message = _printable(message)
        with self._stats_lock:
            self.stats.errors[kind] += 1
            self.stats.last_error = f"{kind}: {message}"
            self._window["errors"] += 1
        try:
            self._on_error(kind, message)
        except Exception:  # a broken logger must not turn a bad message into a crash
            log.exception("on_error callback failed")

    def diagnostics(self, stamp: tuple[int, int], name: str = "vl_tracker: tracker", hardware_id: str = "",
                    extra: dict[str, str] | None = None) -> Any:
        """diagnostic_msgs/DiagnosticArray for the time since the previous call (rate, latency, state, drops,
        errors); ``stamp`` is (sec, nanosec) of now."""
        now = self._clock()
        with self._stats_lock:
            elapsed = max(now - self._window_start, 1e-9)
            window, self._window = self._window, Counter()
            self._window_start = now
            latency = list(self._latency_ms)
            processing = list(self._processing_ms)
            self._latency_ms.clear()
            self._processing_ms.clear()
            stats = PipelineStats(self.stats.received, self.stats.processed, self.stats.dropped,
                                  Counter(self.stats.errors), self.stats.last_error)
            state = self._last_state
        rate = window["processed"] / elapsed
        state_text = f"{state.name}" + (f" '{self._description}'" if state != TrackState.IDLE else "")
        if window["received"] == 0 and window["processed"] == 0:
            level, message = DIAG_WARN, f"no images in the last {elapsed:.1f} s (check the image topic remapping)"
        elif window["errors"] and window["processed"] == 0:
            level, message = DIAG_ERROR, f"every frame failed in the last {elapsed:.1f} s: {stats.last_error}"
        elif window["errors"]:
            level, message = DIAG_WARN, f"{window['errors']} errors in the last {elapsed:.1f} s: {stats.last_error}"
        else:
            level, message = DIAG_OK, f"{state_text} at {rate:.1f} Hz"
        values = {
            "state": state.name,
            "description": self._description,
            "rate_hz": f"{rate:.2f}",
            "latency_ms": f"{np.mean(latency):.1f}" if latency else "nan",
            "latency_max_ms": f"{np.max(latency):.1f}" if latency else "nan",
            "processing_ms": f"{np.mean(processing):.1f}" if processing else "nan",
            "frames_received": str(stats.received),
            "frames_processed": str(stats.processed),
            "frames_dropped": str(stats.dropped),
            "dropped_in_window": str(window["dropped"]),
            "errors": str(stats.error_count),
            **{f"{kind}_errors": str(stats.errors[kind]) for kind in ERROR_KINDS},
            "last_error": stats.last_error,
            **(extra or {}),
        }
        make = self.factory.make
        status = make("diagnostic_msgs/msg/DiagnosticStatus", level=level, name=name, message=_printable(message),
                      hardware_id=hardware_id,
                      values=[make("diagnostic_msgs/msg/KeyValue", key=k, value=_printable(str(v)))
                              for k, v in values.items()])
        header = make("std_msgs/msg/Header", stamp=make("builtin_interfaces/msg/Time", sec=int(stamp[0]),
                                                        nanosec=int(stamp[1])), frame_id="")
        return make("diagnostic_msgs/msg/DiagnosticArray", header=header, status=[status])
