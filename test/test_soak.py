"""The soak and load runs of the node's processing path, at small scale, with the shipped model on
onnxruntime (the 10,000-frame figures are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vl_tracker_core.engines import create_engine
from vl_tracker_core.tracker import VLTracker
from vl_tracker_ros.bag_replay import make_pipeline
from vl_tracker_ros.processing import TrackerPipeline
from vl_tracker_ros.rosbags_types import RosbagsMessageFactory
from vl_tracker_ros.soak import DEFAULT_RATES, EXPECTED, SoakOptions, format_soak, load, soak

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def engine(export_dir):
    return create_engine("onnxruntime", export_dir, threads=2)


def _pipeline(engine) -> TrackerPipeline:
    return make_pipeline(overrides={"backend": "onnxruntime"}, engine=engine)


def test_a_soak_tries_every_bad_input_and_nothing_escapes(engine):
    # Rates high enough that 1,000 frames try every kind several times.
    rates = {k: 0.75 / len(DEFAULT_RATES) for k in DEFAULT_RATES}
    report = soak(_pipeline(engine), SoakOptions(frames=1000, seed=3, scene_frames=150, width=320, height=240,
                                                 rates=rates))
    assert report.crashes == 0, report.crash_messages
    assert set(report.tried) == set(DEFAULT_RATES)
    assert all(n >= 10 for n in report.tried.values()), report.tried
    # Every kind answered as it should: bad frames and commands refused with a counted diagnostic,
    # good ones used.
    assert report.unexpected == {}, report.answered
    for kind, answers in report.answered.items():
        assert answers == {EXPECTED[kind]: report.tried[kind]}, (kind, answers)
    refused_images = sum(report.tried[k] for k in DEFAULT_RATES if EXPECTED[k] == "refused" and
                         (k.startswith("image_") or k.startswith("compressed_")))
    assert report.pipeline_errors["image"] == refused_images
    assert report.pipeline_errors.get("tracker", 0) == 0
    # Valid frames in between were processed: bad input did not wedge the tracker.
    assert report.frames_processed >= report.valid_frames
    assert report.latency_last_p50_ms > 0 and report.rss_final_mb > 0
    assert report.latency_by_state and all(v["first_frames"] + v["last_frames"] > 0
                                           for v in report.latency_by_state.values())
    table = format_soak(report)
    assert "crashes 0" in table and "image_huge_declared_size" in table


def test_soak_counts_what_escapes_the_pipeline(engine):
    """The control: a pipeline whose frame handling raises is reported as crashing, not hidden."""

    class Broken(TrackerPipeline):
        def on_image(self, msg, **kwargs):
            raise RuntimeError("boom")

    broken = Broken(VLTracker(engine, _pipeline(engine).tracker.params), RosbagsMessageFactory())
    report = soak(broken, SoakOptions(frames=20, seed=1, width=320, height=240, rates={}))
    assert report.crashes == 20 and "boom" in report.crash_messages[0]


def test_callbacks_from_four_threads_keep_the_latest_frame_policy(engine):
    pipeline = _pipeline(engine)
    report = load(pipeline, seconds=4.0, width=320, height=240)
    assert report.escaped == []
    assert report.descriptions_sent > 20 and report.images_sent > 60 and report.param_updates > 10
    assert report.resets > 0
    # Every received frame was processed, dropped for a newer one, or is the one still waiting: no queue.
    assert report.received == report.images_sent
    assert report.processed + report.dropped + report.pending == report.received
    assert report.processed > 0
    # The 5,000-character descriptions among them were refused and counted, not applied.
    assert pipeline.stats.errors["description"] > 0 and len(pipeline.description) <= 1000


def test_soak_command_writes_json_and_exits_0(export_dir, tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "vl_tracker_core.cli", "soak", "--frames", "60", "--model",
                           str(export_dir), "--bad-rate", "0.5", "--load-seconds", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["soak"]["frames"] == 60 and result["soak"]["crashes"] == 0
    assert result["load"]["escaped"] == []
    assert "| input | tried | answered | expected |" in proc.stdout
