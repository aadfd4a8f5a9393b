"""Soak and load runs of the node's processing path (``TrackerPipeline``), without ROS.

``soak`` feeds synthetic scenes one after another, frame by frame, and mixes in at
stated rates the bad input a robot sees: descriptions that are empty, 5,000
characters long or not UTF-8; NL+BB starts with NaN, zero-sized or out-of-frame
boxes; frame-size changes; malformed ``sensor_msgs/Image`` and ``CompressedImage``
messages. It records how each kind was answered, whether anything escaped the
pipeline (a crash), resident memory over the run and per-frame latency at the start
and at the end.

``load`` drives one pipeline from several threads at once, as the node's callbacks do:
descriptions at 100 Hz, images at 30 Hz through the latest-frame slot to an
inference worker, parameter updates and resets in between.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from vl_tracker_ros.processing import LatestFrameSlot, TrackerPipeline

#: Bad-input kinds and their default rate (chance per frame). Valid input is what is left.
DEFAULT_RATES: dict[str, float] = {
    "description_new": 0.004,  # another valid description of an object in view
    "description_empty": 0.002,
    "description_5000_chars": 0.002,
    "description_not_utf8": 0.002,
    "init_box_valid": 0.002,
    "init_box_nan": 0.002,
    "init_box_zero": 0.002,
    "init_box_outside": 0.002,
    "frame_size_change": 0.002,
    "image_wrong_step": 0.004,
    "image_truncated": 0.004,
    "image_unknown_encoding": 0.004,
    "image_zero_size": 0.004,
    "image_huge_declared_size": 0.004,
    "compressed_valid_jpeg": 0.004,
    "compressed_random_jpeg": 0.004,
    "compressed_random_png": 0.004,
}

#: How each kind is expected to be answered: the frame or command was used, or refused with a counted
#: diagnostic (the tracker's state unchanged).
EXPECTED: dict[str, str] = {
    "description_new": "applied",
    "description_empty": "applied",  # an empty description means "stop tracking"
    "description_5000_chars": "refused",
    "description_not_utf8": "refused",
    "init_box_valid": "applied",
    "init_box_nan": "refused",
    "init_box_zero": "refused",
    "init_box_outside": "refused",
    "frame_size_change": "processed",
    "image_wrong_step": "refused",
    "image_truncated": "refused",
    "image_unknown_encoding": "refused",
    "image_zero_size": "refused",
    "image_huge_declared_size": "refused",
    "compressed_valid_jpeg": "processed",
    "compressed_random_jpeg": "refused",
    "compressed_random_png": "refused",
}


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; the peak from getrusage elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class SoakOptions:
    frames: int = 10_000
    seed: int = 0
    scene_frames: int = 300  # frames per synthetic scene before the next one starts
    width: int = 640
    height: int = 480
    rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    rss_every: int = 50  # frames between memory samples
    warmup_share: float = 0.1  # memory growth and the "first" latencies are measured after this share

    def __post_init__(self) -> None:
        if self.frames < 10:
            raise ValueError("a soak needs at least 10 frames")
        unknown = set(self.rates) - set(DEFAULT_RATES)
        if unknown:
            raise ValueError(f"unknown bad-input kinds {sorted(unknown)}; known: {sorted(DEFAULT_RATES)}")
        if any(not (0.0 <= r <= 1.0) for r in self.rates.values()) or sum(self.rates.values()) > 0.9:
            raise ValueError("rates are chances per frame in [0, 1], and together at most 0.9")


class _Inputs:
    """Builds valid and malformed input messages with the pipeline's own message factory."""

    def __init__(self, factory: Any, rng: random.Random) -> None:
        self.make = factory.make
        self.rng = rng
        self.sec = 1_700_000_000

    def header(self) -> Any:
        self.sec += 1
        return self.make("std_msgs/msg/Header", stamp=self.make("builtin_interfaces/msg/Time", sec=self.sec,
                                                                nanosec=0), frame_id="camera")

    def image(self, rgb: np.ndarray, **override: Any) -> Any:
        fields = {"height": rgb.shape[0], "width": rgb.shape[1], "encoding": "rgb8", "is_bigendian": 0,
                  "step": rgb.shape[1] * 3, "data": np.ascontiguousarray(rgb).reshape(-1)}
        fields.update(override)
        return self.make("sensor_msgs/msg/Image", header=self.header(), **fields)

    def compressed(self, fmt: str, data: np.ndarray | bytes) -> Any:
        buf = np.frombuffer(bytes(data), np.uint8) if isinstance(data, (bytes, bytearray)) else data
        return self.make("sensor_msgs/msg/CompressedImage", header=self.header(), format=fmt, data=buf)

    def string(self, data: Any) -> Any:
        return self.make("std_msgs/msg/String", data=data)

    def detection(self, box: tuple[float, float, float, float], class_id: str = "") -> Any:
        x, y, w, h = box
        center = self.make("vision_msgs/msg/Pose2D",
                           position=self.make("vision_msgs/msg/Point2D", x=x + w / 2, y=y + h / 2), theta=0.0)
        results = []
        if class_id:
            results = [self.make("vision_msgs/msg/ObjectHypothesisWithPose",
                                 hypothesis=self.make("vision_msgs/msg/ObjectHypothesis", class_id=class_id,
                                                      score=1.0))]
        return self.make("vision_msgs/msg/Detection2D", header=self.header(), results=results,
                         bbox=self.make("vision_msgs/msg/BoundingBox2D", center=center, size_x=w, size_y=h))

    def random_bytes(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def bad_image(self, kind: str, rgb: np.ndarray) -> Any:
        h, w = rgb.shape[:2]
        flat = np.ascontiguousarray(rgb).reshape(-1)
        if kind == "image_wrong_step":
            return self.image(rgb, step=w * 3 - 1 - self.rng.randrange(8))
        if kind == "image_truncated":
            return self.image(rgb, data=flat[: self.rng.randrange(0, flat.size - 1)])
        if kind == "image_unknown_encoding":
            return self.image(rgb, encoding=self.rng.choice(["yuv420_weird", "bayer_xyzw8", "", "rgb9", "16UC7"]))
        if kind == "image_zero_size":
            return self.image(rgb, height=0, width=0, step=0, data=flat[:0])
        if kind == "image_huge_declared_size":
            return self.image(rgb, height=60_000, width=60_000, step=180_000)
        if kind == "compressed_random_jpeg":
            # A JPEG start marker, then noise: decoders must refuse it, not crash.
            return self.compressed("jpeg", b"\xff\xd8\xff\xe0" + self.random_bytes(self.rng.randrange(0, 3000)))
        if kind == "compressed_random_png":
            return self.compressed("png", b"\x89PNG\r\n\x1a\n" + self.random_bytes(self.rng.randrange(0, 3000)))
        raise ValueError(kind)


@dataclass
class SoakReport:
    frames: int
    frames_processed: int
    valid_frames: int
    crashes: int
    crash_messages: list[str]
    tried: dict[str, int]
    answered: dict[str, dict[str, int]]  # kind -> {answer: count}
    unexpected: dict[str, int]  # kind -> count answered otherwise than EXPECTED says
    pipeline_errors: dict[str, int]
    rss_warmup_mb: float
    rss_peak_mb: float
    rss_final_mb: float
    rss_growth_pct: float
    latency_first_p50_ms: float
    latency_first_p99_ms: float
    latency_last_p50_ms: float
    latency_last_p99_ms: float
    #: state -> frames and p50/p99 in the first and the last tenth (drift is judged per state)
    latency_by_state: dict[str, dict[str, float]]
    seconds: float
    options: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def _scene_stream(options: SoakOptions) -> Callable[[int], tuple[np.ndarray, Any, str, bool]]:
    """frame index -> (rgb, target box or None, the scene's description, whether a scene starts here)."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene

    cache: dict[str, Any] = {}

    def get(i: int) -> tuple[np.ndarray, Any, str, bool]:
        index, t = divmod(i, options.scene_frames)
        if cache.get("index") != index:
            scene = SyntheticScene(options.seed * 100_003 + index, options.scene_frames,
                                   SceneConfig(width=options.width, height=options.height,
                                               force_out_of_view=index % 2 == 1), paraphrases="unseen")
            cache.update(index=index, scene=scene)
        scene = cache["scene"]
        return scene.render(t), scene.target_box(t), scene.description, t == 0

    return get


def soak(pipeline: TrackerPipeline, options: SoakOptions, progress: Callable[[int], None] | None = None
         ) -> SoakReport:
    """Run the soak (see the module docstring) on ``pipeline``; nothing raised by it escapes uncounted."""
    rng = random.Random(options.seed)
    inputs = _Inputs(pipeline.factory, rng)
    frames = _scene_stream(options)
    kinds = list(options.rates)
    weights = [options.rates[k] for k in kinds]
    p_bad = sum(weights)
    tried: Counter = Counter()
    answered: dict[str, Counter] = {k: Counter() for k in kinds}
    crashes: list[str] = []
    latencies: list[tuple[int, float, str]] = []  # (frame, ms, tracker state after the frame)
    rss: list[tuple[int, float]] = []
    processed = valid = 0
    last_scale = 1.0  # size of the last frame sent against the scene's own
    started = time.perf_counter()

    def guarded(kind: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as exc:  # what the soak is looking for: anything the pipeline lets through
            crashes.append(f"frame {i}, {kind}: {type(exc).__name__}: {exc}")
            return None

    def answer(kind: str, used: bool, word: str, errors_before: int) -> None:
        """Count how ``kind`` was answered: used (``word``), refused with a counted error, or ignored."""
        refused = pipeline.stats.error_count > errors_before
        answered[kind][word if used else ("refused" if refused else "ignored")] += 1

    for i in range(options.frames):
        rgb, box, description, scene_starts = frames(i)
        if scene_starts:
            guarded("scene_description", pipeline.on_description, inputs.string(description))
        kind = rng.choices(kinds, weights)[0] if p_bad > 0 and rng.random() < p_bad else "valid"
        if kind != "valid":
            tried[kind] += 1
        errors_before = pipeline.stats.error_count
        if kind.startswith("description_") or kind.startswith("init_box_"):
            # A box is given in the pixels of the frame the operator saw: the last one sent.
            seen = None if box is None else tuple(float(v) * last_scale for v in box)
            answer(kind, bool(guarded(kind, _command, pipeline, inputs, kind, rgb, seen, description)), "applied",
                   errors_before)
            kind = "valid"  # the frame itself is still a valid one
        if kind == "valid" or kind in ("frame_size_change", "compressed_valid_jpeg"):
            last_scale = 1.0
            if kind == "frame_size_change":
                last_scale = rng.choice([0.5, 0.75, 1.5])
                rgb = cv2.resize(rgb, (int(rgb.shape[1] * last_scale), int(rgb.shape[0] * last_scale)))
                msg = inputs.image(rgb)
            elif kind == "compressed_valid_jpeg":
                _, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                msg = inputs.compressed("rgb8; jpeg compressed bgr8", buf.reshape(-1))
            else:
                msg = inputs.image(rgb)
            t0 = time.perf_counter()
            out = guarded(kind, pipeline.on_image, msg)
            if kind == "valid":
                valid += 1
                if out is not None:
                    latencies.append((i, (time.perf_counter() - t0) * 1000.0, out.result.state.name))
            else:
                answer(kind, out is not None, "processed", errors_before)
            processed += out is not None
        else:  # a malformed image message
            out = guarded(kind, pipeline.on_image, inputs.bad_image(kind, rgb))
            answer(kind, out is not None, "processed", errors_before)
            processed += out is not None
        if i % options.rss_every == 0 or i == options.frames - 1:
            rss.append((i, rss_mb()))
        if progress is not None:
            progress(i)
    return _report(options, pipeline, processed, valid, crashes, tried, answered, latencies, rss,
                   time.perf_counter() - started)


def _command(pipeline: TrackerPipeline, inputs: _Inputs, kind: str, rgb: np.ndarray, box: Any,
             description: str) -> bool:
    h, w = rgb.shape[:2]  # the scene's size (a frame-size change may have sent a bigger or smaller one)
    rng = inputs.rng
    if kind == "description_new":
        return pipeline.on_description(inputs.string(description if rng.random() < 0.5 else
                                                     rng.choice(["the red circle", "the large blue object",
                                                                 "the striped star left of the green square"])))
    if kind == "description_empty":
        return pipeline.on_description(inputs.string(rng.choice(["", "   ", "\n"])))
    if kind == "description_5000_chars":
        return pipeline.on_description(inputs.string(("the red ball " * 400)[:5000]))
    if kind == "description_not_utf8":
        return pipeline.on_description(inputs.string(rng.choice([b"the \xff\xfe red ball", b"\xc3\x28", b"\x80abc"])))
    if kind == "init_box_valid":
        target = box if box is not None else (w * 0.4, h * 0.4, w * 0.1, h * 0.1)
        return pipeline.on_init_box(inputs.detection(tuple(float(v) for v in target), description))
    if kind == "init_box_nan":
        return pipeline.on_init_box(inputs.detection((float("nan"), 10.0, 20.0, float("nan")), description))
    if kind == "init_box_zero":
        return pipeline.on_init_box(inputs.detection((w / 2, h / 2, 0.0, 0.0), description))
    if kind == "init_box_outside":
        return pipeline.on_init_box(inputs.detection((w * 3.0, -h * 2.0, 40.0, 30.0), description))
    raise ValueError(kind)


def _report(options: SoakOptions, pipeline: TrackerPipeline, processed: int, valid: int, crashes: list[str],
            tried: Counter, answered: dict[str, Counter], latencies: list[tuple[int, float]],
            rss: list[tuple[int, float]], seconds: float) -> SoakReport:
    n = options.frames
    warm_end = int(n * options.warmup_share)
    after_warmup = [m for i, m in rss if i >= warm_end] or [rss[-1][1]]
    warm_rss = after_warmup[0]
    tenth = max(1, n // 10)
    first = [ms for i, ms, _ in latencies if warm_end <= i < warm_end + tenth]
    last = [ms for i, ms, _ in latencies if i >= n - tenth]
    # A frame's cost depends on the state (a SEARCHING frame runs a whole-frame pass): drift is judged per
    # state, so that a run that happens to end in SEARCHING is not taken for a slowdown.
    by_state: dict[str, dict[str, float]] = {}
    for state in sorted({st for _, _, st in latencies}):
        a = [ms for i, ms, st in latencies if st == state and warm_end <= i < warm_end + tenth]
        b = [ms for i, ms, st in latencies if st == state and i >= n - tenth]
        if not a and not b:
            continue  # seen only between the two windows: nothing to compare
        by_state[state] = {"first_frames": len(a), "first_p50_ms": _percentile(a, 50),
                           "first_p99_ms": _percentile(a, 99), "last_frames": len(b),
                           "last_p50_ms": _percentile(b, 50), "last_p99_ms": _percentile(b, 99)}
    unexpected = {k: sum(c for a, c in answered[k].items() if a != EXPECTED[k]) for k in answered}
    return SoakReport(
        frames=n, frames_processed=processed, valid_frames=valid, crashes=len(crashes),
        crash_messages=crashes[:20], tried=dict(tried),
        answered={k: dict(v) for k, v in answered.items() if v},
        unexpected={k: v for k, v in unexpected.items() if v},
        pipeline_errors=dict(pipeline.stats.errors),
        rss_warmup_mb=warm_rss, rss_peak_mb=max(m for _, m in rss), rss_final_mb=rss[-1][1],
        rss_growth_pct=100.0 * (rss[-1][1] - warm_rss) / warm_rss,
        latency_first_p50_ms=_percentile(first, 50), latency_first_p99_ms=_percentile(first, 99),
        latency_last_p50_ms=_percentile(last, 50), latency_last_p99_ms=_percentile(last, 99),
        latency_by_state=by_state, seconds=seconds, options=asdict(options))


def format_soak(report: SoakReport) -> str:
    lines = [f"soak: {report.frames} frames in {report.seconds:.0f} s, {report.frames_processed} processed, "
             f"crashes {report.crashes}", "",
             "| input | tried | answered | expected |", "|---|---|---|---|"]
    for kind in DEFAULT_RATES:
        if kind not in report.tried:
            continue
        answers = ", ".join(f"{a} {c}" for a, c in sorted(report.answered.get(kind, {}).items()))
        lines.append(f"| {kind} | {report.tried[kind]} | {answers} | {EXPECTED[kind]} |")
    lines += ["", "| measure | value |", "|---|---|",
              f"| RSS after warm-up / peak / final (MB) | {report.rss_warmup_mb:.0f} / {report.rss_peak_mb:.0f} / "
              f"{report.rss_final_mb:.0f} |",
              f"| RSS growth after warm-up | {report.rss_growth_pct:+.1f} % |",
              f"| latency p50 / p99, first tenth (ms) | {report.latency_first_p50_ms:.1f} / "
              f"{report.latency_first_p99_ms:.1f} |",
              f"| latency p50 / p99, last tenth (ms) | {report.latency_last_p50_ms:.1f} / "
              f"{report.latency_last_p99_ms:.1f} |",
              *(f"| {state}: p50 / p99 first tenth, last tenth (ms; frames) | {v['first_p50_ms']:.1f} / "
                f"{v['first_p99_ms']:.1f} ({v['first_frames']:.0f}), {v['last_p50_ms']:.1f} / {v['last_p99_ms']:.1f} "
                f"({v['last_frames']:.0f}) |" for state, v in report.latency_by_state.items()),
              f"| answered otherwise than expected | {sum(report.unexpected.values())} |",
              "| pipeline error counters | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(report.pipeline_errors.items()))} |"]
    for message in report.crash_messages:
        lines.append(f"crash: {message}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- load
@dataclass
class LoadReport:
    seconds: float
    descriptions_sent: int
    images_sent: int
    param_updates: int
    resets: int
    processed: int
    dropped: int
    image_errors: int
    escaped: list[str]  # exceptions that left a callback (must be empty)
    pending: int  # a frame left in the slot at the end (0 or 1)
    received: int


def load(pipeline: TrackerPipeline, seconds: float = 5.0, description_hz: float = 100.0, image_hz: float = 30.0,
         width: int = 640, height: int = 480, seed: int = 0) -> LoadReport:
    """Callbacks from several threads at once, as a MultiThreadedExecutor delivers them to the node."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene

    scene = SyntheticScene(seed, 300, SceneConfig(width=width, height=height), paraphrases="unseen")
    frames = [scene.render(t) for t in range(0, 300, 10)]
    rng = random.Random(seed)
    inputs = _Inputs(pipeline.factory, rng)
    slot = LatestFrameSlot()
    stop = threading.Event()
    escaped: list[str] = []
    counts: Counter = Counter()
    lock = threading.Lock()

    def guard(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not stop.is_set():
                try:
                    fn()
                except Exception as exc:
                    with lock:
                        escaped.append(f"{name}: {type(exc).__name__}: {exc}")
        return run

    texts = [scene.description, "the red circle", "", "the small striped star", "x" * 5000]

    def descriptions() -> None:
        pipeline.on_description(inputs.string(rng.choice(texts)))
        counts["descriptions"] += 1
        time.sleep(1.0 / description_hz)

    def images() -> None:
        msg = inputs.image(frames[counts["images"] % len(frames)])
        pipeline.note_received()
        if slot.put(msg, time.monotonic()):
            pipeline.note_dropped()
        counts["images"] += 1
        time.sleep(1.0 / image_hz)

    def worker() -> None:
        item = slot.take()
        if item is None:
            time.sleep(0.002)
            return
        msg, received_at = item
        pipeline.on_image(msg, received_at=received_at)

    def tuning() -> None:
        params = pipeline.tracker.params
        pipeline.update_params(replace(params, lost_threshold=rng.choice([0.3, 0.35, 0.4])))
        counts["params"] += 1
        if rng.random() < 0.3:
            pipeline.reset()
            counts["resets"] += 1
        time.sleep(0.05)

    threads = [threading.Thread(target=guard(n, f), name=f"load-{n}", daemon=True)
               for n, f in (("description", descriptions), ("image", images), ("worker", worker),
                            ("tuning", tuning))]
    before = replace(pipeline.stats, errors=Counter(pipeline.stats.errors))  # a copy, counters included
    start = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=30.0)
    stats = pipeline.stats
    return LoadReport(seconds=time.perf_counter() - start, descriptions_sent=counts["descriptions"],
                      images_sent=counts["images"], param_updates=counts["params"], resets=counts["resets"],
                      processed=stats.processed - before.processed, dropped=stats.dropped - before.dropped,
                      image_errors=stats.errors["image"] - before.errors["image"], escaped=escaped,
                      pending=int(slot.pending()), received=stats.received - before.received)
