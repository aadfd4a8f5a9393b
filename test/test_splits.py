"""The real-video split and the project-written descriptions (vl_tracker_core/resources/real_dev.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vl_tracker_core.data.readers import load_dataset
from vl_tracker_core.data.splits import (
    SplitError,
    apply_split,
    load_descriptions,
    project_descriptions,
    split_members,
    split_names,
)

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"
needs_real_dev = pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")


def test_the_split_is_disjoint_and_names_its_reason():
    assert split_names() == ["real-train", "real-val"]
    train, val = set(split_members("real-train")), set(split_members("real-val"))
    assert train and val and not train & val and len(train | val) == 15
    # The two sequences with a human sentence are validation sequences.
    assert {"uav123_car16_1", "uav123_group2_2"} <= val
    with pytest.raises(SplitError, match="unknown split"):
        split_members("real-test")


@needs_real_dev
def test_project_descriptions_only_where_the_dataset_has_none():
    sequences, _ = load_dataset(REAL_DEV)
    written = project_descriptions()
    assert set(written) | {s.name for s in sequences if s.description} == {s.name for s in sequences}
    for seq in sequences:
        if seq.name in written:
            assert not (seq.root / "nlp.txt").exists(), seq.name  # never beside a real sentence
    chosen, filled = apply_split(sequences, "real-val", written)
    assert [s.name for s in chosen] == split_members("real-val")
    assert "uav123_car16_1" not in filled and set(filled) == {s.name for s in chosen} - {
        "uav123_car16_1", "uav123_group2_2"}
    by_name = {s.name: s for s in chosen}
    assert by_name["uav123_car16_1"].description == "red car in the distance running on the road"
    assert by_name["vot2015_ball1"].description == written["vot2015_ball1"]
    # The loaded sequences themselves are untouched.
    assert next(s for s in sequences if s.name == "vot2015_ball1").description == ""


def test_a_descriptions_file_and_its_errors(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"seq": "the red ball"}))
    assert load_descriptions(str(path)) == {"seq": "the red ball"}
    path.write_text("[1, 2]")
    with pytest.raises(SplitError, match="mapping sequence names"):
        load_descriptions(str(path))
    with pytest.raises(SplitError, match="cannot read"):
        load_descriptions(str(tmp_path / "missing.json"))


def test_a_split_the_folder_cannot_serve_is_an_error(tmp_path):
    with pytest.raises(SplitError, match="lacks"):
        apply_split([], "real-val")


@needs_real_dev
def test_eval_on_real_val_names_its_split_and_the_filled_descriptions(tmp_path):
    out = tmp_path / "kcf"
    proc = subprocess.run([sys.executable, "-m", "vl_tracker_core.cli", "eval", "--tracker", "kcf", "--dataset",
                           str(REAL_DEV), "--split", "real-val", "--descriptions", "project", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "real-val" and report["sequences"] == 6
    assert sorted(report["per_sequence"]) == sorted(split_members("real-val"))
    assert len(report["descriptions_filled_in"]) == 4
    assert "warning" not in proc.stderr.lower(), proc.stderr[-2000:]
