"""OpenOOD's classic post-hoc scores as pure functions of a linear classifier's features.

Each function re-derives one OpenOOD v1.5 postprocessor (``openood/postprocessors/<name>_postprocessor.py``)
for a net whose logits are ``z = W f + b``. On the CLIP net (:mod:`openood_immuno.models.clip_net`)
``f`` is the unit image embedding ``v``, ``W = logit_scale * [t_1; ...; t_C]`` and ``b = 0``: what
``net.get_fc()`` and ``net(x, return_feature=True)`` give OpenOOD, so these functions on cached
features give OpenOOD's per-sample scores (tests/test_classic_scores.py compares them with OpenOOD's
own classes). Every score is higher for more in-distribution; ``pred`` is ``argmax_c z_c``.

Fitted statistics take ID features as OpenOOD's ``setup`` reads them: ID *train* for DICE, KNN,
ViM, MDS, RMDS, SHE, fDBD and NCI; ID *val* for ReAct and KLM.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

Scores = tuple[torch.Tensor, torch.Tensor]


def linear_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``z = W f + b`` for features ``[B, d]``, weight ``[C, d]``, bias ``[C]`` (float32)."""
    if features.shape[-1] != weight.shape[-1]:
        raise ValueError(f"feature dimension {features.shape[-1]} does not match the classifier's "
                         f"{weight.shape[-1]}: use features of the same CLIP model")
    return F.linear(features.float(), weight.float().to(features.device), bias.float().to(features.device))


def _energy(logits: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(logits, dim=1)


# ---- logit-only scores ---------------------------------------------------------------------------
def msp_score(logits: torch.Tensor) -> Scores:
    """MSP (Hendrycks & Gimpel, ICLR 2017; OpenOOD ``msp`` = ``BasePostprocessor``):
    ``S = max_c softmax(z)_c``."""
    conf, pred = torch.softmax(logits.float(), dim=1).max(dim=1)
    return pred, conf


def energy_score(logits: torch.Tensor, temperature: float = 1.0) -> Scores:
    """Energy (Liu et al., NeurIPS 2020; OpenOOD ``ebo``): ``S = T * logsumexp(z / T)``."""
    if temperature <= 0:
        raise ValueError(f"energy temperature must be > 0, got {temperature}")
    logits = logits.float()
    return logits.argmax(dim=1), temperature * torch.logsumexp(logits / temperature, dim=1)


def max_logit_score(logits: torch.Tensor) -> Scores:
    """Max logit (Hendrycks et al., ICML 2022; OpenOOD ``mls``): ``S = max_c z_c``."""
    conf, pred = logits.float().max(dim=1)
    return pred, conf


def gen_score(logits: torch.Tensor, gamma: float = 0.1, M: int = 100) -> Scores:
    """GEN (Liu et al., CVPR 2023; OpenOOD ``gen``): with ``p`` = softmax(z) and ``p_(1..M)`` its
    ``M`` largest entries, ``S = -sum_j p_(j)^gamma (1 - p_(j))^gamma``."""
    probs = torch.softmax(logits.float(), dim=1)
    top = torch.sort(probs, dim=1)[0][:, -M:]
    return probs.argmax(dim=1), -torch.sum(top ** gamma * (1 - top) ** gamma, dim=1)


def gradnorm_score(logits: torch.Tensor, features: torch.Tensor) -> Scores:
    """GradNorm (Huang et al., NeurIPS 2021; OpenOOD ``gradnorm``), in closed form.

    OpenOOD back-propagates ``L = sum_c -log softmax(z)_c`` (all-ones targets) to the last layer and
    takes ``sum |dL/dW|``. With ``dL/dz_c = C p_c - 1`` and ``dL/dW_cj = (C p_c - 1) f_j``:
    ``S = (sum_c |C p_c - 1|) * (sum_j |f_j|)``.
    """
    probs = torch.softmax(logits.float(), dim=1)
    n_classes = probs.shape[1]
    return probs.argmax(dim=1), (n_classes * probs - 1).abs().sum(1) * features.float().abs().sum(1)


# ---- activation shaping of the feature -----------------------------------------------------------
def react_threshold(id_features: torch.Tensor, percentile: float) -> float:
    """ReAct's clip value: the ``percentile``-th percentile of every coordinate of the ID val features
    (``np.percentile`` over the flattened float32 array, as OpenOOD's ``setup``)."""
    _check_percentile(percentile)
    return float(np.percentile(id_features.float().cpu().numpy().flatten(), percentile))


def react_score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                threshold: float) -> Scores:
    """ReAct (Sun et al., NeurIPS 2021; OpenOOD ``react``): ``z' = W min(f, c) + b``,
    ``S = logsumexp(z')``; the clip acts on the feature the linear head reads (on CLIP: the image
    embedding, before the text classifier)."""
    logits = linear_logits(features.float().clip(max=threshold), weight, bias)
    return logits.argmax(dim=1), _energy(logits)


