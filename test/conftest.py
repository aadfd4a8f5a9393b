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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line saying what was skipped and why, grouped by what is missing (README: "Tests")."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    groups: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if "shared" in reason:
            key = "../shared/data is not beside the checkout"
        elif "rclpy" in reason or "ROS 2" in reason:
            key = "ROS 2 (rclpy) is not installed or sourced"
        else:
            key = reason
        groups[key] = groups.get(key, 0) + 1
    parts = [f"{n} because {why}" for why, n in sorted(groups.items(), key=lambda kv: -kv[1])]
    terminalreporter.write_line(f"vl_tracker: {len(skipped)} skipped: " + "; ".join(parts))
