"""TensorRT 10 backend: engines built on the target from the exported ONNX graphs, cached on disk.

Cache: one ``<graph>-<precision>-<key16>.engine`` per graph plus a ``.json``
sidecar with the fields that make up the key (weights sha256, ONNX sha256,
TensorRT version, GPU name, precision) and the engine file's own sha256. An
engine is used only when the sidecar matches what this process would build
and the file matches its sha256; a missing, corrupt, stale or foreign engine
(other weights, other TensorRT, other GPU) is rebuilt with a warning, never
crashed on. Building takes minutes for big models, so it is logged loudly with
its duration; ``vl-tracker build-engine`` does it ahead of time.

The text graph is always built in fp32 (it runs once per description, and
BERT-style layer norms are the part of a network most likely to overflow in
fp16); ``precision`` applies to the per-frame graphs.

Device memory without pycuda: cuda-python (``cuda.bindings.runtime`` or the
older ``cuda.cudart``), or torch CUDA tensors when torch is already imported in
the process (or cuda-python is missing). Preferring cuda-python keeps torch out
of a TensorRT process entirely.

I/O uses the TensorRT 10 tensor API: ``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_tensor_address``, ``execute_async_v3``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from vl_tracker_core.engines.artifacts import GRAPHS, cache_root, load_manifest
from vl_tracker_core.engines.exported import ExportedEngine
from vl_tracker_core.engines.resolve import resolve_export_dir
from vl_tracker_core.models.checkpoint import sha256_file

log = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
CACHE_FORMAT = 1
#: Graphs built in fp32 whatever the requested precision (see the module docstring).
FP32_GRAPHS = ("text",)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- imports
def import_tensorrt() -> ModuleType:
    """``tensorrt`` (version 10 or newer), or a RuntimeError that says what to install."""
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeError("the tensorrt backend needs TensorRT 10 and an NVIDIA GPU: "
                           "pip install 'vl_tracker[tensorrt]' (tensorrt>=10, cuda-python), "
                           "or use the onnxruntime backend") from None
    try:
        major = int(str(trt.__version__).split(".")[0])
    except ValueError:
        major = 0
    if major < 10:
        raise RuntimeError(f"TensorRT {trt.__version__} is installed; the tensorrt backend uses the TensorRT 10 "
                           "tensor API: pip install 'tensorrt>=10'")
    return trt


def _import_cudart() -> ModuleType:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python; raises ImportError when absent
    return cudart


# ---------------------------------------------------------------------------------------------- cache
def cache_fields(manifest: dict[str, Any], graph: str, tensorrt_version: str, gpu_name: str,
                 precision: str) -> dict[str, Any]:
    """Everything an engine depends on. Any change gives another key, hence another engine."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {PRECISIONS}")
    return {
        "format": CACHE_FORMAT,
        "graph": graph,
        "weights_sha256": manifest["weights_sha256"],
        "onnx_sha256": manifest["graphs"][graph]["sha256"],
        "tensorrt": str(tensorrt_version),
        "gpu": str(gpu_name),
        "precision": "fp32" if graph in FP32_GRAPHS else precision,
    }


def engine_cache_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    engine: Path
    meta: Path

    @classmethod
    def for_fields(cls, cache_dir: Path, fields: dict[str, Any]) -> CacheEntry:
        stem = f"{fields['graph']}-{fields['precision']}-{engine_cache_key(fields)[:16]}"
        return cls(Path(cache_dir) / f"{stem}.engine", Path(cache_dir) / f"{stem}.json")


def default_cache_dir() -> Path:
    return cache_root() / "tensorrt"


def cached_engine_problem(entry: CacheEntry, fields: dict[str, Any]) -> str | None:
    """None when ``entry`` holds a usable engine for ``fields``; otherwise why not (for the warning)."""
    if not entry.engine.is_file():
        return "not built yet"
    try:
        meta = json.loads(entry.meta.read_text())
    except (OSError, ValueError):
        return f"its metadata {entry.meta.name} is missing or unreadable"
    recorded = meta.get("fields") if isinstance(meta, dict) else None
    if not isinstance(recorded, dict):
        return f"its metadata {entry.meta.name} is malformed"
    if recorded != fields:
        changed = sorted(k for k in set(recorded) | set(fields) if recorded.get(k) != fields.get(k))
        what = ", ".join(f"{k} {recorded.get(k)!r} (now {fields.get(k)!r})" for k in changed)
        return f"it is stale or foreign: built for {what}"
    if meta.get("engine_sha256") != sha256_file(entry.engine):
        return "the file is corrupt (its sha256 does not match the metadata)"
    return None


