"""The ROS package's files, checked without ROS: message, package.xml, CMakeLists.txt, params file,
launch file, and the node's parameter table (the data node.py declares from)."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from rosbags.typesys import get_types_from_msg

from vl_tracker_core.tracker import TrackerParams, load_default_params
from vl_tracker_core.trackers.base import TrackState
from vl_tracker_ros.launch_helpers import ParamsFileError, launch_overrides, load_node_parameters
from vl_tracker_ros.params import (
    NODE_NAME,
    NODE_PARAMETERS,
    PARAMETERS_BY_NAME,
    check_choice,
    default_values,
    engine_options,
    tracker_params_from_values,
)
from vl_tracker_ros.rosbags_types import typestore

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ message
def test_tracked_target_msg_parses_and_matches_the_state_machine():
    types = get_types_from_msg((ROOT / "msg/TrackedTarget.msg").read_text(), "vl_tracker/msg/TrackedTarget")
    consts, fields = types["vl_tracker/msg/TrackedTarget"]
    assert {name: value for name, _, value in consts} == {f"STATE_{s.name}": int(s) for s in TrackState}
    assert [name for name, _ in fields] == ["header", "state", "description", "bbox", "confidence", "similarity",
                                            "frames_since_seen", "processing_ms"]
    kinds = dict(fields)
    assert kinds["header"][1] == "std_msgs/msg/Header" and kinds["bbox"][1] == "vision_msgs/msg/BoundingBox2D"


def test_the_packaged_message_copy_is_identical():
    copy = ROOT / "vl_tracker_ros/msg_defs/vl_tracker/TrackedTarget.msg"
    assert copy.read_text() == (ROOT / "msg/TrackedTarget.msg").read_text(), \
        "copy msg/TrackedTarget.msg to vl_tracker_ros/msg_defs/vl_tracker/ (rosbags reads the copy)"


def test_vision_msgs_definitions_have_the_humble_jazzy_layout():
    store = typestore()

    def names(msgtype):
        return [(name, spec[1] if spec[0] == 2 else spec[1][0]) for name, spec in store.fielddefs[msgtype][1]]

    assert names("vision_msgs/msg/Point2D") == [("x", "float64"), ("y", "float64")]
    assert names("vision_msgs/msg/Pose2D") == [("position", "vision_msgs/msg/Point2D"), ("theta", "float64")]
    assert names("vision_msgs/msg/BoundingBox2D") == [("center", "vision_msgs/msg/Pose2D"), ("size_x", "float64"),
                                                       ("size_y", "float64")]
    assert names("vision_msgs/msg/ObjectHypothesis") == [("class_id", "string"), ("score", "float64")]
    assert names("vision_msgs/msg/ObjectHypothesisWithPose") == [
        ("hypothesis", "vision_msgs/msg/ObjectHypothesis"), ("pose", "geometry_msgs/msg/PoseWithCovariance")]
    assert [n for n, _ in store.fielddefs["vision_msgs/msg/Detection2D"][1]] == ["header", "results", "bbox", "id"]
    assert [n for n, _ in store.fielddefs["vision_msgs/msg/Detection2DArray"][1]] == ["header", "detections"]


# ------------------------------------------------------------------ package.xml and CMakeLists.txt
def test_package_xml_is_a_format_3_ament_cmake_interface_package():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "vl_tracker"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert root.findtext("version") == version

    def deps(*tags):
        return {e.text for tag in tags for e in root.findall(tag)}

    run = deps("depend", "exec_depend")
    assert {"rclpy", "std_msgs", "sensor_msgs", "vision_msgs", "std_srvs", "diagnostic_msgs", "launch_ros",
            "rosidl_default_runtime", "python3-numpy", "python3-opencv", "python3-yaml"} <= run
    assert {"std_msgs", "vision_msgs"} <= deps("depend", "build_depend")
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= deps("buildtool_depend")
    assert {"launch_testing", "launch_testing_ament_cmake", "launch_testing_ros", "ament_cmake_pytest"} <= \
        deps("test_depend")


def test_cmakelists_generates_the_message_and_installs_everything():
    text = (ROOT / "CMakeLists.txt").read_text()
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert re.search(r"project\(vl_tracker\)", code)
    assert re.search(r"rosidl_generate_interfaces\(\$\{PROJECT_NAME\}\s+msg/TrackedTarget\.msg\s+"
                     r"DEPENDENCIES std_msgs vision_msgs\s*\)", code)
    assert "ament_python_install_package(vl_tracker_core)" in code
    assert "ament_python_install_package(vl_tracker_ros)" in code
    program = re.search(r"install\(PROGRAMS (\S+)\s+DESTINATION lib/\$\{PROJECT_NAME\}", code).group(1)
    assert (ROOT / program).is_file() and os.access(ROOT / program, os.X_OK)
    assert re.search(r"install\(DIRECTORY launch config\s+DESTINATION share/\$\{PROJECT_NAME\}", code)
    testing = code[code.index("if(BUILD_TESTING)"):]
    for path in re.findall(r"add_launch_test\((\S+)", testing):
        assert (ROOT / path).is_file()
    for name in re.search(r"foreach\(test_name ([^)]*)\)", testing).group(1).split():
        assert (ROOT / f"test/{name}.py").is_file()
    assert code.rstrip().endswith("ament_package()")


def test_the_installed_executable_runs_node_main():
    script = (ROOT / "vl_tracker_ros/scripts/vl_tracker_node").read_text()
    assert script.startswith("#!/usr/bin/env python3") and "from vl_tracker_ros.node import main" in script
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^vl_tracker_node = "vl_tracker_ros\.node:main"$', pyproject, re.M)
    tree = ast.parse((ROOT / "vl_tracker_ros/node.py").read_text())
    assert "main" in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_only_the_node_imports_rclpy():
    importers = []
    for path in sorted([*ROOT.glob("vl_tracker_ros/**/*.py"), *ROOT.glob("vl_tracker_core/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
                importers.append(path.relative_to(ROOT).as_posix())
                break
    assert importers == ["vl_tracker_ros/node.py"]


# ------------------------------------------------------------------ parameters
def test_parameter_table_exposes_every_tracker_field_with_the_core_defaults():
    tracker = {p.name.removeprefix("tracker."): p.default for p in NODE_PARAMETERS if p.name.startswith("tracker.")}
    assert set(tracker) == {f.name for f in dataclasses.fields(TrackerParams)}
    assert tracker == load_default_params()
    assert tracker_params_from_values(default_values()) == TrackerParams(**load_default_params())


def test_parameter_defaults_lie_in_their_ranges_and_have_descriptions():
    for p in NODE_PARAMETERS:
        assert len(p.description) > 20, p.name
        if p.low is not None:
            assert p.low <= p.default <= p.high, p.name
            assert type(p.low) is type(p.high) and isinstance(p.default, type(p.low)), p.name
        if p.choices:
            assert p.default in p.choices and check_choice(p.name, p.default) is None
    assert "one of" in check_choice("backend", "tflite")
    assert PARAMETERS_BY_NAME["use_compressed"].read_only
    assert not PARAMETERS_BY_NAME["tracker.lost_threshold"].read_only
    assert not PARAMETERS_BY_NAME["backend"].read_only  # changed safely at run time (see node.py)


def config_keys_with_comments() -> list[tuple[str, bool]]:
    """(dotted key, has a comment on the line or the line above) for every parameter line of the config."""
    lines = (ROOT / "config/tracker.yaml").read_text().splitlines()
    out, stack = [], []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w]*):\s*(.*)$", line)
        if not m:
            continue
        indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
        stack = [(d, k) for d, k in stack if d < indent]
        stack.append((indent, key))
        value = rest.split("#")[0].strip()
        if value:  # a leaf
            path = [k for _, k in stack]
            commented = "#" in rest or lines[i - 1].strip().startswith("#")
            out.append((".".join(path[2:]), commented))
    return out


def test_config_lists_every_node_parameter_with_its_default_and_a_comment():
    data = yaml.safe_load((ROOT / "config/tracker.yaml").read_text())
    assert list(data) == [NODE_NAME]
    keys = config_keys_with_comments()
    assert sorted(k for k, _ in keys) == sorted(PARAMETERS_BY_NAME)
    assert [k for k, commented in keys if not commented] == []
    assert load_node_parameters(ROOT / "config/tracker.yaml") == default_values()
    # the same type as declared: ROS refuses 1 for a double parameter
    flat = {}
    for key, value in data[NODE_NAME]["ros__parameters"].items():
        flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    for name, value in flat.items():
        assert type(value) is type(PARAMETERS_BY_NAME[name].default), name


def test_config_tracker_section_equals_the_core_defaults():
    ros = yaml.safe_load((ROOT / "config/tracker.yaml").read_text())[NODE_NAME]["ros__parameters"]["tracker"]
    core = yaml.safe_load((ROOT / "vl_tracker_core/resources/tracker.yaml").read_text())["tracker"]
    assert ros == core


# ------------------------------------------------------------------ params file loading (launch)
def write(tmp_path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_params_file_applies_in_any_namespace_and_coerces_ints(tmp_path):
    path = write(tmp_path, "/**:\n  ros__parameters:\n    backend: onnxruntime\n"
                           "/robot1/vl_tracker_node:\n  ros__parameters:\n    tracker:\n      update_threshold: 1\n")
    assert load_node_parameters(path) == {"backend": "onnxruntime", "tracker.update_threshold": 1.0}


@pytest.mark.parametrize("text, reason", [
    ("vl_tracker_node:\n  ros__parameters:\n    tracker:\n      lost_treshold: 0.2\n",
     "did you mean 'tracker.lost_threshold'"),
    ("other_node:\n  ros__parameters:\n    backend: torch\n", "no section"),
    ("vl_tracker_node:\n  backend: torch\n", "ros__parameters"),
    ("vl_tracker_node:\n  ros__parameters:\n    tracker:\n      lost_frames: 2.5\n", "should be a int"),
    ("vl_tracker_node:\n  ros__parameters:\n    use_compressed: 'yes'\n", "should be a bool"),
    ("vl_tracker_node: [\n", "cannot read"),
])
def test_bad_params_files_stop_the_launch_with_the_reason(tmp_path, text, reason):
    with pytest.raises(ParamsFileError, match=re.escape(reason)):
        load_node_parameters(write(tmp_path, text))


def test_launch_arguments_override_only_when_given():
    assert launch_overrides({"backend": "", "model": "", "use_compressed": ""}) == {}
    assert launch_overrides({"backend": "tensorrt", "use_compressed": "True", "publish_debug_image": "0",
                             "engine_cache_dir": "/cache"}) == \
        {"backend": "tensorrt", "use_compressed": True, "publish_debug_image": False, "engine_cache_dir": "/cache"}
    with pytest.raises(ParamsFileError, match="true or false"):
        launch_overrides({"use_compressed": "maybe"})


def test_engine_options_map_node_parameters_to_create_engine():
    values = default_values()
    assert engine_options(values) == {"backend": "onnxruntime", "model": None}
    values.update(device="cuda", threads=2, engine_cache_dir="/cache")
    assert engine_options(values) == {"backend": "onnxruntime", "model": None, "device": "cuda", "threads": 2}
    values.update(backend="tensorrt", model="/models/tiny", device="cuda:1")
    assert engine_options(values) == {"backend": "tensorrt", "model": "/models/tiny", "precision": "fp16",
                                      "cache_dir": "/cache", "device": 1}
    with pytest.raises(ValueError, match="runs on a GPU"):
        engine_options({**values, "device": "cpu"})


def test_engine_options_match_the_backends_constructors():
    """Every option engine_options can produce is a parameter of that backend's constructor."""
    import inspect

    from vl_tracker_core.engines.torch_engine import TorchEngine

    constructors = {"torch": TorchEngine}
    for backend, module, name in (("onnxruntime", "onnx_engine", "OnnxEngine"),
                                  ("tensorrt", "tensorrt_engine", "TensorRTEngine")):
        try:
            constructors[backend] = getattr(__import__(f"vl_tracker_core.engines.{module}", fromlist=[name]), name)
        except ImportError:
            continue
    full = {**default_values(), "device": "cuda", "threads": 2, "engine_cache_dir": "/cache", "model": "/m"}
    for backend, cls in constructors.items():
        options = engine_options({**full, "backend": backend})
        options.pop("backend")
        assert set(options) <= set(inspect.signature(cls.__init__).parameters), backend


