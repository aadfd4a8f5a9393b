"""The ``vl-tracker`` command. Each subcommand imports what it needs only when it runs."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("vl_tracker")


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit code 2."""


class CommandFailed(Exception):
    """The command did its work but the result is incomplete (e.g. a damaged bag): exit code 1."""


# ---------------------------------------------------------------- make-synthetic
def _add_make_synthetic(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-synthetic",
        help="write synthetic vision-language tracking sequences in LaSOT layout",
        description="Render sequences of the synthetic world (cluttered scenes, distractors sharing shape or colour, "
        "occlusions, out-of-view episodes) with descriptions, in LaSOT layout. Either a split with sizes and "
        "a seed, or a fixed benchmark by name (--benchmark synth-test).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per sequence)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument("--sequences", type=int, default=10, help="number of sequences (default 10)")
    p.add_argument("--frames", type=int, default=300, help="frames per sequence (default 300)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--paraphrases", choices=("seen", "unseen"), default=None,
                   help="sentence templates and synonyms: 'seen' (training set) or 'unseen' (held out); "
                   "default seen for train/val, unseen for test")
    p.add_argument("--benchmark", default=None,
                   help="write a fixed benchmark split instead (synth-test, synth-test-seen, synth-val); "
                   "ignores the size and seed options")
    p.set_defaults(run=_run_make_synthetic)


def _run_make_synthetic(args: argparse.Namespace) -> None:
    from vl_tracker_core.data.synthetic import BENCHMARKS, make_benchmark, make_synthetic

    if args.benchmark:
        if args.benchmark not in BENCHMARKS:
            raise UserError(f"unknown benchmark {args.benchmark!r}; choose from {', '.join(BENCHMARKS)}")
        paths = make_benchmark(args.benchmark, args.out)
    else:
        if args.sequences < 1 or args.frames < 2:
            raise UserError("--sequences must be >= 1 and --frames >= 2")
        if args.width < 64 or args.height < 64:
            raise UserError("--width and --height must be at least 64 pixels")
        paths = make_synthetic(args.out, args.split, args.sequences, args.frames, args.seed,
                               width=args.width, height=args.height, paraphrases=args.paraphrases)
    print(f"wrote {len(paths)} sequences to {args.out}")


# ---------------------------------------------------------------- eval / score
def _add_grounder_args(p: argparse.ArgumentParser) -> None:
    from vl_tracker_core.grounders import GROUNDERS

    p.add_argument("--grounder", choices=GROUNDERS, default=None,
                   help="who finds the target in the whole frame (first grounding, re-search): joint (default, "
                   "our network), owlv2 / owlvit / grounding-dino (a transformers detector from --grounder-model)")
    p.add_argument("--grounder-model", type=Path, default=None,
                   help="local folder of the detector (from_pretrained, offline); see README: Real cameras")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from vl_tracker_core.trackers.registry import TRACKERS

    p = sub.add_parser(
        "eval",
        help="run a tracker over a LaSOT/TNL2K/OTB-layout dataset and score it",
        description="Runs a fresh tracker on every sequence, writes OUT/results/<seq>.txt (x,y,w,h per frame, "
        "nan where no box), OUT/results/<seq>_state.txt, OUT/report.json, OUT/report.md and success/precision "
        "plots. Sequences that fail are listed in the report; the rest are still evaluated.",
    )
    p.add_argument("--tracker", required=True, choices=sorted(TRACKERS))
    p.add_argument("--variant", default=None, help="tracker variant (ablation), where the tracker has them")
    p.add_argument("--dataset", type=Path, required=True, help="a dataset folder or a single sequence folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--init", choices=("auto", "nl", "bb", "nl+bb"), default="auto",
                   help="start from the description (nl), the first ground-truth box (bb) or both; "
                   "auto: the box for trackers that need one, otherwise the description alone")
    p.add_argument("--shard", default=None, help="i/n: evaluate every n-th sequence starting at i (0-based)")
    p.add_argument("--split", default=None,
                   help="only the sequences of a named split: real-train or real-val (of ../shared/data/real_dev)")
    p.add_argument("--descriptions", default=None,
                   help="fill in sentences where a sequence has none: 'project' (the ones this project wrote, "
                   "vl_tracker_core/resources/real_dev.json) or a JSON file {sequence: sentence}")
    p.add_argument("--backend", default=None,
                   help="inference backend for learned trackers (onnxruntime, the default; torch; tensorrt)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint folder for learned trackers (default: shipped)")
    _add_grounder_args(p)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of the torch / onnxruntime engine (default: the backend's choice)")
    _add_params_args(p)
    p.set_defaults(run=_run_eval)

    s = sub.add_parser(
        "score",
        help="score existing result files (e.g. several shards) against a dataset",
        description="Reads <seq>.txt (and <seq>_state.txt when present) from each results folder and writes the "
        "same report as eval. Works for any pytracking-style results folder.",
    )
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--results", type=Path, nargs="+", required=True, help="one or more results folders")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--title", default="results")
    s.set_defaults(run=_run_score)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="print evaluation reports side by side as a Markdown table",
                       description="Reads OUT/report.json of each evaluation folder given and prints one row each.")
    p.add_argument("reports", type=Path, nargs="+", help="evaluation output folders (or report.json files)")
    p.set_defaults(run=_run_compare)


