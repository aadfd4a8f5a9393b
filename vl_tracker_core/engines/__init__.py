"""Inference backends behind one interface (see ``base.Engine``)."""

from __future__ import annotations

from pathlib import Path

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_engine(backend: str = "torch", model: str | Path | None = None, **options):
    """Build a backend. ``model`` is a checkpoint folder for torch (default: the shipped weights)."""
    if backend == "torch":
        from vl_tracker_core.engines.torch_engine import TorchEngine

        return TorchEngine(model, **options)
    raise ValueError(f"backend {backend!r} is not available; choose from {BACKENDS}")
