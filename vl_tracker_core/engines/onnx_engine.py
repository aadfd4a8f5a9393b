"""onnxruntime backend: the exported graphs on the CPU, or on CUDA where onnxruntime-gpu provides it.

Does not import torch (unless the export folder has to be created first, see
``resolve.resolve_export_dir``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import ModuleType

import numpy as np

from vl_tracker_core.engines.artifacts import ExportError, load_manifest
from vl_tracker_core.engines.exported import ExportedEngine
from vl_tracker_core.engines.resolve import resolve_export_dir

log = logging.getLogger(__name__)


def import_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeError("the onnxruntime backend needs onnxruntime: pip install 'vl_tracker[onnx]' "
                           "(or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


class OnnxEngine(ExportedEngine):
    """``model``: an export folder, or a checkpoint folder (exported into the cache on first use);
    default: the shipped weights. ``device``: None (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    ``threads``: intra-op threads (None: onnxruntime's choice, one per physical core)."""

    name = "onnxruntime"

    def __init__(self, model: str | os.PathLike | None = None, device: str | None = None,
                 threads: int | None = None, verify: bool = True) -> None:
        ort = import_onnxruntime()
        # Check the device before any (possibly slow) export or loading.
        available = ort.get_available_providers()
        kind, _, index = (device or "").partition(":")
        if kind not in ("", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
            raise ValueError(f"device {device!r}: choose cpu, cuda or cuda:N")
        if kind == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"onnxruntime here has no CUDAExecutionProvider (providers: {available}); "
                               "install onnxruntime-gpu or use device='cpu'")
        use_cuda = kind == "cuda" or (not kind and "CUDAExecutionProvider" in available)
        cuda = [("CUDAExecutionProvider", {"device_id": int(index or 0)})] if use_cuda else []
        self.providers = [*cuda, "CPUExecutionProvider"]
        export_dir = resolve_export_dir(model)
        # Checking the files' sha256 costs ~0.2 s and catches a truncated or swapped graph.
        manifest = load_manifest(export_dir, verify_files=verify)
        super().__init__(export_dir, manifest)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        # Each graph has its own session and thread pool; threads that spin after a run take the cores from the
        # next graph (the tracker runs several per frame): on 2 cores that doubled every network's time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory patterns pre-plan one block per session and shape: seven sessions kept about 60 MB of peak RSS
        # that way in `vl-tracker bench`, for no speed.
        options.enable_mem_pattern = False
        self._sessions = {}
        self._outputs: dict[str, list[str]] = {}
        for graph, spec in manifest["graphs"].items():
            path = Path(export_dir) / spec["file"]
            try:
                session = ort.InferenceSession(str(path), options, providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
                raise ExportError(f"onnxruntime cannot load {path}: {exc}; re-run `vl-tracker export`") from None
            _check_io(session, spec, path)
            self._sessions[graph] = session
            self._outputs[graph] = [o["name"] for o in spec["outputs"]]
        log.info("onnxruntime engine from %s (providers %s)", export_dir, self.providers)

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._sessions[graph].run(self._outputs[graph], feeds)


def _check_io(session, spec: dict, path: Path) -> None:
    """The graph must take and give exactly what the manifest says (else it is from another export)."""
    got_in = {i.name: list(i.shape) for i in session.get_inputs()}
    got_out = {o.name: list(o.shape) for o in session.get_outputs()}
    want_in = {i["name"]: i["shape"] for i in spec["inputs"]}
    want_out = {o["name"]: o["shape"] for o in spec["outputs"]}
    if got_in != want_in or got_out != want_out:
        raise ExportError(f"{path} does not match its manifest (inputs {got_in}, outputs {got_out}; manifest says "
                          f"inputs {want_in}, outputs {want_out}); re-run `vl-tracker export`")
