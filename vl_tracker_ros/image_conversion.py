"""sensor_msgs/Image and CompressedImage -> RGB uint8 ``(H, W, 3)``, without cv_bridge.

cv_bridge is a compiled dependency that often does not match the Python or
OpenCV of a Jetson image; the conversions the tracker needs are a few lines of
numpy and OpenCV. Messages are duck-typed on their field names, so rclpy
messages, ``rosbags`` dataclasses and plain objects all work. Nothing here
imports rclpy.

Every unusable message raises ``ImageConversionError`` with the reason; the
node logs it, counts it in its diagnostics and skips the frame.
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

__all__ = ["ImageConversionError", "SUPPORTED_ENCODINGS", "image_to_rgb", "compressed_to_rgb", "raw_to_rgb",
           "message_to_rgb", "rgb_to_image_fields"]

#: Largest image accepted (pixels): a guard against compressed "bombs" whose header claims a huge size.
MAX_PIXELS = 64_000_000


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB frame (the message says why)."""


# encoding -> (channels, bytes per channel, OpenCV conversion to RGB or None when already RGB)
_PACKED: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, 2, None),
    "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": (4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
}
# ROS names bayer patterns by the top-left 2x2 block; OpenCV by the block starting at the second row and
# column, so rggb in ROS is "BG" in OpenCV (the same mapping cv_bridge uses).
_BAYER = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}
# 4:2:2 packed, 2 bytes per pixel. ROS "yuv422" is UYVY byte order.
_YUV422 = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
# 4:2:0 semi-planar: a full-resolution Y plane, then a half-height interleaved chroma plane (same row stride).
_YUV420SP = {"nv12": cv2.COLOR_YUV2RGB_NV12, "nv21": cv2.COLOR_YUV2RGB_NV21}
# OpenCV type names that publishers use for plain images (8UC3 is BGR by OpenCV convention).
_ALIASES = {"8uc1": "mono8", "8uc3": "bgr8", "8uc4": "bgra8", "16uc1": "mono16"}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(sorted({*_PACKED, *_BAYER, *_YUV422, *_YUV420SP, *_ALIASES}))


def _buffer(data: Any) -> np.ndarray:
    """The message's ``data`` as a flat uint8 array, without copying where possible."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f"image data has dtype {data.dtype}; expected uint8 bytes")
        return data.reshape(-1)
    if data is None or isinstance(data, str):
        raise ImageConversionError(f"image data of type {type(data).__name__} is not a byte buffer")
    try:  # bytes, bytearray, array.array('B') (rclpy), memoryview
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        pass
    try:  # a plain sequence of ints
        values = np.asarray(data)
    except (TypeError, ValueError):
        values = np.asarray([], dtype=object)
    if values.ndim != 1 or values.dtype.kind not in "iu" or (values.size and (values.min() < 0 or values.max() > 255)):
        raise ImageConversionError(f"image data of type {type(data).__name__} is not a byte buffer")
    return values.astype(np.uint8)


def _uint(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ImageConversionError(f"image {name} {value!r} is not an integer") from None
    if number < 0:
        raise ImageConversionError(f"image {name} is negative ({number})")
    return number


def _rows(buf: np.ndarray, height: int, step: int, row_bytes: int, encoding: str) -> np.ndarray:
    """``height`` rows of ``row_bytes`` each, taken ``step`` bytes apart (drops row padding)."""
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than one {encoding} row ({row_bytes} bytes); "
                                   "step must be at least width x bytes per pixel")
    needed = step * height
    if buf.size < needed:
        raise ImageConversionError(f"image data has {buf.size} bytes; {encoding} at step {step} x height {height} "
                                   f"needs {needed} (truncated message?)")
    return buf[:needed].reshape(height, step)[:, :row_bytes]


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data: Any, is_bigendian: bool | int = 0
               ) -> np.ndarray:
    """Convert the fields of a sensor_msgs/Image to a new RGB uint8 ``(H, W, 3)`` array."""
    height, width, step = _uint(height, "height"), _uint(width, "width"), _uint(step, "step")
    if height == 0 or width == 0:
        raise ImageConversionError(f"image is empty ({width}x{height})")
    if height * width > MAX_PIXELS:
        raise ImageConversionError(f"image {width}x{height} exceeds the {MAX_PIXELS} pixel limit")
    name = str(encoding).strip().lower()
    name = _ALIASES.get(name, name)
    buf = _buffer(data)

    if name in _PACKED:
        channels, depth, code = _PACKED[name]
        rows = _rows(buf, height, step, width * channels * depth, name)
        if depth == 2:
            dtype = ">u2" if is_bigendian else "<u2"
            wide = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
            # Fixed scale (as cv_bridge does for 16 -> 8 bit), not per-frame normalisation: the tracker
            # compares frames with each other, so brightness must not jump between them.
            pixels = (wide >> 8).astype(np.uint8)
        else:
            pixels = rows.reshape(height, width, channels)
        if code is None:
            return np.array(pixels, dtype=np.uint8, order="C")  # a private, writable copy
        return cv2.cvtColor(np.ascontiguousarray(pixels.squeeze(axis=2) if channels == 1 else pixels), code)

    if name in _BAYER:
        rows = _rows(buf, height, step, width, name)
        if height < 2 or width < 2:
            raise ImageConversionError(f"a bayer image needs at least 2x2 pixels, got {width}x{height}")
        return cv2.cvtColor(np.ascontiguousarray(rows), _BAYER[name])

    if name in _YUV422:
        if width % 2:
            raise ImageConversionError(f"{name} packs pixel pairs, so its width must be even (got {width})")
        rows = _rows(buf, height, step, width * 2, name)
        return cv2.cvtColor(np.ascontiguousarray(rows).reshape(height, width, 2), _YUV422[name])

    if name in _YUV420SP:
        if width % 2 or height % 2:
            raise ImageConversionError(f"{name} subsamples chroma 2x2, so width and height must be even "
                                       f"(got {width}x{height})")
        planes = _rows(buf, height * 3 // 2, step, width, name)
        return cv2.cvtColor(np.ascontiguousarray(planes), _YUV420SP[name])

    raise ImageConversionError(f"encoding {encoding!r} is not supported; supported: {', '.join(SUPPORTED_ENCODINGS)}")


def image_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (any object with its fields) -> RGB uint8 ``(H, W, 3)``."""
    try:
        fields = (msg.encoding, msg.height, msg.width, msg.step, msg.data)
    except AttributeError as exc:
        raise ImageConversionError(f"not a sensor_msgs/Image: {exc}") from None
    return raw_to_rgb(*fields, is_bigendian=getattr(msg, "is_bigendian", 0))