def _check_percentile(percentile: float) -> None:
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")


def _kept(dim: int, percentile: float) -> int:
    """OpenOOD's ``k = n - round(n * percentile / 100)`` (numpy's half-to-even rounding)."""
    _check_percentile(percentile)
    return dim - int(np.round(dim * percentile / 100.0))


def ash_b(features: torch.Tensor, percentile: float) -> torch.Tensor:
    """ASH-B (Djurisic et al., ICLR 2023) as OpenOOD's ``ASHNet`` applies it to the feature vector:
    keep the ``k = d - round(d p / 100)`` largest coordinates, set each to ``sum_j f_j / k``, zero
    the rest."""
    feats = features.float()
    k = _kept(feats.shape[1], percentile)
    if k < 1:
        raise ValueError(f"ASH percentile {percentile} keeps no coordinate of a {feats.shape[1]}-d feature")
    _, idx = torch.topk(feats, k, dim=1)
    fill = (feats.sum(dim=1) / k).unsqueeze(1).expand(-1, k)
    return torch.zeros_like(feats).scatter_(1, idx, fill)


def ash_score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
              percentile: float) -> Scores:
    """ASH (OpenOOD ``ash``, i.e. ASH-B): ``S = logsumexp(W ash_b(f) + b)``."""
    logits = linear_logits(ash_b(features, percentile), weight, bias)
    return logits.argmax(dim=1), _energy(logits)


def scale_features(features: torch.Tensor, percentile: float) -> torch.Tensor:
    """SCALE (Xu et al., ICLR 2024) as OpenOOD's ``ScaleNet``: with ``s1 = sum_j f_j`` and ``s2`` the
    sum of the ``k`` largest coordinates (``k`` as in :func:`ash_b`), ``f' = f * exp(s1 / s2)``."""
    feats = features.float()
    k = _kept(feats.shape[1], percentile)
    if k < 1:
        raise ValueError(f"SCALE percentile {percentile} keeps no coordinate of a {feats.shape[1]}-d feature")
    top, _ = torch.topk(feats, k, dim=1)
    return feats * torch.exp(feats.sum(dim=1) / top.sum(dim=1))[:, None]


def scale_score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                percentile: float) -> Scores:
    """SCALE (OpenOOD ``scale``): ``S = logsumexp(W scale(f) + b)``."""
    logits = linear_logits(scale_features(features, percentile), weight, bias)
    return logits.argmax(dim=1), _energy(logits)