def write_cache_entry(entry: CacheEntry, blob: bytes, fields: dict[str, Any], build_seconds: float) -> None:
    """Atomically write the engine, then its metadata (a crash never leaves a half engine that looks valid)."""
    entry.engine.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.engine.with_name(f".{entry.engine.name}.tmp-{os.getpid()}")
    tmp.write_bytes(blob)
    tmp.replace(entry.engine)
    meta = {"fields": fields, "engine_sha256": hashlib.sha256(blob).hexdigest(), "build_seconds": build_seconds,
            "built_unix": int(time.time())}
    tmp = entry.meta.with_name(f".{entry.meta.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(entry.meta)


def obtain_engine(entry: CacheEntry, fields: dict[str, Any], build: Callable[[], bytes],
                  deserialize: Callable[[bytes], T | None], rebuild: bool = False) -> T:
    """The cached engine when usable, else build (loudly), cache and load it.

    ``deserialize`` returns None (or raises) for an engine it cannot use; that
    engine is rebuilt like a stale one.
    """
    problem = "a rebuild was requested" if rebuild else cached_engine_problem(entry, fields)
    if problem is None:
        try:
            engine = deserialize(entry.engine.read_bytes())
            problem = None if engine is not None else "TensorRT could not load it"
        except Exception as exc:  # TensorRT raises assorted errors for foreign or truncated engines
            problem = f"TensorRT could not load it ({type(exc).__name__}: {exc})"
        if problem is None:
            log.info("using cached TensorRT engine %s", entry.engine)
            return engine
    if entry.engine.exists() and not rebuild:
        log.warning("cached TensorRT engine %s is unusable (%s): rebuilding it", entry.engine, problem)
    log.warning("building the TensorRT %s engine for the %s graph now: this can take minutes. Run "
                "`vl-tracker build-engine` beforehand so it never happens at start-up.", fields["precision"],
                fields["graph"])
    start = time.perf_counter()
    blob = build()
    seconds = time.perf_counter() - start
    log.warning("built the TensorRT %s engine for the %s graph in %.1f s", fields["precision"], fields["graph"],
                seconds)
    try:
        write_cache_entry(entry, blob, fields, seconds)
        log.warning("cached it as %s", entry.engine)
    except OSError as exc:
        log.warning("cannot write the engine cache %s (%s): it will be rebuilt next time", entry.engine, exc)
    engine = deserialize(blob)
    if engine is None:
        raise RuntimeError(f"TensorRT cannot load the {fields['graph']} engine it has just built (see the "
                           "TensorRT messages above)")
    return engine


# ---------------------------------------------------------------------------------------------- device memory
class _CudaPythonMemory:
    """Device buffers and a stream through cuda-python's runtime API."""

    kind = "cuda-python"

    def __init__(self, device: int) -> None:
        self.rt = _import_cudart()
        self._check(self.rt.cudaSetDevice(device), "cudaSetDevice")
        self.stream = self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.device = device
        self._pointers: list[int] = []

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, message = self.rt.cudaGetErrorString(err)
            raise RuntimeError(f"CUDA {what} failed: {err} ({message!r})")
        return values[0] if len(values) == 1 else values

    def gpu_name(self) -> str:
        props = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        name = props.name
        name = name.decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)
        # The compute capability too: engines are specific to it, and product names can be ambiguous.
        return f"{name.split(chr(0), 1)[0].strip()} (sm_{props.major}{props.minor})"

    @property
    def stream_handle(self) -> int:
        stream = self.stream
        return int(stream.getPtr()) if hasattr(stream, "getPtr") else int(stream)

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> _CudaPythonBuffer:
        host = np.empty(shape, dtype)
        ptr = int(self._check(self.rt.cudaMalloc(max(host.nbytes, 1)), "cudaMalloc"))
        self._pointers.append(ptr)
        return _CudaPythonBuffer(self, host, ptr)

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        for ptr in self._pointers:
            self.rt.cudaFree(ptr)
        self._pointers.clear()
        if self.stream is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None


class _CudaPythonBuffer:
    def __init__(self, memory: _CudaPythonMemory, host: np.ndarray, ptr: int) -> None:
        self.memory, self.host, self.ptr = memory, host, ptr
        self.dtype, self.shape = host.dtype, host.shape

    def upload(self, array: np.ndarray) -> None:
        # Staged through our own host array: the caller's array may be freed before the copy runs.
        np.copyto(self.host, array.reshape(self.shape), casting="same_kind")
        rt = self.memory.rt
        self.memory._check(rt.cudaMemcpyAsync(self.ptr, self.host.ctypes.data, self.host.nbytes,
                                              rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.memory.stream),
                           "cudaMemcpyAsync (host to device)")

    def start_download(self) -> None:
        rt = self.memory.rt
        self.memory._check(rt.cudaMemcpyAsync(self.host.ctypes.data, self.ptr, self.host.nbytes,
                                              rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.memory.stream),
                           "cudaMemcpyAsync (device to host)")

    def result(self) -> np.ndarray:
        return self.host.copy()


