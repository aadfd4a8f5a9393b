"""OPE and long-term metrics: hand-computed cases and a cross-check against the independent got10k toolkit."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from vl_tracker_core.boxes import iou
from vl_tracker_core.eval.metrics import (
    NORM_PRECISION_THRESHOLDS,
    PRECISION_THRESHOLDS,
    SUCCESS_THRESHOLDS,
    DatasetMetrics,
    SequenceInput,
    evaluate_dataset,
    evaluate_sequence,
)
from vl_tracker_core.eval.plots import plot_curves

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OTB_CROSSING_GT = DATA / "otb_Crossing" / "groundtruth_rect.txt"

PERFECT_AUC = 20 / 21  # IoU 1.0 is not > 1.0, the last of the 21 thresholds

def _boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# --------------------------------------------------------------------------- hand-computed cases


def test_thresholds() -> None:
    assert len(SUCCESS_THRESHOLDS) == 21 and SUCCESS_THRESHOLDS[10] == 0.5 and SUCCESS_THRESHOLDS[15] == 0.75
    assert len(PRECISION_THRESHOLDS) == 51 and PRECISION_THRESHOLDS[20] == 20.0
    assert len(NORM_PRECISION_THRESHOLDS) == 51 and NORM_PRECISION_THRESHOLDS[20] == 0.2


def test_perfect_tracker_scores_20_of_21() -> None:
    gt = _boxes((10, 20, 30, 40), (12, 22, 30, 41), (15.5, 25.25, 31.5, 40.75))
    m = evaluate_sequence(gt.copy(), gt)
    assert m.auc == pytest.approx(PERFECT_AUC, abs=1e-15)
    assert m.success_curve[:-1].tolist() == [1.0] * 20 and m.success_curve[-1] == 0.0
    assert m.precision == 1.0 and m.norm_precision == 1.0 and m.op50 == 1.0 and m.op75 == 1.0
    assert m.mean_iou == 1.0
    assert m.lt_f == 1.0 and m.lt_precision == 1.0 and m.lt_recall == 1.0


def test_one_third_overlap_hand_computed() -> None:
    # Shifted by half a width: intersection 5x10, union 150 -> IoU 1/3; centre error 5 px = 0.5 widths.
    m = evaluate_sequence(_boxes((5, 0, 10, 10)), _boxes((0, 0, 10, 10)))
    assert m.iou[0] == pytest.approx(1 / 3)
    assert m.success_curve.tolist() == [1.0] * 7 + [0.0] * 14  # thresholds 0 .. 0.30 are < 1/3
    assert m.auc == pytest.approx(7 / 21)
    assert m.precision_curve.tolist() == [0.0] * 5 + [1.0] * 46  # error 5 <= t from t = 5
    assert m.center_error[0] == 5.0 and m.precision == 1.0
    assert m.norm_precision_curve[49] == 0.0 and m.norm_precision_curve[50] == 1.0 and m.norm_precision == 0.0
    assert m.op50 == 0.0


def test_absent_frames_stay_in_the_denominator() -> None:
    gt = _boxes((0, 0, 10, 10), (1, 1, 10, 10), (2, 2, 10, 10), (3, 3, 10, 10))
    pred = gt.copy()
    pred[3] = (50, 50, 10, 10)  # whatever is said on the absent frame is not a hit
    visible = np.array([True, True, True, False])
    m = evaluate_sequence(pred, gt, visible)
    assert m.num_present == 3
    assert m.auc == pytest.approx(0.75 * PERFECT_AUC)
    assert m.precision == 0.75 and m.norm_precision == 0.75 and m.op50 == 0.75
    assert np.isnan(m.iou[3]) and np.isnan(m.center_error[3])
    # pytracking's rule for non-LaSOT datasets: divide by present frames.
    m2 = evaluate_sequence(pred, gt, visible, divide_by_all_frames=False)
    assert m2.auc == pytest.approx(PERFECT_AUC) and m2.precision == 1.0


def test_zero_size_gt_counts_as_absent() -> None:
    gt = _boxes((0, 0, 10, 10), (0, 0, 0, 0), (np.nan, np.nan, np.nan, np.nan))
    m = evaluate_sequence(gt.copy(), gt)  # visible defaults to all True; bad GT rows are absent anyway
    assert m.num_present == 1 and m.precision == pytest.approx(1 / 3)


def test_nan_and_zero_size_predictions_are_misses() -> None:
    gt = _boxes((0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10))
    pred = gt.copy()
    pred[1] = np.nan  # tracker reported no box
    pred[2] = (0, 0, 0, 10)  # zero width: pytracking would copy the previous box, we score a miss
    m = evaluate_sequence(pred, gt)
    assert m.iou.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert m.center_error[1] == np.inf and m.center_error[2] == np.inf
    assert m.auc == pytest.approx(0.5 * PERFECT_AUC) and m.precision == 0.5 and m.norm_precision == 0.5


def test_first_frame_from_gt() -> None:
    gt = _boxes((0, 0, 10, 10), (0, 0, 10, 10))
    pred = np.full((2, 4), np.nan)
    assert evaluate_sequence(pred, gt).auc == 0.0
    m = evaluate_sequence(pred, gt, first_frame_from_gt=True)
    assert m.auc == pytest.approx(0.5 * PERFECT_AUC) and m.precision == 0.5


def test_bad_shapes_raise_clear_errors() -> None:
    gt = _boxes((0, 0, 10, 10), (0, 0, 10, 10))
    with pytest.raises(ValueError, match="1 predicted boxes for 2 ground-truth boxes"):
        evaluate_sequence(gt[:1], gt)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        evaluate_sequence(np.zeros((2, 3)), gt)
    with pytest.raises(ValueError, match="3 visibility flags"):
        evaluate_sequence(gt, gt, np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="absent on every frame"):
        evaluate_sequence(gt, gt, np.zeros(2, dtype=bool), divide_by_all_frames=False)
    with pytest.raises(ValueError, match="no sequences"):
        evaluate_dataset([])


def test_dataset_mean_is_per_sequence() -> None:
    short = SequenceInput(pred=_boxes((0, 0, 10, 10)), gt=_boxes((0, 0, 10, 10)), name="short")
    long_gt = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    long = SequenceInput(pred=np.full((3, 4), np.nan), gt=long_gt, name="long")
    d = evaluate_dataset([short, long])
    # Frame-weighted would be 1/4; pytracking and got10k weigh every sequence the same.
    assert d.auc == pytest.approx(0.5 * PERFECT_AUC) and d.precision == 0.5
    assert d.num_sequences == 2 and [s.name for s in d.sequences] == ["short", "long"]
    assert d.success_curve.shape == (21,) and d.precision_curve.shape == (51,) and d.norm_precision_curve.shape == (51,)
    summary = d.summary()
    assert set(summary) >= {"auc", "precision", "norm_precision", "op50", "op75", "lt_f", "lt_threshold"}
    # Pre-computed SequenceMetrics give the same result.
    again = evaluate_dataset([evaluate_sequence(s.pred, s.gt, name=s.name) for s in (short, long)])
    assert again.summary() == pytest.approx(summary, nan_ok=True)


# --------------------------------------------------------------------------- long-term metrics


def _lt_case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.tile([10.0, 10.0, 20.0, 20.0], (10, 1))
    visible = np.array([True] * 5 + [False] * 5)
    return gt, visible


def test_saying_absent_beats_a_wrong_box() -> None:
    gt, visible = _lt_case()
    honest = gt.copy()
    honest[5:] = np.nan  # "target absent": no box
    guesser = gt.copy()
    guesser[5:] = (100, 100, 20, 20)  # a confident box where there is nothing

    m_honest = evaluate_sequence(honest, gt, visible)
    m_guess = evaluate_sequence(guesser, gt, visible)
    assert (m_honest.lt_precision, m_honest.lt_recall, m_honest.lt_f) == (1.0, 1.0, 1.0)
    assert m_guess.lt_precision == 0.5 and m_guess.lt_recall == 1.0
    assert m_guess.lt_f == pytest.approx(2 / 3)
    # Short-term scores cannot tell them apart: absent frames never count.
    assert m_honest.auc == m_guess.auc

    d = evaluate_dataset([SequenceInput(honest, gt, visible), SequenceInput(guesser, gt, visible)])
    assert d.lt_precision == pytest.approx(0.75) and d.lt_recall == 1.0
    assert d.lt_f == pytest.approx(2 * 0.75 / 1.75)


def test_confidence_threshold_recovers_absence() -> None:
    gt, visible = _lt_case()
    pred = gt.copy()
    pred[5:] = (100, 100, 20, 20)
    confidence = np.array([0.9] * 5 + [0.2] * 5)  # the wrong boxes come with low confidence
    m = evaluate_sequence(pred, gt, visible, confidence)
    assert m.lt_f == 1.0 and 0.2 < m.lt_threshold <= 0.9
    # Thresholding above every confidence predicts nothing: Pr undefined there, Re 0.
    d = evaluate_dataset([SequenceInput(pred, gt, visible, confidence)])
    above = d.lt_thresholds > 0.9
    assert np.isnan(d.lt_precision_curve[above]).all() and (d.lt_recall_curve[above] == 0).all()
    assert d.lt_f == 1.0 and 0.2 < d.lt_threshold <= 0.9


def test_lt_recall_counts_missing_predictions_as_zero() -> None:
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (4, 1))
    pred = gt.copy()
    pred[2:] = np.nan
    m = evaluate_sequence(pred, gt)
    assert m.lt_precision == 1.0 and m.lt_recall == 0.5 and m.lt_f == pytest.approx(2 / 3)


def test_lt_nothing_predicted() -> None:
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (3, 1))
    m = evaluate_sequence(np.full((3, 4), np.nan), gt)
    assert m.lt_f == 0.0 and np.isnan(m.lt_threshold)


# --------------------------------------------------------------------------- plots


def test_plot_curves(tmp_path: Path) -> None:
    gt = np.tile([0.0, 0.0, 10.0, 10.0], (4, 1))
    good = evaluate_dataset([SequenceInput(gt.copy(), gt)])
    bad = evaluate_dataset([SequenceInput(gt + 3.0, gt)])
    paths = plot_curves({"good": good, "bad": bad}, tmp_path / "plots")
    assert [p.name for p in paths] == ["success.png", "precision.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="at least one tracker"):
        plot_curves({}, tmp_path)


# --------------------------------------------------------------------------- cross-check with got10k


def _got10k_metrics():
    return pytest.importorskip("got10k.utils.metrics", reason="got10k (the test extra) is not installed")


def _got10k_scores(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, np.ndarray, np.ndarray]:
    """got10k's ExperimentOTB.report scoring, on top of got10k's own rect_iou / center_error.

    Per sequence: success = mean over frames of ``ious > thr`` for thr in
    linspace(0, 1, 21), precision = mean of ``center_errors <= thr`` for thr in
    0..50; curves averaged over sequences; score = mean(success), precision[20].
    (got10k's report also sets the first box to the GT; callers pass pairs
    prepared accordingly.)
    """
    got10k_metrics = _got10k_metrics()
    succ, prec = [], []
    for pred, gt in pairs:
        ious = got10k_metrics.rect_iou(pred.copy(), gt.copy())
        errors = got10k_metrics.center_error(pred.copy(), gt.copy())
        succ.append(np.mean(ious[:, None] > np.linspace(0, 1, 21)[None, :], axis=0))
        prec.append(np.mean(errors[:, None] <= np.arange(0, 51)[None, :], axis=0))
    succ_curve, prec_curve = np.mean(succ, axis=0), np.mean(prec, axis=0)
    return float(np.mean(succ_curve)), float(prec_curve[20]), succ_curve, prec_curve


def _random_pairs(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(25):
        n = int(rng.integers(30, 300))
        gt = np.column_stack([rng.uniform(0, 600, (n, 2)), rng.uniform(5, 200, (n, 2))])
        noise = rng.choice([0.5, 3.0, 15.0, 60.0])  # from near-perfect to mostly lost
        pred = gt + rng.normal(0, noise, gt.shape)
        pred[:, 2:] = np.abs(pred[:, 2:]) + 0.5
        pairs.append((pred, gt))
    return pairs


def _crossing_pairs(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if not OTB_CROSSING_GT.exists():
        pytest.skip(f"real test data {OTB_CROSSING_GT} is missing (see shared/data/SOURCES.md)")
    gt = np.loadtxt(OTB_CROSSING_GT, delimiter=",")
    rng = np.random.default_rng(seed)
    pairs = []
    for noise in (0.0, 1.0, 2.0, 4.0, 8.0, 16.0):
        pred = gt + rng.normal(0, noise, gt.shape)
        pred[:, 2:] = np.maximum(pred[:, 2:], 1.0)
        pairs.append((np.round(pred), gt))  # integer boxes, as trackers' result files usually hold
        pairs.append((pred, gt))  # and sub-pixel ones
    return pairs


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Show an agreement figure in the normal test output (quoted in the README)."""
    with capsys.disabled():
        print(f"\n[got10k agreement] {line}")


