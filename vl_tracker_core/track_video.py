"""``vl-tracker track``: follow the object a sentence names through a user's own video.

INPUT is a video file, a folder of images, or a LaSOT/TNL2K/OTB-layout
sequence. Writes ``OUT/track.mp4`` (annotated), ``OUT/track.csv`` and
``OUT/track.json`` (one row per frame). No ground truth is needed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vl_tracker_core.boxes import Box
from vl_tracker_core.progress import progress as progress_bar
from vl_tracker_core.trackers.base import TrackResult
from vl_tracker_core.visualize import draw_overlay

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
CSV_FIELDS = ("frame", "state", "x", "y", "w", "h", "confidence", "similarity", "frames_since_seen",
              "processing_ms")


class InputError(ValueError):
    """INPUT cannot be read as a video, an image folder or a sequence."""


@dataclass
class FrameSource:
    """Frames of INPUT as RGB arrays (None for a frame that cannot be decoded)."""

    path: Path
    kind: str
    fps: float
    count: int
    description: str = ""
    files: list[Path] | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray | None]]:
        if self.kind == "video":
            capture = cv2.VideoCapture(str(self.path))
            index = 0
            try:
                while True:
                    ok, bgr = capture.read()
                    if not ok:
                        break
                    yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    index += 1
            finally:
                capture.release()
            return
        for index, file in enumerate(self.files or []):
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            yield index, (None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def open_input(path: Path) -> FrameSource:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_file():
        capture = cv2.VideoCapture(str(path))
        ok = capture.isOpened()
        fps = capture.get(cv2.CAP_PROP_FPS) if ok else 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        capture.release()
        if not ok:
            raise InputError(f"{path} is not a video OpenCV can open (try converting it to mp4)")
        return FrameSource(path, "video", fps if fps and math.isfinite(fps) and fps > 0 else 30.0, max(count, 0))
    for sub in ("img", "imgs"):
        if (path / sub).is_dir():
            from vl_tracker_core.data.readers import DatasetError, load_sequence

            try:
                seq = load_sequence(path)
            except DatasetError as exc:
                raise InputError(str(exc)) from None
            return FrameSource(path, "sequence", 30.0, len(seq.frames), seq.description, list(seq.frames))
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) and no img/ folder")
    return FrameSource(path, "images", 30.0, len(files), files=files)


def track_input(tracker, source: FrameSource, description: str, out_dir: Path, init_box: Box | None = None,
                progress: bool = True) -> dict:
    """Run ``tracker`` over ``source``; write the annotated video, CSV and JSON into ``out_dir``.

    They are written into a staging folder and swapped in at the end: ``out_dir`` holds the previous
    complete output or this one, whenever the run is stopped."""
    from vl_tracker_core.atomic import replacing_dir

    out_dir = Path(out_dir)
    with replacing_dir(out_dir, "track.json", "track output") as staging:
        return _track_into(tracker, source, description, staging, out_dir, init_box, progress)


def _track_into(tracker, source: FrameSource, description: str, out_dir: Path, final_dir: Path,
                init_box: Box | None, progress: bool) -> dict:
    tracker.set_target(description, init_box)
    rows: list[dict] = []
    writer: cv2.VideoWriter | None = None
    skipped = 0
    size: tuple[int, int] | None = None
    try:
        for index, frame in progress_bar(source, total=source.count or None, desc="track", unit="frame",
                                         enabled=progress):
            if frame is None:
                skipped += 1
                log.warning("frame %d of %s cannot be decoded; skipped", index + 1, source.path)
                rows.append({"frame": index + 1, "state": "SKIPPED"})
                continue
            result: TrackResult = tracker.step(frame)
            rows.append(_row(index + 1, result))
            overlay = draw_overlay(frame, result, description)
            if writer is None:
                size = (overlay.shape[1], overlay.shape[0])
                writer = cv2.VideoWriter(str(out_dir / "track.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                         source.fps, size)
            if (overlay.shape[1], overlay.shape[0]) != size:
                overlay = cv2.resize(overlay, size)
            writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    with open(out_dir / "track.csv", "w", newline="") as handle:
        csv_writer = csv.DictWriter(handle, CSV_FIELDS)
        csv_writer.writeheader()
        for row in rows:
            csv_writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    tracked = [r for r in rows if r.get("state") == "TRACKING"]
    times = [r["processing_ms"] for r in rows if "processing_ms" in r]
    states = [r["state"] for r in rows if "processing_ms" in r]
    summary = {
        "first_ms": times[0] if times else float("nan"),
        "first_state": states[0] if states else None,
        "tracking_mean_ms": float(np.mean([t for t, s in zip(times, states) if s == "TRACKING"][1:] or [np.nan])),
        "input": str(source.path),
        "description": description,
        "frames": len(rows),
        "skipped_frames": skipped,
        "tracked_frames": len(tracked),
        "mean_ms": float(np.mean(times)) if times else float("nan"),
        "video": str(final_dir / "track.mp4") if writer is not None else None,
        "per_frame": rows,
    }
    (out_dir / "track.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _row(frame: int, result: TrackResult) -> dict:
    x, y, w, h = result.box if result.box is not None else ("", "", "", "")
    return {
        "frame": frame, "state": result.state.name,
        "x": _num(x), "y": _num(y), "w": _num(w), "h": _num(h),
        "confidence": round(result.confidence, 4),
        "similarity": None if math.isnan(result.similarity) else round(result.similarity, 4),
        "frames_since_seen": result.frames_since_seen,
        "processing_ms": round(result.processing_ms, 3),
    }


def _num(v: float | str) -> float | str:
    return round(float(v), 2) if v != "" else ""
