"""Checkpoints: ``model.safetensors`` + ``config.json`` + ``model_card.json`` (+ ``MODEL_CARD.md``).

Nothing is ever unpickled. Loading is strict: a checkpoint that does not match
its config fails with the names of the missing, unexpected and mis-shaped tensors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vl_tracker_core.hashing import sha256_file
from vl_tracker_core.models.config import ConfigError, ModelConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "model_card.json"
CARD_MD = "MODEL_CARD.md"
#: What a checkpoint folder consists of (it may hold other files, e.g. a training run's state).
CHECKPOINT_FILES = (WEIGHTS, CONFIG, CARD, CARD_MD)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, or does not match its config."""


def shipped_checkpoint_dir(name: str = "tiny") -> Path:
    return Path(__file__).resolve().parent.parent / "weights" / name


def save_checkpoint(net: Any, out_dir: Path, card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write weights, config and card; returns the card (with the weights' sha256).

    The four files are written into a staging folder beside ``out_dir`` (holding hard links to whatever
    else ``out_dir`` holds, e.g. a training run's state) and swapped in at once: a process killed at any
    moment leaves the previous checkpoint or the new one, never weights that disagree with their card.
    """
    from safetensors.torch import save_file

    from vl_tracker_core.atomic import link_tree, staging_dir, swap_dir

    out_dir = Path(out_dir)
    staging = staging_dir(out_dir)
    try:
        if out_dir.is_dir():
            link_tree(out_dir, staging, skip=frozenset(CHECKPOINT_FILES))
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(staging / WEIGHTS), metadata={"format": "pt", "config": net.config.name})
        net.config.save(staging / CONFIG)
        card = dict(card or {})
        card["sha256"] = sha256_file(staging / WEIGHTS)
        card["parameters"] = int(sum(v.numel() for v in state.values()))
        card["config"] = net.config.to_dict()
        (staging / CARD).write_text(json.dumps(card, indent=2) + "\n")
        (staging / CARD_MD).write_text(render_card(card))
        swap_dir(staging, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return card


def render_card(card: dict[str, Any]) -> str:
    lines = ["# Model card", ""]
    for key in ("model", "summary", "command", "data", "steps", "samples", "hardware", "wall_time_min",
                "validation", "notes", "sha256", "parameters"):
        if key in card:
            value = card[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())
            lines.append(f"- **{key}**: {value}")
    lines.append("")
    return "\n".join(lines)


def load_checkpoint(path: Path | str | None = None, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Build the network from ``path`` (a checkpoint folder; default: the shipped ``tiny``) and load it strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from vl_tracker_core.models.network import JointVLNet

    folder = Path(path) if path is not None else shipped_checkpoint_dir()
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"no {WEIGHTS} in {folder}")
    try:
        config = ModelConfig.load(folder / CONFIG)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    card: dict[str, Any] = {}
    if (folder / CARD).is_file():
        try:
            card = json.loads((folder / CARD).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the model card {folder / CARD}: {exc}") from None
        if not isinstance(card, dict):
            raise CheckpointError(f"{folder / CARD} is not a model card (a JSON object expected)")
        expected = card.get("sha256")
        if expected and expected != sha256_file(weights):
            raise CheckpointError(f"{weights} does not match the sha256 in its model card (corrupt or replaced)")
    try:
        state = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {weights}: {exc}") from None
    net = JointVLNet(config)
    load_state_strict(net, state, str(weights))
    return net.to(device).eval(), card


def load_state_strict(net: Any, state: dict[str, Any], source: str) -> None:
    """Load ``state`` into ``net``; on any mismatch raise naming every mismatched tensor."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected}")
        if shapes:
            parts.append(f"shape mismatches {shapes}")
        raise CheckpointError(f"{source} does not match config {net.config.name!r}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)
