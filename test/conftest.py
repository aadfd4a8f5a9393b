"""Fixtures shared by several test modules: the shipped checkpoint and one ONNX export of it per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from vl_tracker_core.models.checkpoint import WEIGHTS, shipped_checkpoint_dir


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """The shipped weights (or, in a checkout without them, a random tiny model saved the same way)."""
    shipped = shipped_checkpoint_dir()
    if (shipped / WEIGHTS).is_file():
        return shipped
    import torch

    from vl_tracker_core.models.checkpoint import save_checkpoint
    from vl_tracker_core.models.config import preset
    from vl_tracker_core.models.network import JointVLNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("checkpoint")
    save_checkpoint(JointVLNet(preset("tiny")), folder, {})
    return folder


@pytest.fixture(scope="session")
def export_dir(checkpoint, tmp_path_factory) -> Path:
    """``checkpoint`` exported to ONNX once for the whole run (exporting takes a while)."""
    pytest.importorskip("onnxruntime")
    from vl_tracker_core.engines.export import export_model

    out = tmp_path_factory.mktemp("export") / "tiny"
    export_model(out, checkpoint)
    return out