def _run_compare(args: argparse.Namespace) -> None:
    cols = [("AUC", "auc"), ("P@20", "precision"), ("NP", "norm_precision"), ("LT-F", "lt_f"),
            ("re-acq@15", "reacquisition_rate"), ("false-box", "false_box_rate"),
            ("1st-frame", "first_frame_success"), ("conf ROC", "confidence_roc_auc"), ("fps", "fps")]
    print("| tracker | " + " | ".join(c for c, _ in cols) + " | AUC (out-of-view seqs) |")
    print("|---|" + "---|" * (len(cols) + 1))
    for path in args.reports:
        file = path if path.suffix == ".json" else path / "report.json"
        try:
            report = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {file}: {exc}") from None
        cells = []
        for _, key in cols:
            value = report.get(key)
            cells.append("n/a" if value is None else f"{value:.1f}" if key == "fps" else f"{value:.3f}")
        oov = report.get("out_of_view_subset", {}).get("auc")
        print(f"| {report.get('title', path.name)} | " + " | ".join(cells) +
              f" | {'n/a' if oov is None else f'{oov:.3f}'} |")


def _add_params_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=None, metavar="YAML",
                   help="tracker parameters from a file: a ROS 2 params file (as config/tracker.yaml), a core "
                   "tracker.yaml (a 'tracker:' section), or 'synthetic' (the packaged values for the synthetic "
                   "world; the defaults are the real-camera ones); --set wins over it")
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=V",
                   help="tracker parameters instead of tracker.yaml's, e.g. lost_threshold=0.35 accept_threshold=0.5")


def _tracker_overrides(args: argparse.Namespace) -> dict:
    """--params then --set, checked against the packaged defaults (a bad name or value is a UserError)."""
    from vl_tracker_core.eval.sweep import parse_grid
    from vl_tracker_core.tracker import TrackerParams, load_default_params, load_params_file

    overrides: dict = {}
    try:
        if args.params is not None:
            overrides.update(load_params_file(args.params))
        overrides.update({k: v[0] for k, v in parse_grid(args.set).items()})
        TrackerParams.from_dict({**load_default_params(), **overrides})
    except (ValueError, TypeError) as exc:
        raise UserError(f"tracker parameters: {exc}") from None
    return overrides


def _check_split_and_descriptions(split: str | None, descriptions: str | None) -> dict[str, str] | None:
    """Fail fast on an unknown split name or an unreadable descriptions file; the descriptions loaded."""
    from vl_tracker_core.data.splits import SplitError, load_descriptions, split_members

    try:
        if split is not None:
            split_members(split)
        return load_descriptions(descriptions) if descriptions is not None else None
    except SplitError as exc:
        raise UserError(str(exc)) from None


def _run_eval(args: argparse.Namespace) -> None:
    from vl_tracker_core.eval.runner import evaluate, parse_shard
    from vl_tracker_core.trackers.registry import create_tracker

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not args.dataset.exists():
        raise UserError(f"dataset folder {args.dataset} does not exist")
    options = {k: v for k, v in (("backend", args.backend), ("model", args.model), ("threads", args.threads),
                                 ("grounder", args.grounder), ("grounder_model", args.grounder_model))
               if v is not None}
    from vl_tracker_core.data.splits import SplitError

    descriptions = _check_split_and_descriptions(args.split, args.descriptions)
    from vl_tracker_core.grounders import GrounderError

    if (args.grounder or args.grounder_model) and args.tracker != "vl":
        raise UserError("--grounder is for the vl tracker")
    if args.set or args.params:
        if args.tracker != "vl":
            raise UserError("--set and --params are for the vl tracker's parameters")
        options["params"] = _tracker_overrides(args)
    try:
        create_tracker(args.tracker, args.variant, **options)  # fail fast on a bad variant, model or grounder
    except GrounderError as exc:
        raise UserError(str(exc)) from None
    title = args.tracker + (f"-{args.variant}" if args.variant else "") + (f" ({args.split})" if args.split else "")
    try:
        report = evaluate(lambda: create_tracker(args.tracker, args.variant, **options), args.dataset, args.out,
                          title=title, init=args.init, shard=shard, split=args.split, descriptions=descriptions)
    except SplitError as exc:  # a split member the dataset folder lacks
        raise UserError(str(exc)) from None
    _print_summary(report, args.out)


def _run_score(args: argparse.Namespace) -> None:
    from vl_tracker_core.eval.runner import score_results

    report = score_results(args.results, args.dataset, args.out, args.title)
    _print_summary(report, args.out)


def _print_summary(report: dict, out: Path) -> None:
    for err in report.get("errors", []):
        print(f"warning: {err}", file=sys.stderr)
    if not report.get("sequences"):
        raise UserError("no sequence could be evaluated (see the warnings above)")
    print(f"{report['title']}: {report['sequences']} sequences, AUC {report['auc']:.3f}, "
          f"P@20 {report['precision']:.3f}, NP {report['norm_precision']:.3f}, LT-F {report['lt_f']:.3f}, "
          f"{report['fps']:.1f} fps")
    print(f"report: {out / 'report.md'}")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="choose the tracker's switch thresholds on a validation set",
        description="Runs the vl tracker for every combination of the given parameter values and writes "
        "OUT/sweep.md and OUT/sweep.json, marking the best by the objective. Use a validation set (synth-val), "
        "never the test set.",
    )
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2",
                   help="parameter values, e.g. lost_threshold=0.3,0.4 accept_threshold=0.5,0.6")
    _add_params_args(p)
    p.add_argument("--max-sequences", type=int, default=None)
    p.add_argument("--objective", default="auc+lt_f", choices=("auc", "lt_f", "auc+lt_f"))
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--model", type=Path, default=None, help="checkpoint or export folder (default: shipped)")
    p.add_argument("--split", default=None, help="keep only this named split (real-train for real_dev)")
    p.add_argument("--init", choices=("auto", "nl", "bb", "nl+bb"), default="auto",
                   help="how each sequence starts, as in eval (bb: from the true box)")
    p.add_argument("--descriptions", default=None,
                   help="fill in descriptions where a sequence has none: 'project' or a JSON file")
    p.add_argument("--threads", type=int, default=None, help="CPU threads of the engine")
    p.set_defaults(run=_run_sweep)


