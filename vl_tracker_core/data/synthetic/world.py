"""A procedural 2-D world of coloured shapes for vision-language tracking.

:class:`SyntheticScene` pre-simulates every object's trajectory for the whole
sequence at construction (a few small arrays) and renders frames lazily and
statelessly, so ``render(t)`` can be called in any order and is byte-identical
for the same seed.

What makes it hard: cluttered muted backgrounds with faint shape-like marks,
distractors that share the target's shape or colour (and sometimes both),
occluders passing in front of the target, the target leaving the view for up to
~90 frames and coming back elsewhere, camera pan and jitter, illumination drift,
sensor noise and blur.

Coordinates: continuous pixels, pixel ``i`` covers ``[i, i + 1)``; boxes are the
core ``(x, y, w, h)`` convention.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from vl_tracker_core.boxes import Box
from vl_tracker_core.data.synthetic import language as lang

#: Object radius range in pixels per size class at 640x480 (radius = half the object's extent).
SIZE_RADII: dict[str, tuple[float, float]] = {"small": (11.0, 17.0), "medium": (22.0, 32.0), "large": (39.0, 50.0)}
SCALE_RANGE = (0.85, 1.2)  # per-frame scale change around the base radius
OUT_OF_VIEW_FRACTION = 0.25  # less than this share of the object inside the frame -> out of view
FULL_OCCLUSION_VISIBLE = 0.10  # at most this share of the in-frame pixels visible -> fully occluded
_SUBPIXEL_BITS = 4  # cv2 fillPoly fixed point: 1/16 px vertex precision
_NOISE_PAD = 32
_BACKGROUND_SLACK = 4
# Shapes that cover a smaller object well when centred on it (used for full occlusions).
_OCCLUDER_SHAPES = ("circle", "hexagon")


@dataclass(frozen=True)
class ObjectSpec:
    """What an object looks like: the attributes language can refer to."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    size: str
    pattern: str

    @classmethod
    def make(cls, shape: str, colour: str, size: str = "medium", pattern: str = "plain") -> ObjectSpec:
        """Build a spec from canonical attribute names, validating them."""
        if shape not in lang.SHAPES:
            raise ValueError(f"unknown shape {shape!r}")
        if colour not in lang.COLOURS:
            raise ValueError(f"unknown colour {colour!r}")
        if size not in lang.SIZES:
            raise ValueError(f"unknown size {size!r}")
        if pattern not in lang.PATTERNS:
            raise ValueError(f"unknown pattern {pattern!r}")
        return cls(shape, colour, lang.COLOURS[colour], size, pattern)


@dataclass
class ObjectTrack:
    """Motion state of one object for every frame, in image coordinates.

    ``centers`` is ``(N, 2)``, ``angles`` ``(N,)`` in degrees, ``radii`` ``(N,)``
    in pixels (the object fits in a circle of that radius); ``z`` orders drawing
    (higher is in front).
    """

    base_radius: float
    centers: np.ndarray
    angles: np.ndarray
    radii: np.ndarray
    z: int


@dataclass
class SceneConfig:
    """Knobs of the world; the defaults are the benchmark's settings."""

    width: int = 640
    height: int = 480
    min_objects: int = 4
    max_objects: int = 8
    #: Probability that the target leaves the view once (ignored when ``force_out_of_view``).
    out_of_view_prob: float = 0.35
    force_out_of_view: bool = False
    long_absence_prob: float = 0.6
    long_absence_frames: tuple[int, int] = (30, 90)
    short_absence_frames: tuple[int, int] = (5, 25)
    #: Probability of an occluder steered over the target; full occlusions only hide small/medium targets.
    occlusion_prob: float = 0.6
    full_occlusion_prob: float = 0.5
    occlusion_frames: tuple[int, int] = (8, 40)
    distractor_exit_prob: float = 0.25
    #: Probability of a distractor with the target's shape and colour.
    twin_prob: float = 0.3
    #: Probability of a relation clause when attributes would already suffice.
    relation_prob: float = 0.15
    redundant_attribute_prob: float = 0.2
    max_speed: float = 4.5
    camera_pan: float = 48.0
    camera_jitter: float = 1.5
    #: Illumination drift, sensor noise and blur; False gives clean frames (tests, debugging).
    photometric: bool = True
    illumination_drift: float = 0.18
    noise_sigma: tuple[float, float] = (2.0, 7.0)
    blur_prob: float = 0.02
    clutter: tuple[int, int] = (40, 100)
    #: Sampling weights of (small, medium, large) and of (plain, striped, dotted, checkered).
    size_probs: tuple[float, float, float] = (0.3, 0.4, 0.3)
    pattern_probs: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"frame {self.width}x{self.height} is too small (minimum 64x64)")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.max_objects > 16:
            raise ValueError("at most 16 objects fit a frame")


@dataclass(frozen=True)
class _FrameInfo:
    boxes: list[Box | None]  # tight in-frame pixel extent, occluded parts included
    in_frame: np.ndarray  # share of each object's pixels inside the frame
    visible: np.ndarray  # share of each object's in-frame pixels not covered by objects in front


def _regular(k: int, radius: float, phase_deg: float) -> np.ndarray:
    a = np.deg2rad(phase_deg + 360.0 * np.arange(k) / k)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


@functools.cache
def unit_contours(shape: str) -> tuple[np.ndarray, ...]:
    """Contours of ``shape`` inside the unit circle, y down (a ring has a hole contour); read-only arrays."""
    contours = _unit_contours(shape)
    for c in contours:
        c.setflags(write=False)  # cached and shared: nobody may edit them in place
    return contours


