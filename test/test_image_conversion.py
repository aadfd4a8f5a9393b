"""sensor_msgs/Image and CompressedImage -> RGB, checked against OpenCV's own conversions.

Two kinds of check: (1) random pixels with row padding, compared with
cv2.cvtColor on the unpadded array (stride and byte-order handling), and
(2) flat colours built by hand from the encoding's definition, so a wrong
conversion code (swapped chroma, a shifted bayer pattern) cannot pass by
agreeing with itself.
"""

from __future__ import annotations

import array
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from vl_tracker_ros.image_conversion import (
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    message_to_rgb,
    raw_to_rgb,
)

RNG = np.random.default_rng(7)
H, W = 24, 32
PAD = 5  # bytes of row padding added after each row


def padded(rows: np.ndarray, pad: int = PAD) -> tuple[bytes, int]:
    """(data, step) of a 2-D uint8 array with ``pad`` junk bytes after every row."""
    rows = np.ascontiguousarray(rows).reshape(rows.shape[0], -1)
    junk = RNG.integers(0, 256, (rows.shape[0], pad), dtype=np.uint8)
    out = np.concatenate([rows, junk], axis=1)
    return out.tobytes(), out.shape[1]


def msg(encoding: str, data, step: int, height: int = H, width: int = W, is_bigendian: int = 0):
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=step, data=data,
                           is_bigendian=is_bigendian)


# ------------------------------------------------------------------ packed encodings vs cv2.cvtColor
@pytest.mark.parametrize("encoding, channels, code", [
    ("rgb8", 3, None), ("bgr8", 3, cv2.COLOR_BGR2RGB), ("rgba8", 4, cv2.COLOR_RGBA2RGB),
    ("bgra8", 4, cv2.COLOR_BGRA2RGB), ("mono8", 1, cv2.COLOR_GRAY2RGB), ("8UC3", 3, cv2.COLOR_BGR2RGB),
])
def test_8bit_encodings_with_row_padding(encoding, channels, code):
    src = RNG.integers(0, 256, (H, W, channels), dtype=np.uint8)
    data, step = padded(src)
    out = image_to_rgb(msg(encoding, data, step))
    expected = src if code is None else cv2.cvtColor(src if channels > 1 else src[:, :, 0], code)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    assert out.flags.writeable and out.flags.c_contiguous


@pytest.mark.parametrize("bigendian", [0, 1])
def test_mono16_honours_endianness(bigendian):
    src = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    raw = src.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(H, W * 2)
    data, step = padded(raw)
    out = image_to_rgb(msg("mono16", data, step, is_bigendian=bigendian))
    np.testing.assert_array_equal(out, cv2.cvtColor((src >> 8).astype(np.uint8), cv2.COLOR_GRAY2RGB))


def test_bgr16_is_scaled_to_8_bits():
    src = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    data, step = padded(src.astype("<u2").view(np.uint8).reshape(H, -1))
    out = image_to_rgb(msg("bgr16", data, step))
    np.testing.assert_array_equal(out, (src >> 8).astype(np.uint8)[:, :, ::-1])


# ------------------------------------------------------------------ YUV
@pytest.mark.parametrize("encoding, code", [
    ("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("uyvy", cv2.COLOR_YUV2RGB_UYVY),
    ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2), ("yuyv", cv2.COLOR_YUV2RGB_YUY2),
])
def test_yuv422_matches_opencv(encoding, code):
    src = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    data, step = padded(src)
    np.testing.assert_array_equal(image_to_rgb(msg(encoding, data, step)), cv2.cvtColor(src, code))


@pytest.mark.parametrize("encoding, code", [("nv12", cv2.COLOR_YUV2RGB_NV12), ("nv21", cv2.COLOR_YUV2RGB_NV21)])
def test_nv12_matches_opencv(encoding, code):
    src = RNG.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)
    data, step = padded(src)
    np.testing.assert_array_equal(image_to_rgb(msg(encoding, data, step)), cv2.cvtColor(src, code))


def bt601(y: int, u: int, v: int) -> np.ndarray:
    """RGB of one YUV (limited range BT.601) triple, from the standard's formula."""
    c, d, e = 1.164 * (y - 16), u - 128, v - 128
    return np.clip(np.round([c + 1.596 * e, c - 0.392 * d - 0.813 * e, c + 2.017 * d]), 0, 255)


YUV = (120, 90, 200)  # an orange: R > G > B, so swapped U/V or R/B would show