def _run_sweep(args: argparse.Namespace) -> None:
    from vl_tracker_core.eval.sweep import parse_grid, run_sweep

    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    fixed = _tracker_overrides(args)
    if not args.dataset.exists():
        raise UserError(f"dataset folder {args.dataset} does not exist")
    from vl_tracker_core.data.splits import SplitError

    descriptions = _check_split_and_descriptions(args.split, args.descriptions)
    try:  # a split member the dataset folder lacks
        result = run_sweep(args.dataset, args.out, grid, fixed, args.max_sequences, args.objective, args.backend,
                           str(args.model) if args.model else None, init=args.init, split=args.split,
                           descriptions=descriptions, threads=args.threads)
    except SplitError as exc:
        raise UserError(str(exc)) from None
    print(f"best: {result['best']}")
    print(f"table: {args.out / 'sweep.md'}")


def _add_ground_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ground-check",
        help="first-frame grounding on fresh synthetic scenes, by description kind",
        description="Grounds the description of N fresh synthetic scenes on their first frame through the tracker "
        "and reports, per description kind (colour, shape, pattern, size, relation), how often the box lands on the "
        "target (IoU > 0.5), how often the proposals contain it (recall) and how often the matcher picks it when "
        "they do. Writes OUT/ground_check.json and OUT/ground_check.md.",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--seed", type=int, default=500_000, help="first scene seed (default 500000: not a training seed "
                   "range; training scenes are seeded through SeedSequence)")
    p.add_argument("--paraphrases", choices=("seen", "unseen", "canonical"), default="unseen")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=_run_ground_check)


def _run_ground_check(args: argparse.Namespace) -> None:
    from vl_tracker_core.engines import create_engine
    from vl_tracker_core.eval.grounding import format_report, grounding_check, write_report

    if args.scenes < 1:
        raise UserError(f"--scenes must be at least 1, got {args.scenes}")
    engine = create_engine(args.backend, args.model, threads=args.threads)
    report = grounding_check(engine, args.scenes, args.seed, args.paraphrases)
    write_report(report, args.out)
    print(format_report(report))


