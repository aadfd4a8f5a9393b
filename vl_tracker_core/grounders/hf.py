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
            model = getattr(transformers, class_name).from_pretrained(str(model_dir), local_files_only=True)
        except Exception as exc:
            raise GrounderError(f"cannot load the {kind} weights of {model_dir}: {type(exc).__name__}: {exc}") from None
        self.model = model.eval().to(self.device)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def close(self) -> None:
        self.model = None

    # ------------------------------------------------------------------ inference
    def detect(self, frame: np.ndarray, description: str, top_k: int) -> Detections:
        height, width = frame.shape[:2]
        with self._torch.inference_mode():
            if self.name == "grounding-dino":
                centre_boxes, scores = self._grounding_dino(frame, description)
                scale = (width, height)
            else:
                centre_boxes, scores = self._owl(frame, description)
                # OWLv2 pads the frame to a square (bottom / right) before resizing; OWL-ViT resizes it.
                side = max(width, height)
                scale = (side, side) if self.name == "owlv2" else (width, height)
        return _to_detections(centre_boxes, scores, scale, width, height, top_k)

    def _inputs(self, **kwargs: Any) -> dict[str, Any]:
        inputs = self.processor(return_tensors="pt", **kwargs)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def _owl(self, frame: np.ndarray, description: str) -> tuple[np.ndarray, np.ndarray]:
        inputs = self._inputs(text=[[description]], images=frame)
        out = self.model(**inputs)
        scores = out.logits[0].sigmoid().amax(dim=-1)  # (Q,): one text query
        return out.pred_boxes[0].float().cpu().numpy(), scores.float().cpu().numpy()

    def _grounding_dino(self, frame: np.ndarray, description: str) -> tuple[np.ndarray, np.ndarray]:
        caption = description.lower().strip()
        if not caption.endswith("."):
            caption += "."
        inputs = self._inputs(images=frame, text=caption)
        out = self.model(**inputs)
        ids = inputs["input_ids"][0]
        special = set(getattr(self.processor.tokenizer, "all_special_ids", []) or [])
        words = inputs["attention_mask"][0].bool() & ~self._torch.isin(ids, self._torch.tensor(
            sorted(special), dtype=ids.dtype, device=ids.device))
        probs = out.logits[0].sigmoid()[:, : len(ids)]  # (Q, caption tokens)
        if not bool(words.any()):
            words = inputs["attention_mask"][0].bool()
        scores = probs[:, words].amax(dim=-1)
        return out.pred_boxes[0].float().cpu().numpy(), scores.float().cpu().numpy()


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
