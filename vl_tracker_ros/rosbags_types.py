"""Our messages for ``rosbags``: a typestore that knows vision_msgs and vl_tracker/TrackedTarget, and a
``MessageFactory`` that builds ``rosbags`` message dataclasses (tests, bag replay). No rclpy.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

#: The message definitions shipped as data in ``vl_tracker_ros/msg_defs/<package>/<Name>.msg``.
_PACKAGES = ("vision_msgs", "vl_tracker")

_NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


def message_definitions() -> dict[str, str]:
    """``{"pkg/msg/Name": definition text}`` for the messages ``rosbags`` does not ship."""
    root = resources.files("vl_tracker_ros").joinpath("msg_defs")
    out = {}
    for package in _PACKAGES:
        for entry in sorted(root.joinpath(package).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".msg"):
                out[f"{package}/msg/{entry.name[:-4]}"] = entry.read_text(encoding="utf-8")
    return out


@functools.lru_cache(maxsize=4)
def typestore(store: Stores = Stores.ROS2_JAZZY) -> Any:
    """A rosbags typestore of ``store`` with vision_msgs 4.x and vl_tracker/TrackedTarget registered."""
    ts = get_typestore(store)
    types: dict = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    ts.register(types)
    return ts


class RosbagsMessageFactory:
    """``MessageFactory`` for rosbags dataclasses: fields not given get zero / empty defaults (recursively),
    byte sequences become uint8 numpy arrays."""

    def __init__(self, store: Any | None = None) -> None:
        self.store = store if store is not None else typestore()

    def make(self, msgtype: str, **fields: Any) -> Any:
        cls = self.store.types[msgtype]
        _, fielddefs = self.store.fielddefs[msgtype]
        values = {}
        for name, (nodetype, detail) in fielddefs:
            if name in fields:
                values[name] = self._convert(fields.pop(name), nodetype, detail)
            else:
                values[name] = self._default(nodetype, detail)
        if fields:
            raise TypeError(f"{msgtype} has no fields {sorted(fields)}")
        return cls(**values)

    def _convert(self, value: Any, nodetype: int, detail: Any) -> Any:
        if nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (subtype, subdetail), _ = detail
            if subtype == Nodetype.BASE and subdetail[0] in _NUMPY_TYPES:
                dtype = _NUMPY_TYPES[subdetail[0]]
                if isinstance(value, (bytes, bytearray, memoryview)):
                    return np.frombuffer(value, dtype=dtype).copy()
                return np.asarray(value, dtype=dtype).reshape(-1)
        return value

    def _default(self, nodetype: int, detail: Any) -> Any:
        if nodetype == Nodetype.NAME:
            return self.make(detail)
        if nodetype == Nodetype.BASE:
            name = detail[0]
            return "" if name in ("string", "wstring") else False if name == "bool" else (
                0.0 if name.startswith("float") else 0)
        (subtype, subdetail), length = detail
        count = length if nodetype == Nodetype.ARRAY else 0
        if subtype == Nodetype.BASE and subdetail[0] in _NUMPY_TYPES:
            return np.zeros(count, dtype=_NUMPY_TYPES[subdetail[0]])
        return [self._default(subtype, subdetail) for _ in range(count)]
