"""Start vl_tracker_node.

    ros2 launch vl_tracker tracker.launch.py image:=/camera/image_raw
    ros2 launch vl_tracker tracker.launch.py image:=/camera/image_raw use_compressed:=true \
        backend:=tensorrt engine_cache_dir:=$HOME/.cache/vl_tracker namespace:=robot1

Launch arguments that are left empty keep the value from ``params_file``. The params file is read here
(``vl_tracker_ros.launch_helpers``) so it applies in any namespace and a misspelt key stops the launch.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGUMENTS = {
    # name: (default, description)
    "namespace": ("", "namespace of the node and its relative topics"),
    "image": ("image", "camera topic (sensor_msgs/Image); with use_compressed the node reads "
                             "<image>/compressed"),
    "description_topic": ("target_description", "std_msgs/String topic naming the target (empty string: stop)"),
    "init_box_topic": ("init_box", "vision_msgs/Detection2D topic for starting from a box (optional)"),
    "params_file": ("", "ROS 2 params file (default: share/vl_tracker/config/tracker.yaml)"),
    "use_compressed": ("", "true: subscribe to <image>/compressed (jpeg/png); empty: from params_file"),
    "backend": ("", "torch | onnxruntime | tensorrt; empty: from params_file"),
    "model": ("", "model folder; empty: from params_file (there empty = shipped weights)"),
    "device": ("", "cpu | cuda | cuda:N; empty: from params_file"),
    "precision": ("", "TensorRT precision fp16 | fp32; empty: from params_file"),
    "engine_cache_dir": ("", "TensorRT engine cache folder; empty: from params_file"),
    "grounder": ("", "joint | owlv2 | owlvit | grounding-dino (whole-frame search); empty: from params_file"),
    "grounder_model": ("", "local folder of the grounder's transformers model; empty: from params_file"),
    "publish_debug_image": ("", "true: publish debug_image while subscribed; empty: from params_file"),
    "log_level": ("info", "debug | info | warn | error"),
    "use_sim_time": ("false", "true: follow /clock, e.g. while `ros2 bag play --clock` replays a recording"),
}


def _setup(context, *args, **kwargs):
    # Imported here so that `ros2 launch --show-args` works even before the Python deps are installed.
    from vl_tracker_ros.launch_helpers import launch_overrides, load_node_parameters

    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = arg["params_file"] or str(Path(get_package_share_directory("vl_tracker")) / "config"
                                             / "tracker.yaml")
    parameters = {**load_node_parameters(params_file), **launch_overrides(arg)}
    # Strings stay strings (a model folder named "1.0" must not become a float).
    parameters = {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v for k, v in parameters.items()}
    sim_time = arg["use_sim_time"].strip().lower()
    if sim_time not in ("true", "false"):
        raise ValueError(f"launch argument use_sim_time:={arg['use_sim_time']!r} is not true or false")
    parameters["use_sim_time"] = sim_time == "true"
    image = arg["image"]
    node = Node(
        package="vl_tracker",
        executable="vl_tracker_node",
        name="vl_tracker_node",
        namespace=arg["namespace"],
        output="screen",
        emulate_tty=True,
        parameters=[parameters],
        remappings=[
            ("image", image),
            ("image/compressed", image.rstrip("/") + "/compressed"),
            ("target_description", arg["description_topic"]),
            ("init_box", arg["init_box_topic"]),
        ],
        arguments=["--ros-args", "--log-level", arg["log_level"]],
    )
    return [node]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup)])
