"""PyTorch eager backend (CPU or CUDA); also the reference the other backends are checked against."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vl_tracker_core.engines.base import Peaks, TextFeatures, image_to_nchw, peaks_from_outputs
from vl_tracker_core.models.checkpoint import load_checkpoint
from vl_tracker_core.models.network import NORM_MODES, GroundGraph, ModeBatchNorm2d, TrackGraph
from vl_tracker_core.models.text import TextEncoder, clean_description


def fold_batchnorm(module: nn.Module, mode: str) -> nn.Module:
    """Fold every Conv2d followed by batch norm (inside a Sequential) into the conv, using the running
    statistics of ``mode`` (template, search or ground): same outputs for that kind of input, fewer ops.

    Works in place; fold a copy per mode (the three kinds of input need different statistics).
    """
    for child in module.children():
        fold_batchnorm(child, mode)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, (nn.BatchNorm2d, ModeBatchNorm2d)):
                running_mean, running_var = (bn.stats(mode) if isinstance(bn, ModeBatchNorm2d)
                                             else (bn.running_mean, bn.running_var))
                scale = bn.weight / torch.sqrt(running_var + bn.eps)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, conv.groups, bias=True)
                fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
                bias = conv.bias.data if conv.bias is not None else torch.zeros_like(running_mean)
                fused.bias.data = (bias - running_mean) * scale + bn.bias
                module[i] = fused
                module[i + 1] = nn.Identity()
    return module


class TorchEngine:
    name = "torch"

    def __init__(self, model: str | Path | None = None, device: str | None = None, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net, self.card = load_checkpoint(model, device="cpu")
        self.config = net.config
        with torch.no_grad():
            # One folded copy per kind of input: each uses its own batch-norm statistics.
            self.nets = {m: fold_batchnorm(copy.deepcopy(net), m).to(self.device).eval() for m in NORM_MODES}
        self._track = TrackGraph(self.nets["search"])
        self._ground = GroundGraph(self.nets["ground"])
        self.text_encoder = TextEncoder(self.config.text_encoder, self.config.max_text_tokens)

    def encode_text(self, description: str) -> TextFeatures:
        text = clean_description(description)
        tokens, mask = self.text_encoder.encode([text])
        return TextFeatures(text, tokens, mask)

    def _t(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @torch.inference_mode()
    def encode_template(self, text: TextFeatures, template: np.ndarray) -> np.ndarray:
        tokens = self.nets["template"].encode_template(self._t(text.tokens), self._t(text.mask),
                                                       self._t(image_to_nchw(template)))
        return tokens.cpu().numpy()

    @torch.inference_mode()
    def track(self, text: TextFeatures, template_tokens: np.ndarray, search: np.ndarray) -> Peaks:
        out = self._track(self._t(text.tokens), self._t(text.mask), self._t(template_tokens),
                          self._t(image_to_nchw(search)))
        return peaks_from_outputs(*(o.cpu().numpy() for o in out))

    @torch.inference_mode()
    def ground(self, text: TextFeatures, image: np.ndarray) -> Peaks:
        out = self._ground(self._t(text.tokens), self._t(text.mask), self._t(image_to_nchw(image)))
        return peaks_from_outputs(*(o.cpu().numpy() for o in out))
