"""An exported OWLv2 / OWL-ViT (``grounders.export``) run with onnxruntime or TensorRT instead of torch.

The processor saved beside the graphs does the resizing, padding and tokenising (transformers, numpy
tensors); the image graph runs on every grounding frame, the text graph once per description (its result
is kept for the last few descriptions), and the scores are joined in numpy (``export.owl_scores``).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vl_tracker_core.grounders.base import Detections, GrounderError
from vl_tracker_core.grounders.export import (
    FORMAT,
    FORMAT_VERSION,
    IMAGE_OUTPUTS,
    MANIFEST,
    TEXT_OUTPUTS,
    _pixels,
    _tokens,
    owl_scores,
)
from vl_tracker_core.grounders.hf import _to_detections, owl_box_scale

BACKENDS = ("onnxruntime", "tensorrt")
_TEXT_CACHE = 8


def is_grounder_export(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def load_grounder_manifest(folder: Path, kind: str) -> dict[str, Any]:
    """The export's manifest, checked: format, kind, and each graph file against its recorded sha256."""
    from vl_tracker_core.hashing import sha256_file

    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GrounderError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GrounderError(f"{path} is not a vl_tracker grounder export")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GrounderError(f"{path} has format version {manifest.get('format_version')!r}; this vl_tracker reads "
                            f"{FORMAT_VERSION}: export the detector again (vl-tracker export-grounder)")
    if manifest.get("kind") != kind:
        raise GrounderError(f"{folder} holds an exported {manifest.get('kind')!r} detector, not {kind}")
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or set(graphs) != {"image", "text"} or not isinstance(
            manifest.get("text_length"), int):
        raise GrounderError(f"{path} does not list the image and text graphs")
    for name, spec in graphs.items():
        file = folder / str(spec.get("file", ""))
        if not file.is_file():
            raise GrounderError(f"{folder}: the {name} graph {file.name} is missing")
        if sha256_file(file) != spec.get("sha256"):
            raise GrounderError(f"{file} is corrupt or was changed (its sha256 does not match {MANIFEST})")
    return manifest


class ExportedOwlGrounder:
    """``backend``: onnxruntime (CPU, or CUDA when its GPU package is installed) or tensorrt (GPU).
    ``precision`` (TensorRT): fp16 or fp32 for the image graph; the text graph is always fp32."""

    def __init__(self, kind: str, folder: Path, backend: str = "onnxruntime", threads: int | None = None,
                 precision: str = "fp16", cache_dir: str | os.PathLike | None = None) -> None:
        if backend not in BACKENDS:
            raise GrounderError(f"grounder backend {backend!r}: choose from {', '.join(BACKENDS)}")
        self.name, self.model_dir, self.backend = kind, str(folder), backend
        self.manifest = load_grounder_manifest(folder, kind)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers

        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds for a broken tokenizer / processor file
            raise GrounderError(f"cannot load the processor (tokenizer, image processor) of {folder}: "
                                f"{type(exc).__name__}: {exc}") from None
        graphs = self.manifest["graphs"]
        try:
            if backend == "onnxruntime":
                self._runners = {name: _OrtRunner(folder / spec["file"], spec, threads)
                                 for name, spec in graphs.items()}
            else:
                self._runners = _tensorrt_runners(folder, self.manifest, precision, cache_dir)
        except GrounderError:
            raise
        except Exception as exc:  # onnxruntime / TensorRT refusing a graph
            raise GrounderError(f"cannot load the graphs of {folder} with {backend}: {type(exc).__name__}: "
                                f"{str(exc)[:300]}") from None
        self._text: OrderedDict[str, np.ndarray] = OrderedDict()

    def close(self) -> None:
        self._runners = {}

    # ------------------------------------------------------------------ inference (the stages of bench)
    def detect(self, frame: np.ndarray, description: str, top_k: int) -> Detections:
        inputs = self.prepare(frame, description)
        return self.decode(self.forward(inputs), inputs, frame.shape[1], frame.shape[0], top_k)

    def prepare(self, frame: np.ndarray, description: str) -> dict[str, Any]:
        return {"pixel_values": _pixels(self.processor, frame), "description": description}

    def query(self, description: str) -> np.ndarray:
        """(1, D) unit text embedding, from the text graph once per description."""
        if description in self._text:
            self._text.move_to_end(description)
            return self._text[description]
        ids, mask = _tokens(self.processor, description, int(self.manifest["text_length"]))
        query = self._runners["text"].run({"input_ids": ids, "attention_mask": mask})[0]
        self._text[description] = query
        while len(self._text) > _TEXT_CACHE:
            self._text.popitem(last=False)
        return query

    def forward(self, inputs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        cls, shift, scale, boxes = self._runners["image"].run({"pixel_values": inputs["pixel_values"]})
        return owl_scores(cls, shift, scale, self.query(inputs["description"])), boxes[0]

    def decode(self, out: tuple[np.ndarray, np.ndarray], inputs: dict[str, Any], width: int, height: int,
               top_k: int) -> Detections:
        scores, boxes = out
        return _to_detections(boxes.astype(np.float64), scores, owl_box_scale(self.name, width, height), width,
                              height, top_k)


class _OrtRunner:
    def __init__(self, path: Path, spec: dict[str, Any], threads: int | None) -> None:
        from vl_tracker_core.engines.onnx_engine import import_onnxruntime

        ort = import_onnxruntime()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.outputs = [o["name"] for o in spec["outputs"]]
        want = [i["name"] for i in spec["inputs"]]
        got = [i.name for i in self.session.get_inputs()]
        if got != want:
            raise GrounderError(f"{path} takes inputs {got}, its manifest says {want}")

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.outputs, feeds)


def _tensorrt_runners(folder: Path, manifest: dict[str, Any], precision: str,
                      cache_dir: str | os.PathLike | None) -> dict[str, Any]:
    """TensorRT engines for the two graphs, built on first use and cached like the tracker's own
    (``engines.tensorrt_engine``: the key holds the graph's sha256, TensorRT's version and the GPU)."""
    from vl_tracker_core.engines import tensorrt_engine as te

    trt = te.import_tensorrt()
    memory = te.device_memory(0, "auto")
    logger = te._trt_logger(trt)
    runtime = trt.Runtime(logger)
    cache = Path(cache_dir) if cache_dir is not None else te.default_cache_dir() / "grounders"
    runners = {}
    for name, spec in manifest["graphs"].items():
        fields = te.cache_fields(manifest, name, trt.__version__, memory.gpu_name(), precision)
        fields["grounder"] = manifest["kind"]
        entry = te.CacheEntry.for_fields(cache, fields)

        def deserialize(blob: bytes, spec=spec) -> Any | None:
            engine = runtime.deserialize_cuda_engine(blob)
            if engine is None or te.io_mismatch(te._engine_io(trt, engine), spec):
                return None
            return engine

        engine = te.obtain_engine(
            entry, fields,
            build=lambda p=folder / spec["file"], f=fields: te.build_serialized_engine(trt, logger, p, f["precision"]),
            deserialize=deserialize)
        runners[name] = te._GraphRunner(trt, engine, memory, spec)
    return runners


__all__ = ["BACKENDS", "ExportedOwlGrounder", "IMAGE_OUTPUTS", "TEXT_OUTPUTS", "is_grounder_export"]
