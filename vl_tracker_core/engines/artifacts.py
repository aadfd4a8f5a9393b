"""Export folders and the on-disk cache, without importing torch.

An export folder holds the ONNX graphs (``text``, ``propose``, ``match`` (K candidates), ``verify`` (one), and the trunk
at the online tracker's two input shapes: ``trunk_crop`` and ``trunk_window``), a copy of the tokenizer
files in ``tokenizer/`` and
``manifest.json`` describing every graph (file, sha256, input/output names,
shapes and dtypes), the opset, the model config and the sha256 of the weights
it came from. It is everything the onnxruntime and TensorRT backends need.

Cache layout (root: ``$VL_TRACKER_CACHE`` or ``~/.cache/vl_tracker``)::

    export/<weights sha256[:16]>-<config sha256[:8]>/   default export of a checkpoint (weights and config:
                                                     a changed input size is a new export)
    tensorrt/                                      serialized TensorRT engines
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from vl_tracker_core.models.checkpoint import CONFIG, WEIGHTS, CheckpointError, sha256_file, shipped_checkpoint_dir
from vl_tracker_core.models.config import ModelConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "vl_tracker-onnx"
#: 3: the trunk graphs of the online tracker replace the learned head's template and track graphs;
#: 4: ``verify``, the matcher on one candidate (the tracked box), beside ``match`` on K;
#: 5: no ``trunk_scales`` (the scale check resamples the tracking crop's maps: one trunk pass per frame)
FORMAT_VERSION = 5
GRAPHS = ("text", "propose", "match", "verify", "trunk_crop", "trunk_window")
TOKENIZER_DIR = "tokenizer"


class ExportError(RuntimeError):
    """An export folder that is missing, incomplete, corrupt, or does not match its manifest."""


def cache_root() -> Path:
    """``$VL_TRACKER_CACHE`` when set, else ``~/.cache/vl_tracker``."""
    env = os.environ.get("VL_TRACKER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vl_tracker"


def is_export_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / WEIGHTS).is_file() and (Path(path) / CONFIG).is_file()


def config_digest(config: ModelConfig) -> str:
    """sha256 of a model config's canonical JSON: the export's static shapes come from it."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def default_export_dir(checkpoint: str | os.PathLike | None = None, weights_sha256: str | None = None,
                       config: ModelConfig | None = None) -> Path:
    """Where the default export of ``checkpoint`` (default: the shipped weights) lives in the cache."""
    folder = Path(checkpoint) if checkpoint is not None else shipped_checkpoint_dir()
    if weights_sha256 is None:
        weights = folder / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(f"no {WEIGHTS} in {folder}: pass a checkpoint folder or an export folder "
                                  "(one with manifest.json)")
        weights_sha256 = sha256_file(weights)
    if config is None:
        config = ModelConfig.load(folder / CONFIG)
    # Keyed by content, not path: retrained weights or a changed config never reuse a stale export.
    return cache_root() / "export" / f"{weights_sha256[:16]}-{config_digest(config)[:8]}"


def load_manifest(export_dir: str | os.PathLike, verify_files: bool = False) -> dict[str, Any]:
    """Read and check ``manifest.json``; with ``verify_files`` also the sha256 of every ONNX file."""
    folder = Path(export_dir)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{folder} is not an export folder (no {MANIFEST}); create one with "
                          "`vl-tracker export --out DIR`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {path}: {exc}; re-run `vl-tracker export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path} is not a vl_tracker export manifest (format {FORMAT!r} expected)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path} has format version {manifest.get('format_version')}, this version reads "
                          f"{FORMAT_VERSION}; re-run `vl-tracker export`")
    graphs = manifest.get("graphs", {})
    missing = [g for g in GRAPHS if g not in graphs]
    if missing:
        raise ExportError(f"{path} lacks the graphs {missing}; re-run `vl-tracker export`")
    for name in GRAPHS:
        file = folder / graphs[name]["file"]
        if not file.is_file():
            raise ExportError(f"{file} listed in {path} is missing; re-run `vl-tracker export`")
        if verify_files and sha256_file(file) != graphs[name]["sha256"]:
            raise ExportError(f"{file} does not match the sha256 in {path} (corrupt or replaced); "
                              "re-run `vl-tracker export`")
    if not (folder / TOKENIZER_DIR).is_dir():
        raise ExportError(f"{folder / TOKENIZER_DIR} is missing; re-run `vl-tracker export`")
    # Exports since model v3 also record the tokenizer files' sha256 (a changed vocabulary would shift every
    # token id without an error).
    hashes = (manifest.get("text_encoder") or {}).get("tokenizer_sha256") or {}
    for name, expected in hashes.items() if verify_files else ():
        file = folder / TOKENIZER_DIR / name
        if not file.is_file():
            raise ExportError(f"{file} listed in {path} is missing; re-run `vl-tracker export`")
        if sha256_file(file) != expected:
            raise ExportError(f"{file} does not match the sha256 in {path} (corrupt or replaced); "
                              "re-run `vl-tracker export`")
    return manifest


def manifest_config(manifest: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_dict(manifest["config"])