def _compare(
    capsys: pytest.CaptureFixture[str], label: str, pairs: list[tuple[np.ndarray, np.ndarray]], pixel_inclusive: bool
) -> tuple[float, float]:
    auc_ref, p20_ref, succ_ref, prec_ref = _got10k_scores(pairs)
    ours = evaluate_dataset([SequenceInput(p, g) for p, g in pairs], pixel_inclusive=pixel_inclusive)
    d_auc = abs(ours.auc - auc_ref)
    d_p20 = abs(ours.precision - p20_ref)
    d_curves = max(np.abs(ours.success_curve - succ_ref).max(), np.abs(ours.precision_curve - prec_ref).max())
    _report(
        capsys,
        f"{label}, pixel_inclusive={pixel_inclusive}: {len(pairs)} seqs, "
        f"AUC ours {ours.auc:.12f} got10k {auc_ref:.12f} |diff| {d_auc:.1e}; "
        f"P@20 ours {ours.precision:.12f} got10k {p20_ref:.12f} |diff| {d_p20:.1e}; max curve |diff| {d_curves:.1e}"
    )
    return d_auc, d_p20


@pytest.mark.parametrize("pixel_inclusive", [False, True])
def test_matches_got10k_on_random_boxes(pixel_inclusive: bool, capsys: pytest.CaptureFixture[str]) -> None:
    d_auc, d_p20 = _compare(capsys, "random boxes", _random_pairs(seed=7), pixel_inclusive)
    assert d_auc <= 1e-9 and d_p20 <= 1e-9