# ------------------------------------------------------------------ launch file
def test_launch_file_defines_generate_launch_description_and_the_arguments():
    tree = ast.parse((ROOT / "launch/tracker.launch.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    arguments = next(ast.literal_eval(n.value) for n in tree.body
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    assert {"namespace", "image", "description_topic", "init_box_topic", "params_file", "use_compressed",
            "backend", "model", "engine_cache_dir", "publish_debug_image"} <= set(arguments)
    from vl_tracker_ros.launch_helpers import OVERRIDE_ARGUMENTS

    assert set(OVERRIDE_ARGUMENTS) <= set(arguments)
    text = (ROOT / "launch/tracker.launch.py").read_text()
    for remap in ('"image"', '"image/compressed"', '"target_description"', '"init_box"'):
        assert f"({remap}," in text


def test_the_synthetic_preset_is_a_valid_partial_params_file():
    """vl_tracker_core/resources/synthetic.yaml (``--params synthetic``; installed as config/synthetic.yaml):
    read by the launch file's loader and by the core, every value a valid tracker parameter on top of the
    defaults, and CMakeLists installs it."""
    from vl_tracker_core.tracker import TrackerParams, load_default_params, load_params_file, params_file_path

    path = params_file_path("synthetic")
    assert path == ROOT / "vl_tracker_core/resources/synthetic.yaml"
    node = load_node_parameters(path)
    core = load_params_file("synthetic")
    assert node == {f"tracker.{k}": v for k, v in core.items()}
    params = TrackerParams.from_dict({**load_default_params(), **core})
    assert params.reference_rate == 0.0 and params.lost_threshold > TrackerParams().lost_threshold
    for name, value in node.items():
        assert type(value) is type(PARAMETERS_BY_NAME[name].default), name
    assert "vl_tracker_core/resources/synthetic.yaml DESTINATION share/${PROJECT_NAME}/config" in \
        (ROOT / "CMakeLists.txt").read_text()
