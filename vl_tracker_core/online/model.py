"""The online discriminative target model: learned from the first box, updated while the target is sure.

``OnlineModel`` is what follows the target from frame to frame (pytracking-style ``initialize`` /
``track`` / ``update`` / ``redetect``). It holds one correlation filter per trunk tap (stride 16 and
stride 8), fitted on the features of a square context crop around the target and answering on the
next frame's crop:

- the *training* sample is multiplied by a box-shaped cos² window twice the box's size, so the filter
  learns the target, not the background the camera is moving past (the searched features are not masked);
- the search crop is centred where constant-velocity motion puts the target;
- the two taps' responses are fused on a finer grid by Fourier interpolation;
- scale: one trunk pass per frame; the sizes one step either side are that crop's maps resampled about its
  centre (band-limited, so no size is favoured by blur), checked every ``scale_interval``-th frame;
- a frame's quality is the fused peak and its peak-to-sidelobe ratio, each against a reference: their mean
  over the first learned frames, then a slow running average (1.0 = as sure as usual). On real video a
  look that changes over many frames keeps the quality near 1; with the reference fixed (rate 0) a model
  that drifts onto something else scores lower and lower (config/synthetic.yaml).

``redetect`` correlates the same filters with a whole-frame feature map to say where the target most
likely is after it was lost. Features come from the caller (the engine's trunk graphs) so this module
stays numpy: frames in, boxes out.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vl_tracker_core.boxes import Box
from vl_tracker_core.data.crops import crop_square
from vl_tracker_core.online.dcf import (
    CorrelationFilter,
    box_mask,
    fft,
    gaussian_label,
    hann2d,
    normalize_layer,
    peak,
    sidelobe_ratio,
    upsample_spectrum,
)

#: ``features(patches)`` with patches (N, S, S, 3) uint8 -> (stride-8 map (N, C8, S/8, S/8),
#: stride-16 map (N, C16, S/16, S/16)); a whole-frame call takes (1, H, W, 3).
FeatureFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
STRIDES = (16, 8)
#: share of the first frame's self-response a well-tracked next frame reaches (measured on real_dev: 0.6-0.9)
FIRST_FRAME_DISCOUNT = 0.7


@dataclass(frozen=True)
class OnlineParams:
    """The filter's recipe. Defaults were tuned on real-train (BENCHMARKS.md, "Tracking core v4")."""

    #: search crop side = context * sqrt(w * h) of the target box
    context: float = 4.0
    #: learning rate of the running filter (0 = never updated after the first frame)
    learning_rate: float = 0.015
    #: regulariser = reg_factor * mean of the first frame's denominator
    reg_factor: float = 0.01
    #: Gaussian label sigma as a fraction of sqrt(w * h)
    sigma_factor: float = 0.1
    #: the training sample's cos² mask spans mask_factor times the box on each axis
    mask_factor: float = 2.0
    #: weights of the stride-16 and stride-8 responses in the fused response
    weight16: float = 1.0
    weight8: float = 0.5
    #: scale step between the crops of a scale check, penalty of a changed scale, smoothing of the size
    scale_step: float = 1.04
    scale_penalty: float = 0.985
    scale_smoothing: float = 0.5
    #: run the scale check every k-th frame (1 = every frame)
    scale_interval: int = 1
    #: constant-velocity prediction: the search centre is the position plus the velocity, an EMA (this weight
    #: for the newest displacement) of the per-frame displacements; 0 = search where the target was
    velocity: float = 0.5
    #: fused response grid (cells across the crop)
    response_size: int = 64
    #: the reference of peak and PSR is their mean over the first ``history`` learned frames, then a running
    #: average with weight ``reference_rate`` for the newest learned frame (0 = fixed from then on)
    history: int = 10
    reference_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.context <= 1.0:
            raise ValueError(f"context must be > 1 (the crop must hold the target), got {self.context}")
        for name in ("learning_rate", "scale_smoothing", "velocity", "scale_penalty", "reference_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.reg_factor <= 0 or self.sigma_factor <= 0 or self.mask_factor <= 0:
            raise ValueError("reg_factor, sigma_factor and mask_factor must be > 0")
        if self.scale_step < 1.0:
            raise ValueError(f"scale_step must be >= 1, got {self.scale_step}")
        if self.scale_interval < 1 or self.history < 1:
            raise ValueError("scale_interval and history must be >= 1")
        if self.weight16 < 0 or self.weight8 < 0 or self.weight16 + self.weight8 <= 0:
            raise ValueError("weight16 and weight8 must be >= 0 and not both 0")


@dataclass(frozen=True)
class Estimate:
    """One frame's answer of the online model."""

    box: Box
    #: fused response maximum, raw and relative to the running reference (1 = typical for this target)
    peak: float
    quality: float
    psr: float
    #: what ``update`` learns from: the crop's normalised maps (stride 16, stride 8), and where the target lies in them
    _sample: tuple[np.ndarray, np.ndarray] | None = None
    _shift: tuple[float, float] = (0.0, 0.0)
    _size_px: tuple[float, float] = (1.0, 1.0)
    _side: float = 1.0


class OnlineModel:
    """A target model for one target. ``initialize`` on the first box, then ``track`` / ``update`` per frame."""

    def __init__(self, features: FeatureFn, crop_size: int, params: OnlineParams | None = None,
                 scales: int = 3) -> None:
        if crop_size % 16:
            raise ValueError(f"crop_size {crop_size} must be a multiple of 16")
        self.features = features
        self.crop_size = crop_size
        self.params = params or OnlineParams()
        self.scales = scales
        self.filters = {s: CorrelationFilter(self.params.reg_factor) for s in STRIDES}
        self._windows = {s: hann2d(crop_size // s, crop_size // s) for s in STRIDES}
        self.box: Box | None = None
        self._velocity = (0.0, 0.0)
        self._frames = 0
        self._reference = (1.0, 1.0)  # peak, PSR
        self._learned = 0
        self._resamplers: dict[tuple[int, float], np.ndarray] = {}

    # ------------------------------------------------------------------ public
    def initialize(self, frame: np.ndarray, box: Box) -> None:
        """Learn the target at ``box`` from scratch."""
        self.box = box
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        self._velocity = (0.0, 0.0)
        self._frames = 0
        self._learned = 0
        side = self.side(box)
        patch, _ = crop_square(frame, (cx, cy), side, self.crop_size)
        f8, f16 = self.features(patch[None])
        sample = (normalize_layer(f16[0]), normalize_layer(f8[0]))
        self._fit(sample, (0.0, 0.0), (box[2], box[3]), side, rate=1.0)
        # Until confident frames accumulate, the reference is the first frame's response to its own sample,
        # discounted: a filter answers its training sample more sharply than any later frame.
        response = self._fused(sample, batch=False)
        value, dy, dx = peak(response)
        self._reference = (FIRST_FRAME_DISCOUNT * value,
                           FIRST_FRAME_DISCOUNT * sidelobe_ratio(response, dy, dx, self._exclusion()))
        self._learned = 1

    def track(self, frame: np.ndarray, around: Box | None = None) -> Estimate:
        """Where the target is on ``frame`` (nothing is learned: ``accept`` / ``update`` the answer). ``around``:
        search there instead (a re-detection candidate's centre, at the model's size), one crop, no motion
        prediction."""
        if self.box is None:
            raise RuntimeError("initialize the online model first")
        p = self.params
        box = self.box if around is None else (around[0] + around[2] / 2.0 - self.box[2] / 2.0,
                                               around[1] + around[3] / 2.0 - self.box[3] / 2.0, *self.box[2:])
        cx, cy = box[0] + box[2] / 2.0, box[1] + box[3] / 2.0
        if around is None:
            self._frames += 1
            center = (cx + self._velocity[0], cy + self._velocity[1])
        else:
            center = (around[0] + around[2] / 2.0, around[1] + around[3] / 2.0)
        base = self.side(box)
        check_scale = around is None and self.scales > 1 and self._frames % p.scale_interval == 0
        half = self.scales // 2
        factors = [p.scale_step ** k for k in range(-half, half + 1)] if check_scale else [1.0]
        patch, _ = crop_square(frame, center, base, self.crop_size)
        f8, f16 = self.features(patch[None])
        # One trunk pass: the other sizes are its maps resampled about the crop centre. Normalised once, before
        # resampling, so every size is measured on the same scale (and update() learns from the same maps).
        sample = (normalize_layer(f16[0]), normalize_layer(f8[0]))
        taps = (self._rescaled(16, sample[0], factors), self._rescaled(8, sample[1], factors))
        responses = self._fused(taps, batch=True)
        best = None
        for k, factor in enumerate(factors):
            value, dy, dx = peak(responses[k])
            score = value * (p.scale_penalty if factor != 1.0 else 1.0)
            if best is None or score > best[0]:
                best = (score, value, dy, dx, k, factor)
        _, value, dy, dx, k, factor = best
        side = base * factor
        cell = side / responses.shape[-1]  # frame pixels per fused cell
        new_cx, new_cy = center[0] + dx * cell, center[1] + dy * cell
        # A larger crop means the target looks smaller in it: the crop that fits best says the new size.
        w = box[2] * (1.0 - p.scale_smoothing + p.scale_smoothing * factor)
        h = box[3] * (1.0 - p.scale_smoothing + p.scale_smoothing * factor)
        psr = sidelobe_ratio(responses[k], dy, dx, self._exclusion())
        # What update() learns from: the crop the trunk saw (not a resampled map), and where the target lies in
        # it, in crop pixels from its centre.
        shift = ((new_cy - center[1]) / base * self.crop_size, (new_cx - center[0]) / base * self.crop_size)
        return Estimate(
            box=(new_cx - w / 2.0, new_cy - h / 2.0, w, h),
            peak=value, quality=self._relative(value, psr), psr=psr,
            _sample=sample, _shift=shift, _size_px=(w, h), _side=base,
        )

    def accept(self, estimate: Estimate) -> None:
        """Follow ``estimate`` (move the model's box there, update the velocity) without learning from it."""
        old, new = self.box, estimate.box
        if old is not None:
            a = self.params.velocity
            dx = (new[0] + new[2] / 2.0) - (old[0] + old[2] / 2.0)
            dy = (new[1] + new[3] / 2.0) - (old[1] + old[3] / 2.0)
            self._velocity = ((1.0 - a) * self._velocity[0] + a * dx, (1.0 - a) * self._velocity[1] + a * dy)
        self.box = new

    def update(self, estimate: Estimate, rate: float | None = None) -> None:
        """Learn from a frame whose answer is trusted (the caller gates this on the confidence)."""
        if estimate._sample is None:
            return
        self._fit(estimate._sample, estimate._shift, estimate._size_px, estimate._side,
                  rate=self.params.learning_rate if rate is None else rate)
        self._learned += 1
        a = 1.0 / self._learned if self._learned <= self.params.history else self.params.reference_rate
        self._reference = ((1.0 - a) * self._reference[0] + a * estimate.peak,
                           (1.0 - a) * self._reference[1] + a * estimate.psr)

    def relocate(self, box: Box) -> None:
        """Put the model's box at ``box`` (a re-detection), with no motion carried over."""
        self.box = box
        self._velocity = (0.0, 0.0)

    def redetect(self, frame: np.ndarray, center: tuple[float, float], size: int) -> list[tuple[Box, float]]:
        """Where the target may be in a ``size`` x ``size`` window of the frame centred on ``center``, the frame
        scaled so the target has its tracking size: the filters correlated with the window's trunk maps.
        Returns up to 3 (box, response), best first, at least one target size apart. The response is not a
        confidence: check a candidate with ``track`` centred on it (the caller's verification)."""
        if self.box is None:
            raise RuntimeError("initialize the online model first")
        box = self.box
        scale = self.crop_size / self.side(box)
        image, transform = crop_square(frame, center, size / scale, size)
        f8, f16 = self.features(image[None])
        r8 = self._correlate_map(8, f8[0])
        h8, w8 = r8.shape
        fused = self.params.weight8 * r8
        if self.params.weight16 > 0:
            r16 = self._correlate_map(16, f16[0])
            fused = fused + self.params.weight16 * upsample_spectrum(fft.rfft2(r16), r16.shape, (h8, w8))
        response = fused / (self.params.weight16 + self.params.weight8)
        found: list[tuple[Box, float]] = []
        radius = max(1, int(round(self.crop_size / 8 / self.params.context)))  # one target size, in stride-8 cells
        for _ in range(3):
            i, j = np.unravel_index(int(np.argmax(response)), response.shape)
            value = float(response[i, j])
            if not np.isfinite(value):
                break
            u, v = 8.0 * j, 8.0 * i  # index d: the target's centre is d cells from the window's corner
            cx, cy = u / transform.scale + transform.offset_x, v / transform.scale + transform.offset_y
            found.append(((cx - box[2] / 2.0, cy - box[3] / 2.0, box[2], box[3]), value))
            response[max(0, i - radius): i + radius + 1, max(0, j - radius): j + radius + 1] = -np.inf
        return found

    # ------------------------------------------------------------------ internals
    def side(self, box: Box) -> float:
        """Side in frame pixels of the square crop the model sees around ``box``."""
        return max(16.0, self.params.context * math.sqrt(max(box[2], 1.0) * max(box[3], 1.0)))

    def _exclusion(self) -> float:
        """PSR exclusion radius in fused cells: half the target (the crop is ``context`` targets wide)."""
        return 0.5 * self.params.response_size / self.params.context

    def _relative(self, value: float, psr: float) -> float:
        """The frame's peak and PSR against their reference (the slow average over learned frames), combined:
        1.0 = as sure as usual, 0 = nothing there. The geometric mean punishes either collapsing."""
        ref_peak, ref_psr = self._reference
        a = min(max(value / max(ref_peak, 1e-6), 0.0), 1.5)
        b = min(max(psr / max(ref_psr, 1e-6), 0.0), 1.5)
        return float(math.sqrt(a * b))

    def _fit(self, sample: tuple[np.ndarray, np.ndarray], shift_px: tuple[float, float], size_px: tuple[float, float],
             side: float, rate: float) -> None:
        """Fit both taps on the normalised maps ``sample`` (stride 16, stride 8): target ``shift_px`` (dy, dx crop
        pixels) from the crop centre, ``size_px`` frame pixels."""
        p = self.params
        to_crop = self.crop_size / side
        for stride, features in zip(STRIDES, sample, strict=True):
            n = self.crop_size // stride
            reach = 0.5 * p.mask_factor * to_crop / stride
            half = (reach * size_px[1], reach * size_px[0])
            center = (n / 2.0 - 0.5 + shift_px[0] / stride, n / 2.0 - 0.5 + shift_px[1] / stride)
            x = features * (self._windows[stride] * box_mask(n, n, center, half))[None]
            sigma = p.sigma_factor * math.sqrt(size_px[0] * size_px[1]) * to_crop / stride
            label = gaussian_label(n, n, (shift_px[0] / stride, shift_px[1] / stride), sigma)
            self.filters[stride].fit(x, label, rate)

    def _fused(self, sample: tuple[np.ndarray, np.ndarray], batch: bool) -> np.ndarray:
        """Fused response (N, R, R) (or (R, R) without batch) of both taps' normalised maps on the common grid."""
        p = self.params
        out = None
        size = (p.response_size, p.response_size)
        for stride, features, weight in zip(STRIDES, sample, (p.weight16, p.weight8), strict=True):
            if weight <= 0:
                continue
            x = (features if batch else features[None]) * self._windows[stride][None, None]
            n = self.crop_size // stride
            up = upsample_spectrum(self.filters[stride].spectrum(x), (n, n), size)
            out = weight * up if out is None else out + weight * up
        out = out / (p.weight16 + p.weight8)
        return out if batch else out[0]

    def _rescaled(self, stride: int, features: np.ndarray, factors: list[float]) -> np.ndarray:
        """(len(factors), C, n, n): the one crop's map (C, n, n) as the crop ``factor`` times as wide would show
        it, resampled about the crop centre (``_resampler``; factor 1 is the map itself)."""
        c, n, _ = features.shape
        out = np.empty((len(factors), c, n, n), np.float32)
        for k, factor in enumerate(factors):
            if factor == 1.0:
                out[k] = features
                continue
            m = self._resampler(stride, factor)
            # Columns as one (C*n x n) product over all channels, then rows.
            out[k] = np.matmul(m, (features.reshape(c * n, n) @ m.T).reshape(c, n, n))
        return out

    def _resampler(self, stride: int, factor: float) -> np.ndarray:
        """(n, n) band-limited interpolation: row i takes the map at ``c + (i - c) * factor``, c its centre, with
        the periodic sinc (Dirichlet) kernel of an n-point grid. Unlike a linear one it does not blur, so a
        resampled map's peak is not lowered against the map itself (which would freeze the size)."""
        key = (stride, round(factor, 6))
        matrix = self._resamplers.get(key)
        if matrix is None:
            n = self.crop_size // stride
            c = n / 2.0 - 0.5
            src = c + (np.arange(n) - c) * factor
            x = src[:, None] - np.arange(n)[None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                kernel = np.sin(np.pi * x) / (n * np.tan(np.pi * x / n))
            matrix = np.where(np.abs(np.sin(np.pi * x / n)) < 1e-9, 1.0, kernel).astype(np.float32)
            self._resamplers[key] = matrix
        return matrix

    def _correlate_map(self, stride: int, features: np.ndarray) -> np.ndarray:
        """The filter learned on the n x n crop grid slid over a larger map (C, H, W) -> (H, W) real. The map is
        zero-padded by half a crop on each side, so index d answers for the target centred d cells from the
        map's corner, anywhere in the map (the target may be cut by the window's edge)."""
        flt = self.filters[stride]
        n = self.crop_size // stride
        spatial = fft.irfft2(flt.numerator / (flt.denominator + flt.reg), s=(n, n), axes=(-2, -1))
        height, width = features.shape[-2:]
        shape = (height + n, width + n)
        placed = np.zeros((spatial.shape[0], *shape), np.float32)
        placed[:, :n, :n] = spatial
        z = np.zeros_like(placed)
        z[:, n // 2: n // 2 + height, n // 2: n // 2 + width] = normalize_layer(features)
        spec = np.sum(np.conj(fft.rfft2(placed, axes=(-2, -1))) * fft.rfft2(z, axes=(-2, -1)), axis=0)
        return fft.irfft2(spec, s=shape)[:height, :width]
