"""The node's parameters as data: names, defaults, ranges, descriptions.

``node.py`` declares exactly these (with ParameterDescriptors built from them);
``config/tracker.yaml`` must list exactly these (a test compares the two). The
``tracker.*`` defaults are read from the core's ``resources/tracker.yaml``, so
the state-machine thresholds have one source of truth. Nothing here imports
rclpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vl_tracker_core.engines import BACKENDS
from vl_tracker_core.grounders import GROUNDERS
from vl_tracker_core.tracker import VARIANTS, TrackerParams, load_default_params

NODE_NAME = "vl_tracker_node"
TRACKER_PREFIX = "tracker."
#: Parameters whose change means building a new inference engine.
ENGINE_PARAMETERS = ("backend", "model", "device", "threads", "precision", "engine_cache_dir")
#: Parameters whose change means loading a new grounder.
GROUNDER_PARAMETERS = ("grounder", "grounder_model")


@dataclass(frozen=True)
class NodeParameter:
    name: str
    default: bool | int | float | str
    description: str
    #: fixed at start-up (ROS refuses changes with "read-only")
    read_only: bool = False
    #: inclusive numeric range (ROS refuses values outside it)
    low: float | None = None
    high: float | None = None
    #: allowed string values (checked by the node's set-parameters callback)
    choices: tuple[str, ...] = ()

    @property
    def constraints(self) -> str:
        """Human-readable constraints for ParameterDescriptor.additional_constraints."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.low is not None:
            return f"in [{self.low}, {self.high}]"
        return ""


_TRACKER_DOCS: dict[str, tuple[str, float | None, float | None]] = {
    # name: (description, low, high); ranges are per value, TrackerParams checks the combinations
    "variant": ("state machine variant: full (switch + re-search), no_switch (never declares loss), "
                "ground_every_frame (grounding pass on every frame)", None, None),
    "confidence_weight": ("weight of the online model's quality (response peak and PSR against their running "
                          "reference) in the per-frame score; the rest is the verifier's", 0.0, 1.0),
    "smoothing": ("EMA weight of the newest frame's score (1 = no smoothing); must be > 0", 0.0, 1.0),
    "lost_threshold": ("T_lost: smoothed score under which a frame counts towards losing the target; must be "
                       "< accept_threshold", 0.0, 1.0),
    "lost_frames": ("N: consecutive frames under T_lost before the target is declared lost (SEARCHING)", 1, 1000),
    "drop_threshold": ("a single frame scoring under this is lost at once (a target that left the view is not "
                       "boxed for lost_frames more frames); must not exceed lost_threshold", 0.0, 1.0),
    "accept_threshold": ("T_accept: score a re-detected candidate needs to be accepted; must be "
                         "> lost_threshold (the gap is the hysteresis)", 0.0, 1.0),
    "ground_threshold": ("score the first grounding after a new description needs to be accepted (the "
                         "operator has just said the target is in view)", 0.0, 1.0),
    "research_interval": ("run the re-search every k-th frame while SEARCHING (1 = every frame; larger saves "
                          "compute)", 1, 1000),
    "split_search": ("a searching frame either scans (re-detection window or proposals) or checks the previous "
                     "frame's candidates, never both: about one network pass per frame on a CPU; false = both on "
                     "one frame (a GPU has the time)", None, None),
    "verify_candidates": ("re-detection candidates checked with a tracking pass and the verifier per "
                          "searching frame", 1, 10),
    "research_template_weight": ("the verifier's score: w * agreement with the stored template + (1 - w) * the "
                                 "matcher's probability that the box is the described object", 0.0, 1.0),
    "verify_interval": ("run the verifier on the tracked box every k-th tracking frame (and on any frame whose "
                        "quality falls under update_threshold)", 1, 1000),
    "update_threshold": ("the online model learns only from frames scoring at least this (an occluder is not "
                         "learned)", 0.0, 1.0),
    "learning_rate": ("learning rate of the online model (0 = keep the first frame's model)", 0.0, 1.0),
    "reference_rate": ("how fast the online model's reference peak and PSR follow the learned frames after the "
                       "first ten (0 = fixed; real cameras need it to follow a changing look; "
                       "config/synthetic.yaml uses 0)", 0.0, 1.0),
    "scale_interval": ("check the target's size (the crop's trunk maps resampled one step either side) "
                       "every k-th frame",
                       1, 1000),
}


def _tracker_parameters() -> list[NodeParameter]:
    defaults = load_default_params()
    fields = [f.name for f in dataclasses.fields(TrackerParams)]
    missing = sorted(set(fields) - set(_TRACKER_DOCS))
    if missing:  # a new TrackerParams field must be exposed (and documented) here too
        raise RuntimeError(f"TrackerParams fields {missing} have no node parameter in vl_tracker_ros/params.py")
    out = []
    for name in fields:
        description, low, high = _TRACKER_DOCS[name]
        default = defaults.get(name, getattr(TrackerParams(), name))
        if isinstance(low, float) or isinstance(default, float):
            default = float(default)  # ROS parameters are strictly typed: 1 is not a double
        out.append(NodeParameter(TRACKER_PREFIX + name, default, description, low=low, high=high,
                                 choices=VARIANTS if name == "variant" else ()))
    return out


