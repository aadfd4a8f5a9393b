"""Success and precision plots for several trackers (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vl_tracker_core.eval.metrics import PRECISION_THRESHOLDS, SUCCESS_THRESHOLDS, DatasetMetrics


def _plot(
    results: dict[str, DatasetMetrics],
    curve: str,
    score: str,
    thresholds: list[float],
    xlabel: str,
    title: str,
    legend_loc: str,
    path: Path,
) -> None:
    # A bare Figure with its own Agg canvas: never touches pyplot's global backend or figure list.
    fig = Figure(figsize=(6.0, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # Best tracker first in the legend, as in the published plots.
    for name, metrics in sorted(results.items(), key=lambda item: -getattr(item[1], score)):
        label = f"{name} [{score.upper() if score == 'auc' else 'P@20'} {getattr(metrics, score):.3f}]"
        ax.plot(thresholds, getattr(metrics, curve), linewidth=2, label=label)
    ax.set(xlabel=xlabel, ylabel="Fraction of frames", title=title,
           xlim=(thresholds[0], thresholds[-1]), ylim=(0.0, 1.0))
    ax.grid(True, linestyle="-.")
    ax.legend(loc=legend_loc, fontsize=9, framealpha=1.0, edgecolor="black")
    fig.tight_layout()
    fig.savefig(path)


def plot_curves(results: dict[str, DatasetMetrics], out_dir: str | Path) -> list[Path]:
    """Write ``success.png`` and ``precision.png`` for ``{tracker name: metrics}`` into ``out_dir``.

    Legends give AUC (success plot) and precision at 20 px. Returns the paths written.
    """
    if not results:
        raise ValueError("plot_curves needs at least one tracker's DatasetMetrics")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    success_path = out_dir / "success.png"
    precision_path = out_dir / "precision.png"
    _plot(results, "success_curve", "auc", SUCCESS_THRESHOLDS.tolist(), "Overlap threshold",
          "Success plot", "lower left", success_path)
    _plot(results, "precision_curve", "precision", PRECISION_THRESHOLDS.tolist(),
          "Location error threshold [pixels]", "Precision plot", "lower right", precision_path)
    return [success_path, precision_path]
