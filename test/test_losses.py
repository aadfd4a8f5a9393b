"""The training losses on hand-made maps: what each term rewards and what it ignores."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vl_tracker_core.train.losses import compute_losses, heat_rank_loss, heat_targets, similarity_rank_loss

GRID = 16
SIZE = 128  # stride 8


def _maps(box):
    heat_t, cells, present = heat_targets([box], SIZE, GRID)
    return heat_t, cells, present


def test_heat_ranking_prefers_the_target_peak_over_a_distractor_peak():
    box = (40.0, 40.0, 16.0, 16.0)  # centre (48, 48) -> cell (6, 6)
    heat_t, cells, present = _maps(box)
    assert cells[0].tolist() == [6, 6]
    target_wins = torch.full((1, 1, GRID, GRID), -5.0)
    target_wins[0, 0, 6, 6] = 4.0
    target_wins[0, 0, 12, 2] = 2.0  # a distractor, weaker
    distractor_wins = target_wins.clone()
    distractor_wins[0, 0, 12, 2] = 6.0
    good = heat_rank_loss(target_wins, heat_t, cells, present)
    bad = heat_rank_loss(distractor_wins, heat_t, cells, present)
    assert good < 0.2 < 2.0 < bad


def test_heat_ranking_does_not_punish_the_targets_own_neighbourhood():
    box = (40.0, 40.0, 32.0, 32.0)  # a large target: its Gaussian covers the neighbouring cells
    heat_t, cells, present = _maps(box)
    logits = torch.full((1, 1, GRID, GRID), -5.0)
    logits[0, 0, 7, 7] = 3.0
    hot_neighbour = logits.clone()
    hot_neighbour[0, 0, 7, 8] = 3.0  # right next to the centre, inside the Gaussian
    hot_elsewhere = logits.clone()
    hot_elsewhere[0, 0, 1, 14] = 3.0
    base = heat_rank_loss(logits, heat_t, cells, present)
    assert torch.isclose(heat_rank_loss(hot_neighbour, heat_t, cells, present), base)
    assert heat_rank_loss(hot_elsewhere, heat_t, cells, present) > base + 0.5


def test_heat_ranking_is_zero_without_a_target_and_keeps_the_graph():
    heat_t, cells, present = heat_targets([None, None], SIZE, GRID)
    logits = torch.randn(2, 1, GRID, GRID, requires_grad=True)
    loss = heat_rank_loss(logits, heat_t, cells, present)
    assert float(loss.detach()) == 0.0
    loss.backward()  # a batch of absent targets still back-propagates (zero gradient)
    assert torch.count_nonzero(logits.grad) == 0


def test_similarity_ranking_prefers_the_target_embedding():
    text = F.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=-1)
    emb = torch.zeros(1, 3, GRID, GRID)
    emb[0, :, 6, 6] = torch.tensor([0.9, 0.1, 0.0])  # target cell: close to the sentence
    emb[0, :, 2, 12] = torch.tensor([0.1, 0.9, 0.0])  # distractor cell (x=12, y=2)
    emb = F.normalize(emb + 1e-6, dim=1)
    present = torch.tensor([True])

    def cos(e, y, x):
        return (e[0, :, y, x] * text[0]).sum().reshape(1)

    good = similarity_rank_loss(cos(emb, 6, 6), present, [0], cos(emb, 2, 12))
    swapped = emb.clone()
    swapped[0, :, 6, 6], swapped[0, :, 2, 12] = emb[0, :, 2, 12], emb[0, :, 6, 6]
    bad = similarity_rank_loss(cos(swapped, 6, 6), present, [0], cos(swapped, 2, 12))
    assert good < 0.01 and bad > 5.0


def test_compute_losses_reports_every_weighted_term():
    from vl_tracker_core.train.losses import WEIGHTS, total_loss

    torch.manual_seed(0)
    b, e = 3, 8
    out = {
        "heat": torch.randn(b, 1, GRID, GRID, requires_grad=True),
        "map_size": torch.rand(b, 2, GRID, GRID),
        "map_offset": torch.rand(b, 2, GRID, GRID),
        "map_embed": F.normalize(torch.randn(b, e, GRID, GRID), dim=1),
        "text_emb": F.normalize(torch.randn(b, e), dim=-1),
        "boxes": torch.rand(b, 5, 4) * 60 + 5,
        "conf_logit": torch.randn(b, 5),
        "cos": torch.rand(b, 5) * 2 - 1,
        "sim_scale": torch.tensor(5.0),
        "sim_bias": torch.tensor(0.0),
    }
    boxes = [(10.0, 10.0, 20.0, 20.0), None, (60.0, 70.0, 30.0, 25.0)]
    distractors = [[(100.0, 100.0)], [(50.0, 50.0)], [(20.0, 20.0), (110.0, 30.0)]]
    losses = compute_losses(out, boxes, distractors, ["a", "b", "c"], SIZE)
    grounding = {"prop_heat", "prop_l1", "prop_giou", "match", "template_agree"}
    assert set(losses) | grounding == set(WEIGHTS) and not set(losses) & grounding
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["rank"]) > 0 and float(losses["sim_rank"]) > 0
    total_loss(losses).backward()
    assert out["heat"].grad is not None and torch.count_nonzero(out["heat"].grad) > 0


def test_match_loss_rewards_mass_on_the_described_candidates_or_on_none():
    from vl_tracker_core.train.losses import match_losses

    k = 4
    positives = torch.tensor([[False, True, True, False], [False, False, False, False]])
    cand_mask = torch.ones(2, k)
    has_template = torch.tensor([True, False])
    right = torch.tensor([[0.0, 5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 6.0]])  # last column: "none"
    wrong = torch.tensor([[5.0, 0.0, 0.0, 5.0, 0.0], [6.0, 0.0, 0.0, 0.0, 0.0]])
    template = torch.tensor([[-3.0, 3.0, 3.0, -3.0], [0.0, 0.0, 0.0, 0.0]])
    good = match_losses({"logits": right, "template_logit": template}, positives, cand_mask, has_template)
    bad = match_losses({"logits": wrong, "template_logit": -template}, positives, cand_mask, has_template)
    # Two proposals on the same object share the answer: mass on either is right.
    assert float(good["match"]) < 0.05 < 3.0 < float(bad["match"])
    assert float(good["template_agree"]) < 0.1 < 2.0 < float(bad["template_agree"])


def test_proposal_loss_counts_every_object_and_only_positives_on_partly_annotated_frames():
    from vl_tracker_core.train.losses import proposal_losses

    grid, size = 8, 64
    heat = torch.full((2, 1, grid, grid), -6.0)
    objects = [[(4.0, 4.0, 8.0, 8.0), (40.0, 40.0, 16.0, 16.0)], [(20.0, 20.0, 10.0, 10.0)]]
    out = {"heat": heat.clone().requires_grad_(True), "map_size": torch.full((2, 2, grid, grid), 0.2),
           "map_offset": torch.full((2, 2, grid, grid), 0.5)}
    missed = proposal_losses(out, objects, [True, True], size)
    found = heat.clone()
    found[0, 0, 1, 1] = found[0, 0, 6, 6] = found[1, 0, 3, 3] = 6.0
    hit = proposal_losses({**out, "heat": found}, objects, [True, True], size)
    assert float(hit["prop_heat"]) < 0.1 * float(missed["prop_heat"])
    # A false peak costs on a fully annotated frame, not on one whose other objects are unknown.
    spurious = found.clone()
    spurious[1, 0, 6, 0] = 6.0
    full = proposal_losses({**out, "heat": spurious}, objects, [True, True], size)["prop_heat"]
    partial = proposal_losses({**out, "heat": spurious}, objects, [True, False], size)["prop_heat"]
    assert float(full) > float(hit["prop_heat"]) + 1.0 and abs(float(partial) - float(
        proposal_losses({**out, "heat": found}, objects, [True, False], size)["prop_heat"])) < 1e-6
