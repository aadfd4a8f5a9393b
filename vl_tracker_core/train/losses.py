"""Losses.

Tracking: centre heat map (focal), box (L1 + GIoU), confidence with real negatives,
vision-language similarity (per-peak BCE plus an in-batch contrastive term), and two
ranking terms that make the described object win over the other objects in view:
a softmax over all cells of the heat map, and a softmax over the similarity at the
target's cell and at every other object's cell.

Global grounding: class-agnostic proposals (focal + box at every object's centre),
candidate-set matching (softmax over K candidates and "none"), and template agreement."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHTS = {"heat": 1.0, "l1": 5.0, "giou": 2.0, "conf": 1.0, "sim": 0.5, "nce": 0.5, "rank": 0.5, "sim_rank": 0.5,
           "prop_heat": 1.0, "prop_l1": 5.0, "prop_giou": 2.0, "match": 1.0, "template_agree": 0.5}

#: temperature of the similarity ranking softmax (cosines lie in [-1, 1])
SIM_RANK_TEMPERATURE = 0.1


def heat_targets(boxes: list, size: int, grid: int) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian centre maps (B, 1, grid, grid), GT cells (B, 2) long and a presence mask (B,)."""
    b = len(boxes)
    stride = size / grid
    heat = torch.zeros(b, 1, grid, grid)
    cells = torch.zeros(b, 2, dtype=torch.long)
    present = torch.zeros(b, dtype=torch.bool)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    for i, box in enumerate(boxes):
        if box is None:
            continue
        cx, cy = (box[0] + box[2] / 2) / stride, (box[1] + box[3] / 2) / stride
        ix, iy = min(int(cx), grid - 1), min(int(cy), grid - 1)
        sigma = max(0.7, (box[2] * box[3]) ** 0.5 / stride / 5.0)
        g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
        g[iy, ix] = 1.0
        heat[i, 0] = g
        cells[i] = torch.tensor([ix, iy])
        present[i] = True
    return heat, cells, present


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet focal loss; normalised by the number of targets (at least 1)."""
    pos = target.eq(1.0).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = logits.sigmoid()
    pos_loss = -((1 - p) ** 2) * log_p * pos
    neg_loss = -((1 - target) ** 4) * (p**2) * log_not_p * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def box_xywh_to_xyxy(b: Tensor) -> Tensor:
    return torch.cat([b[..., :2], b[..., :2] + b[..., 2:]], dim=-1)


def pairwise_iou_giou(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise IoU and GIoU of xyxy boxes with matching shapes."""
    tl = torch.maximum(a[..., :2], b[..., :2])
    br = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (br - tl).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    enc = (torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    return iou, iou - (enc - union) / enc.clamp(min=1e-6)


def box_losses(cells: Tensor, offset: Tensor, size_px: Tensor, stride: float, target: Tensor,
               size: int) -> tuple[Tensor, Tensor]:
    """L1 (centre and size, relative to the input) and 1 - GIoU of the boxes predicted at ``cells`` (N, 2
    [x, y]) with sub-cell ``offset`` and ``size_px``, against ``target`` (N, 4) xywh input pixels."""
    centre = (cells + offset) * stride
    pred = torch.cat([centre - size_px / 2, size_px], dim=1)
    pred_c = torch.cat([pred[:, :2] + pred[:, 2:] / 2, pred[:, 2:]], dim=1) / size
    tgt_c = torch.cat([target[:, :2] + target[:, 2:] / 2, target[:, 2:]], dim=1) / size
    _, giou = pairwise_iou_giou(box_xywh_to_xyxy(pred), box_xywh_to_xyxy(target))
    return F.l1_loss(pred_c, tgt_c), (1 - giou).mean()


def _gather_cells(t: Tensor, cells: Tensor) -> Tensor:
    """(B, C, H, W) at cells (B, 2) [x, y] -> (B, C)."""
    b = torch.arange(t.shape[0])
    return t[b, :, cells[:, 1], cells[:, 0]]


def _cell_index(points: list[tuple[float, float]], stride: float, grid: int) -> list[tuple[int, int]]:
    return [(min(int(x / stride), grid - 1), min(int(y / stride), grid - 1)) for x, y in points]


def compute_losses(out: dict[str, Tensor], boxes: list, distractors: list[list[tuple[float, float]]],
                   descriptions: list[str], size: int) -> dict[str, Tensor]:
    """All losses for one batch of one mode; ``boxes`` in input pixels (None = target not in the input)."""
    grid = out["heat"].shape[-1]
    stride = size / grid
    heat_t, cells, present = heat_targets(boxes, size, grid)
    losses = {"heat": focal_loss(out["heat"], heat_t)}
    zero = out["heat"].sum() * 0.0
    gt = torch.tensor([list(b) if b is not None else [0.0, 0.0, 1.0, 1.0] for b in boxes], dtype=torch.float32)
    if present.any():
        idx = present.nonzero().squeeze(1)
        size_p = _gather_cells(out["map_size"], cells)[idx] * size
        off_p = _gather_cells(out["map_offset"], cells)[idx]
        losses["l1"], losses["giou"] = box_losses(cells[idx].float(), off_p, size_p, stride, gt[idx], size)
    else:
        losses["l1"] = zero
        losses["giou"] = zero
    # Confidence: each top-k peak is "right" when present and localised (IoU > 0.5).
    k = out["boxes"].shape[1]
    with torch.no_grad():
        iou, _ = pairwise_iou_giou(box_xywh_to_xyxy(out["boxes"].detach()),
                                   box_xywh_to_xyxy(gt.unsqueeze(1).expand(-1, k, -1)))
        conf_label = ((iou > 0.5) & present.unsqueeze(1)).float()
    losses["conf"] = F.binary_cross_entropy_with_logits(out["conf_logit"], conf_label)
    # Similarity at the peaks, at the GT cell (positive) and at distractor cells (negatives).
    net_scale, net_bias = out["sim_scale"], out["sim_bias"]
    sim_logits = [out["cos"].reshape(-1) * net_scale + net_bias]
    sim_labels = [conf_label.reshape(-1)]
    emb = out["map_embed"]
    text = out["text_emb"]
    if present.any():
        idx = present.nonzero().squeeze(1)
        pos_emb = _gather_cells(emb, cells)[idx]
        pos_cos = (pos_emb * text[idx]).sum(-1)
        sim_logits.append(pos_cos * net_scale + net_bias)
        sim_labels.append(torch.ones_like(pos_cos))
        # In-batch contrastive: the target's embedding should pick its own sentence.
        if len(idx) > 1:
            logits = pos_emb @ text[idx].T / 0.07
            same = torch.tensor([[descriptions[i] == descriptions[j] for j in idx.tolist()] for i in idx.tolist()])
            logits = logits.masked_fill(same & ~torch.eye(len(idx), dtype=torch.bool), -1e4)
            losses["nce"] = F.cross_entropy(logits, torch.arange(len(idx)))
    neg_b, neg_x, neg_y = [], [], []
    for i, points in enumerate(distractors):
        for x, y in _cell_index(points, stride, grid):
            if present[i] and (x, y) == tuple(cells[i].tolist()):
                continue
            neg_b.append(i)
            neg_x.append(x)
            neg_y.append(y)
    neg_cos = None
    if neg_b:
        nb = torch.tensor(neg_b)
        neg_cos = (emb[nb, :, torch.tensor(neg_y), torch.tensor(neg_x)] * text[nb]).sum(-1)
        sim_logits.append(neg_cos * net_scale + net_bias)
        sim_labels.append(torch.zeros_like(neg_cos))
    losses["sim"] = F.binary_cross_entropy_with_logits(torch.cat(sim_logits), torch.cat(sim_labels))
    losses.setdefault("nce", zero)
    losses["rank"] = heat_rank_loss(out["heat"], heat_t, cells, present)
    losses["sim_rank"] = zero
    if neg_cos is not None and present.any():
        losses["sim_rank"] = similarity_rank_loss(pos_cos, present, neg_b, neg_cos)
    return losses


def heat_rank_loss(heat_logits: Tensor, heat_t: Tensor, cells: Tensor, present: Tensor) -> Tensor:
    """Cross-entropy of the target's cell against every cell of the heat map, for inputs holding the
    target. The focal loss scores each cell on its own; this one makes the target's peak beat every other
    peak, distractors included -- what picking the best candidate needs. Cells inside the target's own
    Gaussian (other than its centre) are left out: they are the same object, not competitors."""
    if not present.any():
        return heat_logits.sum() * 0.0
    idx = present.nonzero().squeeze(1)
    grid_w = heat_logits.shape[-1]
    logits = heat_logits[idx, 0].flatten(1)
    target = cells[idx, 1] * grid_w + cells[idx, 0]
    near = heat_t[idx, 0].flatten(1) > 0.3
    near[torch.arange(len(idx)), target] = False
    return F.cross_entropy(logits.masked_fill(near, -1e4), target)


def similarity_rank_loss(pos_cos: Tensor, present: Tensor, neg_b: list[int], neg_cos: Tensor) -> Tensor:
    """For each input with the target and at least one other object in view: a softmax over the
    vision-language similarity at the target's cell (``pos_cos``, one per input in ``present``) and at
    the other objects' cells (``neg_cos``, of input ``neg_b``), the target first."""
    terms = []
    nb = torch.tensor(neg_b)
    for pos, i in zip(pos_cos, present.nonzero().squeeze(1).tolist()):
        negatives = neg_cos[nb == i]
        if len(negatives) == 0:
            continue
        logits = torch.cat([pos.reshape(1), negatives]) / SIM_RANK_TEMPERATURE
        terms.append(F.cross_entropy(logits.unsqueeze(0), torch.zeros(1, dtype=torch.long)))
    if not terms:
        return neg_cos.sum() * 0.0
    return torch.stack(terms).mean()


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    return sum(WEIGHTS[k] * v for k, v in losses.items())


# ------------------------------------------------------------------ global grounding (proposals + matcher)
def proposal_losses(out: dict[str, Tensor], objects: list[list], complete: list[bool], size: int) -> dict[str, Tensor]:
    """Class-agnostic centre maps: a Gaussian at every object's centre, focal loss (frames whose other objects
    are not annotated only count their positive cells), L1 + GIoU of the box at each centre cell."""
    heat = out["heat"]
    b, _, grid, _ = heat.shape
    stride = size / grid
    target = torch.zeros_like(heat)
    cell_b, cell_x, cell_y, gt = [], [], [], []
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    for i, boxes in enumerate(objects):
        for box in boxes:
            cx, cy = (box[0] + box[2] / 2) / stride, (box[1] + box[3] / 2) / stride
            ix, iy = min(int(cx), grid - 1), min(int(cy), grid - 1)
            sigma = max(0.7, (box[2] * box[3]) ** 0.5 / stride / 5.0)
            g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * sigma**2))
            g[iy, ix] = 1.0
            target[i, 0] = torch.maximum(target[i, 0], g)
            cell_b.append(i)
            cell_x.append(ix)
            cell_y.append(iy)
            gt.append(list(box))
    weight = torch.ones_like(heat)
    for i, full in enumerate(complete):
        if not full:
            weight[i] = target[i].eq(1.0).float()
    pos = target.eq(1.0).float()
    log_p, log_not_p, p = F.logsigmoid(heat), F.logsigmoid(-heat), heat.sigmoid()
    focal = -((1 - p) ** 2) * log_p * pos - ((1 - target) ** 4) * (p**2) * log_not_p * (1 - pos)
    losses = {"prop_heat": (focal * weight).sum() / pos.sum().clamp(min=1.0)}
    if cell_b:
        bi, xi, yi = torch.tensor(cell_b), torch.tensor(cell_x), torch.tensor(cell_y)
        size_p = out["map_size"][bi, :, yi, xi] * size
        off_p = out["map_offset"][bi, :, yi, xi]
        losses["prop_l1"], losses["prop_giou"] = box_losses(torch.stack([xi, yi], dim=1).float(), off_p, size_p,
                                                            stride, torch.tensor(gt, dtype=torch.float32), size)
    else:
        losses["prop_l1"] = losses["prop_giou"] = heat.sum() * 0.0
    return losses


def match_losses(out: dict[str, Tensor], positives: Tensor, cand_mask: Tensor,
                 has_template: Tensor) -> dict[str, Tensor]:
    """Candidate-set matching: the softmax over K candidates + "none" puts its mass on the candidates showing
    the described object (several when two proposals cover it), or on "none" when none does; template
    agreement: binary cross-entropy of every real candidate against the template crop of the described
    object (positives = the same candidates)."""
    logits = out["logits"]
    k = positives.shape[1]
    answer = torch.cat([positives.float(), (positives.sum(1, keepdim=True) == 0).float()], dim=1)
    log_probs = logits.log_softmax(dim=-1)
    match = -(torch.logsumexp(log_probs.masked_fill(answer == 0, -1e4), dim=-1)).mean()
    valid = cand_mask * has_template.float().unsqueeze(1)
    bce = F.binary_cross_entropy_with_logits(out["template_logit"], positives.float(), reduction="none")
    # Positives are one or two of K: weigh both classes equally.
    pos_w = positives.float() * (k - 1.0) + 1.0
    template = (bce * valid * pos_w).sum() / (valid * pos_w).sum().clamp(min=1.0)
    return {"match": match, "template_agree": template}
