"""The joint grounding-and-tracking network (in the spirit of JointNLT).

One set of weights, two modes:

- tracking: text tokens + template tokens (crop of about 2x the target) + search
  tokens (crop of about 4x the target);
- grounding: text tokens + search tokens of the whole frame letterboxed to G x G;
  the template tokens are masked out (simply left out of the sequence, which is
  what masking them in attention amounts to).

Structure: a small convolution stem (stride 8) whose features are modulated by
the sentence embedding (FiLM, early vision-language fusion as in SATracker /
PJVLT), a stride-16 token grid, a transformer doing relation modelling over
[text, template, search] tokens, then a stride-8 head (stride-16 tokens
upsampled and added to the stem features) predicting a centre heat map, box
size and sub-cell offset, and an embedding for vision-language similarity.
Decoding (peak picking, box, confidence, similarity for the top-k peaks)
happens inside ``forward`` so the exported ONNX/TensorRT graphs are complete.

All shapes are static for a given config, so export needs no dynamic axes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vl_tracker_core.models.config import ModelConfig

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


NORM_MODES = ("template", "search", "ground")


class ModeBatchNorm2d(nn.Module):
    """Batch norm with one set of running statistics per kind of input.

    The same convolutions see template crops, search crops and whole letterboxed
    frames, whose statistics differ. Training normalises each forward call with
    its own batch statistics, so inference must use statistics of the same kind
    of input: one shared running average (plain BatchNorm) fits none of them.
    The network sets ``mode`` before each forward pass; scale and shift are shared.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.mode = "search"
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        for m in NORM_MODES:
            self.register_buffer(f"running_mean_{m}", torch.zeros(channels))
            self.register_buffer(f"running_var_{m}", torch.ones(channels))
        self._calibration: dict[str, int] | None = None

    def stats(self, mode: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"running_mean_{mode}"), getattr(self, f"running_var_{mode}")

    def start_calibration(self) -> None:
        """From now on, training-mode passes average their batch statistics equally (not an EMA)."""
        self._calibration = {}

    def stop_calibration(self) -> None:
        self._calibration = None

    def forward(self, x: Tensor) -> Tensor:
        mean, var = self.stats(self.mode)
        momentum = self.momentum or 0.0
        if self.training and self._calibration is not None:
            count = self._calibration.get(self.mode, 0) + 1
            self._calibration[self.mode] = count
            momentum = 1.0 / count  # cumulative average over the calibration batches
        return F.batch_norm(x, mean, var, self.weight, self.bias, self.training, momentum, self.eps)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), ModeBatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), ModeBatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), ModeBatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class _Block(nn.Module):
    """Pre-norm transformer block with an explicit attention (exports cleanly to ONNX opset 17)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, attn_bias: Tensor) -> Tensor:
        b, n, d = x.shape
        h = self.heads
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // h)) + attn_bias
        y = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


def sincos_2d(height: int, width: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position codes, so any grid size (crop or full frame) shares one network."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    ys = ys.reshape(-1, 1) * omega
    xs = xs.reshape(-1, 1) * omega
    code = torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1)
    if code.shape[1] < dim:
        code = F.pad(code, (0, dim - code.shape[1]))
    return code


class JointVLNet(nn.Module):
    """Joint grounding-and-tracking network. See the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2 = config.stem_channels
        d, e = config.dim, config.embed_dim
        self.register_buffer("pixel_mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(_conv_bn(3, c0, 2), _conv_bn(c0, c1, 2), _conv_bn(c1, c2, 2), _Residual(c2))
        # FiLM from the sentence embedding: which colours/shapes to emphasise, before relation modelling.
        self.film = nn.Linear(config.text_dim, 2 * c2)
        self.to_tokens = _conv_bn(c2, d, 2)
        self.text_proj = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d))
        self.type_text = nn.Parameter(torch.zeros(1, 1, d))
        self.type_template = nn.Parameter(torch.zeros(1, 1, d))
        self.type_search = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(_Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.lateral = nn.Conv2d(c2, d, 1)
        # One head trunk at stride 8; a 1x1 conv splits it into heat (1), size (2), offset (2) and embedding (e).
        self.head = nn.Sequential(_conv_bn(d, c2), nn.Conv2d(c2, 5 + e, 1))
        self.text_embed = nn.Linear(config.text_dim, e)
        # Position codes are fixed: precomputed for the three input sizes (not recomputed per frame).
        for size in {config.template_size, config.search_size, config.ground_size}:
            self.register_buffer(f"pos_{size // 16}", sincos_2d(size // 16, size // 16, d), persistent=False)
        self.sim_scale = nn.Parameter(torch.tensor(5.0))
        self.sim_bias = nn.Parameter(torch.tensor(0.0))
        self.conf_mlp = nn.Sequential(nn.Linear(3 * d + 1, d), nn.GELU(), nn.Linear(d, 1))
        with torch.no_grad():
            self.head[-1].bias[0] = -4.0  # start with "no target anywhere" (focal-loss prior)
        for p in (self.type_text, self.type_template, self.type_search):
            nn.init.normal_(p, std=0.02)

    # ------------------------------------------------------------------ pieces
    def set_norm_mode(self, mode: str) -> None:
        """Select the batch-norm statistics for the kind of input the next forward pass sees."""
        if mode not in NORM_MODES:
            raise ValueError(f"norm mode {mode!r} unknown; choose from {NORM_MODES}")
        for module in self.modules():
            if isinstance(module, ModeBatchNorm2d):
                module.mode = mode

    def _stem(self, image: Tensor, film: Tensor) -> Tensor:
        x = self.stem((image - self.pixel_mean) / self.pixel_std)
        gamma, beta = film.chunk(2, dim=1)
        return x * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]

    def _pos(self, height: int, width: int, dim: int) -> Tensor:
        cached = getattr(self, f"pos_{height}", None)
        if cached is not None and height == width:
            return cached
        return sincos_2d(height, width, dim).to(self.pixel_mean)

    @staticmethod
    def _sentence(text_tokens: Tensor, text_mask: Tensor) -> Tensor:
        """Mean of the valid token features (how sentence-transformers pools MiniLM)."""
        m = text_mask.unsqueeze(-1)
        return (text_tokens * m).sum(1) / m.sum(1).clamp(min=1.0)

    def encode_template(self, text_tokens: Tensor, text_mask: Tensor, template: Tensor) -> Tensor:
        """Template tokens (B, (T/16)^2, dim): computed once per target, reused on every frame."""
        self.set_norm_mode("template")
        film = self.film(self._sentence(text_tokens, text_mask))
        t16 = self.to_tokens(self._stem(template, film))
        ht, wt = t16.shape[-2:]
        return t16.flatten(2).transpose(1, 2) + self._pos(ht, wt, t16.shape[1]) + self.type_template

    def _relate(self, text_tokens: Tensor, text_mask: Tensor, search8: Tensor,
                template_tokens: Tensor | None) -> Tensor:
        """Relation modelling over [text, template, search]; returns the stride-8 fused search map."""
        b = search8.shape[0]
        s16 = self.to_tokens(search8)
        hs, ws = s16.shape[-2:]
        d = s16.shape[1]
        search_tok = s16.flatten(2).transpose(1, 2) + self._pos(hs, ws, d) + self.type_search
        parts = [self.text_proj(text_tokens) + self.type_text]
        masks = [text_mask]
        if template_tokens is not None:
            parts.append(template_tokens)
            masks.append(torch.ones(b, template_tokens.shape[1], dtype=text_mask.dtype, device=text_mask.device))
        parts.append(search_tok)
        masks.append(torch.ones(b, hs * ws, dtype=text_mask.dtype, device=text_mask.device))
        x = torch.cat(parts, dim=1)
        # Padding tokens of the text are never attended to.
        bias = ((1.0 - torch.cat(masks, dim=1)) * -1e4)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        x = self.norm(x[:, -hs * ws:])
        grid = x.transpose(1, 2).reshape(b, d, hs, ws)
        up = F.interpolate(grid, scale_factor=2.0, mode="nearest")
        return F.relu(up + self.lateral(search8))

    def _heads(self, fused: Tensor) -> dict[str, Tensor]:
        y = self.head(fused)
        return {
            "heat": y[:, 0:1],
            "size": y[:, 1:3].sigmoid(),
            "offset": y[:, 3:5].sigmoid(),
            "embed": F.normalize(y[:, 5:], dim=1),
        }

    def _decode(self, maps: dict[str, Tensor], fused: Tensor, sentence: Tensor, text_emb: Tensor,
                input_size: int, k: int) -> dict[str, Tensor]:
        """Top-k peaks (3x3 max-pool suppression) -> boxes, confidence and similarity per peak."""
        heat = maps["heat"].sigmoid()
        b, _, h, w = heat.shape
        keep = (F.max_pool2d(heat, 3, 1, 1) == heat).to(heat.dtype)
        scores, index = (heat * keep).flatten(1).topk(k, dim=1)  # (B, k)
        ys = torch.div(index, w, rounding_mode="floor").to(heat.dtype)
        xs = (index % w).to(heat.dtype)

        def gather(t: Tensor) -> Tensor:  # (B, C, H, W) -> (B, k, C)
            flat = t.flatten(2)
            return flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1)).transpose(1, 2)

        size = gather(maps["size"])
        offset = gather(maps["offset"])
        cell = input_size / w
        cx = (xs + offset[..., 0]) * cell
        cy = (ys + offset[..., 1]) * cell
        bw = size[..., 0] * input_size
        bh = size[..., 1] * input_size
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, bw, bh], dim=-1)  # (B, k, 4) input pixels
        cos = (gather(maps["embed"]) * text_emb.unsqueeze(1)).sum(-1)  # (B, k)
        feats = gather(fused)
        context = fused.mean(dim=(2, 3)).unsqueeze(1).expand(-1, k, -1)
        text_ctx = self.text_proj(sentence).unsqueeze(1).expand(-1, k, -1)
        conf_logit = self.conf_mlp(torch.cat([feats, context, text_ctx, scores.unsqueeze(-1)], dim=-1)).squeeze(-1)
        return {
            "boxes": boxes,
            "scores": scores,
            "confidence": conf_logit.sigmoid(),
            "similarity": (self.sim_scale * cos + self.sim_bias).sigmoid(),
            "conf_logit": conf_logit,
            "cos": cos,
        }

    # ------------------------------------------------------------------ modes
    def forward_track(self, text_tokens: Tensor, text_mask: Tensor, template_tokens: Tensor, search: Tensor,
                      decode: bool = True) -> dict[str, Tensor]:
        """Tracking mode. ``search`` is float (B, 3, S, S) in [0, 1]; text_mask is float 0/1;
        ``template_tokens`` come from :meth:`encode_template`."""
        self.set_norm_mode("search")
        sentence = self._sentence(text_tokens, text_mask)
        fused = self._relate(text_tokens, text_mask, self._stem(search, self.film(sentence)), template_tokens)
        return self._finish(fused, sentence, self.config.search_size, decode)

    def forward_ground(self, text_tokens: Tensor, text_mask: Tensor, image: Tensor,
                       decode: bool = True) -> dict[str, Tensor]:
        """Grounding mode on the whole letterboxed frame (template masked)."""
        self.set_norm_mode("ground")
        sentence = self._sentence(text_tokens, text_mask)
        fused = self._relate(text_tokens, text_mask, self._stem(image, self.film(sentence)), None)
        return self._finish(fused, sentence, self.config.ground_size, decode)

    def _finish(self, fused: Tensor, sentence: Tensor, input_size: int, decode: bool) -> dict[str, Tensor]:
        maps = self._heads(fused)
        out: dict[str, Tensor] = {"heat": maps["heat"], "fused": fused, **{f"map_{k}": v for k, v in maps.items()}}
        text_emb = F.normalize(self.text_embed(sentence), dim=-1)
        out["text_emb"] = text_emb
        if decode:
            out.update(self._decode(maps, fused, sentence, text_emb, input_size, self.config.top_k))
        return out


class TrackGraph(nn.Module):
    """Export wrapper: the tracking mode with only the decoded outputs."""

    OUTPUTS = ("boxes", "scores", "confidence", "similarity", "heat")

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, text_tokens: Tensor, text_mask: Tensor, template_tokens: Tensor, search: Tensor):
        out = self.net.forward_track(text_tokens, text_mask, template_tokens, search)
        return tuple(out[k] for k in self.OUTPUTS)


class TemplateGraph(nn.Module):
    """Export wrapper: template crop -> template tokens (run once per target)."""

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, text_tokens: Tensor, text_mask: Tensor, template: Tensor) -> Tensor:
        return self.net.encode_template(text_tokens, text_mask, template)


class GroundGraph(nn.Module):
    """Export wrapper: the grounding mode with only the decoded outputs."""

    OUTPUTS = TrackGraph.OUTPUTS

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, text_tokens: Tensor, text_mask: Tensor, image: Tensor):
        out = self.net.forward_ground(text_tokens, text_mask, image)
        return tuple(out[k] for k in self.OUTPUTS)