NODE_PARAMETERS: tuple[NodeParameter, ...] = (
    NodeParameter("use_compressed", False,
                  "subscribe to image/compressed (sensor_msgs/CompressedImage, jpeg/png) instead of image "
                  "(sensor_msgs/Image)", read_only=True),
    NodeParameter("backend", "onnxruntime",
                  "inference backend (onnxruntime: the exported graphs, several times faster than torch on a "
                  "CPU; the shipped weights are exported into the cache on first use); a change at run time "
                  "builds the new engine first and switches only if that succeeds (the target is then grounded "
                  "again)", choices=BACKENDS),
    NodeParameter("model", "",
                  "model to load: a checkpoint folder (torch) or exported model folder (onnxruntime, tensorrt); "
                  "empty = the weights shipped with vl_tracker_core"),
    NodeParameter("device", "",
                  "where inference runs: cpu, cuda or cuda:N (tensorrt: cuda[:N] only); empty = CUDA when "
                  "available, else CPU"),
    NodeParameter("threads", 0,
                  "CPU threads for inference (torch, onnxruntime); 0 = the backend's default", low=0, high=256),
    NodeParameter("precision", "fp16",
                  "TensorRT precision of the per-frame graphs (must match the prebuilt engines); ignored by "
                  "other backends", choices=("fp16", "fp32")),
    NodeParameter("engine_cache_dir", "",
                  "folder of cached TensorRT engines (prebuild them with `vl-tracker build-engine --cache`); "
                  "empty = $VL_TRACKER_CACHE/tensorrt or ~/.cache/vl_tracker/tensorrt; ignored by other backends"),
    NodeParameter("grounder", "joint",
                  "who finds the target in the whole frame (first grounding, re-search): joint (our network) or "
                  "an open-vocabulary detector from grounder_model (owlv2, owlvit, grounding-dino); a change at "
                  "run time loads the new one first and switches only if that succeeds", choices=GROUNDERS),
    NodeParameter("grounder_model", "",
                  "local folder of the grounder's transformers model (downloaded beforehand; loaded offline); "
                  "empty for joint"),
    NodeParameter("publish_debug_image", False,
                  "publish debug_image (box, state and description drawn on the frame); only drawn while "
                  "someone subscribes"),
    NodeParameter("diagnostics_period", 1.0,
                  "seconds between two diagnostics messages on /diagnostics", read_only=True, low=0.1, high=60.0),
    *_tracker_parameters(),
)

PARAMETERS_BY_NAME: dict[str, NodeParameter] = {p.name: p for p in NODE_PARAMETERS}


def default_values() -> dict[str, Any]:
    return {p.name: p.default for p in NODE_PARAMETERS}


def tracker_params_from_values(values: Mapping[str, Any]) -> TrackerParams:
    """TrackerParams from node parameter values (``tracker.*`` keys); raises ValueError with the reason."""
    data = {k[len(TRACKER_PREFIX):]: v for k, v in values.items() if k.startswith(TRACKER_PREFIX)}
    return TrackerParams.from_dict(data)


def check_choice(name: str, value: Any) -> str | None:
    """The reason ``value`` is not allowed for ``name``, or None if it is."""
    param = PARAMETERS_BY_NAME.get(name)
    if param is not None and param.choices and value not in param.choices:
        return f"{name} {value!r} is not one of {', '.join(param.choices)}"
    return None


def engine_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vl_tracker_core.engines.create_engine`` from node parameter values.

    The one place that maps node parameters onto backend options; empty values are left out so each
    backend keeps its own defaults. Raises ValueError for a device the backend cannot use.
    """
    backend = str(values["backend"])
    options: dict[str, Any] = {"backend": backend, "model": str(values["model"]) or None}
    device = str(values.get("device", "")).strip().lower()
    if backend == "tensorrt":
        options["precision"] = str(values.get("precision", "fp16"))
        if values.get("engine_cache_dir"):
            options["cache_dir"] = str(values["engine_cache_dir"])
        if device:
            options["device"] = _gpu_index(device)
    else:
        if device:
            options["device"] = device
        if int(values.get("threads", 0)) > 0:
            options["threads"] = int(values["threads"])
    return options


def grounder_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``vl_tracker_core.grounders.create_grounder`` from node parameter values."""
    device = str(values.get("device", "")).strip().lower()
    options: dict[str, Any] = {"kind": str(values.get("grounder", "joint")) or "joint",
                               "model": str(values.get("grounder_model", "")) or None,
                               "device": device if device.startswith("cuda") else "cpu",
                               "backend": str(values.get("backend", "onnxruntime"))}
    if int(values.get("threads", 0)) > 0:
        options["threads"] = int(values["threads"])
    return options


def _gpu_index(device: str) -> int:
    """"cuda" -> 0, "cuda:1" -> 1 (TensorRT takes a GPU index)."""
    name, _, index = device.partition(":")
    if name != "cuda" or (index and not index.isdigit()):
        raise ValueError(f"device {device!r}: the tensorrt backend runs on a GPU; use cuda or cuda:N")
    return int(index or 0)
