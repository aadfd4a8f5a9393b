"""Progress bars on long work, only where someone watches: on a terminal, not in a captured log.

``tqdm(disable=None)`` turns a bar off when its stream is not a TTY, so ``make demo > log`` gets no
carriage-return updates. No project imports (any module may use it).
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


def progress(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar that is off when ``enabled`` is false or stderr is not a terminal."""
    return tqdm(iterable, disable=None if enabled else True, **kwargs)


def quiet_transformers() -> None:
    """transformers draws its own bar for every model it loads ("Loading weights"): not ours to show."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()
