"""ROS 2 side of vl_tracker. Only ``node`` imports rclpy; the rest (image conversion, the processing
pipeline, the parameter table, rosbags message types) is plain Python and usable without ROS."""
