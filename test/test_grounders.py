"""Open-vocabulary grounders (OWLv2, OWL-ViT, Grounding DINO) from a local folder, with tiny random models
built here (vl_tracker_core/grounders/random_models.py) and run through the real loading and inference code,
VLTracker and the node's processing path. Real-weight quality is not measured here (no real weights can be
downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.engines import create_engine
from vl_tracker_core.grounders import GROUNDERS, GrounderError, create_grounder
from vl_tracker_core.grounders.random_models import BUILDERS
from vl_tracker_core.tracker import TrackerParams, VLTracker, load_default_params
from vl_tracker_core.trackers.base import TrackState

pytest.importorskip("transformers")
KINDS = [g for g in GROUNDERS if g != "joint"]  # owlv2, owlvit, grounding-dino
W, H = 320, 240


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("detectors")
    return {kind: BUILDERS[kind](root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def engine(export_dir):
    return create_engine("onnxruntime", export_dir, threads=1)


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.full((H, W, 3), 40, np.uint8)
    frame[100:140, 150:190] = (220, 30, 30)
    return np.clip(frame + rng.integers(0, 20, frame.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_a_detector_folder_gives_boxes_in_the_frame(folders, kind):
    grounder = create_grounder(kind, folders[kind])
    found = grounder.detect(_frame(), "the red ball", top_k=10)
    assert 0 < len(found.scores) <= 10
    assert np.all(np.diff(found.scores) <= 0)  # best first
    assert np.all((found.scores >= 0) & (found.scores <= 1))
    b = found.boxes
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 0] + b[:, 2] <= W + 1e-6) and np.all(b[:, 1] + b[:, 3] <= H + 1e-6)
    assert np.all(b[:, 2] >= 2) and np.all(b[:, 3] >= 2)


@pytest.mark.parametrize("kind", KINDS)
def test_the_tracker_grounds_tracks_and_searches_with_a_detector(folders, engine, kind):
    grounder = create_grounder(kind, folders[kind])
    params = TrackerParams.from_dict({**load_default_params(), "ground_threshold": 0.5})
    tracker = VLTracker(engine, params, grounder=grounder)
    tracker.set_target("the red ball")
    result = tracker.step(_frame())
    assert result.state == TrackState.TRACKING and result.box is not None
    # The first grounding's score is the detector's best score (0.73 for the tiny OWL heads).
    best = grounder.detect(_frame(), "the red ball", top_k=engine.config.candidates).scores[0]
    assert result.confidence == pytest.approx(best, abs=1e-6)
    # Re-search goes through the detector too (with the template agreement of our matcher).
    tracker.state = TrackState.SEARCHING
    tracker._since_seen = 0
    result = tracker.step(_frame(1))
    assert result.state in (TrackState.TRACKING, TrackState.SEARCHING)


def test_the_node_pipeline_uses_and_swaps_a_grounder(folders, engine):
    import random

    from vl_tracker_ros.bag_replay import make_pipeline
    from vl_tracker_ros.soak import _Inputs

    pipeline = make_pipeline(overrides={"backend": "onnxruntime", "grounder": "owlv2",
                                        "grounder_model": str(folders["owlv2"])}, engine=engine)
    assert pipeline.tracker.grounder.name == "owlv2"
    inputs = _Inputs(pipeline.factory, random.Random(0))
    assert pipeline.on_description(inputs.string("the red ball"))
    out = pipeline.on_image(inputs.image(_frame()))
    assert out is not None and out.result.state == TrackState.TRACKING
    pipeline.replace_grounder(create_grounder("grounding-dino", folders["grounding-dino"]))
    assert pipeline.tracker.grounder.name == "grounding-dino" and pipeline.tracker.state == TrackState.TRACKING
    pipeline.replace_grounder(None)  # back to our own network
    assert pipeline.on_image(inputs.image(_frame(2))) is not None


def test_bad_grounder_folders_name_the_folder(folders, tmp_path):
    with pytest.raises(GrounderError, match="does not exist"):
        create_grounder("owlv2", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GrounderError, match="no config.json"):
        create_grounder("owlv2", tmp_path / "empty")
    with pytest.raises(GrounderError, match=r"holds a 'owlvit' model, not owlv2"):
        create_grounder("owlv2", folders["owlvit"])
    broken = tmp_path / "broken"
    shutil.copytree(folders["owlv2"], broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(GrounderError, match=f"cannot load the owlv2 weights of {broken}"):
        create_grounder("owlv2", broken)
    with pytest.raises(GrounderError, match="needs a model folder"):
        create_grounder("owlvit", None)
    with pytest.raises(GrounderError, match="unknown grounder"):
        create_grounder("yolo", folders["owlv2"])


def test_cli_track_with_a_grounder_and_a_bad_folder(folders, tmp_path):
    import subprocess
    import sys

    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"{i:04d}.jpg"), cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
    base = [sys.executable, "-m", "vl_tracker_core.cli", "track", str(frames), "--text", "the red ball"]
    ok = subprocess.run(base + ["--out", str(tmp_path / "t"), "--grounder", "owlvit", "--grounder-model",
                                str(folders["owlvit"])], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    bad = subprocess.run(base + ["--out", str(tmp_path / "t2"), "--grounder", "owlv2", "--grounder-model",
                                 str(tmp_path / "missing")], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and str(tmp_path / "missing") in bad.stderr


def test_bench_grounders_times_each_stage_from_folders(folders, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = [sys.executable, "-m", "vl_tracker_core.cli", "bench-grounders", "--runs", "1", "--threads", "1",
            "--grounders", ",".join(KINDS), "--json", str(out)]
    for kind in KINDS:
        args += ["--grounder-model", str(folders[kind])]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["grounder"] for r in rows] == KINDS
    assert all(r["network_ms"] > 0 and r["total_ms"] >= r["network_ms"] for r in rows)
    assert "| grounder | backend | weights |" in proc.stdout