# ---------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the joint grounding-and-tracking network",
        description="Trains on the synthetic world (default) and/or LaSOT/TNL2K/OTB-Lang-layout folders, validates "
        "periodically on held-out synthetic scenes, and writes a checkpoint folder (model.safetensors, config.json, "
        "model_card.json, MODEL_CARD.md). Re-running with the same --out resumes from the last saved step.",
    )
    p.add_argument("--config", default=None,
                   help="preset (tiny, base) or a config.json path (default: tiny, or the --init-weights "
                   "checkpoint's own)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", nargs="+", default=["synthetic"],
                   help="'synthetic' and/or dataset folders (LaSOT/TNL2K/OTB with descriptions), each optionally "
                   "=WEIGHT: e.g. synthetic=3 ../shared/data/real_dev=1 draws 3 synthetic scenes per real sequence")
    p.add_argument("--data-split", default=None,
                   help="keep only this named split of the dataset folders (real-train for real_dev)")
    p.add_argument("--data-descriptions", default=None,
                   help="fill in descriptions where a sequence has none: 'project' or a JSON file")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=16, help="tracking samples per step (default 16)")
    p.add_argument("--frame-batch", type=int, default=8,
                   help="frames per step for proposals and candidate-set matching (default 8)")
    p.add_argument("--sets-per-frame", type=int, default=6,
                   help="descriptions (candidate sets) per frame: the frame's objects named by their own "
                   "attributes or by relations (default 6)")
    p.add_argument("--accumulate", type=int, default=1,
                   help="sub-batches per step whose gradients are averaged (n here = n torchrun ranks)")
    p.add_argument("--time-limit", type=float, default=0.0,
                   help="stop and save after this many minutes of training (default: none)")
    p.add_argument("--trunk", choices=("pretrained", "random"), default=None,
                   help="start the EfficientNet-Lite0 trunk from ImageNet weights (the config's default) or from a "
                   "random initialisation, trained throughout (the ablation)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=300)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--text-encoder", default=None, help="transformers model directory (default: the shipped MiniLM)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if OUT has a saved state")
    p.add_argument("--init-weights", type=Path, default=None, metavar="CHECKPOINT",
                   help="fine-tune: start from this checkpoint folder's weights (e.g. the shipped "
                   "vl_tracker_core/weights/tiny); --config must be its config")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    import dataclasses
    import os
    import shlex

    # The trainer's threads share the cores with its data worker: spinning OpenMP threads would take the
    # worker's core (measured on 2 cores: 2.2 s per step spinning, 1.4 s passive). Read when torch starts.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from vl_tracker_core.models.config import ConfigError, ModelConfig, preset
    from vl_tracker_core.train.trainer import TrainOptions, train

    source_config = None
    if args.init_weights is not None:
        try:
            source_config = ModelConfig.load(args.init_weights / "config.json")
        except (ConfigError, OSError) as exc:
            raise UserError(f"--init-weights {args.init_weights}: not a checkpoint folder ({exc})") from None
    if args.config is None:
        args.config = str(args.init_weights / "config.json") if args.init_weights is not None else "tiny"
    try:
        config = ModelConfig.load(Path(args.config)) if args.config.endswith(".json") else preset(args.config)
    except (ConfigError, OSError) as exc:
        raise UserError(f"--config {args.config}: {exc}") from None
    if args.text_encoder:
        from vl_tracker_core.models.text import TextEncoder

        hidden = TextEncoder(args.text_encoder, config.max_text_tokens).hidden_size
        config = dataclasses.replace(config, text_encoder=str(Path(args.text_encoder).resolve()), text_dim=hidden)
    if args.trunk == "random":
        config = dataclasses.replace(config, trunk_pretrained=False, trunk_train_from=0)
    elif args.trunk == "pretrained":
        config = dataclasses.replace(config, trunk_pretrained=True)
    for name in ("batch", "frame_batch", "sets_per_frame", "accumulate", "steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    from vl_tracker_core.train.trainer import parse_data_spec

    for d in args.data:
        try:
            name, _ = parse_data_spec(d)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if name != "synthetic" and not Path(name).is_dir():
            raise UserError(f"--data {d}: not 'synthetic' and not a folder")
    _check_split_and_descriptions(args.data_split or None, args.data_descriptions or None)
    if source_config is not None and source_config != config:
        raise UserError(f"--init-weights {args.init_weights}: its config differs from --config {args.config} "
                        "(leave --config out to use the checkpoint's)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    options = TrainOptions(out=args.out, config=config, steps=args.steps, track_batch=args.batch,
                           frame_batch=args.frame_batch, sets_per_frame=args.sets_per_frame,
                           accumulate=args.accumulate, time_limit_min=args.time_limit, lr=args.lr,
                           seed=args.seed, data=tuple(args.data), data_split=args.data_split,
                           data_descriptions=args.data_descriptions,
                           val_every=args.val_every, device=device, threads=args.threads,
                           resume=not args.no_resume, init_weights=args.init_weights,
                           command="vl-tracker " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    from vl_tracker_core.models.checkpoint import CheckpointError

    try:
        card = train(options)
    except CheckpointError as exc:  # --init-weights: corrupt or of another architecture
        raise UserError(str(exc)) from None
    print(json.dumps(card.get("validation", {}), indent=2))


# ---------------------------------------------------------------- track
def _add_track(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="track the object a sentence names through a video, an image folder or a sequence",
        description="Grounds the description, tracks, notices when the target is lost and searches the whole frame "
        "again. Writes OUT/track.mp4 (annotated), OUT/track.csv and OUT/track.json. No ground truth needed.",
    )
    p.add_argument("input", type=Path, help="a video file, a folder of images, or a LaSOT/TNL2K/OTB sequence folder")
    p.add_argument("--text", default=None, help="the description (default: the sequence's nlp.txt/language.txt)")
    p.add_argument("--init-box", default=None, help="x,y,w,h on the first frame (optional NL+BB start)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--variant", default=None, help="full (default), no_switch, ground_every_frame")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--model", type=Path, default=None, help="checkpoint or export folder (default: shipped tiny)")
    _add_grounder_args(p)
    _add_params_args(p)
    p.set_defaults(run=_run_track)


def _run_track(args: argparse.Namespace) -> None:
    from vl_tracker_core.boxes import InvalidBoxError, parse_box
    from vl_tracker_core.grounders import GrounderError
    from vl_tracker_core.models.text import DescriptionError, clean_description
    from vl_tracker_core.track_video import InputError, open_input, track_input
    from vl_tracker_core.trackers.registry import create_tracker

    try:
        source = open_input(args.input)
        text = clean_description(args.text if args.text is not None else source.description)
        box = parse_box(args.init_box) if args.init_box else None
    except (InputError, DescriptionError, InvalidBoxError) as exc:
        if isinstance(exc, DescriptionError) and args.text is None:
            raise UserError(f"no description: pass --text (the input has no nlp.txt/language.txt) [{exc}]") from None
        raise UserError(str(exc)) from None
    options = {"backend": args.backend, **({"model": args.model} if args.model else {}),
               **({"grounder": args.grounder} if args.grounder else {}),
               **({"grounder_model": args.grounder_model} if args.grounder_model else {})}
    if args.params or args.set:
        options["params"] = _tracker_overrides(args)
    start = time.perf_counter()
    try:
        tracker = create_tracker("vl", args.variant, **options)
    except GrounderError as exc:
        raise UserError(str(exc)) from None
    load_s = time.perf_counter() - start
    engine = tracker.engine
    where = getattr(engine, "export_dir", None) or args.model or "the shipped weights"
    changed = ", ".join(f"{k}={v}" for k, v in options.get("params", {}).items())
    grounder = "" if args.grounder in (None, "joint") else f"; grounder {args.grounder}"
    print(f"backend {engine.name} ({where}), loaded in {load_s:.1f} s; tracker parameters: the packaged "
          f"defaults{' with ' + changed if changed else ''}{grounder}")
    summary = track_input(tracker, source, text, args.out, init_box=box)
    why = ("tracking starts from the given box" if box is not None else
           "grounding: proposals on the whole frame and the matcher, once")
    tracking_ms = summary["tracking_mean_ms"]
    tracking = (f"tracking frames {tracking_ms:.1f} ms on average" if math.isfinite(tracking_ms) else
                "no tracking frame (the description was never grounded: try --init-box, or a --grounder)")
    print(f"first frame {summary['first_ms']:.0f} ms ({summary['first_state']}; {why}); {tracking}")
    print(f"{summary['frames']} frames, target tracked on {summary['tracked_frames']}, "
          f"{summary['mean_ms']:.1f} ms/frame; skipped {summary['skipped_frames']} unreadable")
    print(f"video: {summary['video']}\nper-frame results: {args.out / 'track.csv'}, {args.out / 'track.json'}")


# ---------------------------------------------------------------- make-bag / bag-eval
# These drive the ROS node's own processing path (vl_tracker_ros.processing, which imports no ROS), so they
# live in vl_tracker_ros and are imported only when the command runs.
def _add_make_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-bag",
        help="write a rosbag2 of a sequence (images + description), ground truth kept beside it",
        description="Writes a rosbag2 folder with sensor_msgs/Image (rgb8) or, with --compressed, "
        "sensor_msgs/CompressedImage (jpeg) on the image topic, and the description once on the description "
        "topic before the first frame. The ground truth goes into the bag folder in LaSOT layout "
        "(groundtruth.txt, nlp.txt, out_of_view.txt, full_occlusion.txt), where bag-eval finds it; rosbag2 "
        "ignores those files.",
    )
    p.add_argument("seq", type=Path, nargs="?", default=None,
                   help="a LaSOT/TNL2K/OTB-layout sequence folder (or use --synthetic)")
    p.add_argument("--synthetic", type=int, default=None, metavar="SEED",
                   help="render a synthetic scene (distractors and an out-of-view episode) instead of SEQ")
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic scene (default 300)")
    p.add_argument("--out", type=Path, required=True, help="the bag folder to write (must not exist)")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--compressed", action="store_true", help="CompressedImage (jpeg) on <image topic>/compressed")
    p.add_argument("--zstd", action="store_true", help="compress every message with zstd (lossless; rosbag2 "
                   "message compression, read by ros2 bag play and bag-eval)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the stamps (default 30)")
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--description-topic", default="/target_description")
    p.add_argument("--text", default=None, help="record this description instead of the sequence's")
    p.add_argument("--init-box", action="store_true",
                   help="also record the first ground-truth box on /init_box (vision_msgs/Detection2D), as if the "
                   "operator had clicked the target: the replay starts from description + box (NL+BB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag folder at --out")
    p.set_defaults(run=_run_make_bag)


def _run_make_bag(args: argparse.Namespace) -> None:
    from vl_tracker_core.models.text import DescriptionError, clean_description
    from vl_tracker_ros.bag_writer import BagWriteError, source_from_sequence, source_from_synthetic, write_bag

    if (args.seq is None) == (args.synthetic is None):
        raise UserError("give either SEQ (a sequence folder) or --synthetic SEED")
    if args.synthetic is not None and args.frames < 2:
        raise UserError("--frames must be at least 2")
    try:
        source = (source_from_synthetic(args.synthetic, args.frames) if args.synthetic is not None
                  else source_from_sequence(args.seq))
        text = args.text if args.text is not None else source.description
        try:
            source.description = clean_description(text)
        except DescriptionError as exc:
            raise UserError(f"no usable description ({exc}); pass --text") from None
        summary = write_bag(source, args.out, storage=args.storage, compressed=args.compressed, fps=args.fps,
                            image_topic=args.image_topic, description_topic=args.description_topic,
                            overwrite=args.overwrite, init_box_topic="/init_box" if args.init_box else None,
                            zstd=args.zstd)
    except BagWriteError as exc:
        raise UserError(str(exc)) from None
    width, height = summary["size"]
    print(f"wrote {summary['frames']} frames ({width}x{height}, {summary['duration_s']:.1f} s) "
          f"on {summary['image_topic']} [{summary['image_type']}] and the description on "
          f"{summary['description_topic']}: {args.out}")
    print(f"description: {summary['description']!r}; ground truth: {args.out / 'groundtruth.txt'}")


def _add_bag_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bag-eval",
        help="replay a rosbag2 / ROS 1 bag through the node's processing path and measure it",
        description="Reads the bag (rosbag2 sqlite3 or mcap, or ROS 1), feeds images, descriptions and init boxes "
        "to the node's processing path in recorded order and writes into OUT: report.json / report.md (accuracy "
        "with ground truth, latency, dropped frames), frames.csv, success/precision plots, video.mp4 and bag/ "
        "(a rosbag2 with the node's /target, /detections and /diagnostics). --mode realtime honours the bag's "
        "timestamps and drops frames while busy, like the node. OUT is replaced only when the run completes.",
    )
    p.add_argument("bag", type=Path, help="rosbag2 folder or ROS 1 .bag file")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--gt", type=Path, default=None,
                   help="ground truth: a sequence folder or an x,y,w,h-per-line file, one line per image message "
                   "(default: groundtruth.txt inside the bag folder, as make-bag writes it)")
    p.add_argument("--mode", choices=("offline", "realtime"), default="offline")
    p.add_argument("--rate", type=float, default=1.0, help="realtime playback rate (default 1.0)")
    p.add_argument("--text", default=None,
                   help="description applied at the start, replacing those recorded in the bag")
    p.add_argument("--image-topic", default=None, help="default: the bag's only image topic")
    p.add_argument("--description-topic", default=None, help="default: the std_msgs/String topic *target_description")
    p.add_argument("--init-box-topic", default=None, help="default: the vision_msgs/Detection2D topic *init_box")
    p.add_argument("--params", type=Path, default=None,
                   help="a ROS 2 params file for the node (as config/tracker.yaml), or 'synthetic' (the packaged "
                   "values for the synthetic world)")
    p.add_argument("--backend", default=None, help="torch, onnxruntime or tensorrt (overrides the params file)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint or export folder (default: shipped weights)")
    _add_grounder_args(p)
    p.add_argument("--variant", default=None, help="full, no_switch or ground_every_frame")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    p.add_argument("--no-video", action="store_true", help="skip the annotated video")
    p.add_argument("--output-storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.set_defaults(run=_run_bag_eval)


def _run_bag_eval(args: argparse.Namespace) -> None:
    from vl_tracker_core.grounders import GrounderError
    from vl_tracker_ros.bag_reader import BagError
    from vl_tracker_ros.bag_replay import BagEvalOptions, bag_eval, make_pipeline
    from vl_tracker_ros.launch_helpers import ParamsFileError

    if not (args.rate > 0):
        raise UserError("--rate must be positive")
    if args.text is not None and not args.text.strip():
        raise UserError("--text is empty")
    overrides = {k: v for k, v in (("backend", args.backend), ("model", str(args.model) if args.model else None),
                                   ("tracker.variant", args.variant), ("threads", args.threads),
                                   ("grounder", args.grounder),
                                   ("grounder_model", str(args.grounder_model) if args.grounder_model else None))
                 if v is not None}
    try:
        from vl_tracker_core.tracker import params_file_path

        pipeline = make_pipeline(params_file_path(args.params) if args.params else None, overrides)
    except (ParamsFileError, ValueError, GrounderError) as exc:
        raise UserError(str(exc)) from None
    options = BagEvalOptions(args.bag, args.out, gt=args.gt, mode=args.mode, rate=args.rate, text=args.text,
                             image_topic=args.image_topic, description_topic=args.description_topic,
                             init_box_topic=args.init_box_topic, video=not args.no_video,
                             output_storage=args.output_storage)
    try:
        report = bag_eval(options, pipeline)
    except BagError as exc:
        raise UserError(str(exc)) from None
    print((args.out / "report.md").read_text())
    print(f"outputs: {args.out.resolve()}")
    if report.get("damage"):
        raise CommandFailed(f"the bag is damaged; results cover the {report['frames']} frames before the damage: "
                            f"{report['damage']}")


# ---------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job end to end: record a bag, replay it through the node's path (what `make demo` runs)",
        description="Writes a synthetic rosbag2 (a scene with distractors and an out-of-view episode of the target, "
        "the description on /target_description), replays it in realtime mode with the shipped model through "
        "the ROS node's processing path (dropping frames while busy, as the node does), then offline for "
        "a start from description + box, and prints the metrics table. Everything goes into one folder.",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--seed", type=int, default=4, help="synthetic scene seed (default 4)")
    p.add_argument("--frames", type=int, default=300, help="frames at 30 fps (default 300: 10 s)")
    p.add_argument("--backend", default="onnxruntime",
                   help="inference backend (default onnxruntime, the node's default)")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> None:
    from vl_tracker_core.tracker import params_file_path
    from vl_tracker_ros.bag_reader import BagError
    from vl_tracker_ros.bag_replay import BagEvalOptions, bag_eval, make_pipeline
    from vl_tracker_ros.bag_writer import source_from_synthetic, write_bag

    if args.frames < 30:
        raise UserError("--frames must be at least 30")
    runs = [("realtime NL", "input_bag", None), ("realtime NL+BB", "input_bag_init_box", "/init_box")]
    description = ""
    print(f"1/3 recording a synthetic scene as rosbag2 ({args.frames} frames, 640x480, 30 fps), twice: "
          "description only, and description + the operator's first box on /init_box")
    for _, name, init_box in runs:
        # The words a person would type ("the large brown heart"); unseen wordings are measured in BENCHMARKS.
        source = source_from_synthetic(args.seed, args.frames, paraphrases="canonical")
        description = source.description
        summary = write_bag(source, args.out / name, overwrite=True, init_box_topic=init_box, progress=False,
                            zstd=True)
    print(f"    {description!r}: {summary['out_of_view_events']} out-of-view episode(s), target absent on "
          f"{summary['absent_frames']} frames, distractors in view; {summary['megabytes']:.0f} MB per bag "
          "(raw rgb8 images, zstd-compressed messages)")
    reports = {}
    engine = None  # loaded once, shared by both replays (each gets its own tracker)
    for step, (label, name, _) in enumerate(runs, start=2):
        folder = args.out / label.split()[1].replace("+", "").lower()
        print(f"{step}/3 bag-eval --mode realtime ({label.split()[1]} start), shipped model on {args.backend}, "
              f"through the node's processing path -> {folder}")
        try:
            # The synthetic world's values (the node's defaults are the real-camera ones; README: Tracking).
            pipeline = make_pipeline(params_file_path("synthetic"), overrides={"backend": args.backend},
                                     engine=engine)
            engine = pipeline.tracker.engine
            reports[label] = bag_eval(BagEvalOptions(args.out / name, folder, mode="realtime", title=f"demo {label}"),
                                      pipeline)
        except (BagError, ValueError) as exc:
            raise UserError(str(exc)) from None
    print()
    print("| replay | frames | processed | dropped | latency p50 / p99 (ms) | AUC | P@20 | LT-F | re-acq@15 "
          "| false-box | TRACKING / SEARCHING / GROUNDING frames |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, r in reports.items():
        acc, lat, st = r["accuracy"], r["latency_ms"], r["states"]
        print(f"| {label} | {r['frames']} | {r['processed']} | {r['dropped']} | {lat['p50']:.1f} / {lat['p99']:.1f} | "
              f"{acc['auc']:.3f} | {acc['precision']:.3f} | {acc['lt_f']:.3f} | {acc['reacquisition_rate']:.3f} | "
              f"{acc['false_box_rate']:.3f} | {st['TRACKING']} / {st['SEARCHING']} / {st['GROUNDING']} |")
    print(f"\noutputs: {args.out.resolve()}")
    print("  nl/ and nlbb/: video.mp4 (annotated; white box = ground truth), success.png, precision.png, report.md, "
          "frames.csv, bag/ (the node's /target, /detections, /diagnostics)")
    print("  input_bag/, input_bag_init_box/: the recorded bags (replay them into a live node with ros2 bag play)")


# ---------------------------------------------------------------- export / build-engine / bench
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (text encoder, template, tracking, proposal and matcher graphs)",
        description="Writes text.onnx, template.onnx, track.onnx, propose.onnx and match.onnx with static shapes, "
        "the tokenizer "
        "files (tokenizer/) and manifest.json (names, shapes, dtypes, opset, sha256 of the weights and of every "
        "graph, model config). Batch norm is folded first. Every graph is checked against torch with onnxruntime. "
        "Without --out the export goes where the onnxruntime/tensorrt backends look for it by default "
        "($VL_TRACKER_CACHE or ~/.cache/vl_tracker, export/<weights sha256[:16]>/), so they never export at "
        "start-up.",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: the runtime cache location)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the shipped weights)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--exporter", choices=("auto", "legacy", "dynamo"), default="auto",
                   help="torch.onnx exporter: auto tries the TorchScript one (dynamo=False), then torch.export")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from vl_tracker_core.engines.artifacts import ExportError, default_export_dir, is_checkpoint_dir
    from vl_tracker_core.models.checkpoint import CheckpointError

    if args.model is not None and not is_checkpoint_dir(args.model):
        raise UserError(f"--model {args.model} is not a checkpoint folder (model.safetensors + config.json)")
    try:
        out = args.out if args.out is not None else default_export_dir(args.model)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} exists and is not a folder")
        from vl_tracker_core.engines.export import export_model

        manifest = export_model(out, args.model, opset=args.opset, exporter=args.exporter, progress=print)
    except (ExportError, CheckpointError) as exc:
        raise UserError(str(exc)) from None
    print(f"weights sha256 {manifest['weights_sha256'][:16]}..., opset {manifest['opset']}: {out}")


