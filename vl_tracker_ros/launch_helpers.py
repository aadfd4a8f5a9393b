"""Parameter handling for ``launch/tracker.launch.py``, kept free of launch / rclpy so it is unit-tested.

The launch file reads the params file itself and hands the node a plain dict instead of ``--params-file``:
a file keyed ``vl_tracker_node:`` would silently not apply to a node started in a namespace
(``/robot1/vl_tracker_node``), and a misspelt key would be ignored by ROS. Here both are handled: the
node's section is found whatever the namespace, and unknown keys stop the launch with a suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vl_tracker_ros.params import NODE_NAME, PARAMETERS_BY_NAME

#: Launch arguments that override the params file when given (non-empty).
OVERRIDE_ARGUMENTS = ("use_compressed", "backend", "model", "device", "precision", "engine_cache_dir",
                      "grounder", "grounder_model", "publish_debug_image")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ParamsFileError(ValueError):
    """A params file the node cannot use (unreadable, no section for the node, unknown keys, wrong types)."""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _coerce(name: str, value: Any, source: str) -> Any:
    """``value`` with the type the node declares for ``name``; ints are accepted for float parameters."""
    default = PARAMETERS_BY_NAME[name].default
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    elif value is None:
        return ""
    raise ParamsFileError(f"{source}: {name} = {value!r} should be a {type(default).__name__} "
                          f"(like the default {default!r})")


def check_parameters(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Reject unknown names (with a suggestion) and coerce types; returns the cleaned dict."""
    out = {}
    for name, value in values.items():
        if name not in PARAMETERS_BY_NAME:
            close = difflib.get_close_matches(name, list(PARAMETERS_BY_NAME), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(PARAMETERS_BY_NAME))}"
            raise ParamsFileError(f"{source}: unknown parameter {name!r}{hint}")
        out[name] = _coerce(name, value, source)
    return out


def load_node_parameters(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """The node's parameters from a ROS 2 params file, flattened (``tracker.lost_threshold``) and checked.

    Sections used, later ones winning: ``/**``, then any key whose last name part is ``node_name``
    (``vl_tracker_node``, ``/vl_tracker_node``, ``/robot1/vl_tracker_node``).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsFileError(f"cannot read params file {path}: {exc}") from None
    if not isinstance(data, Mapping):
        raise ParamsFileError(f"{path}: expected '<node name>: ros__parameters: ...' at the top level")
    sections = [v for k, v in data.items() if str(k) in ("/**", "**")]
    sections += [v for k, v in data.items() if str(k).rstrip("/").split("/")[-1] == node_name]
    if not sections:
        raise ParamsFileError(f"{path}: no section for {node_name!r} (expected '{node_name}:' or '/**:' with "
                              "'ros__parameters:' under it)")
    values: dict[str, Any] = {}
    for section in sections:
        if not isinstance(section, Mapping) or not isinstance(section.get("ros__parameters"), Mapping):
            raise ParamsFileError(f"{path}: the {node_name!r} section has no 'ros__parameters:' mapping")
        values.update(_flatten(section["ros__parameters"]))
    return check_parameters(values, str(path))


def launch_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """Node parameters from launch arguments; empty arguments are left out (the params file decides)."""
    out: dict[str, Any] = {}
    for name in OVERRIDE_ARGUMENTS:
        text = str(arguments.get(name, "")).strip()
        if not text:
            continue
        if isinstance(PARAMETERS_BY_NAME[name].default, bool):
            if text.lower() not in _TRUE + _FALSE:
                raise ParamsFileError(f"launch argument {name}:={text!r} is not true or false")
            out[name] = text.lower() in _TRUE
        else:
            out[name] = text
    return out
