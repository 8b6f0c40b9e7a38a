"""AdaNeg's formulas: the memory gate, the write priority, the adaptive proxies and the final score.

Zhang & Zhang, "AdaNeg: Adaptive Negative Proxy Guided OOD Detection with Vision-Language
Models", NeurIPS 2024; code YBZh/OpenOOD-VLM at commit 804f3310d3045c24fdd896da6c508c919fb47f0c,
``TTAPromptPostprocessor_noadagap`` in ``openood/postprocessors/ttaprompt_postprocessor.py``
(the postprocessor ``ttapromptnoadagap`` of ``scripts/ood/adaneg/imagenet.sh``).

Notation: unit image feature ``x``; ``S = C + M`` slots (C ID classes, then M NegLabel negatives),
slot ``c`` holding its text feature ``t_c`` and up to ``L`` cached test features ``m_c1..m_cL``
(empty entries are zero vectors and drop out of every formula below); ``s`` = logit scale (100);
``z_c = s cos(x, t_c)`` the NegLabel logits; ``S_nl(x)`` NegLabel's grouped ID mass of ``z``
(:func:`openood_immuno.scores.grouped.grouped_id_mass`).

* gate (which test features are cached): ``S_nl(x) > tau + g (1 - tau)`` -> ID slot
  ``argmax_{c<=C} z_c``; ``S_nl(x) < tau - g tau`` -> negative slot ``C + argmax_{j} z_{C+j}``;
* write priority: ``H`` = entropy of ``softmax(z_ID)`` (ID writes) or ``softmax(z_neg)``
  (negative writes); a full slot keeps its ``L`` lowest-``H`` features;
* task-adaptive proxy ``p_c = normalize(t_c + sum_j m_cj)`` (the code's mean over the slot,
  renormalised: the zero entries do not change its direction);
* sample-adaptive proxy ``p_c(x) = normalize(sum_{e in slot c} w_e e)``, ``w_e = exp(-beta (1 - cos(x, e)))``
  over the slot's entries ``e`` (text feature included); ``beta = 0`` gives the task-adaptive proxy;
* ``a_c(x) = s cos(x, p_c)``, ``S_ada(x)`` = the same grouped ID mass over ``a``;
* ``S_AdaNeg = S_ada + lambda S_nl`` (the code's ``in_score: combine``);
  prediction ``argmax_{c<=C} softmax(z)_c + lambda softmax(a)_c`` (softmax over all S columns).
"""
from __future__ import annotations

import torch

COMBINES = ("combine", "adaonly", "vanillaonly", "multiply")


def gate(score: torch.Tensor, threshold: float = 0.5, gap: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(to_id, to_neg)`` boolean masks: ``score > tau + g (1 - tau)`` and ``score < tau - g tau``."""
    return score > threshold + gap * (1 - threshold), score < threshold - gap * threshold


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H = -sum_k p_k log(p_k + 1e-8)``, ``p = softmax(logits)`` over the last dimension (the code's
    ``1e-8``)."""
    p = torch.softmax(logits.float(), dim=-1)
    return -(p * torch.log(p + 1e-8)).sum(dim=-1)


def keep_lowest(slot: torch.Tensor, entropy: torch.Tensor, arrival: torch.Tensor,
                capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(order, rank)``: the entries of every slot sorted by ``(entropy, arrival)``, and each one's
    rank in its slot; an entry stays when ``rank < capacity``.

    This is the code's sequential rule in one step: a slot appends features until it holds
    ``capacity``, then a new feature replaces the slot's highest-entropy one when its entropy is
    strictly lower. After any sequence of writes the slot therefore holds its ``capacity``
    lowest-entropy features of all it was offered (ties: the earlier arrival stays).
    """
    order = torch.argsort(arrival, stable=True)
    order = order[torch.argsort(entropy[order], stable=True)]
    order = order[torch.argsort(slot[order], stable=True)]
    sorted_slot = slot[order]
    first = torch.ones_like(sorted_slot, dtype=torch.bool)
    first[1:] = sorted_slot[1:] != sorted_slot[:-1]
    start = torch.cummax(torch.where(first, torch.arange(len(order), device=slot.device),
                                     torch.zeros_like(order)), dim=0).values
    return order, torch.arange(len(order), device=slot.device) - start


def task_adaptive_proxies(text: torch.Tensor, memory_sum: torch.Tensor) -> torch.Tensor:
    """``p_c = normalize(t_c + sum_j m_cj)`` for text ``[S, d]`` and the slots' feature sums ``[S, d]``."""
    return torch.nn.functional.normalize(text.float() + memory_sum.float(), dim=-1)


def sample_adaptive_logits(x: torch.Tensor, entries: torch.Tensor, gram: torch.Tensor, beta: float,
                           logit_scale: float = 100.0, chunk: int = 128) -> torch.Tensor:
    """``a_c(x) = s cos(x, p_c(x))`` ``[B, S]`` with ``p_c(x) = normalize(sum_e w_e e)``,
    ``w_e = exp(-beta (1 - cos(x, e)))``.

    ``entries`` ``[S, E, d]`` are each slot's text feature and cached features (zero rows where
    empty), ``gram`` ``[S, E, E]`` their Gram matrices. Computed without the ``[B, S, d]`` proxies:
    ``x . sum_e w_e e = sum_e w_e cos(x, e)`` and ``||sum_e w_e e||^2 = w^T G_c w``. Rows of ``x`` are
    processed ``chunk`` at a time (transient: a few ``chunk x S x E`` floats).
    """
    s_count, e_count, dim = entries.shape
    flat = entries.reshape(s_count * e_count, dim).float()
    out = []
    for rows in x.float().split(chunk):
        cos = (rows @ flat.T).reshape(len(rows), s_count, e_count)
        w = (cos - 1.0).mul_(beta).exp_()
        num = torch.einsum("bse,bse->bs", w, cos)
        norm2 = torch.einsum("bse,sef,bsf->bs", w, gram.float(), w)
        out.append(num.mul_(logit_scale).div_(norm2.clamp_min_(1e-24).sqrt_()))
    return torch.cat(out)


def adaneg_score(s_ada: torch.Tensor, s_nl: torch.Tensor, lam: float = 0.1,
                 combine: str = "combine") -> torch.Tensor:
    """``combine``: ``S_ada + lambda S_nl``; ``adaonly``: ``S_ada``; ``vanillaonly``: ``S_nl``;
    ``multiply``: ``S_ada S_nl`` (the code's ``in_score`` choices)."""
    if combine == "combine":
        return s_ada + lam * s_nl
    if combine == "adaonly":
        return s_ada
    if combine == "vanillaonly":
        return s_nl
    if combine == "multiply":
        return s_ada * s_nl
    raise ValueError(f"unknown combine {combine!r}: use one of {COMBINES}")


def adaneg_prediction(vanilla_logits: torch.Tensor, ada_logits: torch.Tensor, num_id: int,
                      lam: float = 0.1) -> torch.Tensor:
    """``argmax_{c<=C} softmax(z)_c + lambda softmax(a)_c`` (softmax over all S columns)."""
    prob = torch.softmax(vanilla_logits.float(), 1) + lam * torch.softmax(ada_logits.float(), 1)
    return prob[:, :num_id].argmax(1)
