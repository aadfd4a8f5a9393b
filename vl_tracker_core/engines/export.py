"""Export a checkpoint to ONNX graphs with static shapes, plus ``manifest.json`` and the tokenizer files.

Graphs (every shape fixed by the model config)::

    text          input_ids (1, L) int64, attention_mask (1, L) int64 -> last_hidden_state (1, L, H)
    trunk_crop    patches (1, 3, S, S): the online tracker's crop    -> f8 (1, C8, S/8, S/8), f16 (1, C16, S/16, S/16)
    trunk_window  patches (1, 3, R, R): the re-detection window      -> f8 (1, C8, R/8, R/8), f16
    propose       image (1, 3, G, G)                                 -> boxes (1, K, 4), scores (1, K)
    match     text_tokens, text_mask, crops (1, K, 3, C, C), geometry (1, K, 6), cand_mask (1, K),
              template_crop (1, 3, C, C)                                  -> probs (1, K + 1), template_sim (1, K)
    verify    the same graph with K = 1: the tracker's verifier on the tracked box. The matcher masks candidates
              out of attention and of the softmax, so this answers exactly as ``match`` with the box and K - 1
              masked placeholders, for an eleventh of the trunk work

Each graph is exported with the TorchScript exporter first (``dynamo=False``,
the most robust for plain convolution/attention code) and, when that fails or
its output does not match torch, with the ``torch.export`` exporter. A graph is
accepted only after onnxruntime reproduced torch on inputs *other than* the
ones used for tracing (a trace can bake input-dependent values into constants).
The folder is written under a temporary name and renamed at the end, so a
crashed export never looks complete.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vl_tracker_core.atomic import OutputDirError, check_replaceable, staging_dir, swap_dir
from vl_tracker_core.engines.artifacts import FORMAT, FORMAT_VERSION, MANIFEST, TOKENIZER_DIR, ExportError
from vl_tracker_core.engines.torch_engine import fold_batchnorm
from vl_tracker_core.models.checkpoint import WEIGHTS, load_checkpoint, sha256_file, shipped_checkpoint_dir
from vl_tracker_core.models.network import MatchGraph, ProposeGraph, TrunkGraph
from vl_tracker_core.models.text import Tokenizer, resolve_text_encoder
from vl_tracker_core.progress import quiet_transformers

log = logging.getLogger(__name__)

EXPORTERS = ("auto", "legacy", "dynamo")
#: Files a transformers tokenizer directory may hold; whichever exist are copied to DIR/tokenizer/.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "config.json")
#: Outputs with one row per top-k peak (per candidate for the proposals).
_PER_PEAK = ("boxes", "confidence", "similarity")
# Descriptions of different lengths: one to trace with, one to verify with.
_TRACE_TEXT = "the red ball"
_VERIFY_TEXT = "a small blue striped square to the left of the green triangle near the top"


class _TextGraph(nn.Module):
    """input_ids, attention_mask -> last_hidden_state of a transformers encoder."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Padding positions are zero (as TextEncoder gives them); they are masked out downstream anyway.
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)


