"""``vl-tracker bench-grounders``: per-stage latency of each open-vocabulary grounder on this machine.

Without ``--grounder-model`` the published architectures are built at full size with random weights
(``random_models``), so the timing is that of the real networks while the boxes are noise.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

DESCRIPTION = "the person in the red jacket"


def _frame(width: int = 640, height: int = 480) -> np.ndarray:
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene

    return SyntheticScene(7, 1, SceneConfig(width=width, height=height)).render(0)


def bench_one(kind: str, model_dir: Path | None, runs: int = 3, threads: int = 2, top_k: int = 10) -> dict[str, Any]:
    import torch

    from vl_tracker_core.grounders.hf import TransformersGrounder
    from vl_tracker_core.grounders.random_models import random_detector

    torch.set_num_threads(threads)
    start = time.perf_counter()
    if model_dir is None:
        model, processor = random_detector(kind, "base")
        grounder = TransformersGrounder.from_loaded(kind, model, processor)
        source = "random weights, published base architecture"
    else:
        grounder = TransformersGrounder(kind, model_dir, threads=threads)
        source = str(model_dir)
    build_s = time.perf_counter() - start
    frame = _frame()
    times: dict[str, list[float]] = {"prepare": [], "network": [], "decode": []}
    with torch.inference_mode():
        inputs = grounder.prepare(frame, DESCRIPTION)
        grounder.decode(grounder.forward(inputs), inputs, frame.shape[1], frame.shape[0], top_k)  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            inputs = grounder.prepare(frame, DESCRIPTION)
            t1 = time.perf_counter()
            out = grounder.forward(inputs)
            t2 = time.perf_counter()
            grounder.decode(out, inputs, frame.shape[1], frame.shape[0], top_k)
            t3 = time.perf_counter()
            for key, value in (("prepare", t1 - t0), ("network", t2 - t1), ("decode", t3 - t2)):
                times[key].append(value * 1000.0)
    pixels = inputs["pixel_values"].shape[-2:]
    parameters = sum(p.numel() for p in grounder.model.parameters()) / 1e6
    row = {"grounder": kind, "weights": source, "parameters_m": parameters,
           "network_input": f"{pixels[1]}x{pixels[0]}", "build_s": build_s, "runs": runs, "threads": threads}
    row.update({f"{k}_ms": statistics.median(v) for k, v in times.items()})
    row["total_ms"] = row["prepare_ms"] + row["network_ms"] + row["decode_ms"]
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["| grounder | weights | parameters | network input | prepare ms | network ms | decode ms | total ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['grounder']} | {r['weights']} | {r['parameters_m']:.0f} M | {r['network_input']} | "
                     f"{r['prepare_ms']:.0f} | {r['network_ms']:.0f} | {r['decode_ms']:.1f} | {r['total_ms']:.0f} |")
    return "\n".join(lines)
