"""Ctrl-C and SIGTERM on ``ros2 launch vl_tracker tracker.launch.py``: a clean exit, however many signals.

A terminal's Ctrl-C signals the whole foreground process group: the node gets SIGINT once directly and once
more forwarded by launch, and the second one used to land in the middle of the node's cleanup (a
KeyboardInterrupt traceback, launch reporting exit code -2). These tests start the launch file the way a
user does, in its own process group, wait until the node is up, signal the group twice in quick
succession, and check that launch and the node exit cleanly with no traceback.

They need a sourced ROS 2 workspace with vl_tracker built (the ``ros2`` command and rclpy); elsewhere
they are skipped. The node's stop logic is the ``main()`` of ``vl_tracker_ros/node.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed: the shutdown test needs a sourced "
                                    "Humble/Jazzy workspace with vl_tracker built")
pytest.importorskip("vl_tracker.msg", reason="vl_tracker is not built (colcon build --packages-select vl_tracker)")
if shutil.which("ros2") is None:
    pytest.skip("the ros2 command is not on PATH (source the workspace)", allow_module_level=True)

STARTUP_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 30.0


def _launch() -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
    return subprocess.Popen(["ros2", "launch", "vl_tracker", "tracker.launch.py"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def _wait_until_up(proc: subprocess.Popen) -> list[str]:
    """Read the output until the node says its engine is ready."""
    lines: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        if chunk:
            lines.append(chunk)
            if "engine ready" in chunk:
                time.sleep(2.0)  # let the executor spin
                return lines
        elif proc.poll() is not None:
            break
        else:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the node did not come up:\n" + "".join(lines[-40:]))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_two_signals_to_the_process_group_end_everything_cleanly(sig):
    proc = _launch()
    lines = _wait_until_up(proc)
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, sig)
    time.sleep(0.05)
    os.killpg(pgid, sig)  # the second one, as a terminal plus launch's forwarding deliver
    os.set_blocking(proc.stdout.fileno(), True)
    try:
        rest, _ = proc.communicate(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        rest, _ = proc.communicate()
        raise AssertionError("launch did not exit after two signals:\n" + rest[-4000:]) from None
    output = "".join(lines) + rest
    assert "Traceback" not in output, output[-4000:]
    assert "KeyboardInterrupt" not in output, output[-4000:]
    assert "process has died" not in output, output[-4000:]
    assert "process has finished cleanly" in output, output[-4000:]
    assert proc.returncode == 0, (proc.returncode, output[-4000:])