@pytest.mark.parametrize("pixel_inclusive", [False, True])
def test_matches_got10k_on_perturbed_otb_crossing(pixel_inclusive: bool, capsys: pytest.CaptureFixture[str]) -> None:
    d_auc, d_p20 = _compare(capsys, "perturbed OTB Crossing", _crossing_pairs(seed=3), pixel_inclusive)
    assert d_auc <= 1e-9 and d_p20 <= 1e-9


def test_pixel_inclusive_iou_equals_continuous_iou(capsys: pytest.CaptureFixture[str]) -> None:
    """The +1/-1 of the pixel-inclusive IoU cancel: min(a-1, b-1) - t + 1 == min(a, b) - t.

    So pytracking's IoU and got10k's continuous IoU are the same number up to
    float rounding (and got10k's 2.2e-16 in the denominator); only a value
    sitting exactly on a threshold could ever be counted differently.
    """
    pred = np.concatenate([p for p, _ in _random_pairs(seed=11)])
    gt = np.concatenate([g for _, g in _random_pairs(seed=11)])
    inclusive = iou(pred, gt, pixel_inclusive=True)
    continuous = iou(pred, gt, pixel_inclusive=False)
    reference = _got10k_metrics().rect_iou(pred.copy(), gt.copy())
    d_inc, d_cont = np.abs(inclusive - reference).max(), np.abs(continuous - reference).max()
    _report(
        capsys,
        f"per-frame IoU on {len(pred)} random boxes: max |pixel-inclusive - got10k| {d_inc:.1e}, "
        f"max |continuous - got10k| {d_cont:.1e}"
    )
    assert d_inc < 1e-12 and d_cont < 1e-12


