"""The vaccination of the rejection adapter (Immuno-VLM Phase 3): the push-pull loss and the
training loop, cached.

Vaccination loss on ID features ``z_i`` of class ``y_i``, prototypes ``mu_c``, vMF
concentrations ``kappa_c`` and filtered antibody embeddings ``a`` owned by classes::

    pull = mean_i w_{y_i} (1 - cos(g(z_i), mu_{y_i})),  w_c = kappa_c / mean_c' kappa_c'
    push = mean_i [ mean_{a in A(y_i)} h_i(a) + mean_{a in top-k_i} h_i(a) ],
           h_i(a) = max(0, cos(g(z_i), a) - margin)
    loss = pull + beta * push

``pull`` is the negative vMF log-likelihood ``-kappa_c cos(g(z), mu_c)`` up to an additive
constant and the positive factor ``1 / mean(kappa)`` (absorbed by ``beta``); ``A(c)`` are the
antibodies of class ``c`` and ``top-k_i`` the ``hard_k`` antibodies of the whole bank with the
highest cosine to ``g(z_i)`` (the hardest ones overall).

Training runs on cached features (fast), seeded; the checkpoint is cached under a content
key of (net identity, hyper-parameters, exact training tensors), so a second run with the
same inputs loads it instead of training.

At paper scale (ImageNet-1K: 1.28M features, 10 epochs) the loop is built for a GPU: every
tensor stays on the device (one index transfer per epoch, none per step), nothing waits for
the device inside an epoch (the losses are summed on it), and ``precision: bf16`` runs the
adapter and the ``[batch, antibodies]`` cosine matrix, the dominant cost, under bf16 autocast
with every reduction in fp32 (the loss stays within 1e-3 of fp32; tested on CPU autocast).
Large batches (``batch_size`` 4096) then keep the device busy.

Training that diverges (a non-finite epoch loss or adapter weight, e.g. ``lr: 1e30``) stops at
the end of that epoch with :class:`VaccinationDiverged` naming ``lr`` and ``beta``; nothing is
cached. The check costs one device synchronisation per epoch.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from openood_immuno.core.cache import atomic_torch_save, cache_dir, content_key, torch_load_cached
from openood_immuno.core.seeding import seeded
from .adapter import RejectionAdapter
from .params import ImmunoDISParams

log = logging.getLogger(__name__)
ADAPTER_VERSION = 1


class VaccinationDiverged(ValueError):
    """Training produced a non-finite loss or weight; the message names the parameters to lower."""


def _check_finite(adapter: nn.Module, mean: list[float], epoch: int, config: ImmunoDISParams) -> None:
    """:class:`VaccinationDiverged` when the epoch's mean loss or any adapter weight is NaN or inf."""
    bad_loss = not all(np.isfinite(mean))
    bad_weights = not bool(torch.stack([p.detach().isfinite().all() for p in adapter.parameters()]).all())
    if not (bad_loss or bad_weights):
        return
    what = (f"the loss is {mean[0]:g} (pull {mean[1]:g}, push {mean[2]:g})" if bad_loss
            else "the adapter's weights are no longer finite")
    raise VaccinationDiverged(
        f"vaccination diverged in epoch {epoch} of {config.epochs}: {what}. The learning rate lr = "
        f"{config.lr:g} (or the push weight beta = {config.beta:g}) is too large: lower lr (default 0.001, "
        "e.g. --pp-arg immuno.lr=0.001) or beta; nothing was cached")


def auto_margin(features: torch.Tensor, labels: torch.Tensor, antibodies: torch.Tensor,
                owner: torch.Tensor, quantile: float) -> float:
    """The ``quantile`` of ``cos(z_i, a)`` over ID training features and the antibodies of their
    own class under frozen CLIP (all antibodies when no class has any): the push then acts on
    the closest ID-antibody pairs only, whatever the cosine scale of the backbone."""
    antibodies, owner = antibodies.float(), owner.to(antibodies.device)
    labels = labels.to(antibodies.device)
    anyone_owned = bool(torch.isin(labels, owner).any())
    values = []
    for i in range(0, features.shape[0], 1024):  # chunks: no N x M matrix in memory
        cos = features[i:i + 1024].float().to(antibodies.device) @ antibodies.T
        own = owner[None, :] == labels[i:i + 1024, None]
        values.append((cos[own] if anyone_owned else cos.flatten()).cpu())
    return float(np.quantile(torch.cat(values).double().numpy(), quantile))


