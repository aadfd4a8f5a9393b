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


def bench_one(kind: str, model_dir: Path | None, runs: int = 3, threads: int = 2, top_k: int = 10,
              exported: bool = False) -> dict[str, Any]:
    """Per-stage median milliseconds of one grounder. ``model_dir`` None: random weights at full size;
    ``exported``: those exported to ONNX first (``grounders.export``) and timed with onnxruntime. A
    ``model_dir`` that is an export folder is timed with onnxruntime too."""
    import tempfile

    import torch

    from vl_tracker_core.grounders.exported import ExportedOwlGrounder, is_grounder_export
    from vl_tracker_core.grounders.hf import TransformersGrounder
    from vl_tracker_core.grounders.random_models import random_detector

    torch.set_num_threads(threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vl-bench-grounder-") as tmp:
        if model_dir is None:
            model, processor = random_detector(kind, "base")
            source = "random weights, published base architecture"
            if exported:
                from vl_tracker_core.grounders.export import export_grounder

                export_grounder(kind, "(random)", Path(tmp) / "export", model=model, processor=processor,
                                say=lambda msg: None)
                grounder: Any = ExportedOwlGrounder(kind, Path(tmp) / "export", threads=threads)
                source += ", ONNX"
            else:
                grounder = TransformersGrounder.from_loaded(kind, model, processor)
        elif is_grounder_export(model_dir):
            grounder = ExportedOwlGrounder(kind, model_dir, threads=threads)
            source = f"{model_dir} (ONNX)"
        else:
            grounder = TransformersGrounder(kind, model_dir, threads=threads)
            source = str(model_dir)
        build_s = time.perf_counter() - start
        backend = "onnxruntime" if isinstance(grounder, ExportedOwlGrounder) else "torch"
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
    model = getattr(grounder, "model", None)
    parameters = sum(p.numel() for p in model.parameters()) / 1e6 if model is not None else None
    row = {"grounder": kind, "backend": backend, "weights": source, "parameters_m": parameters,
           "network_input": f"{pixels[1]}x{pixels[0]}", "build_s": build_s, "runs": runs, "threads": threads}
    row.update({f"{k}_ms": statistics.median(v) for k, v in times.items()})
    row["total_ms"] = row["prepare_ms"] + row["network_ms"] + row["decode_ms"]
    return row


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = ["| grounder | backend | weights | parameters | network input | prepare ms | network ms | decode ms "
             "| total ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = "" if r["parameters_m"] is None else f"{r['parameters_m']:.0f} M"
        lines.append(f"| {r['grounder']} | {r['backend']} | {r['weights']} | {params} | {r['network_input']} | "
                     f"{r['prepare_ms']:.0f} | {r['network_ms']:.0f} | {r['decode_ms']:.1f} | {r['total_ms']:.0f} |")
    return "\n".join(lines)
