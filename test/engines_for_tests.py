"""Small deterministic engines implementing the Engine protocol, shared by the tests.

``BlobEngine`` "sees" bright square blobs: its proposals box the brightest blob
of the letterboxed frame, its matcher scores a candidate crop by the brightness
of the blob in it (so the verifier's answer is controllable: a dim blob scores
between T_lost and T_accept), and its "trunk" is the frame itself, average-pooled
to stride 8 and 16 (colour and brightness per cell), on which the tracker's real
online model, cropping and box mapping run, without the network.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vl_tracker_core.engines.base import Matches, Proposals, TextFeatures
from vl_tracker_core.models.config import preset


class BlobEngine:
    """Finds the brightest blob (pixels > 60) in its input; confidence = blob brightness / 255."""

    name = "blob"

    def __init__(self) -> None:
        # Pinned to a 256-px tracking crop (window 384), the shipped default, whatever the default becomes: this
        # engine's "trunk" is average-pooled pixels, which at 192 px (12 stride-16 cells) blur the 20-px blobs
        # these tests move by 6 px a frame (IoU 0.45 against 0.89).
        self.config = dataclasses.replace(preset("tiny"), online_crop_size=256, redetect_size=384)
        self.text_calls = 0
        self.feature_calls = 0
        self.feature_batches: list[int] = []
        self.match_calls = 0

    def encode_text(self, description: str) -> TextFeatures:
        self.text_calls += 1
        return TextFeatures(description, np.zeros((1, 4, 8), np.float32), np.ones((1, 4), np.float32))

    def features(self, patches: np.ndarray):
        """(N, S, S, 3) -> the patches average-pooled to stride 8 and 16 (black = no signal at all)."""
        self.feature_calls += 1
        self.feature_batches.append(patches.shape[0])
        x = patches.astype(np.float32) / 255.0
        n, h, w, c = x.shape

        def pool(stride: int) -> np.ndarray:
            return x.reshape(n, h // stride, stride, w // stride, stride, c).mean(axis=(2, 4)).transpose(0, 3, 1, 2)

        return np.ascontiguousarray(pool(8)), np.ascontiguousarray(pool(16))

    def _blob(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        gray = image.max(axis=2)
        ys, xs = np.nonzero(gray > 60)
        if len(xs) == 0:
            return np.array([image.shape[1] / 2 - 4, image.shape[0] / 2 - 4, 8, 8], float), 0.02
        box = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], float)
        return box, float(gray[ys, xs].mean() / 255.0)

    def propose(self, image):
        """The blob first, then K - 1 empty boxes along the top edge."""
        blob, level = self._blob(image)
        k = self.config.candidates
        boxes = [blob] + [np.array([4.0 + 12 * i, 4.0, 8.0, 8.0]) for i in range(k - 1)]
        scores = [level] + [0.0] * (k - 1)
        return Proposals(np.array(boxes, float), np.array(scores, float))

    def match(self, text, crops, geometry, cand_mask, template_crop):
        """A candidate whose crop holds a blob matches with the blob's brightness; the template agrees
        the same way, so a candidate scores its brightness whatever the mix."""
        self.match_calls += 1
        values = []
        for crop in crops:
            gray = crop.max(axis=2)
            bright = gray[gray > 60]
            values.append(bright.mean() / 255.0 if bright.size else 0.0)
        probs = np.array(values, float) * np.asarray(cand_mask, float)
        top = float(probs.max(initial=0.0))
        probs = np.where(probs == top, probs, 0.0)  # one winner, the rest of the mass on "none"
        return Matches(probs, 1.0 - top, probs.copy())
