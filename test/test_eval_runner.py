"""The evaluation runner and the CLI around it, on small generated data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.cli import main
from vl_tracker_core.data.readers import load_dataset
from vl_tracker_core.data.synthetic import make_synthetic
from vl_tracker_core.eval.runner import evaluate, parse_shard, read_run, score_results, select_shard
from vl_tracker_core.trackers.registry import create_tracker


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root, "test", sequences=3, frames=24, seed=5, width=240, height=180, progress=False)
    return root


def test_eval_writes_pytracking_style_results_and_a_report(dataset, tmp_path):
    report = evaluate(lambda: create_tracker("csrt"), dataset, tmp_path, title="csrt", progress=False)
    assert report["sequences"] == 3 and report["frames"] == 72
    for key in ("auc", "precision", "norm_precision", "lt_f", "fps"):
        assert 0.0 <= report[key] <= (1.0 if key != "fps" else 1e6), key
    names = sorted(p.name for p in dataset.iterdir())
    for name in names:
        lines = (tmp_path / "results" / f"{name}.txt").read_text().splitlines()
        assert len(lines) == 24 and all(len(line.split(",")) == 4 for line in lines)
        state_lines = (tmp_path / "results" / f"{name}_state.txt").read_text().splitlines()
        assert state_lines[0].startswith("#") and len(state_lines) == 25
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["auc"] == pytest.approx(report["auc"])
    assert set(saved["per_sequence"]) == set(names)
    assert (tmp_path / "success.png").stat().st_size > 1000 and (tmp_path / "report.md").read_text().startswith("#")
    # CSRT starts from the ground-truth box, so frame 1 is exact.
    first = np.array([float(v) for v in (tmp_path / "results" / f"{names[0]}.txt").read_text().split("\n")[0]
                      .split(",")])
    seq = load_dataset(dataset / names[0])[0][0]
    np.testing.assert_allclose(first, seq.gt[0], atol=0.51)


def test_scoring_result_files_again_gives_the_same_report(dataset, tmp_path):
    first = evaluate(lambda: create_tracker("kcf"), dataset, tmp_path / "run", title="kcf", progress=False)
    again = score_results([tmp_path / "run" / "results"], dataset, tmp_path / "rescored", "kcf")
    for key in ("auc", "precision", "norm_precision", "lt_f"):
        assert again[key] == pytest.approx(first[key], abs=1e-4), key


def test_shards_partition_the_dataset_and_merge_back(dataset, tmp_path):
    sequences, _ = load_dataset(dataset)
    parts = [select_shard(sequences, (i, 2)) for i in range(2)]
    assert sorted(s.name for p in parts for s in p) == sorted(s.name for s in sequences)
    assert not {s.name for s in parts[0]} & {s.name for s in parts[1]}
    for i in range(2):
        assert main(["eval", "--tracker", "kcf", "--dataset", str(dataset), "--out", str(tmp_path / f"s{i}"),
                     "--shard", f"{i}/2"]) == 0
    merged = score_results([tmp_path / "s0" / "results", tmp_path / "s1" / "results"], dataset, tmp_path / "m", "kcf")
    whole = evaluate(lambda: create_tracker("kcf"), dataset, tmp_path / "whole", title="kcf", progress=False)
    assert merged["sequences"] == 3 and merged["auc"] == pytest.approx(whole["auc"], abs=1e-4)


@pytest.mark.parametrize("text", ["1/0", "2/2", "a/b", "3"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_a_bad_sequence_is_reported_and_the_rest_still_evaluated(dataset, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(dataset, broken)
    names = sorted(p.name for p in broken.iterdir())
    (broken / names[0] / "groundtruth.txt").write_text("1,2,three,4\n" * 24)  # non-numeric
    for f in (broken / names[1] / "img").iterdir():  # a sequence without frames
        f.unlink()
    frame = sorted((broken / names[2] / "img").iterdir())[5]
    frame.write_bytes(b"not a jpeg")  # one unreadable frame mid-sequence
    report = evaluate(lambda: create_tracker("csrt"), broken, tmp_path / "out", title="csrt", progress=False)
    assert report["sequences"] == 1
    errors = "\n".join(report["errors"])
    assert "groundtruth.txt" in errors and "line 1" in errors
    assert names[1] in errors and "frame" in errors.lower()
    assert frame.name in errors
    run = read_run(tmp_path / "out" / "results", names[2])
    assert np.isnan(run.boxes[5]).all() and len(run.boxes) == 24


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["eval", "--tracker", "csrt", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--tracker", "csrt", "--dataset", str(tmp_path), "--out", str(tmp_path),
                 "--shard", "5/2"]) == 2
    with pytest.raises(SystemExit):
        main(["eval", "--tracker", "nope", "--dataset", str(tmp_path), "--out", str(tmp_path)])


def test_make_synthetic_command_writes_lasot_layout(tmp_path):
    assert main(["make-synthetic", "--out", str(tmp_path), "--split", "val", "--sequences", "1", "--frames", "5",
                 "--width", "160", "--height", "120"]) == 0
    seq_dir = next(tmp_path.iterdir())
    assert len(list((seq_dir / "img").iterdir())) == 5
    assert (seq_dir / "nlp.txt").read_text().strip()
    assert len((seq_dir / "out_of_view.txt").read_text().strip().split(",")) == 5


def test_eval_set_overrides_the_tracker_parameters(dataset, tmp_path, capsys):
    name = sorted(p.name for p in dataset.iterdir())[0]
    runs = {}
    for label, values in (("never_lost", ["lost_threshold=0.0", "drop_threshold=0.0", "accept_threshold=0.01"]),
                          ("always_lost", ["lost_threshold=0.99", "accept_threshold=1.0", "lost_frames=1"])):
        assert main(["eval", "--tracker", "vl", "--init", "bb", "--dataset", str(dataset / name),
                     "--out", str(tmp_path / label), "--set", *values]) == 0
        runs[label] = read_run(tmp_path / label / "results", name)
    # Never lost: a box on every frame. Lost at once: no box after the first frames.
    assert not np.isnan(runs["never_lost"].boxes).any()
    assert np.isnan(runs["always_lost"].boxes[5:]).all()
    assert main(["eval", "--tracker", "vl", "--dataset", str(dataset), "--out", str(tmp_path / "x"),
                 "--set", "no_such=1"]) == 2
    assert "unknown tracker parameters" in capsys.readouterr().err
    assert main(["eval", "--tracker", "kcf", "--dataset", str(dataset), "--out", str(tmp_path / "y"),
                 "--set", "lost_threshold=0.1"]) == 2


REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")
def test_sweep_on_a_named_split_from_the_true_box_with_a_params_file(tmp_path):
    """sweep --split real-train --init bb --params: the split's sequences only (real-val never enters), each
    started from its first box, the file's values under every grid point."""
    out = tmp_path / "sweep"
    params = tmp_path / "params.yaml"
    params.write_text("vl_tracker_node:\n  ros__parameters:\n    tracker:\n      scale_interval: 3\n")
    assert main(["sweep", "--dataset", str(REAL_DEV), "--split", "real-train", "--init", "bb",
                 "--max-sequences", "1", "--params", str(params),
                 "--grid", "learning_rate=0,0.015", "--set", "variant=no_switch", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert result["split"] == "real-train" and result["init"] == "bb" and result["sequences"] == 1
    assert result["base"]["scale_interval"] == 3 and result["base"]["variant"] == "no_switch"
    assert [r["params"]["learning_rate"] for r in result["rows"]] == [0, 0.015]
    names = [p.name for p in (out / "config_000" / "results").glob("*.txt") if "_state" not in p.name]
    assert names == ["dtb70_MountainBike6.txt"]  # real-train's first member
    first = read_run(out / "config_000" / "results", "dtb70_MountainBike6").boxes[0]
    gt = np.loadtxt(REAL_DEV / "dtb70_MountainBike6" / "groundtruth.txt", delimiter=",")[0]
    assert np.allclose(first, gt, atol=1.0)  # started from the true box
    assert main(["sweep", "--dataset", str(REAL_DEV), "--split", "real-nope", "--grid", "lost_threshold=0.3",
                 "--out", str(tmp_path / "x")]) == 2
