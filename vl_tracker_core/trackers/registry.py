"""Tracker names the CLI and the evaluation runner accept."""

from __future__ import annotations

from collections.abc import Callable

from vl_tracker_core.trackers.base import Tracker


def _opencv(kind: str) -> Callable[..., Tracker]:
    def make(variant: str | None = None, **_: object) -> Tracker:
        from vl_tracker_core.trackers.opencv_baselines import OpenCVTracker

        if variant not in (None, "", "default"):
            raise ValueError(f"tracker {kind!r} has no variants (got {variant!r})")
        return OpenCVTracker(kind)

    return make


_ENGINES: dict[tuple, object] = {}


def shared_engine(backend: str = "onnxruntime", model: str | None = None, threads: int | None = None):
    """One engine per (backend, model, threads) in a process: loading weights and the text encoder once,
    not once per sequence."""
    key = (backend, str(model) if model else None, threads)
    if key not in _ENGINES:
        from vl_tracker_core.engines import create_engine

        options = {"threads": threads} if threads and backend in ("torch", "onnxruntime") else {}
        _ENGINES[key] = create_engine(backend, model, **options)
    return _ENGINES[key]


_GROUNDERS: dict[tuple, object] = {}


def shared_grounder(kind: str = "joint", model: str | None = None, threads: int | None = None,
                    backend: str = "onnxruntime"):
    """One detector per (kind, folder, backend) in a process, like :func:`shared_engine`; None for ``joint``."""
    key = (kind, str(model) if model else None, backend)
    if key not in _GROUNDERS:
        from vl_tracker_core.grounders import create_grounder

        _GROUNDERS[key] = create_grounder(kind, model, threads=threads, backend=backend)
    return _GROUNDERS[key]


def _vl(variant: str | None = None, backend: str = "onnxruntime", model: str | None = None, params: dict | None = None,
        threads: int | None = None, grounder: str = "joint", grounder_model: str | None = None,
        **_: object) -> Tracker:
    from vl_tracker_core.tracker import TrackerParams, VLTracker, load_default_params

    values = {**load_default_params(), **(params or {})}
    if variant:
        values["variant"] = variant
    return VLTracker(shared_engine(backend, model, threads), TrackerParams.from_dict(values),
                     grounder=shared_grounder(grounder, grounder_model, threads, backend))


TRACKERS: dict[str, Callable[..., Tracker]] = {
    "csrt": _opencv("csrt"),
    "kcf": _opencv("kcf"),
    "vl": _vl,
}


def create_tracker(name: str, variant: str | None = None, **options: object) -> Tracker:
    """Build tracker ``name`` (e.g. ``csrt``); ``variant`` selects an ablation where the tracker has them."""
    try:
        factory = TRACKERS[name]
    except KeyError:
        raise ValueError(f"unknown tracker {name!r}; available: {', '.join(sorted(TRACKERS))}") from None
    return factory(variant=variant, **options)
