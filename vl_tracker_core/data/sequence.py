"""The in-memory form of one annotated sequence, whatever layout it came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class FrameReadError(RuntimeError):
    """A frame file exists in the listing but cannot be decoded."""


@dataclass
class Sequence:
    """One sequence: frame files, ground truth and its description.

    ``gt`` is ``(N, 4)`` xywh in pixels, the numbers exactly as written in the
    files (LaSOT/OTB files are 1-based; the toolkits read them unshifted, and so
    do we). Rows of absent frames keep what the file says (often ``0,0,0,0``);
    unparseable rows are NaN. Always use ``visible`` (``(N,)`` bool: False where
    the target is fully occluded, out of view, or has no valid box) to know
    whether a row is a box.
    """

    name: str
    frames: list[Path]
    gt: np.ndarray
    visible: np.ndarray
    description: str = ""
    layout: str = ""
    root: Path | None = None
    warnings: list[str] = field(default_factory=list)
    #: what is normal for the layout's sources but worth knowing (a flag or language file they do not have)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gt = np.asarray(self.gt, dtype=np.float64).reshape(-1, 4)
        self.visible = np.asarray(self.visible, dtype=bool).reshape(-1)
        if len(self.visible) != len(self.gt):
            raise ValueError(
                f"sequence {self.name}: {len(self.gt)} boxes but {len(self.visible)} visibility flags"
            )

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def out_of_view_events(self) -> int:
        """How many times the target disappears after having been visible."""
        vis = self.visible
        return int(np.sum(vis[:-1] & ~vis[1:])) if len(vis) > 1 else 0

    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an RGB uint8 array; raises FrameReadError naming the file."""
        path = self.frames[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FrameReadError(f"cannot decode frame {path}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def iter_frames(self) -> Iterator[np.ndarray]:
        for i in range(len(self.frames)):
            yield self.read_frame(i)
