"""Export and the onnxruntime / TensorRT backends: parity with torch, no torch at run time, engine cache.

The model is the shipped checkpoint when present, else a random-init ``tiny``
checkpoint (parity does not need a trained model). It is exported once per
session (module fixture).

Measured parity per call (shipped tiny weights and random init, 2-core x86 CPU,
onnxruntime 1.31 vs torch 2.13 eager, 4 sequences): proposal boxes within 4e-5 px,
scores within 1.3e-6, text features within 6e-5 (values up to ~6), trunk features
of the online tracker within 1e-4 (values up to ~10). The per-call tolerances below
leave head-room for other CPUs' kernels. Along a tracked 60-frame sequence (each
step from the same state, see the sequence test) states, boxes and the AUC agree.

TensorRT cannot run here (no GPU, no tensorrt package). Tested without it: the
cache key, stale / corrupt / foreign cache detection and rebuild, the engine
I/O checks, the missing-TensorRT errors, and the whole TensorRT engine class
(tensor-API I/O, device buffers through cuda-python, output order, cache reuse)
against a fake ``tensorrt`` module and a fake CUDA runtime over host memory,
whose "engines" run the exported graphs with onnxruntime.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.data.crops import crop_around, letterbox
from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
from vl_tracker_core.engines import artifacts, create_engine, resolve
from vl_tracker_core.engines import tensorrt_engine as trt_mod
from vl_tracker_core.engines.artifacts import ExportError, load_manifest
from vl_tracker_core.models.checkpoint import WEIGHTS, sha256_file
from vl_tracker_core.models.config import ModelConfig
from vl_tracker_core.trackers.base import TrackState

pytest.importorskip("onnxruntime")

BOX_ATOL_PX = 0.01
PROB_ATOL = 1e-4  # scores, confidence, similarity (all in [0, 1])
HEAT_ATOL = 1e-3  # logits
TEXT_ATOL = 5e-4
FEATURE_ATOL = 2e-3  # trunk maps (values up to ~10)
AUC_TOLERANCE = 0.005
FRAMES = 60
SCENE = SceneConfig(width=320, height=240)


@pytest.fixture(scope="module")
def torch_engine(checkpoint):
    return create_engine("torch", checkpoint, threads=2)


@pytest.fixture(scope="module")
def ort_engine(export_dir):
    return create_engine("onnxruntime", export_dir, threads=2)


# ---------------------------------------------------------------------------------------------- export
def test_manifest_describes_static_graphs_and_hashes(export_dir, checkpoint):
    m = load_manifest(export_dir, verify_files=True)
    cfg = m["config"]
    L, H = cfg["max_text_tokens"], cfg["text_dim"]
    assert m["weights_sha256"] == sha256_file(checkpoint / WEIGHTS)
    assert set(m["graphs"]) == {"text", "propose", "match", "verify", "trunk_crop", "trunk_window"}
    text = m["graphs"]["text"]
    assert text["inputs"] == [{"name": "input_ids", "shape": [1, L], "dtype": "int64"},
                              {"name": "attention_mask", "shape": [1, L], "dtype": "int64"}]
    assert text["outputs"] == [{"name": "last_hidden_state", "shape": [1, L, H], "dtype": "float32"}]
    s, r = cfg["online_crop_size"], cfg["redetect_size"]
    for graph, batch, size in (("trunk_crop", 1, s), ("trunk_window", 1, r)):
        trunk = m["graphs"][graph]
        assert trunk["inputs"] == [{"name": "patches", "shape": [batch, 3, size, size], "dtype": "float32"}]
        assert [o["name"] for o in trunk["outputs"]] == ["f8", "f16"]
        assert [o["shape"][2:] for o in trunk["outputs"]] == [[size // 8] * 2, [size // 16] * 2]
    assert m["graphs"]["propose"]["inputs"][0]["shape"] == [1, 3, cfg["ground_size"], cfg["ground_size"]]
    k, c = cfg["candidates"], cfg["candidate_size"]
    match = m["graphs"]["match"]
    assert [i["name"] for i in match["inputs"]] == ["text_tokens", "text_mask", "crops", "geometry", "cand_mask",
                                                     "template_crop"]
    assert match["inputs"][2]["shape"] == [1, k, 3, c, c]
    assert [o["shape"] for o in match["outputs"]] == [[1, k + 1], [1, k]]
    verify = m["graphs"]["verify"]
    assert [i["shape"] for i in verify["inputs"][2:5]] == [[1, 1, 3, c, c], [1, 1, 6], [1, 1]]
    assert [o["shape"] for o in verify["outputs"]] == [[1, 2], [1, 1]]
    for name, g in m["graphs"].items():
        assert g["sha256"] == sha256_file(export_dir / g["file"]), name
        if g["exporter"] == "legacy":
            assert g["opset"] == 17, name  # the requested opset (the dynamo fallback writes >= 18)
    assert m["opset"] >= 17
    assert (export_dir / "tokenizer" / "tokenizer.json").is_file()
    assert m["text_encoder"]["max_tokens"] == L


def test_exported_graphs_have_no_dynamic_dimensions(export_dir):
    import onnxruntime as ort

    for g in load_manifest(export_dir)["graphs"].values():
        session = ort.InferenceSession(str(export_dir / g["file"]), providers=["CPUExecutionProvider"])
        for arg in [*session.get_inputs(), *session.get_outputs()]:
            assert all(isinstance(d, int) for d in arg.shape), (g["file"], arg.name, arg.shape)


def test_tokenizer_without_transformers_matches_transformers(export_dir):
    from transformers import AutoTokenizer

    from vl_tracker_core.models.text import Tokenizer

    L = load_manifest(export_dir)["config"]["max_text_tokens"]
    texts = ["the red ball", "Café NAÏVE 東京 🎈 x", "hyphen-ated, punct.uation!? 12.5cm",
             "the large blue striped square to the left of the green triangle near the top right corner of it"]
    ids, mask = Tokenizer(export_dir / "tokenizer", L)(texts)
    ref = AutoTokenizer.from_pretrained(str(export_dir / "tokenizer"), local_files_only=True)(
        texts, padding="max_length", truncation=True, max_length=L, return_tensors="np")
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])


def test_load_manifest_names_the_fix_for_missing_or_corrupt_exports(export_dir, tmp_path):
    with pytest.raises(ExportError, match="vl-tracker export"):
        load_manifest(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in export_dir.iterdir():
        target = broken / item.name
        if item.suffix == ".onnx" and item.name != "trunk_crop.onnx":
            target.symlink_to(item)
        elif item.name == "trunk_crop.onnx":
            target.write_bytes(item.read_bytes()[:-10])  # truncated
        elif item.is_dir():
            target.symlink_to(item, target_is_directory=True)
        else:
            target.write_bytes(item.read_bytes())
    with pytest.raises(ExportError, match="trunk_crop.onnx does not match the sha256"):
        load_manifest(broken, verify_files=True)
    with pytest.raises(ExportError, match="trunk_crop.onnx does not match the sha256"):
        create_engine("onnxruntime", broken)


# ---------------------------------------------------------------------------------------------- parity
def test_onnxruntime_matches_torch_on_generated_frames(torch_engine, ort_engine):
    cfg = torch_engine.config
    scene = SyntheticScene(11, FRAMES, SCENE)
    text_t, text_o = torch_engine.encode_text(scene.description), ort_engine.encode_text(scene.description)
    np.testing.assert_array_equal(text_o.mask, text_t.mask)
    np.testing.assert_allclose(text_o.tokens, text_t.tokens, atol=TEXT_ATOL)
    first = scene.render(0)
    box0 = scene.target_box(0)
    template_match, _ = crop_around(first, box0, cfg.candidate_factor, cfg.candidate_size)
    s, r = cfg.online_crop_size, cfg.redetect_size
    for t in range(0, FRAMES, 12):
        frame = scene.render(t)
        box = scene.target_box(t) or box0
        crop, _ = crop_around(frame, box, 4.0, s)
        window, _ = crop_around(frame, box, 6.0, r)
        for patches in (crop[None], window[None]):
            for ref, got, tap in zip(torch_engine.features(patches), ort_engine.features(patches), ("f8", "f16"),
                                     strict=True):
                assert ref.shape == got.shape
                np.testing.assert_allclose(got, ref, atol=FEATURE_ATOL, err_msg=f"{tap} {patches.shape} frame {t}")
        image, _ = letterbox(frame, cfg.ground_size)
        ref, got = torch_engine.propose(image), ort_engine.propose(image)
        np.testing.assert_allclose(got.scores, ref.scores, atol=PROB_ATOL, err_msg=f"proposal scores {t}")
        gaps = np.abs(np.diff(ref.scores)) > 10 * PROB_ATOL
        apart = np.ones(len(ref.scores), bool)
        apart[:-1] &= gaps
        apart[1:] &= gaps
        np.testing.assert_allclose(got.boxes[apart], ref.boxes[apart], atol=BOX_ATOL_PX,
                                   err_msg=f"proposal boxes {t}")
        # The matcher on the tracker's own candidates of this frame (full-resolution crops).
        from vl_tracker_core.tracker import VLTracker

        probe = VLTracker(torch_engine)
        boxes, crops, geometry, mask, _ = probe._candidates(frame)
        m_ref = torch_engine.match(text_t, crops, geometry, mask, template_match)
        m_got = ort_engine.match(text_t, crops, geometry, mask, template_match)
        np.testing.assert_allclose(m_got.probs, m_ref.probs, atol=PROB_ATOL, err_msg=f"match probs {t}")
        np.testing.assert_allclose(m_got.none, m_ref.none, atol=PROB_ATOL, err_msg=f"match none {t}")
        np.testing.assert_allclose(m_got.template_sim, m_ref.template_sim, atol=PROB_ATOL,
                                   err_msg=f"template agreement {t}")
        # The verifier's one-candidate graph answers as the K-candidate one with the others masked out.
        alone = np.zeros_like(mask)
        alone[0] = 1.0
        padded = ort_engine.match(text_t, crops, geometry, alone, template_match)
        for engine in (torch_engine, ort_engine):
            one = engine.match(text_t, crops[:1], geometry[:1], alone[:1], template_match)
            assert one.probs.shape == (1,) and one.template_sim.shape == (1,)
            np.testing.assert_allclose(one.probs, padded.probs[:1], atol=PROB_ATOL, err_msg=f"verify probs {t}")
            np.testing.assert_allclose(one.none, padded.none, atol=PROB_ATOL, err_msg=f"verify none {t}")
            np.testing.assert_allclose(one.template_sim, padded.template_sim[:1], atol=PROB_ATOL,
                                       err_msg=f"verify template agreement {t}")


def test_a_tracked_sequence_gives_the_same_result_step_by_step(torch_engine, ort_engine):
    """Both backends along one real trajectory: at every frame the onnxruntime tracker starts from the torch
    tracker's state (box, online model, template crop, smoothed score, counters) and takes the same step.
    Their boxes, states and the sequence's AUC must agree. Started from the description alone, so grounding,
    tracking and (where the target is lost) the re-search with its verification passes all run.

    Why not two trackers each left to run on their own: measured on this sequence, per-call outputs agree to
    1e-6, yet on frame 7 the tracking pass sees two heat peaks 0.06 apart, and a 0.01-px difference in where
    the search crop was cut from (cv2.warpAffine quantises sub-pixel offsets) decides which object a free-
    running tracker follows from then on (AUC 0.66 against 0.81). That is the tracker's sensitivity, not the
    backend's; this test measures the backend.
    """
    import copy

    from vl_tracker_core.eval.metrics import evaluate_sequence
    from vl_tracker_core.tracker import TrackerParams, VLTracker, load_default_params

    scene = SyntheticScene(4, FRAMES, SCENE)
    gt = np.asarray([scene.target_box(t) or (np.nan,) * 4 for t in range(FRAMES)], float)
    lead = VLTracker(torch_engine, TrackerParams.from_dict(load_default_params()))
    boxes_t, boxes_o, states_t, states_o = [], [], [], []
    for t in range(FRAMES):
        frame = scene.render(t)
        if t == 0:
            lead.set_target(scene.description)
        follow = copy.copy(lead)
        follow.engine = ort_engine
        features, lead.online.features = lead.online.features, None
        follow.online = copy.deepcopy(lead.online)  # the learned filters, their history, the box
        lead.online.features, follow.online.features = features, ort_engine.features
        r_o = follow.step(frame)
        r_t = lead.step(frame)
        for boxes, states, r in ((boxes_t, states_t, r_t), (boxes_o, states_o, r_o)):
            boxes.append(r.box if r.box is not None else (np.nan,) * 4)
            states.append(int(r.state))
    boxes_t, boxes_o = np.asarray(boxes_t, float), np.asarray(boxes_o, float)
    assert states_t == states_o
    assert states_t.count(int(TrackState.TRACKING)) >= 2
    both = np.isfinite(boxes_t).all(1)
    assert (np.isfinite(boxes_o).all(1) == both).all()
    assert np.abs(boxes_t[both] - boxes_o[both]).max(initial=0.0) <= 10 * BOX_ATOL_PX
    auc_t = evaluate_sequence(boxes_t, gt).auc
    auc_o = evaluate_sequence(boxes_o, gt).auc
    assert abs(auc_t - auc_o) <= AUC_TOLERANCE, (auc_t, auc_o)


def test_runtime_path_does_not_import_torch(export_dir):
    script = textwrap.dedent(f"""
        import json, sys
        from vl_tracker_core.data.synthetic import SceneConfig, SyntheticScene
        from vl_tracker_core.engines import create_engine
        from vl_tracker_core.tracker import VLTracker
        engine = create_engine("onnxruntime", {str(export_dir)!r}, threads=1)
        scene = SyntheticScene(5, 6, SceneConfig(width=320, height=240))
        tracker = VLTracker(engine)
        states = [int(tracker.initialize(scene.render(0), scene.description).state)]
        states += [int(tracker.step(scene.render(t)).state) for t in range(1, 6)]
        print(json.dumps({{"torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                          "states": states}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["transformers"] is False
    assert len(out["states"]) == 6


# ---------------------------------------------------------------------------------------------- default export
def test_default_export_is_keyed_by_weights_and_config_and_honours_the_cache_env(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("VL_TRACKER_CACHE", str(tmp_path / "cache"))
    config = ModelConfig.load(checkpoint / "config.json")
    name = f"{sha256_file(checkpoint / WEIGHTS)[:16]}-{artifacts.config_digest(config)[:8]}"
    assert artifacts.default_export_dir(checkpoint) == tmp_path / "cache" / "export" / name
    # The same weights with another input size export static shapes of their own: another folder.
    other = dataclasses.replace(config, online_crop_size=config.online_crop_size + 16,
                                redetect_size=max(config.redetect_size, config.online_crop_size + 16))
    assert artifacts.default_export_dir(checkpoint, config=other) != artifacts.default_export_dir(checkpoint)


def test_checkpoint_model_uses_a_matching_cached_export_and_re_exports_a_stale_one(checkpoint, export_dir, tmp_path,
                                                                                   monkeypatch, caplog):
    import vl_tracker_core.engines.export as export_module

    monkeypatch.setenv("VL_TRACKER_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(export_module, "export_model", lambda out, model, opset=17: calls.append((out, model)))
    # Nothing cached: exported on first use, loudly.
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        target = resolve.resolve_export_dir(checkpoint)
    assert calls == [(target, checkpoint)]
    assert "vl-tracker export" in caplog.text
    # A matching export in the cache is used as is.
    target.parent.mkdir(parents=True)
    target.symlink_to(export_dir, target_is_directory=True)
    calls.clear()
    assert resolve.resolve_export_dir(checkpoint) == target
    assert resolve.resolve_export_dir(export_dir) == export_dir
    assert calls == []
    # An export of other weights under that name is stale: exported again.
    target.unlink()
    stale = target
    stale.mkdir()
    for item in export_dir.iterdir():
        (stale / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (stale / "manifest.json").unlink()
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest["weights_sha256"] = "0" * 64
    (stale / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        resolve.resolve_export_dir(checkpoint)
    assert calls == [(target, checkpoint)]
    assert "other weights" in caplog.text
    # So is one whose config differs (same weights, another crop size: other static shapes).
    manifest["weights_sha256"] = sha256_file(checkpoint / WEIGHTS)
    manifest["config"] = {**manifest["config"], "online_crop_size": manifest["config"]["online_crop_size"] + 16}
    (stale / "manifest.json").write_text(json.dumps(manifest))
    calls.clear()
    resolve.resolve_export_dir(checkpoint)
    assert calls == [(target, checkpoint)]


def test_a_folder_that_is_neither_export_nor_checkpoint_is_refused(tmp_path):
    with pytest.raises(ExportError, match="neither an export folder"):
        create_engine("onnxruntime", tmp_path)


def test_onnxruntime_device_is_checked_before_loading(tmp_path):
    import onnxruntime as ort

    with pytest.raises(ValueError, match="choose cpu, cuda or cuda:N"):
        create_engine("onnxruntime", tmp_path, device="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
            create_engine("onnxruntime", tmp_path, device="cuda:0")


# ---------------------------------------------------------------------------------------------- TensorRT (no GPU)
def _fields(manifest, graph="trunk_crop", version="10.3.0", gpu="NVIDIA Jetson Orin", precision="fp16"):
    return trt_mod.cache_fields(manifest, graph, version, gpu, precision)


@pytest.fixture
def manifest(export_dir):
    return load_manifest(export_dir)


def test_missing_tensorrt_gives_an_actionable_error(export_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail even where it is installed
    with pytest.raises(RuntimeError, match=r"pip install 'vl_tracker\[tensorrt\]'"):
        trt_mod.import_tensorrt()
    with pytest.raises(RuntimeError, match="needs TensorRT 10"):
        create_engine("tensorrt", export_dir)
    from vl_tracker_core.cli import main

    assert main(["build-engine", "--export", str(export_dir)]) == 2


def test_old_tensorrt_is_refused(monkeypatch):
    class _Old:
        __version__ = "8.6.1"

    monkeypatch.setitem(sys.modules, "tensorrt", _Old())
    with pytest.raises(RuntimeError, match="TensorRT 8.6.1 is installed"):
        trt_mod.import_tensorrt()


def test_cache_key_changes_with_every_field(manifest):
    base = _fields(manifest)
    key = trt_mod.engine_cache_key(base)
    assert key == trt_mod.engine_cache_key(_fields(manifest))
    variants = [_fields(manifest, version="10.4.0"), _fields(manifest, gpu="NVIDIA GeForce RTX 4090"),
                _fields(manifest, precision="fp32"), _fields(manifest, graph="match"),
                {**base, "weights_sha256": "f" * 64}]
    keys = {trt_mod.engine_cache_key(v) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert base["weights_sha256"] == manifest["weights_sha256"]
    # The text encoder is always built in fp32, whatever the requested precision.
    assert _fields(manifest, graph="text", precision="fp16")["precision"] == "fp32"
    entry = trt_mod.CacheEntry.for_fields(Path("/c"), base)
    assert entry.engine.name == f"trunk_crop-fp16-{key[:16]}.engine" and entry.meta.suffix == ".json"
    with pytest.raises(ValueError, match="precision 'int8'"):
        _fields(manifest, precision="int8")


class _FakeTRT:
    """Stands in for TensorRT's build and deserialize: an 'engine' is its bytes, decoded."""

    def __init__(self) -> None:
        self.builds = 0
        self.refuse = False

    def build(self) -> bytes:
        self.builds += 1
        return b"ENGINE-%d" % self.builds

    def deserialize(self, blob: bytes) -> str | None:
        if self.refuse or not blob.startswith(b"ENGINE"):
            return None
        return blob.decode()


def test_engine_cache_builds_once_then_reuses(manifest, tmp_path, caplog):
    fake, fields = _FakeTRT(), _fields(manifest)
    entry = trt_mod.CacheEntry.for_fields(tmp_path, fields)
    assert trt_mod.cached_engine_problem(entry, fields) == "not built yet"
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        assert trt_mod.obtain_engine(entry, fields, fake.build, fake.deserialize) == "ENGINE-1"
    assert "building the TensorRT fp16 engine for the trunk_crop graph" in caplog.text
    assert "build-engine" in caplog.text and "built the TensorRT fp16 engine" in caplog.text
    assert json.loads(entry.meta.read_text())["fields"] == fields
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        assert trt_mod.obtain_engine(entry, fields, fake.build, fake.deserialize) == "ENGINE-1"
    assert fake.builds == 1 and caplog.text == ""
    assert trt_mod.obtain_engine(entry, fields, fake.build, fake.deserialize, rebuild=True) == "ENGINE-2"


@pytest.mark.parametrize("damage, reason", [
    ("corrupt", "corrupt"),
    ("no_meta", "missing or unreadable"),
    ("bad_meta", "missing or unreadable"),
    ("foreign_gpu", "stale or foreign: built for gpu 'Tesla T4'"),
    ("old_trt", "stale or foreign: built for tensorrt '10.0.1'"),
    ("other_weights", "stale or foreign: built for weights_sha256"),
    ("undeserializable", "TensorRT could not load it"),
    ("deserialize_raises", "TensorRT could not load it (RuntimeError: version tag mismatch)"),
])
def test_bad_cached_engines_are_rebuilt_with_a_warning(manifest, tmp_path, caplog, damage, reason):
    fake, fields = _FakeTRT(), _fields(manifest)
    entry = trt_mod.CacheEntry.for_fields(tmp_path, fields)
    trt_mod.obtain_engine(entry, fields, fake.build, fake.deserialize)
    meta = json.loads(entry.meta.read_text())

    def raising(blob: bytes) -> str:
        if blob == b"ENGINE-1":
            raise RuntimeError("version tag mismatch")
        return blob.decode()

    deserializers = {"undeserializable": lambda blob: None if blob == b"ENGINE-1" else blob.decode(),
                     "deserialize_raises": raising}
    deserialize = deserializers.get(damage, fake.deserialize)
    if damage == "corrupt":
        entry.engine.write_bytes(b"ENGINE-1 but flipped bits")
    elif damage == "no_meta":
        entry.meta.unlink()
    elif damage == "bad_meta":
        entry.meta.write_text("{not json")
    elif damage in ("foreign_gpu", "old_trt", "other_weights"):
        key, value = {"foreign_gpu": ("gpu", "Tesla T4"), "old_trt": ("tensorrt", "10.0.1"),
                      "other_weights": ("weights_sha256", "a" * 64)}[damage]
        meta["fields"][key] = value  # e.g. a cache folder copied from another machine
        entry.meta.write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        engine = trt_mod.obtain_engine(entry, fields, fake.build, deserialize)
    assert engine == "ENGINE-2" and fake.builds == 2
    assert "is unusable" in caplog.text and reason in caplog.text
    assert trt_mod.cached_engine_problem(entry, fields) is None  # the cache is healthy again


def test_unwritable_cache_still_gives_an_engine_and_a_fresh_build_that_fails_to_load_raises(manifest, tmp_path,
                                                                                              caplog):
    fake, fields = _FakeTRT(), _fields(manifest)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    entry = trt_mod.CacheEntry.for_fields(blocker / "cache", fields)
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        assert trt_mod.obtain_engine(entry, fields, fake.build, fake.deserialize) == "ENGINE-1"
    assert "cannot write the engine cache" in caplog.text
    fake.refuse = True
    with pytest.raises(RuntimeError, match="cannot load the trunk_crop engine it has just built"):
        trt_mod.obtain_engine(trt_mod.CacheEntry.for_fields(tmp_path, fields), fields, fake.build, fake.deserialize)


def test_engine_io_must_match_the_manifest(manifest):
    spec = manifest["graphs"]["trunk_crop"]
    io = {s["name"]: (True, tuple(s["shape"]), np.float32) for s in spec["inputs"]}
    io.update({s["name"]: (False, tuple(s["shape"]), np.float32) for s in spec["outputs"]})
    assert trt_mod.io_mismatch(io, spec) is None
    io["patches"] = (True, (1, 3, 64, 64), np.float32)
    assert "differs from the export" in trt_mod.io_mismatch(io, spec)


# ---------------------------------------------------------------------------------------------- bench
def test_bench_reports_each_backend_from_a_fresh_process(export_dir, tmp_path):
    from vl_tracker_core.engines.bench import run_bench

    lines: list[str] = []
    report = run_bench(["onnxruntime", "tensorrt"], frames=5, model=export_dir, threads=1,
                       json_path=tmp_path / "bench.json", say=lines.append)
    ort = report["onnxruntime"]
    assert ort["available"] and ort["torch_imported"] is False
    for key in ("trunk_crop_ms", "trunk_window_ms", "propose_ms", "match_ms", "verify_ms",
                "searching_ms",
                "grounding_ms", "overhead_ms", "rss_mb", "convert_ms", "text_ms", "total_ms"):
        assert ort[key] > 0, key
    assert report["tensorrt"]["available"] is False and "TensorRT" in report["tensorrt"]["reason"]
    assert json.loads((tmp_path / "bench.json").read_text())["onnxruntime"]["total_ms"] == ort["total_ms"]
    assert ort["total_ms"] >= ort["trunk_crop_ms"]  # a tracking frame runs the trunk at least once
    assert ort["trunk_window_ms"] > ort["trunk_crop_ms"]  # the re-detection window is the larger input
    assert ort["verify_ms"] < ort["match_ms"]  # two crops through the trunk (box, template), not eleven
    table = "\n".join(lines)
    assert "| total per tracking frame (median)" in table and "tensorrt: unavailable" in table


def test_bench_speedups_are_torch_time_over_backend_time():
    from vl_tracker_core.engines.bench import speedups

    results = {"torch": {"available": True, "trunk_crop_ms": 10.0, "searching_ms": 30.0, "total_ms": 12.0,
                         "text_ms": 5.0},
               "onnxruntime": {"available": True, "trunk_crop_ms": 5.0, "searching_ms": 20.0, "total_ms": 6.0,
                               "text_ms": 4.0},
               "tensorrt": {"available": False, "reason": "no GPU"}}
    assert speedups(results) == {"onnxruntime": {"trunk_crop_ms": 2.0, "searching_ms": 1.5, "total_ms": 2.0,
                                                 "text_ms": 1.25}}


def test_cli_rejects_bad_bench_and_export_arguments(tmp_path):
    from vl_tracker_core.cli import main

    assert main(["bench", "--backends", "torch,caffe"]) == 2
    assert main(["export", "--model", str(tmp_path), "--out", str(tmp_path / "x")]) == 2


# ---------------------------------------------------------------------------------------------- TensorRT plumbing
class _FakeCudart:
    """cuda-python's runtime API over host memory: 'device' pointers are host addresses."""

    class cudaError_t:  # noqa: N801 - mirrors cuda-python's names
        cudaSuccess = 0

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.blocks: dict[int, object] = {}
        self.copies: list[int] = []

    def cudaSetDevice(self, device):  # noqa: N802
        return (0,)

    def cudaStreamCreate(self):  # noqa: N802
        return (0, 77)

    def cudaMalloc(self, nbytes):  # noqa: N802
        block = self.ctypes.create_string_buffer(nbytes)
        self.blocks[self.ctypes.addressof(block)] = block
        return (0, self.ctypes.addressof(block))

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        assert stream == 77
        self.ctypes.memmove(dst, src, nbytes)
        self.copies.append(kind)
        return (0,)

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (0,)

    def cudaGetDeviceProperties(self, device):  # noqa: N802
        from types import SimpleNamespace

        return (0, SimpleNamespace(name=b"Fake GPU\x00\x00\x00", major=8, minor=7))

    def cudaGetErrorString(self, err):  # noqa: N802
        return (0, b"fake")

    def cudaFree(self, ptr):  # noqa: N802
        self.blocks.pop(ptr)
        return (0,)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        return (0,)


class _FakeEngine:
    """A 'TensorRT engine' that runs its ONNX graph with onnxruntime, reading and writing device pointers."""

    _TYPES = {"tensor(float)": "FLOAT", "tensor(int64)": "INT64"}

    def __init__(self, onnx_path: str) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        self.io = [(a.name, "in", a) for a in self.session.get_inputs()]
        self.io += [(a.name, "out", a) for a in self.session.get_outputs()]
        self.num_io_tensors = len(self.io)
        self._by_name = {name: (mode, arg) for name, mode, arg in self.io}

    def get_tensor_name(self, i):
        return self.io[i][0]

    def get_tensor_mode(self, name):
        return self._by_name[name][0]

    def get_tensor_shape(self, name):
        return tuple(self._by_name[name][1].shape)

    def get_tensor_dtype(self, name):
        return self._TYPES[self._by_name[name][1].type]

    def create_execution_context(self):
        return _FakeContext(self)


class _FakeContext:
    def __init__(self, engine: _FakeEngine) -> None:
        self.engine, self.addresses = engine, {}

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle):
        import ctypes

        assert stream_handle == 77
        dtypes = {"FLOAT": np.float32, "INT64": np.int64}
        feeds = {}
        for name, mode, arg in self.engine.io:
            if mode == "in":
                dtype = np.dtype(dtypes[self.engine.get_tensor_dtype(name)])
                nbytes = int(np.prod(arg.shape)) * dtype.itemsize
                raw = ctypes.string_at(self.addresses[name], nbytes)
                feeds[name] = np.frombuffer(raw, dtype).reshape(arg.shape).copy()
        outputs = self.engine.session.run(None, feeds)
        for (name, _, _), out in zip([io for io in self.engine.io if io[1] == "out"], outputs, strict=True):
            out = np.ascontiguousarray(out)
            ctypes.memmove(self.addresses[name], out.ctypes.data, out.nbytes)
        return True


def _fake_tensorrt():
    import types

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0.34"

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            pass

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes):
            return _FakeEngine(blob[5:].decode()) if blob.startswith(b"FAKE:") else None

    trt.ILogger = ILogger
    trt.Runtime = Runtime
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    def nptype(t):  # like some 10.x releases: no INT64 in the table
        if t != "FLOAT":
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return np.float32

    trt.nptype = nptype
    return trt


@pytest.fixture
def fake_tensorrt(monkeypatch):
    cudart = _FakeCudart()
    builds: list[str] = []

    def build(trt, logger, onnx_path, precision, workspace_bytes=None):
        builds.append(f"{Path(onnx_path).stem}-{precision}")
        return b"FAKE:" + str(onnx_path).encode()

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    monkeypatch.setattr(trt_mod, "_import_cudart", lambda: cudart)
    monkeypatch.setattr(trt_mod, "build_serialized_engine", build)
    return cudart, builds


def test_tensorrt_engine_plumbing_matches_onnxruntime(fake_tensorrt, export_dir, ort_engine, tmp_path, caplog):
    """Everything of the TensorRT backend but TensorRT and CUDA themselves: engine cache, tensor-API I/O,
    device buffers through cuda-python, output order; the fake engine runs the same ONNX graph."""
    from vl_tracker_core.tracker import VLTracker

    cudart, builds = fake_tensorrt
    with caplog.at_level(logging.WARNING, logger="vl_tracker_core"):
        engine = create_engine("tensorrt", export_dir, precision="fp16", cache_dir=tmp_path,
                               device_memory_kind="cuda-python")
    assert sorted(builds) == ["match-fp16", "propose-fp16", "text-fp32", "trunk_crop-fp16", "trunk_window-fp16",
                              "verify-fp16"]
    assert caplog.text.count("building the TensorRT") == 6
    assert engine.gpu_name == "Fake GPU (sm_87)"
    scene = SyntheticScene(4, 8, SCENE)
    cfg = engine.config
    text = engine.encode_text(scene.description)
    np.testing.assert_array_equal(text.tokens, ort_engine.encode_text(scene.description).tokens)
    frame, box = scene.render(0), scene.target_box(0)
    crop = crop_around(frame, box, 4.0, cfg.online_crop_size)[0]
    for patches in (crop[None], crop_around(frame, box, 6.0, cfg.redetect_size)[0][None]):
        for got, ref in zip(engine.features(patches), ort_engine.features(patches), strict=True):
            np.testing.assert_array_equal(got, ref)
    tracker = VLTracker(engine)
    tracker.initialize(frame, scene.description)
    for t in range(1, 8):
        tracker.step(scene.render(t))
    assert cudart.copies.count(1) > 0 and cudart.copies.count(2) > 0
    engine.close()
    assert cudart.blocks == {}
    # A second start-up uses the cache: nothing is built.
    builds.clear()
    create_engine("tensorrt", export_dir, precision="fp16", cache_dir=tmp_path, device_memory_kind="cuda-python")
    assert builds == []
    # fp32 is another key: built anew (the text engine, fp32 either way, is shared).
    create_engine("tensorrt", export_dir, precision="fp32", cache_dir=tmp_path, device_memory_kind="cuda-python")
    assert sorted(builds) == ["match-fp32", "propose-fp32", "trunk_crop-fp32", "trunk_window-fp32", "verify-fp32"]
