"""Small deterministic engines implementing the Engine protocol, shared by the tests.

``BlobEngine`` "sees" bright square blobs in the patch it is given, with a
confidence equal to the blob's brightness. That makes each tracker transition
controllable (a dim blob scores between T_lost and T_accept) while the real
cropping, letterboxing and box mapping of the tracker are exercised, without
the network.
"""

from __future__ import annotations

import numpy as np

from vl_tracker_core.engines.base import Peaks, TextFeatures
from vl_tracker_core.models.config import preset


class BlobEngine:
    """Finds the brightest blob (pixels > 60) in its input; confidence = blob brightness / 255."""

    name = "blob"

    def __init__(self) -> None:
        self.config = preset("tiny")
        self.text_calls = 0
        self.template_calls = 0

    def encode_text(self, description: str) -> TextFeatures:
        self.text_calls += 1
        return TextFeatures(description, np.zeros((1, 4, 8), np.float32), np.ones((1, 4), np.float32))

    def encode_template(self, text, template):
        self.template_calls += 1
        return np.zeros((1, 16, 8), np.float32)

    def _peaks(self, image: np.ndarray) -> Peaks:
        gray = image.max(axis=2)
        ys, xs = np.nonzero(gray > 60)
        if len(xs) == 0:
            box = np.array([[image.shape[1] / 2 - 4, image.shape[0] / 2 - 4, 8, 8]], float)
            conf = np.array([0.02])
        else:
            box = np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]], float)
            conf = np.array([gray[ys, xs].mean() / 255.0])
        return Peaks(box, conf, conf, conf, np.zeros((4, 4), np.float32))

    def track(self, text, template_tokens, search):
        return self._peaks(search)

    def ground(self, text, image):
        return self._peaks(image)
