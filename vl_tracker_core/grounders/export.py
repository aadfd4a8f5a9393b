"""OWLv2 / OWL-ViT to ONNX: an image graph run on every grounding frame, a text graph run once per description.

The split follows the models' own structure (and NanoOWL's, which runs OWL-ViT's image side as a TensorRT
engine): everything that depends on the image -- the ViT, the box head, and the image half of the class
head -- is one graph; the text tower is another; what joins them is a dot product, done in numpy::

    image  pixel_values (1, 3, S, S) float32 -> class_embeds (1, P, D)  unit-length per patch
                                               logit_shift (1, P, 1), logit_scale (1, P, 1)
                                               pred_boxes (1, P, 4)    normalised cx, cy, w, h
    text   input_ids (1, L) int64, attention_mask (1, L) int64 -> query_embeds (1, D)  unit length

    score of patch p = sigmoid((class_embeds[p] . query_embeds + logit_shift[p]) * logit_scale[p])

which is exactly the transformers model's ``logits`` for one text query. Each graph is accepted only after
onnxruntime reproduced torch on an input other than the one it was traced with, and the whole pair is then
checked against the transformers model's own ``forward`` (scores and boxes), so that a wrong split fails
the export rather than the robot.

Grounding DINO is not exported: its text and image features are fused inside the encoder and decoder
(deformable attention), so there is no text-independent image graph, and transformers' implementation
does not trace to ONNX cleanly. It runs with torch.

The export folder holds ``grounder.json`` (written last: its presence marks a complete export), the two
graphs, and the processor's files (tokenizer, image-processor settings); ``--grounder owlv2 --grounder-model
EXPORT_DIR`` then runs the graphs with onnxruntime (``grounder_backend=tensorrt`` builds TensorRT engines
from them on a GPU).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vl_tracker_core.grounders.base import GrounderError

MANIFEST = "grounder.json"
FORMAT = "vl_tracker-grounder-onnx"
FORMAT_VERSION = 1
EXPORTABLE = ("owlv2", "owlvit")
IMAGE_OUTPUTS = ("class_embeds", "logit_shift", "logit_scale", "pred_boxes")
TEXT_OUTPUTS = ("query_embeds",)
_TRACE_TEXT = "the red ball"
_VERIFY_TEXT = "a person in a blue jacket"


def _modules(model: Any, kind: str):
    """(image graph, text graph) modules around a transformers OWL model."""
    import torch
    from torch import nn

    inner = model.owlv2 if kind == "owlv2" else model.owlvit

    class ImageGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor):
            feature_map = self.model.image_embedder(pixel_values=pixel_values)[0]
            b, h, w, d = feature_map.shape
            feats = feature_map.reshape(b, h * w, d)
            head = self.model.class_head
            cls = head.dense0(feats)
            cls = cls / (torch.linalg.norm(cls, dim=-1, keepdim=True) + 1e-6)
            shift = head.logit_shift(feats)
            scale = head.elu(head.logit_scale(feats)) + 1
            boxes = self.model.box_predictor(feats, feature_map)
            return cls, shift, scale, boxes

    class TextGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            pooled = self.inner.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
            query = self.inner.text_projection(pooled)
            return query / (torch.linalg.norm(query, dim=-1, keepdim=True) + 1e-6)

    return ImageGraph().eval(), TextGraph().eval()


def owl_scores(class_embeds: np.ndarray, logit_shift: np.ndarray, logit_scale: np.ndarray,
               query_embeds: np.ndarray) -> np.ndarray:
    """(P,) sigmoid scores of one text query over the image graph's patches."""
    logits = (class_embeds[0].astype(np.float64) @ query_embeds[0].astype(np.float64)
              + logit_shift[0, :, 0]) * logit_scale[0, :, 0]
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))