def test_yuv422_byte_orders_follow_their_definitions():
    y, u, v = YUV
    expected = bt601(y, u, v)
    uyvy = np.tile(np.array([u, y, v, y], np.uint8), (H, W // 2))
    yuyv = np.tile(np.array([y, u, y, v], np.uint8), (H, W // 2))
    for encoding, data in (("yuv422", uyvy), ("uyvy", uyvy), ("yuv422_yuy2", yuyv), ("yuyv", yuyv)):
        out = image_to_rgb(msg(encoding, data.tobytes(), W * 2))
        assert np.abs(out.reshape(-1, 3) - expected).max() <= 2, encoding


def test_nv12_plane_layout_follows_its_definition():
    y, u, v = YUV
    luma = np.full((H, W), y, np.uint8)
    for encoding, pair in (("nv12", (u, v)), ("nv21", (v, u))):
        chroma = np.tile(np.array(pair, np.uint8), (H // 2, W // 2))
        data, step = padded(np.concatenate([luma, chroma]))
        out = image_to_rgb(msg(encoding, data, step))
        assert np.abs(out.reshape(-1, 3) - bt601(y, u, v)).max() <= 2, encoding


# ------------------------------------------------------------------ bayer
PATTERNS = {  # ROS name -> colour channel (0 R, 1 G, 2 B) at (row % 2, col % 2)
    "bayer_rggb8": ((0, 1), (1, 2)), "bayer_bggr8": ((2, 1), (1, 0)),
    "bayer_gbrg8": ((1, 2), (0, 1)), "bayer_grbg8": ((1, 0), (2, 1)),
}


@pytest.mark.parametrize("encoding", sorted(PATTERNS))
def test_bayer_patterns_demosaic_a_flat_colour(encoding):
    colour = np.array([200, 120, 40], np.uint8)
    mosaic = np.zeros((H, W), np.uint8)
    for r in range(2):
        for c in range(2):
            mosaic[r::2, c::2] = colour[PATTERNS[encoding][r][c]]
    data, step = padded(mosaic)
    out = image_to_rgb(msg(encoding, data, step))
    interior = out[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(interior - colour).max() <= 2


@pytest.mark.parametrize("encoding, code", [
    ("bayer_rggb8", cv2.COLOR_BayerBG2RGB), ("bayer_bggr8", cv2.COLOR_BayerRG2RGB),
    ("bayer_gbrg8", cv2.COLOR_BayerGR2RGB), ("bayer_grbg8", cv2.COLOR_BayerGB2RGB),
])
def test_bayer_matches_opencv_with_padding(encoding, code):
    src = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    data, step = padded(src)
    np.testing.assert_array_equal(image_to_rgb(msg(encoding, data, step)), cv2.cvtColor(src, code))


# ------------------------------------------------------------------ data containers
def test_rclpy_and_rosbags_data_containers_are_accepted():
    src = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    raw = src.tobytes()
    for data in (raw, bytearray(raw), array.array("B", raw), np.frombuffer(raw, np.uint8), list(raw),
                 memoryview(raw)):
        np.testing.assert_array_equal(raw_to_rgb("rgb8", H, W, W * 3, data), src)


def test_every_supported_encoding_converts():
    sizes = {"mono16": 2, "rgb16": 6, "bgr16": 6, "rgba16": 8, "bgra16": 8, "16uc1": 2, "rgb8": 3, "bgr8": 3,
             "8uc3": 3, "rgba8": 4, "bgra8": 4, "8uc4": 4}
    for encoding in SUPPORTED_ENCODINGS:
        bpp = sizes.get(encoding, 2 if "yuv" in encoding or encoding in ("uyvy", "yuyv") else 1)
        rows = H * 3 // 2 if encoding in ("nv12", "nv21") else H
        data = RNG.integers(0, 256, rows * W * bpp, dtype=np.uint8)
        assert raw_to_rgb(encoding, H, W, W * bpp, data).shape == (H, W, 3), encoding


# ------------------------------------------------------------------ malformed raw images
@pytest.mark.parametrize("encoding, height, width, step, size, reason", [
    ("rgb8", H, W, W * 3, W * 3 * H - 1, "truncated"),
    ("rgb8", H, W, W * 3 - 1, W * 3 * H, "step"),
    ("mono16", H, W, W, W * H * 2, "step"),
    ("rgb8", 0, W, W * 3, 10, "empty"),
    ("rgb8", H, 0, 0, 10, "empty"),
    ("yuv420", H, W, W, W * H * 2, "not supported; supported: "),
    ("", H, W, W * 3, W * 3 * H, "not supported"),
    ("yuv422", H, W - 1, W * 2, W * 2 * H, "even"),
    ("nv12", H - 1, W, W, W * H * 2, "even"),
    ("nv12", H, W, W, W * H, "truncated"),
    ("bayer_rggb8", 1, W, W, W, "2x2"),
    ("rgb8", -3, W, W * 3, 10, "negative"),
    ("rgb8", "abc", W, W * 3, 10, "not an integer"),
    ("rgb8", 10**6, 10**6, 3 * 10**6, 10, "pixel limit"),
])
def test_malformed_images_raise_a_specific_error(encoding, height, width, step, size, reason):
    with pytest.raises(ImageConversionError, match=reason):
        raw_to_rgb(encoding, height, width, step, np.zeros(size, np.uint8))


@pytest.mark.parametrize("data, reason", [
    (None, "not a byte buffer"), ("text", "not a byte buffer"), ([1, 2, 300], "not a byte buffer"),
    (np.zeros(10, np.float32), "dtype"),
])
def test_non_byte_data_is_refused(data, reason):
    with pytest.raises(ImageConversionError, match=reason):
        raw_to_rgb("mono8", 2, 2, 2, data)


def test_objects_that_are_not_images_are_refused():
    with pytest.raises(ImageConversionError, match="neither"):
        message_to_rgb(SimpleNamespace(data="hello"))
    with pytest.raises(ImageConversionError, match="not a sensor_msgs/Image"):
        image_to_rgb(SimpleNamespace(encoding="rgb8"))


# ------------------------------------------------------------------ compressed
def smooth_image(h: int = 48, w: int = 64) -> np.ndarray:
    """An RGB image with distinct channels and little high-frequency content (JPEG keeps it well)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 255 // w, yy * 255 // h, np.full((h, w), 60)]).astype(np.uint8)


def encode(image_in_mat_order: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image_in_mat_order)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("fmt", ["png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", "PNG"])
def test_png_in_bgr_order_decodes_exactly(fmt):
    rgb = smooth_image()
    out = compressed_to_rgb(fmt, encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ".png"))
    np.testing.assert_array_equal(out, rgb)


def test_compressed_rgb8_target_means_the_data_is_already_rgb():
    rgb = smooth_image()
    out = compressed_to_rgb("rgb8; png compressed rgb8", encode(rgb, ".png"))  # encoder wrote RGB as-is
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("fmt", ["jpeg", "jpg", "rgb8; jpeg compressed bgr8", ""])
def test_jpeg_decodes_close_to_the_original(fmt):
    rgb = smooth_image()
    out = compressed_to_rgb(fmt, encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ".jpg"))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 3


def test_mono_and_16bit_png():
    gray = smooth_image()[:, :, 0]
    np.testing.assert_array_equal(compressed_to_rgb("mono8; png compressed mono8", encode(gray, ".png")),
                                  cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    wide = gray.astype(np.uint16) * 257
    np.testing.assert_array_equal(compressed_to_rgb("mono16; png compressed mono16", encode(wide, ".png")),
                                  cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    bgra = cv2.cvtColor(smooth_image(), cv2.COLOR_RGB2BGRA)
    np.testing.assert_array_equal(compressed_to_rgb("bgra8; png compressed bgra8", encode(bgra, ".png")),
                                  smooth_image())


def test_real_camera_jpegs_from_ros_bags():
    """The frames of three bags recorded on a Raspberry Pi camera (format "jpg")."""
    pytest.importorskip("rosbags")
    from rosbags.rosbag1 import Reader
    from rosbags.typesys import Stores, get_typestore

    # The checkout has ../shared beside it (see .ci/run).
    bags = sorted((Path(__file__).resolve().parents[2] / "shared/data/ros1_compressed_image_bags").glob("*.bag"))
    if not bags:
        pytest.skip("shared/data/ros1_compressed_image_bags is not present")
    store = get_typestore(Stores.ROS1_NOETIC)
    seen = 0
    for path in bags:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if c.msgtype == "sensor_msgs/msg/CompressedImage"]
            for conn, _, raw in reader.messages(connections=conns):
                m = store.deserialize_ros1(raw, conn.msgtype)
                out = message_to_rgb(m)
                expected = cv2.cvtColor(cv2.imdecode(np.asarray(m.data), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                np.testing.assert_array_equal(out, expected)
                assert out.shape[1] == 1280 and out.shape[0] in (720, 960)
                seen += 1
    assert seen == len(bags)


def png_header(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + \
        b"\x08\x02\x00\x00\x00" + b"\x00" * 8


@pytest.mark.parametrize("fmt, data, reason", [
    ("jpeg", b"", "no data"),
    ("jpeg", b"\xff\xd8 not really a jpeg", "could not decode"),
    ("png", bytes(RNG.integers(0, 256, 1000, dtype=np.uint8)), "could not decode"),
    ("16UC1; compressedDepth png", b"\x00" * 64, "compressedDepth"),
    ("h264", b"\x00\x00\x00\x01", "video codec"),
    ("png", png_header(100_000, 100_000), "limit"),
    ("png", png_header(0, 10), "zero"),
])
def test_bad_compressed_images_raise_a_specific_error(fmt, data, reason):
    with pytest.raises(ImageConversionError, match=reason):
        compressed_to_rgb(fmt, data)


def test_truncated_jpeg_is_refused_or_decoded_never_crashes():
    data = encode(cv2.cvtColor(smooth_image(), cv2.COLOR_RGB2BGR), ".jpg")
    for cut in (2, 20, 100, len(data) // 2, len(data) - 2):
        try:
            out = compressed_to_rgb("jpeg", data[:cut])
        except ImageConversionError:
            continue
        assert out.ndim == 3 and out.shape[2] == 3  # libjpeg may fill a truncated tail with grey
