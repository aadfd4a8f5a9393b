"""A multi-channel discriminative correlation filter, learned online from one box, on trunk features.

The closed form of MOSSE / DSST, extended to feature maps with many channels: for a training sample
``x`` (C, H, W) and a desired response ``y`` (a Gaussian on the target), in the Fourier domain

    numerator   A_c = conj(Y) * X_c          denominator   B = sum_c X_c * conj(X_c)

both kept as running averages (learning rate ``eta``), and the response to a new sample ``z`` is

    r = real(ifft2( sum_c conj(A_c) * Z_c / (B + lambda) )).

Everything is circular: a response index ``(i, j)`` means the target moved ``(i, j)`` cells from
where the label put it (indices above half the grid are negative moves). The regulariser ``lambda``
is a fraction of the first frame's mean denominator, so it does not depend on the features' scale.

This module is plain numpy (the transforms from ``scipy.fft`` where installed: for the batched small maps
here it is about six times faster than ``numpy.fft``, measured in BENCHMARKS.md); it knows nothing of frames,
crops or networks.
"""

from __future__ import annotations

import numpy as np

try:
    from scipy import fft
except ImportError:  # same functions, slower
    from numpy import fft


def hann2d(height: int, width: int) -> np.ndarray:
    """Separable Hann window over a grid, peaking at its centre; suppresses the FFT's wrap-around."""
    return np.outer(np.hanning(height + 2)[1:-1], np.hanning(width + 2)[1:-1]).astype(np.float32)


def box_mask(height: int, width: int, center: tuple[float, float], half_size: tuple[float, float]) -> np.ndarray:
    """A box-shaped cos² window (in cells): 1 at ``center`` (y, x), falling to 0 at ``half_size`` (hy, hx) from
    it on each axis. Multiplied into a training sample, it keeps the filter on the target, not the background."""
    ys = np.arange(height, dtype=np.float64) - center[0]
    xs = np.arange(width, dtype=np.float64) - center[1]
    wy = np.where(np.abs(ys) < half_size[0], np.cos(0.5 * np.pi * ys / max(half_size[0], 1e-6)) ** 2, 0.0)
    wx = np.where(np.abs(xs) < half_size[1], np.cos(0.5 * np.pi * xs / max(half_size[1], 1e-6)) ** 2, 0.0)
    return np.outer(wy, wx).astype(np.float32)


def gaussian_label(height: int, width: int, shift: tuple[float, float], sigma: float) -> np.ndarray:
    """Circular Gaussian (in cells) centred ``shift`` (dy, dx) cells from index (0, 0)."""
    dy = np.arange(height, dtype=np.float64) - shift[0]
    dx = np.arange(width, dtype=np.float64) - shift[1]
    dy = (dy + height / 2) % height - height / 2  # circular distance
    dx = (dx + width / 2) % width - width / 2
    g = np.exp(-0.5 * (dy[:, None] ** 2 + dx[None, :] ** 2) / max(sigma, 1e-3) ** 2)
    return g.astype(np.float32)


def normalize_layer(features: np.ndarray) -> np.ndarray:
    """Scale a (C, H, W) map so its mean squared norm per cell is 1 (one normalisation per layer)."""
    x = np.asarray(features, np.float32)
    energy = float(np.vdot(x, x)) / max(x.shape[-1] * x.shape[-2], 1)
    return x * np.float32(1.0 / np.sqrt(max(energy, 1e-12)))


