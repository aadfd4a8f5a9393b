"""PyTorch eager backend (CPU or CUDA); also the reference the other backends are checked against."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

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
from vl_tracker_core.models.checkpoint import load_checkpoint
from vl_tracker_core.models.network import JointVLNet, MatchGraph, ProposeGraph, TrunkGraph
from vl_tracker_core.models.text import TextEncoder, clean_description


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every Conv2d followed by batch norm (inside a Sequential) into the conv, using its running
    statistics: same outputs in eval mode, fewer ops. Works in place; fold a copy."""
    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, conv.groups, bias=True)
                fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
                bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused.bias.data = (bias - bn.running_mean) * scale + bn.bias
                module[i] = fused
                module[i + 1] = nn.Identity()
    return module


class TorchEngine:
    name = "torch"

    def __init__(self, model: str | Path | JointVLNet | None = None, device: str | None = None,
                 threads: int | None = None, text_encoder: TextEncoder | None = None) -> None:
        """``model``: a checkpoint folder (default: the shipped weights) or a network in memory (training's
        validation runs the tracker through this engine)."""
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, JointVLNet):
            net, self.card = model, {}
        else:
            net, self.card = load_checkpoint(model, device="cpu")
        self.config = net.config
        with torch.no_grad():
            self.net = fold_batchnorm(copy.deepcopy(net).cpu().eval()).to(self.device).eval()
        self._trunk = TrunkGraph(self.net)
        self._propose = ProposeGraph(self.net)
        self._match = MatchGraph(self.net)
        self.text_encoder = text_encoder or TextEncoder(self.config.text_encoder, self.config.max_text_tokens)

    def encode_text(self, description: str) -> TextFeatures:
        text = clean_description(description)
        tokens, mask = self.text_encoder.encode([text])
        return TextFeatures(text, tokens, mask)

    def _t(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @torch.inference_mode()
    def features(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f8, f16 = self._trunk(self._t(patches_to_nchw(patches)))
        return f8.cpu().numpy(), f16.cpu().numpy()

    @torch.inference_mode()
    def propose(self, image: np.ndarray) -> Proposals:
        out = self._propose(self._t(image_to_nchw(image)))
        return proposals_from_outputs(*(o.cpu().numpy() for o in out))

    @torch.inference_mode()
    def match(self, text: TextFeatures, crops: np.ndarray, geometry: np.ndarray, cand_mask: np.ndarray,
              template_crop: np.ndarray) -> Matches:
        out = self._match(self._t(text.tokens), self._t(text.mask), self._t(crops_to_nchw(crops)),
                          self._t(np.asarray(geometry, np.float32)[None]),
                          self._t(np.asarray(cand_mask, np.float32)[None]), self._t(image_to_nchw(template_crop)))
        return matches_from_outputs(*(o.cpu().numpy() for o in out))