def _unit_contours(shape: str) -> tuple[np.ndarray, ...]:
    if shape == "circle":
        return (_regular(48, 1.0, 0.0),)
    if shape == "square":
        return (_regular(4, 1.0, 45.0),)
    if shape == "triangle":
        return (_regular(3, 1.0, -90.0),)
    if shape == "star":
        pts = _regular(10, 1.0, -90.0)
        pts[1::2] *= 0.45
        return (pts,)
    if shape == "diamond":
        return (np.array([[0.0, -1.0], [0.62, 0.0], [0.0, 1.0], [-0.62, 0.0]]),)
    if shape == "hexagon":
        return (_regular(6, 0.95, 0.0),)
    if shape == "pentagon":
        return (_regular(5, 0.95, -90.0),)
    if shape == "cross":
        a, e = 0.3, 0.95
        return (np.array([[-a, -e], [a, -e], [a, -a], [e, -a], [e, a], [a, a], [a, e], [-a, e], [-a, a], [-e, a],
                          [-e, -a], [-a, -a]]),)
    if shape == "ring":
        return (_regular(48, 0.95, 0.0), _regular(48, 0.52, 0.0)[::-1])
    if shape == "heart":
        t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
        pts = np.stack([16 * np.sin(t) ** 3, -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))],
                       axis=1)
        pts -= 0.5 * (pts.min(axis=0) + pts.max(axis=0))
        return (pts / np.linalg.norm(pts, axis=1).max(),)
    raise ValueError(f"unknown shape {shape!r}")


def _to_fixed(contours: list[np.ndarray], ox: int, oy: int) -> list[np.ndarray]:
    # cv2 puts integer vertices on pixel centres; ours are continuous, hence the -0.5.
    scale = float(1 << _SUBPIXEL_BITS)
    return [np.round((c - (ox + 0.5, oy + 0.5)) * scale).astype(np.int32) for c in contours]


def _bounds(contours: list[np.ndarray]) -> tuple[int, int, int, int]:
    pts = np.concatenate(contours)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1
    return int(x0), int(y0), int(x1), int(y1)


