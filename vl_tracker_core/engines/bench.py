"""Per-stage latency of the tracking pipeline for each backend, each measured in a fresh process.

``python -m vl_tracker_core.engines.bench --backend X`` measures one backend and
prints one JSON object; ``run_bench`` (``vl-tracker bench``) runs that once per
backend in a subprocess, so each peak RSS and the ``torch_imported`` flag belong
to that backend alone, and prints the table.

What is timed, on a generated 640x480 sequence started from the description and
the first box (NL+BB), after warm-up, as medians:

- image conversion: a BGR8 buffer (as in a sensor_msgs/Image) to an RGB array;
- text encoding (once per description);
- the networks, per call: the trunk on the tracking crop, on the scale check's
  crops (one batch), on the re-detection window; the proposal network and the
  matcher (grounding, verification), each including packing the uint8 inputs;
- a tracking frame as ``VLTracker.step`` runs it (trunk, filter, verifier on its
  frames), and what of it lies outside the networks (crops, the filter's FFTs,
  the state machine, plus the image conversion);
- a searching frame (re-detection window, candidate check, verifier) and a
  grounding frame (letterbox, proposals, candidate crops, matcher).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WARMUP_FRAMES = 10
#: Descriptions for the text-encoding timing (each encoded once: no cache hit).
_TEXTS = ("the red ball", "a small blue striped square", "the green triangle on the left",
          "large yellow star near the top", "the purple circle next to the orange square",
          "a dotted cyan hexagon", "the white diamond at the bottom right")


def _median_ms(values: Sequence[float]) -> float | None:
    return round(statistics.median(values) * 1000.0, 4) if values else None


class _TimedEngine:
    """Wraps an engine and records the wall time of every call, by kind (trunk calls by input shape)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.name = engine.name
        self.config = engine.config
        self.calls: list[tuple[str, float]] = []

    def _timed(self, kind: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.calls.append((kind, time.perf_counter() - start))
        return out

    def encode_text(self, description: str):
        return self._timed("text", self.engine.encode_text, description)

    def features(self, patches):
        cfg = self.config
        kind = ("trunk_window" if patches.shape[1] == cfg.redetect_size and patches.shape[1] != cfg.online_crop_size
                else "trunk_crop")
        return self._timed(kind, self.engine.features, patches)

    def propose(self, image):
        return self._timed("propose", self.engine.propose, image)

    def match(self, text, crops, geometry, cand_mask, template_crop):
        kind = "verify" if len(crops) == 1 else "match"
        return self._timed(kind, self.engine.match, text, crops, geometry, cand_mask, template_crop)


def measure(backend: str, model: str | None, frames: int, threads: int | None, seed: int = 7,
            width: int = 640, height: int = 480) -> dict[str, Any]:
    """Run one backend over a generated sequence and return its timings (this process only)."""
    import cv2

    from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
    from vl_tracker_core.engines import create_engine
    from vl_tracker_core.tracker import TrackerParams, VLTracker, load_default_params
    from vl_tracker_core.trackers.base import TrackState

    options: dict[str, Any] = {"threads": threads} if backend in ("torch", "onnxruntime") and threads else {}
    start = time.perf_counter()
    engine = create_engine(backend, model, **options)
    load_s = time.perf_counter() - start

    # Text encoding: distinct descriptions, after one warm-up call.
    engine.encode_text("warm up the text encoder")
    text_times = []
    for text in _TEXTS:
        t0 = time.perf_counter()
        engine.encode_text(text)
        text_times.append(time.perf_counter() - t0)

    scene = SyntheticScene(seed, frames + WARMUP_FRAMES, SceneConfig(width=width, height=height))
    timed = _TimedEngine(engine)
    params = TrackerParams.from_dict(load_default_params())
    tracker = VLTracker(timed, params)
    by_kind: dict[str, list[float]] = {}
    convert: list[float] = []
    tracking_total: list[float] = []
    tracking_outside: list[float] = []
    searching_total: list[float] = []
    grounding_total: list[float] = []
    states: dict[str, int] = {}

    def record(kind: str, t_start: float, t_end: float, convert_s: float) -> None:
        network = sum(d for _, d in timed.calls)
        for name, d in timed.calls:
            by_kind.setdefault(name, []).append(d)
        if kind == "tracking":
            tracking_total.append(t_end - t_start + convert_s)
            tracking_outside.append(max(0.0, t_end - t_start - network) + convert_s)
        elif kind == "searching":
            searching_total.append(t_end - t_start)
        else:
            grounding_total.append(t_end - t_start)

    box0 = scene.target_box(0)
    for t in range(frames + WARMUP_FRAMES):
        bgr = cv2.cvtColor(scene.render(t), cv2.COLOR_RGB2BGR).tobytes()  # what a camera driver publishes
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(np.frombuffer(bgr, np.uint8).reshape(height, width, 3), cv2.COLOR_BGR2RGB)
        t1 = time.perf_counter()
        before = tracker.state
        timed.calls.clear()
        # NL+BB start: the tracking frames are what a real-time tracker spends its time on, whatever the
        # weights' grounding ability (grounding and searching frames are timed below).
        result = tracker.initialize(rgb, scene.description, box0) if t == 0 else tracker.step(rgb)
        t2 = time.perf_counter()
        if t < WARMUP_FRAMES:
            continue
        convert.append(t1 - t0)
        states[result.state.name] = states.get(result.state.name, 0) + 1
        kind = {TrackState.TRACKING: "tracking", TrackState.SEARCHING: "searching"}.get(before, "grounding")
        record(kind, t1, t2, t1 - t0)

    # Searching and grounding frames directly, on frames where the target is in view: a searching frame that
    # re-acquires is put back to SEARCHING, so every sample is the full re-search.
    frame = scene.render(0)
    probe = VLTracker(timed, params)
    probe.initialize(frame, scene.description, box0)
    samples = max(5, min(20, frames))
    for kind, state in (("searching", TrackState.SEARCHING), ("grounding", TrackState.GROUNDING)):
        for _ in range(samples):
            probe.state = state
            probe._since_seen = 0
            timed.calls.clear()
            t0 = time.perf_counter()
            probe.step(frame)
            record(kind, t0, time.perf_counter(), 0.0)

    def med(kind: str) -> float | None:
        return _median_ms(by_kind.get(kind, []))

    total_ms = _median_ms(tracking_total)
    return {
        "available": True,
        "backend": backend,
        "device": getattr(engine, "gpu_name", None) or ("cpu" if backend != "tensorrt" else None),
        "threads": threads,
        "frames": frames,
        "frame_size": [width, height],
        "load_s": round(load_s, 3),
        "convert_ms": _median_ms(convert),
        "text_ms": _median_ms(text_times),
        "trunk_crop_ms": med("trunk_crop"),
        "trunk_window_ms": med("trunk_window"),
        "propose_ms": med("propose"),
        "match_ms": med("match"),
        "verify_ms": med("verify"),
        "tracking_mean_ms": round(statistics.fmean(tracking_total) * 1000.0, 4) if tracking_total else None,
        "overhead_ms": _median_ms(tracking_outside),
        "total_ms": total_ms,
        "tracking_p95_ms": round(float(np.percentile(tracking_total, 95)) * 1000.0, 4) if tracking_total else None,
        "searching_ms": _median_ms(searching_total),
        "grounding_ms": _median_ms(grounding_total),
        "fps": round(1000.0 / total_ms, 2) if total_ms else None,
        "tracking_frames": len(tracking_total),
        "states": states,
        "rss_mb": round(_peak_rss_kb() / 1024.0, 1),
        "torch_imported": "torch" in sys.modules,
    }


def _peak_rss_kb() -> float:
    """Peak resident memory of this process image. ``ru_maxrss`` is not used where avoidable: Linux carries
    the parent's peak over into a forked-and-exec'd child, so a large parent would inflate every backend."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ---------------------------------------------------------------------------------------------- driver
def _child(backend: str, model: str | None, frames: int, threads: int | None, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "vl_tracker_core.engines.bench", "--backend", backend, "--frames", str(frames)]
    if model:
        cmd += ["--model", str(model)]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"available": False, "reason": f"exit code {proc.returncode}: {tail}"}


_ROWS = (
    ("image conversion (BGR8 -> RGB)", "convert_ms"),
    ("text encoding (once per description)", "text_ms"),
    ("trunk on the tracking crop (network)", "trunk_crop_ms"),
    ("trunk on the re-detection window (network)", "trunk_window_ms"),
    ("proposal network (whole frame, grounding)", "propose_ms"),
    ("matcher network, K candidates (grounding, global re-search)", "match_ms"),
    ("matcher network, one candidate (verifier)", "verify_ms"),
    ("outside the networks, per tracking frame", "overhead_ms"),
    ("total per tracking frame (median)", "total_ms"),
    ("total per tracking frame (mean)", "tracking_mean_ms"),
    ("total per tracking frame (95th percentile)", "tracking_p95_ms"),
    ("searching frame (window, candidate check, verifier)", "searching_ms"),
    ("grounding frame (letterbox, proposals, crops, matcher)", "grounding_ms"),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)

    def cell(r: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        if not r.get("available"):
            return "n/a"
        value = r.get(key)
        return "-" if value is None else fmt.format(value)

    lines = ["| stage (median ms) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key in _ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(results[n], key) for n in names) + " |")
    lines.append("| fps (tracking frames) | " + " | ".join(cell(results[n], "fps", "{:.1f}") for n in names) + " |")
    lines.append("| peak RSS, fresh process (MB) | "
                 + " | ".join(cell(results[n], "rss_mb", "{:.0f}") for n in names) + " |")
    lines.append("| start-up (s) | " + " | ".join(cell(results[n], "load_s", "{:.2f}") for n in names) + " |")
    lines.append("| torch imported | " + " | ".join(cell(results[n], "torch_imported", "{}") for n in names) + " |")
    for name in names:
        if not results[name].get("available"):
            lines.append(f"\n{name}: unavailable ({results[name].get('reason')})")
    return "\n".join(lines)


def speedups(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Speed-up of each backend over torch (torch time / backend time), per network and per frame."""
    base = results.get("torch", {})
    out: dict[str, dict[str, float]] = {}
    if not base.get("available"):
        return out
    for name, r in results.items():
        if name == "torch" or not r.get("available"):
            continue
        out[name] = {key: round(base[key] / r[key], 3) for key in ("trunk_crop_ms", "propose_ms", "match_ms",
                                                                       "searching_ms", "total_ms", "text_ms")
                     if base.get(key) and r.get(key)}
    return out


def run_bench(backends: Sequence[str], frames: int = 200, model: str | os.PathLike | None = None,
              threads: int | None = 2, json_path: Path | None = None, timeout: float = 1800.0,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every backend in its own process; print the table; return (and optionally write) the JSON."""
    from vl_tracker_core.engines.artifacts import is_export_dir, load_manifest
    from vl_tracker_core.engines.resolve import resolve_export_dir

    checkpoint, export_dir = None, None
    if model is not None and is_export_dir(model):
        export_dir = Path(model)
        source = load_manifest(export_dir).get("checkpoint")
        checkpoint = Path(source) if source and Path(source).is_dir() else None
    else:
        checkpoint = Path(model) if model is not None else None
    if any(b != "torch" for b in backends) and export_dir is None:
        # Export in this process, not in the measured ones (it imports torch and would inflate their RSS).
        export_dir = resolve_export_dir(checkpoint)
    load = os.getloadavg()
    results: dict[str, Any] = {}
    for backend in backends:
        say(f"measuring {backend} ({frames} frames, fresh process) ...")
        if backend == "torch" and model is not None and checkpoint is None:
            results[backend] = {"available": False, "reason": f"{model} is an export folder whose checkpoint is "
                                "not available for the torch backend"}
            continue
        target = checkpoint if backend == "torch" else export_dir
        results[backend] = _child(backend, str(target) if target else None, frames, threads, timeout)
    report: dict[str, Any] = dict(results)
    report["speedup_vs_torch"] = speedups(results)
    report["meta"] = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                      "load_average_before": [round(v, 2) for v in load], "threads": threads, "frames": frames,
                      "unix_time": int(time.time())}
    say("")
    say(format_table(results))
    for name, ratio in report["speedup_vs_torch"].items():
        say(f"{name} vs torch: " + ", ".join(f"{k[:-3]} {v:.2f}x" for k, v in ratio.items()))
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
        say(f"wrote {json_path}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure one backend (used by `vl-tracker bench`); prints JSON.")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        result = measure(args.backend, args.model, args.frames, args.threads)
    except (RuntimeError, ImportError, OSError, ValueError) as exc:
        # A backend that cannot run here (no TensorRT, no GPU) is a result, not a crash.
        result = {"available": False, "backend": args.backend, "reason": f"{type(exc).__name__}: {exc}",
                  "torch_imported": "torch" in sys.modules}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
