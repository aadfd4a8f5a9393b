"""ROS 2 node ``vl_tracker_node``: the only module of the project that imports rclpy.

It is thin on purpose: parameters come from ``params.py``, all message logic
lives in ``processing.TrackerPipeline`` (tested without ROS). This module wires
topics, the service, parameters, threads and diagnostics.

Threading (MultiThreadedExecutor, three callback groups):

- ``frames``: the image subscription only stores the newest message in a
  ``LatestFrameSlot`` (an unprocessed older one is dropped and counted) and
  wakes the worker; it never waits for inference.
- ``inference``: the worker (a guard condition, plus a slow timer as a
  safety net) processes the newest frame and publishes. Mutually exclusive, so
  at most one frame is in flight: a slow model never builds a queue.
- default: description, init_box, reset service, parameters and diagnostics.

Changing ``backend`` / ``model`` / ``engine_cache_dir`` at run time builds the
new engine inside the set-parameters call while the old one keeps tracking;
only if the build succeeds is it swapped in (the target is then grounded again
with the new engine); if it fails the change is rejected with the reason and
nothing changes.
"""

from __future__ import annotations

import array
import importlib
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray
from vl_tracker.msg import TrackedTarget

from vl_tracker_core.engines import create_engine
from vl_tracker_core.grounders import create_grounder
from vl_tracker_core.tracker import VLTracker
from vl_tracker_ros.params import (
    ENGINE_PARAMETERS,
    GROUNDER_PARAMETERS,
    NODE_NAME,
    NODE_PARAMETERS,
    TRACKER_PREFIX,
    NodeParameter,
    check_choice,
    engine_options,
    grounder_options,
    tracker_params_from_values,
)
from vl_tracker_ros.processing import LatestFrameSlot, TrackerPipeline

#: Safety-net period of the worker timer; the guard condition normally wakes it at once.
_WORKER_FALLBACK_PERIOD_S = 0.1
_ERROR_LOG_THROTTLE_S = 2.0


class StartupError(RuntimeError):
    """The node cannot start (bad parameters, engine that does not load)."""


class RclpyMessageFactory:
    """``processing.MessageFactory`` for rclpy message classes ("pkg/msg/Name" -> ``pkg.msg.Name``)."""

    def __init__(self) -> None:
        self._classes: dict[str, tuple[type, dict[str, str]]] = {}

    def make(self, msgtype: str, **fields: Any) -> Any:
        entry = self._classes.get(msgtype)
        if entry is None:
            package, _, name = msgtype.split("/")
            cls = getattr(importlib.import_module(f"{package}.msg"), name)
            entry = self._classes[msgtype] = (cls, cls.get_fields_and_field_types())
        cls, types = entry
        for key, value in fields.items():
            if isinstance(value, np.ndarray):
                # array.array('B') is what rclpy stores for uint8[]; building it from bytes is one copy.
                fields[key] = array.array("B", value.tobytes()) if value.dtype == np.uint8 else value.tolist()
            elif types.get(key) in ("octet", "byte") and isinstance(value, int):
                fields[key] = bytes([value])  # `byte` fields (DiagnosticStatus.level) are bytes in rclpy
        return cls(**fields)


def _descriptor(param: NodeParameter) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=param.description, read_only=param.read_only,
                                     additional_constraints=param.constraints)
    if param.low is not None and isinstance(param.default, float):
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(param.low),
                                                              to_value=float(param.high), step=0.0)]
    elif param.low is not None and isinstance(param.default, int) and not isinstance(param.default, bool):
        descriptor.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high), step=1)]
    return descriptor


class TrackerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for param in NODE_PARAMETERS:
            self.declare_parameter(param.name, param.default, _descriptor(param))
        values = self._values()
        for name, value in values.items():
            reason = check_choice(name, value)
            if reason:
                raise StartupError(f"parameter {reason}")
        try:
            tracker_params = tracker_params_from_values(values)
        except ValueError as exc:
            raise StartupError(f"tracker parameters: {exc}") from None
        engine = self._build_engine(values)
        grounder = self._build_grounder(values)
        self.get_logger().info(f"{values['backend']} engine ready ({values['model'] or 'shipped weights'})"
                               + (f"; {values['grounder']} grounder from {values['grounder_model']}"
                                  if grounder is not None else ""))

        self._factory = RclpyMessageFactory()
        self._pipeline = TrackerPipeline(VLTracker(engine, tracker_params, grounder=grounder), self._factory,
                                         on_error=self._log_error)
        self._slot = LatestFrameSlot()
        self._debug_enabled = bool(values["publish_debug_image"])
        self._debug_pub = None

        frames_group = MutuallyExclusiveCallbackGroup()
        inference_group = MutuallyExclusiveCallbackGroup()
        reliable = QoSProfile(depth=10)
        self._target_pub = self.create_publisher(TrackedTarget, "target", reliable)
        self._detections_pub = self.create_publisher(Detection2DArray, "detections", reliable)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        if self._debug_enabled:
            self._ensure_debug_publisher()

        if values["use_compressed"]:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos_profile_sensor_data,
                                     callback_group=frames_group)
        else:
            self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                     callback_group=frames_group)
        # Volatile (not transient-local) so any publisher's QoS is compatible.
        self.create_subscription(String, "target_description", self._pipeline.on_description, reliable)
        self.create_subscription(Detection2D, "init_box", self._pipeline.on_init_box, reliable)
        self.create_service(Trigger, "reset", self._on_reset)

        self._wake = self.create_guard_condition(self._process_pending, callback_group=inference_group)
        self.create_timer(_WORKER_FALLBACK_PERIOD_S, self._process_pending, callback_group=inference_group)
        self.create_timer(float(values["diagnostics_period"]), self._publish_diagnostics)
        # Registered after declaring, so it sees only run-time changes.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        topic = "image/compressed" if values["use_compressed"] else "image"
        self.get_logger().info(f"waiting for images on {self.resolve_topic_name(topic)} and a description on "
                               f"{self.resolve_topic_name('target_description')}")

    # ------------------------------------------------------------------ helpers
    def _values(self) -> dict[str, Any]:
        return {p.name: self.get_parameter(p.name).value for p in NODE_PARAMETERS}

    @staticmethod
    def _build_engine(values: dict[str, Any]):
        try:
            return create_engine(**engine_options(values))
        except Exception as exc:  # any backend failure (missing library, bad model folder, no GPU) has a reason
            raise StartupError(f"could not build the {values['backend']} engine "
                               f"(model: {values['model'] or 'shipped weights'}): {exc}") from exc

    @staticmethod
    def _build_grounder(values: dict[str, Any]):
        try:
            return create_grounder(**grounder_options(values))
        except Exception as exc:  # a missing / wrong / corrupt model folder has a reason naming the folder
            raise StartupError(f"could not load the {values['grounder']} grounder: {exc}") from exc

    def _ensure_debug_publisher(self) -> None:
        if self._debug_pub is None:
            self._debug_pub = self.create_publisher(Image, "debug_image", QoSProfile(depth=1))

    def _log_error(self, kind: str, message: str) -> None:
        # Per-frame errors can arrive at camera rate: throttle them; commands are rare, log each one.
        if kind in ("image", "tracker"):
            self.get_logger().warning(f"{kind}: {message}", throttle_duration_sec=_ERROR_LOG_THROTTLE_S)
        else:
            self.get_logger().warning(f"{kind}: {message}")

    # ------------------------------------------------------------------ callbacks
    def _on_image(self, msg: Any) -> None:
        self._pipeline.note_received()
        if self._slot.put(msg, time.monotonic()):
            self._pipeline.note_dropped()
        self._wake.trigger()

    def _process_pending(self) -> None:
        item = self._slot.take()
        if item is None:
            return
        msg, received_at = item
        debug_pub = self._debug_pub
        debug = self._debug_enabled and debug_pub is not None and debug_pub.get_subscription_count() > 0
        try:
            outputs = self._pipeline.on_image(msg, debug=debug, received_at=received_at)
            if outputs is not None:
                self._target_pub.publish(outputs.target)
                self._detections_pub.publish(outputs.detections)
                if outputs.debug_image is not None and debug_pub is not None:
                    debug_pub.publish(outputs.debug_image)
        except Exception as exc:  # keep the worker alive whatever happens (e.g. publishing during shutdown)
            self.get_logger().error(f"processing a frame failed: {exc}", throttle_duration_sec=_ERROR_LOG_THROTTLE_S)
        finally:
            # A newer frame arrived while this one was processed: run again.
            if self._slot.pending():
                self._wake.trigger()

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._pipeline.reset()
        response.success = True
        response.message = "tracker reset: IDLE until the next description"
        return response

    def publish_final_diagnostics(self) -> None:
        """The last diagnostics before the node goes (what it processed, dropped and why)."""
        try:
            self._publish_diagnostics()
        except Exception as exc:  # the middleware may already be going down; the exit must stay clean
            self.get_logger().warning(f"could not publish the final diagnostics: {exc}")

    def close(self) -> None:
        """Release the engine and the node's ROS resources; safe to call more than once."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self._pipeline.close()
        self.destroy_node()

    def _publish_diagnostics(self) -> None:
        values = self._values()
        sec, nanosec = self.get_clock().now().seconds_nanoseconds()
        extra = {"backend": str(values["backend"]), "model": str(values["model"]) or "shipped weights"}
        self._diag_pub.publish(self._pipeline.diagnostics((sec, nanosec), name=f"{self.get_name()}: tracker",
                                                          hardware_id=str(values["backend"]), extra=extra))

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        for name, value in changes.items():
            reason = check_choice(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        current = self._values()
        values = {**current, **{k: v for k, v in changes.items() if k in current}}
        try:
            tracker_params = tracker_params_from_values(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=f"tracker parameters rejected: {exc}")
        engine = None
        if any(name in ENGINE_PARAMETERS and changes[name] != current[name] for name in changes):
            try:
                engine = self._build_engine(values)
            except StartupError as exc:
                return SetParametersResult(successful=False, reason=f"kept the current engine: {exc}")
        if engine is not None:
            try:
                self._pipeline.replace_engine(engine)
            except Exception as exc:
                return SetParametersResult(successful=False, reason=f"kept the current engine: the new one failed "
                                                                    f"on the current description: {exc}")
            self.get_logger().info(f"switched to the {values['backend']} engine "
                                   f"({values['model'] or 'shipped weights'}); grounding the target again")
        if any(name in GROUNDER_PARAMETERS and changes[name] != current[name] for name in changes):
            try:
                grounder = self._build_grounder(values)
            except StartupError as exc:
                return SetParametersResult(successful=False, reason=f"kept the current grounder: {exc}")
            self._pipeline.replace_grounder(grounder)
            self.get_logger().info(f"grounder now {values['grounder']}"
                                   + (f" ({values['grounder_model']})" if grounder is not None else ""))
        if any(name.startswith(TRACKER_PREFIX) for name in changes):
            self._pipeline.update_params(tracker_params)
        if "publish_debug_image" in changes:
            self._debug_enabled = bool(changes["publish_debug_image"])
            if self._debug_enabled:
                self._ensure_debug_publisher()
        return SetParametersResult(successful=True)


def _stop_executor(executor: MultiThreadedExecutor, timeout_sec: float = 10.0) -> None:
    """Wait for the callbacks already handed to the executor's threads, then shut the executor down.

    Called once the spin loop has ended, so no new callback is dispatched. ``Executor.shutdown()`` is meant
    to wait for callbacks in flight, but rclpy's MultiThreadedExecutor (Humble, Jazzy 7.1.x) does not join
    its thread pool, and Jazzy's ``shutdown()`` returns without waiting at all: a callback handed over in the
    last ``spin_once`` (the 0.1 s worker timer nearly always has one) would then run against the executor's
    destroyed guard condition or the node's destroyed entities ("The following exception was never
    retrieved: cannot use Destroyable because destruction was requested"), or publish while the engine is
    released. Joining the pool first makes the order deterministic: callbacks return, then the executor,
    then the node go.
    """
    pool = getattr(executor, "_executor", None)  # MultiThreadedExecutor's ThreadPoolExecutor
    if pool is not None:
        pool.shutdown(wait=True)
    executor.shutdown(timeout_sec=timeout_sec)


def _shutdown_rclpy() -> None:
    """The last step before the process exits: ignore further stop signals, then shut rclpy down.

    Late signals are normal here (launch forwards the terminal's Ctrl-C, the terminal sends it too). While
    the interpreter finalizes, Python resets each signal that has a Python handler to SIG_DFL, so a SIGINT
    arriving then killed the finished node (launch: "process has died [...] exit code -2"); SIG_IGN is kept.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    rclpy.try_shutdown()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``vl_tracker_node`` (console script and lib/vl_tracker/vl_tracker_node).

    Shutdown: SIGINT and SIGTERM only *request* a stop (rclpy's own handlers are off, so no
    KeyboardInterrupt can land in the middle of the cleanup). A terminal's Ctrl-C under ``ros2 launch``
    delivers SIGINT twice (once directly, once forwarded by launch); any number of them is the same request.
    The spin loop then ends, the callbacks still running on the executor's threads are waited for, the last
    diagnostics are published, the executor, node and engine are released once, further signals are ignored,
    and the process exits with 0.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    try:
        node = TrackerNode()
    except (StartupError, ParameterException) as exc:
        # Bad parameters or a model that does not load: say why, exit non-zero (no traceback).
        get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        _shutdown_rclpy()
        return 1
    if stop.is_set():  # stopped while the model was loading
        node.close()
        _shutdown_rclpy()
        return 0
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass  # the context was shut down from elsewhere (e.g. a launch-wide shutdown): same cleanup
    finally:
        if stop.is_set():
            node.get_logger().info("stop requested (signal): shutting down")
        _stop_executor(executor)
        if rclpy.ok():
            node.publish_final_diagnostics()
        node.close()
        _shutdown_rclpy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