@functools.lru_cache(maxsize=4)
def _unit_noise(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts of a fixed unit-variance noise tile, shared by all scenes."""
    noise = np.random.default_rng(0x5EED).standard_normal((height + _NOISE_PAD, width + _NOISE_PAD, 3),
                                                          dtype=np.float32)
    return np.maximum(noise, 0.0), np.maximum(-noise, 0.0)


def _muted_rgb(rng: np.random.Generator, max_saturation: float = 0.4) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.03, max_saturation), rng.uniform(0.25, 0.8))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def _make_background(rng: np.random.Generator, height: int, width: int, clutter: tuple[int, int]) -> np.ndarray:
    """A muted, cluttered RGB uint8 canvas: gradient, blotches, grain, faint lines and shape-like marks."""
    corners = np.stack([_muted_rgb(rng, 0.35) for _ in range(4)]).reshape(2, 2, 3)
    bg = cv2.resize(corners, (width, height), interpolation=cv2.INTER_LINEAR)
    # Blotches (mostly brightness, a little hue) plus grain, composed at 1/3 scale and upsampled once (cheap).
    small = (max(width // 3, 8), max(height // 3, 8))
    cells = (int(rng.integers(3, 8)), int(rng.integers(4, 10)))
    luma = rng.normal(0.0, rng.uniform(10.0, 30.0), (*cells, 1)).astype(np.float32)
    chroma = rng.normal(0.0, rng.uniform(3.0, 9.0), (*cells, 3)).astype(np.float32)
    low = cv2.resize(luma + chroma, small, interpolation=cv2.INTER_CUBIC)
    low += rng.normal(0.0, rng.uniform(3.0, 9.0), (small[1], small[0], 1)).astype(np.float32)
    bg += cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        # Regular structure (tiles or planks) in a muted tone.
        overlay = bg.copy()
        colour = _muted_rgb(rng, 0.25).tolist()
        step = int(rng.integers(30, 110))
        offset = int(rng.integers(0, step))
        for x in range(offset, width, step):
            cv2.line(overlay, (x, 0), (x, height), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        if rng.random() < 0.6:
            for y in range(offset, height, step):
                cv2.line(overlay, (0, y), (width, y), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        alpha = float(rng.uniform(0.2, 0.5))
        bg = cv2.addWeighted(overlay, alpha, bg, 1.0 - alpha, 0.0)
    n_items = int(rng.integers(clutter[0], clutter[1] + 1))
    shapes = lang.SHAPES
    for _layer in range(3):
        overlay = bg.copy()
        for _ in range(max(1, n_items // 3)):
            kind = rng.random()
            colour = _muted_rgb(rng, 0.45 if kind < 0.35 else 0.35).tolist()
            if kind < 0.35:
                p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
                length, ang = rng.uniform(20, 300), rng.uniform(0, 2 * np.pi)
                p1 = (int(p0[0] + length * np.cos(ang)), int(p0[1] + length * np.sin(ang)))
                cv2.line(overlay, p0, p1, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
            elif kind < 0.45:
                cv2.circle(overlay, (int(rng.integers(0, width)), int(rng.integers(0, height))),
                           int(rng.integers(3, 40)), colour, -1, cv2.LINE_AA)
            elif kind < 0.55:
                x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
                w, h = int(rng.integers(10, 160)), int(rng.integers(10, 120))
                cv2.rectangle(overlay, (x, y), (x + w, y + h), colour, -1 if rng.random() < 0.6 else 2)
            else:
                # Faint look-alikes of the real objects, in muted colours.
                unit = unit_contours(shapes[int(rng.integers(len(shapes)))])
                radius, ang = rng.uniform(8, 70), rng.uniform(0, 2 * np.pi)
                rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
                centre = np.array([rng.uniform(0, width), rng.uniform(0, height)])
                contours = _to_fixed([centre + radius * c @ rot.T for c in unit], 0, 0)
                if rng.random() < 0.7:
                    cv2.fillPoly(overlay, contours, colour, cv2.LINE_AA, shift=_SUBPIXEL_BITS)
                else:
                    cv2.polylines(overlay, contours, True, colour, 2, cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        alpha = float(rng.uniform(0.3, 0.7))
        bg = cv2.addWeighted(overlay, alpha, bg, 1.0 - alpha, 0.0)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _secondary_colour(rgb: tuple[int, int, int]) -> np.ndarray:
    base = np.array(rgb, dtype=np.float32)
    luminance = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    # Pattern marks: a light tint on dark colours, a dark shade on light ones, so the hue stays readable.
    return base * 0.35 + 255.0 * 0.65 if luminance < 110 else base * 0.45


def _make_texture(spec: ObjectSpec, r_tex: float, rng: np.random.Generator) -> np.ndarray:
    """Square RGB uint8 texture (pattern + shading) whose centre maps to the object's centre."""
    size = 2 * math.ceil(r_tex) + 3
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xx -= (size - 1) / 2
    yy -= (size - 1) / 2
    ang = rng.uniform(0, np.pi)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    period = max(7.0, 0.55 * r_tex)
    if spec.pattern == "striped":
        marks = np.mod(u, period) < 0.42 * period
    elif spec.pattern == "dotted":
        du = np.mod(u, period) - 0.5 * period
        dv = np.mod(v, period) - 0.5 * period
        marks = du * du + dv * dv < (0.24 * period) ** 2
    elif spec.pattern == "checkered":
        marks = (np.floor(u / (0.5 * period)) + np.floor(v / (0.5 * period))) % 2 == 1
    else:
        marks = np.zeros_like(u, dtype=bool)
    tex = np.where(marks[..., None], _secondary_colour(spec.rgb), np.array(spec.rgb, dtype=np.float32))
    # Soft light from a random side; keeps the mean close to the nominal colour.
    light = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + 0.12 * (xx * np.cos(light) + yy * np.sin(light)) / max(r_tex, 1.0)
    tex = tex * shade[..., None] + rng.normal(0.0, 3.0, tex.shape)
    return np.clip(tex, 0, 255).astype(np.uint8)


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = c * math.cos(math.radians(angle_deg)), c * math.sin(math.radians(angle_deg))
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


class SyntheticScene:
    """One synthetic sequence: specs, trajectories, description, lazy rendering and ground truth.

    Ground truth (``target_box``/``object_boxes``): the tight box of the object's
    pixels inside the frame, *including* parts hidden by objects in front (as in
    LaSOT, partial occlusion does not shrink the box). A target is out of view
    when less than 25 % of its pixels are inside the frame, and fully occluded
    when at least 90 % of its in-frame pixels are covered (computed from a
    z-buffer of object ids); in either case ``target_box`` is None.
    ``object_boxes`` uses the same rules for every object.

    The description names the target uniquely in frame 0, where every object is
    fully inside the frame and nothing overlaps the target (other objects avoid
    each other too unless the frame is crowded).
    """

    def __init__(
        self, seed: int, num_frames: int, config: SceneConfig | None = None, paraphrases: str = "seen"
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if paraphrases not in lang.PARAPHRASE_MODES:
            raise ValueError(f"paraphrases must be one of {lang.PARAPHRASE_MODES}, got {paraphrases!r}")
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.config = config if config is not None else SceneConfig()
        self.paraphrases = paraphrases
        self.width, self.height = self.config.width, self.config.height
        self._cache: dict[int, _FrameInfo] = {}
        #: (frame, kind, object index) of the scripted events, for inspection.
        self.events: list[tuple[int, str, int]] = []

        # Independent streams per component: tweaking one never reshuffles the others.
        self._make_objects(self._stream(0))
        self._margin, self._camera = self._make_camera(self._stream(1))
        for attempt in range(16):
            if self._simulate(self._stream(10 + attempt), relax=attempt >= 8) and self._events_ok():
                break
        if not hasattr(self, "tracks"):
            raise RuntimeError(f"scene seed {seed}: could not place the objects")
        self._describe(self._stream(5))
        tex_rng = self._stream(6)
        self._textures = [_make_texture(s, t.base_radius * SCALE_RANGE[1], tex_rng)
                          for s, t in zip(self.objects, self.tracks, strict=True)]
        self._background = _make_background(
            self._stream(2), self.height + 2 * self._margin, self.width + 2 * self._margin, self.config.clutter
        )
        self._make_photometric(self._stream(3))

    # ------------------------------------------------------------------ setup
    def _stream(self, key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, key])

    def _random_spec(self, rng: np.random.Generator, shape: str | None = None, colour: str | None = None,
                     avoid_shape: str | None = None, avoid_colour: str | None = None) -> ObjectSpec:
        cfg = self.config
        if shape is None:
            shape = str(rng.choice([s for s in lang.SHAPES if s != avoid_shape]))
        if colour is None:
            colour = str(rng.choice([c for c in lang.COLOURS if c != avoid_colour]))
        size = str(rng.choice(lang.SIZES, p=np.asarray(cfg.size_probs) / sum(cfg.size_probs)))
        pattern = str(rng.choice(lang.PATTERNS, p=np.asarray(cfg.pattern_probs) / sum(cfg.pattern_probs)))
        return ObjectSpec.make(shape, colour, size, pattern)

    def _make_objects(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        target = self._random_spec(rng)
        specs = [target]
        # Distractors that make language necessary: same shape, same colour, sometimes both.
        if n >= 2:
            specs.append(self._random_spec(rng, shape=target.shape, avoid_colour=target.colour))
        if n >= 3:
            specs.append(self._random_spec(rng, colour=target.colour, avoid_shape=target.shape))
        if len(specs) < n and rng.random() < cfg.twin_prob:
            twin = self._random_spec(rng, shape=target.shape, colour=target.colour)
            if rng.random() < 0.5:  # a full twin: only a relation can tell them apart
                twin = replace(twin, size=target.size, pattern=target.pattern)
            specs.append(twin)
        while len(specs) < n:
            specs.append(self._random_spec(rng))
        # An occluder for a scripted occlusion: a large compact shape drawn in front of the target.
        self._occlusion: tuple[int, bool] | None = None
        if n >= 2 and rng.random() < cfg.occlusion_prob:
            free = list(range(3 if n >= 3 else 2, n))
            j = int(rng.choice(free)) if free else n - 1
            full = target.size != "large" and rng.random() < cfg.full_occlusion_prob
            if full and j == 1:  # only with two objects: keep the shape it shares with the target
                specs[j] = replace(specs[j], size="large")
            elif full:
                shapes = [s for s in _OCCLUDER_SHAPES if j >= 3 or s != target.shape]
                specs[j] = replace(specs[j], shape=str(rng.choice(shapes)), size="large")
            self._occlusion = (j, full)
        order = rng.permutation(n)
        self.objects: list[ObjectSpec] = [specs[k] for k in order]
        self.target_index = int(np.flatnonzero(order == 0)[0])
        if self._occlusion is not None:
            self._occlusion = (int(np.flatnonzero(order == self._occlusion[0])[0]), self._occlusion[1])
        z = rng.permutation(n)
        if self._occlusion is not None:
            j = self._occlusion[0]
            if z[j] < z[self.target_index]:
                z[j], z[self.target_index] = z[self.target_index], z[j]
        self._z = z
        self._z_order = [int(i) for i in np.argsort(z)]  # back to front
        # Sizes are defined for 640x480 and follow the frame size.
        unit = min(cfg.width / 640.0, cfg.height / 480.0)
        lo_hi = [SIZE_RADII[s.size] for s in self.objects]
        self._base_radius = np.array([rng.uniform(lo, hi) * unit for lo, hi in lo_hi])

    def _make_camera(self, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        cfg, n = self.config, self.num_frames
        margin = math.ceil(0.5 * cfg.camera_pan + 6 * cfg.camera_jitter) + _BACKGROUND_SLACK
        t = np.arange(n) / max(n - 1, 1)
        ang = rng.uniform(0, 2 * np.pi)
        amount = rng.uniform(0.0, cfg.camera_pan)
        ease = 0.5 - 0.5 * np.cos(np.pi * t)  # slow start and stop
        pan = (ease - 0.5)[:, None] * amount * np.array([np.cos(ang), np.sin(ang)])
        jitter = np.zeros((n, 2))
        shake = 0
        for k in range(1, n):
            if shake == 0 and rng.random() < 0.01:
                shake = int(rng.integers(4, 12))
            sigma = cfg.camera_jitter * (3.0 if shake > 0 else 1.0)
            shake = max(shake - 1, 0)
            jitter[k] = 0.6 * jitter[k - 1] + rng.normal(0.0, sigma, 2)
        jitter = np.clip(jitter, -6 * cfg.camera_jitter, 6 * cfg.camera_jitter)
        cam = np.round(margin + pan + jitter).astype(np.int64)
        return margin, np.clip(cam, 0, 2 * margin)

    def _make_photometric(self, rng: np.random.Generator) -> None:
        cfg, n = self.config, self.num_frames
        t = np.arange(n, dtype=np.float64)
        gain = np.ones(n)
        for _ in range(2):
            period, phase = rng.uniform(60, 400), rng.uniform(0, 2 * np.pi)
            gain += 0.5 * cfg.illumination_drift * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + phase)
        # Occasional lights-switch steps, ramped over a few frames.
        level, steps = 0.0, np.zeros(n)
        for k in range(n):
            if rng.random() < 0.004:
                level = float(rng.uniform(-0.25, 0.2))
            steps[k] = level
        gain += np.convolve(steps, np.ones(5) / 5, mode="full")[:n]
        self._gain = np.clip(gain, 0.55, 1.4)
        cast = np.ones((n, 3))
        for c in range(3):
            cast[:, c] += 0.06 * np.sin(2 * np.pi * t / rng.uniform(80, 500) + rng.uniform(0, 2 * np.pi))
        self._cast = cast
        self._gamma = float(rng.uniform(0.85, 1.15))
        self._noise_offset = rng.integers(0, _NOISE_PAD, size=(n, 2))
        sigma = float(rng.uniform(*cfg.noise_sigma))
        pos, neg = _unit_noise(self.height, self.width)
        self._noise_pos = cv2.convertScaleAbs(pos, alpha=sigma)
        self._noise_neg = cv2.convertScaleAbs(neg, alpha=sigma)
        # Blur episodes: 1 = Gaussian (sigma), 2 = motion blur (length, angle).
        self._blur: list[tuple[int, float, float]] = [(0, 0.0, 0.0)] * n
        k = 0
        while k < n:
            if rng.random() < cfg.blur_prob:
                kind = int(rng.integers(1, 3))
                param = rng.uniform(0.8, 2.0) if kind == 1 else float(2 * rng.integers(2, 6) + 1)
                ang = float(rng.uniform(0, 180))
                for j in range(k, min(n, k + int(rng.integers(2, 9)))):
                    self._blur[j] = (kind, float(param), ang)
                    k = j
            k += 1

    # ------------------------------------------------------------- simulation
    def _place(self, rng: np.random.Generator, relax: bool) -> np.ndarray | None:
        """Non-overlapping positions inside the first view (target first, away from the edges)."""
        n, (w, h) = len(self.objects), (self.width, self.height)
        cam0 = self._camera[0].astype(np.float64)
        pos = np.zeros((n, 2))
        placed: list[int] = []
        order = [self.target_index, *sorted((i for i in range(n) if i != self.target_index),
                                            key=lambda i: -self._base_radius[i])]
        for i in order:
            r = self._base_radius[i]
            edge = r + (20.0 if i == self.target_index else 4.0)
            edge = min(edge, 0.5 * min(w, h) - 1.0)
            for _ in range(300):
                p = cam0 + np.array([rng.uniform(edge, w - edge), rng.uniform(edge, h - edge)])
                clash = [j for j in placed if np.hypot(*(p - pos[j])) < r + self._base_radius[j] + 6.0]
                if not clash or (relax and self.target_index not in clash and i != self.target_index):
                    break
            else:
                if not relax:
                    return None
                # Last resort for crowded small frames: accept the overlap.
            pos[i] = p
            placed.append(i)
        return pos

    def _schedule(self, rng: np.random.Generator) -> dict[int, list[tuple[int, str, dict]]]:
        cfg, n_frames, n = self.config, self.num_frames, len(self.objects)
        ti = self.target_index
        plan: dict[int, list[tuple[int, str, dict]]] = {i: [] for i in range(n)}
        if n_frames >= 20 and (cfg.force_out_of_view or rng.random() < cfg.out_of_view_prob):
            t_leave = int(rng.integers(max(1, int(0.1 * n_frames)), max(2, int(0.4 * n_frames)) + 1))
            lo, hi = cfg.long_absence_frames if rng.random() < cfg.long_absence_prob else cfg.short_absence_frames
            absence = int(rng.integers(lo, hi + 1))
            # Leave room to exit (<=14 frames), re-enter (<=14) and stay visible a while afterwards.
            room = n_frames - t_leave - 28 - max(5, int(0.1 * n_frames))
            plan[ti].append((t_leave, "leave", {"absence": max(1, min(absence, room))}))
        if self._occlusion is not None and n_frames >= 20:
            j, full = self._occlusion
            t_occ = int(rng.integers(max(1, int(0.1 * n_frames)), max(2, int(0.85 * n_frames)) + 1))
            plan[j].append((t_occ, "cover" if full else "pass",
                            {"frames": int(rng.integers(cfg.occlusion_frames[0], cfg.occlusion_frames[1] + 1))}))
        for i in range(n):
            if i == ti or (self._occlusion is not None and i == self._occlusion[0]):
                continue
            if n_frames >= 20 and rng.random() < cfg.distractor_exit_prob:
                plan[i].append((int(rng.integers(1, n_frames)), "leave", {"absence": int(rng.integers(5, 90))}))
        return plan

    def _simulate(self, rng: np.random.Generator, relax: bool) -> bool:
        cfg, n_frames, n = self.config, self.num_frames, len(self.objects)
        ti = self.target_index
        pos = self._place(rng, relax)
        if pos is None:
            return False
        plan = self._schedule(rng)
        view_size = np.array([self.width, self.height], dtype=np.float64)
        cam = self._camera.astype(np.float64)
        cap = rng.uniform(0.8, cfg.max_speed, n)
        heading = rng.uniform(0, 2 * np.pi, n)
        speed = rng.uniform(0.2, 1.0, n) * cap
        vel = np.stack([np.cos(heading) * speed, np.sin(heading) * speed], axis=1)
        angle = rng.uniform(0, 360, n)
        omega = np.where(rng.random(n) < 0.3, 0.0, rng.normal(0.0, 1.5, n))
        log_s = np.zeros(n)
        log_lo, log_hi = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
        mode = ["normal"] * n
        state: list[dict] = [{} for _ in range(n)]
        events: list[tuple[int, str, int]] = []
        centers = np.zeros((n_frames, n, 2))
        # Per-frame randomness of free motion, drawn up front so the loop stays vectorised.
        acc = rng.normal(0.0, 0.15, (n_frames, n, 2))
        turn = rng.random((n_frames, n, 1)) < 0.01
        turn_h = rng.uniform(0, 2 * np.pi, (n_frames, n))
        turn_speed = rng.uniform(0.2, 1.0, (n_frames, n)) * cap
        new_vel = np.stack([np.cos(turn_h), np.sin(turn_h)], axis=2) * turn_speed[..., None]
        scale_noise = rng.normal(0.0, 0.012, (n_frames, n))
        # Spin does not interact with anything: integrate it up front.
        omega_walk = np.clip(omega + np.cumsum(rng.normal(0.0, 0.05, (n_frames, n)), axis=0), -4.0, 4.0)
        omega_walk[0] = 0.0
        angles = angle + np.cumsum(omega_walk, axis=0)
        radii = np.zeros((n_frames, n))

        def bounce(i: int, lo: np.ndarray, hi: np.ndarray, axes: tuple[int, ...] = (0, 1)) -> None:
            for a in axes:
                if pos[i, a] < lo[a]:
                    pos[i, a] = min(2 * lo[a] - pos[i, a], hi[a])
                    vel[i, a] = abs(vel[i, a])
                elif pos[i, a] > hi[a]:
                    pos[i, a] = max(2 * hi[a] - pos[i, a], lo[a])
                    vel[i, a] = -abs(vel[i, a])

        def start(i: int, kind: str, params: dict, t: int, view0: np.ndarray) -> None:
            r = self._base_radius[i] * math.exp(log_s[i])
            if kind == "leave":
                # Head for the nearest edge fast enough to be gone in 6-14 frames.
                gaps = np.array([pos[i, 0] - view0[0], view0[0] + view_size[0] - pos[i, 0],
                                 pos[i, 1] - view0[1], view0[1] + view_size[1] - pos[i, 1]])
                edge = int(np.argmin(gaps))
                normal = np.array([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])[edge]
                spd = float(np.clip((gaps[edge] + r + 3.0) / rng.integers(6, 15), 2.5, 25.0))
                vel[i] = normal * spd + normal[::-1] * rng.normal(0.0, 0.3 * spd)
                mode[i] = "leaving"
                state[i] = {"edge": edge, "absence": params["absence"], "frames": 0}
            elif kind == "cover":
                mode[i] = "chasing"
                state[i] = {"speed": float(rng.uniform(5.0, 9.0)), "frames": params["frames"], "budget": 80}
            elif kind == "pass":
                perp = np.array([-vel[ti, 1], vel[ti, 0]])
                perp = perp / (np.linalg.norm(perp) + 1e-9) if np.linalg.norm(perp) > 1e-6 else np.array([0.0, 1.0])
                r_t = self._base_radius[ti] * math.exp(log_s[ti])
                aim = pos[ti] + 6.0 * vel[ti] + perp * rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.9) * (r + r_t)
                gap = aim - pos[i]
                spd = float(rng.uniform(4.0, 8.0))
                vel[i] = gap / (np.linalg.norm(gap) + 1e-9) * spd
                mode[i] = "passing"
                state[i] = {"frames": int(2 * np.linalg.norm(gap) / spd) + 5}
            events.append((t, kind, i))

        next_event = min((p[0][0] for p in plan.values() if p), default=n_frames)
        for t in range(n_frames):
            view0 = cam[t]
            if t > 0:
                shift = cam[t] - cam[t - 1]
                for i in (range(n) if t >= next_event else ()):
                    pending = plan[i]
                    if pending and pending[0][0] <= t and mode[i] == "normal":
                        needs_target = pending[0][1] in ("cover", "pass")
                        if not needs_target or (mode[ti] == "normal" and mode[i] == "normal"):
                            _, kind, params = pending.pop(0)
                            start(i, kind, params, t, view0)
                next_event = min((p[0][0] for p in plan.values() if p), default=n_frames)
                radius = self._base_radius * np.exp(log_s)
                lo_all, hi_all = view0 + radius[:, None], view0 + view_size - radius[:, None]
                # Free-roaming objects, vectorised: jittered velocity, rare turns, speed cap, bounce off the view.
                free = np.array([m == "normal" for m in mode])
                free2 = free[:, None]
                vel = np.where(free2, vel + acc[t], vel)
                vel = np.where(free2 & turn[t], new_vel[t], vel)
                speed_now = np.hypot(vel[:, 0], vel[:, 1]) + 1e-9
                vel = vel * np.where(free & (speed_now > cap), cap / speed_now, 1.0)[:, None]
                pos = np.where(free2, pos + vel, pos)
                low = free2 & (pos < lo_all)
                high = free2 & (pos > hi_all)
                pos = np.where(low, np.minimum(2 * lo_all - pos, hi_all), pos)
                pos = np.where(high, np.maximum(2 * hi_all - pos, lo_all), pos)
                vel = np.where(low, np.abs(vel), np.where(high, -np.abs(vel), vel))
                for i in np.flatnonzero(~free):
                    r = float(radius[i])
                    lo, hi = lo_all[i], hi_all[i]
                    m = mode[i]
                    if m == "leaving":
                        pos[i] += vel[i]
                        st = state[i]
                        st["frames"] += 1
                        outside = (np.any(pos[i] + r < view0 - 1.0) or np.any(pos[i] - r > view0 + view_size + 1.0))
                        if outside or st["frames"] > 60:
                            mode[i] = "away"
                            st["timer"] = st["absence"]
                    elif m == "away":
                        pos[i] += shift  # park just outside, moving with the camera
                        st = state[i]
                        st["timer"] -= 1
                        if st["timer"] <= 0:
                            st["edge"] = self._enter(i, rng, pos, vel, r, view0, view_size, st["edge"],
                                                     cfg.max_speed)
                            mode[i] = "entering"
                            st["frames"] = 0
                            events.append((t, "enter", int(i)))
                    elif m == "entering":
                        pos[i] += vel[i]
                        st = state[i]
                        st["frames"] += 1
                        bounce(i, lo, hi, (1,) if st["edge"] < 2 else (0,))  # only along the entry edge
                        if (np.all(pos[i] >= lo) and np.all(pos[i] <= hi)) or st["frames"] > 60:
                            mode[i] = "normal"
                            bounce(i, lo, hi)
                    elif m == "chasing":
                        st = state[i]
                        gap = pos[ti] - pos[i]
                        dist = float(np.hypot(gap[0], gap[1]))
                        if dist <= st["speed"]:
                            pos[i] = pos[ti]
                            mode[i] = "covering"
                        else:
                            pos[i] += gap / dist * st["speed"]
                        st["budget"] -= 1
                        if st["budget"] <= 0 or mode[ti] != "normal":
                            mode[i] = "normal"
                    elif m == "covering":
                        st = state[i]
                        vel[i] = vel[ti] + 0.5 * (pos[ti] - pos[i])
                        pos[i] += vel[i]
                        st["frames"] -= 1
                        if st["frames"] <= 0 or mode[ti] != "normal":
                            mode[i] = "normal"
                            vel[i] = rng.normal(0.0, 1.0, 2) * cap[i]
                    elif m == "passing":
                        pos[i] += vel[i]
                        bounce(i, lo, hi)
                        state[i]["frames"] -= 1
                        if state[i]["frames"] <= 0:
                            mode[i] = "normal"
                # Scale breathes around 1; an occluder on its way to cover the target swells instead.
                swell = np.array([m in ("chasing", "covering") for m in mode])
                log_s = np.where(swell, log_s + 0.1 * (log_hi - log_s), 0.97 * log_s + scale_noise[t])
                log_s = np.minimum(np.maximum(log_s, log_lo), log_hi)
            centers[t] = pos - view0
            radii[t] = self._base_radius * np.exp(log_s)
        self.tracks = [ObjectTrack(float(self._base_radius[i]), centers[:, i].copy(), angles[:, i].copy(),
                                   radii[:, i].copy(), int(self._z[i])) for i in range(n)]
        self.events = events
        self._cache.clear()
        return True

    @staticmethod
    def _enter(i: int, rng: np.random.Generator, pos: np.ndarray, vel: np.ndarray, r: float, view0: np.ndarray,
               view_size: np.ndarray, exit_edge: int, max_speed: float) -> int:
        """Put object ``i`` just outside an edge (usually another one) moving inwards; returns that edge."""
        edge = exit_edge if rng.random() < 0.25 else int(rng.choice([e for e in range(4) if e != exit_edge]))
        normal = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])[edge]  # inward
        along = rng.uniform(0.2, 0.8)
        if edge < 2:
            x = view0[0] - r - 2.0 if edge == 0 else view0[0] + view_size[0] + r + 2.0
            p = np.array([x, view0[1] + along * view_size[1]])
        else:
            y = view0[1] - r - 2.0 if edge == 2 else view0[1] + view_size[1] + r + 2.0
            p = np.array([view0[0] + along * view_size[0], y])
        spd = max(float(rng.uniform(1.5, max_speed)), (2 * r + 4.0) / float(rng.integers(6, 15)))
        turn = rng.uniform(-0.5, 0.5)
        rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
        pos[i] = p
        vel[i] = rot @ normal * spd
        return edge

    def _events_ok(self) -> bool:
        """A forced out-of-view episode must really happen: visible, then out of view, then visible again."""
        if not self.config.force_out_of_view or self.num_frames < 20:
            return True
        # Cheap pass on the target's geometry alone; the full z-buffer only for the few candidate frames.
        inside = np.array([self._in_frame_fraction(self.target_index, t) for t in range(self.num_frames)])
        gone = np.flatnonzero(inside < OUT_OF_VIEW_FRACTION)
        if inside[0] < 1.0 or len(gone) == 0 or not self.flags(int(gone[0]))[1]:
            return False
        back = [t for t in range(int(gone[0]) + 1, self.num_frames) if inside[t] >= OUT_OF_VIEW_FRACTION]
        return any(self.target_box(t) is not None for t in back[:40])

    def _in_frame_fraction(self, i: int, t: int) -> float:
        contours = self._contours(i, t)
        x0, y0, x1, y1 = _bounds(contours)
        if x0 >= 0 and y0 >= 0 and x1 <= self.width and y1 <= self.height:
            return 1.0
        if x1 <= 0 or y1 <= 0 or x0 >= self.width or y0 >= self.height:
            return 0.0
        canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(canvas, _to_fixed(contours, x0, y0), 1, cv2.LINE_8, shift=_SUBPIXEL_BITS)
        total = np.count_nonzero(canvas)
        sub = canvas[max(0, -y0):self.height - y0, max(0, -x0):self.width - x0]
        return float(np.count_nonzero(sub) / total) if total else 0.0

    def _describe(self, rng: np.random.Generator) -> None:
        ti, specs = self.target_index, self.objects
        boxes = self.extent_boxes(0)
        if any(b is None for b in boxes):
            raise RuntimeError(f"scene seed {self.seed}: an object is outside the first frame")
        boxes0: list[Box] = [b for b in boxes if b is not None]
        others = [s for i, s in enumerate(specs) if i != ti]
        relation: tuple[str, int] | None = None
        if not lang.distinguishing_sets(specs[ti], others):
            options = lang.find_relations(ti, specs, boxes0)
            if options:
                relation = options[int(rng.integers(len(options)))]
            else:
                # No relation separates the look-alikes: give them another pattern instead.
                attrs = lang.nameable_attributes(specs[ti])
                for i, s in enumerate(specs):
                    if i != ti and lang.matches(s, attrs):
                        new = str(rng.choice([p for p in lang.PATTERNS if p != s.pattern and p != specs[ti].pattern]))
                        specs[i] = replace(s, pattern=new)
                others = [s for i, s in enumerate(specs) if i != ti]
        elif rng.random() < self.config.relation_prob:
            options = lang.find_relations(ti, specs, boxes0)
            if options:
                relation = options[int(rng.integers(len(options)))]
        self.relation_anchor: int | None = relation[1] if relation else None
        self.description_info = lang.describe_structured(
            specs[ti], others, rng, self.paraphrases,
            (relation[0], specs[relation[1]]) if relation else None, self.config.redundant_attribute_prob,
        )
        self.description: str = self.description_info.text

    # -------------------------------------------------------------- geometry
    def _contours(self, i: int, t: int) -> list[np.ndarray]:
        track = self.tracks[i]
        a = math.radians(track.angles[t])
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * track.radii[t]
        return [track.centers[t] + c @ rot.T for c in unit_contours(self.objects[i].shape)]

    def _geometry(self, t: int) -> list[tuple[list[np.ndarray], tuple[int, int, int, int]]]:
        """Per object: fixed-point contours in frame coordinates and integer pixel bounds (x0, y0, x1, y1)."""
        out = []
        for i in range(len(self.objects)):
            contours = self._contours(i, t)
            out.append((_to_fixed(contours, 0, 0), _bounds(contours)))
        return out

    def _info(self, t: int) -> _FrameInfo:
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1}")
        info = self._cache.get(t)
        if info is not None:
            return info
        w, h, n = self.width, self.height, len(self.objects)
        geometry = self._geometry(t)
        label = self._label([g[0] for g in geometry])
        boxes: list[Box | None] = [None] * n
        in_frame, visible = np.zeros(n), np.zeros(n)
        for i, (fixed, (x0, y0, x1, y1)) in enumerate(geometry):
            fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            # The object's full raster, including what lies outside the frame; an integer shift keeps it identical.
            canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
            offset = np.array([x0, y0], np.int32) << _SUBPIXEL_BITS
            cv2.fillPoly(canvas, [c - offset for c in fixed], 1, cv2.LINE_8, shift=_SUBPIXEL_BITS)
            total = int(np.count_nonzero(canvas))
            sub = canvas[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            inside = int(np.count_nonzero(sub))
            if total == 0 or inside == 0:
                continue
            in_frame[i] = inside / total
            visible[i] = np.count_nonzero(label[fy0:fy1, fx0:fx1] == i) / inside
            cols = np.flatnonzero(sub.any(axis=0))
            rows = np.flatnonzero(sub.any(axis=1))
            boxes[i] = (float(fx0 + cols[0]), float(fy0 + rows[0]), float(cols[-1] - cols[0] + 1),
                        float(rows[-1] - rows[0] + 1))
        info = _FrameInfo(boxes, in_frame, visible)
        self._cache[t] = info
        return info

    def _label(self, fixed: list[list[np.ndarray]]) -> np.ndarray:
        label = np.full((self.height, self.width), 255, np.uint8)
        for i in self._z_order:  # painter's algorithm: the front-most id wins
            cv2.fillPoly(label, fixed[i], int(i), cv2.LINE_8, shift=_SUBPIXEL_BITS)
        return label

    # ------------------------------------------------------------- public API
    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (f"SyntheticScene(seed={self.seed}, frames={self.num_frames}, objects={len(self.objects)}, "
                f"description={self.description!r})")

    @property
    def target(self) -> ObjectSpec:
        return self.objects[self.target_index]

    def label_map(self, t: int) -> np.ndarray:
        """``(H, W)`` int16 z-buffer of object ids (index into ``objects``), -1 for background."""
        self._info(t)  # validates t
        label = self._label([g[0] for g in self._geometry(t)]).astype(np.int16)
        label[label == 255] = -1
        return label

    def extent_boxes(self, t: int) -> list[Box | None]:
        """Tight in-frame box of every object whatever its flags (None only when no pixel is in the frame)."""
        return list(self._info(t).boxes)

    def visibility(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Per object: share of its pixels inside the frame, share of those not hidden by objects in front."""
        info = self._info(t)
        return info.in_frame.copy(), info.visible.copy()

    def _absent(self, info: _FrameInfo, i: int) -> tuple[bool, bool]:
        out_of_view = bool(info.in_frame[i] < OUT_OF_VIEW_FRACTION)
        full_occlusion = bool(info.in_frame[i] > 0 and info.visible[i] <= FULL_OCCLUSION_VISIBLE)
        return full_occlusion, out_of_view

    def flags(self, t: int) -> tuple[bool, bool]:
        """``(full_occlusion, out_of_view)`` of the target in frame ``t``."""
        return self._absent(self._info(t), self.target_index)

    def target_box(self, t: int) -> Box | None:
        """The target's ground-truth box, or None when it is fully occluded or out of view."""
        info = self._info(t)
        if any(self._absent(info, self.target_index)):
            return None
        return info.boxes[self.target_index]

    def object_boxes(self, t: int) -> list[Box | None]:
        """Boxes of all objects (target included) with the target's rules: None when out of view or hidden."""
        info = self._info(t)
        return [None if any(self._absent(info, i)) else info.boxes[i] for i in range(len(self.objects))]

    def render(self, t: int) -> np.ndarray:
        """Frame ``t`` as RGB uint8 ``(H, W, 3)``; stateless and deterministic."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1}")
        w, h = self.width, self.height
        ox, oy = (int(v) for v in self._camera[t])
        frame = self._background[oy:oy + h, ox:ox + w].copy()
        for i in self._z_order:
            self._draw(frame, i, t)
        if not self.config.photometric:
            return frame
        frame = cv2.LUT(frame, self._lut(t))
        nx, ny = (int(v) for v in self._noise_offset[t])
        cv2.add(frame, self._noise_pos[ny:ny + h, nx:nx + w], dst=frame)
        cv2.subtract(frame, self._noise_neg[ny:ny + h, nx:nx + w], dst=frame)
        kind, param, ang = self._blur[t]
        if kind == 1:
            frame = cv2.GaussianBlur(frame, (0, 0), param)
        elif kind == 2:
            frame = cv2.filter2D(frame, -1, _motion_kernel(int(param), ang))
        return frame

    def _lut(self, t: int) -> np.ndarray:
        levels = (np.arange(256, dtype=np.float64) / 255.0) ** self._gamma * 255.0
        lut = levels[:, None] * (self._gain[t] * self._cast[t])[None, :]
        return np.clip(np.round(lut), 0, 255).astype(np.uint8).reshape(256, 1, 3)

    def _draw(self, frame: np.ndarray, i: int, t: int) -> None:
        contours = self._contours(i, t)
        x0, y0, x1, y1 = _bounds(contours)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, _to_fixed(contours, x0, y0), 255, cv2.LINE_AA, shift=_SUBPIXEL_BITS)
        track, tex = self.tracks[i], self._textures[i]
        # Texture -> ROI affine: rotate/scale about the texture centre, land on the object centre.
        a = math.radians(track.angles[t])
        s = track.radii[t] / (track.base_radius * SCALE_RANGE[1])
        lin = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        c_tex = np.full(2, (tex.shape[0] - 1) / 2)
        c_roi = track.centers[t] - (x0 + 0.5, y0 + 0.5)
        affine = np.hstack([lin, (c_roi - lin @ c_tex)[:, None]])
        patch = cv2.warpAffine(tex, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        alpha = mask.astype(np.float32) * (1.0 / 255.0)
        roi = frame[y0:y1, x0:x1]
        roi[...] = cv2.blendLinear(patch, np.ascontiguousarray(roi), alpha, 1.0 - alpha)


@dataclass
class SceneSummary:
    """Counts of a scene's ground truth, handy for reports and benchmark checks."""

    frames: int
    absent_frames: int
    out_of_view_frames: int
    full_occlusion_frames: int
    out_of_view_events: int
    description: str
    events: list[tuple[int, str, int]] = field(default_factory=list)


def summarize(scene: SyntheticScene) -> SceneSummary:
    """Count absent / out-of-view / occluded frames and re-appearances of the target."""
    flags = np.array([scene.flags(t) for t in range(len(scene))], dtype=bool).reshape(-1, 2)
    visible = ~(flags[:, 0] | flags[:, 1])
    events = int(np.sum(visible[:-1] & flags[1:, 1])) if len(scene) > 1 else 0
    return SceneSummary(len(scene), int((~visible).sum()), int(flags[:, 1].sum()), int(flags[:, 0].sum()), events,
                        scene.description, list(scene.events))