def _pixels(processor: Any, frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(processor(images=frame, return_tensors="np")["pixel_values"], dtype=np.float32)


def _tokens(processor: Any, description: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded (or cut) to the text graph's fixed length: the model's position-embedding count."""
    enc = processor(text=[[description]], return_tensors="np", padding="max_length", max_length=length,
                    truncation=True)
    return (np.ascontiguousarray(enc["input_ids"], dtype=np.int64),
            np.ascontiguousarray(enc["attention_mask"], dtype=np.int64))


def export_grounder(kind: str, model_dir: str | os.PathLike, out_dir: str | os.PathLike, opset: int = 17,
                    exporter: str = "auto", say=print, model: Any = None, processor: Any = None) -> dict[str, Any]:
    """Export the OWL detector in ``model_dir`` to ``out_dir``; returns the manifest. ``model``/``processor``:
    an already loaded pair instead (tests); ``model_dir`` is then only recorded."""
    import torch

    from vl_tracker_core.atomic import OutputDirError, replacing_dir
    from vl_tracker_core.engines.export import _export_one, _numpy, _spec, graph_opset
    from vl_tracker_core.hashing import sha256_file

    if kind not in EXPORTABLE:
        raise GrounderError(f"{kind} cannot be exported to ONNX (only {', '.join(EXPORTABLE)}): Grounding DINO "
                            "fuses text into its image encoder, so it runs with torch")
    try:
        import onnxruntime  # noqa: F401 - every graph is verified with it
    except ImportError:
        raise GrounderError("export needs onnx and onnxruntime: pip install 'vl_tracker[onnx]'") from None
    model_dir = Path(model_dir)
    if model is None:
        from vl_tracker_core.grounders.hf import TransformersGrounder

        loaded = TransformersGrounder(kind, model_dir)
        model, processor = loaded.model, loaded.processor
    out_dir = Path(out_dir)
    start = time.perf_counter()
    image_graph, text_graph = _modules(model, kind)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), rng.integers(0, 256, (360, 300, 3), np.uint8)]
    pixels = [torch.from_numpy(_pixels(processor, f)) for f in frames]
    length = int(model.config.text_config.max_position_embeddings)
    tokens = [[torch.from_numpy(a) for a in _tokens(processor, t, length)] for t in (_TRACE_TEXT, _VERIFY_TEXT)]
    try:
        with replacing_dir(out_dir, MANIFEST, "grounder export folder") as tmp:
            graphs: dict[str, Any] = {}
            jobs = [("image", image_graph, ("pixel_values",), IMAGE_OUTPUTS, [[p] for p in pixels]),
                    ("text", text_graph, ("input_ids", "attention_mask"), TEXT_OUTPUTS, tokens)]
            with torch.no_grad():
                for name, module, inputs, outputs, arg_sets in jobs:
                    path = tmp / f"{name}.onnx"
                    used, diffs = _export_one(module, path, inputs, outputs, arg_sets[0], arg_sets[::-1], opset,
                                              exporter)
                    sample = _numpy(module(*arg_sets[0]))
                    graphs[name] = {"file": path.name, "sha256": sha256_file(path),
                                    "inputs": _spec(inputs, [a.numpy() for a in arg_sets[0]]),
                                    "outputs": _spec(outputs, sample), "exporter": used, "opset": graph_opset(path),
                                    "max_abs_diff_vs_torch": diffs}
                    say(f"exported {name}.onnx ({used} exporter, {path.stat().st_size / 1e6:.1f} MB)")
                check = _check_against_model(model, tmp, processor, frames[1], _VERIFY_TEXT, length)
            processor.save_pretrained(str(tmp))
            weights = model_dir / "model.safetensors"
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                "source": str(model_dir.resolve()) if model_dir.exists() else str(model_dir),
                # cache key of TensorRT engines built from these graphs (engines.tensorrt_engine.cache_fields)
                "weights_sha256": sha256_file(weights) if weights.is_file() else graphs["image"]["sha256"],
                "text_length": length, "graphs": graphs, "check_against_model": check,
                "torch_version": torch.__version__, "created_unix": int(time.time()),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except OutputDirError as exc:
        raise GrounderError(str(exc)) from None
    say(f"{kind} export written to {out_dir} in {time.perf_counter() - start:.1f} s")
    return manifest


def _check_against_model(model: Any, folder: Path, processor: Any, frame: np.ndarray, text: str,
                         length: int) -> dict[str, float]:
    """The exported pair against the transformers model's own forward on one frame and description."""
    import torch

    from vl_tracker_core.engines.export import _onnxruntime_session

    pixels = _pixels(processor, frame)
    ids, mask = _tokens(processor, text, length)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                    pixel_values=torch.from_numpy(pixels))
    want_scores = out.logits[0, :, 0].sigmoid().double().numpy()
    want_boxes = out.pred_boxes[0].double().numpy()
    image = _onnxruntime_session(folder / "image.onnx").run(list(IMAGE_OUTPUTS), {"pixel_values": pixels})
    query = _onnxruntime_session(folder / "text.onnx").run(list(TEXT_OUTPUTS),
                                                           {"input_ids": ids, "attention_mask": mask})[0]
    scores = owl_scores(image[0], image[1], image[2], query)
    diffs = {"scores": float(np.abs(scores - want_scores).max()),
             "pred_boxes": float(np.abs(image[3][0] - want_boxes).max())}
    if diffs["scores"] > 1e-3 or diffs["pred_boxes"] > 1e-3:
        raise GrounderError(f"the exported graphs do not reproduce the transformers model: {diffs}")
    return diffs