class CorrelationFilter:
    """One filter on one feature map: ``fit`` learns, ``spectrum`` answers in the Fourier domain."""

    def __init__(self, reg_factor: float = 0.01) -> None:
        self.reg_factor = reg_factor
        self.numerator: np.ndarray | None = None  # (C, H, W//2 + 1) complex
        self.denominator: np.ndarray | None = None  # (H, W//2 + 1) real
        self.reg = 0.0

    @property
    def ready(self) -> bool:
        return self.numerator is not None

    def fit(self, sample: np.ndarray, label: np.ndarray, rate: float) -> None:
        """Blend the sample (C, H, W, windowed) with its label (H, W) into the model; ``rate`` 1 restarts it."""
        x = fft.rfft2(sample.astype(np.float32), axes=(-2, -1))
        y = fft.rfft2(label.astype(np.float32))
        numerator = np.conj(y)[None] * x
        denominator = np.sum((x * np.conj(x)).real, axis=0)
        if self.numerator is None or rate >= 1.0:
            self.numerator, self.denominator = numerator, denominator
            self.reg = self.reg_factor * float(np.mean(denominator))
            return
        self.numerator = (1.0 - rate) * self.numerator + rate * numerator
        self.denominator = (1.0 - rate) * self.denominator + rate * denominator

    def spectrum(self, sample: np.ndarray) -> np.ndarray:
        """The response's half spectrum (..., H, W//2 + 1) for samples (..., C, H, W)."""
        if self.numerator is None:
            raise RuntimeError("the filter has not been fitted")
        z = fft.rfft2(sample.astype(np.float32), axes=(-2, -1))
        return np.sum(np.conj(self.numerator) * z, axis=-3) / (self.denominator + self.reg)


def upsample_spectrum(half: np.ndarray, size: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Fourier interpolation: the real map of half spectrum ``half`` (grid ``size``) on the finer grid ``out``,
    keeping its values (a response of 0.8 stays 0.8 at the sample points).

    The half spectrum is zero-padded to the finer grid's half spectrum and inverted once. An even grid's
    Nyquist row and column are split evenly between their positive and negative frequency, so the map is the
    real trigonometric interpolant and passes through the samples exactly."""
    h, w = size
    oh, ow = out
    if oh < h or ow < w:
        raise ValueError(f"cannot upsample a {h}x{w} grid to {oh}x{ow}")
    cols = w // 2 + 1
    padded = np.zeros(half.shape[:-2] + (oh, ow // 2 + 1), np.complex64)
    top = (h + 1) // 2  # rows 0..top-1: frequencies 0..top-1; rows top..h-1: negative ones
    padded[..., :top, :cols] = half[..., :top, :cols]
    padded[..., oh - (h - top):, :cols] = half[..., top:, :cols]
    if h % 2 == 0 and oh > h:
        padded[..., oh - h // 2, :cols] *= 0.5
        padded[..., h // 2, :cols] = padded[..., oh - h // 2, :cols]
    if w % 2 == 0 and ow > w:
        padded[..., w // 2] *= 0.5
    return fft.irfft2(padded, s=out, axes=(-2, -1)) * np.float32(oh * ow / (h * w))


def peak(response: np.ndarray) -> tuple[float, float, float]:
    """The maximum of a circular response: (value, dy, dx) with sub-cell refinement (parabola on each axis)
    and the displacement wrapped to [-H/2, H/2)."""
    h, w = response.shape
    i, j = np.unravel_index(int(np.argmax(response)), response.shape)
    value = float(response[i, j])

    def refine(minus: float, mid: float, plus: float) -> float:
        denom = minus - 2.0 * mid + plus
        return 0.0 if denom >= 0 else float(np.clip(0.5 * (minus - plus) / denom, -0.5, 0.5))

    dy = i + refine(response[(i - 1) % h, j], value, response[(i + 1) % h, j])
    dx = j + refine(response[i, (j - 1) % w], value, response[i, (j + 1) % w])
    dy = (dy + h / 2) % h - h / 2
    dx = (dx + w / 2) % w - w / 2
    return value, float(dy), float(dx)


def sidelobe_ratio(response: np.ndarray, dy: float, dx: float, exclude: float) -> float:
    """Peak-to-sidelobe ratio: (peak - mean) / std of the response outside ``exclude`` cells of the peak."""
    h, w = response.shape
    ys = (np.arange(h) - dy) % h
    xs = (np.arange(w) - dx) % w
    ys = np.minimum(ys, h - ys)
    xs = np.minimum(xs, w - xs)
    far = (ys[:, None] > exclude) | (xs[None, :] > exclude)
    side = response[far]
    if side.size < 4:
        return 0.0
    return float((response.max() - side.mean()) / (side.std() + 1e-6))
