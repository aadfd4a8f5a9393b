"""What the onnxruntime and TensorRT backends share: an export folder, its tokenizer and the I/O packing.

Nothing here imports torch: a process running an exported model never loads it.
A subclass only provides ``_run(graph, feeds) -> outputs`` (in manifest order).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from vl_tracker_core.engines.artifacts import TOKENIZER_DIR, manifest_config
from vl_tracker_core.engines.base import (
    Matches,
    Proposals,
    TextFeatures,
    crops_to_nchw,
    image_to_nchw,
    matches_from_outputs,
    patches_to_nchw,
    proposals_from_outputs,
)
from vl_tracker_core.models.text import Tokenizer, clean_description


class ExportedEngine:
    """Engine interface over the exported graphs; subclasses run them."""

    name = "exported"
    #: descriptions whose token features are kept (the tracker asks once per description anyway)
    text_cache_size = 64

    def __init__(self, export_dir: Path, manifest: dict[str, Any]) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = manifest
        self.config = manifest_config(manifest)
        self.tokenizer = Tokenizer(self.export_dir / TOKENIZER_DIR, self.config.max_text_tokens)
        self._text_cache: OrderedDict[str, TextFeatures] = OrderedDict()
        # The trunk graphs by the (N, S, S) patches they take.
        self._trunks = {tuple(g["inputs"][0]["shape"][i] for i in (0, 2, 3)): name
                        for name, g in manifest["graphs"].items() if name.startswith("trunk_")}
        # Expected (H, W) of each image input, to turn a wrong crop size into a clear error.
        self._patch_shapes = {
            (graph, spec["name"]): tuple(spec["shape"][2:])
            for graph, g in manifest["graphs"].items() for spec in g["inputs"] if len(spec["shape"]) == 4
        }

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _patch(self, graph: str, input_name: str, patch: np.ndarray) -> np.ndarray:
        expected = self._patch_shapes[(graph, input_name)]
        if patch.shape[:2] != expected or patch.ndim != 3 or patch.shape[2] != 3:
            raise ValueError(f"{graph} graph: {input_name} patch has shape {patch.shape}, the exported graph takes "
                             f"{expected[0]}x{expected[1]}x3 uint8 (see the model config)")
        return image_to_nchw(patch)

    # ------------------------------------------------------------------ Engine interface
    def encode_text(self, description: str) -> TextFeatures:
        text = clean_description(description)
        cached = self._text_cache.get(text)
        if cached is not None:
            self._text_cache.move_to_end(text)
            return cached
        ids, mask = self.tokenizer([text])
        tokens = self._run("text", {"input_ids": ids, "attention_mask": mask})[0]
        features = TextFeatures(text, np.ascontiguousarray(tokens, dtype=np.float32), mask.astype(np.float32))
        self._text_cache[text] = features
        if len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return features

    def features(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        graph = self._trunks.get((patches.shape[0], *patches.shape[1:3])) if patches.ndim == 4 else None
        if graph is None or patches.shape[3] != 3:
            raise ValueError(f"trunk graphs: patches of shape {patches.shape}; the export takes (N, S, S, 3) uint8 "
                             f"with (N, S, S) one of {sorted(self._trunks)} (see the model config)")
        f8, f16 = self._run(graph, {"patches": patches_to_nchw(patches)})
        return f8, f16

    def propose(self, image: np.ndarray) -> Proposals:
        return proposals_from_outputs(*self._run("propose", {"image": self._patch("propose", "image", image)}))

    def match(self, text: TextFeatures, crops: np.ndarray, geometry: np.ndarray, cand_mask: np.ndarray,
              template_crop: np.ndarray) -> Matches:
        """K candidate crops through the ``match`` graph, or one (the verifier's box) through ``verify``."""
        k, c = self.config.candidates, self.config.candidate_size
        graph = "verify" if crops.ndim == 4 and crops.shape[0] == 1 else "match"
        n = 1 if graph == "verify" else k
        if crops.shape != (n, c, c, 3):
            raise ValueError(f"match graph: crops have shape {crops.shape}, the exported graphs take {k}x{c}x{c}x3 "
                             f"or 1x{c}x{c}x3 uint8 (see the model config)")
        feeds = {"text_tokens": text.tokens, "text_mask": text.mask, "crops": crops_to_nchw(crops),
                 "geometry": np.asarray(geometry, np.float32).reshape(1, n, -1),
                 "cand_mask": np.asarray(cand_mask, np.float32).reshape(1, n),
                 "template_crop": self._patch(graph, "template_crop", template_crop)}
        return matches_from_outputs(*self._run(graph, feeds))