def _add_build_engine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine",
        help="prebuild the TensorRT engines of an export (so no build happens on the first frame)",
        description="Builds (or checks) one TensorRT engine per exported graph into the engine cache. Engines are "
        "keyed by the weights sha256, TensorRT version, GPU name and precision; a stale, corrupt or foreign engine "
        "is rebuilt. Needs TensorRT 10 and an NVIDIA GPU.",
    )
    p.add_argument("--export", type=Path, default=None,
                   help="export folder, or a checkpoint folder (default: the shipped weights' export, made if "
                   "missing)")
    p.add_argument("--precision", choices=("fp16", "fp32"), default="fp16",
                   help="precision of the per-frame graphs (the text encoder is always fp32); default fp16")
    p.add_argument("--cache", type=Path, default=None,
                   help="engine cache folder (default: $VL_TRACKER_CACHE/tensorrt or ~/.cache/vl_tracker/tensorrt)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even when a valid cached engine exists")
    p.set_defaults(run=_run_build_engine)


def _run_build_engine(args: argparse.Namespace) -> None:
    import time

    from vl_tracker_core.engines.artifacts import ExportError
    from vl_tracker_core.engines.tensorrt_engine import build_engines, import_tensorrt

    if args.export is not None and not args.export.is_dir():
        raise UserError(f"--export {args.export} is not a folder")
    try:
        import_tensorrt()
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    # Building is the point of this command: show the build messages even without -v.
    logging.getLogger("vl_tracker_core").setLevel(logging.INFO)
    start = time.perf_counter()
    try:
        files = build_engines(args.export, precision=args.precision, cache_dir=args.cache, rebuild=args.rebuild)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    for graph, path in files.items():
        print(f"{graph}: {path}")
    print(f"TensorRT {args.precision} engines ready in {time.perf_counter() - start:.1f} s")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="per-stage latency, speed-up and memory of each backend",
        description="Runs the tracker over a generated 640x480 sequence once per backend, each in a fresh process, "
        "and prints median milliseconds per stage (image conversion, preprocessing, text encoding, grounding, "
        "tracking, postprocessing, total), speed-ups over torch, peak RSS and whether torch was imported. "
        "A backend that cannot run here is reported as unavailable with the reason.",
    )
    p.add_argument("--backends", default="torch,onnxruntime,tensorrt",
                   help="comma-separated backends (default: torch,onnxruntime,tensorrt)")
    p.add_argument("--frames", type=int, default=200, help="timed frames per backend (default 200)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime (default 2)")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint or export folder (default: the shipped weights)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    p.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> None:
    from vl_tracker_core.engines import BACKENDS
    from vl_tracker_core.engines.artifacts import ExportError
    from vl_tracker_core.engines.bench import run_bench

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise UserError(f"--backends {args.backends!r}: choose from {', '.join(BACKENDS)}")
    if args.frames < 5:
        raise UserError("--frames must be at least 5")
    if args.threads < 1:
        raise UserError("--threads must be at least 1")
    if args.model is not None and not args.model.is_dir():
        raise UserError(f"--model {args.model} is not a folder")
    try:
        run_bench(backends, args.frames, args.model, args.threads, args.json)
    except ExportError as exc:
        raise UserError(str(exc)) from None


