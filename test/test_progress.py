"""Progress bars only on a terminal: a captured log (``make demo > log``) gets none of tqdm's updates."""

from __future__ import annotations

import io

from vl_tracker_core.progress import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drawn(stream: io.StringIO, **kwargs) -> str:
    for _ in progress(range(50), file=stream, mininterval=0, **kwargs):
        pass
    return stream.getvalue()


def test_a_bar_is_drawn_on_a_terminal():
    assert "50/50" in _drawn(_Terminal())


def test_no_bar_in_a_captured_log():
    assert _drawn(io.StringIO()) == ""


def test_no_bar_when_switched_off_even_on_a_terminal():
    assert _drawn(_Terminal(), enabled=False) == ""
