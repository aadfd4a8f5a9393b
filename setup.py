"""pip entry point; all metadata lives in pyproject.toml. colcon ignores this file (the ROS build is ament_cmake)."""

from setuptools import setup

setup()
