"""``vl-tracker sweep``: choose the switch thresholds on a validation set (never on the test set)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from vl_tracker_core.atomic import write_text_atomic
from vl_tracker_core.data.readers import load_dataset
from vl_tracker_core.eval.runner import evaluate, select_shard

OBJECTIVES = {
    "auc": lambda r: r["auc"],
    "lt_f": lambda r: r["lt_f"],
    # Both: follow the target well AND say "absent" when it is gone.
    "auc+lt_f": lambda r: r["auc"] + r["lt_f"],
}


def parse_grid(items: list[str]) -> dict[str, list[float | int | str | bool]]:
    """``["lost_threshold=0.3,0.4", "lost_frames=2,3"]`` -> ``{"lost_threshold": [0.3, 0.4], ...}``; ``true`` and
    ``false`` are booleans."""
    grid: dict[str, list[float | int | str | bool]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"grid entry {item!r} must look like name=v1,v2,...")
        parsed: list[float | int | str | bool] = []
        for v in values.split(","):
            if v.strip().lower() in ("true", "false"):
                parsed.append(v.strip().lower() == "true")
                continue
            try:
                parsed.append(int(v) if v.lstrip("-").isdigit() else float(v))
            except ValueError:
                parsed.append(v)
        grid[key.strip()] = parsed
    return grid


def run_sweep(dataset: Path, out_dir: Path, grid: dict[str, list], base: dict | None = None,
              max_sequences: int | None = None, objective: str = "auc+lt_f", backend: str = "torch",
              model: str | None = None, *, init: str = "auto", split: str | None = None,
              descriptions: dict[str, str] | None = None, threads: int | None = None) -> dict:
    """Every combination of ``grid`` over ``base`` (the packaged defaults, then ``base``). ``split`` keeps
    only a named split's sequences before ``max_sequences`` is applied; ``init`` and ``descriptions`` are
    those of ``vl-tracker eval``."""
    from vl_tracker_core.tracker import TrackerParams, load_default_params
    from vl_tracker_core.trackers.registry import create_tracker

    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} unknown; choose from {list(OBJECTIVES)}")
    sequences, errors = load_dataset(Path(dataset))
    if split is not None or descriptions:
        from vl_tracker_core.data.splits import apply_split

        sequences, _ = apply_split(sequences, split, descriptions)
    sequences = select_shard(sequences, None)[: max_sequences or None]
    options = {"threads": threads} if threads is not None else {}
    base = {**load_default_params(), **(base or {})}
    keys = list(grid)
    rows = []
    for i, values in enumerate(itertools.product(*(grid[k] for k in keys))):
        params = {**base, **dict(zip(keys, values))}
        try:
            TrackerParams.from_dict(params)
        except ValueError as exc:  # e.g. accept <= lost: not a valid combination
            rows.append({"params": dict(zip(keys, values)), "skipped": str(exc)})
            continue
        report = evaluate(lambda p=params: create_tracker("vl", backend=backend, model=model, params=p, **options),
                          sequences, out_dir / f"config_{i:03d}", title=f"config {i}", init=init, progress=False)
        row = {"params": dict(zip(keys, values)),
               **{k: report[k] for k in ("auc", "precision", "lt_f", "reacquisition_rate", "false_box_rate", "fps")}}
        row["objective"] = OBJECTIVES[objective](report)
        rows.append(row)
        print(json.dumps(row))
    scored = [r for r in rows if "objective" in r]
    best = max(scored, key=lambda r: r["objective"]) if scored else None
    result = {"dataset": str(dataset), "split": split, "init": init, "sequences": len(sequences),
              "objective": objective, "base": base,
              "rows": rows, "best": best, "errors": errors}
    write_text_atomic(out_dir / "sweep.json", json.dumps(result, indent=2) + "\n")
    where = f"{dataset}" + (f", split {split}" if split else "")
    lines = [f"# Sweep on {where} ({len(sequences)} sequences, start {init}), objective {objective}", "",
             "| " + " | ".join(keys) + " | AUC | P@20 | LT-F | re-acq | false-box | objective |",
             "|" + "---|" * (len(keys) + 6)]
    for r in scored:
        lines.append("| " + " | ".join(str(r["params"][k]) for k in keys) +
                     f" | {r['auc']:.3f} | {r['precision']:.3f} | {r['lt_f']:.3f} | {r['reacquisition_rate']:.3f} "
                     f"| {r['false_box_rate']:.3f} | {r['objective']:.3f} |")
    write_text_atomic(out_dir / "sweep.md", "\n".join(lines) + "\n")
    return result
