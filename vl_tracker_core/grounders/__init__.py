"""Who finds the described object in the whole frame (first grounding and re-search).

- ``joint`` (default): our own network's proposals and candidate-set matcher (no extra model).
- ``owlv2`` / ``owlvit``: transformers' OWLv2 / OWL-ViT open-vocabulary detectors.
- ``grounding-dino``: transformers' Grounding DINO.

The detectors are loaded from a local folder (``from_pretrained(DIR)``, offline) that the user downloaded
on a machine with internet; their boxes and scores become the candidates of the same acceptance rules.
An OWLv2 / OWL-ViT folder exported by ``vl-tracker export-grounder`` runs with onnxruntime, or TensorRT when
the tracker's backend is tensorrt (``grounders.export``).
"""

from __future__ import annotations

from pathlib import Path

from vl_tracker_core.grounders.base import GROUNDERS, Detections, Grounder, GrounderError


def create_grounder(kind: str = "joint", model: str | Path | None = None, device: str = "cpu",
                    threads: int | None = None, backend: str = "torch") -> Grounder | None:
    """None for ``joint`` (the tracker then uses its engine; ``model`` is not used, so that a node's
    ``grounder_model`` can be set before its ``grounder``); a detector for the others.

    ``backend`` is the tracker's: a transformers model folder always runs with torch; an exported folder
    runs with TensorRT when it is ``tensorrt``, else with onnxruntime."""
    if kind in ("", "joint"):
        return None
    if kind not in GROUNDERS:
        raise GrounderError(f"unknown grounder {kind!r}; choose from {', '.join(GROUNDERS)}")
    if model in (None, ""):
        raise GrounderError(f"grounder {kind!r} needs a model folder (--grounder-model DIR / grounder_model): "
                            "download the model on a machine with internet and copy its folder here "
                            "(README: Real cameras)")
    from vl_tracker_core.grounders.exported import ExportedOwlGrounder, is_grounder_export

    if is_grounder_export(model):
        return ExportedOwlGrounder(kind, Path(model), "tensorrt" if backend == "tensorrt" else "onnxruntime",
                                   threads=threads)
    from vl_tracker_core.grounders.hf import TransformersGrounder

    return TransformersGrounder(kind, Path(model), device=device, threads=threads)


__all__ = ["GROUNDERS", "Detections", "Grounder", "GrounderError", "create_grounder"]
