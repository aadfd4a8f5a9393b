"""Randomly initialised transformers detectors, for tests and for timing (no real weights can be
downloaded on the development machines).

``size="tiny"``: small models saved like a downloaded model folder, so the tests' loading and inference go
through exactly the code a real OWLv2 / OWL-ViT / Grounding DINO folder goes through. ``size="base"``: the
published architectures at full size (OWL-ViT B/32 at 768 px, OWLv2 B/16 at 960 px, Grounding DINO with a
Swin-T backbone and a BERT-base text encoder), for ``vl-tracker bench-grounders``: their speed is real,
their boxes are noise.

The class heads of the OWL models are set so that every box scores sigmoid(1) = 0.73 and the box heads
so that every box is its patch's prior box: random heads saturate, and a score above the tracker's
thresholds lets the tests follow a detection through the whole state machine.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["the", "red", "ball", "a", "person", "in", "jacket", "green", "blue", "car", "square", "white"]


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    # Id 0 must not be the start token: OWL treats a query whose first id is 0 as padding (as in CLIP's real
    # vocabulary, the special tokens come last).
    vocab: dict[str, int] = {"!": 0}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for c in letters:
        vocab[c] = len(vocab)
    for c in letters:
        vocab[c + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1], *parts[2:]]
    bos, eos = len(vocab), len(vocab) + 1
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = bos, eos
    return CLIPTokenizer(vocab=vocab, merges=merges), len(vocab), bos, eos


def _flatten_owl_scores(model) -> None:
    import torch

    head = model.class_head
    with torch.no_grad():
        for layer in (head.dense0, head.logit_shift, head.logit_scale):
            layer.weight.zero_()
            layer.bias.zero_()
        head.logit_shift.bias.fill_(1.0)
        # Random box heads saturate too; without the last layer every box is its patch's prior box.
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()


def _owl(kind: str, size: str):
    import torch
    import transformers

    tokenizer, vocab_size, bos, eos = _clip_tokenizer()
    names = {"owlv2": ("Owlv2Config", "Owlv2ForObjectDetection", "Owlv2Processor", "Owlv2ImageProcessorPil"),
             "owlvit": ("OwlViTConfig", "OwlViTForObjectDetection", "OwlViTProcessor", "OwlViTImageProcessorPil")}
    config_cls, model_cls, processor_cls, image_cls = (getattr(transformers, n) for n in names[kind])
    if size == "tiny":
        config = config_cls(
            text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=16, bos_token_id=bos, eos_token_id=eos,
                             pad_token_id=eos),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=64, patch_size=16),
            projection_dim=32)
        side = 64
    else:  # the published base architectures (transformers' defaults: OWL-ViT B/32 768 px, OWLv2 B/16 960 px)
        config = config_cls(text_config=dict(bos_token_id=bos, eos_token_id=eos, pad_token_id=eos))
        side = config.vision_config.image_size
    torch.manual_seed(0)
    model = model_cls(config).eval()
    _flatten_owl_scores(model)
    dims = {"height": side, "width": side}
    image_processor = image_cls(size=dims) if kind == "owlv2" else image_cls(size=dims, crop_size=dims)
    return model, processor_cls(image_processor=image_processor, tokenizer=tokenizer)


def _grounding_dino(size: str):
    import torch
    import transformers
    from transformers import BertConfig, BertTokenizer, ResNetConfig, SwinConfig

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    if size == "tiny":
        config = transformers.GroundingDinoConfig(
            use_timm_backbone=False, use_pretrained_backbone=False,
            backbone_config=ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                                         out_features=["stage2", "stage3", "stage4"]),
            text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
            encoder_attention_heads=2, decoder_attention_heads=2, num_queries=12, max_text_len=16,
            encoder_n_points=2, decoder_n_points=2)
        dims = {"shortest_edge": 64, "longest_edge": 96}
    else:  # grounding-dino-tiny's architecture: Swin-T backbone, BERT-base text encoder, 900 queries
        config = transformers.GroundingDinoConfig(
            use_timm_backbone=False, use_pretrained_backbone=False,
            backbone_config=SwinConfig(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
                                       out_features=["stage2", "stage3", "stage4"]),
            text_config=BertConfig())
        dims = {"shortest_edge": 800, "longest_edge": 1333}
    torch.manual_seed(0)
    model = transformers.GroundingDinoForObjectDetection(config).eval()
    image_processor = transformers.GroundingDinoImageProcessorPil(size=dims)
    return model, transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def random_detector(kind: str, size: str = "tiny"):
    """(model, processor) of ``kind`` with random weights; ``size`` tiny or base."""
    if size not in ("tiny", "base"):
        raise ValueError(f"size must be tiny or base, got {size!r}")
    if kind in ("owlv2", "owlvit"):
        return _owl(kind, size)
    if kind == "grounding-dino":
        return _grounding_dino(size)
    raise ValueError(f"no random builder for {kind!r}")


def save_random_detector(kind: str, folder: Path, size: str = "tiny") -> Path:
    """A model folder of ``kind`` as ``from_pretrained`` reads it (what a user's download looks like)."""
    model, processor = random_detector(kind, size)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


BUILDERS = {kind: (lambda folder, kind=kind: save_random_detector(kind, folder))
            for kind in ("owlv2", "owlvit", "grounding-dino")}
