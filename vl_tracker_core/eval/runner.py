"""Run a tracker over a dataset and score it.

Files written into ``OUT`` (pytracking style, so other tools can read them):

- ``results/<seq>.txt``: one ``x,y,w,h`` line per frame, ``nan,nan,nan,nan``
  where the tracker reported no box;
- ``results/<seq>_state.txt``: a ``#`` header, then ``state,confidence,similarity,processing_ms``
  per frame;
- ``report.json`` / ``report.md``: overall and per-sequence metrics;
- ``success.png`` / ``precision.png``.

Scoring reads the result files back, so ``score_results`` also scores results
produced elsewhere (another machine's shard, or another tracker's output).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vl_tracker_core.atomic import replacing_dir, write_text_atomic
from vl_tracker_core.data.readers import load_dataset
from vl_tracker_core.data.sequence import FrameReadError, Sequence
from vl_tracker_core.eval import metrics as M
from vl_tracker_core.progress import progress as progress_bar
from vl_tracker_core.trackers.base import Tracker, TrackResult, TrackState

log = logging.getLogger(__name__)

INIT_MODES = ("auto", "nl", "bb", "nl+bb")
STATE_HEADER = "# state,confidence,similarity,processing_ms"


@dataclass
class SequenceRun:
    """Per-frame output of one tracker on one sequence."""

    name: str
    boxes: np.ndarray  # (N, 4) xywh, NaN rows where no box
    states: list[str]
    confidence: np.ndarray  # (N,)
    similarity: np.ndarray  # (N,)
    processing_ms: np.ndarray  # (N,)
    errors: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        total = float(np.nansum(self.processing_ms))
        return len(self.processing_ms) / (total / 1000.0) if total > 0 else float("nan")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    if not text:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def select_shard(sequences: list[Sequence], shard: tuple[int, int] | None) -> list[Sequence]:
    ordered = sorted(sequences, key=lambda s: s.name)
    if shard is None:
        return ordered
    index, count = shard
    return [s for k, s in enumerate(ordered) if k % count == index]


def _first_frame_init(tracker: Tracker, seq: Sequence, init: str) -> tuple[str | None, tuple | None]:
    """Decide what the tracker is started from: the description, the first GT box, or both."""
    mode = init
    if mode == "auto":
        mode = "nl+bb" if tracker.needs_init_box else "nl"
    description = seq.description if "nl" in mode else None
    box = None
    if "bb" in mode:
        first = seq.gt[0]
        if not (seq.visible[0] and np.all(np.isfinite(first)) and first[2] > 0 and first[3] > 0):
            raise ValueError(f"sequence {seq.name}: no valid ground-truth box on frame 1 to initialise from")
        box = tuple(float(v) for v in first)
    if "nl" in mode and not (description or "").strip() and box is None:
        raise ValueError(f"sequence {seq.name}: empty description and no box: nothing to initialise from")
    return description, box


def run_sequence(tracker: Tracker, seq: Sequence, init: str = "auto") -> SequenceRun:
    """Initialise on frame 1 and track the rest; unreadable frames become 'no box' and are reported."""
    if init not in INIT_MODES:
        raise ValueError(f"init mode {init!r} unknown; choose from {INIT_MODES}")
    n = len(seq)
    if n == 0:
        raise ValueError(f"sequence {seq.name} has no frames")
    boxes = np.full((n, 4), np.nan)
    confidence = np.zeros(n)
    similarity = np.full(n, np.nan)
    processing = np.zeros(n)
    states = ["IDLE"] * n
    errors: list[str] = []
    description, box = _first_frame_init(tracker, seq, init)

    def record(i: int, result: TrackResult, wall_ms: float) -> None:
        states[i] = result.state.name
        confidence[i] = result.confidence
        similarity[i] = result.similarity
        processing[i] = wall_ms
        if result.state == TrackState.TRACKING and result.box is not None:
            boxes[i] = result.box

    first = seq.read_frame(0)  # an unreadable first frame fails the sequence: there is nothing to start from
    start = time.perf_counter()
    result = tracker.initialize(first, description=description, box=box)
    record(0, result, (time.perf_counter() - start) * 1000.0)
    for i in range(1, n):
        try:
            frame = seq.read_frame(i)
        except FrameReadError as exc:
            errors.append(f"frame {i + 1}: {exc}")
            log.warning("%s: %s (scored as no box)", seq.name, exc)
            continue
        start = time.perf_counter()
        result = tracker.track(frame)
        record(i, result, (time.perf_counter() - start) * 1000.0)
    return SequenceRun(seq.name, boxes, states, confidence, similarity, processing, errors)


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.2f}"


def write_run(run: SequenceRun, results_dir: Path) -> None:
    box_lines = [",".join(_fmt(v) for v in row) for row in run.boxes]
    write_text_atomic(results_dir / f"{run.name}.txt", "\n".join(box_lines) + "\n")
    state_lines = [STATE_HEADER] + [
        f"{s},{c:.4f},{'nan' if math.isnan(m) else f'{m:.4f}'},{t:.3f}"
        for s, c, m, t in zip(run.states, run.confidence, run.similarity, run.processing_ms)
    ]
    write_text_atomic(results_dir / f"{run.name}_state.txt", "\n".join(state_lines) + "\n")


def read_run(results_dir: Path, name: str) -> SequenceRun:
    """Read back ``<name>.txt`` (and ``<name>_state.txt`` when present) from a results folder."""
    box_file = results_dir / f"{name}.txt"
    if not box_file.is_file():
        raise FileNotFoundError(f"no results for sequence {name}: {box_file} is missing")
    rows = []
    for lineno, line in enumerate(box_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace("\t", ",").replace(" ", ",").split(",")
        try:
            rows.append([float(p) for p in parts if p][:4])
        except ValueError:
            raise ValueError(f"{box_file}:{lineno}: not four numbers: {line!r}") from None
        if len(rows[-1]) != 4:
            raise ValueError(f"{box_file}:{lineno}: expected x,y,w,h, got {line!r}")
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    state_file = results_dir / f"{name}_state.txt"
    states, conf, sim, ms = ["TRACKING"] * n, np.ones(n), np.full(n, np.nan), np.zeros(n)
    # A results file without confidences (e.g. another toolkit's) counts every box as confident.
    conf[np.isnan(boxes).any(axis=1)] = 0.0
    if state_file.is_file():
        lines = [ln for ln in state_file.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        if len(lines) != n:
            raise ValueError(f"{state_file}: {len(lines)} rows for {n} boxes")
        for i, line in enumerate(lines):
            s, c, m, t = line.split(",")
            states[i], conf[i], sim[i], ms[i] = s, float(c), float(m), float(t)
    return SequenceRun(name, boxes, states, conf, sim, ms)


def score_runs(runs: list[SequenceRun], sequences: dict[str, Sequence]) -> dict:
    """Metrics for the whole set, per sequence, and for the sequences with out-of-view events."""
    inputs, per_seq, totals = [], {}, {}
    roc_scores: list[np.ndarray] = []
    roc_labels: list[np.ndarray] = []
    first_ious: list[float] = []
    for run in runs:
        seq = sequences[run.name]
        n = min(len(seq.gt), len(run.boxes))
        if len(run.boxes) != len(seq.gt):
            log.warning("%s: %d predictions for %d ground-truth frames; scoring the first %d", run.name,
                        len(run.boxes), len(seq.gt), n)
        m = M.evaluate_sequence(run.boxes[:n], seq.gt[:n], seq.visible[:n], run.confidence[:n], name=run.name)
        inputs.append(m)
        counts = M.reacquisition_counts(m)
        # Confidence should be high exactly when the target is there and the reported box is on it.
        roc_scores.append(run.confidence[:n])
        roc_labels.append(np.nan_to_num(m.iou, nan=0.0) > 0.5)
        # For trackers started from language: was the described object found on the first frame?
        first_iou = float(np.nan_to_num(m.iou[0], nan=0.0)) if seq.visible[0] else float("nan")
        first_ious.append(first_iou)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        per_seq[run.name] = {
            "frames": n, "auc": m.auc, "precision": m.precision, "norm_precision": m.norm_precision,
            "op50": m.op50, "first_frame_iou": first_ious[-1], "lt_precision": m.lt_precision,
            "lt_recall": m.lt_recall, "fps": run.fps,
            "out_of_view_events": seq.out_of_view_events, "frame_errors": len(run.errors), **counts,
        }
    report: dict = {"sequences": len(runs)}
    if not runs:
        return report
    overall = M.evaluate_dataset(inputs)
    total_ms = float(sum(np.nansum(r.processing_ms) for r in runs))
    frames = int(sum(len(r.processing_ms) for r in runs))
    report.update(_summary(overall))
    report["fps"] = frames / (total_ms / 1000.0) if total_ms > 0 else float("nan")
    report["frames"] = frames
    # Share of reappearances re-acquired within 15 frames, and of absent frames with a (false) box.
    report["reacquisition_rate"] = (totals["reacquired"] / totals["reappearances"]
                                    if totals.get("reappearances") else float("nan"))
    report["false_box_rate"] = (totals["false_boxes"] / totals["absent_frames"]
                                if totals.get("absent_frames") else float("nan"))
    report.update({f"total_{k}": v for k, v in totals.items()})
    report["confidence_roc_auc"] = M.roc_auc(np.concatenate(roc_scores), np.concatenate(roc_labels))
    firsts = np.array([v for v in first_ious if not np.isnan(v)])
    report["first_frame_success"] = float((firsts > 0.5).mean()) if len(firsts) else float("nan")
    report["curves"] = {
        "success": list(map(float, overall.success_curve)),
        "precision": list(map(float, overall.precision_curve)),
        "norm_precision": list(map(float, overall.norm_precision_curve)),
    }
    oov = [inp for inp, run in zip(inputs, runs) if sequences[run.name].out_of_view_events > 0]
    if oov and len(oov) < len(inputs):
        report["out_of_view_subset"] = {"sequences": len(oov), **_summary(M.evaluate_dataset(oov))}
    report["per_sequence"] = per_seq
    report["_metrics"] = overall  # kept in memory for plots; not serialised
    return report


def _summary(m: M.DatasetMetrics) -> dict:
    return {k: float(getattr(m, k)) for k in
            ("auc", "precision", "norm_precision", "op50", "op75", "lt_precision", "lt_recall", "lt_f",
             "lt_threshold")}


def write_report(report: dict, out_dir: Path, title: str) -> None:
    from vl_tracker_core.eval.plots import plot_curves

    serialisable = {k: v for k, v in report.items() if not k.startswith("_")}
    write_text_atomic(out_dir / "report.json", json.dumps(serialisable, indent=2, allow_nan=True) + "\n")
    write_text_atomic(out_dir / "report.md", format_markdown(serialisable, title))
    if "_metrics" in report:
        plot_curves({title: report["_metrics"]}, out_dir)


def format_markdown(report: dict, title: str) -> str:
    lines = [f"# {title}", ""]
    if not report.get("sequences"):
        return "\n".join(lines + ["No sequence was evaluated.", ""])
    lines += [
        "| sequences | frames | AUC | P@20 | NP@0.20 | OP50 | OP75 | LT-Pr | LT-Re | LT-F | re-acq@15 | false-box "
        "| fps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| {sequences} | {frames} | {auc:.3f} | {precision:.3f} | {norm_precision:.3f} | {op50:.3f} | {op75:.3f} | "
        "{lt_precision:.3f} | {lt_recall:.3f} | {lt_f:.3f} | {reacquisition_rate:.3f} | {false_box_rate:.3f} | "
        "{fps:.1f} |".format(**report),
        "",
    ]
    if "out_of_view_subset" in report:
        s = report["out_of_view_subset"]
        lines += [f"Sequences with out-of-view events ({s['sequences']}): AUC {s['auc']:.3f}, "
                  f"P@20 {s['precision']:.3f}, LT-F {s['lt_f']:.3f}", ""]
    if report.get("errors"):
        lines += ["## Errors", ""] + [f"- {e}" for e in report["errors"]] + [""]
    lines += ["## Per sequence", "", "| sequence | frames | AUC | P@20 | NP | LT-Pr | LT-Re | fps |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in sorted(report.get("per_sequence", {}).items()):
        lines.append(f"| {name} | {s['frames']} | {s['auc']:.3f} | {s['precision']:.3f} | {s['norm_precision']:.3f}"
                     f" | {s['lt_precision']:.3f} | {s['lt_recall']:.3f} | {s['fps']:.1f} |")
    return "\n".join(lines) + "\n"


def evaluate(
    make_tracker: Callable[[], Tracker],
    dataset: Path | Iterable[Sequence],
    out_dir: Path,
    *,
    title: str,
    init: str = "auto",
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    split: str | None = None,
    descriptions: dict[str, str] | None = None,
) -> dict:
    """Run a fresh tracker per sequence, write results, score, and write the report.

    A sequence that cannot be loaded or run is listed under ``errors`` in the
    report; the rest of the dataset is still evaluated. ``split`` keeps only the
    members of a named split (``vl_tracker_core.data.splits``); ``descriptions``
    fill in sentences where a sequence has none (the report lists which).
    """
    errors: list[str] = []
    if isinstance(dataset, (str, Path)):
        sequences, load_errors = load_dataset(Path(dataset))
        errors.extend(load_errors)
    else:
        sequences = list(dataset)
    filled: list[str] = []
    if split is not None or descriptions:
        from vl_tracker_core.data.splits import apply_split

        sequences, filled = apply_split(sequences, split, descriptions)
    chosen = select_shard(sequences, shard)
    # Everything is written into a staging folder and swapped in at the end: OUT is the previous complete
    # evaluation or this one, whenever the run is stopped.
    with replacing_dir(out_dir, "report.json", "evaluation output") as staging:
        report = _evaluate_into(staging, make_tracker, chosen, errors, title=title, init=init, shard=shard,
                                progress=progress, split=split, filled=filled)
    return report


def _evaluate_into(out_dir: Path, make_tracker: Callable[[], Tracker], chosen: list[Sequence], errors: list[str],
                   *, title: str, init: str, shard: tuple[int, int] | None, progress: bool, split: str | None,
                   filled: list[str]) -> dict:
    results_dir = out_dir / "results"
    runs: list[SequenceRun] = []
    frames_total = sum(len(s) for s in chosen)
    with progress_bar(total=frames_total, desc=title, unit="frame", enabled=progress) as bar:
        for seq in chosen:
            try:
                run = run_sequence(make_tracker(), seq, init=init)
            except Exception as exc:  # one bad sequence must not stop the evaluation
                errors.append(f"{seq.name}: {exc}")
                log.error("%s failed: %s", seq.name, exc)
                bar.update(len(seq))
                continue
            errors.extend(f"{seq.name}: {e}" for e in run.errors)
            write_run(run, results_dir)
            runs.append(run)
            bar.update(len(seq))
    report = score_runs(runs, {s.name: s for s in chosen})
    report.update({"title": title, "init": init, "shard": f"{shard[0]}/{shard[1]}" if shard else None,
                   "split": split, "descriptions_filled_in": filled, "errors": errors})
    write_report(report, out_dir, title)
    return report


def score_results(results_dirs: list[Path], dataset: Path, out_dir: Path, title: str) -> dict:
    """Score existing result files (e.g. the shards of several machines) against a dataset."""
    sequences, errors = load_dataset(Path(dataset))
    by_name = {s.name: s for s in sequences}
    runs = []
    for name in sorted(by_name):
        found = [d for d in results_dirs if (d / f"{name}.txt").is_file()]
        if not found:
            errors.append(f"{name}: no results in {', '.join(map(str, results_dirs))}")
            continue
        try:
            runs.append(read_run(found[0], name))
        except (ValueError, FileNotFoundError) as exc:
            errors.append(str(exc))
    report = score_runs(runs, by_name)
    report.update({"title": title, "errors": errors})
    out = Path(out_dir).resolve()
    if any(out == d.resolve() or out in d.resolve().parents for d in results_dirs):
        write_report(report, out_dir, title)  # the inputs live inside OUT: add the report file by file
    else:
        with replacing_dir(out_dir, "report.json", "evaluation output") as staging:
            write_report(report, staging, title)
    return report