def test_matches_got10k_report_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run got10k's own ExperimentOTB.report on result files for the perturbed Crossing sequence."""
    try:
        otb = importlib.import_module("got10k.experiments.otb")
    except ImportError as exc:  # got10k's datasets import `six`, which got10k does not declare
        pytest.skip(f"got10k.experiments cannot be imported ({exc}); install `six` to run got10k's report")
    pairs = _crossing_pairs(seed=5)
    names = [f"seq{i}" for i in range(len(pairs))]
    experiment = object.__new__(otb.ExperimentOTB)  # skip __init__: it wants to download OTB
    experiment.result_dir = str(tmp_path / "results")
    experiment.report_dir = str(tmp_path / "reports")
    experiment.nbins_iou, experiment.nbins_ce = 21, 51
    experiment.plot_curves = lambda tracker_names: None  # plotting is not what is compared

    class _Dataset(list):
        seq_names = names

    experiment.dataset = _Dataset([([], gt) for _, gt in pairs])
    record_dir = tmp_path / "results" / "mine"
    record_dir.mkdir(parents=True)
    for name, (pred, _) in zip(names, pairs, strict=True):
        np.savetxt(record_dir / f"{name}.txt", pred, fmt="%.17g", delimiter=",")
    experiment.report(["mine"])
    overall = json.loads((tmp_path / "reports" / "mine" / "performance.json").read_text())["mine"]["overall"]

    # got10k's report puts the GT in frame 0, so compare with first_frame_from_gt=True.
    ours: DatasetMetrics = evaluate_dataset([SequenceInput(p, g) for p, g in pairs], first_frame_from_gt=True)
    d_auc = abs(ours.auc - overall["success_score"])
    d_p20 = abs(ours.precision - overall["precision_score"])
    _report(
        capsys,
        f"got10k ExperimentOTB.report end to end (perturbed Crossing, first_frame_from_gt=True): "
        f"AUC |diff| {d_auc:.1e}, P@20 |diff| {d_p20:.1e}"
    )
    assert d_auc <= 1e-9 and d_p20 <= 1e-9