# ---------------------------------------------------------------- bench-grounders
def _add_bench_grounders(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-grounders",
        help="per-stage latency of the open-vocabulary grounders (OWLv2, OWL-ViT, Grounding DINO)",
        description="Times the processor (resize, pad, tokenise), the network and the box decoding of each "
        "grounder on one 640x480 frame. Without --grounder-model the published architectures are built at full "
        "size with random weights: their speed is real, their boxes are not.",
    )
    p.add_argument("--grounders", default="owlvit,owlv2,grounding-dino")
    p.add_argument("--grounder-model", type=Path, action="append", default=None,
                   help="a model folder per grounder, in the order of --grounders (default: random weights)")
    p.add_argument("--onnx", action="store_true",
                   help="also time the OWL models exported to ONNX, with onnxruntime (vl-tracker export-grounder)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.set_defaults(run=_run_bench_grounders)


def _run_bench_grounders(args: argparse.Namespace) -> None:
    import json

    from vl_tracker_core.atomic import write_text_atomic
    from vl_tracker_core.grounders import GROUNDERS, GrounderError
    from vl_tracker_core.grounders.bench import bench_one, format_rows

    kinds = [k.strip() for k in args.grounders.split(",") if k.strip()]
    bad = [k for k in kinds if k not in GROUNDERS or k == "joint"]
    if bad or not kinds:
        raise UserError(f"--grounders {args.grounders!r}: choose from owlvit, owlv2, grounding-dino")
    folders = list(args.grounder_model or [])
    if folders and len(folders) != len(kinds):
        raise UserError("give one --grounder-model per grounder, or none")
    if args.runs < 1 or args.threads < 1:
        raise UserError("--runs and --threads must be at least 1")
    from vl_tracker_core.grounders.export import EXPORTABLE

    jobs = [(kind, folders[i] if folders else None, False) for i, kind in enumerate(kinds)]
    if args.onnx and not folders:
        jobs += [(kind, None, True) for kind in kinds if kind in EXPORTABLE]
    rows = []
    for kind, folder, exported in jobs:
        try:
            rows.append(bench_one(kind, folder, args.runs, args.threads, exported=exported))
        except GrounderError as exc:
            raise UserError(str(exc)) from None
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_rows(rows))
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(rows, indent=2) + "\n")


