"""Write synthetic scenes to disk in the LaSOT layout; the fixed synthetic benchmarks.

Layout of one sequence (as LaSOT, minus the class folder level)::

    <out>/<name>/img/00000001.jpg ...
    <out>/<name>/groundtruth.txt      x,y,w,h per frame; 0,0,0,0 when the target is absent
    <out>/<name>/nlp.txt              the description, one line
    <out>/<name>/full_occlusion.txt   one comma-separated line of 0/1
    <out>/<name>/out_of_view.txt      one comma-separated line of 0/1
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vl_tracker_core.data.readers import write_lasot_annotations
from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene
from vl_tracker_core.progress import progress as progress_bar

SPLITS: tuple[str, ...] = ("train", "val", "test")
_DEFAULT_PARAPHRASES = {"train": "seen", "val": "seen", "test": "unseen"}

#: Fixed benchmarks. synth-test-seen has the very same videos and ground truth as
#: synth-test (same seed); only the wording of the descriptions differs.
BENCHMARKS: dict[str, dict[str, Any]] = {
    "synth-test": dict(split="test", sequences=50, frames=300, seed=1009, paraphrases="unseen"),
    "synth-val": dict(split="val", sequences=20, frames=300, seed=2017, paraphrases="seen"),
    "synth-test-seen": dict(split="test", sequences=50, frames=300, seed=1009, paraphrases="seen"),
}


def sequence_seed(seed: int, split: str, index: int) -> int:
    """The scene seed of sequence ``index`` (0-based) of ``split``; stable across runs and platforms."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    # crc32, not hash(): str hashes are salted per process.
    state = np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)]).generate_state(1)
    return int(state[0])


def sequence_name(split: str, index: int) -> str:
    """``synth-<split>-0001`` for index 0."""
    return f"synth-{split}-{index + 1:04d}"


def make_scene(
    split: str,
    index: int,
    frames: int,
    seed: int,
    width: int = 640,
    height: int = 480,
    paraphrases: str | None = None,
    force_out_of_view_every: int = 2,
) -> SyntheticScene:
    """Sequence ``index`` of a split, in memory (what :func:`make_synthetic` writes).

    Every ``force_out_of_view_every``-th sequence (index 0, 2, 4, ... by default)
    is forced to contain an out-of-view episode of the target; 0 disables it.
    """
    config = SceneConfig(
        width=width,
        height=height,
        force_out_of_view=force_out_of_view_every > 0 and index % force_out_of_view_every == 0,
    )
    mode = paraphrases if paraphrases is not None else _DEFAULT_PARAPHRASES[split]
    return SyntheticScene(sequence_seed(seed, split, index), frames, config, paraphrases=mode)


def iter_scenes(
    split: str,
    sequences: int,
    frames: int,
    seed: int,
    width: int = 640,
    height: int = 480,
    paraphrases: str | None = None,
    force_out_of_view_every: int = 2,
) -> Iterator[tuple[str, SyntheticScene]]:
    """``(name, scene)`` for each sequence of a split, without touching the disk."""
    for index in range(sequences):
        yield sequence_name(split, index), make_scene(
            split, index, frames, seed, width, height, paraphrases, force_out_of_view_every
        )


def write_sequence(scene: SyntheticScene, out_dir: Path, name: str, jpeg_quality: int = 90) -> Path:
    """Render ``scene`` to ``<out_dir>/<name>`` in the LaSOT layout; returns the sequence folder."""
    seq_dir = Path(out_dir) / name
    img_dir = seq_dir / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    for stale in img_dir.glob("[0-9]" * 8 + ".jpg"):  # a shorter rewrite must not keep old frames
        stale.unlink()
    boxes, occlusion, out_of_view = [], [], []
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    for t in range(len(scene)):
        path = img_dir / f"{t + 1:08d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(scene.render(t), cv2.COLOR_RGB2BGR), params):
            raise OSError(f"cannot write {path}")
        full, oov = scene.flags(t)
        boxes.append(scene.target_box(t))
        occlusion.append(full)
        out_of_view.append(oov)
    write_lasot_annotations(seq_dir, scene.description, boxes, occlusion, out_of_view, decimals=1)
    return seq_dir


def make_synthetic(
    out: Path,
    split: str,
    sequences: int,
    frames: int,
    seed: int,
    width: int = 640,
    height: int = 480,
    paraphrases: str | None = None,
    progress: bool = True,
    force_out_of_view_every: int = 2,
    jpeg_quality: int = 90,
) -> list[Path]:
    """Write ``sequences`` sequences of ``split`` under ``out``; returns their folders.

    ``paraphrases`` defaults to "seen" for train/val and "unseen" for test.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenes = iter_scenes(split, sequences, frames, seed, width, height, paraphrases, force_out_of_view_every)
    written = []
    for name, scene in progress_bar(scenes, total=sequences, desc=f"synth-{split}", unit="seq", enabled=progress):
        written.append(write_sequence(scene, out, name, jpeg_quality))
    return written


def make_benchmark(name: str, out: Path, progress: bool = True) -> list[Path]:
    """Write the registered benchmark ``name`` (see :data:`BENCHMARKS`); sequences go directly under ``out``."""
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    return make_synthetic(
        Path(out), spec["split"], spec["sequences"], spec["frames"], spec["seed"],
        paraphrases=spec["paraphrases"], progress=progress,
    )
