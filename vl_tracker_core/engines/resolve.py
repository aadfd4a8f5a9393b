"""Find the export folder of a model: an export folder itself, or the cached export of a checkpoint,
exported on first use.

Apart from ``artifacts`` (which ``export`` builds on) so that imports run one way: this module ->
``export`` (only when an export has to be made, and only then is torch imported) -> ``artifacts``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vl_tracker_core.engines.artifacts import (
    ExportError,
    default_export_dir,
    is_checkpoint_dir,
    is_export_dir,
    load_manifest,
)
from vl_tracker_core.models.checkpoint import CONFIG, WEIGHTS, sha256_file, shipped_checkpoint_dir
from vl_tracker_core.models.config import ModelConfig

log = logging.getLogger(__name__)


def resolve_export_dir(model: str | os.PathLike | None = None, opset: int = 17) -> Path:
    """The export folder for ``model``: an export folder itself, or the cached export of a checkpoint
    folder (default: the shipped weights), exported on first use.

    Exporting imports torch and takes a while; it happens once per checkpoint. Run
    ``vl-tracker export`` beforehand so a deployed process never does it.
    """
    if model is not None and is_export_dir(model):
        return Path(model)
    if model is not None and not Path(model).is_dir():
        raise ExportError(f"model {model} is neither an export folder (manifest.json) nor a checkpoint folder; "
                          "make an export folder with `vl-tracker export --out DIR`")
    checkpoint = Path(model) if model is not None else shipped_checkpoint_dir()
    if not is_checkpoint_dir(checkpoint):
        raise ExportError(f"{checkpoint} is neither an export folder (manifest.json) nor a checkpoint folder "
                          f"({WEIGHTS} + {CONFIG}); make an export folder with `vl-tracker export --out DIR`")
    sha = sha256_file(checkpoint / WEIGHTS)
    config = ModelConfig.load(checkpoint / CONFIG)
    target = default_export_dir(checkpoint, weights_sha256=sha, config=config)
    if is_export_dir(target):
        try:
            manifest = load_manifest(target)
            if manifest.get("weights_sha256") == sha and manifest.get("config") == config.to_dict():
                return target
            log.warning("cached export %s was made from other weights or another config; exporting again", target)
        except ExportError as exc:
            log.warning("cached export %s is unusable (%s); exporting again", target, exc)
    log.warning("no ONNX export of %s yet: exporting to %s now (one-off, imports torch, takes a while). "
                "Run `vl-tracker export` beforehand to avoid this at start-up.", checkpoint, target)
    from vl_tracker_core.engines.export import export_model

    export_model(target, checkpoint, opset=opset)
    return target