def dice_weight(mean_feature: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
    """DICE's sparsified head (Sun & Li, ECCV 2022; OpenOOD ``dice``): contributions
    ``u_cj = mean_f_j * W_cj`` of the ID train mean feature; ``W'_cj = W_cj [u_cj > percentile_p(u)]``."""
    _check_percentile(p)
    contrib = mean_feature.float().cpu().numpy()[None, :] * weight.float().cpu().numpy()
    mask = torch.from_numpy(contrib > np.percentile(contrib, p))
    return weight.float() * mask.to(weight.device)


def dice_score(features: torch.Tensor, masked_weight: torch.Tensor, bias: torch.Tensor) -> Scores:
    """DICE: ``S = logsumexp(W' f + b)`` with ``W'`` from :func:`dice_weight`."""
    logits = linear_logits(features, masked_weight, bias)
    return logits.argmax(dim=1), _energy(logits)


# ---- distances to ID statistics -----------------------------------------------------------------
def _unit(x: torch.Tensor) -> torch.Tensor:
    """OpenOOD's KNN ``normalizer``: ``x / ||x|| + 1e-10``."""
    return x / x.norm(dim=-1, keepdim=True) + 1e-10


def knn_bank(train_features: torch.Tensor, ratio: float = 1.0, seed: int = 0) -> torch.Tensor:
    """KNN's bank: every ID train feature (``ratio`` 1, OpenOOD), or ``floor(ratio * n)`` of them
    drawn uniformly without replacement (``torch.randperm`` on a generator seeded ``seed``, kept in
    list order): the ``ALPHA`` of Sun et al.'s ImageNet script (deeplearning-wisc/knn-ood
    ``run_imagenet.py``, ``np.random.choice(n, int(n * ALPHA), replace=False)``). Search cost is
    linear in the bank size."""
    if ratio >= 1.0:
        return train_features
    n = train_features.shape[0]
    keep = int(n * ratio)
    if keep < 1:
        raise ValueError(f"KNN bank_ratio={ratio} keeps no feature of {n}: raise bank_ratio to at least {1 / n:.3g}")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(n, generator=generator)[:keep].sort().values
    return train_features[rows]


def knn_score(features: torch.Tensor, bank: torch.Tensor, K: int, logits: torch.Tensor,
              chunk: int = 65536) -> Scores:
    """KNN (Sun et al., ICML 2022; OpenOOD ``knn``): ``S = -||u - u_(K)||^2``, the negated squared
    distance (faiss ``IndexFlatL2``) from the normalised feature ``u`` to its ``K``-th nearest
    normalised ID train feature. The bank is searched in chunks (exact search)."""
    if not 1 <= K <= bank.shape[0]:
        raise ValueError(f"KNN K={K} must be in [1, {bank.shape[0]}] (the ID train features)")
    q = _unit(features.float())
    best = None
    for start in range(0, bank.shape[0], chunk):
        b = _unit(bank[start:start + chunk].float().to(q.device))
        d2 = (q * q).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2 * q @ b.T
        best = d2 if best is None else torch.cat([best, d2], dim=1)
        best = torch.topk(best, min(K, best.shape[1]), dim=1, largest=False).values
    return logits.argmax(dim=1), -best[:, -1]


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


def vim_fit(train_features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
            dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """ViM's statistics (Wang et al., CVPR 2022; OpenOOD ``vim``) -> ``(u, NS, alpha)``.

    ``u = -pinv(W) b``; ``NS`` = eigenvectors of ``cov(f - u)`` (uncentred) beyond the ``dim``
    largest eigenvalues; ``alpha = mean_i max_c z_ic / mean_i ||(f_i - u) NS||`` over ID train.
    """
    w, b, x = _numpy(weight), _numpy(bias), _numpy(train_features)
    if not 0 < dim < x.shape[1]:
        raise ValueError(f"ViM dim={dim} must be in [1, {x.shape[1] - 1}] for {x.shape[1]}-d features "
                         "(the principal subspace must leave a residual)")
    from sklearn.covariance import EmpiricalCovariance

    u = -np.matmul(np.linalg.pinv(w), b)
    cov = EmpiricalCovariance(assume_centered=True).fit(x - u).covariance_
    eig_vals, eig_vecs = np.linalg.eigh(cov)
    ns = np.ascontiguousarray(eig_vecs.T[np.argsort(eig_vals * -1)[dim:]].T)
    vlogit = np.linalg.norm(np.matmul(x - u, ns), axis=-1)
    alpha = float((x @ w.T + b).max(axis=-1).mean() / vlogit.mean())
    return u, ns, alpha


def vim_score(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, u: np.ndarray,
              ns: np.ndarray, alpha: float) -> Scores:
    """ViM: ``S = logsumexp(z) - alpha ||(f - u) NS||``."""
    logits = linear_logits(features, weight, bias)
    residual = np.linalg.norm(np.matmul(_numpy(features) - u, ns), axis=-1) * alpha
    score = torch.from_numpy(np.asarray(_energy(logits).cpu().numpy(), np.float64) - residual)
    return logits.argmax(dim=1), score


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                what: str = "ID train") -> torch.Tensor:
    """``[C, d]`` per-class mean features; every class must have at least one feature."""
    missing = sorted(set(range(num_classes)) - set(labels.unique().tolist()))
    if missing:
        raise ValueError(f"{len(missing)} of {num_classes} classes have no {what} feature (e.g. "
                         f"{missing[:5]}): class-conditional scores need every class; use the full "
                         "ID train list")
    feats = features.double()
    sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64).index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=num_classes).double()
    return (sums / counts[:, None]).float()


