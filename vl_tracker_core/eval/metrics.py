"""One-pass-evaluation metrics as pytracking/OSTrack ``extract_results`` define them, plus long-term (VOT-LT) F-score.

Definitions (all values are fractions in [0, 1], not percent):

* IoU: pixel-inclusive by default (a box covers pixels ``x .. x + w - 1``), as
  pytracking's ``calc_iou_overlap``; ``pixel_inclusive=False`` gives the
  continuous IoU of the got10k toolkit. The two are the same number: the -1 on
  the far corners and the +1 on the intersection size cancel
  (``min(a - 1, b - 1) - t + 1 == min(a, b) - t``) and both use ``w * h`` for
  the areas, so they differ only by float rounding (measured <= 6e-16), which
  can matter only for an IoU exactly on a threshold.
* Success curve: for each of the 21 thresholds ``linspace(0, 1, 21)``, the
  fraction of frames with IoU strictly greater than the threshold. AUC is the
  mean of the 21 values. Because of the strict ``>``, an IoU of exactly 1.0
  never passes the last threshold, so a perfect tracker scores AUC = 20/21.
  OP50 / OP75 are the curve at 0.50 / 0.75.
* Centre error: centre = ``x + (w - 1) / 2`` (pytracking and got10k both use
  it; the ``-1/2`` cancels in the difference of two centres, so the error is
  the same as with ``x + w / 2``). Precision curve: fraction of frames with
  error <= t for t = 0, 1, ..., 50 px; precision = value at 20 px.
* Normalized precision: both centres divided by the ground-truth ``w, h``
  before the distance; thresholds 0, 0.01, ..., 0.50; value at 0.20.
* Absent frames (``visible`` False, or a ground-truth box that is NaN or has
  ``w <= 0`` or ``h <= 0``) never count as hits, but stay in the denominator:
  curves are divided by the sequence length, as pytracking does for LaSOT.
  ``divide_by_all_frames=False`` divides by the number of present frames
  instead, as pytracking does for every other dataset (OTB, TNL2K, ...).
* Dataset curves are the mean of the per-sequence curves (every sequence
  weighs the same, as in pytracking and got10k).

Deliberate differences from pytracking's ``calc_seq_err_robust``:

* pytracking overwrites the first prediction with the ground truth (trackers
  there are initialised from it). Ours start from language alone, so frame 0
  is scored as predicted unless ``first_frame_from_gt=True``.
* pytracking raises on NaN predictions and copies the previous box over a
  zero-size one. Here a NaN box means "the tracker reported no box" and any
  prediction without positive width and height scores as a miss (IoU 0,
  infinite centre error) on frames where the target is present.
* pytracking sets the normalized centre error of absent frames to -1 for
  non-LaSOT datasets, which makes them count as hits; here absent frames are
  never hits in any curve.
* Prediction and ground truth must have the same length (pytracking pads with
  zeros or cuts); a mismatch raises ``ValueError``.
* Curves are float64 (pytracking stores float32), so values can differ in the
  7th decimal.
* Overlap thresholds are ``np.linspace(0, 1, 21)`` (got10k's). pytracking's
  ``torch.arange(0, 1.05, 0.05)`` gives 0.6500000000000001 and
  0.7500000000000001 for two of them, which only changes the count for an IoU
  lying between those and 0.65 / 0.75 (and makes its ``== 0.75`` lookup of
  OP75 find no threshold with recent torch). Ours has 0.65 and 0.75 exactly.

Long-term metrics (VOT-LT, absence-aware). A frame has a prediction at
threshold tau when its box is finite with positive size and its confidence is
finite and ``>= tau`` (no confidence given: every box has confidence 1).
Per sequence, tracking precision Pr(tau) is the mean over frames with a
prediction of the IoU with the ground truth (0 where the target is absent),
undefined when no frame has a prediction; recall Re(tau) is the mean over
frames where the target is present of the IoU (0 where there is no
prediction). Dataset Pr(tau) and Re(tau) average the sequences where they are
defined, F(tau) = 2 Pr Re / (Pr + Re), and LT-F is the maximum of F over the
thresholds (``linspace(0, 1, 101)`` plus every confidence value seen), reported
with its threshold. Saying "no box" on absent frames therefore raises Pr
without lowering Re.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from vl_tracker_core.boxes import iou as box_iou_rows

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
LT_BASE_THRESHOLDS = np.linspace(0.0, 1.0, 101)
PRECISION_INDEX = 20  # 20 px on PRECISION_THRESHOLDS, 0.20 on NORM_PRECISION_THRESHOLDS
OP50_INDEX = 10
OP75_INDEX = 15


@dataclass
class SequenceInput:
    """What one tracker produced on one sequence, with its ground truth."""

    pred: np.ndarray
    gt: np.ndarray
    visible: np.ndarray | None = None
    confidence: np.ndarray | None = None
    name: str = ""


@dataclass
class SequenceMetrics:
    """Per-sequence results; the per-frame arrays let :func:`evaluate_dataset` recompute LT curves."""

    name: str
    num_frames: int
    num_present: int
    auc: float
    precision: float
    norm_precision: float
    op50: float
    op75: float
    mean_iou: float  # mean IoU over frames where the target is present (pytracking's avg_overlap)
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    lt_precision: float
    lt_recall: float
    lt_f: float
    lt_threshold: float
    iou: np.ndarray  # per frame; 0 where no box was predicted, NaN where the target is absent
    center_error: np.ndarray  # per frame; inf where no box was predicted, NaN where the target is absent
    present: np.ndarray  # per frame bool: target visible with a valid ground-truth box
    has_box: np.ndarray  # per frame bool: finite prediction with positive size
    confidence: np.ndarray  # per frame; NaN where there is no usable confidence


@dataclass
class DatasetMetrics:
    """Dataset results: means of per-sequence curves, and LT scores at the best threshold."""

    auc: float
    precision: float
    norm_precision: float
    op50: float
    op75: float
    mean_iou: float
    lt_precision: float
    lt_recall: float
    lt_f: float
    lt_threshold: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    norm_precision_curve: np.ndarray
    lt_thresholds: np.ndarray
    lt_precision_curve: np.ndarray
    lt_recall_curve: np.ndarray
    lt_f_curve: np.ndarray
    num_sequences: int
    sequences: list[SequenceMetrics] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """The scalar scores, for tables and JSON."""
        keys = ("auc", "precision", "norm_precision", "op50", "op75", "mean_iou",
                "lt_precision", "lt_recall", "lt_f", "lt_threshold")
        return {k: float(getattr(self, k)) for k in keys}


def _as_boxes(values: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what} must be an (N, 4) array of x, y, w, h; got shape {arr.shape}")
    return arr


def center_errors(pred: np.ndarray, gt: np.ndarray, normalized: bool = False) -> np.ndarray:
    """Row-wise distance between box centres ``x + (w - 1) / 2``; ``normalized`` divides by the GT size first."""
    pred = _as_boxes(pred, "pred")
    gt = _as_boxes(gt, "gt")
    pred_c = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    gt_c = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    if normalized:
        with np.errstate(divide="ignore", invalid="ignore"):
            pred_c = pred_c / gt[:, 2:]
            gt_c = gt_c / gt[:, 2:]
    return np.sqrt(((pred_c - gt_c) ** 2).sum(axis=1))


def _threshold_grid(confidences: Iterable[np.ndarray]) -> np.ndarray:
    values = [LT_BASE_THRESHOLDS]
    for conf in confidences:
        finite = conf[np.isfinite(conf)]
        if finite.size:
            values.append(finite)
    return np.unique(np.concatenate(values))


def _lt_curves(seq: SequenceMetrics, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence Pr(tau), Re(tau); NaN where undefined."""
    # IoU that a frame contributes when it has a prediction: 0 where the target is absent.
    overlap = np.where(seq.present, np.nan_to_num(seq.iou, nan=0.0), 0.0)
    usable = seq.has_box & np.isfinite(seq.confidence)
    conf = np.where(usable, seq.confidence, -np.inf)
    predicted = conf[:, None] >= thresholds[None, :]  # (frames, thresholds)
    n_pred = predicted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pr = np.where(n_pred > 0, (overlap[:, None] * predicted).sum(axis=0) / np.maximum(n_pred, 1), np.nan)
    n_present = int(seq.present.sum())
    if n_present == 0:
        re = np.full(len(thresholds), np.nan)
    else:
        re = (overlap[:, None] * predicted * seq.present[:, None]).sum(axis=0) / n_present
    return pr, re


