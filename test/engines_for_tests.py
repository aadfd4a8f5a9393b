"""Small deterministic engines implementing the Engine protocol, shared by the tests.

``BlobEngine`` "sees" bright square blobs in the patch it is given, with a
confidence equal to the blob's brightness. That makes each tracker transition
controllable (a dim blob scores between T_lost and T_accept) while the real
cropping, letterboxing and box mapping of the tracker are exercised, without
the network.
"""

from __future__ import annotations

import numpy as np

from vl_tracker_core.engines.base import Matches, Peaks, Proposals, TextFeatures
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

    def propose(self, image):
        """The blob first, then K - 1 empty boxes along the top edge."""
        peaks = self._peaks(image)
        k = self.config.candidates
        boxes = [peaks.boxes[0]] + [np.array([4.0 + 12 * i, 4.0, 8.0, 8.0]) for i in range(k - 1)]
        scores = [float(peaks.scores[0])] + [0.0] * (k - 1)
        return Proposals(np.array(boxes, float), np.array(scores, float))

    def match(self, text, crops, geometry, cand_mask, template_crop):
        """A candidate whose crop holds a blob matches with the blob's brightness; the template agrees
        the same way, so a candidate scores its brightness whatever the mix."""
        values = []
        for crop in crops:
            gray = crop.max(axis=2)
            bright = gray[gray > 60]
            values.append(bright.mean() / 255.0 if bright.size else 0.0)
        probs = np.array(values, float) * np.asarray(cand_mask, float)
        top = float(probs.max(initial=0.0))
        probs = np.where(probs == top, probs, 0.0)  # one winner, the rest of the mass on "none"
        return Matches(probs, 1.0 - top, probs.copy())
