"""Dataset readers on the real OTB / TNL2K / LaSOT files in shared/data and on broken synthetic folders."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from vl_tracker_core.data.readers import (
    DatasetError,
    detect_layout,
    load_dataset,
    load_sequence,
    read_groundtruth,
    read_sentence,
)
from vl_tracker_core.data.sequence import FrameReadError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OTB_CROSSING = DATA / "otb_Crossing"
TNL2K_ZIPS = sorted((DATA / "tnl2k_annotations").glob("*.zip"))
LASOT_NLP = DATA / "lasot_language" / "nlp"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real test data {path} is missing (expected shared/data beside the repository, see SOURCES.md)")


def _write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        assert cv2.imwrite(str(folder / name), np.full((8, 8, 3), 127, dtype=np.uint8))


def _lasot_seq(
    root: Path,
    name: str = "cat-1",
    n: int = 3,
    gt_lines: list[str] | None = None,
    sentence: str = "a cat",
    occlusion: str | None = None,
    out_of_view: str | None = None,
    frames: int | None = None,
) -> Path:
    folder = root / name
    _write_frames(folder / "img", [f"{i:08d}.jpg" for i in range(1, (n if frames is None else frames) + 1)])
    lines = gt_lines if gt_lines is not None else [f"{10 + i},{20 + i},30,40" for i in range(n)]
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    (folder / "nlp.txt").write_text(sentence)
    if occlusion is not None:
        (folder / "full_occlusion.txt").write_text(occlusion)
    if out_of_view is not None:
        (folder / "out_of_view.txt").write_text(out_of_view)
    return folder


# --------------------------------------------------------------------------- real OTB


def test_otb_crossing_real_sequence() -> None:
    _need(OTB_CROSSING)
    first_line = (OTB_CROSSING / "groundtruth_rect.txt").read_text().splitlines()[0]
    expected_first = [float(v) for v in first_line.replace("\t", ",").replace(" ", ",").split(",") if v]

    assert detect_layout(OTB_CROSSING) == "otb"
    seq = load_sequence(OTB_CROSSING)
    assert seq.layout == "otb" and seq.name == "otb_Crossing"
    assert len(seq) == 120 and seq.gt.shape == (120, 4)
    assert seq.frames[0].name == "0001.jpg" and seq.frames[-1].name == "0120.jpg"
    np.testing.assert_array_equal(seq.gt[0], expected_first)  # kept as written: no -1 shift
    assert seq.visible.all()
    assert seq.description == ""
    assert seq.warnings == []
    assert seq.read_frame(0).shape == (240, 360, 3)

    sequences, errors = load_dataset(OTB_CROSSING)
    assert errors == [] and [s.name for s in sequences] == ["otb_Crossing"]


# --------------------------------------------------------------------------- real TNL2K annotation zips


def _extract_tnl2k(tmp_path: Path) -> tuple[Path, set[str], set[str]]:
    """Extract every zip into tmp_path/data; return root, names with groundtruth.txt, names without."""
    root = tmp_path / "data"
    with_gt: set[str] = set()
    without_gt: set[str] = set()
    for archive in TNL2K_ZIPS:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(root / archive.stem)
            names = zf.namelist()
        folders = {Path(n).parent for n in names if Path(n).name == "language.txt"}
        for folder in folders:
            (with_gt if str(folder / "groundtruth.txt") in names else without_gt).add(folder.name)
    return root, with_gt, without_gt


def test_tnl2k_zips_annotations_only(tmp_path: Path) -> None:
    if not TNL2K_ZIPS:
        pytest.skip(f"real test data {DATA / 'tnl2k_annotations'}/*.zip is missing (see SOURCES.md)")
    root, with_gt, without_gt = _extract_tnl2k(tmp_path)
    assert with_gt, "the zips should hold sequences with groundtruth.txt"

    sequences, errors = load_dataset(root, require_frames=False)
    assert {s.name for s in sequences} == with_gt
    # Folders in the zips that ship language.txt only are reported, not fatal.
    assert len(errors) == len(without_gt)
    for name in without_gt:
        assert any(name in e and "groundtruth.txt" in e and "does not exist" in e for e in errors), errors

    for seq in sequences:
        assert seq.layout == "tnl2k"
        raw = seq.root.joinpath("language.txt").read_bytes().decode("utf-8-sig")
        assert seq.description == " ".join(line.strip() for line in raw.splitlines() if line.strip())
        assert seq.description == raw.strip()  # every real file is a single line
        gt_lines = [ln for ln in seq.root.joinpath("groundtruth.txt").read_text().splitlines() if ln.strip()]
        assert seq.gt.shape == (len(gt_lines), 4)
        np.testing.assert_array_equal(seq.gt[0], [float(v) for v in gt_lines[0].split(",")])
        assert len(seq) == 0 and any("no frames" in w for w in seq.warnings)
        # "0,0,0,0" rows (target absent) are kept as written and marked not visible.
        zero = (seq.gt[:, 2] <= 0) | (seq.gt[:, 3] <= 0)
        assert not seq.visible[zero].any() and seq.visible[~zero].all()

    # Every language.txt, including those of folders without ground truth, read as plain text.
    sentences = []
    for path in sorted(root.rglob("language.txt")):
        sentence, warnings = read_sentence(path)
        assert sentence == path.read_text().strip() and warnings == [], path
        sentences.append(sentence)
    assert len(sentences) == len(with_gt) + len(without_gt)
    assert any("," in s for s in sentences)  # one real TNL2K sentence holds a comma


def test_tnl2k_zips_require_frames(tmp_path: Path) -> None:
    if not TNL2K_ZIPS:
        pytest.skip(f"real test data {DATA / 'tnl2k_annotations'}/*.zip is missing (see SOURCES.md)")
    root, with_gt, _ = _extract_tnl2k(tmp_path)
    sequences, errors = load_dataset(root)  # require_frames=True: no imgs/ in the zips
    assert sequences == []
    no_frames = [e for e in errors if "has no frames" in e]
    assert len(no_frames) == len(with_gt)
    assert all("imgs" in e for e in no_frames)


def test_tnl2k_real_sequence_with_frames_and_empty_language(tmp_path: Path) -> None:
    if not TNL2K_ZIPS:
        pytest.skip(f"real test data {DATA / 'tnl2k_annotations'}/*.zip is missing (see SOURCES.md)")
    root, with_gt, _ = _extract_tnl2k(tmp_path)
    folder = next(p.parent for p in sorted(root.rglob("groundtruth.txt")) if p.parent.name in with_gt)
    n_gt = len(read_groundtruth(folder / "groundtruth.txt")[0])
    # Frame names that sort wrongly as strings: 1.png, 2.png, ..., 10.png.
    _write_frames(folder / "imgs", [f"{i}.png" for i in range(1, 11)])
    (folder / "language.txt").write_text("")

    seq = load_sequence(folder)
    assert [p.name for p in seq.frames] == [f"{i}.png" for i in range(1, 11)]
    assert len(seq) == 10 and seq.gt.shape == (10, 4)
    assert seq.description == ""
    assert any(str(folder / "language.txt") in w and "empty" in w for w in seq.warnings)
    assert any(f"10 frames but {n_gt} ground-truth boxes" in w for w in seq.warnings)


# --------------------------------------------------------------------------- real LaSOT sentences


def test_all_lasot_sentences_read_directly() -> None:
    _need(LASOT_NLP)
    files = sorted(LASOT_NLP.glob("*.txt"))
    assert len(files) == 1400
    for path in files:
        raw = path.read_bytes().decode("utf-8")
        sentence, warnings = read_sentence(path)
        assert sentence == raw.strip(), path
        assert sentence and warnings == []


def test_all_lasot_sentences_through_lasot_layout(tmp_path: Path) -> None:
    """Every real sentence in a nested <class>/<class>-<n>/ LaSOT folder (annotations only, for speed)."""
    _need(LASOT_NLP)
    expected: dict[str, str] = {}
    for path in sorted(LASOT_NLP.glob("*.txt")):
        name = path.stem
        folder = tmp_path / name.rsplit("-", 1)[0] / name
        folder.mkdir(parents=True)
        (folder / "groundtruth.txt").write_text("1,2,3,4\n5,6,7,8\n")
        (folder / "full_occlusion.txt").write_text("0,1")
        (folder / "out_of_view.txt").write_text("0,0")
        shutil.copyfile(path, folder / "nlp.txt")
        expected[name] = path.read_text().strip()

    sequences, errors = load_dataset(tmp_path, require_frames=False)
    assert errors == []
    assert {s.name: s.description for s in sequences} == expected
    assert all(s.layout == "lasot" and s.visible.tolist() == [True, False] for s in sequences)


def test_lasot_sentence_with_commas(tmp_path: Path) -> None:
    # No real LaSOT sentence holds a comma (checked above), so make some.
    sentence = "black dog, running on grass, next to a ball, 2, 3, 4"
    folder = _lasot_seq(tmp_path, sentence=sentence + "\n", occlusion="0,0,0", out_of_view="0,0,0")
    seq = load_sequence(folder)
    assert seq.description == sentence
    assert seq.warnings == []


# --------------------------------------------------------------------------- synthetic layouts and bad input


def test_lasot_visibility_flags(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, n=5, gt_lines=["1,1,5,5", "1,1,5,5", "1,1,5,5", "0,0,0,0", "1,1,5,5"],
                        occlusion="0,1,0,0,0", out_of_view="0,0,1,0,0")
    assert detect_layout(folder) == "lasot" and detect_layout(tmp_path) == "lasot"
    seq = load_sequence(folder)
    assert seq.visible.tolist() == [True, False, False, False, True]
    np.testing.assert_array_equal(seq.gt[3], [0, 0, 0, 0])  # kept as written
    assert seq.warnings == []


def test_missing_dataset_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=str(missing)):
        load_dataset(missing)
    with pytest.raises(DatasetError, match=str(missing)):
        load_sequence(missing)
    with pytest.raises(DatasetError, match=str(missing)):
        detect_layout(missing)
    assert issubclass(DatasetError, ValueError)


def test_folder_without_sequences(tmp_path: Path) -> None:
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match="no sequence folders"):
        load_dataset(tmp_path)


def test_sequence_without_frames(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, frames=0)
    with pytest.raises(DatasetError, match=f"{folder}.*no frames"):
        load_sequence(folder)
    seq = load_sequence(folder, require_frames=False)
    assert len(seq) == 0 and seq.gt.shape == (3, 4)


def test_non_numeric_groundtruth_line(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, gt_lines=["1,2,3,4", "1,2,3,4", "1,2,x,4"])
    with pytest.raises(DatasetError, match=r"groundtruth\.txt, line 3"):
        load_sequence(folder)


def test_wrong_number_of_values(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, gt_lines=["1,2,3,4", "1,2,3", "1,2,3,4"])
    with pytest.raises(DatasetError, match=r"line 2: expected 4 numbers"):
        load_sequence(folder)


def test_nan_groundtruth_row(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, gt_lines=["1,2,3,4", "NaN,NaN,NaN,NaN", "1,2,nan,4"],
                        occlusion="0,0,0", out_of_view="0,0,0")
    seq = load_sequence(folder)
    assert np.isnan(seq.gt[1:]).all() and np.isfinite(seq.gt[0]).all()
    assert seq.visible.tolist() == [True, False, False]
    assert any("NaN" in w and "line 2" in w for w in seq.warnings)


def test_fewer_gt_lines_than_frames(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, n=3, frames=5, occlusion="0,0,0", out_of_view="0,0,0")
    seq = load_sequence(folder)
    assert len(seq) == 3 and seq.gt.shape == (3, 4)
    assert any("5 frames but 3 ground-truth boxes" in w for w in seq.warnings)


def test_more_gt_lines_than_frames(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, n=4, frames=2, occlusion="0,0,0,0", out_of_view="0,0,0,0")
    seq = load_sequence(folder)
    assert len(seq) == 2 and seq.gt.shape == (2, 4) and seq.visible.shape == (2,)
    assert any("2 frames but 4 ground-truth boxes" in w for w in seq.warnings)


def test_missing_flag_files(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, gt_lines=["1,2,3,4", "0,0,0,0", "1,2,3,4"])
    seq = load_sequence(folder)
    assert seq.visible.tolist() == [True, False, True]
    # Normal for OTB / UAV sources in LaSOT layout: notes, not warnings.
    assert sum("flag file not found" in n for n in seq.notes) == 2 and seq.warnings == []


def test_flag_length_mismatch(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, occlusion="0,1", out_of_view="0,0,0,1,1")
    seq = load_sequence(folder)
    assert seq.visible.tolist() == [True, False, True]
    assert any("full_occlusion.txt: 2 flags for 3" in w for w in seq.warnings)
    assert any("out_of_view.txt: 5 flags for 3" in w for w in seq.warnings)


def test_bad_flag_value(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, occlusion="0,2,0", out_of_view="0,0,0")
    with pytest.raises(DatasetError, match=r"full_occlusion\.txt: flag 2 is '2'"):
        load_sequence(folder)


def test_missing_and_empty_language(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, occlusion="0,0,0", out_of_view="0,0,0")
    (folder / "nlp.txt").write_text("  \n")
    seq = load_sequence(folder)
    assert seq.description == "" and any(str(folder / "nlp.txt") in w and "empty" in w for w in seq.warnings)
    (folder / "nlp.txt").unlink()
    seq = load_sequence(folder, layout="lasot")
    assert seq.description == "" and any("language file not found" in n for n in seq.notes)
    assert not any("language file not found" in w for w in seq.warnings)


def test_nan_lines_flagged_absent_are_a_note_unflagged_ones_a_warning(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, gt_lines=["1,2,3,4", "nan,nan,nan,nan", "1,2,3,4"], occlusion="0,0,0",
                        out_of_view="0,1,0")
    seq = load_sequence(folder)
    assert seq.visible.tolist() == [True, False, True] and seq.warnings == []
    assert any("NaN" in n and "flagged absent" in n for n in seq.notes)
    (folder / "out_of_view.txt").write_text("0,0,0\n")
    seq = load_sequence(folder)
    assert seq.visible.tolist() == [True, False, True]
    assert any("NaN" in w and "line 2" in w for w in seq.warnings)


REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")
def test_real_dev_loads_without_a_warning_storm() -> None:
    sequences, errors = load_dataset(REAL_DEV)
    assert len(sequences) == 15 and errors == []
    assert [w for s in sequences for w in s.warnings] == []
    group = next(s for s in sequences if s.name == "uav123_group2_2")
    assert int((~group.visible).sum()) == 5 and group.description.startswith("person in a white shirt")


def test_unreadable_frame_found_at_read_time(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path, occlusion="0,0,0", out_of_view="0,0,0")
    broken = folder / "img" / "00000002.jpg"
    broken.write_bytes(b"not a jpeg")
    seq = load_sequence(folder)  # listing is fine; decoding is the runner's business
    assert seq.read_frame(0).shape == (8, 8, 3)
    with pytest.raises(FrameReadError, match=str(broken)):
        seq.read_frame(1)


def test_otb_separators_and_language(tmp_path: Path) -> None:
    folder = tmp_path / "Walker"
    _write_frames(folder / "img", [f"{i:04d}.jpg" for i in range(1, 5)])
    (folder / "groundtruth_rect.txt").write_text("1,2,3,4\r\n5\t6\t7\t8\r\n9 10  11 12\n13, 14, 15, 16\n\n")
    seq = load_sequence(folder)
    assert seq.layout == "otb" and seq.description == "" and seq.warnings == []
    np.testing.assert_array_equal(seq.gt, np.arange(1, 17, dtype=float).reshape(4, 4))
    (folder / "language.txt").write_text("a man walking, slowly")
    assert load_sequence(folder).description == "a man walking, slowly"


def test_tnl2k_layout_detection_and_tab_separated_gt(tmp_path: Path) -> None:
    folder = tmp_path / "video_1"
    _write_frames(folder / "imgs", ["00001.jpg", "00002.jpg"])
    (folder / "groundtruth.txt").write_text("1\t2\t3\t4\n5\t6\t7\t8")
    (folder / "language.txt").write_text("the red car")
    assert detect_layout(folder) == "tnl2k"
    seq = load_sequence(folder)
    assert seq.layout == "tnl2k" and seq.description == "the red car" and len(seq) == 2


def test_unknown_layout_and_undetectable_folder(tmp_path: Path) -> None:
    folder = _lasot_seq(tmp_path)
    with pytest.raises(DatasetError, match="unknown layout 'got10k'"):
        load_sequence(folder, layout="got10k")
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "groundtruth.txt").write_text("1,2,3,4\n")
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        load_sequence(odd)


def test_bad_sequence_does_not_stop_the_rest(tmp_path: Path) -> None:
    good = [_lasot_seq(tmp_path / "cat", name=f"cat-{i}", occlusion="0,0,0", out_of_view="0,0,0") for i in (1, 2)]
    bad = _lasot_seq(tmp_path / "dog", name="dog-1", gt_lines=["1,2,3,4", "oops", "1,2,3,4"])
    no_frames = _lasot_seq(tmp_path / "dog", name="dog-2", frames=0)
    sequences, errors = load_dataset(tmp_path)
    assert [s.root for s in sequences] == good
    assert len(errors) == 2
    assert errors[0].startswith(str(bad)) and "line 2" in errors[0]
    assert errors[1].startswith(str(no_frames)) and "no frames" in errors[1]
