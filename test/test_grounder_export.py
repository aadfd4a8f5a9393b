"""OWLv2 / OWL-ViT exported to ONNX (vl_tracker_core/grounders/export.py) and run with onnxruntime
(grounders/exported.py), against the transformers model they came from. Tiny random models built here,
with random class and box heads so that every patch scores differently (the shipped random builders flatten
them); real-weight quality is not measured here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.grounders import GrounderError, create_grounder
from vl_tracker_core.grounders.exported import ExportedOwlGrounder
from vl_tracker_core.grounders.hf import TransformersGrounder

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")
OWL = ("owlv2", "owlvit")


def _random_heads(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # (layer, scale): the box head's last layer small, so that boxes stay near their patch's prior box
        for layer, scale in ((model.class_head.dense0, 0.3), (model.class_head.logit_shift, 0.3),
                             (model.class_head.logit_scale, 0.3), (model.box_head.dense2, 0.01)):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def owl(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """kind -> (transformers model folder, export folder)."""
    from vl_tracker_core.grounders.export import export_grounder
    from vl_tracker_core.grounders.random_models import random_detector

    root = tmp_path_factory.mktemp("owl-export")
    out = {}
    for i, kind in enumerate(OWL):
        model, processor = random_detector(kind, "tiny")
        _random_heads(model, i)
        folder = root / kind
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        export_grounder(kind, folder, root / f"{kind}-onnx", say=lambda msg: None)
        out[kind] = (folder, root / f"{kind}-onnx")
    return out


def _frame(seed: int, w: int = 320, h: int = 240) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", OWL)
def test_the_exported_detector_reproduces_the_transformers_model(owl, kind):
    folder, exported = owl[kind]
    manifest = json.loads((exported / "grounder.json").read_text())
    assert manifest["kind"] == kind and set(manifest["graphs"]) == {"image", "text"}
    assert manifest["check_against_model"]["scores"] < 1e-3
    torch_grounder = TransformersGrounder(kind, folder)
    onnx_grounder = create_grounder(kind, exported)
    assert isinstance(onnx_grounder, ExportedOwlGrounder) and onnx_grounder.backend == "onnxruntime"
    # Frames and descriptions the export never saw; a tall frame checks OWLv2's square padding.
    for seed, (w, h), text in ((3, (320, 240), "the red ball"), (4, (200, 300), "a person in the green jacket")):
        frame = _frame(seed, w, h)
        want = torch_grounder.detect(frame, text, top_k=8)
        got = onnx_grounder.detect(frame, text, top_k=8)
        assert len(set(np.round(want.scores, 4))) > 3  # the random heads give distinct scores
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)  # pixels
    # A second description gives other scores: the text graph is really used (and cached per description).
    a = onnx_grounder.detect(_frame(5), "the red ball", top_k=30).scores
    b = onnx_grounder.detect(_frame(5), "blue car", top_k=30).scores
    assert not np.allclose(np.sort(a), np.sort(b))
    # most recently used last: "the red ball" moved behind the jacket when it was asked for again
    assert list(onnx_grounder._text) == ["a person in the green jacket", "the red ball", "blue car"]


def test_the_tracker_grounds_with_an_exported_detector(owl, export_dir):
    from vl_tracker_core.engines import create_engine
    from vl_tracker_core.tracker import TrackerParams, VLTracker, load_default_params

    engine = create_engine("onnxruntime", export_dir, threads=1)
    grounder = create_grounder("owlvit", owl["owlvit"][1])
    params = TrackerParams.from_dict({**load_default_params(), "ground_threshold": 0.0})
    tracker = VLTracker(engine, params, grounder=grounder)
    tracker.set_target("the red ball")
    result = tracker.step(_frame(7))
    best = grounder.detect(_frame(7), "the red ball", top_k=engine.config.candidates)
    assert result.box is not None
    assert result.confidence == pytest.approx(best.scores[0], abs=1e-6)
    np.testing.assert_allclose(result.box, best.boxes[0], atol=1e-6)


def test_bad_exports_are_refused_with_the_reason(owl, tmp_path):
    import shutil

    from vl_tracker_core.grounders.export import export_grounder

    folder, exported = owl["owlv2"]
    with pytest.raises(GrounderError, match="exported 'owlv2' detector, not owlvit"):
        create_grounder("owlvit", exported)
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    data = (broken / "image.onnx").read_bytes()
    (broken / "image.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(GrounderError, match="image.onnx is corrupt"):
        create_grounder("owlv2", broken)
    (broken / "image.onnx").unlink()
    with pytest.raises(GrounderError, match="image graph image.onnx is missing"):
        create_grounder("owlv2", broken)
    (broken / "grounder.json").write_text("{not json")
    with pytest.raises(GrounderError, match="cannot read"):
        create_grounder("owlv2", broken)
    with pytest.raises(GrounderError, match="Grounding DINO fuses text"):
        export_grounder("grounding-dino", folder, tmp_path / "gd")
    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    with pytest.raises(GrounderError, match="notes"):
        export_grounder("owlv2", folder, unrelated)
    assert (unrelated / "keep.txt").read_text() == "mine"


def test_the_tensorrt_grounder_backend_says_what_is_missing(owl):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("TensorRT is installed: this checks the message on machines without it")
    with pytest.raises(GrounderError, match="with tensorrt"):
        create_grounder("owlv2", owl["owlv2"][1], backend="tensorrt")


def test_cli_export_grounder_then_track(owl, tmp_path):
    import cv2

    folder, _ = owl["owlvit"]
    out = tmp_path / "owlvit-onnx"
    cli = [sys.executable, "-m", "vl_tracker_core.cli"]
    proc = subprocess.run(cli + ["export-grounder", "--grounder", "owlvit", "--grounder-model", str(folder),
                                 "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "grounder.json").is_file() and (out / "image.onnx").is_file()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), _frame(i)[:, :, ::-1])
    proc = subprocess.run(cli + ["track", str(frames), "--text", "the red ball", "--backend", "onnxruntime",
                                 "--out", str(tmp_path / "t"), "--grounder", "owlvit", "--grounder-model", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = subprocess.run(cli + ["export-grounder", "--grounder", "owlv2", "--grounder-model", str(tmp_path / "none"),
                                "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and str(tmp_path / "none") in bad.stderr
