"""The node in ROS 2: launched for real, driven over topics, the reset service and parameters.

Runs under launch_testing (``colcon test`` registers it with add_launch_test, or
``launch_test test/test_launch.py`` in a sourced workspace). Without ROS 2 (no rclpy) the whole module is
skipped; the node's logic is covered without ROS by test_processing.py.

The node loads the real model (backend from $VL_TRACKER_TEST_BACKEND, default torch with the shipped
weights). The tests do not depend on what the network finds: a description must leave IDLE, and an
init_box (NL+BB) must give TRACKING on the next frame whatever the network thinks.
"""

from __future__ import annotations

import array
import os
import time
import unittest

import pytest

for _module in ("rclpy", "launch", "launch_ros", "launch_testing"):
    pytest.importorskip(_module, reason=f"ROS 2 ({_module}) is not installed: the launch test needs a sourced "
                                        "Humble/Jazzy workspace with vl_tracker built")
pytest.importorskip("vl_tracker.msg", reason="vl_tracker is not built (colcon build --packages-select vl_tracker)")

import launch  # noqa: E402
import launch_ros.actions  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray  # noqa: E402
from vl_tracker.msg import TrackedTarget  # noqa: E402

NODE = "/vl_tracker_node"
STARTUP_TIMEOUT_S = 90.0  # the first model load (text encoder included) can be slow on a small machine
W, H = 320, 240


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(
        package="vl_tracker",
        executable="vl_tracker_node",
        name="vl_tracker_node",
        output="screen",
        parameters=[{"backend": os.environ.get("VL_TRACKER_TEST_BACKEND", "torch"), "publish_debug_image": True,
                     "diagnostics_period": 0.5}],
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"tracker_node": node}


def square_image(stamp, box=(120, 80, 40, 40)) -> Image:
    pixels = np.full((H, W, 3), 30, np.uint8)
    x, y, w, h = box
    pixels[y:y + h, x:x + w] = (230, 40, 40)
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = "test_camera"
    msg.height, msg.width, msg.encoding, msg.step = H, W, "rgb8", W * 3
    msg.data = array.array("B", pixels.tobytes())  # what rclpy stores for uint8[]; bytes would be checked per element
    return msg


class TestTrackerNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("vl_tracker_test_client")
        cls.targets: list[TrackedTarget] = []
        cls.detections: list[Detection2DArray] = []
        cls.diagnostics: list[DiagnosticArray] = []
        cls.node.create_subscription(TrackedTarget, "/target", cls.targets.append, 50)
        cls.node.create_subscription(Detection2DArray, "/detections", cls.detections.append, 50)
        cls.node.create_subscription(DiagnosticArray, "/diagnostics", cls.diagnostics.append, 10)
        cls.images = cls.node.create_publisher(Image, "/image", qos_profile_sensor_data)
        cls.descriptions = cls.node.create_publisher(String, "/target_description", 10)
        cls.init_boxes = cls.node.create_publisher(Detection2D, "/init_box", 10)
        cls.reset = cls.node.create_client(Trigger, "/reset")
        cls.set_parameters = cls.node.create_client(SetParameters, f"{NODE}/set_parameters")
        assert cls.reset.wait_for_service(timeout_sec=STARTUP_TIMEOUT_S), "vl_tracker_node did not come up"
        assert cls.set_parameters.wait_for_service(timeout_sec=10.0)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    # ------------------------------------------------------------------ helpers
    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def publish_once(self, publisher, msg) -> None:
        """Publish after the node's subscription is matched (a message sent before discovery is lost)."""
        end = time.monotonic() + 10.0
        while publisher.get_subscription_count() == 0 and time.monotonic() < end:
            self.spin_for(0.05)
        self.assertGreater(publisher.get_subscription_count(), 0, f"nobody subscribes to {publisher.topic_name}")
        publisher.publish(msg)

    def call(self, client, request):
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=30.0)
        self.assertTrue(future.done(), "service call timed out")
        return future.result()

    def stream_until(self, predicate, timeout: float = 30.0, box=(120, 80, 40, 40)) -> TrackedTarget:
        """Publish frames at ~10 Hz until a TrackedTarget for one of them satisfies ``predicate``."""
        sent = set()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            stamp = self.node.get_clock().now().to_msg()
            sent.add((stamp.sec, stamp.nanosec))
            self.images.publish(square_image(stamp, box))
            self.spin_for(0.1)
            for target in reversed(self.targets):
                if (target.header.stamp.sec, target.header.stamp.nanosec) in sent and predicate(target):
                    return target
        self.fail(f"no matching TrackedTarget within {timeout} s (last: {self.targets[-1:]})")

    def set_param(self, name: str, value):
        request = SetParameters.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg()]
        return self.call(self.set_parameters, request).results[0]

    # ------------------------------------------------------------------ tests
    def test_a_idle_frames_echo_the_image_stamp_and_frame(self):
        target = self.stream_until(lambda t: True)
        self.assertEqual(target.header.frame_id, "test_camera")
        self.assertEqual(target.state, TrackedTarget.STATE_IDLE)

    def test_b_description_leaves_idle_and_reports_the_description(self):
        self.publish_once(self.descriptions, String(data="the red square"))
        target = self.stream_until(lambda t: t.state != TrackedTarget.STATE_IDLE)
        self.assertEqual(target.description, "the red square")
        self.assertIn(target.state, (TrackedTarget.STATE_GROUNDING, TrackedTarget.STATE_TRACKING,
                                     TrackedTarget.STATE_SEARCHING))
        self.assertTrue(self.detections, "no Detection2DArray received")

    def test_c_init_box_tracks_and_publishes_one_detection(self):
        box = Detection2D()
        box.bbox.center.position.x, box.bbox.center.position.y = 140.0, 100.0
        box.bbox.size_x = box.bbox.size_y = 40.0
        self.publish_once(self.init_boxes, box)  # no class_id: uses the current description
        target = self.stream_until(lambda t: t.state == TrackedTarget.STATE_TRACKING)
        self.assertGreater(target.bbox.size_x, 0.0)
        stamp = (target.header.stamp.sec, target.header.stamp.nanosec)
        matching = [d for d in self.detections if (d.header.stamp.sec, d.header.stamp.nanosec) == stamp]
        self.assertEqual(len(matching), 1)
        self.assertEqual(len(matching[0].detections), 1)
        self.assertEqual(matching[0].detections[0].results[0].hypothesis.class_id, target.description)

    def test_d_parameters_are_validated_at_run_time(self):
        self.assertTrue(self.set_param("tracker.lost_frames", 5).successful)
        result = self.set_param("tracker.lost_threshold", 0.9)  # above accept_threshold: no hysteresis
        self.assertFalse(result.successful)
        self.assertIn("hysteresis", result.reason)
        result = self.set_param("backend", "no_such_backend")
        self.assertFalse(result.successful)
        self.assertIn("one of", result.reason)
        self.assertFalse(self.set_param("use_compressed", True).successful)  # read-only
        self.assertFalse(self.set_param("tracker.smoothing", 1.5).successful)  # outside its range
        # A model or grounder folder that does not load is refused; the node keeps what it runs.
        result = self.set_param("model", "/nonexistent/vl_tracker_model")
        self.assertFalse(result.successful)
        self.assertIn("kept the current engine", result.reason)
        # grounder_model first (unused while the grounder is joint), then the grounder that needs it.
        self.assertTrue(self.set_param("grounder_model", "/nonexistent/owlv2").successful)
        result = self.set_param("grounder", "owlv2")
        self.assertFalse(result.successful)
        self.assertIn("kept the current grounder", result.reason)
        self.assertIn("/nonexistent/owlv2", result.reason)
        self.assertTrue(self.set_param("grounder_model", "").successful)

    def test_e_reset_service_goes_idle(self):
        response = self.call(self.reset, Trigger.Request())
        self.assertTrue(response.success)
        target = self.stream_until(lambda t: True)
        self.assertEqual(target.state, TrackedTarget.STATE_IDLE)
        self.assertEqual(target.description, "")

    def test_f_diagnostics_are_published(self):
        self.spin_for(1.5)
        names = [s.name for d in self.diagnostics for s in d.status]
        self.assertTrue(any("vl_tracker_node" in n for n in names), names)
        values = {kv.key for d in self.diagnostics for s in d.status for kv in s.values}
        self.assertTrue({"rate_hz", "latency_ms", "state", "frames_dropped", "errors"} <= values)

    def test_g_descriptions_at_100_hz_images_at_30_hz_params_and_resets(self):
        """Load: no callback may raise, the node keeps only the latest frame, diagnostics count the drops."""
        texts = ["the red square", "", "x" * 5000, "the small red square", "the red square"]
        pending = []
        start = time.monotonic()
        sent_images = sent_descriptions = 0
        next_image = next_param = next_reset = start
        while time.monotonic() - start < 6.0:
            now = time.monotonic()
            self.descriptions.publish(String(data=texts[sent_descriptions % len(texts)]))
            sent_descriptions += 1
            if now >= next_image:
                self.images.publish(square_image(self.node.get_clock().now().to_msg()))
                sent_images += 1
                next_image += 1 / 30
            if now >= next_param:
                request = SetParameters.Request()
                value = (0.3, 0.35, 0.4)[int(now * 10) % 3]
                request.parameters = [Parameter("tracker.lost_threshold", value=value).to_parameter_msg()]
                pending.append(self.set_parameters.call_async(request))
                next_param += 0.5
            if now >= next_reset:
                pending.append(self.reset.call_async(Trigger.Request()))
                next_reset += 1.5
            rclpy.spin_once(self.node, timeout_sec=0.01)
        self.spin_for(3.0)
        self.assertGreater(sent_descriptions, 300)
        self.assertTrue(all(f.done() for f in pending), "a service call was never answered")
        self.assertTrue(all(r.successful for f in pending if hasattr(f.result(), "results")
                            for r in f.result().results))
        # The node is still alive and answering, and its diagnostics add up.
        self.assertTrue(self.call(self.reset, Trigger.Request()).success)
        self.diagnostics.clear()
        self.spin_for(1.5)
        values = {kv.key: kv.value for d in self.diagnostics for s in d.status for kv in s.values}
        received, processed = int(values["frames_received"]), int(values["frames_processed"])
        dropped = int(values["frames_dropped"])
        self.assertGreaterEqual(received, sent_images * 0.9)  # best-effort QoS may lose a few on loopback
        self.assertLessEqual(processed + dropped, received)
        self.assertGreaterEqual(processed + dropped + int(values["image_errors"]) + 1, received)
        self.assertGreater(int(values["description_errors"]), 0)  # the 5,000-character ones were refused


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        # SIGINT from launch: the node must exit cleanly (0) or by the signal (-2), never by a crash.
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2])

    def test_no_exception_escaped_a_callback(self, proc_output):
        text = "".join(io.text.decode(errors="replace") for io in proc_output)
        self.assertNotIn("Traceback", text)
