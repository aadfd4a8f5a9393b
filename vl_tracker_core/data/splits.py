"""Named splits of real-video folders, and the descriptions this project wrote for sequences without one.

``resources/real_dev.json`` defines ``real-train`` and ``real-val`` over ``../shared/data/real_dev`` (with
the reason for the split) and one project-written sentence per sequence that has no human one. Those
sentences are kept apart from the datasets: :func:`apply_split` fills them in only where a sequence's own
description is empty, and says which sequences got one.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from vl_tracker_core.data.sequence import Sequence


class SplitError(ValueError):
    """An unknown split, a split whose sequences the folder lacks, or an unreadable descriptions file."""


_REGISTRY = Path(__file__).resolve().parent.parent / "resources" / "real_dev.json"


@lru_cache(maxsize=1)
def _registry() -> dict[str, Any]:
    return json.loads(_REGISTRY.read_text(encoding="utf-8"))


def split_names() -> list[str]:
    return sorted(_registry()["splits"])


def split_members(name: str) -> list[str]:
    splits = _registry()["splits"]
    if name not in splits:
        raise SplitError(f"unknown split {name!r}; known: {', '.join(sorted(splits))}")
    return list(splits[name])


def project_descriptions() -> dict[str, str]:
    """Sequence name -> the sentence this project wrote for it (see ``descriptions_written_by``)."""
    return dict(_registry()["descriptions"])


def load_descriptions(spec: str) -> dict[str, str]:
    """``project`` (the file above), or a JSON file mapping sequence names to sentences."""
    if spec == "project":
        return project_descriptions()
    path = Path(spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SplitError(f"cannot read descriptions from {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise SplitError(f"{path} must be a JSON object mapping sequence names to sentences")
    return data


def apply_split(sequences: list[Sequence], split: str | None = None,
                descriptions: dict[str, str] | None = None) -> tuple[list[Sequence], list[str]]:
    """The members of ``split`` (all when None), with ``descriptions`` filled in where a sequence has none.

    Returns the sequences and the names of those whose description came from ``descriptions``. A split
    member missing from ``sequences`` raises SplitError (a figure on a partial split would be misnamed).
    """
    chosen = sequences
    if split is not None:
        members = split_members(split)
        by_name = {s.name: s for s in sequences}
        missing = [m for m in members if m not in by_name]
        if missing:
            raise SplitError(f"split {split} needs the sequences {missing}, which the dataset folder lacks")
        chosen = [by_name[m] for m in members]
    filled: list[str] = []
    if descriptions:
        out = []
        for seq in chosen:
            if not seq.description.strip() and descriptions.get(seq.name, "").strip():
                seq = dataclasses.replace(seq, description=descriptions[seq.name].strip())
                filled.append(seq.name)
            out.append(seq)
        chosen = out
    return chosen, filled