def test_reacquisition_and_false_box_counts():
    from vl_tracker_core.eval.metrics import reacquisition_stats

    gt = np.tile([10.0, 10.0, 20.0, 20.0], (40, 1))
    visible = np.ones(40, bool)
    visible[5:10] = False  # reappears at 10
    visible[20:25] = False  # reappears at 25
    pred = gt.copy()
    pred[5:10] = np.nan  # honest "absent"
    pred[20:22] = gt[20:22]  # two false boxes while absent
    pred[22:40] = np.nan  # not re-acquired after frame 25 (a hit at 25..39 would count)
    stats = reacquisition_stats(pred, gt, visible)
    assert stats == {"reappearances": 2, "reacquired": 1, "absent_frames": 10, "false_boxes": 2}
    late = pred.copy()
    late[39] = gt[39]  # frame 39 is the 15th frame from 25: still within the window
    assert reacquisition_stats(late, gt, visible)["reacquired"] == 2


def test_roc_auc_matches_the_pairwise_definition():
    from vl_tracker_core.eval.metrics import roc_auc

    rng = np.random.default_rng(0)
    scores = np.round(rng.random(300), 1)  # many ties
    labels = rng.random(300) < 0.4
    pos, neg = scores[labels], scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    pairwise = wins / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(pairwise, abs=1e-12)
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert np.isnan(roc_auc([0.5, 0.6], [True, True]))
