"""The joint network, its checkpoints and the text encoder, through the real loading code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vl_tracker_core.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vl_tracker_core.models.config import ConfigError, ModelConfig, preset
from vl_tracker_core.models.network import JointVLNet, MatchGraph
from vl_tracker_core.models.text import DescriptionError, TextEncoder, clean_description


def _inputs(cfg: ModelConfig, batch: int = 2):
    g = torch.Generator().manual_seed(0)
    text = torch.randn(batch, cfg.max_text_tokens, cfg.text_dim, generator=g)
    mask = torch.zeros(batch, cfg.max_text_tokens)
    mask[:, :7] = 1
    template = torch.rand(batch, 3, cfg.template_size, cfg.template_size, generator=g)
    search = torch.rand(batch, 3, cfg.search_size, cfg.search_size, generator=g)
    image = torch.rand(batch, 3, cfg.ground_size, cfg.ground_size, generator=g)
    return text, mask, template, search, image


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_every_pass_runs_and_decodes_valid_outputs(name):
    cfg = preset(name)
    net = JointVLNet(cfg).eval()
    text, mask, template, search, image = _inputs(cfg, batch=1)
    k, c = cfg.candidates, cfg.candidate_size
    crops = torch.rand(1, k, 3, c, c)
    geometry = torch.rand(1, k, 6)
    cand_mask = torch.ones(1, k)
    cand_mask[0, 2] = 0.0
    with torch.no_grad():
        tokens = net.encode_template(text, mask, template)
        track = net.forward_track(text, mask, tokens, search)
        proposals = net.forward_propose(image)
        probs, template_sim = MatchGraph(net)(text, mask, crops, geometry, cand_mask, crops[:, 0])
    assert track["boxes"].shape == (1, cfg.top_k, 4)
    assert proposals["boxes"].shape == (1, k, 4)
    for out, size in ((track, cfg.search_size), (proposals, cfg.ground_size)):
        assert torch.isfinite(out["boxes"]).all()
        centres = out["boxes"][..., :2] + out["boxes"][..., 2:] / 2
        assert (centres >= 0).all() and (centres <= size).all()
        assert ((out["scores"] >= 0) & (out["scores"] <= 1)).all()
    for key in ("confidence", "similarity"):
        assert ((track[key] >= 0) & (track[key] <= 1)).all()
    assert proposals["heat"].shape[-1] == cfg.ground_size // 8
    # K candidates + "none": a distribution; a masked-out candidate gets nothing.
    assert probs.shape == (1, k + 1) and torch.allclose(probs.sum(), torch.tensor(1.0), atol=1e-5)
    assert float(probs[0, 2]) < 1e-6
    assert template_sim.shape == (1, k) and ((template_sim >= 0) & (template_sim <= 1)).all()


def test_the_matcher_sees_the_whole_set_and_its_order_does_not_matter():
    """Candidates attend to each other (relations need it) but carry no position code: permuting them
    permutes the answer."""
    cfg = preset("tiny")
    torch.manual_seed(1)
    net = JointVLNet(cfg).eval()
    text, mask, template, _, _ = _inputs(cfg, batch=1)
    k, c = cfg.candidates, cfg.candidate_size
    crops, geometry, cand_mask = torch.rand(1, k, 3, c, c), torch.rand(1, k, 6), torch.ones(1, k)
    perm = torch.randperm(k)
    graph = MatchGraph(net)
    with torch.no_grad():
        probs, sim = graph(text, mask, crops, geometry, cand_mask, template)
        probs_p, sim_p = graph(text, mask, crops[:, perm], geometry[:, perm], cand_mask, template)
        assert template.shape[-1] == c
        moved = geometry.clone()
        moved[0, 0, :2] += 0.4  # another candidate's position changes the scores of the others
        probs_m, _ = graph(text, mask, crops, moved, cand_mask, template)
    torch.testing.assert_close(probs_p[0, :k], probs[0, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(probs_p[0, k], probs[0, k], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sim_p[0], sim[0, perm], atol=1e-5, rtol=1e-4)
    assert float((probs_m[0, 1:k] - probs[0, 1:k]).abs().max()) > 1e-5


def test_a_frozen_trunk_is_not_trained_and_keeps_its_statistics():
    cfg = preset("tiny")  # trunk_train_from = trunk_blocks: the whole trunk frozen
    net = JointVLNet(cfg).train()
    assert not any(p.requires_grad for p in net.trunk.parameters())
    assert all(not m.training for m in net.trunk.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.head.training and net.match_blocks.training
    partly = JointVLNet(ModelConfig(trunk_train_from=8)).train()
    assert not any(p.requires_grad for p in partly.trunk.blocks[7].parameters())
    assert all(p.requires_grad for p in partly.trunk.blocks[8].parameters())
    assert partly.trunk.blocks[8].training and not partly.trunk.blocks[7].training


def test_padding_tokens_do_not_change_the_output():
    cfg = preset("tiny")
    net = JointVLNet(cfg).eval()
    text, mask, template, search, _ = _inputs(cfg, batch=1)
    noisy = text.clone()
    noisy[:, 7:] = 100.0  # only padding positions change
    with torch.no_grad():
        a = net.forward_track(text, mask, net.encode_template(text, mask, template), search)
        b = net.forward_track(noisy, mask, net.encode_template(noisy, mask, template), search)
    assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4)
    assert torch.allclose(a["confidence"], b["confidence"], atol=1e-5)


def test_checkpoint_round_trip_and_strict_mismatch(tmp_path: Path):
    cfg = preset("tiny")
    torch.manual_seed(3)
    net = JointVLNet(cfg).eval()
    card = save_checkpoint(net, tmp_path / "ckpt", {"model": "test"})
    assert len(card["sha256"]) == 64
    loaded, loaded_card = load_checkpoint(tmp_path / "ckpt")
    assert loaded_card["sha256"] == card["sha256"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # A config that does not match the tensors: the error names them.
    other = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    other["dim"] = 64
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(other))
    with pytest.raises(CheckpointError, match=r"shape mismatches.*blocks\.0\.qkv\.weight"):
        load_checkpoint(tmp_path / "ckpt")


def test_corrupt_or_replaced_weights_are_refused(tmp_path: Path):
    net = JointVLNet(preset("tiny"))
    save_checkpoint(net, tmp_path / "c", {})
    weights = tmp_path / "c" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "c" / "model_card.json").unlink()  # without a card the file itself must still be validated
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "c")


def test_unknown_config_keys_are_rejected(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown model config keys.*'dimm'"):
        ModelConfig.from_dict({"dimm": 3})
    with pytest.raises(ConfigError, match="multiple of 16"):
        ModelConfig(search_size=100)


def test_minilm_text_encoder_gives_real_embeddings():
    enc = TextEncoder("default", max_tokens=24)
    feats, mask = enc.encode(["the small red triangle", "a crimson ball", "the small red triangle"])
    assert feats.shape == (3, 24, 384) and mask.shape == (3, 24)
    assert mask[0].sum() == 6  # [CLS] the small red triangle [SEP]
    np.testing.assert_array_equal(feats[0], feats[2])

    def sentence(i):
        m = mask[i][:, None]
        v = (feats[i] * m).sum(0) / m.sum()
        return v / np.linalg.norm(v)

    f2, m2 = enc.encode(["the small scarlet triangle", "a large blue square"])
    s_red, s_scarlet, s_blue = sentence(0), None, None
    m = m2[0][:, None]
    s_scarlet = (f2[0] * m).sum(0) / m.sum()
    s_scarlet /= np.linalg.norm(s_scarlet)
    m = m2[1][:, None]
    s_blue = (f2[1] * m).sum(0) / m.sum()
    s_blue /= np.linalg.norm(s_blue)
    # A paraphrase is closer than a different object: the frozen encoder carries meaning.
    assert s_red @ s_scarlet > s_red @ s_blue



def test_text_cache_never_evicts_a_text_of_the_same_call():
    # Regression: a full cache used to evict its oldest entry while encoding new texts, even when that
    # entry was a text of the same call, which then failed with a KeyError (a training run died on it).
    enc = TextEncoder("default", max_tokens=24, cache_size=2)
    enc.encode(["the red ball", "the blue cube"])
    feats, _ = enc.encode(["the red ball", "a green ring", "the red ball"])
    fresh = TextEncoder("default", max_tokens=24)
    expected, _ = fresh.encode(["the red ball", "a green ring"])
    np.testing.assert_allclose(feats[0], expected[0], atol=1e-5)
    np.testing.assert_allclose(feats[1], expected[1], atol=1e-5)
    np.testing.assert_array_equal(feats[0], feats[2])
    assert list(enc._cache) == ["the red ball", "a green ring"]  # the least recently used went

def test_other_transformers_encoder_loads_from_a_directory(tmp_path: Path):
    """Another HF model directory (a tiny random BERT) goes through the same loading code."""
    from transformers import BertConfig, BertModel

    from vl_tracker_core.models.text import default_text_encoder_dir

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path / "tiny-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        src = default_text_encoder_dir() / name
        (tmp_path / "tiny-bert" / name).write_bytes(src.read_bytes())
    enc = TextEncoder(tmp_path / "tiny-bert", max_tokens=16)
    feats, mask = enc.encode(["the red ball"])
    assert enc.hidden_size == 32 and feats.shape == (1, 16, 32)


@pytest.mark.parametrize("bad, reason", [
    ("", "empty"), ("   \t\n", "empty"), ("x" * 1001, "limit is 1000"), (b"\xff\xfe red", "UTF-8"), (None, "missing"),
])
def test_bad_descriptions_are_refused_with_a_reason(bad, reason):
    with pytest.raises(DescriptionError, match=reason):
        clean_description(bad)


def test_descriptions_are_normalised():
    assert clean_description("  the  red\tball\x00 ") == "the red ball"
    assert clean_description(b"the red ball") == "the red ball"