def vaccination_losses(g: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                       kappa: torch.Tensor, antibodies: torch.Tensor, owner: torch.Tensor,
                       margin: float, hard_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pull, push)`` of a batch of adapted features ``g`` (see the module docstring)."""
    g = g.float()
    weight = kappa / kappa.mean()
    pull = (weight[labels] * (1 - (g * prototypes[labels]).sum(1))).mean()
    viol = torch.relu((g @ antibodies.T).float() - margin)  # bf16 matmul under autocast, fp32 after
    own = owner[None, :] == labels[:, None]
    push = torch.where(own, viol, 0.0).sum(1) / own.sum(1).clamp(min=1)
    k = min(int(hard_k), antibodies.shape[0])
    if k > 0:
        push = push + viol.topk(k, dim=1).values.mean(1)
    return pull, push.mean()


def _canonical_order(labels: torch.Tensor, paths: Sequence[str]) -> torch.Tensor:
    """Sample indices by image path when every sample has one (so a draw does not depend on
    the loader's order), else in list order."""
    n, lab = labels.shape[0], labels.tolist()
    return torch.tensor(sorted(range(n), key=lambda i: (paths[i], lab[i]))
                        if len(paths) == n and all(paths) else list(range(n)), dtype=torch.long)


def _first_per_class(labels: torch.Tensor, chosen: torch.Tensor, per_class: int) -> torch.Tensor:
    """The first ``per_class`` entries of each class in ``chosen`` (0 = all), in its order."""
    if per_class <= 0 or chosen.numel() == 0:
        return chosen
    taken: dict[int, int] = {}
    keep = []
    for c in labels[chosen].tolist():
        taken[c] = taken.get(c, 0) + 1
        keep.append(taken[c] <= per_class)
    return chosen[torch.tensor(keep)]


def _in_list_order(chosen: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.zeros(n, dtype=torch.bool)
    keep[chosen] = True
    return torch.nonzero(keep).flatten()


def few_shot_indices(labels: torch.Tensor, paths: Sequence[str], shots: int, cap: int,
                     seed: int) -> torch.Tensor:
    """Training subset: ``shots`` images per class (0 = all), then at most ``cap`` (0 = no cap).

    Samples are put in a canonical order first (by image path when every sample has one),
    so the subset does not depend on the loader's order; the draw is seeded.
    """
    n = labels.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    order = _canonical_order(labels, paths)
    chosen = _first_per_class(labels, order[torch.randperm(n, generator=torch.Generator().manual_seed(seed))],
                              shots)
    if cap > 0:
        chosen = chosen[:cap]
    position = torch.empty(n, dtype=torch.long)
    position[order] = torch.arange(n)
    return chosen[torch.argsort(position[chosen])]


def heldout_indices(labels: torch.Tensor, paths: Sequence[str], shots: int, cap: int, seed: int,
                    per_class: int) -> torch.Tensor:
    """Training images that :func:`few_shot_indices` (same ``shots``, ``cap``, ``seed``) does
    not draw: the next ``per_class`` of each class (0 = all of them) in the same seeded order,
    so they are held out from vaccination (EVT's ``evt_fit: heldout_train``). Empty when the
    adapter trains on the whole list (``shots`` 0 and no ``cap``). Returned in list order."""
    n = labels.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    used = torch.zeros(n, dtype=torch.bool)
    used[few_shot_indices(labels, paths, shots, cap, seed)] = True
    order = _canonical_order(labels, paths)
    order = order[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    rest = order[~used[order]]
    return _in_list_order(_first_per_class(labels, rest, per_class), n)


def tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 (20 hex digits) of tensors' dtypes, shapes and bytes (device independent)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:20]


@torch.no_grad()
def evaluate_losses(adapter: Optional[nn.Module], features, labels, prototypes, kappa, antibodies,
                    owner, margin: float, hard_k: int, batch_size: int = 1024) -> dict[str, float]:
    """Mean pull and push over a whole feature set (``adapter=None``: identity)."""
    total = {"pull": 0.0, "push": 0.0}
    for i in range(0, features.shape[0], batch_size):
        z, y = features[i:i + batch_size], labels[i:i + batch_size]
        g = adapter(z) if adapter is not None else z
        pull, push = vaccination_losses(g, y, prototypes, kappa, antibodies, owner, margin, hard_k)
        total["pull"] += float(pull) * z.shape[0]
        total["push"] += float(push) * z.shape[0]
    n = max(1, features.shape[0])
    return {k: v / n for k, v in total.items()}


def vaccinate(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
              kappa: torch.Tensor, antibodies: torch.Tensor, owner: torch.Tensor,
              params: ImmunoDISParams, margin: float, device: str | torch.device = "cpu",
              progress: bool = True) -> tuple[RejectionAdapter, list[dict]]:
    """Train a :class:`RejectionAdapter` with ``pull + beta * push``; returns it (eval mode)
    and the per-epoch history of mean loss, pull and push.

    The settings are ``params``' :data:`~.params.ImmunoDISParams.TRAINING` (validated there)
    and the resolved push ``margin``. ``params.precision``: ``fp32``, or ``bf16`` (autocast of
    the adapter and the antibody cosines on the device's type; parameters, optimiser state and
    losses stay fp32)."""
    if features.shape[0] == 0:
        raise ValueError("vaccination needs at least one ID training feature")
    if antibodies.shape[0] == 0:
        raise ValueError("vaccination needs at least one antibody (all were filtered out: widen "
                         "delta_low/delta_high)")
    device = torch.device(device)
    x, y = features.float().to(device), labels.long().to(device)
    mu, kap = prototypes.float().to(device), kappa.float().to(device)
    ab, own = antibodies.float().to(device), owner.long().to(device)
    p = params
    with seeded(p.seed):
        adapter = RejectionAdapter(x.shape[1], p.adapter_hidden).to(device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    gen = torch.Generator().manual_seed(p.seed)
    history = []
    bar = tqdm(range(p.epochs), desc="vaccination", disable=not progress)
    for epoch in bar:
        adapter.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, pull, push (no sync per step)
        for idx in torch.randperm(x.shape[0], generator=gen).to(device).split(p.batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=p.precision == "bf16"):
                g = adapter(x[idx])
                pull, push = vaccination_losses(g, y[idx], mu, kap, ab, own, margin, p.hard_k)
            loss = pull + p.beta * push
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([loss, pull, push]).detach().double() * idx.shape[0]
        mean = (sums / x.shape[0]).tolist()
        _check_finite(adapter, mean, epoch + 1, p)
        history.append({"epoch": epoch + 1, "loss": mean[0], "pull": mean[1], "push": mean[2]})
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", push=f"{history[-1]['push']:.4f}")
    return adapter.eval(), history


def adapter_key(identity: str, training_args: dict, features: torch.Tensor, labels: torch.Tensor,
                prototypes: torch.Tensor, kappa: torch.Tensor, antibodies: torch.Tensor,
                owner: torch.Tensor) -> str:
    """The cache key of an adapter: the net's ``identity``, the training args
    (:meth:`~.params.ImmunoDISParams.training_args`) and the training tensors' digest."""
    return content_key(f"immuno-adapter-v{ADAPTER_VERSION}", identity, training_args,
                       tensor_digest(features.float(), labels.long(), prototypes.float(), kappa.float(),
                                     antibodies.float(), owner.long()))


def load_or_vaccinate(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                      kappa: torch.Tensor, antibodies: torch.Tensor, owner: torch.Tensor,
                      params: ImmunoDISParams, margin: float, identity: str = "",
                      device: str | torch.device = "cpu", progress: bool = True) -> tuple[RejectionAdapter, dict]:
    """:func:`vaccinate`, or the cached adapter trained on exactly these inputs.

    The cache key holds ``identity`` (the net), ``params.training_args(margin)`` (every
    training parameter) and a digest of the training tensors. Returns the adapter and an info
    dict: ``cached``, ``path``, ``key``, ``history``, ``config`` (the training args) and the
    training-set ``pull``/``push`` before (identity adapter) and after vaccination.
    """
    config = params.training_args(margin)
    key = adapter_key(identity, config, features, labels, prototypes, kappa, antibodies, owner)
    path = cache_dir("immuno_adapters") / f"{key}.pt"
    saved = torch_load_cached(path)
    if saved is not None:
        adapter = RejectionAdapter(saved["dim"], saved["hidden"])
        adapter.load_state_dict(saved["state_dict"])
        log.info("rejection adapter loaded from cache %s", path)
        return adapter.to(device).eval(), {**saved["info"], "cached": True, "path": str(path)}
    dev = torch.device(device)
    args = [t.to(dev) for t in (features.float(), labels.long(), prototypes.float(), kappa.float(),
                                antibodies.float(), owner.long())]
    before = evaluate_losses(None, *args, margin=float(margin), hard_k=params.hard_k)
    adapter, history = vaccinate(*args, params=params, margin=float(margin), device=dev, progress=progress)
    after = evaluate_losses(adapter, *args, margin=float(margin), hard_k=params.hard_k)
    info = {"key": key, "history": history, "before": before, "after": after,
            "train_size": int(features.shape[0]), "config": config}
    atomic_torch_save({"dim": adapter.dim, "hidden": adapter.hidden, "info": info,
                       "state_dict": {k: v.cpu() for k, v in adapter.state_dict().items()}}, path)
    log.info("vaccination: push %.4f -> %.4f, pull %.4f -> %.4f on %d ID features; adapter cached "
             "in %s", before["push"], after["push"], before["pull"], after["pull"],
             features.shape[0], path)
    return adapter, {**info, "cached": False, "path": str(path)}
