"""Readers for the LaSOT, TNL2K and OTB folder layouts.

Every reader returns a :class:`~vl_tracker_core.data.sequence.Sequence`.

Layouts (one folder per sequence)::

    LaSOT  <seq>/img/00000001.jpg ...  groundtruth.txt  nlp.txt  full_occlusion.txt  out_of_view.txt
    TNL2K  <seq>/imgs/*.jpg|png ...     groundtruth.txt  language.txt
    OTB    <seq>/img/0001.jpg ...       groundtruth_rect.txt   (optional nlp.txt / language.txt, OTB-Lang style)

Conventions and decisions:

* Ground-truth numbers are kept exactly as written in the files: no shift by
  one, no clipping. (LaSOT/OTB files are 1-based in the MATLAB toolkits;
  pytracking and got10k read them unchanged too, so results stay comparable.)
  Boxes written as ``0,0,0,0`` stay as written and get ``visible=False``.
* Ground-truth lines may separate the four numbers with commas, tabs or spaces.
  A line that is not four numbers raises :class:`DatasetError` naming the file
  and line. A line holding NaN/inf (or a blank line between boxes) becomes a
  NaN row with ``visible=False`` and a warning. Trailing blank lines are ignored.
* ``visible`` = box finite and ``w > 0`` and ``h > 0`` and (LaSOT only) neither
  ``full_occlusion`` nor ``out_of_view`` is set. A missing flag file is normal
  (OTB, UAV123, DTB70 sources in LaSOT layout have none): a *note*, and every
  frame with a valid box is visible; a flag line of the wrong length is cut or
  padded with 0 (visible), with a warning. NaN lines on frames that a flag file
  marks as absent are the LaSOT-like way to say "no box": a note, not a warning.
* Frames versus ground-truth length: when they differ, both are cut to the
  shorter one, with a warning giving both counts. (A tracker cannot run on
  frames that do not exist, and frames without a box cannot be scored.) Note
  that OTB sequences whose annotation starts at a later frame (e.g. David,
  which the OTB toolkit starts at frame 300) need their frames cut by the
  caller; this reader pairs boxes with frames from the first frame on.
* Sentences (``nlp.txt``, ``language.txt``) are read as plain text, never as
  CSV: they may contain commas. Surrounding whitespace is stripped and line
  breaks are joined with a space. An empty file gives a warning and description
  ``""``; so does a missing ``language.txt`` in TNL2K, which always has one. A
  missing LaSOT-layout ``nlp.txt`` (most tracking datasets have no sentences)
  gives ``""`` and a note; a run that needs the sentence reports its absence then.
* Warnings are appended to ``Sequence.warnings`` and logged; notes go to
  ``Sequence.notes`` and the debug log; hard errors raise
  :class:`DatasetError` (a ``ValueError``). Frames that exist but cannot be
  decoded are only found when read (``Sequence.read_frame`` raises
  ``FrameReadError``).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence as Sequence_
from pathlib import Path

import numpy as np

from vl_tracker_core.boxes import Box
from vl_tracker_core.data.sequence import Sequence

logger = logging.getLogger(__name__)

LAYOUTS = ("lasot", "tnl2k", "otb")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# Files or folders whose presence makes a folder a sequence folder (searched for by load_dataset).
_SEQUENCE_MARKERS = ("groundtruth.txt", "groundtruth_rect.txt", "language.txt", "nlp.txt", "img", "imgs")
_SPLIT = re.compile(r"[,\s]+")


class DatasetError(ValueError):
    """A dataset or sequence folder that cannot be read; the message names the path."""


# --------------------------------------------------------------------------- small readers


def _read_text(path: Path, warnings: list[str]) -> str:
    """File text as str; undecodable bytes are replaced (with a warning) rather than failing."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        warnings.append(f"{path}: not valid UTF-8; undecodable bytes were replaced")
        return data.decode("utf-8", errors="replace")


def read_sentence(path: str | Path) -> tuple[str, list[str]]:
    """Read a one-sentence language file (LaSOT ``nlp.txt``, TNL2K ``language.txt``).

    Returns ``(sentence, warnings)``. The whole file is the sentence (commas are
    part of it); surrounding whitespace is stripped and line breaks become one
    space. A missing or empty file gives ``""`` and a warning naming the file.
    """
    path = Path(path)
    warnings: list[str] = []
    if not path.is_file():
        return "", [f"{path}: language file not found; description set to ''"]
    text = _read_text(path, warnings)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        warnings.append(f"{path}: language file is empty; description set to ''")
        return "", warnings
    return " ".join(lines), warnings