class _TorchMemory:
    """Device buffers and a stream as torch CUDA tensors (when torch is already in the process)."""

    kind = "torch"

    def __init__(self, device: int) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA here, and cuda-python is not installed: the tensorrt backend "
                               "needs one of them (pip install cuda-python)")
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)

    def gpu_name(self) -> str:
        major, minor = self.torch.cuda.get_device_capability(self.device)
        return f"{self.torch.cuda.get_device_name(self.device)} (sm_{major}{minor})"

    @property
    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> _TorchBuffer:
        t = self.torch.empty(shape, dtype=_torch_dtype(self.torch, dtype), device=self.device)
        return _TorchBuffer(self, t, np.dtype(dtype))

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        pass


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    table = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
             np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32, np.dtype(np.int8): torch.int8,
             np.dtype(np.uint8): torch.uint8, np.dtype(np.bool_): torch.bool}
    try:
        return table[np.dtype(dtype)]
    except KeyError:
        raise RuntimeError(f"TensorRT tensor dtype {dtype} has no torch buffer type here") from None


class _TorchBuffer:
    def __init__(self, memory: _TorchMemory, tensor: Any, dtype: np.dtype) -> None:
        self.memory, self.tensor, self.dtype = memory, tensor, dtype
        self.shape = tuple(tensor.shape)
        self.ptr = int(tensor.data_ptr())
        self._host: Any = None

    def upload(self, array: np.ndarray) -> None:
        torch = self.memory.torch
        with torch.cuda.stream(self.memory.stream):
            self.tensor.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=self.dtype).reshape(self.shape)))

    def start_download(self) -> None:
        with self.memory.torch.cuda.stream(self.memory.stream):
            self._host = self.tensor.to("cpu", non_blocking=False)

    def result(self) -> np.ndarray:
        return self._host.numpy().copy()


def device_memory(device: int = 0, kind: str = "auto") -> _CudaPythonMemory | _TorchMemory:
    """``auto``: torch when it is already imported, else cuda-python, else torch."""
    if kind not in ("auto", "cuda-python", "torch"):
        raise ValueError(f"device memory {kind!r}: choose auto, cuda-python or torch")
    if kind == "torch" or (kind == "auto" and "torch" in sys.modules):
        return _TorchMemory(device)
    try:
        return _CudaPythonMemory(device)
    except ImportError:
        if kind == "cuda-python":
            raise RuntimeError("device memory 'cuda-python' requested but cuda-python is not installed: "
                               "pip install cuda-python") from None
    try:
        import torch  # noqa: F401 - last resort
    except ImportError:
        raise RuntimeError("the tensorrt backend needs cuda-python (pip install cuda-python) or torch with CUDA "
                           "to move data to the GPU") from None
    log.warning("cuda-python is not installed: using torch for GPU buffers (imports torch; "
                "pip install cuda-python to avoid it)")
    return _TorchMemory(device)


# ---------------------------------------------------------------------------------------------- TensorRT
def _trt_logger(trt: Any) -> Any:
    """Route TensorRT's messages into logging (its warnings are routine during builds: INFO)."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                level = logging.ERROR
            elif severity == trt.ILogger.WARNING:
                level = logging.INFO
            else:
                level = logging.DEBUG
            log.log(level, "TensorRT: %s", msg)

    return _Logger()


def build_serialized_engine(trt: Any, logger: Any, onnx_path: Path, precision: str,
                            workspace_bytes: int | None = None) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (static shapes: no optimisation profile needed)."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        if not getattr(builder, "platform_has_fast_fp16", True):
            log.warning("this GPU has no fast fp16: the fp16 engine may be slower than fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT errors above)")
    return bytes(serialized)


def _np_dtype(trt: Any, dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT DataType (``trt.nptype`` lacks INT64 in some 10.x releases)."""
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        by_name = {"FLOAT": np.float32, "HALF": np.float16, "INT64": np.int64, "INT32": np.int32, "INT8": np.int8,
                   "UINT8": np.uint8, "BOOL": np.bool_}
        name = str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]
        if name in by_name:
            return np.dtype(by_name[name])
        raise RuntimeError(f"TensorRT tensor type {dtype} has no numpy equivalent") from None