# ---------------------------------------------------------------- export-grounder
def _add_export_grounder(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-grounder",
        help="export an OWLv2 / OWL-ViT model folder to ONNX (onnxruntime, TensorRT)",
        description="Writes OUT with an image graph (ViT, box head, image half of the class head), a text graph "
        "(run once per description) and the processor's files, each graph checked against torch and the pair "
        "against the model's own forward. Point --grounder-model / grounder_model at OUT to run it with "
        "onnxruntime, or with TensorRT when the backend is tensorrt. Grounding DINO cannot be split this way "
        "and runs with torch.",
    )
    p.add_argument("--grounder", choices=("owlv2", "owlvit"), required=True)
    p.add_argument("--grounder-model", type=Path, required=True, help="the downloaded transformers model folder")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(run=_run_export_grounder)


def _run_export_grounder(args: argparse.Namespace) -> None:
    from vl_tracker_core.engines.artifacts import ExportError
    from vl_tracker_core.grounders import GrounderError
    from vl_tracker_core.grounders.export import export_grounder

    try:
        export_grounder(args.grounder, args.grounder_model, args.out, opset=args.opset)
    except (GrounderError, ExportError) as exc:
        raise UserError(str(exc)) from None


# ---------------------------------------------------------------- soak
def _add_soak(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soak",
        help="hours of a robot in minutes: the node's processing path under bad input, memory and latency drift",
        description="Drives the ROS node's processing path (the code the node and bag-eval run) with the model "
        "for N frames of synthetic scenes, one after another, mixing in at stated rates new, empty, 5,000-character "
        "and non-UTF-8 descriptions, NL+BB starts with NaN / zero / out-of-frame boxes, frame-size changes and "
        "malformed Image / CompressedImage messages. Prints how each kind was answered, crashes, RSS growth after "
        "warm-up and latency p50/p99 at the start and the end; then (with --load-seconds) the same pipeline "
        "driven from four threads at once (descriptions at 100 Hz, images at 30 Hz, parameter updates, resets). "
        "Exits 1 if anything escaped the pipeline.",
    )
    p.add_argument("--frames", type=int, default=10_000, help="frames (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="onnxruntime", help="inference backend (default onnxruntime)")
    p.add_argument("--model", type=Path, default=None, help="checkpoint or export folder (default: shipped weights)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for inference (default 2)")
    p.add_argument("--bad-rate", type=float, default=None,
                   help="scale every bad-input rate so that they add up to this chance per frame (default 0.054)")
    p.add_argument("--load-seconds", type=float, default=0.0, help="then run the multi-threaded load for this long")
    p.add_argument("--json", type=Path, default=None, help="write the report as JSON to this file")
    p.set_defaults(run=_run_soak)


def _run_soak(args: argparse.Namespace) -> None:
    import json
    from dataclasses import asdict

    from vl_tracker_core.atomic import write_text_atomic
    from vl_tracker_core.progress import progress
    from vl_tracker_ros.bag_replay import make_pipeline
    from vl_tracker_ros.soak import DEFAULT_RATES, SoakOptions, format_soak, load, soak

    if args.frames < 10:
        raise UserError("--frames must be at least 10")
    rates = dict(DEFAULT_RATES)
    if args.bad_rate is not None:
        if not 0.0 <= args.bad_rate <= 0.9:
            raise UserError("--bad-rate must be in [0, 0.9]")
        total = sum(rates.values())
        rates = {k: v * args.bad_rate / total for k, v in rates.items()}
    overrides = {"backend": args.backend, "threads": args.threads}
    if args.model is not None:
        overrides["model"] = str(args.model)
    try:
        pipeline = make_pipeline(overrides=overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    options = SoakOptions(frames=args.frames, seed=args.seed, rates=rates)
    with progress(total=args.frames, desc="soak", unit="frame", mininterval=2.0) as bar:
        report = soak(pipeline, options, progress=lambda i: bar.update(1))
    print(format_soak(report))
    result = {"soak": asdict(report), "backend": args.backend}
    escaped = report.crashes
    if args.load_seconds > 0:
        loaded = load(pipeline, seconds=args.load_seconds)
        result["load"] = asdict(loaded)
        escaped += len(loaded.escaped)
        print(f"\nload for {loaded.seconds:.1f} s: {loaded.descriptions_sent} descriptions, {loaded.images_sent} "
              f"images, {loaded.param_updates} parameter updates, {loaded.resets} resets; exceptions escaped "
              f"{len(loaded.escaped)}; {loaded.received} frames received, {loaded.processed} processed, "
              f"{loaded.dropped} dropped for a newer one (latest-frame policy), {loaded.pending} still waiting")
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result, indent=2, allow_nan=True) + "\n")
    if escaped:
        raise CommandFailed(f"{escaped} exceptions escaped the processing path")


# ---------------------------------------------------------------- main
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_make_synthetic,
    _add_eval,
    _add_sweep,
    _add_ground_check,
    _add_compare,
    _add_train,
    _add_track,
    _add_make_bag,
    _add_bag_eval,
    _add_demo,
    _add_export,
    _add_build_engine,
    _add_bench,
    _add_bench_grounders,
    _add_export_grounder,
    _add_soak,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vl-tracker",
        description="Track one object named by a sentence. Run `vl-tracker COMMAND --help` for each command.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from vl_tracker_core.atomic import OutputDirError

    try:
        args.run(args)
    except (UserError, OutputDirError) as exc:
        print(f"vl-tracker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CommandFailed as exc:
        print(f"vl-tracker {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
