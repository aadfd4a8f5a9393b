"""Corrupt and foreign artifacts, each loaded through the real loaders: a clear error naming the file (or a
rebuild with a warning where one is possible). README's "Corrupt files" table lists the same cases.

TensorRT cache entries (truncated, stand-ins from another TensorRT version or GPU, a different export) are
rebuilt with a warning: ``test_engines.py::test_bad_cached_engines_are_rebuilt_with_a_warning``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from vl_tracker_core.engines import create_engine
from vl_tracker_core.engines.artifacts import MANIFEST, TOKENIZER_DIR, ExportError
from vl_tracker_core.models.checkpoint import CARD, CONFIG, WEIGHTS, CheckpointError
from vl_tracker_core.models.text import TokenizerError, default_text_encoder_dir


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x40
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _without_card(folder: Path) -> None:
    (folder / CARD).unlink()


def _other_config_weights(folder: Path) -> None:
    """Weights of a different architecture under this folder's config (a checkpoint mixed up with another)."""
    import torch

    from vl_tracker_core.models.checkpoint import save_checkpoint
    from vl_tracker_core.models.config import ModelConfig
    from vl_tracker_core.models.network import JointVLNet

    config = ModelConfig.load(folder / CONFIG)
    other = ModelConfig.from_dict({**config.to_dict(), "name": "other", "matcher_dim": config.matcher_dim * 2})
    torch.manual_seed(0)
    scratch = folder.parent / "other"
    save_checkpoint(JointVLNet(other), scratch, {})
    shutil.copy(scratch / WEIGHTS, folder / WEIGHTS)
    _without_card(folder)  # so that the sha256 check does not catch it first


# (case id, damage to a copy of the checkpoint, error type, phrase in the message, file named in it)
CHECKPOINT_CASES = [
    ("weights truncated", lambda f: _truncate(f / WEIGHTS), CheckpointError, "does not match the sha256", WEIGHTS),
    ("weights truncated, no card", lambda f: (_truncate(f / WEIGHTS), _without_card(f)), CheckpointError,
     "cannot read", WEIGHTS),
    ("weights bit-flipped", lambda f: _flip(f / WEIGHTS), CheckpointError, "does not match the sha256", WEIGHTS),
    ("weights of another architecture", _other_config_weights, CheckpointError, "", WEIGHTS),
    ("weights missing", lambda f: (f / WEIGHTS).unlink(), CheckpointError, "no model.safetensors", ""),
    ("config.json truncated", lambda f: _truncate(f / CONFIG), CheckpointError, "cannot read model config", CONFIG),
    ("config.json with an unknown field", lambda f: _edit_json(f / CONFIG, lambda d: d.update(wings=2)),
     CheckpointError, "wings", ""),
    ("card sha256 edited", lambda f: _edit_json(f / CARD, lambda d: d.update(sha256="0" * 64)), CheckpointError,
     "does not match the sha256", WEIGHTS),
    ("card truncated", lambda f: _truncate(f / CARD), CheckpointError, "cannot read the model card", CARD),
]


@pytest.mark.parametrize("damage,error,phrase,named", [c[1:] for c in CHECKPOINT_CASES],
                         ids=[c[0] for c in CHECKPOINT_CASES])
def test_a_damaged_checkpoint_is_refused_naming_the_file(checkpoint, tmp_path, damage, error, phrase, named):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    damage(folder)
    with pytest.raises(error) as info:
        create_engine("torch", folder, threads=1)
    message = str(info.value)
    assert phrase in message, message
    assert named in message, message


def _export_graph(folder: Path, name: str = "trunk_crop") -> Path:
    return folder / json.loads((folder / MANIFEST).read_text())["graphs"][name]["file"]


EXPORT_CASES = [
    ("graph missing", lambda f: _export_graph(f).unlink(), "is missing", "trunk_crop.onnx"),
    ("graph truncated", lambda f: _truncate(_export_graph(f, "match")), "does not match the sha256", "match.onnx"),
    ("graph bit-flipped", lambda f: _flip(_export_graph(f, "propose")), "does not match the sha256",
     "propose.onnx"),
    ("manifest hash edited", lambda f: _edit_json(f / MANIFEST, lambda d: d["graphs"]["text"].update(
        sha256="f" * 64)), "does not match the sha256", "text.onnx"),
    ("manifest truncated", lambda f: _truncate(f / MANIFEST), "cannot read", MANIFEST),
    ("manifest of another format version", lambda f: _edit_json(f / MANIFEST, lambda d: d.update(
        format_version=1)), "format version 1", MANIFEST),
    ("manifest missing", lambda f: (f / MANIFEST).unlink(), "neither an export folder", MANIFEST),
    ("tokenizer truncated", lambda f: _truncate(f / TOKENIZER_DIR / "tokenizer.json"), "",
     "tokenizer.json"),
    ("tokenizer folder missing", lambda f: shutil.rmtree(f / TOKENIZER_DIR), "is missing", TOKENIZER_DIR),
]


@pytest.mark.parametrize("damage,phrase,named", [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_a_damaged_export_is_refused_naming_the_file(export_dir, tmp_path, damage, phrase, named):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    damage(folder)
    with pytest.raises((ExportError, TokenizerError)) as info:
        create_engine("onnxruntime", folder, threads=1)
    message = str(info.value)
    assert phrase in message, message
    assert named in message, message
    assert "vl-tracker export" in message or "tokenizer" in message


def test_a_broken_tokenizer_in_a_text_encoder_folder_names_the_file(tmp_path):
    from vl_tracker_core.models.text import TextEncoder

    folder = tmp_path / "minilm"
    shutil.copytree(default_text_encoder_dir(), folder)
    _truncate(folder / "tokenizer.json", 0.3)
    with pytest.raises(TokenizerError, match=re.escape(str(folder / "tokenizer.json"))):
        TextEncoder(folder)


def test_a_text_encoder_folder_without_a_model_is_refused(tmp_path):
    from vl_tracker_core.models.text import TextEncoder

    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="not a transformers model directory"):
        TextEncoder(tmp_path / "empty")


def test_the_undamaged_copies_load(checkpoint, export_dir, tmp_path):
    """The control for the cases above: the same copies, undamaged, load and run."""
    shutil.copytree(checkpoint, tmp_path / "ckpt")
    create_engine("torch", tmp_path / "ckpt", threads=1).encode_text("the red ball")
    shutil.copytree(export_dir, tmp_path / "export")
    create_engine("onnxruntime", tmp_path / "export", threads=1).encode_text("the red ball")
