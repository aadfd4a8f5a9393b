"""Per-stage latency of the tracking pipeline for each backend, each measured in a fresh process.

``python -m vl_tracker_core.engines.bench --backend X`` measures one backend and
prints one JSON object; ``run_bench`` (``vl-tracker bench``) runs that once per
backend in a subprocess, so each peak RSS (``ru_maxrss``) and the
``torch_imported`` flag belong to that backend alone, and prints the table.

What is timed, on a generated 640x480 sequence started from the description and
the first box (NL+BB), after warm-up, as medians:

- image conversion: a BGR8 buffer (as in a sensor_msgs/Image) to an RGB array;
- preprocessing: the search crop (tracking) and the letterbox (grounding), as
  ``VLTracker`` calls them;
- text encoding (once per description) and template encoding (once per target);
- the networks: ``Engine.track``, ``Engine.propose`` and ``Engine.match`` calls,
  which include packing the uint8 crops into the input tensors;
- the global passes as ``VLTracker`` runs them: grounding (letterbox, proposals,
  K full-resolution candidate crops, matcher) and re-search (the same plus the
  template agreement and the verifying tracking passes);
- postprocessing + state machine: the rest of ``VLTracker.step``;
- overhead per frame: conversion + preprocessing + postprocessing + state
  machine on tracking frames, i.e. everything outside the networks.
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
    """Wraps an engine and records the wall time of every call, by kind."""

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

    def encode_template(self, text, template):
        return self._timed("template", self.engine.encode_template, text, template)

    def track(self, text, template_tokens, search):
        return self._timed("track", self.engine.track, text, template_tokens, search)

    def propose(self, image):
        return self._timed("propose", self.engine.propose, image)

    def match(self, text, crops, geometry, cand_mask, template_crop):
        return self._timed("match", self.engine.match, text, crops, geometry, cand_mask, template_crop)


def _timed_function(fn: Callable[..., Any], sink: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        sink.append(time.perf_counter() - start)
        return out

    return wrapper


def measure(backend: str, model: str | None, frames: int, threads: int | None, seed: int = 7,
            width: int = 640, height: int = 480) -> dict[str, Any]:
    """Run one backend over a generated sequence and return its timings (this process only)."""
    import cv2

    import vl_tracker_core.tracker as tracker_module
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
    box0 = scene.target_box(0)
    timed = _TimedEngine(engine)
    tracker = VLTracker(timed, TrackerParams.from_dict(load_default_params()))
    # Count the tracker's own crop/letterbox calls (bench-only instrumentation of its module globals).
    crop_times: list[float] = []
    letterbox_times: list[float] = []
    original = (tracker_module.crop_around, tracker_module.letterbox)
    tracker_module.crop_around = _timed_function(original[0], crop_times)
    tracker_module.letterbox = _timed_function(original[1], letterbox_times)
    convert, step, rest, calls_track, calls_propose, calls_match, calls_template = [], [], [], [], [], [], []
    tracking_total, tracking_rest = [], []
    states: dict[str, int] = {}
    try:
        for t in range(frames + WARMUP_FRAMES):
            bgr = cv2.cvtColor(scene.render(t), cv2.COLOR_RGB2BGR).tobytes()  # what a camera driver publishes
            timed.calls.clear()
            n_crop, n_letterbox = len(crop_times), len(letterbox_times)
            t0 = time.perf_counter()
            rgb = cv2.cvtColor(np.frombuffer(bgr, np.uint8).reshape(height, width, 3), cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            # NL+BB start: the tracking frames are what a real-time tracker spends its time on, whatever
            # the weights' grounding ability (grounding is timed on the searching frames and directly below).
            result = tracker.initialize(rgb, scene.description, box0) if t == 0 else tracker.step(rgb)
            t2 = time.perf_counter()
            if t < WARMUP_FRAMES:
                continue
            network = sum(d for _, d in timed.calls)
            prep = sum(crop_times[n_crop:]) + sum(letterbox_times[n_letterbox:])
            convert.append(t1 - t0)
            step.append(t2 - t1)
            rest.append(max(0.0, (t2 - t1) - network - prep))
            kinds = [k for k, _ in timed.calls]
            if result.state == TrackState.TRACKING and kinds == ["track"]:
                tracking_total.append(t2 - t0)
                tracking_rest.append(rest[-1])
            states[result.state.name] = states.get(result.state.name, 0) + 1
            for kind, d in timed.calls:
                {"track": calls_track, "propose": calls_propose, "match": calls_match,
                 "template": calls_template}.get(kind, []).append(d)
        # With untrained weights the tracker may rarely track: time the networks directly on real crops too,
        # so every backend gets enough samples of each call.
        from vl_tracker_core.data.crops import crop_around, letterbox

        text = engine.encode_text(scene.description)
        box = next((b for b in (scene.target_box(t) for t in range(scene.num_frames)) if b is not None),
                   (width / 2 - 20, height / 2 - 20, 40, 40))
        frame = scene.render(0)
        template_patch, _ = original[0](frame, box, engine.config.template_factor, engine.config.template_size)
        tokens = engine.encode_template(text, template_patch)
        search, _ = crop_around(frame, box, engine.config.search_factor, engine.config.search_size)
        image, _ = letterbox(frame, engine.config.ground_size)
        # The global passes exactly as the tracker runs them, on a frame with its template stored.
        probe = VLTracker(engine, TrackerParams.from_dict(load_default_params()))
        probe.initialize(frame, scene.description, box)
        k, c = engine.config.candidates, engine.config.candidate_size
        crops = np.zeros((k, c, c, 3), np.uint8)
        geometry = np.full((k, 6), 0.5, np.float32)
        cand_mask = np.ones(k, np.float32)
        calls_ground_pass: list[float] = []
        calls_research_pass: list[float] = []
        for samples, fn in ((calls_track, lambda: engine.track(text, tokens, search)),
                            (calls_propose, lambda: engine.propose(image)),
                            (calls_match, lambda: engine.match(text, crops, geometry, cand_mask, crops[0])),
                            (calls_template, lambda: engine.encode_template(text, template_patch)),
                            (calls_ground_pass, lambda: probe._best_global(frame, verify=False)),
                            (calls_research_pass, lambda: probe._best_global(frame, verify=True))):
            while len(samples) < max(5, min(20, frames)):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
    finally:
        tracker_module.crop_around, tracker_module.letterbox = original

    convert_ms = _median_ms(convert)
    crop_ms = _median_ms(crop_times[-frames:])
    post_ms = _median_ms(tracking_rest or rest)
    track_ms = _median_ms(calls_track)
    overhead_ms = round(convert_ms + (crop_ms or 0.0) + post_ms, 4)
    total_ms = (round(statistics.median(tracking_total) * 1000.0, 4) if tracking_total
                else round(overhead_ms + track_ms, 4))
    return {
        "available": True,
        "backend": backend,
        "device": getattr(engine, "gpu_name", None) or ("cpu" if backend != "tensorrt" else None),
        "threads": threads,
        "frames": frames,
        "frame_size": [width, height],
        "load_s": round(load_s, 3),
        "convert_ms": convert_ms,
        "crop_ms": crop_ms,
        "letterbox_ms": _median_ms(letterbox_times),
        "text_ms": _median_ms(text_times),
        "template_ms": _median_ms(calls_template),
        "propose_ms": _median_ms(calls_propose),
        "match_ms": _median_ms(calls_match),
        "ground_pass_ms": _median_ms(calls_ground_pass),
        "research_pass_ms": _median_ms(calls_research_pass),
        "track_ms": track_ms,
        "post_state_ms": post_ms,
        "overhead_ms": overhead_ms,
        "total_ms": total_ms,
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
    ("preprocessing: search crop", "crop_ms"),
    ("preprocessing: letterbox (grounding frames)", "letterbox_ms"),
    ("text encoding (once per description)", "text_ms"),
    ("template encoding (once per target)", "template_ms"),
    ("proposal network (whole frame)", "propose_ms"),
    ("matcher network (K candidate crops)", "match_ms"),
    ("global grounding pass (letterbox, proposals, crops, matcher)", "ground_pass_ms"),
    ("global re-search pass (+ template agreement, verifying tracking passes)", "research_pass_ms"),
    ("tracking network (every call, with re-search's verifying passes)", "track_ms"),
    ("postprocessing + state machine", "post_state_ms"),
    ("outside the networks, per tracking frame", "overhead_ms"),
    ("total per tracking frame", "total_ms"),
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
        out[name] = {key: round(base[key] / r[key], 3) for key in ("track_ms", "propose_ms", "match_ms",
                                                                       "ground_pass_ms", "total_ms", "text_ms")
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