def read_groundtruth(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read an ``x,y,w,h``-per-line file (commas, tabs or spaces) into an ``(N, 4)`` float array.

    Values are kept as written. Rows holding NaN/inf, and blank lines between
    boxes, become NaN rows (with a warning). Raises :class:`DatasetError` naming
    the file and line for a line that is not four numbers, and for a file with
    no boxes at all.
    """
    gt, warnings, nan_message = _parse_groundtruth(Path(path))
    return gt, warnings + ([nan_message] if nan_message else [])


def _parse_groundtruth(path: Path) -> tuple[np.ndarray, list[str], str | None]:
    """:func:`read_groundtruth`, with the message about NaN/inf lines apart (a LaSOT reader makes it a note
    when the flag files mark those frames absent)."""
    if not path.is_file():
        raise DatasetError(f"ground-truth file {path} does not exist")
    warnings: list[str] = []
    lines = _read_text(path, warnings).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a final newline (or several) is not a frame
    rows: list[list[float]] = []
    blank_lines: list[int] = []
    nan_lines: list[int] = []
    for number, line in enumerate(lines, start=1):
        parts = [p for p in _SPLIT.split(line.strip()) if p]
        if not parts:
            blank_lines.append(number)
            rows.append([math.nan] * 4)
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise DatasetError(
                f"{path}, line {number}: {line.strip()!r} is not four numbers 'x,y,w,h'"
            ) from None
        if len(values) != 4:
            raise DatasetError(
                f"{path}, line {number}: expected 4 numbers 'x,y,w,h', found {len(values)} in {line.strip()!r}"
            )
        if not all(math.isfinite(v) for v in values):
            nan_lines.append(number)
            values = [math.nan] * 4
        rows.append(values)
    if not rows:
        raise DatasetError(f"ground-truth file {path} holds no boxes")
    if blank_lines:
        warnings.append(f"{path}: {len(blank_lines)} blank line(s) between boxes (first: line {blank_lines[0]}); "
                        "those frames have no box and count as not visible")
    nan_message = (f"{path}: {len(nan_lines)} line(s) with NaN/inf (first: line {nan_lines[0]}); those frames "
                   "have no box and count as not visible") if nan_lines else None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4), warnings, nan_message


def read_flags(path: str | Path, length: int) -> tuple[np.ndarray | None, list[str]]:
    """Read a LaSOT flag file (one line of comma-separated 0/1) as a bool array of ``length``.

    Returns ``(None, [warning])`` when the file is missing or empty, so the
    caller can treat every frame as not flagged. A different number of flags
    than ``length`` is cut or padded with False, with a warning. Raises
    :class:`DatasetError` for a value that is not 0/1.
    """
    path = Path(path)
    warnings: list[str] = []
    if not path.is_file():
        return None, [f"{path}: flag file not found; frames treated as not flagged (visible where the box is valid)"]
    parts = [p for p in _SPLIT.split(_read_text(path, warnings).strip()) if p]
    if not parts:
        return None, warnings + [f"{path}: flag file is empty; frames treated as not flagged"]
    flags = np.zeros(len(parts), dtype=bool)
    for i, part in enumerate(parts):
        if part not in ("0", "1"):
            raise DatasetError(f"{path}: flag {i + 1} is {part!r}; expected 0 or 1 separated by commas")
        flags[i] = part == "1"
    if len(flags) != length:
        warnings.append(f"{path}: {len(flags)} flags for {length} ground-truth boxes; "
                        + ("extra flags ignored" if len(flags) > length else "missing flags treated as 0"))
        flags = np.concatenate([flags, np.zeros(max(0, length - len(flags)), dtype=bool)])[:length]
    return flags, warnings


def _frame_sort_key(path: Path) -> tuple[int, int, str]:
    # Numeric stems sort by value (so 10.jpg follows 9.jpg); anything else sorts after, by name.
    stem = path.stem
    return (0, int(stem), path.name) if stem.isdigit() else (1, 0, path.name)


def list_frames(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (empty list if it does not exist), in frame order."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS]
    return sorted(files, key=_frame_sort_key)


def visible_from_boxes(gt: np.ndarray) -> np.ndarray:
    """(N,) True where a row of ``gt`` is a box: finite, of positive size."""
    return np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)


def _format_number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".") if decimals > 0 else f"{value:.0f}"
    return text if text not in ("", "-0") else "0"


def write_lasot_annotations(folder: str | Path, description: str, boxes: Sequence_[Box | None],
                            full_occlusion: Sequence_[bool], out_of_view: Sequence_[bool], decimals: int = 1) -> None:
    """Write LaSOT's annotation files into ``folder``: ``groundtruth.txt`` (x,y,w,h per frame, ``0,0,0,0``
    where ``boxes`` has None; numbers with at most ``decimals`` decimals), ``nlp.txt``, and
    ``full_occlusion.txt`` / ``out_of_view.txt`` (one comma-separated line of 0/1). What ``read_lasot``
    reads back (without frames: ``require_frames=False``)."""
    folder = Path(folder)
    lines = ["0,0,0,0" if box is None else ",".join(_format_number(v, decimals) for v in box) for box in boxes]
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "nlp.txt").write_text(description + "\n", encoding="utf-8")
    for name, flags in (("full_occlusion.txt", full_occlusion), ("out_of_view.txt", out_of_view)):
        (folder / name).write_text(",".join("1" if f else "0" for f in flags) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- layouts


def _is_sequence_folder(path: Path) -> bool:
    if any((path / marker).exists() for marker in _SEQUENCE_MARKERS):
        return True
    return any(path.glob("groundtruth_rect*.txt"))


def _sequence_layout(path: Path) -> str | None:
    if (path / "groundtruth_rect.txt").is_file() or any(path.glob("groundtruth_rect*.txt")):
        return "otb"
    if (path / "imgs").is_dir() or (path / "language.txt").is_file():
        return "tnl2k"
    if any((path / name).exists() for name in ("nlp.txt", "full_occlusion.txt", "out_of_view.txt")):
        return "lasot"
    if (path / "groundtruth.txt").is_file() and (path / "img").is_dir():
        return "lasot"  # groundtruth.txt + img/ without LaSOT extras: closest match
    return None


def find_sequence_folders(root: str | Path, max_depth: int = 3) -> list[Path]:
    """Sequence folders at or below ``root`` (LaSOT nests ``<class>/<class>-<n>``), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    if _is_sequence_folder(root):
        return [root]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        for child in sorted(folder.iterdir()):
            if not child.is_dir() or child.name.startswith((".", "__")):
                continue
            if _is_sequence_folder(child):
                found.append(child)
            elif depth < max_depth:
                walk(child, depth + 1)

    walk(root, 1)
    return found