def _precision(centered: np.ndarray) -> np.ndarray:
    from sklearn.covariance import EmpiricalCovariance

    return EmpiricalCovariance(assume_centered=False).fit(centered.astype(np.float32)).precision_


def mds_fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mahalanobis (Lee et al., NeurIPS 2018; OpenOOD ``mds``) -> ``(mu [C, d], P [d, d])``: class
    means and the precision of the class-centred ID train features (tied covariance)."""
    labels = labels.long()
    mu = class_means(features, labels, num_classes)
    centered = features.float() - mu[labels]
    return mu, torch.from_numpy(_precision(centered.numpy())).float()


def _mahalanobis(features: torch.Tensor, means: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` of ``(f - mu_c)^T P (f - mu_c)`` (float64)."""
    f, m, p = features.double(), means.double().to(features.device), precision.double().to(features.device)
    fp = f @ p
    return (fp * f).sum(1, keepdim=True) - 2 * fp @ m.T + ((m @ p) * m).sum(1)[None, :]


def mds_score(features: torch.Tensor, logits: torch.Tensor, means: torch.Tensor,
              precision: torch.Tensor) -> Scores:
    """MDS: ``S = max_c -(f - mu_c)^T P (f - mu_c)``."""
    return logits.argmax(dim=1), (-_mahalanobis(features, means, precision)).max(dim=1).values