def _engine_io(trt: Any, engine: Any) -> dict[str, tuple[bool, tuple[int, ...], np.dtype]]:
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        io[name] = (is_input, tuple(int(d) for d in engine.get_tensor_shape(name)),
                    _np_dtype(trt, engine.get_tensor_dtype(name)))
    return io


def io_mismatch(io: dict[str, tuple[bool, tuple[int, ...], Any]], spec: dict[str, Any]) -> str | None:
    """Why an engine's I/O tensors differ from the manifest's graph spec, or None when they agree."""
    want = {s["name"]: (True, tuple(s["shape"])) for s in spec["inputs"]}
    want.update({s["name"]: (False, tuple(s["shape"])) for s in spec["outputs"]})
    got = {name: (is_input, shape) for name, (is_input, shape, _) in io.items()}
    if got != want:
        return f"engine I/O {got} differs from the export's {want}"
    return None


class _GraphRunner:
    """One engine, its execution context and its device buffers (allocated once: shapes are static)."""

    def __init__(self, trt: Any, engine: Any, memory: Any, spec: dict[str, Any]) -> None:
        self.engine = engine
        self.memory = memory
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        for name, (is_input, shape, dtype) in _engine_io(trt, engine).items():
            buf = memory.buffer(shape, dtype)
            if not self.context.set_tensor_address(name, buf.ptr):
                raise RuntimeError(f"TensorRT refused the device address of tensor {name}")
            (self.inputs if is_input else self.outputs)[name] = buf
        self.output_order = [o["name"] for o in spec["outputs"]]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, buf in self.inputs.items():
            buf.upload(np.asarray(feeds[name]))
        if not self.context.execute_async_v3(self.memory.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT errors above)")
        for buf in self.outputs.values():
            buf.start_download()
        self.memory.synchronize()
        return [self.outputs[name].result() for name in self.output_order]


class TensorRTEngine(ExportedEngine):
    """``model``: an export folder or a checkpoint folder (default: the shipped weights), as for onnxruntime.
    ``precision``: fp16 (default) or fp32 for the per-frame graphs. ``cache_dir``: where engines are kept
    (default ``$VL_TRACKER_CACHE/tensorrt``). ``rebuild``: ignore cached engines."""

    name = "tensorrt"

    def __init__(self, model: str | os.PathLike | None = None, precision: str = "fp16",
                 cache_dir: str | os.PathLike | None = None, device: int = 0, rebuild: bool = False,
                 device_memory_kind: str = "auto", workspace_bytes: int | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose from {PRECISIONS}")
        # Fail on a missing TensorRT before any export or GPU work.
        trt = import_tensorrt()
        export_dir = resolve_export_dir(model)
        manifest = load_manifest(export_dir, verify_files=True)
        super().__init__(export_dir, manifest)
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.memory = device_memory(device, device_memory_kind)
        self.gpu_name = self.memory.gpu_name()
        self._trt = trt
        self._logger = _trt_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self.engine_files: dict[str, Path] = {}
        self._runners: dict[str, _GraphRunner] = {}
        for graph in GRAPHS:
            spec = manifest["graphs"][graph]
            fields = cache_fields(manifest, graph, trt.__version__, self.gpu_name, precision)
            entry = CacheEntry.for_fields(self.cache_dir, fields)
            onnx_path = self.export_dir / spec["file"]
            engine = obtain_engine(
                entry, fields,
                build=lambda p=onnx_path, f=fields: build_serialized_engine(trt, self._logger, p, f["precision"],
                                                                           workspace_bytes),
                deserialize=lambda blob, s=spec: self._deserialize(blob, s),
                rebuild=rebuild,
            )
            self.engine_files[graph] = entry.engine
            self._runners[graph] = _GraphRunner(trt, engine, self.memory, spec)
        log.info("TensorRT %s engines (%s, %s) from %s", precision, trt.__version__, self.gpu_name, export_dir)

    def _deserialize(self, blob: bytes, spec: dict[str, Any]) -> Any | None:
        engine = self._runtime.deserialize_cuda_engine(blob)
        if engine is None:
            return None
        problem = io_mismatch(_engine_io(self._trt, engine), spec)
        if problem:
            log.warning("%s", problem)
            return None
        return engine

    def _run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._runners[graph].run(feeds)

    def close(self) -> None:
        self._runners.clear()
        self.memory.close()


def build_engines(model: str | os.PathLike | None = None, precision: str = "fp16",
                  cache_dir: str | os.PathLike | None = None, rebuild: bool = False) -> dict[str, Path]:
    """Build (or validate) every engine of an export into the cache; returns graph -> engine file."""
    engine = TensorRTEngine(model, precision=precision, cache_dir=cache_dir, rebuild=rebuild)
    try:
        return dict(engine.engine_files)
    finally:
        engine.close()