def detect_layout(path: str | Path) -> str:
    """``"lasot"``, ``"tnl2k"`` or ``"otb"`` for a sequence folder, or for a dataset folder (its first sequence).

    Rules: ``groundtruth_rect*.txt`` -> otb; ``imgs/`` or ``language.txt`` ->
    tnl2k; ``nlp.txt`` / ``full_occlusion.txt`` / ``out_of_view.txt``, or
    ``groundtruth.txt`` with ``img/`` -> lasot.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"dataset folder {path} does not exist or is not a folder")
    folders = [path] if _is_sequence_folder(path) else find_sequence_folders(path)
    if not folders:
        raise DatasetError(
            f"no sequence folders under {path}: expected folders holding groundtruth.txt (LaSOT/TNL2K) "
            "or groundtruth_rect.txt (OTB)"
        )
    layout = _sequence_layout(folders[0])
    if layout is None:
        raise DatasetError(
            f"cannot tell the layout of {folders[0]}: expected groundtruth_rect.txt (OTB), imgs/ or language.txt "
            "(TNL2K), or groundtruth.txt with img/ and nlp.txt (LaSOT)"
        )
    return layout


def _assemble(
    folder: Path,
    layout: str,
    frames: list[Path],
    frame_folder: Path,
    gt: np.ndarray,
    visible: np.ndarray,
    description: str,
    warnings: list[str],
    require_frames: bool,
    notes: list[str] | None = None,
) -> Sequence:
    if not frames:
        message = f"sequence folder {folder} has no frames (expected image files in {frame_folder})"
        if require_frames:
            raise DatasetError(message)
        # Annotation-only sequences (e.g. the TNL2K annotation zips): keep the full ground truth.
        warnings.append(message + "; loaded annotations only (len(seq) is 0, use len(seq.gt))")
    elif len(frames) != len(gt):
        n = min(len(frames), len(gt))
        warnings.append(f"{folder}: {len(frames)} frames but {len(gt)} ground-truth boxes; both cut to {n}")
        frames, gt, visible = frames[:n], gt[:n], visible[:n]
    notes = list(notes or [])
    for message in notes:
        logger.debug(message)
    for message in warnings:
        logger.warning(message)
    return Sequence(name=folder.name, frames=frames, gt=gt, visible=visible, description=description,
                    layout=layout, root=folder, warnings=warnings, notes=notes)


def read_lasot(folder: str | Path, require_frames: bool = True) -> Sequence:
    """Read one LaSOT sequence folder. Flag files and ``nlp.txt`` that the folder lacks are notes: OTB,
    UAV123 and DTB70 sequences in LaSOT layout have none."""
    folder = Path(folder)
    gt, warnings, nan_message = _parse_groundtruth(folder / "groundtruth.txt")
    visible = visible_from_boxes(gt)
    flagged = np.zeros(len(gt), dtype=bool)
    notes: list[str] = []
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        flags, flag_messages = read_flags(folder / name, len(gt))
        (warnings if (folder / name).is_file() else notes).extend(flag_messages)
        if flags is not None:
            visible &= ~flags
            flagged |= flags
    if nan_message and flagged[~np.isfinite(gt).all(axis=1)].all():
        # Every NaN line is a frame the flags mark absent: that is how the file says "no box".
        notes.append(nan_message + "; all of them flagged absent")
    elif nan_message:
        warnings.append(nan_message)
    description, text_messages = read_sentence(folder / "nlp.txt")
    (warnings if (folder / "nlp.txt").is_file() else notes).extend(text_messages)
    frames = list_frames(folder / "img")
    return _assemble(folder, "lasot", frames, folder / "img", gt, visible, description, warnings, require_frames,
                     notes)


def read_tnl2k(folder: str | Path, require_frames: bool = True) -> Sequence:
    """Read one TNL2K sequence folder."""
    folder = Path(folder)
    gt, warnings = read_groundtruth(folder / "groundtruth.txt")
    description, text_warnings = read_sentence(folder / "language.txt")
    warnings += text_warnings
    frames = list_frames(folder / "imgs")
    return _assemble(folder, "tnl2k", frames, folder / "imgs", gt, visible_from_boxes(gt), description, warnings,
                     require_frames)


def read_otb(folder: str | Path, require_frames: bool = True) -> Sequence:
    """Read one OTB sequence folder (``nlp.txt`` or ``language.txt`` is used if present, OTB-Lang style)."""
    folder = Path(folder)
    gt_path = folder / "groundtruth_rect.txt"
    extra: list[str] = []
    if not gt_path.is_file():
        # Multi-target OTB sequences (Jogging, Skating2) ship groundtruth_rect.1.txt, .2.txt, ...
        candidates = sorted(folder.glob("groundtruth_rect*.txt"))
        if not candidates:
            raise DatasetError(f"ground-truth file {gt_path} does not exist")
        gt_path = candidates[0]
        if len(candidates) > 1:
            extra.append(f"{folder}: {len(candidates)} ground-truth files; using {gt_path.name} (the first target)")
    gt, warnings = read_groundtruth(gt_path)
    warnings = extra + warnings
    description = ""
    for name in ("nlp.txt", "language.txt"):
        if (folder / name).is_file():
            description, text_warnings = read_sentence(folder / name)
            warnings += text_warnings
            break
    frames = list_frames(folder / "img")
    return _assemble(folder, "otb", frames, folder / "img", gt, visible_from_boxes(gt), description, warnings,
                     require_frames)


_READERS = {"lasot": read_lasot, "tnl2k": read_tnl2k, "otb": read_otb}


def load_sequence(path: str | Path, layout: str = "auto", require_frames: bool = True) -> Sequence:
    """Read one sequence folder.

    ``layout`` is ``"auto"`` (see :func:`detect_layout`), ``"lasot"``,
    ``"tnl2k"`` or ``"otb"``. ``require_frames=False`` accepts a folder with
    annotations but no images (``frames`` is then empty and a warning is added);
    use it to check annotation archives. Raises :class:`DatasetError`.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"sequence folder {path} does not exist or is not a folder")
    if layout == "auto":
        layout = _sequence_layout(path) or ""
        if not layout:
            raise DatasetError(
                f"cannot tell the layout of {path}: expected groundtruth_rect.txt (OTB), imgs/ or language.txt "
                "(TNL2K), or groundtruth.txt with img/ and nlp.txt (LaSOT); or pass layout= explicitly"
            )
    if layout not in _READERS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of 'auto', {', '.join(map(repr, LAYOUTS))}")
    return _READERS[layout](path, require_frames=require_frames)


def load_dataset(
    root: str | Path, layout: str = "auto", require_frames: bool = True
) -> tuple[list[Sequence], list[str]]:
    """Read every sequence at or below ``root``.

    ``root`` is one sequence folder, a folder of sequence folders, or (LaSOT) a
    folder of class folders of sequence folders. Returns ``(sequences, errors)``:
    a sequence that fails adds ``"<folder>: <reason>"`` to ``errors`` and the rest
    still load. Raises :class:`DatasetError` only when ``root`` is missing or
    holds no sequence folder at all.
    """
    root = Path(root)
    folders = find_sequence_folders(root)
    if not folders:
        raise DatasetError(
            f"no sequence folders under {root}: expected folders holding groundtruth.txt (LaSOT/TNL2K) "
            "or groundtruth_rect.txt (OTB)"
        )
    sequences: list[Sequence] = []
    errors: list[str] = []
    for folder in folders:
        try:
            sequences.append(load_sequence(folder, layout=layout, require_frames=require_frames))
        except (DatasetError, OSError) as exc:
            errors.append(f"{folder}: {exc}")
    return sequences, errors