# ---------------------------------------------------------------------------------------------- compressed
_VIDEO_CODECS = ("h264", "h265", "hevc", "av1", "vp8", "vp9", "theora", "ffmpeg", "mpeg")


def _header_size(buf: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, read before decoding; None when not found."""
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24:
        return struct.unpack(">II", buf[16:24])
    if buf[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(buf):
            if buf[i] != 0xFF:
                return None
            marker = buf[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = struct.unpack(">H", buf[i + 2:i + 4])[0]
            # Start-of-frame markers (baseline, progressive, ...) carry the size; C4/C8/CC are not frames.
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", buf[i + 5:i + 9])
                return width, height
            i += 2 + length
    return None


def _decoded_order(fmt: str) -> str:
    """Channel order of the decoded pixels: the "compressed X" part of an image_transport format string
    ("rgb8; jpeg compressed bgr8") names it; OpenCV's BGR is the default."""
    _, _, tail = fmt.partition("compressed")
    target = tail.strip().split()[0] if tail.strip() else ""
    return "rgb" if target.startswith("rgb") else "bgr"


def compressed_to_rgb(fmt: str, data: Any) -> np.ndarray:
    """Decode CompressedImage ``data`` (JPEG, PNG; also anything else OpenCV reads) to RGB uint8."""
    text = str(fmt).strip().lower()
    if "compresseddepth" in text:
        raise ImageConversionError(f"format {fmt!r} is a compressedDepth (depth map) image; the tracker needs a "
                                   "colour or mono camera image")
    if any(codec in text for codec in _VIDEO_CODECS):
        raise ImageConversionError(f"format {fmt!r} is a video codec stream; subscribe to a raw image or a "
                                   "jpeg/png CompressedImage (image_transport 'compressed') instead")
    buf = _buffer(data)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image ({fmt!r}) has no data")
    size = _header_size(buf[:1 << 20].tobytes())
    if size is not None and (size[0] * size[1] > MAX_PIXELS or 0 in size):
        raise ImageConversionError(f"compressed image header claims {size[0]}x{size[1]} pixels; "
                                   f"the limit is {MAX_PIXELS} and zero is invalid")
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageConversionError(f"could not decode the compressed image (format {fmt!r}, {buf.size} bytes): "
                                   "corrupt data or an unsupported format (jpeg and png are supported)")
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        raise ImageConversionError(f"compressed image decodes to {decoded.dtype} pixels; 8 or 16 bit expected")
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
    channels = decoded.shape[2]
    rgb_order = _decoded_order(text) == "rgb"
    if channels == 3:
        return np.ascontiguousarray(decoded) if rgb_order else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_RGBA2RGB if rgb_order else cv2.COLOR_BGRA2RGB)
    if channels == 1:
        return cv2.cvtColor(decoded[:, :, 0], cv2.COLOR_GRAY2RGB)
    raise ImageConversionError(f"compressed image decodes to {channels} channels; 1, 3 or 4 expected")


def message_to_rgb(msg: Any) -> np.ndarray:
    """Image or CompressedImage (told apart by their fields) -> RGB uint8 ``(H, W, 3)``."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    if hasattr(msg, "format") and hasattr(msg, "data"):
        return compressed_to_rgb(msg.format, msg.data)
    raise ImageConversionError(f"{type(msg).__name__} is neither a sensor_msgs/Image nor a CompressedImage")


def rgb_to_image_fields(rgb: np.ndarray) -> dict[str, Any]:
    """The fields (without header) of an rgb8 sensor_msgs/Image holding ``rgb``."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return {"height": height, "width": width, "encoding": "rgb8", "is_bigendian": 0, "step": width * 3,
            "data": rgb.reshape(-1)}
