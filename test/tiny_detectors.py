"""Tiny, randomly initialised transformers detectors saved like a downloaded model folder, for the grounder
tests (no real weights can be downloaded here). Built with the real model, processor and tokenizer
classes, so loading and inference go through exactly the code a real OWLv2 / OWL-ViT / Grounding DINO
folder goes through.

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


def build_owl(folder: Path, kind: str = "owlv2") -> Path:
    import torch
    import transformers

    tokenizer, vocab_size, bos, eos = _clip_tokenizer()
    names = {"owlv2": ("Owlv2Config", "Owlv2ForObjectDetection", "Owlv2Processor", "Owlv2ImageProcessorPil"),
             "owlvit": ("OwlViTConfig", "OwlViTForObjectDetection", "OwlViTProcessor", "OwlViTImageProcessorPil")}
    config_cls, model_cls, processor_cls, image_cls = (getattr(transformers, n) for n in names[kind])
    config = config_cls(
        text_config=dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32)
    torch.manual_seed(0)
    model = model_cls(config).eval()
    _flatten_owl_scores(model)
    size = {"height": 64, "width": 64}
    image_processor = image_cls(size=size) if kind == "owlv2" else image_cls(size=size, crop_size=size)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor_cls(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_grounding_dino(folder: Path) -> Path:
    import torch
    import transformers
    from transformers import BertConfig, BertTokenizer, ResNetConfig

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    config = transformers.GroundingDinoConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=ResNetConfig(embedding_size=8, hidden_sizes=[8, 8, 8, 8], depths=[1, 1, 1, 1],
                                     out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=12, max_text_len=16,
        encoder_n_points=2, decoder_n_points=2)
    torch.manual_seed(0)
    model = transformers.GroundingDinoForObjectDetection(config).eval()
    image_processor = transformers.GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    transformers.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


BUILDERS = {
    "owlv2": lambda folder: build_owl(folder, "owlv2"),
    "owlvit": lambda folder: build_owl(folder, "owlvit"),
    "grounding-dino": build_grounding_dino,
}
