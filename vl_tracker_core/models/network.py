"""The joint grounding-and-tracking network, version 2 (pretrained trunk, candidate-set grounding).

One set of weights, three passes, all on one EfficientNet-Lite0 trunk
(``models/trunk.py``, ImageNet-initialised):

- **tracking** (every frame, JointNLT-style): text tokens + template tokens (crop
  of about 2x the target, encoded once per target) + search tokens (crop of about
  4x the target around the last box) go through a transformer doing relation
  modelling; a stride-8 head predicts a centre heat map, box size and offset, a
  confidence and a vision-language similarity for the top-k peaks. The sentence
  also modulates the trunk's stride-16 features (FiLM, early fusion as in
  SATracker / PJVLT).
- **proposals** (global grounding and re-search): a class-agnostic centre heat map
  on the whole letterboxed frame; the top-K peaks become candidate boxes.
- **candidate-set matching**: each candidate is re-cropped from the *full-resolution*
  frame (a 40-px object keeps its pattern) and encoded by the same trunk; a
  transformer lets the text tokens attend over all K candidates at once, each
  carrying its appearance and its geometry (position and size in the frame), so
  relations ("left of the green circle") and relative size are decidable; it
  scores every candidate and a "none of them" token. It also scores each
  candidate's appearance against a stored template crop (re-search needs the text
  and the template to agree).

Decoding happens inside ``forward`` so exported graphs are complete; all shapes
are static for a config.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vl_tracker_core.models.config import ModelConfig
from vl_tracker_core.models.trunk import LiteTrunk

#: per-candidate geometry features (see ``data.crops.candidate_geometry``)
GEOMETRY_DIM = 6


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


def _pool_mean_max(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, 2C): mean and max over the grid."""
    return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