def rmds_fit(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Relative Mahalanobis (Ren et al., 2021; OpenOOD ``rmds``) -> ``(mu, P, mu_0, P_0)``: MDS's
    statistics and those of one Gaussian fitted to all ID train features."""
    mu, precision = mds_fit(features, labels, num_classes)
    mu0 = features.float().mean(0)
    return mu, precision, mu0, torch.from_numpy(_precision((features.float() - mu0).numpy())).float()


def rmds_score(features: torch.Tensor, logits: torch.Tensor, means: torch.Tensor, precision: torch.Tensor,
               mean0: torch.Tensor, precision0: torch.Tensor) -> Scores:
    """RMDS: ``S = max_c [-(f - mu_c)^T P (f - mu_c) + (f - mu_0)^T P_0 (f - mu_0)]``."""
    background = _mahalanobis(features, mean0[None, :], precision0)
    return logits.argmax(dim=1), (background - _mahalanobis(features, means, precision)).max(dim=1).values


def klm_fit(val_logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """KL matching (Hendrycks et al., ICML 2022; OpenOOD ``klm``) -> ``[C, C]`` templates: the mean
    softmax of the ID val samples predicted as class ``c``, one-hot ``e_c`` if none is."""
    probs = torch.softmax(val_logits.float(), dim=1)
    preds = probs.argmax(dim=1)
    templates = torch.eye(num_classes, dtype=torch.float64)
    for c in preds.unique().tolist():
        templates[c] = probs[preds == c].double().mean(0)
    return templates


def klm_score(logits: torch.Tensor, templates: torch.Tensor) -> Scores:
    """KLM: ``S = -min_c KL(p || q_c)`` with ``p`` = softmax(z), ``KL`` as ``scipy.stats.entropy``
    (both arguments renormalised to sum 1; ``p_j > 0 = q_cj`` gives ``inf``). Computed as
    ``sum_j p_j log p_j - p . log q_c`` (two matrix products, float64)."""
    p = torch.softmax(logits.float(), dim=1).double()
    p = p / p.sum(1, keepdim=True)
    q = templates.double().to(p.device)
    q = q / q.sum(1, keepdim=True)
    zero = q == 0
    cross = p @ torch.where(zero, torch.zeros_like(q), torch.log(q)).T
    kl = torch.special.xlogy(p, p).sum(1, keepdim=True) - cross
    kl = kl.masked_fill((p > 0).double() @ zero.double().T > 0, float("inf"))
    return logits.argmax(dim=1), -kl.min(dim=1).values


def she_fit(features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
            num_classes: int) -> torch.Tensor:
    """SHE's stored patterns (Zhang et al., ICLR 2023; OpenOOD ``she``): per class the mean ID train
    feature of the samples of that class that the classifier gets right."""
    labels = labels.long()
    correct = logits.argmax(dim=1) == labels
    return class_means(features[correct], labels[correct], num_classes, "correctly classified ID train")


def she_score(features: torch.Tensor, logits: torch.Tensor, patterns: torch.Tensor,
              metric: str = "inner_product") -> Scores:
    """SHE: ``S = sim(f, pattern_pred)``: ``<f, m>`` (inner_product), ``-||f - m||`` (euclidean) or
    ``cos(f, m)`` (cosine)."""
    pred = logits.argmax(dim=1)
    f, m = features.float(), patterns.float().to(features.device)[pred]
    if metric == "inner_product":
        return pred, (f * m).sum(1)
    if metric == "euclidean":
        return pred, -torch.sqrt(((f - m) ** 2).sum(1))
    if metric == "cosine":
        return pred, torch.cosine_similarity(f, m, dim=1)
    raise ValueError(f"unknown SHE metric {metric!r}: use inner_product, euclidean or cosine")


def fdbd_denominators(weight: torch.Tensor) -> torch.Tensor:
    """fDBD's ``D[p, c] = ||W_c - W_p||`` (``D[p, p] = 1``), float64 as OpenOOD's."""
    w = weight.double()
    d = torch.cdist(w, w)
    return d.fill_diagonal_(1.0)


def fdbd_score(features: torch.Tensor, logits: torch.Tensor, denominators: torch.Tensor,
               train_mean: Optional[torch.Tensor]) -> Scores:
    """fDBD (Liu & Qin, ICML 2024; OpenOOD ``fdbd``): with ``p = argmax z``,
    ``S = sum_c |z_c - z_p| / ||W_c - W_p|| / ||f - mu_train||`` (``/ ||f||`` when ``train_mean``
    is ``None``: ``distance_as_normalizer: false``)."""
    values, pred = logits.max(dim=1)
    dist = (logits - values[:, None]).abs() / denominators.to(logits.device)[pred]
    centre = features if train_mean is None else features - train_mean.to(features.device)
    return pred, dist.sum(dim=1) / torch.norm(centre, dim=1)


def nci_score(features: torch.Tensor, logits: torch.Tensor, weight: torch.Tensor,
              train_mean: torch.Tensor, alpha: float) -> Scores:
    """NCI (Liu & Qin, CVPR 2025; OpenOOD ``nci``): with ``p = argmax z`` and ``g = f - mu_train``,
    ``S = <W_p, g> / ||g|| + alpha ||f||_1``."""
    pred = logits.argmax(dim=1)
    g = features.float() - train_mean.float().to(features.device)
    score = (weight.float().to(features.device)[pred] * g).sum(1) / torch.norm(g, dim=1)
    return pred, score + alpha * torch.norm(features.float(), p=1, dim=1)
