"""Open-vocabulary detectors from transformers as grounders, loaded from a local folder (torch; offline).

OWLv2 / OWL-ViT: the description is the one text query; a box's score is the sigmoid of its class logit.
Grounding DINO: the description (lower case, ending with ".") is the caption; a box's score is its highest
token probability over the caption's words. Boxes come back in frame pixels, best first.

What was verified on the development machines: the loading and inference code, on tiny randomly
initialised models of each class built in the tests (README: Real cameras). Real-weight quality was not
measured here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vl_tracker_core.grounders.base import Detections, GrounderError
from vl_tracker_core.progress import quiet_transformers

#: grounder name -> (config.json model_type, transformers model class)
KINDS: dict[str, tuple[str, str]] = {
    "owlv2": ("owlv2", "Owlv2ForObjectDetection"),
    "owlvit": ("owlvit", "OwlViTForObjectDetection"),
    "grounding-dino": ("grounding-dino", "GroundingDinoForObjectDetection"),
}


def folder_model_type(model_dir: Path) -> str:
    """``model_type`` of a transformers model folder, with an error naming the folder when it has none."""
    if not model_dir.is_dir():
        raise GrounderError(f"grounder model folder {model_dir} does not exist")
    config = model_dir / "config.json"
    if not config.is_file():
        raise GrounderError(f"{model_dir} is not a transformers model folder (no config.json)")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GrounderError(f"cannot read {config}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise GrounderError(f"{config} names no model_type")
    return data["model_type"]


class TransformersGrounder:
    """One detector model on the CPU or a CUDA device."""

    def __init__(self, kind: str, model_dir: Path, device: str = "cpu", threads: int | None = None) -> None:
        if kind not in KINDS:
            raise GrounderError(f"unknown detector {kind!r}; choose from {', '.join(KINDS)}")
        self.name = kind
        self.model_dir = str(model_dir)
        expected, class_name = KINDS[kind]
        found = folder_model_type(Path(model_dir))
        if found != expected:
            raise GrounderError(f"{model_dir} holds a {found!r} model, not {kind} (model_type {expected!r}); "
                                "point the grounder at the folder of the model it names")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self.device = torch.device(device)
        try:
            self.processor = transformers.AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
        except Exception as exc:  # transformers raises many kinds for a broken tokenizer / processor file
            raise GrounderError(f"cannot load the processor (tokenizer, image processor) of {model_dir}: "
                                f"{type(exc).__name__}: {exc}") from None
        try:
            quiet_transformers()
            model = getattr(transformers, class_name).from_pretrained(str(model_dir), local_files_only=True)
        except Exception as exc:
            raise GrounderError(f"cannot load the {kind} weights of {model_dir}: {type(exc).__name__}: {exc}") from None
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def close(self) -> None:
        self.model = None

    @classmethod
    def from_loaded(cls, kind: str, model: Any, processor: Any, device: str = "cpu") -> TransformersGrounder:
        """A grounder around an already built model and processor (``random_models``: timing, tests)."""
        import torch

        self = cls.__new__(cls)
        self.name, self.model_dir = kind, "(in memory)"
        self._torch, self.device = torch, torch.device(device)
        self.processor, self.model = processor, model.eval().to(self.device)
        return self

    # ------------------------------------------------------------------ inference
    def detect(self, frame: np.ndarray, description: str, top_k: int) -> Detections:
        with self._torch.inference_mode():
            inputs = self.prepare(frame, description)
            out = self.forward(inputs)
            return self.decode(out, inputs, frame.shape[1], frame.shape[0], top_k)

    # The three stages of ``detect``, separate so that ``bench-grounders`` can time each.
    def prepare(self, frame: np.ndarray, description: str) -> dict[str, Any]:
        """The processor: resize / pad / normalise the frame, tokenise the description."""
        if self.name == "grounding-dino":
            caption = description.lower().strip()
            kwargs: dict[str, Any] = {"images": frame, "text": caption if caption.endswith(".") else caption + "."}
        else:
            kwargs = {"text": [[description]], "images": frame}
        inputs = self.processor(return_tensors="pt", **kwargs)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def forward(self, inputs: dict[str, Any]) -> Any:
        return self.model(**inputs)

    def decode(self, out: Any, inputs: dict[str, Any], width: int, height: int, top_k: int) -> Detections:
        """Scores and normalised boxes -> the best ``top_k`` boxes in frame pixels."""
        if self.name == "grounding-dino":
            ids = inputs["input_ids"][0]
            special = sorted(set(getattr(self.processor.tokenizer, "all_special_ids", []) or []))
            words = inputs["attention_mask"][0].bool() & ~self._torch.isin(
                ids, self._torch.tensor(special, dtype=ids.dtype, device=ids.device))
            if not bool(words.any()):
                words = inputs["attention_mask"][0].bool()
            probs = out.logits[0].sigmoid()[:, : len(ids)]  # (Q, caption tokens)
            scores = probs[:, words].amax(dim=-1)
            scale = (width, height)
        else:
            scores = out.logits[0].sigmoid().amax(dim=-1)  # (Q,): one text query
            scale = owl_box_scale(self.name, width, height)
        return _to_detections(out.pred_boxes[0].float().cpu().numpy(), scores.float().cpu().numpy(), scale,
                              width, height, top_k)


def owl_box_scale(kind: str, width: int, height: int) -> tuple[float, float]:
    """What the OWL models' normalised boxes are relative to: OWLv2 pads the frame to a square (bottom /
    right) before resizing, OWL-ViT resizes it."""
    side = max(width, height)
    return (side, side) if kind == "owlv2" else (width, height)


def _to_detections(centre_boxes: np.ndarray, scores: np.ndarray, scale: tuple[float, float], width: int,
                   height: int, top_k: int) -> Detections:
    """Normalised (cx, cy, w, h) -> frame (x, y, w, h), clipped; boxes under 2 px or not finite dropped."""
    cx, cy = centre_boxes[:, 0] * scale[0], centre_boxes[:, 1] * scale[1]
    w, h = centre_boxes[:, 2] * scale[0], centre_boxes[:, 3] * scale[1]
    x0, y0 = np.clip(cx - w / 2, 0, width), np.clip(cy - h / 2, 0, height)
    x1, y1 = np.clip(cx + w / 2, 0, width), np.clip(cy + h / 2, 0, height)
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).astype(np.float64)
    scores = np.asarray(scores, np.float64)
    keep = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (boxes[:, 2] >= 2) & (boxes[:, 3] >= 2)
    boxes, scores = boxes[keep], np.clip(scores[keep], 0.0, 1.0)
    order = np.argsort(-scores, kind="stable")[: max(0, top_k)]
    return Detections(boxes[order], scores[order])
