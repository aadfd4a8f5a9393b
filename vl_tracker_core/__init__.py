"""vl_tracker_core: track one object named by a sentence. ROS-free; never imports rclpy."""

__version__ = "0.1.0"