class JointVLNet(nn.Module):
    """Joint grounding-and-tracking network. See the module docstring."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, e, m = config.dim, config.embed_dim, config.matcher_dim
        self.trunk = LiteTrunk(config.trunk_blocks)
        c8, c16 = self.trunk.channels8, self.trunk.channels
        # ---- tracking
        self.film = nn.Linear(config.text_dim, 2 * c16)
        self.to_tokens = nn.Linear(c16, d)
        self.text_proj = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, d))
        self.type_text = nn.Parameter(torch.zeros(1, 1, d))
        self.type_template = nn.Parameter(torch.zeros(1, 1, d))
        self.type_search = nn.Parameter(torch.zeros(1, 1, d))
        self.blocks = nn.ModuleList(_Block(d, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)
        self.lateral = nn.Conv2d(c8, d, 1)
        # One head at stride 8; a 1x1 conv splits it into heat (1), size (2), offset (2) and embedding (e).
        self.head = nn.Sequential(nn.Conv2d(d, 64, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(64, 5 + e, 1))
        self.text_embed = nn.Linear(config.text_dim, e)
        for size in {config.template_size, config.search_size}:
            self.register_buffer(f"pos_{size // 16}", sincos_2d(size // 16, size // 16, d), persistent=False)
        self.sim_scale = nn.Parameter(torch.tensor(5.0))
        self.sim_bias = nn.Parameter(torch.tensor(0.0))
        self.conf_mlp = nn.Sequential(nn.Linear(3 * d + 1, d), nn.GELU(), nn.Linear(d, 1))
        # ---- class-agnostic proposals on the whole frame
        self.prop_lateral16 = nn.Conv2d(c16, 64, 1)
        self.prop_lateral8 = nn.Conv2d(c8, 64, 1)
        self.prop_head = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(inplace=True),
                                       nn.Conv2d(64, 5, 1))
        # ---- candidate encoding and the candidate-set matcher
        self.cand_conv = nn.Sequential(nn.Conv2d(c16, m, 1), nn.ReLU(inplace=True))
        self.cand_app = nn.Sequential(nn.Linear(2 * m, m), nn.GELU(), nn.Linear(m, m))
        self.cand_geo = nn.Sequential(nn.Linear(GEOMETRY_DIM, m), nn.GELU(), nn.Linear(m, m))
        self.match_text = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, m))
        self.match_sentence = nn.Sequential(nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, m))
        self.type_match_text = nn.Parameter(torch.zeros(1, 1, m))
        self.type_match_sentence = nn.Parameter(torch.zeros(1, 1, m))
        self.type_candidate = nn.Parameter(torch.zeros(1, 1, m))
        self.none_token = nn.Parameter(torch.zeros(1, 1, m))
        self.match_blocks = nn.ModuleList(_Block(m, 4, 2.0) for _ in range(config.matcher_depth))
        self.match_norm = nn.LayerNorm(m)
        self.match_score = nn.Linear(m, 1)
        # Appearance embedding for agreement with the stored template (identity, not text).
        self.app_embed = nn.Linear(2 * m, e)
        self.app_scale = nn.Parameter(torch.tensor(8.0))
        self.app_bias = nn.Parameter(torch.tensor(-4.0))
        with torch.no_grad():
            self.head[-1].bias[0] = -4.0  # start with "no target anywhere" (focal-loss prior)
            self.prop_head[-1].bias[0] = -4.0
        for p in (self.type_text, self.type_template, self.type_search, self.type_match_text,
                  self.type_match_sentence, self.type_candidate, self.none_token):
            nn.init.normal_(p, std=0.02)
        self._freeze_trunk()

    # ------------------------------------------------------------------ trunk
    def _frozen_trunk_modules(self) -> list[nn.Module]:
        k = self.config.trunk_train_from
        return [self.trunk.stem, *self.trunk.blocks[:k]] if k > 0 else []

    def _freeze_trunk(self) -> None:
        for module in self._frozen_trunk_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> JointVLNet:
        """Frozen trunk stages keep their batch-norm statistics (ImageNet's) in training too."""
        super().train(mode)
        for module in self._frozen_trunk_modules():
            module.eval()
        return self

    def features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Trunk features (stride 8, stride 16) of float RGB images in [0, 1]."""
        return self.trunk(images)

    # ------------------------------------------------------------------ tracking
    def _pos(self, height: int, width: int, dim: int) -> Tensor:
        cached = getattr(self, f"pos_{height}", None)
        if cached is not None and height == width:
            return cached
        return sincos_2d(height, width, dim).to(self.type_text)

    @staticmethod
    def sentence(text_tokens: Tensor, text_mask: Tensor) -> Tensor:
        """Mean of the valid token features (how sentence-transformers pools MiniLM)."""
        mask = text_mask.unsqueeze(-1)
        return (text_tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def _film(self, f16: Tensor, sentence: Tensor) -> Tensor:
        gamma, beta = self.film(sentence).chunk(2, dim=1)
        return f16 * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None]

    def _tokens(self, f16: Tensor) -> Tensor:
        h, w = f16.shape[-2:]
        return self.to_tokens(f16.flatten(2).transpose(1, 2)) + self._pos(h, w, self.config.dim)

    def encode_template(self, text_tokens: Tensor, text_mask: Tensor, template: Tensor) -> Tensor:
        """Template tokens (B, (T/16)^2, dim): computed once per target, reused on every frame."""
        _, f16 = self.features(template)
        return self._tokens(self._film(f16, self.sentence(text_tokens, text_mask))) + self.type_template

    def forward_track(self, text_tokens: Tensor, text_mask: Tensor, template_tokens: Tensor, search: Tensor,
                      decode: bool = True) -> dict[str, Tensor]:
        """Tracking mode. ``search`` is float (B, 3, S, S) in [0, 1]; text_mask is float 0/1;
        ``template_tokens`` come from :meth:`encode_template`."""
        sentence = self.sentence(text_tokens, text_mask)
        f8, f16 = self.features(search)
        b = search.shape[0]
        hs, ws = f16.shape[-2:]
        search_tok = self._tokens(self._film(f16, sentence)) + self.type_search
        ones = torch.ones(b, template_tokens.shape[1] + hs * ws, dtype=text_mask.dtype, device=text_mask.device)
        x = torch.cat([self.text_proj(text_tokens) + self.type_text, template_tokens, search_tok], dim=1)
        # Padding tokens of the text are never attended to.
        bias = ((1.0 - torch.cat([text_mask, ones], dim=1)) * -1e4)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        x = self.norm(x[:, -hs * ws:])
        grid = x.transpose(1, 2).reshape(b, self.config.dim, hs, ws)
        fused = F.relu(F.interpolate(grid, scale_factor=2.0, mode="nearest") + self.lateral(f8))
        y = self.head(fused)
        maps = {"heat": y[:, 0:1], "size": y[:, 1:3].sigmoid(), "offset": y[:, 3:5].sigmoid(),
                "embed": F.normalize(y[:, 5:], dim=1)}
        out: dict[str, Tensor] = {"heat": maps["heat"], "fused": fused, **{f"map_{k}": v for k, v in maps.items()}}
        text_emb = F.normalize(self.text_embed(sentence), dim=-1)
        out["text_emb"] = text_emb
        if decode:
            out.update(self._decode_track(maps, fused, sentence, text_emb))
        return out

    def _decode_track(self, maps: dict[str, Tensor], fused: Tensor, sentence: Tensor,
                      text_emb: Tensor) -> dict[str, Tensor]:
        """Top-k peaks -> boxes, confidence and similarity per peak."""
        scores, index, boxes = _peaks(maps["heat"], maps["size"], maps["offset"], self.config.search_size,
                                      self.config.top_k)
        cos = (_gather(maps["embed"], index) * text_emb.unsqueeze(1)).sum(-1)  # (B, k)
        k = self.config.top_k
        feats = _gather(fused, index)
        context = fused.mean(dim=(2, 3)).unsqueeze(1).expand(-1, k, -1)
        text_ctx = self.text_proj(sentence).unsqueeze(1).expand(-1, k, -1)
        conf_logit = self.conf_mlp(torch.cat([feats, context, text_ctx, scores.unsqueeze(-1)], dim=-1)).squeeze(-1)
        return {"boxes": boxes, "scores": scores, "confidence": conf_logit.sigmoid(),
                "similarity": (self.sim_scale * cos + self.sim_bias).sigmoid(), "conf_logit": conf_logit, "cos": cos}

    # ------------------------------------------------------------------ proposals
    def forward_propose(self, image: Tensor, decode: bool = True) -> dict[str, Tensor]:
        """Class-agnostic object centres on the whole letterboxed frame (B, 3, G, G)."""
        f8, f16 = self.features(image)
        x = self.prop_lateral8(f8) + F.interpolate(self.prop_lateral16(f16), scale_factor=2.0, mode="nearest")
        y = self.prop_head(x)
        out = {"heat": y[:, 0:1], "map_size": y[:, 1:3].sigmoid(), "map_offset": y[:, 3:5].sigmoid()}
        if decode:
            scores, _, boxes = _peaks(out["heat"], out["map_size"], out["map_offset"], self.config.ground_size,
                                      self.config.candidates)
            out.update(boxes=boxes, scores=scores)
        return out

    # ------------------------------------------------------------------ candidate-set matching
    def encode_candidates(self, crops: Tensor) -> Tensor:
        """(N, 3, C, C) crops -> (N, 2 * matcher_dim) pooled appearance."""
        _, f16 = self.features(crops)
        return _pool_mean_max(self.cand_conv(f16))

    def match(self, text_tokens: Tensor, text_mask: Tensor, appearance: Tensor, geometry: Tensor,
              cand_mask: Tensor, template_appearance: Tensor) -> dict[str, Tensor]:
        """Score K candidates and "none" for each description.

        ``appearance`` (B, K, 2m) and ``template_appearance`` (B, 2m) from :meth:`encode_candidates`,
        ``geometry`` (B, K, 6), ``cand_mask`` (B, K) float 1 = a real candidate. Returns ``logits``
        (B, K + 1; the last is "none of them"), ``probs`` (their softmax), ``template_logit`` and
        ``template_sim`` (B, K): does each candidate look like the template.
        """
        b, k = appearance.shape[:2]
        sentence = self.sentence(text_tokens, text_mask)
        cand = self.cand_app(appearance) + self.cand_geo(geometry) + self.type_candidate
        x = torch.cat([self.match_text(text_tokens) + self.type_match_text,
                       self.match_sentence(sentence).unsqueeze(1) + self.type_match_sentence,
                       cand, self.none_token.expand(b, -1, -1)], dim=1)
        ones = torch.ones(b, 1, dtype=text_mask.dtype, device=text_mask.device)
        bias = ((1.0 - torch.cat([text_mask, ones, cand_mask, ones], dim=1)) * -1e4)[:, None, None, :]
        for block in self.match_blocks:
            x = block(x, bias)
        logits = self.match_score(self.match_norm(x[:, -(k + 1):])).squeeze(-1)
        logits = logits + torch.cat([(1.0 - cand_mask) * -1e4, torch.zeros_like(ones)], dim=1)
        emb = F.normalize(self.app_embed(appearance), dim=-1)
        template = F.normalize(self.app_embed(template_appearance), dim=-1)
        template_logit = self.app_scale * (emb * template.unsqueeze(1)).sum(-1) + self.app_bias
        return {"logits": logits, "probs": logits.softmax(dim=-1), "template_logit": template_logit,
                "template_sim": template_logit.sigmoid()}


def _gather(t: Tensor, index: Tensor) -> Tensor:
    """(B, C, H, W) at flat cell indices (B, k) -> (B, k, C)."""
    flat = t.flatten(2)
    return flat.gather(2, index.unsqueeze(1).expand(-1, flat.shape[1], -1)).transpose(1, 2)


def _peaks(heat_logits: Tensor, size: Tensor, offset: Tensor, input_size: int,
           k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k heat-map peaks (3x3 max-pool suppression): scores (B, k), flat indices, boxes (B, k, 4) xywh
    in input pixels."""
    heat = heat_logits.sigmoid()
    w = heat.shape[-1]
    keep = (F.max_pool2d(heat, 3, 1, 1) == heat).to(heat.dtype)
    scores, index = (heat * keep).flatten(1).topk(k, dim=1)
    ys = torch.div(index, w, rounding_mode="floor").to(heat.dtype)
    xs = (index % w).to(heat.dtype)
    sz = _gather(size, index)
    off = _gather(offset, index)
    cell = input_size / w
    cx = (xs + off[..., 0]) * cell
    cy = (ys + off[..., 1]) * cell
    bw = sz[..., 0] * input_size
    bh = sz[..., 1] * input_size
    return scores, index, torch.stack([cx - bw / 2, cy - bh / 2, bw, bh], dim=-1)


class TrunkGraph(nn.Module):
    """Export wrapper: square patches (N, 3, S, S) in [0, 1] -> the trunk's stride-8 and stride-16 maps (the
    online tracker's features; one graph per patch size and batch)."""

    OUTPUTS = ("f8", "f16")

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, patches: Tensor):
        return self.net.features(patches)


class ProposeGraph(nn.Module):
    """Export wrapper: letterboxed frame -> K class-agnostic candidate boxes and their scores."""

    OUTPUTS = ("boxes", "scores")

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: Tensor):
        out = self.net.forward_propose(image)
        return out["boxes"], out["scores"]


class MatchGraph(nn.Module):
    """Export wrapper: text + K candidate crops (+ geometry, mask) + a template crop -> match
    probabilities (K + 1, the last "none of them") and template agreement (K)."""

    OUTPUTS = ("probs", "template_sim")

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, text_tokens: Tensor, text_mask: Tensor, crops: Tensor, geometry: Tensor, cand_mask: Tensor,
                template_crop: Tensor):
        k = crops.shape[1]
        pooled = self.net.encode_candidates(torch.cat([crops[0], template_crop], dim=0))
        out = self.net.match(text_tokens, text_mask, pooled[:k].unsqueeze(0), geometry, cand_mask, pooled[k:])
        return out["probs"], out["template_sim"]
