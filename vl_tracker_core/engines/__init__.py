"""Inference backends behind one interface (see ``base.Engine``).

- ``torch``: eager PyTorch (CPU/CUDA) on a checkpoint folder; the reference.
- ``onnxruntime``: the exported ONNX graphs (CPU, or the CUDA provider of onnxruntime-gpu).
- ``tensorrt``: TensorRT 10 engines built from the exported graphs and cached.

The last two take an export folder (``vl-tracker export``) or a checkpoint folder
(exported into ``$VL_TRACKER_CACHE/export/`` on first use) and never import torch
at run time.
"""

from __future__ import annotations

from pathlib import Path

from vl_tracker_core.engines.base import Engine

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_engine(backend: str = "torch", model: str | Path | None = None, **options) -> Engine:
    """Build a backend. ``model``: a checkpoint folder (torch), or a checkpoint or export folder
    (onnxruntime, tensorrt); default: the shipped weights. ``options`` go to the backend's constructor:
    torch ``device``, ``threads``; onnxruntime ``device``, ``threads``; tensorrt ``precision``,
    ``cache_dir``, ``device``, ``rebuild``."""
    if backend == "torch":
        from vl_tracker_core.engines.torch_engine import TorchEngine

        return TorchEngine(model, **options)
    if backend == "onnxruntime":
        from vl_tracker_core.engines.onnx_engine import OnnxEngine

        return OnnxEngine(model, **options)
    if backend == "tensorrt":
        from vl_tracker_core.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(model, **options)
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
