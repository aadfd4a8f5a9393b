"""``vl-tracker train``: train the joint network, validate, checkpoint, resume.

Data is produced by one background worker (rendering, cropping, and the frozen
text encoder with a per-description cache) while the main process trains.
Resumable state (weights, optimiser moments, step) is stored as safetensors +
JSON: nothing is pickled. The data stream is a function of (seed, batch index),
so a resumed run continues with exactly the data it would have seen.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vl_tracker_core.eval.metrics import roc_auc
from vl_tracker_core.models.checkpoint import load_state_strict, save_checkpoint, sha256_file
from vl_tracker_core.models.config import ModelConfig
from vl_tracker_core.models.network import NORM_MODES, JointVLNet, ModeBatchNorm2d
from vl_tracker_core.train import samples as S
from vl_tracker_core.train.losses import compute_losses, total_loss


@dataclass
class TrainOptions:
    out: Path
    config: ModelConfig
    steps: int = 2400
    track_batch: int = 24
    ground_batch: int = 16
    #: share of grounding samples whose target is another object of the frame, with its own description
    ground_alternate: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    data: tuple[str, ...] = ("synthetic",)
    val_every: int = 300
    save_every: int = 250
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    resume: bool = True
    #: batches averaged for the per-input batch-norm statistics after training
    calibration_batches: int = 40
    progress: bool = True
    command: str = ""


def _collate(batch: list[S.Sample], encoder) -> dict:
    images = torch.from_numpy(np.stack([s.image for s in batch])).permute(0, 3, 1, 2).float().div_(255.0)
    feats, mask = encoder.encode([s.description for s in batch])
    out = {
        "image": images,
        "text": torch.from_numpy(feats),
        "mask": torch.from_numpy(mask),
        "boxes": [s.box for s in batch],
        "distractors": [s.distractors for s in batch],
        "descriptions": [s.description for s in batch],
    }
    if batch[0].template is not None:
        out["template"] = torch.from_numpy(np.stack([s.template for s in batch])).permute(0, 3, 1, 2).float() / 255.0
    return out


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, options: TrainOptions, start_batch: int) -> None:
        self.options = options
        self.start_batch = start_batch

    def __iter__(self):
        from vl_tracker_core.models.text import TextEncoder

        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
        o = self.options
        encoder = TextEncoder(o.config.text_encoder, o.config.max_text_tokens)
        make_source = _make_sources(o)
        for track, ground in S.sample_stream(make_source, o.config, o.seed, self.start_batch,
                                             o.track_batch, o.ground_batch,
                                             ground_alternate=o.ground_alternate):
            yield _collate(track, encoder), (_collate(ground, encoder) if ground else None)


def _make_sources(o: TrainOptions):
    makers = []
    for spec in o.data:
        if spec == "synthetic":
            makers.append(S.synthetic_sources(o.seed))
        else:
            from vl_tracker_core.data.readers import load_dataset

            sequences, errors = load_dataset(Path(spec))
            for err in errors:
                print(f"warning: {err}", file=sys.stderr)
            makers.append(S.folder_sources(sequences))
    if len(makers) == 1:
        return makers[0]
    return lambda index: makers[index % len(makers)](index // len(makers))


def _forward_losses(net: JointVLNet, batch: dict, mode: str) -> dict[str, torch.Tensor]:
    if mode == "track":
        tokens = net.encode_template(batch["text"], batch["mask"], batch["template"])
        out = net.forward_track(batch["text"], batch["mask"], tokens, batch["image"])
        size = net.config.search_size
    else:
        out = net.forward_ground(batch["text"], batch["mask"], batch["image"])
        size = net.config.ground_size
    out["sim_scale"], out["sim_bias"] = net.sim_scale, net.sim_bias
    return compute_losses(out, batch["boxes"], batch["distractors"], batch["descriptions"], size)


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
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({"step": step, "elapsed_s": elapsed}) + "\n")


def _load_state(net: JointVLNet, opt: torch.optim.Optimizer, path: Path) -> tuple[int, float]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    model_state = _convert_plain_batchnorm({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_state_strict(net, model_state, str(path))
    for name, p in net.named_parameters():
        if f"opt.{name}.exp_avg" in tensors:
            opt.state[p] = {
                "exp_avg": tensors[f"opt.{name}.exp_avg"].clone(),
                "exp_avg_sq": tensors[f"opt.{name}.exp_avg_sq"].clone(),
                "step": tensors[f"opt.{name}.step"].reshape(()).clone(),
            }
    meta = json.loads(path.with_suffix(".json").read_text())
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


def _convert_plain_batchnorm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """States saved before batch norm kept statistics per kind of input had one shared set. Keep the
    learned scale/shift, start every kind's statistics from the shared ones; the calibration pass at the
    end of training replaces them."""
    plain = [k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")]
    if not plain:
        return state
    print(f"converting {len(plain)} plain batch-norm layers to per-input statistics (recalibrated at the end)")
    out = dict(state)
    for prefix in plain:
        mean, var = out.pop(f"{prefix}.running_mean"), out.pop(f"{prefix}.running_var")
        out.pop(f"{prefix}.num_batches_tracked", None)
        for mode in NORM_MODES:
            out[f"{prefix}.running_mean_{mode}"] = mean.clone()
            out[f"{prefix}.running_var_{mode}"] = var.clone()
    return out


@torch.no_grad()
def calibrate_norm_statistics(net: JointVLNet, o: TrainOptions, batches: int, device: torch.device) -> None:
    """Recompute every batch-norm layer's running statistics per kind of input (template crops, search
    crops, whole frames) as the plain average over ``batches`` fresh training batches, with the weights
    frozen. Training normalises with batch statistics; this makes inference use the same ones."""
    layers = [m for m in net.modules() if isinstance(m, ModeBatchNorm2d)]
    for layer in layers:
        layer.start_calibration()
    net.train()
    stream = iter(torch.utils.data.DataLoader(_Stream(o, o.steps), batch_size=None, num_workers=1))
    for _ in tqdm(range(batches), desc="calibrate batch norm", unit="batch", disable=not o.progress):
        track, ground = next(stream)
        _forward_losses(net, _to(track, device), "track")
        if ground is not None:
            _forward_losses(net, _to(ground, device), "ground")
    for layer in layers:
        layer.stop_calibration()
    net.eval()


# ------------------------------------------------------------------ validation
def validation_set(config: ModelConfig, seed: int = 91_000, scenes: int = 24) -> tuple[dict, dict]:
    """A fixed set of synth-val style samples (scenes disjoint from training by seed)."""
    from vl_tracker_core.data.synthetic.world import SceneConfig, SyntheticScene
    from vl_tracker_core.models.text import TextEncoder

    encoder = TextEncoder(config.text_encoder, config.max_text_tokens)
    rng = np.random.default_rng(seed)
    track, ground = [], []
    for i in range(scenes):
        scene = SyntheticScene(seed + i, 150, SceneConfig(force_out_of_view=i % 2 == 0), paraphrases="seen")
        src = S.SceneSource(scene)
        for _ in range(4):
            sample = S.tracking_sample(src, rng, config)
            if sample is not None:
                track.append(sample)
        ground.append(S.grounding_sample(src, rng, config))
        ground.append(S.grounding_sample(src, rng, config))
    return _collate(track, encoder), _collate(ground, encoder)


@torch.no_grad()
def validate(net: JointVLNet, val: tuple[dict, dict]) -> dict[str, float]:
    from vl_tracker_core.boxes import box_iou

    net.eval()
    result: dict[str, float] = {}
    confs, labels = [], []
    for mode, batch in zip(("track", "ground"), val):
        if mode == "track":
            tokens = net.encode_template(batch["text"], batch["mask"], batch["template"])
            out = net.forward_track(batch["text"], batch["mask"], tokens, batch["image"])
        else:
            out = net.forward_ground(batch["text"], batch["mask"], batch["image"])
        ious = []
        for i, gt in enumerate(batch["boxes"]):
            top = tuple(out["boxes"][i, 0].tolist())
            iou = box_iou(top, gt) if gt is not None else 0.0
            if gt is not None:
                ious.append(iou)
            confs.append(float(out["confidence"][i, 0]))
            labels.append(gt is not None and iou > 0.5)
        ious_arr = np.array(ious)
        result[f"{mode}_iou"] = float(ious_arr.mean()) if len(ious_arr) else float("nan")
        result[f"{mode}_success50"] = float((ious_arr > 0.5).mean()) if len(ious_arr) else float("nan")
    result["conf_roc_auc"] = roc_auc(np.array(confs), np.array(labels))
    net.train()
    return result


# ------------------------------------------------------------------ main loop
def train(o: TrainOptions) -> dict:
    torch.manual_seed(o.seed)
    # Denormal floats make CPU kernels many times slower as small weights/gradients appear.
    torch.set_flush_denormal(True)
    if o.threads:
        torch.set_num_threads(o.threads)
    o.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(o.device)
    net = JointVLNet(o.config).to(device)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=o.lr)
    state_path = o.out / "train_state.safetensors"
    step, elapsed = 0, 0.0
    if o.resume and state_path.is_file():
        step, elapsed = _load_state(net, opt, state_path)
        print(f"resuming from step {step} ({elapsed / 60:.1f} min already spent)")
    print("building the validation set ...")
    val = validation_set(o.config)
    loader = torch.utils.data.DataLoader(_Stream(o, step), batch_size=None, num_workers=1, prefetch_factor=4,
                                         persistent_workers=False)
    history_path = o.out / "history.jsonl"
    metrics: dict[str, float] = {}
    started = time.perf_counter() - elapsed
    net.train()
    running: dict[str, float] = {}
    bar = tqdm(total=o.steps, initial=step, desc="train", unit="step", disable=not o.progress)
    data_iter = iter(loader)
    while step < o.steps:
        track, ground = next(data_iter)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, o)
        losses = _forward_losses(net, _to(track, device), "track")
        if ground is not None:
            g = _forward_losses(net, _to(ground, device), "ground")
            losses = {k: losses[k] + g[k] for k in losses}
        loss = total_loss(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in losses.items():
            running[k] = 0.98 * running.get(k, float(v)) + 0.02 * float(v.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{sum(running.values()):.3f}", heat=f"{running['heat']:.3f}",
                        conf=f"{running['conf']:.3f}")
        if step % o.save_every == 0 or step == o.steps:
            _save_state(net, opt, step, time.perf_counter() - started, state_path)
        # The last step is validated after the batch-norm calibration below, not twice.
        if step % o.val_every == 0 and step < o.steps:
            metrics = validate(net, _to_val(val, device))
            bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
            with open(history_path, "a") as handle:
                handle.write(json.dumps({"step": step, "minutes": (time.perf_counter() - started) / 60,
                                         **metrics, **{f"loss_{k}": v for k, v in running.items()}}) + "\n")
    bar.close()
    calibrate_norm_statistics(net, o, o.calibration_batches, device)
    metrics = validate(net, _to_val(val, device))
    print("validation after calibration: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    with open(history_path, "a") as handle:
        handle.write(json.dumps({"step": step, "calibrated": True, **metrics}) + "\n")
    wall = time.perf_counter() - started
    card = {
        "model": f"vl_tracker JointVLNet ({o.config.name})",
        "summary": "joint grounding-and-tracking network trained from scratch by `vl-tracker train`; "
                   "text encoder frozen (" + o.config.text_encoder + ")",
        "command": o.command,
        "data": ", ".join("synthetic world (seen paraphrases), scenes seeded by (seed, index)" if d == "synthetic"
                          else d for d in o.data),
        "steps": step,
        "samples": step * (o.track_batch + o.ground_batch),
        "hardware": _hardware(device),
        "wall_time_min": round(wall / 60, 1),
        "validation": metrics,
        "seed": o.seed,
    }
    card = save_checkpoint(net.cpu(), o.out, card)
    print(f"saved {o.out} (sha256 {sha256_file(o.out / 'model.safetensors')[:16]}..., {wall / 60:.1f} min)")
    return card


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _to_val(val: tuple[dict, dict], device: torch.device) -> tuple[dict, dict]:
    return _to(val[0], device), _to(val[1], device)


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