def _spec(names: Sequence[str], arrays: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": list(a.shape), "dtype": str(a.dtype)} for n, a in zip(names, arrays, strict=True)]


def _numpy(outputs: Any) -> list[np.ndarray]:
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    return [o.detach().cpu().numpy() for o in outputs]


def compare_outputs(names: Sequence[str], reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                    tolerance: float = 1e-3) -> tuple[dict[str, float], list[str]]:
    """Max abs difference per output and the list of outputs out of tolerance.

    Values are compared relative to their magnitude (``tolerance * max(1, max|ref|)``;
    boxes are in pixels, so about 0.1 px at a 128 px crop). Per-peak outputs come
    from a top-k whose order may legitimately swap between two peaks whose scores
    tie within rounding: a peak is compared only where its score is separated from
    its neighbours' by more than ten times the tolerance.
    """
    diffs: dict[str, float] = {}
    bad: list[str] = []
    by_name = dict(zip(names, reference, strict=True))
    for name, ref, got in zip(names, reference, candidate, strict=True):
        if ref.shape != got.shape:
            diffs[name] = float("inf")
            bad.append(f"{name}: shape {got.shape} instead of {ref.shape}")
            continue
        ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
        limit = tolerance * max(1.0, float(np.abs(ref64).max(initial=0.0)))
        if name in _PER_PEAK and "scores" in by_name and ref64.ndim >= 2:
            scores = by_name["scores"].astype(np.float64)[0]
            gaps = np.abs(np.diff(scores)) > 10 * tolerance
            separated = np.ones(len(scores), bool)
            separated[:-1] &= gaps
            separated[1:] &= gaps
            diff = float(np.abs(ref64[0, separated] - got64[0, separated]).max(initial=0.0))
        else:
            diff = float(np.abs(ref64 - got64).max(initial=0.0))
        diffs[name] = diff
        if not np.isfinite(got64).all() or diff > limit:
            bad.append(f"{name}: max abs difference {diff:.3g} > {limit:.3g}")
    return diffs, bad


def _onnxruntime_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_one(module: nn.Module, path: Path, input_names: Sequence[str], output_names: Sequence[str],
                trace_args: Sequence[torch.Tensor], verify_sets: Sequence[Sequence[torch.Tensor]], opset: int,
                exporter: str) -> tuple[str, dict[str, float]]:
    """Export ``module`` to ``path``; returns the exporter that produced a verified graph and its max diffs."""
    kinds = ("legacy", "dynamo") if exporter == "auto" else (exporter,)
    failures: list[str] = []
    for kind in kinds:
        path.unlink(missing_ok=True)
        try:
            with warnings.catch_warnings():
                # The exporters warn about their own deprecations and about tracer constants; the
                # numerical verification below is what decides whether the graph is right.
                warnings.simplefilter("ignore")
                kwargs: dict[str, Any] = {"dynamo": kind == "dynamo", "input_names": list(input_names),
                                          "output_names": list(output_names), "opset_version": opset}
                if kind == "dynamo":
                    # Its translation table starts at opset 18; asking for less only triggers a down-conversion
                    # that fails on our graphs. The opset actually written is read back from the file below.
                    kwargs.update(external_data=False, verbose=False, opset_version=max(opset, 18))
                else:
                    kwargs.update(do_constant_folding=True)
                with _quiet_loggers("torch.onnx", "onnxscript", "onnx_ir"):
                    torch.onnx.export(module, tuple(trace_args), str(path), **kwargs)
        except Exception as exc:  # any exporter failure means "try the next exporter"
            failures.append(f"{kind} exporter failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            continue
        worst: dict[str, float] = {}
        problems: list[str] = []
        session = None
        for args in verify_sets:
            with torch.no_grad():
                reference = _numpy(module(*args))
            feeds = {n: a.detach().cpu().numpy() for n, a in zip(input_names, args, strict=True)}
            try:
                session = session or _onnxruntime_session(path)
                got = session.run(list(output_names), feeds)
            except Exception as exc:  # a graph onnxruntime cannot load or run is a failed export
                problems.append(f"onnxruntime cannot run it: {type(exc).__name__}: {str(exc)[:300]}")
                break
            diffs, bad = compare_outputs(output_names, reference, got)
            problems += bad
            for k, v in diffs.items():
                worst[k] = max(worst.get(k, 0.0), v)
        if not problems:
            return kind, worst
        failures.append(f"{kind} exporter: output differs from torch ({'; '.join(problems)})")
        log.info("%s: %s", path.name, failures[-1])
    path.unlink(missing_ok=True)
    raise ExportError(f"cannot export {path.name}: " + " | ".join(failures))


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The dynamo exporter logs every optimisation pass at INFO/WARNING; keep only errors."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def graph_opset(path: Path) -> int:
    """The default-domain opset a saved ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _copy_tokenizer(text_dir: Path, out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (text_dir / name).is_file():
            shutil.copy2(text_dir / name, out / name)
            copied.append(name)
    if "tokenizer.json" not in copied:
        log.warning("%s has no tokenizer.json: the exported runtime will tokenise through transformers, "
                    "which may import torch", text_dir)
    return copied


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished export into place in one atomic exchange, replacing a previous export (never an
    unrelated folder)."""
    try:
        check_replaceable(out_dir, MANIFEST, "export folder")
    except OutputDirError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(str(exc)) from None
    try:
        swap_dir(tmp, out_dir)
    except OSError:
        # Another process finished the same export first: keep theirs.
        if not (out_dir / MANIFEST).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def export_model(out_dir: str | os.PathLike, model: str | os.PathLike | None = None, opset: int = 17,
                 exporter: str = "auto", progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export checkpoint ``model`` (default: the shipped weights) to ``out_dir``; returns the manifest."""
    try:
        import onnxruntime  # noqa: F401 - needed to verify every graph
    except ImportError:
        raise ExportError("export needs onnx and onnxruntime to check the graphs: "
                          "pip install 'vl_tracker[onnx]'") from None
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose from {EXPORTERS}")
    if opset < 14:
        raise ExportError(f"opset {opset} is too old (the graphs need opset 14 or newer)")
    say = progress or (lambda msg: log.info("%s", msg))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    start = time.perf_counter()
    out_dir = Path(out_dir)
    checkpoint = Path(model) if model is not None else shipped_checkpoint_dir()
    net, card = load_checkpoint(checkpoint, device="cpu")
    cfg = net.config
    with torch.no_grad():
        folded = fold_batchnorm(copy.deepcopy(net).eval()).eval()
    text_dir = resolve_text_encoder(cfg.text_encoder)
    # Eager attention: the fused kernels have no portable ONNX form.
    quiet_transformers()
    text_model = AutoModel.from_pretrained(str(text_dir), local_files_only=True, attn_implementation="eager").eval()
    hidden = int(text_model.config.hidden_size)
    if hidden != cfg.text_dim:
        raise ExportError(f"text encoder {text_dir} has hidden size {hidden} but the model expects "
                          f"{cfg.text_dim} (config text_dim)")
    tokenizer = Tokenizer(text_dir, cfg.max_text_tokens)
    L = cfg.max_text_tokens

    tmp = staging_dir(out_dir)
    try:
        generator = torch.Generator().manual_seed(0)

        def image(size: int) -> torch.Tensor:
            return torch.rand(1, 3, size, size, generator=generator)

        ids = [torch.from_numpy(a) for a in tokenizer([_TRACE_TEXT])]
        ids_verify = [torch.from_numpy(a) for a in tokenizer([_VERIFY_TEXT])]
        text_graph = _TextGraph(text_model).eval()
        with torch.no_grad():
            feats = [(text_graph(*x), x[1].float()) for x in (ids, ids_verify)]
        trunk_graph = TrunkGraph(folded).eval()
        propose_graph = ProposeGraph(folded).eval()
        match_graph = MatchGraph(folded).eval()
        k, c = cfg.candidates, cfg.candidate_size

        def match_inputs(feat: tuple[torch.Tensor, torch.Tensor], k: int = k) -> list[torch.Tensor]:
            geometry = torch.rand(1, k, 6, generator=generator)
            mask = torch.ones(1, k)
            if k > 1:
                mask[0, -1] = 0.0  # a masked-out candidate, as the tracker sends for a box outside the frame
            return [*feat, torch.rand(1, k, 3, c, c, generator=generator), geometry, mask, image(c)]

        def patches(n: int, size: int) -> list[list[torch.Tensor]]:
            return [[torch.rand(n, 3, size, size, generator=generator)] for _ in range(2)]

        text_in = ("text_tokens", "text_mask")
        jobs: list[tuple[str, nn.Module, tuple[str, ...], tuple[str, ...], list[list[torch.Tensor]]]] = [
            ("text", text_graph, ("input_ids", "attention_mask"), ("last_hidden_state",), [ids, ids_verify]),
            ("trunk_crop", trunk_graph, ("patches",), TrunkGraph.OUTPUTS, patches(1, cfg.online_crop_size)),
            ("trunk_window", trunk_graph, ("patches",), TrunkGraph.OUTPUTS, patches(1, cfg.redetect_size)),
            ("propose", propose_graph, ("image",), ProposeGraph.OUTPUTS,
             [[image(cfg.ground_size)] for _ in feats]),
            ("match", match_graph, (*text_in, "crops", "geometry", "cand_mask", "template_crop"), MatchGraph.OUTPUTS,
             [match_inputs(f) for f in feats]),
            ("verify", match_graph, (*text_in, "crops", "geometry", "cand_mask", "template_crop"), MatchGraph.OUTPUTS,
             [match_inputs(f, 1) for f in feats]),
        ]
        graphs: dict[str, Any] = {}
        for name, module, inputs, outputs, arg_sets in jobs:
            t0 = time.perf_counter()
            path = tmp / f"{name}.onnx"
            # Trace with the first input set; verify on the second (and the first).
            used, diffs = _export_one(module, path, inputs, outputs, arg_sets[0], arg_sets[::-1], opset, exporter)
            with torch.no_grad():
                sample_out = _numpy(module(*arg_sets[0]))
            graphs[name] = {
                "file": path.name,
                "sha256": sha256_file(path),
                "inputs": _spec(inputs, [a.numpy() for a in arg_sets[0]]),
                "outputs": _spec(outputs, sample_out),
                "exporter": used,
                "opset": graph_opset(path),
                "max_abs_diff_vs_torch": diffs,
            }
            say(f"exported {name}.onnx ({used} exporter, {path.stat().st_size / 1e6:.1f} MB, "
                f"{time.perf_counter() - t0:.1f} s)")
        copied = _copy_tokenizer(text_dir, tmp / TOKENIZER_DIR)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            # What the files declare: the dynamo fallback cannot write opsets below 18.
            "opset": max(g["opset"] for g in graphs.values()),
            "requested_opset": opset,
            "weights_sha256": sha256_file(checkpoint / WEIGHTS),
            "checkpoint": str(checkpoint.resolve()),
            "model_card": {k: card[k] for k in ("model", "summary", "steps", "validation") if k in card},
            "config": cfg.to_dict(),
            "text_encoder": {"source": str(text_dir), "hidden_size": hidden, "max_tokens": L,
                             "tokenizer_dir": TOKENIZER_DIR, "tokenizer_files": copied,
                             "tokenizer_sha256": {name: sha256_file(tmp / TOKENIZER_DIR / name) for name in copied}},
            "graphs": graphs,
            "torch_version": torch.__version__,
            "created_unix": int(time.time()),
        }
        # The manifest is written last: its presence marks a complete export.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"export of {checkpoint} written to {out_dir} in {time.perf_counter() - start:.1f} s")
    return manifest
