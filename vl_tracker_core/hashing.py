"""The sha256 of a file, read in 1 MiB chunks: what checkpoints, exports, engine caches and the ImageNet
weights check. Imports nothing of the project, so any module can use it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