def _mean_where_defined(values: np.ndarray) -> np.ndarray:
    """Column means over the finite entries; NaN for a column with none (nanmean without its warning)."""
    defined = np.isfinite(values)
    count = defined.sum(axis=0)
    total = np.where(defined, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _lt_best(pr: np.ndarray, re: np.ndarray, thresholds: np.ndarray) -> tuple[float, float, float, float, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.where(pr + re > 0, 2.0 * pr * re / (pr + re), 0.0)
    f = np.where(np.isnan(pr) | np.isnan(re), np.nan, f)
    if np.all(np.isnan(f)):
        # No threshold at which anything was predicted (or no present frame): nothing to score.
        return 0.0, 0.0, 0.0, float("nan"), f
    best = int(np.nanargmax(f))  # first maximum = lowest threshold among ties
    return float(pr[best]), float(re[best]), float(f[best]), float(thresholds[best]), f


def evaluate_sequence(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    pixel_inclusive: bool = True,
    first_frame_from_gt: bool = False,
    divide_by_all_frames: bool = True,
    name: str = "",
) -> SequenceMetrics:
    """Score one sequence. ``pred``/``gt`` are ``(N, 4)`` xywh; NaN rows in ``pred`` mean "no box".

    ``visible`` (``(N,)`` bool, default all True) marks frames where the target
    is present; frames whose ground truth is NaN or not of positive size are
    treated as absent too. ``confidence`` (``(N,)``, optional) drives the
    long-term metrics. See the module docstring for the definitions.
    """
    gt = _as_boxes(gt, "gt")
    pred = _as_boxes(pred, "pred").copy()
    n = len(gt)
    label = f"sequence {name!r}: " if name else ""
    if n == 0:
        raise ValueError(f"{label}empty ground truth; a sequence needs at least one frame")
    if len(pred) != n:
        raise ValueError(f"{label}{len(pred)} predicted boxes for {n} ground-truth boxes; they must match frame by "
                         "frame (write a NaN row for frames without a prediction)")
    vis = np.ones(n, dtype=bool) if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    if len(vis) != n:
        raise ValueError(f"{label}{len(vis)} visibility flags for {n} ground-truth boxes")
    if confidence is None:
        conf = np.ones(n, dtype=np.float64)
    else:
        conf = np.asarray(confidence, dtype=np.float64).reshape(-1).copy()
        if len(conf) != n:
            raise ValueError(f"{label}{len(conf)} confidences for {n} ground-truth boxes")
    if first_frame_from_gt:
        pred[0] = gt[0]
        conf[0] = np.inf  # the given box counts as predicted at every threshold

    present = vis & np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    has_box = np.isfinite(pred).all(axis=1) & (pred[:, 2] > 0) & (pred[:, 3] > 0)
    hit = present & has_box

    ious = np.full(n, np.nan)
    ious[present] = 0.0
    ious[hit] = box_iou_rows(pred[hit], gt[hit], pixel_inclusive=pixel_inclusive)
    err = np.full(n, np.nan)
    err[present] = np.inf
    err[hit] = center_errors(pred[hit], gt[hit])
    err_norm = np.full(n, np.inf)
    err_norm[hit] = center_errors(pred[hit], gt[hit], normalized=True)

    denominator = n if divide_by_all_frames else int(present.sum())
    if denominator == 0:
        raise ValueError(f"{label}the target is absent on every frame; with divide_by_all_frames=False there is "
                         "nothing to divide by (use divide_by_all_frames=True)")
    # NaN (absent) compares False with every threshold, so absent frames are never hits.
    with np.errstate(invalid="ignore"):
        success = (ious[:, None] > SUCCESS_THRESHOLDS[None, :]).sum(axis=0) / denominator
        prec = (err[:, None] <= PRECISION_THRESHOLDS[None, :]).sum(axis=0) / denominator
        norm_prec = (err_norm[:, None] <= NORM_PRECISION_THRESHOLDS[None, :]).sum(axis=0) / denominator

    metrics = SequenceMetrics(
        name=name, num_frames=n, num_present=int(present.sum()),
        auc=float(success.mean()), precision=float(prec[PRECISION_INDEX]),
        norm_precision=float(norm_prec[PRECISION_INDEX]),
        op50=float(success[OP50_INDEX]), op75=float(success[OP75_INDEX]),
        mean_iou=float(ious[present].mean()) if present.any() else float("nan"),
        success_curve=success, precision_curve=prec, norm_precision_curve=norm_prec,
        lt_precision=0.0, lt_recall=0.0, lt_f=0.0, lt_threshold=float("nan"),
        iou=ious, center_error=err, present=present, has_box=has_box,
        confidence=np.where(has_box, conf, np.nan),
    )
    thresholds = _threshold_grid([metrics.confidence])
    pr, re = _lt_curves(metrics, thresholds)
    metrics.lt_precision, metrics.lt_recall, metrics.lt_f, metrics.lt_threshold, _ = _lt_best(pr, re, thresholds)
    return metrics


def evaluate_dataset(
    sequences: Iterable[SequenceInput | SequenceMetrics],
    pixel_inclusive: bool = True,
    first_frame_from_gt: bool = False,
    divide_by_all_frames: bool = True,
) -> DatasetMetrics:
    """Score a tracker over sequences: mean of per-sequence curves, LT-F over a shared threshold grid.

    Items may be :class:`SequenceInput` (scored here with the given options) or
    already computed :class:`SequenceMetrics` (used as they are).
    """
    per_seq: list[SequenceMetrics] = []
    for i, item in enumerate(sequences):
        if isinstance(item, SequenceMetrics):
            per_seq.append(item)
        elif isinstance(item, SequenceInput):
            per_seq.append(evaluate_sequence(
                item.pred, item.gt, item.visible, item.confidence, pixel_inclusive=pixel_inclusive,
                first_frame_from_gt=first_frame_from_gt, divide_by_all_frames=divide_by_all_frames,
                name=item.name or f"#{i}",
            ))
        else:
            raise TypeError(f"item {i} is {type(item).__name__}; expected SequenceInput or SequenceMetrics")
    if not per_seq:
        raise ValueError("no sequences to evaluate")

    success = np.mean([s.success_curve for s in per_seq], axis=0)
    prec = np.mean([s.precision_curve for s in per_seq], axis=0)
    norm_prec = np.mean([s.norm_precision_curve for s in per_seq], axis=0)
    ious = [s.mean_iou for s in per_seq if np.isfinite(s.mean_iou)]

    thresholds = _threshold_grid(s.confidence for s in per_seq)
    curves = [_lt_curves(s, thresholds) for s in per_seq]
    pr_all = np.array([c[0] for c in curves])
    re_all = np.array([c[1] for c in curves])
    pr = _mean_where_defined(pr_all)
    re = _mean_where_defined(re_all)
    lt_pr, lt_re, lt_f, lt_thr, f_curve = _lt_best(pr, re, thresholds)

    return DatasetMetrics(
        auc=float(success.mean()), precision=float(prec[PRECISION_INDEX]),
        norm_precision=float(norm_prec[PRECISION_INDEX]),
        op50=float(success[OP50_INDEX]), op75=float(success[OP75_INDEX]),
        mean_iou=float(np.mean(ious)) if ious else float("nan"),
        lt_precision=lt_pr, lt_recall=lt_re, lt_f=lt_f, lt_threshold=lt_thr,
        success_curve=success, precision_curve=prec, norm_precision_curve=norm_prec,
        lt_thresholds=thresholds, lt_precision_curve=pr, lt_recall_curve=re, lt_f_curve=f_curve,
        num_sequences=len(per_seq), sequences=per_seq,
    )


def reacquisition_counts(m: SequenceMetrics, window: int = 15, min_iou: float = 0.5) -> dict[str, int]:
    """Counts for the re-acquisition rate and the false-box rate of one scored sequence.

    A *reappearance* is a frame where the target is present after at least one
    absent frame; it is *re-acquired* when, within ``window`` frames from it, the
    tracker reports a box with IoU > ``min_iou``. A *false box* is a box reported
    on a frame where the target is absent: a robot would act on a target that
    is not there.
    """
    present, has_box = m.present, m.has_box
    hit = present & (np.nan_to_num(m.iou, nan=0.0) > min_iou)
    reappear = [t for t in range(1, len(present)) if present[t] and not present[t - 1]]
    reacquired = sum(bool(hit[t:t + window].any()) for t in reappear)
    absent = ~present
    return {"reappearances": len(reappear), "reacquired": int(reacquired), "absent_frames": int(absent.sum()),
            "false_boxes": int((absent & has_box).sum())}


def reacquisition_stats(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, window: int = 15,
                        min_iou: float = 0.5) -> dict[str, int]:
    """:func:`reacquisition_counts` straight from predictions and ground truth."""
    return reacquisition_counts(evaluate_sequence(pred, gt, visible), window, min_iou)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney rank statistic; ties get half credit). NaN without both classes."""
    scores, labels = np.asarray(scores, float).reshape(-1), np.asarray(labels, bool).reshape(-1)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct value
    ranks = average_rank[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
